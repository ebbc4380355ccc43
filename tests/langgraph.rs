//! LangGraph's server behind tenantgate: the real `langgraph dev` (langgraph-api, in
//! memory) and the official `langgraph_sdk` client (`tests/langgraph/driver.py`),
//! through `config/presets/langgraph.toml`. Two users write the same namespaces and
//! keys and each gets, searches, lists, pages through and deletes only their own,
//! exactly as written; every way of naming the other's namespace finds nothing, and
//! LangGraph's own data is verified by asking it directly.
//!
//! Needs the virtualenv `scripts/test.sh` makes (`.venv-langgraph`, or
//! `LANGGRAPH_VENV`): without it this test fails and says how to make it; it never
//! skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::Proxy;
use tokio::process::Command;

const SERVER_START: Duration = Duration::from_secs(90);
const DRIVER_TIME: Duration = Duration::from_secs(300);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn venv() -> PathBuf {
    std::env::var_os("LANGGRAPH_VENV").map_or_else(|| root().join(".venv-langgraph"), PathBuf::from)
}

/// `langgraph dev` writes `.langgraph_api/` where it runs: a fresh copy of the project.
fn project_copy(into: &Path) {
    for file in ["langgraph.json", "graph.py"] {
        std::fs::copy(
            root().join("tests/langgraph/project").join(file),
            into.join(file),
        )
        .expect("the project file is copied");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_langgraph_sdk_is_isolated_per_user_through_the_preset() {
    let venv = venv();
    let (langgraph, python) = (venv.join("bin/langgraph"), venv.join("bin/python"));
    assert!(
        langgraph.exists() && python.exists(),
        "LangGraph is not installed at {}: run scripts/test.sh, which makes it with \
         `python3 -m venv .venv-langgraph && .venv-langgraph/bin/pip install -r tests/langgraph/requirements.txt`",
        venv.display()
    );
    let project = tempfile::tempdir().expect("a temp dir");
    project_copy(project.path());
    let port = common::free_port();
    let mut server = Command::new(&langgraph)
        .args(["dev", "--no-browser", "--no-reload", "--host", "127.0.0.1"])
        .args(["--port", &port.to_string()])
        .current_dir(project.path())
        .env("LANGGRAPH_CLI_NO_ANALYTICS", "1")
        .env("LANGGRAPH_NO_VERSION_CHECK", "true")
        .env("LANGSMITH_TRACING", "false")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("langgraph dev starts");
    common::until_ok(port, "/ok", SERVER_START).await;

    let server_url = format!("http://127.0.0.1:{port}");
    let preset =
        std::fs::read_to_string(root().join("config/presets/langgraph.toml")).expect("the preset");
    let config = preset.replace("http://127.0.0.1:2024", &server_url)
        + "\n[admin]\ntoken = \"admin-token\"\n";
    let proxy = Proxy::start_raw(&config).await;

    let run = Command::new(&python)
        .arg(root().join("tests/langgraph/driver.py"))
        .args(["--proxy", &format!("http://{}", proxy.addr)])
        .args(["--server", &server_url])
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
        "the LangGraph driver failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("langgraph e2e:") && l.ends_with(" 0 failed")),
        "{stdout}"
    );
    // The preset's own canaries hold against the same server (in-process verify).
    common::assert_verify_holds(&config).await;
    server.kill().await.expect("langgraph dev stops");
}
