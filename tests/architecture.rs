//! The corridor in the types: every `crate::` path in the library's sources must point
//! to a module of a lower layer than the one it is written in. Layers follow the
//! request's journey, so a stage may use what an earlier stage produced and the
//! shared leaves below, never a later stage, `config`, or the `App` that runs them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lowest first. A module may import modules of lower layers only.
const LAYERS: &[&[&str]] = &[
    // shared leaves
    &[
        "budget", "secret", "clock", "spec", "path", "hygiene", "metrics", "audit",
    ],
    // the rate arithmetic (GCRA), and the per-tenant table that holds its buckets
    // beside the store's days
    &["gcra"],
    &["tenants"],
    // the JSON core, which takes its working memory from the budget
    &["json"],
    // the body helpers, which draw on the buffer budget
    &["body"],
    // 1. identity: tenant ids and the caller
    &["identity"],
    // the namespace codec, and the refusals every stage returns
    &["namespace", "refusal"],
    // 2. route
    &["route"],
    // usage per tenant and day, read by stage 3 and written by stage 7
    &["store"],
    // 3. limits
    &["limits"],
    // 4. rewrite
    &["rewrite"],
    // 5. forward
    &["forward"],
    // first contact and farewell: calls the upstream for a tenant (SPEC 4.4)
    &["provision", "scenario"],
    // 6. respond
    &["respond"],
    // 7. meter
    &["meter"],
    // the accept loop
    &["listen"],
    // parses the file and asks every stage to compile its part
    &["config"],
    // the running process: snapshot, limiter state, upstream client
    &["app"],
    // 8. answer: headers, metrics and the audit line for every request
    &["answer", "ownership", "offboard"],
    // the corridor itself, and the admin listener
    &["pipeline"],
    &["verify"],
    &["admin"],
    &["server"],
    // the playground: a guest that starts the real server
    &["dev"],
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The library's top-level modules, as `lib.rs` declares them.
fn lib_modules() -> BTreeSet<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs");
    lib.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l
                .strip_prefix("pub ")
                .or(l.strip_prefix("pub(crate) "))
                .unwrap_or(l);
            rest.strip_prefix("mod ")?.strip_suffix(';')
        })
        .map(str::to_owned)
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The source without comments and string literals, so neither can fake an import,
/// and with white space around `::` removed, so `crate :: x` reads as `crate::x`.
fn code_only(source: &str) -> String {
    let mut out = strip(source);
    while let Some(at) = out
        .find(" ::")
        .or(out.find(":: "))
        .or(out.find("\n::"))
        .or(out.find("::\n"))
    {
        let end = at + 3;
        let joined = out[at..end].replace([' ', '\n'], "");
        out.replace_range(at..end, &joined);
    }
    out
}

fn strip(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1)) {
            (b'/', Some(b'/')) => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            (b'/', Some(b'*')) => {
                i += 2;
                while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            (b'"', _) => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            (b'r', Some(b'#' | b'"'))
                if i == 0 || !is_ident(bytes[i - 1]) || bytes[i - 1] == b'b' =>
            {
                let hashes = bytes[i + 1..].iter().take_while(|&&b| b == b'#').count();
                let open = i + 1 + hashes;
                if bytes.get(open) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                let close = format!("\"{}", "#".repeat(hashes));
                let rest = &source[open + 1..];
                i = open + 1 + rest.find(&close).map_or(rest.len(), |at| at + close.len());
                out.push_str("\"\"");
            }
            (b'\'', _) if bytes.get(i + 2) == Some(&b'\'') || bytes.get(i + 1) == Some(&b'\\') => {
                // A char literal such as '"' or '\'' (lifetimes have no closing quote).
                let end = source[i + 2..]
                    .find('\'')
                    .map_or(bytes.len(), |at| i + 2 + at + 1);
                i = end;
                out.push_str("' '");
            }
            (b, _) => {
                out.push(b as char);
                i += 1;
            }
        }
    }
    out
}

/// The top-level modules a file's code names with `crate::` (in paths and in
/// `use crate::{a, b::c}` groups). In a module's own top file (`src/x.rs`,
/// `src/x/mod.rs`) `super::` is the crate root too. An alias of the crate root
/// (`crate::{self as c}`, `extern crate self as c`) would hide imports, so it is
/// reported as the module `"<alias of crate>"`, which no layer holds.
fn imports(source: &str, top_file: bool) -> BTreeSet<String> {
    let mut code = code_only(source);
    if top_file {
        code = code.replace("super::", "crate::");
    }
    let ident = |text: &str| -> String {
        text.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let boundary =
            at == 0 || !is_ident(code.as_bytes()[at - 1]) && code.as_bytes()[at - 1] != b'$';
        if !boundary {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        match rest.strip_prefix('{') {
            Some(group) => {
                let mut depth = 0;
                let mut item_start = 0;
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => {
                            found.insert(ident(&group[item_start..i]));
                            break;
                        }
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            found.insert(ident(&group[item_start..i]));
                            item_start = i + 1;
                        }
                        _ => {}
                    }
                }
            }
            None => {
                found.insert(ident(rest));
            }
        }
    }
    if code.contains("extern crate self") || found.contains("self") {
        found.insert("<alias of crate>".to_owned());
    }
    found.remove("");
    found.remove("self");
    found
}

/// Every `(from, to)` edge that does not point strictly down the layers.
fn violations(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let layer = |m: &str| LAYERS.iter().position(|l| l.contains(&m));
    let mut wrong = Vec::new();
    for (from, targets) in edges {
        for to in targets {
            match (layer(from), layer(to)) {
                (Some(a), Some(b)) if b < a => {}
                (Some(_), Some(_)) => wrong.push(format!(
                    "{from} imports {to}, which is not below it in the corridor"
                )),
                _ => wrong.push(format!(
                    "{from} -> {to}: place every module in a layer of tests/architecture.rs"
                )),
            }
        }
    }
    wrong
}

fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let modules = lib_modules();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(src()).expect("under src");
        let first = relative.components().next().expect("a component");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if !modules.contains(&module) {
            continue; // the binary's own files (main.rs, check.rs, explain.rs) and lib.rs
        }
        let source = std::fs::read_to_string(&file).expect("readable source");
        let top_file = relative.components().count() == 1
            || relative.ends_with("mod.rs") && relative.components().count() == 2;
        let targets = edges.entry(module.clone()).or_default();
        for target in imports(&source, top_file) {
            let alias = target.starts_with('<');
            if target != module && (modules.contains(&target) || alias) {
                targets.insert(target);
            }
        }
    }
    edges
}

#[test]
fn imports_follow_the_corridor() {
    let edges = edges();
    assert!(edges.len() > 20, "the scan found the modules: {edges:?}");
    let modules = lib_modules();
    let unplaced: Vec<_> = modules
        .iter()
        .filter(|m| !LAYERS.iter().any(|l| l.contains(&m.as_str())))
        .collect();
    assert!(unplaced.is_empty(), "modules in no layer: {unplaced:?}");
    let wrong = violations(&edges);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_scan_sees_groups_and_ignores_comments_and_strings() {
    let source = r##"
        use crate::limits::{self, Admission};
        use crate::{body::ProxyBody, json::{quote, splice}, refusal};
        // use crate::config::Config;
        /* crate::app::App */
        const S: &str = "crate::server::Running";
        const R: &str = r#"crate::dev::x"#;
        const C: char = '"';
        const B: &[u8] = br#"crate::admin"#;
        const Q: &str = r"\";
        fn f() { crate::metrics::render(); crate :: route::admit(); }
        use super::store::Usage;
    "##;
    let found: Vec<String> = imports(source, true).into_iter().collect();
    assert_eq!(
        found,
        ["body", "json", "limits", "metrics", "refusal", "route", "store"]
    );
    let nested: Vec<String> = imports("use super::x; use crate::{self as c};", false)
        .into_iter()
        .collect();
    assert_eq!(nested, ["<alias of crate>"]);
}

#[test]
fn a_back_edge_is_refused() {
    // rewrite (stage 4) reaching up into respond (stage 6), and a stage into config.
    let mut edges = BTreeMap::new();
    edges.insert("rewrite".to_owned(), BTreeSet::from(["respond".to_owned()]));
    edges.insert("limits".to_owned(), BTreeSet::from(["config".to_owned()]));
    edges.insert("respond".to_owned(), BTreeSet::from(["rewrite".to_owned()]));
    let wrong = violations(&edges);
    assert_eq!(
        wrong,
        [
            "limits imports config, which is not below it in the corridor",
            "rewrite imports respond, which is not below it in the corridor",
        ]
    );
}
