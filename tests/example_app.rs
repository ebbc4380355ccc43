//! `examples/app` (the /chat handler of Tex's FastAPI recipe, written for tenantgate)
//! run for real: uvicorn serving it, `tenantgate dev` started from an empty directory
//! as its memory service, two users chatting in sessions of the same name. Each must
//! recall only their own memory, and the usage the operator reads must show both.
//!
//! Needs the virtualenv `scripts/test.sh` makes (`.venv`, from
//! `examples/app/requirements.txt`); without it this test fails, it never skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::{Playground, PATIENCE};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The example app on a port the kernel picked, ended by pid.
struct App {
    child: Child,
    addr: std::net::SocketAddr,
}

impl App {
    async fn start(memory: std::net::SocketAddr) -> Self {
        let python = PathBuf::from(ROOT).join(".venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: scripts/test.sh makes it (python3 -m venv .venv && \
             .venv/bin/pip install -r examples/app/requirements.txt)",
            python.display()
        );
        let mut child = Command::new(python)
            .arg(Path::new(ROOT).join("examples/app/serve.py"))
            .env("MEMORY_URL", format!("http://{memory}"))
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(PATIENCE * 3, stdout.next_line())
            .await
            .expect("the app starts")
            .unwrap()
            .expect("the app prints its port");
        let port: u16 = line.strip_prefix("listening ").unwrap().parse().unwrap();
        common::until_ok(port, "/docs", PATIENCE * 3).await;
        Self {
            child,
            addr: ([127, 0, 0, 1], port).into(),
        }
    }

    /// `POST /chat` as `user`: the app's answer.
    async fn chat(&self, user: &str, session: &str, text: &str) -> serde_json::Value {
        let body = serde_json::json!({ "text": text, "session_id": session }).to_string();
        let user = format!("X-User-Id: {user}");
        let request = common::request_bytes(
            "POST",
            "/chat",
            &[&user, "Content-Type: application/json"],
            body.as_bytes(),
        );
        let response = common::raw(self.addr, &request).await;
        assert_eq!(response.status, 200, "{response:?}");
        response.json()
    }

    async fn stop(mut self) {
        let pid = self.child.id().unwrap().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().await;
        assert!(killed.unwrap().success());
        let _ = tokio::time::timeout(PATIENCE, self.child.wait()).await;
    }
}

fn texts(answer: &serde_json::Value) -> Vec<&str> {
    answer["memory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn two_users_of_the_example_app_each_recall_only_their_own_memory() {
    let empty = tempfile::tempdir().unwrap();
    let dev = Playground::start(empty.path(), None).await;
    let app = App::start(dev.proxy).await;

    // Both name their session "trip": the app passes it as the client chose it.
    let first = app.chat("alice", "trip", "I am allergic to peanuts").await;
    assert_eq!(texts(&first), Vec::<&str>::new());
    app.chat("bob", "trip", "I grow peanuts on my farm").await;

    let alice = app.chat("alice", "trip", "what should I cook?").await;
    let recalled = texts(&alice);
    assert!(
        recalled.contains(&"user: I am allergic to peanuts"),
        "{alice}"
    );
    assert!(
        !alice.to_string().contains("farm"),
        "alice recalled bob's memory: {alice}"
    );
    let bob = app.chat("bob", "trip", "what should I plant?").await;
    assert!(
        texts(&bob).contains(&"user: I grow peanuts on my farm"),
        "{bob}"
    );
    assert!(
        !bob.to_string().contains("allergic"),
        "bob recalled alice's memory: {bob}"
    );

    // Upstream they are two sessions the app never named: tenantgate did.
    let sessions = common::raw(
        dev.backend,
        &common::request_bytes("GET", "/v1/sessions", &[], b""),
    )
    .await
    .json();
    assert_eq!(
        sessions,
        serde_json::json!({"sessions": [
            {"id": "u_alice__trip", "memories": 4},
            {"id": "u_bob__trip", "memories": 4}
        ]})
    );

    // The operator's view: the printed usage command, as printed, shows both users.
    let usage_command = dev
        .curls
        .iter()
        .find(|c| c.ends_with("/usage/by-user"))
        .expect("dev prints the usage command");
    let token = usage_command
        .split("Bearer ")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap();
    let authorization = format!("Authorization: Bearer {token}");
    let usage = common::raw(
        dev.admin,
        &common::request_bytes("GET", "/usage/by-user", &[&authorization], b""),
    )
    .await
    .json();
    let units = |user: &str| {
        usage
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["user_id"] == user)
            .unwrap_or_else(|| panic!("{user} has a usage row: {usage}"))["events"]
            .as_u64()
            .unwrap()
    };
    // Each /chat is a recall and two writes, every one a 2xx.
    assert_eq!((units("alice"), units("bob")), (6, 6), "{usage}");

    app.stop().await;
    assert_eq!(dev.stop().await, Some(0));
}
