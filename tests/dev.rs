//! `tenantgate dev` as a newcomer meets it: the real binary with the project's
//! `config/tenantgate.toml`, its printed curl commands parsed and sent over HTTP as
//! they are written. Two users share one unsafe backend; neither ever sees the other.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;

use common::{RawResponse, PATIENCE};
use tenantgate::dev::walkthrough::{Expect, ALICE_SECRET, BOB_SECRET, STEPS};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tenantgate");

/// A printed command, taken apart the way a shell would.
#[derive(Debug)]
struct Curl {
    method: String,
    addr: SocketAddr,
    target: String,
    headers: Vec<String>,
    body: Vec<u8>,
}

impl Curl {
    fn parse(line: &str) -> Self {
        let words = shell_words(line);
        assert_eq!(words[..2], ["curl", "-si"], "{line}");
        let mut curl = Curl {
            method: "GET".to_owned(),
            addr: "127.0.0.1:1".parse().unwrap(),
            target: String::new(),
            headers: Vec::new(),
            body: Vec::new(),
        };
        let mut words = words.into_iter().skip(2);
        while let Some(word) = words.next() {
            match word.as_str() {
                "-X" => curl.method = words.next().unwrap(),
                "-H" => curl.headers.push(words.next().unwrap()),
                "-d" => curl.body = words.next().unwrap().into_bytes(),
                url => {
                    let rest = url.strip_prefix("http://").expect("an http URL");
                    let slash = rest.find('/').unwrap();
                    curl.addr = rest[..slash].parse().unwrap();
                    curl.target = rest[slash..].to_owned();
                }
            }
        }
        if !curl.body.is_empty() && curl.method == "GET" {
            curl.method = "POST".to_owned();
        }
        curl
    }

    fn user(&self) -> Option<&str> {
        self.headers
            .iter()
            .find_map(|h| h.strip_prefix("x-tenant-id: "))
    }

    async fn send(&self) -> RawResponse {
        let headers: Vec<&str> = self.headers.iter().map(String::as_str).collect();
        let request = common::request_bytes(&self.method, &self.target, &headers, &self.body);
        common::raw(self.addr, &request).await
    }
}

/// Splits on spaces outside single quotes, as sh does for these commands.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '\'' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    assert!(!quoted, "unbalanced quotes in {line}");
    if !word.is_empty() {
        words.push(word);
    }
    words
}

fn text(response: &RawResponse) -> String {
    let mut all = String::from_utf8_lossy(&response.body).into_owned();
    for (name, value) in &response.headers {
        all.push_str(&format!("\n{name}: {value}"));
    }
    all.to_lowercase()
}

#[tokio::test]
async fn the_printed_walkthrough_keeps_two_users_apart() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/tenantgate.toml");
    let mut child = Command::new(BIN)
        .args(["dev", "--config", config, "--listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let (backend, commands) = tokio::time::timeout(PATIENCE, async {
        let mut backend = None;
        let mut commands = Vec::new();
        while commands.len() < STEPS.len() {
            let line = stdout.next_line().await.unwrap().expect("dev prints");
            if let Some(rest) = line.trim().strip_prefix("backend  http://") {
                backend = rest.split_whitespace().next().map(str::to_owned);
            }
            if line.starts_with("curl ") {
                commands.push(Curl::parse(&line));
            }
        }
        (backend.expect("the backend's address is printed"), commands)
    })
    .await
    .expect("dev printed every step");

    for (n, (curl, step)) in commands.iter().zip(STEPS).enumerate() {
        assert_eq!(curl.user(), step.user, "step {}", n + 1);
        let response = curl.send().await;
        match step.expect {
            Expect::Delivered(status) => {
                assert_eq!(response.status, status, "step {}: {response:?}", n + 1)
            }
            Expect::Refused(status, code) => response.assert_refusal(status, code),
        }
        let seen = text(&response);
        match curl.user() {
            Some("alice") => assert!(
                !seen.contains("bob") && !seen.contains(&BOB_SECRET.to_lowercase()),
                "step {}: alice saw bob: {seen}",
                n + 1
            ),
            Some("bob") => assert!(
                !seen.contains("alice") && !seen.contains(&ALICE_SECRET.to_lowercase()),
                "step {}: bob saw alice: {seen}",
                n + 1
            ),
            _ => {}
        }
    }

    // What each user got is their own, under the names they chose.
    let as_user = |user: &str, method: &str, target: &str, body: &str| {
        let header = format!("x-tenant-id: {user}");
        let addr = commands[0].addr;
        let request = common::request_bytes(
            method,
            target,
            &[&header, "Content-Type: application/json"],
            body.as_bytes(),
        );
        async move { common::raw(addr, &request).await.json() }
    };
    let alice_trip = as_user("alice", "GET", "/v1/sessions/trip/memories", "").await;
    assert_eq!(alice_trip["memories"][0]["text"], ALICE_SECRET);
    assert_eq!(alice_trip["memories"][0]["session_id"], "trip");
    assert_eq!(alice_trip["memories"][0]["user_id"], "alice");
    assert_eq!(alice_trip["memories"].as_array().unwrap().len(), 1);
    let bob_recall = as_user("bob", "POST", "/v1/search", r#"{"query":"peanuts"}"#).await;
    assert_eq!(bob_recall["results"].as_array().unwrap().len(), 1);
    assert_eq!(bob_recall["results"][0]["text"], BOB_SECRET);
    let alice_sessions = as_user("alice", "GET", "/v1/sessions", "").await;
    assert_eq!(
        alice_sessions,
        serde_json::json!({"sessions": [{"id": "trip", "memories": 1}]})
    );

    // The backend itself keeps nothing apart: the proxy did.
    let direct = common::raw(
        backend.parse().unwrap(),
        &common::request_bytes("GET", "/v1/sessions", &[], b""),
    )
    .await
    .json();
    assert_eq!(
        direct,
        serde_json::json!({"sessions": [
            {"id": "u_alice__trip", "memories": 1},
            {"id": "u_bob__trip", "memories": 1}
        ]})
    );

    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().await;
    assert!(killed.unwrap().success());
    let status = tokio::time::timeout(PATIENCE, child.wait()).await.unwrap();
    assert_eq!(status.unwrap().code(), Some(0));
}
