//! Reading the two headers stage 1 looks at: the tenant header, and in jwt and api_key
//! modes the credential. Each must arrive at most once; the tenant header's look-alikes
//! are refused because some backend might read them as the header.

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName};

use super::{AuthFailure, IdentitySettings, InvalidTenant, TenantId};
use crate::hygiene;

/// The tenant the request names: `Ok(None)` when the tenant header is absent
/// altogether (the route's scope decides whether that is acceptable).
pub fn read_tenant(
    settings: &IdentitySettings,
    headers: &HeaderMap,
) -> Result<Option<TenantId>, InvalidTenant> {
    if headers
        .keys()
        .any(|name| *name != settings.header && settings.is_lookalike(name.as_str()))
    {
        return Err(InvalidTenant::LookAlike);
    }
    if hygiene::connection_tokens(headers).any(|token| settings.is_lookalike(token)) {
        return Err(InvalidTenant::NamedInConnection);
    }
    let mut values = headers.get_all(&settings.header).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(InvalidTenant::Repeated);
    }
    let text = std::str::from_utf8(value.as_bytes()).map_err(|_| InvalidTenant::NotUtf8)?;
    TenantId::parse(text, settings.pattern.as_ref()).map(Some)
}

/// The credential in `name`: `Ok(None)` when the header is absent. `Authorization`
/// carries `Bearer <credential>` (the scheme in any letter case, RFC 9110).
pub fn credential<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'h str>, AuthFailure> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthFailure::Malformed(
            "the credential header arrived more than once",
        ));
    }
    let text = value
        .to_str()
        .map_err(|_| AuthFailure::Malformed("the credential is not visible ASCII"))?;
    let text = if *name == AUTHORIZATION {
        let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthFailure::Malformed(
                "expected Authorization: Bearer <credential>",
            ));
        }
        rest
    } else {
        text
    };
    let text = text.trim_matches(' ');
    if text.is_empty() || text.contains(' ') {
        return Err(AuthFailure::Malformed(
            "the credential is empty or has spaces inside",
        ));
    }
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn a_bearer_credential_is_read_once_in_any_scheme_case() {
        let read = |pairs: &[(&str, &str)]| {
            credential(&headers(pairs), &AUTHORIZATION).map(|c| c.map(str::to_owned))
        };
        assert_eq!(read(&[]), Ok(None));
        assert_eq!(
            read(&[("authorization", "Bearer abc")]),
            Ok(Some("abc".into()))
        );
        assert_eq!(
            read(&[("authorization", "bEaReR abc")]),
            Ok(Some("abc".into()))
        );
        for bad in [
            &[("authorization", "Basic abc")][..],
            &[("authorization", "Bearer")],
            &[("authorization", "Bearer a b")],
            &[("authorization", "Bearer a"), ("authorization", "Bearer a")],
        ] {
            assert!(
                matches!(read(bad), Err(AuthFailure::Malformed(_))),
                "{bad:?}"
            );
        }
        let key = HeaderName::from_static("x-api-key");
        let map = headers(&[("x-api-key", "k-1")]);
        assert_eq!(credential(&map, &key), Ok(Some("k-1")));
    }
}
