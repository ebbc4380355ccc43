//! `tenantgate explain`: prints what the proxy would do with one request.

use std::path::Path;
use std::process::ExitCode;

use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::BodyExt;
use tenantgate::body;
use tenantgate::config::{self, Overrides};
use tenantgate::identity::jwt::JwtKeys;
use tenantgate::identity::{How, InvalidTenant, Proof};
use tenantgate::pipeline;
use tenantgate::refusal::Refusal;

pub fn run(
    path: &Path,
    tenant: Option<String>,
    headers: &[String],
    json: Option<String>,
    line: &str,
) -> ExitCode {
    let snapshot = match config::load_file(path, &Overrides::default(), &config::process_env) {
        Ok(s) => s,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(1);
        }
    };
    let config = &snapshot.config;
    let request = match build(config, tenant, headers, json, line) {
        Ok(Ok(request)) => request,
        Ok(Err(refusal)) => return print_refusal(&refusal),
        Err(usage) => {
            eprintln!("{usage}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async {
        if let Err(error) = fetch_remote_keys(config).await {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
        match pipeline::dry_run(config, request).await {
            Err(refusal) => print_refusal(&refusal),
            Ok(pipeline::DryRun {
                route,
                identity,
                outgoing,
            }) => {
                match &identity.tenant {
                    Some(tenant) => match (&identity.how, &config.identity.proof) {
                        (How::Jwt(_), Proof::Jwt(jwt)) => println!(
                            "tenant: {:?}, from claim {} of {}",
                            tenant.as_str(),
                            jwt.claim,
                            identity.how
                        ),
                        _ => println!("tenant: {:?}, from {}", tenant.as_str(), identity.how),
                    },
                    None => println!("tenant: none"),
                }
                println!("route: {route}");
                println!("upstream request:");
                println!("  {} {}", outgoing.method, outgoing.uri);
                for (name, value) in &outgoing.headers {
                    println!("  {name}: {}", String::from_utf8_lossy(value.as_bytes()));
                }
                let body = outgoing
                    .body
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                if !body.is_empty() {
                    println!();
                    println!("  {}", String::from_utf8_lossy(&body));
                }
                ExitCode::SUCCESS
            }
        }
    })
}

/// A `jwks_url` is fetched once, as the proxy would at start.
async fn fetch_remote_keys(config: &config::Config) -> Result<(), String> {
    let Proof::Jwt(jwt) = &config.identity.proof else {
        return Ok(());
    };
    let JwtKeys::Remote(remote) = &jwt.keys else {
        return Ok(());
    };
    remote
        .fetch_now()
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot fetch [identity] jwks_url {}: {e}", remote.url))
}

type Built = Result<Request<body::ProxyBody>, Refusal>;

fn build(
    config: &config::Config,
    tenant: Option<String>,
    headers: &[String],
    json: Option<String>,
    line: &str,
) -> Result<Built, String> {
    let (method, target) = line
        .trim()
        .split_once(' ')
        .ok_or_else(|| format!("{line:?}: write the request as \"METHOD /path?query\""))?;
    let method = Method::from_bytes(method.as_bytes()).map_err(|e| format!("{method:?}: {e}"))?;
    let mut request = Request::builder().method(method).uri(target.trim());
    if let Some(tenant) = tenant {
        let Ok(value) = HeaderValue::from_bytes(tenant.as_bytes()) else {
            return Ok(Err(Refusal::InvalidTenant(InvalidTenant::Control)));
        };
        request = request.header(&config.identity.header, value);
    }
    for header in headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| format!("{header:?}: write headers as \"Name: value\""))?;
        let name =
            HeaderName::from_bytes(name.trim().as_bytes()).map_err(|e| format!("{name:?}: {e}"))?;
        request = request.header(name, value.trim());
    }
    let body = match json {
        Some(json) => {
            request = request
                .header("content-type", "application/json")
                .header("content-length", json.len());
            body::full(json)
        }
        None => body::empty(),
    };
    request
        .body(body)
        .map(Ok)
        .map_err(|e| format!("invalid request: {e}"))
}

fn print_refusal(refusal: &Refusal) -> ExitCode {
    println!("refused: {} {}", refusal.status().as_u16(), refusal.code());
    println!("{}", refusal.body_json());
    ExitCode::SUCCESS
}
