//! The playground's script: each step is a request one user makes through the proxy
//! and what tenantgate should answer. `tenantgate dev` prints the steps as curl
//! commands; the integration tests send the same steps over HTTP and hold the proxy to
//! the expected answers, so the printed walkthrough cannot drift from the truth.

use std::fmt::Write;
use std::net::SocketAddr;

/// What tenantgate answers to a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The backend's answer, after the response stage, with this status.
    Delivered(u16),
    /// A refusal: this status and SPEC 7 code.
    Refused(u16, &'static str),
}

#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// What the step shows, printed above its command.
    pub shows: &'static str,
    /// The end-user named in the identity header, if any.
    pub user: Option<&'static str>,
    pub method: &'static str,
    pub path: &'static str,
    pub json: Option<&'static str>,
    pub expect: Expect,
}

impl Step {
    /// The request headers, beyond what every client sends.
    pub fn headers(&self, identity_header: &str) -> Vec<(String, String)> {
        let mut headers = Vec::new();
        if let Some(user) = self.user {
            headers.push((identity_header.to_owned(), user.to_owned()));
        }
        if self.json.is_some() {
            headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
        }
        headers
    }

    /// The step as a ready-to-paste curl command against the proxy.
    pub fn curl(&self, proxy: SocketAddr, identity_header: &str) -> String {
        let mut command = String::from("curl -si");
        if self.method != "GET" {
            let _ = write!(command, " -X {}", self.method);
        }
        let _ = write!(command, " http://{proxy}{}", self.path);
        for (name, value) in self.headers(identity_header) {
            let _ = write!(command, " -H '{name}: {value}'");
        }
        if let Some(json) = self.json {
            let _ = write!(command, " -d '{json}'");
        }
        command
    }
}

const fn step(
    shows: &'static str,
    user: Option<&'static str>,
    request: (&'static str, &'static str),
    json: Option<&'static str>,
    expect: Expect,
) -> Step {
    Step {
        shows,
        user,
        method: request.0,
        path: request.1,
        json,
        expect,
    }
}

use Expect::{Delivered, Refused};

pub const ALICE: &str = "alice";
pub const BOB: &str = "bob";
/// What each user confides; neither may ever see the other's.
pub const ALICE_SECRET: &str = "Alice is allergic to peanuts";
pub const BOB_SECRET: &str = "Bob grows peanuts on his farm";

pub const STEPS: &[Step] = &[
    step(
        "alice remembers something in her session \"trip\" (Location comes back un-namespaced)",
        Some(ALICE),
        ("POST", "/v1/sessions/trip/memories"),
        Some(r#"{"text": "Alice is allergic to peanuts"}"#),
        Delivered(201),
    ),
    step(
        "bob uses the same session name; upstream it is a different session",
        Some(BOB),
        ("POST", "/v1/sessions/trip/memories"),
        Some(r#"{"text": "Bob grows peanuts on his farm"}"#),
        Delivered(201),
    ),
    step(
        "alice reads session \"trip\": only her memory",
        Some(ALICE),
        ("GET", "/v1/sessions/trip/memories"),
        None,
        Delivered(200),
    ),
    step(
        "bob reads session \"trip\": only his",
        Some(BOB),
        ("GET", "/v1/sessions/trip/memories"),
        None,
        Delivered(200),
    ),
    step(
        "alice recalls without a session (the backend would search everyone): only hers",
        Some(ALICE),
        ("POST", "/v1/search"),
        Some(r#"{"query": "peanuts"}"#),
        Delivered(200),
    ),
    step(
        "bob recalls the same way: only his",
        Some(BOB),
        ("POST", "/v1/search"),
        Some(r#"{"query": "peanuts"}"#),
        Delivered(200),
    ),
    step(
        "alice lists sessions (the backend lists everyone's): hers, with her own ids",
        Some(ALICE),
        ("GET", "/v1/sessions"),
        None,
        Delivered(200),
    ),
    step(
        "bob lists sessions: his",
        Some(BOB),
        ("GET", "/v1/sessions"),
        None,
        Delivered(200),
    ),
    step(
        "a per-user call that names no user is refused",
        None,
        ("GET", "/v1/sessions"),
        None,
        Refused(400, "tenant_required"),
    ),
    step(
        "alice naming bob in the body is refused",
        Some(ALICE),
        ("POST", "/v1/search"),
        Some(r#"{"query": "peanuts", "user_id": "bob"}"#),
        Refused(403, "tenant_mismatch"),
    ),
    step(
        "an operator object instead of a user id is refused",
        Some(ALICE),
        ("POST", "/v1/search"),
        Some(r#"{"query": "peanuts", "user_id": {"$ne": "alice"}}"#),
        Refused(400, "bad_request"),
    ),
    step(
        "reset would wipe every user: refused",
        Some(ALICE),
        ("POST", "/v1/reset"),
        None,
        Refused(403, "route_not_allowed"),
    ),
    step(
        "delete-all likewise",
        Some(ALICE),
        ("DELETE", "/v1/memories"),
        None,
        Refused(403, "route_not_allowed"),
    ),
    step(
        "an endpoint with no user filter answers with bob's data: the leak guard withholds it",
        Some(ALICE),
        ("GET", "/v1/memories/recent"),
        None,
        Refused(502, "isolation_violation"),
    ),
    step(
        "a shared route needs no user",
        None,
        ("GET", "/v1/health"),
        None,
        Delivered(200),
    ),
];

/// The admin listener, for the walkthrough's last commands.
pub struct Admin<'a> {
    pub addr: SocketAddr,
    pub token: &'a str,
}

/// What the walkthrough ends with: what the steps left behind, as the operator reads
/// it on the admin listener. `/metrics` needs no token (Prometheus scrapes it).
pub const ADMIN_STEPS: &[(&str, &str, bool)] = &[
    (
        "what each user used, metered from the 2xx answers (billing reads this)",
        "/usage/by-user",
        true,
    ),
    (
        "every tenant seen, with near-duplicate ids flagged",
        "/admin/tenants",
        true,
    ),
    ("the Prometheus metrics, no token needed", "/metrics", false),
];

/// The walkthrough as printed by `tenantgate dev`.
pub fn render(proxy: SocketAddr, identity_header: &str, admin: &Admin<'_>) -> String {
    let mut out = String::new();
    for (n, step) in STEPS.iter().enumerate() {
        let answer = match step.expect {
            Delivered(status) => format!("{status}"),
            Refused(status, code) => format!("{status} {code}"),
        };
        let _ = writeln!(out, "# {}. {} -> {answer}", n + 1, step.shows);
        let _ = writeln!(out, "{}\n", step.curl(proxy, identity_header));
    }
    for (n, (shows, path, with_token)) in ADMIN_STEPS.iter().enumerate() {
        let _ = writeln!(out, "# {}. {shows} -> 200", STEPS.len() + n + 1);
        let authorization = if *with_token {
            format!(" -H 'Authorization: Bearer {}'", admin.token)
        } else {
            String::new()
        };
        let _ = writeln!(out, "curl -si{authorization} http://{}{path}\n", admin.addr);
    }
    out
}
