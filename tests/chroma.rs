//! Chroma itself behind tenantgate: the real Chroma 1.5.9 server and its official
//! Python client (`tests/chroma/driver.py`), through `config/presets/chroma.toml`.
//! Two users connect with no setup step, use the same collection names and see only
//! their own data; every UUID route addressed with the other user's collection is
//! 404 and Chroma's own data is verified unchanged by asking Chroma directly.
//!
//! Needs the virtualenv `scripts/test.sh` makes (`.venv-chroma`, or `CHROMA_VENV`):
//! without it this test fails and says how to make it; it never skips.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::Proxy;
use tokio::process::Command;

const CHROMA_START: Duration = Duration::from_secs(60);
const DRIVER_TIME: Duration = Duration::from_secs(300);

fn venv() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("CHROMA_VENV").map_or_else(|| root.join(".venv-chroma"), PathBuf::from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_chroma_client_is_isolated_per_user_through_the_preset() {
    let venv = venv();
    let (chroma_bin, python) = (venv.join("bin/chroma"), venv.join("bin/python"));
    assert!(
        chroma_bin.exists() && python.exists(),
        "Chroma is not installed at {}: run scripts/test.sh, which makes it with \
         `python3 -m venv .venv-chroma && .venv-chroma/bin/pip install chromadb==1.5.9`",
        venv.display()
    );
    let data = tempfile::tempdir().expect("a temp dir");
    let port = common::free_port();
    let mut chroma = Command::new(&chroma_bin)
        .args(["run", "--path"])
        .arg(data.path())
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .env("ANONYMIZED_TELEMETRY", "False")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chroma starts");
    common::until_ok(port, "/api/v2/heartbeat", CHROMA_START).await;

    let chroma_url = format!("http://127.0.0.1:{port}");
    let preset = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/presets/chroma.toml"),
    )
    .expect("the preset");
    let config = preset.replace("http://127.0.0.1:8000", &chroma_url)
        + "\n[admin]\ntoken = \"admin-token\"\n";
    let proxy = Proxy::start_raw(&config).await;

    let driver = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/chroma/driver.py");
    let run = Command::new(&python)
        .arg(&driver)
        .args(["--proxy", &format!("http://{}", proxy.addr)])
        .args(["--chroma", &chroma_url])
        .env("ANONYMIZED_TELEMETRY", "False")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(DRIVER_TIME, run)
        .await
        .expect("the driver finished in time")
        .expect("the driver ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the Chroma driver failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("chroma e2e:") && l.ends_with(" 0 failed")),
        "{stdout}"
    );

    let metrics = String::from_utf8(proxy.admin_get("/metrics", &[]).await.body).unwrap();
    let denials = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tenantgate_ownership_denials_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        denials > 0,
        "the cross-tenant calls were refused by ownership: {denials}"
    );

    // The preset's own canaries hold against the same server (in-process verify).
    common::assert_verify_holds(&config).await;
    chroma.kill().await.expect("chroma stops");
}
