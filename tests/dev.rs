//! `tenantgate dev` as a newcomer meets it: the real binary with the project's
//! `config/tenantgate.toml`, its printed curl commands parsed and sent over HTTP as
//! they are written. Two users share one unsafe backend; neither ever sees the other.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::{Playground, RawResponse};
use tenantgate::dev::walkthrough::{Expect, ADMIN_STEPS, ALICE_SECRET, BOB_SECRET, STEPS};

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

/// Sends the printed walkthrough steps as written, holds each to its expected answer
/// and checks neither user ever sees the other; the printed commands, parsed.
async fn walk(dev: &Playground) -> Vec<Curl> {
    let commands: Vec<Curl> = dev.curls.iter().map(|l| Curl::parse(l)).collect();
    assert_eq!(
        commands.len(),
        STEPS.len() + ADMIN_STEPS.len(),
        "{:#?}",
        dev.banner
    );
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
    commands
}

#[tokio::test]
async fn the_printed_walkthrough_keeps_two_users_apart() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/tenantgate.toml");
    let dev = Playground::start(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        Some(Path::new(config)),
    )
    .await;
    let commands = walk(&dev).await;

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
        dev.backend,
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
    assert_eq!(dev.stop().await, Some(0));
}

/// A newcomer with an installed binary: no checkout, no config file. The built-in
/// playground answers, and the admin commands it prints at the end work as printed,
/// with the token it made up.
#[tokio::test]
async fn dev_from_an_empty_directory_uses_the_built_in_config_and_its_admin_commands_answer() {
    let empty = tempfile::tempdir().unwrap();
    let dev = Playground::start(empty.path(), None).await;
    let banner = dev.banner.join("\n");
    assert!(banner.contains("built into this binary"), "{banner}");
    let commands = walk(&dev).await;

    let admin = &commands[STEPS.len()..];
    for (curl, (_, path, with_token)) in admin.iter().zip(ADMIN_STEPS) {
        assert_eq!(curl.addr, dev.admin);
        assert_eq!(&curl.target, path);
        let bearer = curl
            .headers
            .iter()
            .any(|h| h.starts_with("Authorization: Bearer tgdev-"));
        assert_eq!(bearer, *with_token, "{curl:?}");
    }
    let usage = admin[0].send().await;
    assert_eq!(usage.status, 200, "{usage:?}");
    let rows = usage.json();
    let users: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(users.len(), 2, "{rows}");
    assert!(users.contains(&"alice") && users.contains(&"bob"), "{rows}");
    for row in rows.as_array().unwrap() {
        assert!(row["events"].as_u64().unwrap() >= 3, "{row}");
    }

    let tenants = admin[1].send().await;
    assert_eq!(tenants.status, 200, "{tenants:?}");
    let tenants = tenants.text();
    assert!(
        tenants.contains("\"alice\"") && tenants.contains("\"bob\""),
        "{tenants}"
    );

    let metrics = admin[2].send().await;
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .text()
        .contains("tenantgate_requests_total{route=\"memories.add\",status_class=\"2xx\"} 2"));

    // The token is what opens the admin API: without it, 401.
    let mut tokenless = Curl::parse(&dev.curls[STEPS.len()]);
    tokenless.headers.clear();
    tokenless
        .send()
        .await
        .assert_refusal(401, "unauthenticated");
    assert_eq!(dev.stop().await, Some(0));
}
