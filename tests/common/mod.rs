//! Test harness: a real recording upstream on an ephemeral port, tenantgate in-process
//! on port 0, and a raw-socket HTTP/1.1 client that sends bytes exactly as written (so
//! path and header tricks reach the proxy unmodified). Everything binds 127.0.0.1.
//!
//! `upstream.rs` is the recording upstream server (`Seen`, `Reply`, `Upstream`);
//! `proxy.rs` starts tenantgate in-process (`Proxy`); `client.rs` holds the raw-socket
//! client (`request_bytes`, `raw`, `RawResponse`, response parsing, `read_streamed`);
//! `binary.rs` drives the real `tenantgate` binary as a child process (`Binary`), and
//! `playground.rs` the real `tenantgate dev` (`Playground`). Every
//! public item is re-exported here, so tests name it as `common::X`.
#![allow(dead_code)]

use std::time::Duration;

pub mod binary;
pub mod client;
pub mod pki;
pub mod playground;
pub mod proxy;
pub mod redis;
pub mod upstream;

// Each test binary uses only some of these, so an unused re-export is expected.
#[allow(unused_imports)]
pub use self::{
    binary::Binary,
    client::{parse_response, raw, read_response, read_streamed, request_bytes, RawResponse},
    playground::Playground,
    proxy::Proxy,
    redis::RedisServer,
    upstream::{Reply, Seen, Upstream},
};

/// Writes `text` to `path` the way editors, config tools and Kubernetes volumes do: a
/// new file renamed over the old one, so a reader never sees half a file.
pub fn replace_file(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Upper bound for any single wait in a test: nothing here should take this long.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Runs the binary's `tenantgate verify` (in-process) with this config text and asserts
/// every scenario held.
pub async fn assert_verify_holds(config: &str) {
    let file = tempfile::NamedTempFile::new().expect("a temp file");
    std::fs::write(file.path(), config).expect("the config is written");
    let verified = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantgate"))
        .arg("verify")
        .arg("--config")
        .arg(file.path())
        .output()
        .await
        .expect("tenantgate verify runs");
    let report = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success() && report.ends_with("isolation held\n"),
        "tenantgate verify:\n{report}{}",
        String::from_utf8_lossy(&verified.stderr)
    );
}

/// A port nothing listens on now, for a child server told to bind it.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("bound").port()
}

/// Waits (at most `within`) until a child server on `port` answers `GET path` with 200.
pub async fn until_ok(port: u16, path: &str, within: Duration) {
    use tokio::io::AsyncWriteExt;
    let started = std::time::Instant::now();
    let request = request_bytes("GET", path, &[], b"");
    while started.elapsed() < within {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            if stream.write_all(&request).await.is_ok() {
                let answered =
                    tokio::time::timeout(Duration::from_secs(2), read_response(&mut stream)).await;
                if answered.is_ok_and(|r| r.status == 200) {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing answered GET {path} on port {port} with 200 within {within:?}");
}
