//! The deployment examples, checked as their tools read them: the Kubernetes manifests
//! strictly (kubernetes-validate, the Prometheus Operator's schema for the PodMonitor,
//! the kustomization as rendered), the sidecar's config by `tenantgate check` and its
//! canaries by `tenantgate verify`, the Prometheus config and rules by `promtool`
//! (their unit tests included), and the Grafana dashboard parsed, with every metric
//! the rules and the dashboard name found on a live `/metrics`.
//!
//! Needs what `scripts/test.sh` installs: `.venv` (scripts/requirements-tools.txt) and
//! Debian's prometheus package (promtool); without them these tests fail.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{Proxy, RedisServer};
use tokio::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_tenantgate");

fn path(relative: &str) -> PathBuf {
    Path::new(ROOT).join(relative)
}

fn tool(relative: &str) -> PathBuf {
    let tool = path(relative);
    assert!(
        tool.exists(),
        "{} is missing: scripts/test.sh installs it",
        tool.display()
    );
    tool
}

fn report(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn promtool(args: &[&str]) -> Output {
    Command::new("promtool")
        .args(args)
        .current_dir(path("examples/prometheus"))
        .output()
        .await
        .expect("promtool is installed (scripts/test.sh installs Debian's prometheus package)")
}

/// The secrets the sidecar's config reads, as the Secret would provide them.
const SIDECAR_ENV: &[(&str, &str)] = &[
    ("MEMORY_API_KEY", "backend-key"),
    ("TENANTGATE_ADMIN_TOKEN", "admin-token"),
    ("TENANTGATE_PRIVILEGED_TOKEN", "privileged-token"),
];

#[tokio::test]
async fn the_kubernetes_manifests_validate_strictly() {
    let dir = path("examples/kubernetes");
    let builtin = ["deployment.yaml", "service.yaml", "secret.yaml"];
    let out = Command::new(tool(".venv/bin/kubernetes-validate"))
        .arg("--strict")
        .args(builtin.iter().map(|f| dir.join(f)))
        .output()
        .await
        .unwrap();
    let text = report(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        text.matches(" passed for resource ").count(),
        builtin.len(),
        "{text}"
    );

    // Everything `kubectl apply -k` sends, the PodMonitor and the generated ConfigMap
    // included; kubernetes-validate only warns about kinds it has no schema for.
    let out = Command::new(tool(".venv/bin/python"))
        .arg(path("tests/examples/validate_kubernetes.py"))
        .arg(&dir)
        .output()
        .await
        .unwrap();
    let text = report(&out);
    assert!(out.status.success(), "{text}");
    for kind in [
        "deployment/",
        "service/",
        "secret/",
        "podmonitor/",
        "configmap/",
    ] {
        assert!(text.contains(kind), "{kind} was validated: {text}");
    }
}

#[tokio::test]
async fn the_sidecar_config_passes_check_and_its_grace_period_covers_the_drain() {
    let config = path("examples/kubernetes/tenantgate.toml");
    let out = Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(&config)
        .envs(SIDECAR_ENV.iter().copied())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", report(&out));

    let env = |name: &str| {
        SIDECAR_ENV
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    };
    let snapshot =
        tenantgate::config::load_file(&config, &Default::default(), &env).expect("it loads");
    let listen = &snapshot.config.listen;
    let drain = listen.drain_delay + listen.shutdown_grace;
    let deployment = std::fs::read_to_string(path("examples/kubernetes/deployment.yaml")).unwrap();
    let grace: u64 = deployment
        .lines()
        .find_map(|l| l.trim().strip_prefix("terminationGracePeriodSeconds:"))
        .expect("the pod sets its grace period")
        .trim()
        .parse()
        .unwrap();
    assert!(
        grace > drain.as_secs(),
        "terminationGracePeriodSeconds {grace} must exceed drain_delay + shutdown_grace ({drain:?}), \
         or the kubelet kills the sidecar mid-drain"
    );
    // The ConfigMap is mounted as a directory: a subPath mount never sees an update.
    let mounts_by_sub_path = deployment.lines().any(|l| {
        let l = l.trim_start().trim_start_matches("- ");
        l.starts_with("subPath:") || l.starts_with("subPathExpr:")
    });
    assert!(!mounts_by_sub_path, "no subPath mounts");
}

#[tokio::test]
async fn the_sidecar_configs_canaries_hold_in_front_of_the_playground_backend() {
    let backend = tenantgate::dev::backend::start().await.unwrap();
    let out = Command::new(BIN)
        .arg("verify")
        .arg("--config")
        .arg(path("examples/kubernetes/tenantgate.toml"))
        .args(["--upstream", &backend.url()])
        .envs(SIDECAR_ENV.iter().copied())
        .output()
        .await
        .unwrap();
    let text = report(&out);
    assert!(
        out.status.success() && text.contains("isolation held"),
        "{text}"
    );
}

#[tokio::test]
async fn the_prometheus_config_and_rules_pass_promtool_and_their_unit_tests() {
    // Debian's promtool is built without Kubernetes discovery and refuses
    // `kubernetes_sd_configs`; everything else (relabelling, the rule files it names)
    // is checked with that one block read as file discovery, beside copies of the rules.
    let config = std::fs::read_to_string(path("examples/prometheus/prometheus.yml")).unwrap();
    let pods = "kubernetes_sd_configs:\n      - role: pod\n";
    assert_eq!(config.matches(pods).count(), 1, "the pod discovery block");
    let dir = tempfile::tempdir().unwrap();
    let checked = config.replace(pods, "file_sd_configs:\n      - files: [pods.json]\n");
    std::fs::write(dir.path().join("prometheus.yml"), checked).unwrap();
    for rules in rule_files() {
        std::fs::copy(
            path("examples/prometheus").join(&rules),
            dir.path().join(&rules),
        )
        .unwrap();
    }
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(dir.path().join("prometheus.yml"))
        .output()
        .await
        .expect("promtool is installed");
    assert!(out.status.success(), "{}", report(&out));
    assert!(report(&out).contains("rules found"), "{}", report(&out));
    for rules in rule_files() {
        let out = promtool(&["check", "rules", &rules]).await;
        assert!(out.status.success(), "{rules}: {}", report(&out));
        let tests = rules.replace(".rules.yml", ".test.yml");
        let out = promtool(&["test", "rules", &tests]).await;
        assert!(out.status.success(), "{tests}: {}", report(&out));
        assert!(report(&out).contains("SUCCESS"), "{}", report(&out));
    }
}

/// Every `*.rules.yml` in examples/prometheus; each has its `*.test.yml`.
fn rule_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(path("examples/prometheus"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".rules.yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    files
}

/// The `tenantgate_*` and `process_*` names a text mentions, but for the parts of
/// recording rules' names (`level:tenantgate_requests:rate5m`).
fn metric_names(text: &str) -> BTreeSet<String> {
    let pattern =
        regex::Regex::new(r"(?:^|[^:a-z0-9_])((?:tenantgate|process)_[a-z0-9_]*[a-z0-9])(:?)")
            .unwrap();
    pattern
        .captures_iter(text)
        .filter(|c| c[2].is_empty())
        .map(|c| c[1].to_owned())
        .collect()
}

/// The series names a `/metrics` exposition can carry: each family, and a
/// histogram's `_bucket`, `_sum` and `_count`.
fn exported(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (name, kind) = (words.next().unwrap(), words.next().unwrap());
        names.insert(name.to_owned());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    names
}

/// A live `/metrics` of a proxy with the shared store, a plan, a degradable route, the
/// per-tenant series and a canary scenario, after traffic through each (families
/// with labels appear once a label value exists: a route's and a plan's at install).
async fn live_metrics() -> String {
    let redis = RedisServer::start().await;
    let backend = tenantgate::dev::backend::start().await.unwrap();
    let config = format!(
        r#"
[upstream]
url = "{backend}"
[identity]
mode = "header"
[tenant]
namespace = "u_{{tenant}}"
[limits]
default_plan = "free"
[limits.plans.free]
rate = 2
per = "1m"
burst = 2
[admin]
token = "t"
[store]
kind = "redis"
url = "{redis}"
[metrics]
per_tenant_top_k = 1
[[route]]
name = "search"
match = "POST /v1/search"
scope = "tenant"
degradable = true
[route.degrade]
body = '{{"results": []}}'
[route.rewrite]
json = {{ "/user_id" = "bind" }}
[route.response]
keep = {{ items = "/results", owner = "/user_id" }}
[[verify.scenario]]
name = "search"
[[verify.scenario.step]]
as = "b"
request = "POST /v1/search"
json = '{{"query": "{{marker}}"}}'
"#,
        backend = backend.url(),
        redis = redis.url(),
    );
    let proxy = Proxy::start_shared_raw(&config).await;
    let search = |user: &str| {
        common::request_bytes(
            "POST",
            "/v1/search",
            &[
                &format!("X-Tenant-Id: {user}"),
                "Content-Type: application/json",
            ],
            br#"{"query": "tea"}"#,
        )
    };
    // Two answered, the third rate-limited.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(proxy.raw(&search("alice")).await.status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    let verified = proxy
        .send_admin("POST", "/admin/verify", &["Authorization: Bearer t"])
        .await;
    assert_eq!(verified.status, 200, "{verified:?}");
    proxy.admin_get("/metrics", &[]).await.text()
}

#[tokio::test]
async fn the_dashboard_and_the_rules_name_only_metrics_the_binary_exports() {
    let dashboard = std::fs::read_to_string(path("examples/grafana/tenantgate.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("valid JSON");
    check_dashboard(&parsed);

    let exposition = live_metrics().await;
    let exported = exported(&exposition);
    let mut sources = vec![("examples/grafana/tenantgate.json".to_owned(), dashboard)];
    for rules in rule_files() {
        let text = std::fs::read_to_string(path("examples/prometheus").join(&rules)).unwrap();
        sources.push((rules, text));
    }
    for (source, text) in &sources {
        let used = metric_names(text);
        assert!(!used.is_empty(), "{source} names metrics");
        let unknown: Vec<&String> = used.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{source} names metrics /metrics does not export: {unknown:?}\n{exposition}"
        );
    }
}

/// What Grafana needs to import the dashboard and draw every panel: a uid, a
/// Prometheus datasource variable every query uses, panels with unique ids, a place
/// on the grid, and at least one query each.
fn check_dashboard(dashboard: &serde_json::Value) {
    assert_eq!(dashboard["uid"], "tenantgate");
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables.iter().any(|v| v["type"] == "datasource"
            && v["name"] == "datasource"
            && v["query"] == "prometheus"),
        "a Prometheus datasource variable"
    );
    let mut panels: Vec<&serde_json::Value> = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        panels.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            panels.extend(nested);
        }
    }
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("?");
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "duplicate id: {title}"
        );
        for key in ["x", "y", "w", "h"] {
            assert!(panel["gridPos"][key].is_u64(), "{title}: gridPos.{key}");
        }
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{title}: targets"));
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{title}: expr"));
            assert!(!expr.trim().is_empty(), "{title}: empty expr");
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
        }
    }
    assert!(ids.len() >= 12, "{} panels", ids.len());
}
