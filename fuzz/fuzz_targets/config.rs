//! Any text through the config loader: it never panics; it compiles or it reports
//! errors, each with a line and column inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenantgate::config::{load_str, Overrides};

fuzz_target!(|text: &str| {
    if let Err(errors) = load_str(text, "fuzz.toml", &Overrides::default(), &|_| None) {
        let lines = text.lines().count().max(1);
        for error in &errors.0 {
            assert!(error.line >= 1 && error.line <= lines + 1, "{error}");
            assert!(error.col >= 1, "{error}");
        }
    }
});
