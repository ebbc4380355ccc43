//! Reloads the config when its file, or a key file it names, changes (SPEC 10). The
//! watch is on each file's directory, not the file: a Kubernetes ConfigMap or Secret
//! volume updates by swapping its `..data` symlink, which a watch on the file itself
//! never reports, and editors save by renaming a new file over the old one. Events are
//! debounced, then the files' content hashes decide whether anything changed; a slow
//! poll of the same hashes backs up a watch that missed something or could not be
//! (re)armed. The set of files is asked for again after every reload, since a new
//! config may name other key files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::spec::units::Dur;

/// `[reload]`: how the config file is watched (SPEC 10).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadSpec {
    /// Watch the file's directory for changes (inotify and friends).
    pub watch: bool,
    /// Quiet time after the last change before the file is read.
    pub debounce: Dur,
    /// Interval of the content-hash poll that backs up the watch; "0s" turns it off.
    pub poll: Dur,
}

impl Default for ReloadSpec {
    fn default() -> Self {
        Self {
            watch: true,
            debounce: Dur(Duration::from_millis(200)),
            poll: Dur(Duration::from_secs(10)),
        }
    }
}

/// `[reload]`, read by the watcher when it starts (a change needs a restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadSettings {
    pub watch: bool,
    pub debounce: Duration,
    pub poll: Duration,
}

impl ReloadSettings {
    pub fn of(spec: &ReloadSpec) -> Self {
        Self {
            watch: spec.watch,
            debounce: spec.debounce.0,
            poll: spec.poll.0,
        }
    }
}

/// A file the running config was read from, and its SHA-256 as it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub path: PathBuf,
    pub sha256: String,
}

/// What the watcher drives: whoever holds the running config.
pub trait Reload: Send + Sync + 'static {
    /// The files the running config was loaded from: the config file, then the key
    /// files it names.
    fn inputs(&self) -> Vec<Input>;
    /// What a reload did, for the log.
    type Outcome: std::fmt::Debug + Send + 'static;
    /// Reads the file again and installs it if the whole file is valid.
    fn reload(&self) -> Self::Outcome;
    /// Whether that reload installed a new config.
    fn applied(outcome: &Self::Outcome) -> bool;
}

/// Arms the watch now (so a change made after this returns is seen), then watches
/// the target's inputs on a task until it is aborted.
pub fn start<R: Reload>(target: Arc<R>, settings: ReloadSettings) -> JoinHandle<()> {
    let (tx, changes) = mpsc::channel::<Signal>(64);
    let dirs = directories(&target.inputs());
    let watcher = settings.watch.then(|| arm(&dirs, tx.clone())).flatten();
    tokio::spawn(run(target, dirs, settings, watcher, (tx, changes)))
}

/// The directories to watch for these inputs, each once.
fn directories(inputs: &[Input]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = inputs
        .iter()
        .map(|input| match input.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

async fn run<R: Reload>(
    target: Arc<R>,
    mut dirs: Vec<PathBuf>,
    settings: ReloadSettings,
    mut watcher: Option<RecommendedWatcher>,
    (tx, mut changes): (mpsc::Sender<Signal>, mpsc::Receiver<Signal>),
) {
    // The hashes last read: files that fail to load are not retried until one changes,
    // or, while they fail, at each poll (a key file the failed config names may appear
    // later: a Secret updated after its ConfigMap).
    let mut failing = false;
    let serving = |inputs: &[Input]| -> Vec<Option<String>> {
        inputs.iter().map(|i| Some(i.sha256.clone())).collect()
    };
    let mut last = serving(&target.inputs());
    let mut poll = (!settings.poll.is_zero()).then(|| {
        let mut every = tokio::time::interval(settings.poll);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every
    });
    loop {
        let polled = tokio::select! {
            Some(signal) = changes.recv() => {
                let mut lost = signal == Signal::WatchLost;
                // Debounce: a swap is several events; read once they stop.
                while let Ok(Some(more)) = tokio::time::timeout(settings.debounce, changes.recv()).await {
                    lost |= more == Signal::WatchLost;
                }
                if lost {
                    watcher = None;
                }
                false
            }
            _ = tick(&mut poll) => true,
        };
        let inputs = target.inputs();
        rearm(&mut dirs, &inputs, &mut watcher, settings.watch, &tx);
        let mut now = Vec::with_capacity(inputs.len());
        for input in &inputs {
            now.push(digest(&input.path).await);
        }
        let changed_since = now.iter().all(Option::is_some) && now != last;
        if changed_since || (failing && polled) {
            last.clone_from(&now);
            if changed_since && now == serving(&inputs) {
                failing = false;
                continue; // already loaded (SIGHUP or the admin endpoint got there first)
            }
            let changed: Vec<String> = inputs
                .iter()
                .zip(&now)
                .filter(|(input, now)| now.as_deref() != Some(input.sha256.as_str()))
                .map(|(input, _)| input.path.display().to_string())
                .collect();
            let reloading = target.clone();
            let outcome = tokio::task::spawn_blocking(move || reloading.reload()).await;
            failing = !outcome.as_ref().is_ok_and(R::applied);
            tracing::info!(?outcome, files = ?changed, "config input changed");
            // A new config may name other files: from now on, compare against what it
            // read, and watch where they are at once.
            let after = target.inputs();
            rearm(&mut dirs, &after, &mut watcher, settings.watch, &tx);
            let same_files = after
                .iter()
                .map(|i| &i.path)
                .eq(inputs.iter().map(|i| &i.path));
            if !same_files {
                last = serving(&after);
            }
        }
    }
}

/// Moves the watch to the directories `inputs` live in, when they changed or the watch
/// was lost.
fn rearm(
    dirs: &mut Vec<PathBuf>,
    inputs: &[Input],
    watcher: &mut Option<RecommendedWatcher>,
    watch: bool,
    tx: &mpsc::Sender<Signal>,
) {
    let wanted = directories(inputs);
    if wanted != *dirs {
        *dirs = wanted;
        *watcher = None;
    }
    if watch && watcher.is_none() {
        *watcher = arm(dirs, tx.clone());
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Changed,
    /// The watch ended (its directory went away); re-arm it.
    WatchLost,
}

async fn tick(poll: &mut Option<tokio::time::Interval>) {
    match poll {
        Some(every) => {
            every.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn arm(dirs: &[PathBuf], tx: mpsc::Sender<Signal>) -> Option<RecommendedWatcher> {
    let watched = dirs.to_vec();
    let handler = move |event: notify::Result<notify::Event>| {
        let signal = match event {
            Ok(e)
                if matches!(e.kind, EventKind::Remove(_))
                    && e.paths.iter().any(|p| watched.contains(p)) =>
            {
                Signal::WatchLost
            }
            Ok(e) if matches!(e.kind, EventKind::Access(_)) => return,
            Ok(_) => Signal::Changed,
            Err(_) => Signal::WatchLost,
        };
        // A full channel already holds a pending change.
        let _ = tx.try_send(signal);
    };
    let result = notify::recommended_watcher(handler).and_then(|mut w| {
        for dir in dirs {
            w.watch(dir, RecursiveMode::NonRecursive)?;
        }
        Ok(w)
    });
    match result {
        Ok(watcher) => Some(watcher),
        Err(e) => {
            tracing::warn!(dirs = ?dirs, error = %e, "cannot watch the config's directories; polling only until they can be re-armed");
            None
        }
    }
}

/// The hex SHA-256 of the file as it reads now (through symlinks), as the loader
/// computes it; `None` while it cannot be read (mid-swap).
async fn digest(path: &Path) -> Option<String> {
    let path = path.to_owned();
    let bytes = tokio::task::spawn_blocking(move || std::fs::read(path))
        .await
        .ok()?
        .ok()?;
    Some(hex::encode(Sha256::digest(&bytes)))
}
