//! Reloads the config when its file changes (SPEC 10). The watch is on the file's
//! directory, not the file: a Kubernetes ConfigMap volume updates by swapping its
//! `..data` symlink, which a watch on the file itself never reports, and editors save
//! by renaming a new file over the old one. Events are debounced, then the file's
//! content hash decides whether anything changed; a slow poll of the same hash backs
//! up a watch that missed something or could not be (re)armed.

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

/// What the watcher drives: whoever holds the running config.
pub trait Reload: Send + Sync + 'static {
    /// The SHA-256 of the file the running config was loaded from.
    fn serving_sha256(&self) -> String;
    /// What a reload did, for the log.
    type Outcome: std::fmt::Debug + Send + 'static;
    /// Reads the file again and installs it if the whole file is valid.
    fn reload(&self) -> Self::Outcome;
}

/// Arms the watch now (so a change made after this returns is seen), then watches
/// `path` on a task until it is aborted.
pub fn start<R: Reload>(target: Arc<R>, path: PathBuf, settings: ReloadSettings) -> JoinHandle<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let (tx, changes) = mpsc::channel::<Signal>(64);
    let watcher = settings.watch.then(|| arm(&dir, tx.clone())).flatten();
    tokio::spawn(run(target, path, dir, settings, watcher, (tx, changes)))
}

async fn run<R: Reload>(
    target: Arc<R>,
    path: PathBuf,
    dir: PathBuf,
    settings: ReloadSettings,
    mut watcher: Option<RecommendedWatcher>,
    (tx, mut changes): (mpsc::Sender<Signal>, mpsc::Receiver<Signal>),
) {
    // The hash last read: a file that fails to load is not retried until it changes.
    let mut last = Some(target.serving_sha256());
    let mut poll = (!settings.poll.is_zero()).then(|| {
        let mut every = tokio::time::interval(settings.poll);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every
    });
    loop {
        tokio::select! {
            Some(signal) = changes.recv() => {
                let mut lost = signal == Signal::WatchLost;
                // Debounce: a swap is several events; read once they stop.
                while let Ok(Some(more)) = tokio::time::timeout(settings.debounce, changes.recv()).await {
                    lost |= more == Signal::WatchLost;
                }
                if lost {
                    watcher = None;
                }
            }
            _ = tick(&mut poll) => {}
        }
        if settings.watch && watcher.is_none() {
            watcher = arm(&dir, tx.clone());
        }
        let now = digest(&path).await;
        if now.is_some() && now != last {
            last = now.clone();
            if now == Some(target.serving_sha256()) {
                continue; // already loaded (SIGHUP or the admin endpoint got there first)
            }
            let target = target.clone();
            let outcome = tokio::task::spawn_blocking(move || target.reload()).await;
            tracing::info!(?outcome, file = %path.display(), "config file changed");
        }
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

fn arm(dir: &Path, tx: mpsc::Sender<Signal>) -> Option<RecommendedWatcher> {
    let watched = dir.to_owned();
    let handler = move |event: notify::Result<notify::Event>| {
        let signal = match event {
            Ok(e) if matches!(e.kind, EventKind::Remove(_)) && e.paths.contains(&watched) => {
                Signal::WatchLost
            }
            Ok(e) if matches!(e.kind, EventKind::Access(_)) => return,
            Ok(_) => Signal::Changed,
            Err(_) => Signal::WatchLost,
        };
        // A full channel already holds a pending change.
        let _ = tx.try_send(signal);
    };
    let result = notify::recommended_watcher(handler)
        .and_then(|mut w| w.watch(dir, RecursiveMode::NonRecursive).map(|()| w));
    match result {
        Ok(watcher) => Some(watcher),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the config directory; polling only until it can be re-armed");
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
