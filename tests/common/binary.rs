//! The real `tenantgate` binary: a `tenantgate run` child process on ephemeral ports,
//! its stdout collected and its stderr drained, signalled and stopped by pid.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncReadExt;

use super::PATIENCE;

/// A `tenantgate run` child process, ended by the test by pid.
pub struct Binary {
    pub child: tokio::process::Child,
    pub pid: String,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    /// Everything it printed on stdout (the audit log), collected as it comes.
    pub stdout: Arc<Mutex<Vec<u8>>>,
    /// Its stderr (the operational log), line by line.
    pub stderr: Arc<Mutex<Vec<String>>>,
    /// Ends when stdout does: after a stop, everything printed has been collected.
    stdout_read: tokio::task::JoinHandle<()>,
}

impl Binary {
    /// Starts `tenantgate run --config PATH` on ephemeral ports and waits until it
    /// serves.
    pub async fn run(config: &std::path::Path) -> Self {
        Self::launch(config, false).await
    }

    /// As `run`, naming the config in `TENANTGATE_CONFIG` instead of `--config`.
    pub async fn run_from_env(config: &std::path::Path) -> Self {
        Self::launch(config, true).await
    }

    async fn launch(config: &std::path::Path, from_env: bool) -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantgate"));
        command.args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ]);
        if from_env {
            command.env("TENANTGATE_CONFIG", config);
        } else {
            command
                .arg("--config")
                .arg(config)
                .env_remove("TENANTGATE_CONFIG");
        }
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap().to_string();
        let stdout: Arc<Mutex<Vec<u8>>> = Arc::default();
        let (mut out, collected) = (child.stdout.take().unwrap(), stdout.clone());
        let stdout_read = tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                collected.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let logged: Arc<Mutex<Vec<String>>> = Arc::default();
        let (proxy, admin) = tokio::time::timeout(PATIENCE, async {
            loop {
                let line = stderr
                    .next_line()
                    .await
                    .unwrap()
                    .expect("tenantgate serves");
                logged.lock().unwrap().push(line.clone());
                let field = |name: &str| {
                    let at = line.find(name)? + name.len();
                    line[at..]
                        .split_whitespace()
                        .next()?
                        .parse::<SocketAddr>()
                        .ok()
                };
                if let (Some(p), Some(a)) = (field("proxy_addr="), field("admin_addr=")) {
                    return (p, a);
                }
            }
        })
        .await
        .unwrap();
        // Keep draining stderr so the child never blocks on a full pipe.
        let keep = logged.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                keep.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            pid,
            proxy,
            admin,
            stdout,
            stdout_read,
            stderr: logged,
        }
    }

    /// Sends a signal (`-HUP`, ...) to this child, by pid.
    pub async fn signal(&self, signal: &str) {
        let sent = tokio::process::Command::new("kill")
            .args([signal, &self.pid])
            .status()
            .await
            .unwrap();
        assert!(sent.success());
    }

    /// Sends a signal (`-TERM`, `-KILL`, ...) and waits for the child to exit.
    pub async fn stop(mut self, signal: &str) -> Option<i32> {
        self.signal(signal).await;
        let code = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .unwrap()
            .unwrap()
            .code();
        // The last audit lines are flushed at exit: read them to the pipe's end.
        tokio::time::timeout(PATIENCE, &mut self.stdout_read)
            .await
            .unwrap()
            .unwrap();
        code
    }
}
