//! Golden snapshots of the compiled config for the shipped config, every example and
//! every preset: a change to what a file compiles into shows up in review as a diff of
//! `tests/snapshots/`. Secrets come from a fixed stand-in environment. To accept an
//! intended change: `INSTA_UPDATE=always cargo test --test golden`, then read the diff.

use tenantgate::config::{self, Overrides};

/// `${NAME}` reads as `<NAME>`, so the snapshot shows where each variable went.
fn stand_in(name: &str) -> Option<String> {
    Some(format!("<{name}>"))
}

#[test]
fn compiled_configs_match_their_snapshots() {
    let mut seen = 0;
    insta::glob!("..", "{config,examples,presets}/**/*.toml", |path| {
        let raw = std::fs::read_to_string(path).expect("readable config");
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let snapshot = config::load_str(&raw, &name, &Overrides::default(), &stand_in)
            .unwrap_or_else(|e| panic!("{} does not compile:\n{e}", path.display()));
        insta::assert_debug_snapshot!(snapshot.config);
        seen += 1;
    });
    assert!(seen >= 2, "the glob found the shipped configs ({seen})");
}
