//! `tenantgate verify`: runs the config's `[[verify.scenario]]` canaries and prints what
//! held. In-process by default (the corridor in front of the configured upstream, no
//! listener); with `--admin URL`, inside a running proxy (`POST /admin/verify`), since
//! a canary's identity exists only inside a process and never crosses the network.

use std::path::Path;
use std::process::ExitCode;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use tenantgate::app::{App, Services};
use tenantgate::config::{self, Overrides};
use tenantgate::verify::{self, Report};

const EXIT_CONFIG: u8 = 1;
const EXIT_RUNTIME: u8 = 2;
/// Exit status when a scenario did not hold (a leak, or a probe that could not be judged).
const EXIT_NOT_HELD: u8 = 1;

pub struct Args {
    pub upstream: Option<String>,
    pub admin: Option<String>,
    pub admin_token: Option<String>,
    pub json: bool,
}

pub fn run(path: &Path, args: Args) -> ExitCode {
    let Args {
        upstream,
        admin,
        admin_token,
        json: as_json,
    } = args;
    let runtime = match crate::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let report = match admin {
        // The running proxy has its config; this process reads none.
        Some(url) => runtime.block_on(remote(&url, admin_token.as_deref())),
        None => {
            let overrides = Overrides {
                upstream,
                ..Overrides::default()
            };
            let snapshot = match config::load_file(path, &overrides, &config::process_env) {
                Ok(s) => s,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            // The canaries' state is the run's own: an in-memory store, whatever the
            // config names, so a running proxy's store is never touched.
            let app = App::new(snapshot, None, Services::default());
            Ok(runtime.block_on(verify::run(&app)))
        }
    };
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", report.table());
    }
    match report.held() {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(EXIT_NOT_HELD),
    }
}

/// `POST {url}/admin/verify` with the config's admin token.
async fn remote(url: &str, token: Option<&str>) -> Result<Report, String> {
    let token =
        token.ok_or("--admin needs the admin token: --admin-token or TENANTGATE_ADMIN_TOKEN")?;
    let uri: http::Uri = format!("{}/admin/verify", url.trim_end_matches('/'))
        .parse()
        .map_err(|e| format!("--admin {url}: {e}"))?;
    let authority = uri
        .authority()
        .ok_or(format!("--admin {url}: give http://HOST:PORT"))?
        .clone();
    if uri.scheme_str() != Some("http") {
        return Err(format!("--admin {url}: only http:// is supported"));
    }
    let stream = tokio::net::TcpStream::connect(authority.as_str())
        .await
        .map_err(|e| format!("cannot reach {authority}: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("{authority}: {e}"))?;
    tokio::spawn(connection);
    let request = http::Request::post(uri)
        .header(http::header::HOST, authority.as_str())
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{authority}: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{authority}: {e}"))?
        .to_bytes();
    if !status.is_success() {
        return Err(format!(
            "POST /admin/verify: {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    serde_json::from_slice(&body)
        .map_err(|e| format!("POST /admin/verify answered something else: {e}"))
}
