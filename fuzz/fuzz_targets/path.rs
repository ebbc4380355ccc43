//! Any request path through the canonicalizer: it never panics, and a path it accepts
//! re-encodes to a path that parses back to the same segments (one canonical form).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenantgate::path::CanonicalPath;

fuzz_target!(|raw: &str| {
    if let Ok(path) = CanonicalPath::parse(raw) {
        let again = CanonicalPath::parse(&path.encode()).expect("the encoded form parses");
        assert_eq!(again.segments, path.segments);
        assert_eq!(again.trailing_slash, path.trailing_slash);
        assert_eq!(again.encode(), path.encode());
    }
});
