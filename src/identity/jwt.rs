//! `jwt` mode: a bearer token is verified and its claim becomes the tenant. The token's
//! header only ever selects among the configured keys (never a URL it names), its
//! signature is checked before any claim is read, and the times are checked against
//! the process clock with `leeway`.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::HeaderName;
use jsonwebtoken::Algorithm;
use serde_json::Value;

use super::cache::{Entry, TokenCache};
use super::keys::KeySet;
use super::remote::RemoteKeys;
use super::{AuthFailure, Rejected};

/// Longer than any identity provider's token; a bound on what is decoded.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

#[derive(Debug)]
pub struct JwtSettings {
    /// Where the bearer token arrives (`jwt_header`).
    pub header: HeaderName,
    pub claim: ClaimPath,
    pub keys: JwtKeys,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_secs: u64,
    /// Tokens this config has verified (a reload starts afresh).
    pub cache: TokenCache,
}

/// Where the verifying keys come from.
#[derive(Debug)]
pub enum JwtKeys {
    Secret(Arc<KeySet>),
    /// Read when the config is loaded; the watcher reloads on a change to the file.
    File {
        path: PathBuf,
        set: Arc<KeySet>,
    },
    /// Fetched and refreshed by a task the process runs (see `remote`).
    Remote(Arc<RemoteKeys>),
}

/// What a verified token said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub tenant: String,
    pub alg: Algorithm,
    pub kid: Option<String>,
}

impl JwtSettings {
    /// Verifies `token` at `now` (Unix seconds) and returns its tenant claim's text.
    pub async fn verify(&self, token: &str, now: f64) -> Result<Verified, Rejected> {
        let mut set = self.key_set()?;
        let key = TokenCache::key(token);
        if let Some(hit) = self.cache.get(&key, set.generation) {
            self.check_times(hit.exp, hit.nbf, now)
                .map_err(Rejected::Unauthenticated)?;
            return Ok(hit.verified);
        }
        let head = Head::parse(token).map_err(Rejected::Unauthenticated)?;
        let claims = match verify_with(&set, &head, token) {
            Err(AuthFailure::UnknownKid) => match &self.keys {
                // A rotation at the provider: fetch again (at most once per
                // `jwks_min_refresh`) and try the new set once.
                JwtKeys::Remote(remote) if remote.refetch_for_unknown_kid().await => {
                    set = self.key_set()?;
                    verify_with(&set, &head, token)
                }
                _ => Err(AuthFailure::UnknownKid),
            },
            other => other,
        }
        .map_err(Rejected::Unauthenticated)?;
        let (tenant, exp, nbf) = self
            .check(&claims, now)
            .map_err(Rejected::Unauthenticated)?;
        let verified = Verified {
            tenant,
            alg: head.alg,
            kid: head.kid,
        };
        let entry = Entry {
            verified: verified.clone(),
            exp,
            nbf,
            keys: set.generation,
        };
        self.cache.insert(key, entry);
        Ok(verified)
    }

    fn check_times(&self, exp: f64, nbf: Option<f64>, now: f64) -> Result<(), AuthFailure> {
        let leeway = self.leeway_secs as f64;
        if now >= exp + leeway {
            return Err(AuthFailure::Expired);
        }
        if nbf.is_some_and(|nbf| now + leeway < nbf) {
            return Err(AuthFailure::NotYetValid);
        }
        Ok(())
    }

    fn key_set(&self) -> Result<Arc<KeySet>, Rejected> {
        match &self.keys {
            JwtKeys::Secret(set) | JwtKeys::File { set, .. } => Ok(set.clone()),
            JwtKeys::Remote(remote) => remote.current().ok_or(Rejected::KeysUnavailable),
        }
    }

    /// The registered claims, then the tenant claim: the tenant, `exp` and `nbf`.
    fn check(&self, claims: &Value, now: f64) -> Result<(String, f64, Option<f64>), AuthFailure> {
        let exp = claims.get("exp").ok_or(AuthFailure::NoExpiry)?;
        let exp = exp
            .as_f64()
            .ok_or(AuthFailure::Malformed("exp is not a number"))?;
        let nbf = match claims.get("nbf") {
            None => None,
            Some(nbf) => Some(
                nbf.as_f64()
                    .ok_or(AuthFailure::Malformed("nbf is not a number"))?,
            ),
        };
        self.check_times(exp, nbf, now)?;
        if let Some(issuer) = &self.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err(AuthFailure::Issuer);
            }
        }
        if let Some(audience) = &self.audience {
            let listed = match claims.get("aud") {
                Some(Value::String(one)) => one == audience,
                Some(Value::Array(many)) => many.iter().any(|a| a.as_str() == Some(audience)),
                _ => false,
            };
            if !listed {
                return Err(AuthFailure::Audience);
            }
        }
        let tenant = match self.claim.find(claims) {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
            _ => return Err(AuthFailure::Claim),
        };
        Ok((tenant, exp, nbf))
    }

    /// For `check`: where the keys come from.
    pub fn describe_keys(&self) -> String {
        match &self.keys {
            JwtKeys::Secret(_) => "HS256 secret (hs256_secret)".to_owned(),
            JwtKeys::File { path, set } => {
                format!("keys_file {} ({})", path.display(), set.describe())
            }
            JwtKeys::Remote(remote) => format!(
                "jwks_url {} (refreshed every {:?})",
                remote.url,
                remote.refresh()
            ),
        }
    }
}

fn verify_with(set: &KeySet, head: &Head, token: &str) -> Result<Value, AuthFailure> {
    let mut first_error = None;
    for key in set.candidates(head.alg, head.kid.as_deref())? {
        match key.verify(token) {
            Ok(claims) => return Ok(claims),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or(AuthFailure::Signature))
}

/// The token's JOSE header, read before any key is chosen.
#[derive(Debug)]
struct Head {
    alg: Algorithm,
    kid: Option<String>,
}

impl Head {
    fn parse(token: &str) -> Result<Self, AuthFailure> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthFailure::Malformed("the token is longer than 16 KiB"));
        }
        let mut parts = token.split('.');
        let (Some(head), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthFailure::Malformed(
                "a JWT is three base64url parts joined by dots",
            ));
        };
        #[derive(serde::Deserialize)]
        struct Raw {
            alg: String,
            kid: Option<String>,
        }
        let raw: Raw = URL_SAFE_NO_PAD
            .decode(head)
            .ok()
            .and_then(|bytes: Vec<u8>| serde_json::from_slice(&bytes).ok())
            .ok_or(AuthFailure::Malformed(
                "the token's header is not base64url JSON",
            ))?;
        // `none` and anything unknown fail here, before a key is looked at.
        let alg = Algorithm::from_str(&raw.alg).map_err(|_| AuthFailure::Algorithm)?;
        Ok(Self { alg, kid: raw.kid })
    }
}

/// `[identity] claim`: a top-level claim, a dotted path into nested objects, or a JSON
/// pointer (RFC 6901) when it starts with `/` (for names that contain dots, like
/// `https://example.com/tenant`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimPath {
    Pointer(String),
    Dotted(Vec<String>),
}

impl ClaimPath {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with('/') {
            return Ok(Self::Pointer(text.to_owned()));
        }
        let parts: Vec<String> = text.split('.').map(str::to_owned).collect();
        if parts.iter().any(String::is_empty) {
            return Err(format!(
                "{text:?} is not a claim: write a name like \"sub\", a dotted path like \"org.user_id\", or a JSON pointer like \"/https:~1~1example.com~1tenant\""
            ));
        }
        Ok(Self::Dotted(parts))
    }

    fn find<'v>(&self, claims: &'v Value) -> Option<&'v Value> {
        match self {
            Self::Pointer(pointer) => claims.pointer(pointer),
            Self::Dotted(parts) => parts.iter().try_fold(claims, |v, part| v.get(part)),
        }
    }
}

impl std::fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pointer(p) => f.write_str(p),
            Self::Dotted(parts) => f.write_str(&parts.join(".")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(json: &str) -> String {
        format!("{}.e30.sig", URL_SAFE_NO_PAD.encode(json))
    }

    #[test]
    fn the_header_is_read_before_any_key_and_none_is_refused() {
        assert_eq!(
            Head::parse(&head(r#"{"alg":"none"}"#)).unwrap_err(),
            AuthFailure::Algorithm
        );
        assert_eq!(
            Head::parse(&head(r#"{"alg":"HS999"}"#)).unwrap_err(),
            AuthFailure::Algorithm
        );
        let ok = Head::parse(&head(r#"{"alg":"RS256","kid":"k1"}"#)).unwrap();
        assert_eq!((ok.alg, ok.kid.as_deref()), (Algorithm::RS256, Some("k1")));
        for bad in [
            "a.b",
            "a.b.c.d",
            "!!!.e30.x",
            &"a".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert!(
                matches!(Head::parse(bad), Err(AuthFailure::Malformed(_))),
                "{bad:.20}"
            );
        }
    }

    #[test]
    fn claims_are_found_by_name_path_or_pointer() {
        let claims: Value = serde_json::json!({
            "sub": "alice", "org": {"user": 42}, "https://x.example/tenant": "t1", "a.b": "flat"
        });
        let find = |p: &str| ClaimPath::parse(p).unwrap().find(&claims).cloned();
        assert_eq!(find("sub"), Some(Value::from("alice")));
        assert_eq!(find("org.user"), Some(Value::from(42)));
        assert_eq!(
            find("/https:~1~1x.example~1tenant"),
            Some(Value::from("t1"))
        );
        assert_eq!(
            find("a.b"),
            None,
            "a dotted name is a path, never a flat key"
        );
        assert!(ClaimPath::parse("org..user").is_err() && ClaimPath::parse("").is_err());
    }

    fn settings(issuer: Option<&str>, audience: Option<&str>) -> JwtSettings {
        JwtSettings {
            header: http::header::AUTHORIZATION,
            claim: ClaimPath::parse("sub").unwrap(),
            keys: JwtKeys::Secret(Arc::new(KeySet::hs256(b"s").unwrap())),
            issuer: issuer.map(str::to_owned),
            audience: audience.map(str::to_owned),
            leeway_secs: 30,
            cache: TokenCache::default(),
        }
    }

    #[test]
    fn times_are_checked_with_leeway_on_both_sides() {
        let s = settings(None, None);
        let at = |exp: f64, nbf: Option<f64>| {
            let mut c = serde_json::json!({"sub": "alice", "exp": exp});
            if let Some(nbf) = nbf {
                c["nbf"] = nbf.into();
            }
            s.check(&c, 1000.0).map(|(tenant, ..)| tenant)
        };
        assert_eq!(at(1100.0, None), Ok("alice".to_owned()));
        assert_eq!(
            at(990.0, None),
            Ok("alice".to_owned()),
            "expired within leeway"
        );
        assert_eq!(at(970.0, None), Err(AuthFailure::Expired));
        assert_eq!(at(1100.0, Some(1020.0)), Ok("alice".to_owned()));
        assert_eq!(at(1100.0, Some(1031.0)), Err(AuthFailure::NotYetValid));
        assert_eq!(
            s.check(&serde_json::json!({"sub": "alice"}), 1000.0)
                .map(|(tenant, ..)| tenant),
            Err(AuthFailure::NoExpiry)
        );
        assert_eq!(
            s.check(&serde_json::json!({"sub": true, "exp": 2000}), 1000.0)
                .map(|(tenant, ..)| tenant),
            Err(AuthFailure::Claim)
        );
    }

    #[test]
    fn issuer_and_audience_must_match_when_configured() {
        let s = settings(Some("https://auth"), Some("memory"));
        let c = |iss: &str, aud: Value| {
            s.check(
                &serde_json::json!({"sub": "a", "exp": 2000, "iss": iss, "aud": aud}),
                1000.0,
            )
            .map(|(tenant, ..)| tenant)
        };
        assert!(c("https://auth", "memory".into()).is_ok());
        assert!(c("https://auth", serde_json::json!(["x", "memory"])).is_ok());
        assert_eq!(
            c("https://other", "memory".into()),
            Err(AuthFailure::Issuer)
        );
        assert_eq!(
            c("https://auth", "other".into()),
            Err(AuthFailure::Audience)
        );
        assert_eq!(
            s.check(
                &serde_json::json!({"sub": "a", "exp": 2000, "iss": "https://auth"}),
                1000.0
            )
            .map(|(tenant, ..)| tenant),
            Err(AuthFailure::Audience)
        );
    }
}
