//! The tenant codec and namespaces (SPEC 3). The encoding is fixed so that backend ids
//! stay stable across versions: each byte of the UTF-8 id in `[a-z0-9]` stays, every
//! other byte becomes `-` and two lowercase hex digits.
//!
//! A namespaced id is `{root}{separator}{id}`. It is parsed by the root, never by
//! splitting on the first separator: the encoded tenant uses only `[a-z0-9-]`, and the
//! text after it (template suffix + separator) contains a character outside that set,
//! at a fixed offset. So the first such character fixes where the encoded tenant ends,
//! which makes (tenant, id) -> backend id injective and reversible.

use std::fmt::Write;

use crate::identity::{InvalidTenant, TenantId};
use crate::spec::{key, Errors};

/// True for the bytes the encoder can emit.
fn in_alphabet(byte: u8) -> bool {
    byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-'
}

fn kept(byte: u8) -> bool {
    byte.is_ascii_lowercase() || byte.is_ascii_digit()
}

pub fn encode_tenant(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for &byte in id.as_bytes() {
        if kept(byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "-{byte:02x}");
        }
    }
    out
}

/// The tenant an encoded form stands for, if it is exactly what `encode_tenant` emits
/// for some id (non-canonical spellings such as `-61` for `a` are not roots).
pub fn decode_tenant(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if kept(bytes[i]) {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        if bytes[i] != b'-' {
            return None;
        }
        let hex = bytes.get(i + 1..i + 3)?;
        if !hex
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        {
            return None;
        }
        let value = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
        if kept(value) {
            return None;
        }
        out.push(value);
        i += 3;
    }
    if out.is_empty() {
        return None;
    }
    String::from_utf8(out).ok()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unscoped {
    #[default]
    Reject,
    Main,
}

/// Whose namespace a request is rewritten into, as the route stage resolved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub root: String,
    /// The tenant id as sent; `None` for the main namespace of unscoped calls.
    pub tenant: Option<String>,
}

/// The `[tenant]` keys of the namespace scheme, as the file writes them.
pub struct SchemeSpec<'a> {
    pub namespace: &'a str,
    pub separator: &'a str,
    pub max_encoded: Option<usize>,
    pub unscoped: Unscoped,
    pub main_namespace: &'a str,
}

/// Compiles the scheme, reporting a problem at the `[tenant]` key it names.
pub fn compile(spec: &SchemeSpec<'_>, errors: &mut Errors) -> Option<NamespaceScheme> {
    NamespaceScheme::new(
        spec.namespace,
        spec.separator,
        spec.max_encoded,
        spec.unscoped,
        spec.main_namespace,
    )
    .map_err(|e| {
        let field = if e.contains("main_namespace") {
            "main_namespace"
        } else if e.contains("separator") {
            "separator"
        } else {
            "namespace"
        };
        errors.add(vec![key("tenant"), key(field)], e);
    })
    .ok()
}

/// How tenants' namespaces are spelled (`[tenant]` settings), validated.
#[derive(Debug, Clone)]
pub struct NamespaceScheme {
    prefix: String,
    suffix: String,
    separator: String,
    /// `suffix + separator`: what follows the encoded tenant in a namespaced id.
    tail: String,
    /// Offset in `tail` of its first byte outside the encoder's alphabet.
    tail_break: usize,
    max_encoded: Option<usize>,
    pub unscoped: Unscoped,
    pub main: String,
}

/// What a string is to the namespace scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified<'s> {
    /// Exactly a tenant's root.
    Root {
        tenant: String,
    },
    /// `{root}{separator}{id}` of a tenant.
    Namespaced {
        tenant: String,
        id: &'s str,
    },
    Other,
}

impl NamespaceScheme {
    pub fn new(
        template: &str,
        separator: &str,
        max_encoded: Option<usize>,
        unscoped: Unscoped,
        main: &str,
    ) -> Result<Self, String> {
        let (prefix, suffix) = template
            .split_once("{tenant}")
            .ok_or("namespace must contain {tenant} exactly once")?;
        if suffix.contains("{tenant}") {
            return Err("namespace must contain {tenant} exactly once".to_owned());
        }
        let safe = |text: &str| {
            text.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'~' | b':' | b'@' | b'-')
            })
        };
        if !safe(prefix) || !safe(suffix) || !safe(separator) {
            return Err("namespace and separator may use only A-Z, a-z, 0-9 and _ . ~ : @ - (they land in paths, queries and headers)".to_owned());
        }
        if separator == "." || !separator.bytes().any(|b| !in_alphabet(b)) {
            return Err(format!(
                "separator {separator:?} must contain a character the tenant encoder never emits (anything but a-z, 0-9 and -), or ids could collide"
            ));
        }
        let tail = format!("{suffix}{separator}");
        let tail_break = tail
            .bytes()
            .position(|b| !in_alphabet(b))
            .unwrap_or(tail.len());
        let namespaces = Self {
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
            separator: separator.to_owned(),
            tail,
            tail_break,
            max_encoded,
            unscoped,
            main: main.to_owned(),
        };
        if main.is_empty() {
            return Err("main_namespace cannot be empty".to_owned());
        }
        if !matches!(namespaces.classify(main), Classified::Other) {
            return Err(format!("main_namespace {main:?} parses as a tenant's namespace; pick a name the namespace template cannot produce"));
        }
        Ok(namespaces)
    }

    /// False when `text` cannot hold any namespace root, even percent-encoded: it has
    /// neither the template's prefix nor a `%` (a cheap test before tokenizing).
    pub fn may_occur_in(&self, text: &[u8]) -> bool {
        let prefix = self.prefix.as_bytes();
        prefix.is_empty() || text.contains(&b'%') || text.windows(prefix.len()).any(|w| w == prefix)
    }

    /// The `[tenant] namespace` template this was built from.
    pub fn pattern(&self) -> String {
        format!("{}{{tenant}}{}", self.prefix, self.suffix)
    }

    pub fn separator(&self) -> &str {
        &self.separator
    }

    /// The tenant's namespace root, `namespace` with `{tenant}` encoded.
    pub fn root(&self, tenant: &TenantId) -> Result<String, InvalidTenant> {
        let encoded = encode_tenant(tenant.as_str());
        if self.max_encoded.is_some_and(|max| encoded.len() > max) {
            return Err(InvalidTenant::EncodedTooLong);
        }
        Ok(format!("{}{encoded}{}", self.prefix, self.suffix))
    }

    /// `{root}{separator}{id}`.
    pub fn namespaced(&self, root: &str, id: &str) -> String {
        let mut out = String::with_capacity(root.len() + self.separator.len() + id.len());
        out.push_str(root);
        out.push_str(&self.separator);
        out.push_str(id);
        out
    }

    /// True when `value` is `root` itself or an id inside it.
    pub fn is_within(&self, root: &str, value: &str) -> bool {
        value
            .strip_prefix(root)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(&self.separator))
    }

    pub fn classify<'s>(&self, value: &'s str) -> Classified<'s> {
        let Some(rest) = value.strip_prefix(self.prefix.as_str()) else {
            return Classified::Other;
        };
        // A bare root: prefix, encoded tenant, suffix, nothing else.
        if let Some(encoded) = rest.strip_suffix(self.suffix.as_str()) {
            if encoded.bytes().all(in_alphabet) {
                if let Some(tenant) = decode_tenant(encoded) {
                    return Classified::Root { tenant };
                }
            }
        }
        let boundary = rest
            .bytes()
            .position(|b| !in_alphabet(b))
            .unwrap_or(rest.len());
        let Some(end) = boundary.checked_sub(self.tail_break) else {
            return Classified::Other;
        };
        let (encoded, after) = rest.split_at(end);
        match (
            after.strip_prefix(self.tail.as_str()),
            decode_tenant(encoded),
        ) {
            (Some(id), Some(tenant)) => Classified::Namespaced { tenant, id },
            _ => Classified::Other,
        }
    }
}

#[cfg(test)]
mod tests;
