//! The keys a JWT may be signed with: an HS256 secret, or public keys read from a PEM or
//! JWKS document. Each key carries the one algorithm it verifies, so a token can never
//! pick a weaker or a different family (the HS/RS confusion) by its own `alg`.

use std::str::FromStr;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};

use super::AuthFailure;

/// More keys than any identity provider publishes.
pub const MAX_KEYS: usize = 64;
/// Keys without a `kid` are all tried on a token of their algorithm: this bounds the
/// signature checks one forged token can cost.
pub const MAX_KEYS_WITHOUT_KID: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("it is neither a PEM public key nor a JWKS document (a JSON object with \"keys\")")]
    Unrecognised,
    #[error("it is not valid JSON: {0}")]
    Json(String),
    #[error("PEM block {0} is not an RSA, P-256, P-384 or Ed25519 public key")]
    Pem(usize),
    #[error("PEM block {0} is a private key; give tenantgate only the public key (openssl pkey -pubout)")]
    PrivateKey(usize),
    #[error(
        "more than {MAX_KEYS_WITHOUT_KID} keys have no kid; publish them as a JWKS with a kid each"
    )]
    TooManyWithoutKid,
    #[error("it holds no signing key tenantgate can use (RS256, ES256 or EdDSA){0}")]
    NoKeys(String),
    #[error("it holds more than {MAX_KEYS} keys")]
    TooMany,
    #[error("the HS256 secret is empty")]
    EmptySecret,
    #[error("{0}")]
    Other(String),
}

/// One key and the single algorithm it verifies.
pub struct VerifyKey {
    /// A PEM key has no `kid`: it verifies its algorithm whatever `kid` a token names.
    pub kid: Option<String>,
    pub alg: Algorithm,
    key: DecodingKey,
    /// Signature and algorithm only: tenantgate checks the claims itself, against its
    /// own clock.
    validation: Validation,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyKey {
    fn new(kid: Option<String>, alg: Algorithm, key: DecodingKey) -> Self {
        let mut validation = Validation::new(alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        Self {
            kid,
            alg,
            key,
            validation,
        }
    }

    /// The token's claims if its signature verifies with this key.
    pub fn verify(&self, token: &str) -> Result<serde_json::Value, AuthFailure> {
        use jsonwebtoken::errors::ErrorKind;
        match jsonwebtoken::decode::<serde_json::Value>(token, &self.key, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) => Err(match e.kind() {
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    AuthFailure::Algorithm
                }
                ErrorKind::InvalidToken
                | ErrorKind::Base64(_)
                | ErrorKind::Json(_)
                | ErrorKind::Utf8(_) => AuthFailure::Malformed("it is not a well-formed JWT"),
                _ => AuthFailure::Signature,
            }),
        }
    }
}

/// A set of keys, as one source (secret, file, URL) last delivered it.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<VerifyKey>,
    /// Keys of the document that were left out (encryption keys, other algorithms).
    pub skipped: usize,
    /// Unique to this set in the process: what a cached verification is tied to.
    pub generation: u64,
}

fn next_generation() -> u64 {
    static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl KeySet {
    pub fn hs256(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::EmptySecret);
        }
        let key = DecodingKey::from_secret(secret).map_err(|e| KeyError::Other(e.to_string()))?;
        Ok(Self {
            keys: vec![VerifyKey::new(None, Algorithm::HS256, key)],
            skipped: 0,
            generation: next_generation(),
        })
    }

    /// A PEM file of one or more public keys, or a JWKS document.
    pub fn parse(bytes: &[u8]) -> Result<Self, KeyError> {
        let text = std::str::from_utf8(bytes).map_err(|_| KeyError::Unrecognised)?;
        let trimmed = text.trim_start();
        let mut set = if trimmed.starts_with("-----BEGIN") {
            Self::from_pem(text)?
        } else if trimmed.starts_with('{') {
            Self::from_jwks(text)?
        } else {
            return Err(KeyError::Unrecognised);
        };
        set.generation = next_generation();
        if set.keys.len() > MAX_KEYS {
            return Err(KeyError::TooMany);
        }
        if set.keys.iter().filter(|k| k.kid.is_none()).count() > MAX_KEYS_WITHOUT_KID {
            return Err(KeyError::TooManyWithoutKid);
        }
        Ok(set)
    }

    fn from_pem(text: &str) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for (i, block) in pem_blocks(text).enumerate() {
            let bytes = block.as_bytes();
            if block
                .lines()
                .next()
                .is_some_and(|l| l.contains("PRIVATE KEY"))
            {
                return Err(KeyError::PrivateKey(i + 1));
            }
            let key = DecodingKey::from_rsa_pem(bytes)
                .map(|k| (Algorithm::RS256, k))
                .or_else(|_| {
                    let alg = ec_curve(block).ok_or(())?;
                    DecodingKey::from_ec_pem(bytes)
                        .map(|k| (alg, k))
                        .map_err(|_| ())
                })
                .or_else(|_| DecodingKey::from_ed_pem(bytes).map(|k| (Algorithm::EdDSA, k)))
                .map_err(|_| KeyError::Pem(i + 1))?;
            keys.push(VerifyKey::new(None, key.0, key.1));
            if keys.len() > MAX_KEYS {
                return Err(KeyError::TooMany);
            }
        }
        if keys.is_empty() {
            return Err(KeyError::NoKeys(String::new()));
        }
        Ok(Self {
            keys,
            skipped: 0,
            generation: 0,
        })
    }

    /// Keys are read one by one, so one key of a kind this proxy does not use (an
    /// encryption key, RSA-OAEP, a P-521 curve) does not take the others down with it.
    fn from_jwks(text: &str) -> Result<Self, KeyError> {
        #[derive(serde::Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let document: Document =
            serde_json::from_str(text).map_err(|e| KeyError::Json(e.to_string()))?;
        if document.keys.len() > MAX_KEYS {
            return Err(KeyError::TooMany);
        }
        let mut set = Self::default();
        for value in document.keys {
            match serde_json::from_value::<Jwk>(value)
                .ok()
                .and_then(signing_key)
            {
                Some(key) => set.keys.push(key),
                None => set.skipped += 1,
            }
        }
        if set.keys.is_empty() {
            let skipped = match set.skipped {
                0 => String::new(),
                n => format!("; {n} other key(s) were skipped"),
            };
            return Err(KeyError::NoKeys(skipped));
        }
        Ok(set)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys that may verify a token of algorithm `alg` naming `kid`: those with
    /// that `kid`, else those without one (at most [`MAX_KEYS_WITHOUT_KID`]). A token
    /// without a `kid` against a set whose keys all have one may use the set's only
    /// key of its algorithm, never try many. A key found by `kid` with another
    /// algorithm is refused, never tried.
    pub fn candidates(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<Vec<&VerifyKey>, AuthFailure> {
        let named: Vec<&VerifyKey> = match kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect(),
            None => Vec::new(),
        };
        let pool: Vec<&VerifyKey> = if named.is_empty() {
            let without_kid: Vec<&VerifyKey> =
                self.keys.iter().filter(|k| k.kid.is_none()).collect();
            let of_alg = || self.keys.iter().filter(|k| k.alg == alg);
            if without_kid.is_empty() && kid.is_none() && of_alg().count() == 1 {
                of_alg().collect()
            } else {
                without_kid
            }
        } else {
            named
        };
        if pool.is_empty() {
            return Err(AuthFailure::UnknownKid);
        }
        let fitting: Vec<&VerifyKey> = pool.into_iter().filter(|k| k.alg == alg).collect();
        if fitting.is_empty() {
            return Err(AuthFailure::Algorithm);
        }
        Ok(fitting)
    }

    /// For `check`: "RS256 (kid a), ES256".
    pub fn describe(&self) -> String {
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|k| match &k.kid {
                Some(kid) => format!("{:?} (kid {kid})", k.alg),
                None => format!("{:?}", k.alg),
            })
            .collect();
        keys.join(", ")
    }
}

/// A JWK this proxy verifies signatures with, and its one algorithm: the `alg` it
/// declares, or the one its key type implies.
fn signing_key(jwk: Jwk) -> Option<VerifyKey> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P384 => Algorithm::ES384,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        None => implied,
        // The crate's own conversion: by the algorithm's name.
        Some(declared) => Algorithm::from_str(&declared.to_string()).ok()?,
    };
    let fits = match implied {
        Algorithm::RS256 => alg.family() == AlgorithmFamily::Rsa,
        other => alg == other,
    };
    if !fits {
        return None;
    }
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some(VerifyKey::new(jwk.common.key_id, alg, key))
}

/// The algorithm of an EC public key's curve, read from its SPKI's curve OID:
/// P-256 is ES256, P-384 is ES384, any other curve is not used.
fn ec_curve(block: &str) -> Option<Algorithm> {
    use base64::Engine;
    const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
    let body: String = block.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()?;
    let has = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
    if has(P256) {
        Some(Algorithm::ES256)
    } else if has(P384) {
        Some(Algorithm::ES384)
    } else {
        None
    }
}

/// Each `-----BEGIN ...-----` to `-----END ...-----` block of a PEM file.
fn pem_blocks(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let start = rest.find("-----BEGIN")?;
        let after = &rest[start..];
        let end_marker = after.find("-----END")?;
        let close = after[end_marker + 8..].find("-----")? + end_marker + 8 + 5;
        let block = &after[..close];
        rest = &after[close..];
        Some(block)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwks_keeps_its_signing_keys_and_skips_the_rest() {
        let doc = r#"{"keys":[
            {"kty":"RSA","use":"enc","alg":"RSA-OAEP","kid":"enc","n":"sXch","e":"AQAB"},
            {"kty":"OKP","crv":"Ed25519","kid":"ed","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"EC","crv":"P-521","kid":"p521","x":"AA","y":"AA"}
        ]}"#;
        let set = KeySet::parse(doc.as_bytes()).unwrap();
        assert_eq!((set.len(), set.skipped), (1, 2));
        assert_eq!(set.describe(), "EdDSA (kid ed)");
        assert_eq!(
            set.candidates(Algorithm::EdDSA, Some("ed")).unwrap().len(),
            1
        );
        assert_eq!(
            set.candidates(Algorithm::RS256, Some("ed")).unwrap_err(),
            AuthFailure::Algorithm
        );
        assert_eq!(
            set.candidates(Algorithm::EdDSA, Some("other")).unwrap_err(),
            AuthFailure::UnknownKid
        );
    }

    #[test]
    fn a_declared_algorithm_of_another_family_than_the_key_is_not_a_signing_key() {
        let doc = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"HS256","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        assert!(matches!(
            KeySet::parse(doc.as_bytes()),
            Err(KeyError::NoKeys(_))
        ));
    }

    #[test]
    fn bad_documents_say_what_is_wrong() {
        assert_eq!(KeySet::parse(b"hello").unwrap_err(), KeyError::Unrecognised);
        assert!(matches!(
            KeySet::parse(b"{\"keys\": [").unwrap_err(),
            KeyError::Json(_)
        ));
        assert_eq!(
            KeySet::parse(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
                .unwrap_err(),
            KeyError::Pem(1)
        );
        assert_eq!(KeySet::hs256(b"").unwrap_err(), KeyError::EmptySecret);
    }

    fn test_key(name: &str) -> Vec<u8> {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/keys")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    fn pem_keys_get_the_algorithm_of_their_type_and_curve() {
        let describe = |name: &str| KeySet::parse(&test_key(name)).map(|s| s.describe());
        assert_eq!(describe("rsa.pub").as_deref(), Ok("RS256"));
        assert_eq!(describe("ec.pub").as_deref(), Ok("ES256"));
        assert_eq!(describe("ec384.pub").as_deref(), Ok("ES384"));
        assert_eq!(describe("ed.pub").as_deref(), Ok("EdDSA"));
        assert_eq!(describe("k256.pub"), Err(KeyError::Pem(1)));
        assert_eq!(describe("rsa.key"), Err(KeyError::PrivateKey(1)));
        let nine: Vec<u8> = (0..9).flat_map(|_| test_key("ed.pub")).collect();
        assert_eq!(
            KeySet::parse(&nine).unwrap_err(),
            KeyError::TooManyWithoutKid
        );
    }

    #[test]
    fn a_token_without_kid_tries_only_keys_without_one_or_the_only_key_of_its_alg() {
        let one = KeySet::from_jwks(r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#).unwrap();
        assert_eq!(one.candidates(Algorithm::EdDSA, None).unwrap().len(), 1);
        let two = KeySet::from_jwks(r#"{"keys":[
            {"kty":"OKP","crv":"Ed25519","kid":"a","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"OKP","crv":"Ed25519","kid":"b","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#).unwrap();
        assert_eq!(
            two.candidates(Algorithm::EdDSA, None).unwrap_err(),
            AuthFailure::UnknownKid
        );
    }

    #[test]
    fn pem_blocks_are_split() {
        let two = "-----BEGIN A-----\nx\n-----END A-----\n-----BEGIN B-----\ny\n-----END B-----\n";
        let blocks: Vec<&str> = pem_blocks(two).collect();
        assert_eq!(blocks.len(), 2);
        assert!(blocks[1].starts_with("-----BEGIN B") && blocks[1].ends_with("END B-----"));
    }
}
