//! What every stage's compile step shares: key paths into the config file and the
//! collector of errors found along them. A stage compiles its part of the file and
//! reports each problem at the key it belongs to; `config/` turns those paths into
//! `file:line:col` against the original text.

pub mod locate;
pub mod units;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A key path into the file, like `route[2].match`.
pub type KeyPath = Vec<Seg>;

pub fn key(name: &str) -> Seg {
    Seg::Key(name.to_owned())
}

/// `base` followed by the keys `keys`.
pub fn at(base: &[Seg], keys: &[&str]) -> KeyPath {
    let mut path = base.to_vec();
    path.extend(keys.iter().map(|k| key(k)));
    path
}

/// A file a compiled config was read from besides the config file itself (a key
/// file, a certificate), as it read: the watcher reloads the config when its content
/// changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedFile {
    pub path: std::path::PathBuf,
    pub sha256: String,
}

/// Reads a file the config names, for the stage that compiles it; a read error is
/// reported at `at`.
pub fn read_watched(
    path: &std::path::Path,
    at: KeyPath,
    errors: &mut Errors,
) -> Option<(Vec<u8>, WatchedFile)> {
    use sha2::{Digest, Sha256};
    match std::fs::read(path) {
        Ok(bytes) => {
            let file = WatchedFile {
                path: path.to_owned(),
                sha256: hex::encode(Sha256::digest(&bytes)),
            };
            Some((bytes, file))
        }
        Err(e) => {
            errors.add(at, format!("cannot read {}: {e}", path.display()));
            None
        }
    }
}

/// Every error a compile step found, each at its key path; compiling goes on after an
/// error so that one run reports them all.
#[derive(Debug, Default)]
pub struct Errors(Vec<(KeyPath, String)>);

impl Errors {
    pub fn add(&mut self, path: KeyPath, message: impl Into<String>) {
        self.0.push((path, message.into()));
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_inner(self) -> Vec<(KeyPath, String)> {
        self.0
    }
}

/// For stage tests: deserializes `toml` as `T`, runs `compile` on it and returns what
/// it built, or its errors as `line:col: message` against `toml`, the way `check`
/// prints them.
#[cfg(test)]
pub fn compile_str<T, R>(
    toml: &str,
    compile: impl FnOnce(&T, &mut Errors) -> Option<R>,
) -> Result<R, Vec<String>>
where
    T: serde::de::DeserializeOwned,
{
    let spec: T = toml::from_str(toml).map_err(|e| vec![e.to_string()])?;
    let mut errors = Errors::default();
    let built = compile(&spec, &mut errors);
    let doc = toml_edit::ImDocument::parse(toml).map_err(|e| vec![e.to_string()])?;
    if errors.is_empty() {
        return built.ok_or_else(|| vec!["compile returned nothing and no error".to_owned()]);
    }
    Err(errors
        .into_inner()
        .into_iter()
        .map(|(path, message)| {
            let span = locate::locate(doc.as_table(), &path, locate::Target::Value);
            let (line, col) = locate::line_col(toml, span.map_or(0, |s| s.start));
            format!("{line}:{col}: {message}")
        })
        .collect())
}
