//! The real `tenantgate dev` as a child process: its banner read up to the last line,
//! the addresses, admin token and printed commands taken from it, stopped by pid.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::PATIENCE;

pub struct Playground {
    child: Child,
    /// Every line of the banner, as printed.
    pub banner: Vec<String>,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub backend: SocketAddr,
    /// The printed commands, in order.
    pub curls: Vec<String>,
}

/// The address after `label` on a banner line such as `  proxy    http://ADDR with ...`.
fn address(lines: &[String], label: &str) -> SocketAddr {
    lines
        .iter()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.trim().strip_prefix("http://"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the banner names the {label}: {lines:#?}"))
        .parse()
        .unwrap()
}

impl Playground {
    /// Starts `tenantgate dev` in `dir` on ephemeral ports, with `--config` only if
    /// given, and no `TENANTGATE_CONFIG` from the test's environment.
    pub async fn start(dir: &Path, config: Option<&Path>) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tenantgate"));
        command.arg("dev");
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let mut child = command
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .current_dir(dir)
            .env_remove("TENANTGATE_CONFIG")
            .env_remove("TENANTGATE_ADMIN_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let banner = tokio::time::timeout(PATIENCE, async {
            let mut banner = Vec::new();
            loop {
                let line = stdout
                    .next_line()
                    .await
                    .unwrap()
                    .expect("dev prints its banner");
                let last = line.trim().starts_with("tenantgate verify");
                banner.push(line);
                if last {
                    return banner;
                }
            }
        })
        .await
        .expect("dev printed its banner");
        // The audit log follows on stdout: drained, so the pipe never fills.
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        let curls = banner
            .iter()
            .filter(|l| l.starts_with("curl "))
            .cloned()
            .collect();
        Self {
            proxy: address(&banner, "proxy"),
            admin: address(&banner, "admin"),
            backend: address(&banner, "backend"),
            child,
            banner,
            curls,
        }
    }

    /// SIGTERM by pid; the exit code.
    pub async fn stop(mut self) -> Option<i32> {
        let pid = self.child.id().unwrap().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().await;
        assert!(killed.unwrap().success());
        let status = tokio::time::timeout(PATIENCE, self.child.wait()).await;
        status.expect("dev stops on SIGTERM").unwrap().code()
    }
}
