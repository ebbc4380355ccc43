//! The command line (SPEC 1). Exit codes: 0 ok, 1 config or usage error, 2 runtime
//! failure.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tenantgate::config::{self, Overrides, Snapshot};
use tenantgate::{audit, dev, server};

mod check;
mod explain;
mod verify_cmd;

#[derive(Parser)]
#[command(
    name = "tenantgate",
    version,
    about = "Makes a single-tenant AI memory backend multi-tenant"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ConfigArg {
    /// The config file.
    #[arg(
        long,
        env = "TENANTGATE_CONFIG",
        default_value = "config/tenantgate.toml"
    )]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// Overrides [listen] addr.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Overrides [admin] addr.
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
        /// Overrides [upstream] url.
        #[arg(long)]
        upstream: Option<String>,
    },
    /// The playground: an unsafe in-memory memory backend with the proxy in front of
    /// it, and curl commands that show two users kept apart.
    Dev {
        /// The config file; without it, config/tenantgate.toml if that exists, else
        /// the playground config built into the binary.
        #[arg(long, env = "TENANTGATE_CONFIG")]
        config: Option<PathBuf>,
        /// Overrides [listen] addr.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Overrides [admin] addr.
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
    },
    /// Validate a config and print a summary.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Dry run: the route a request matches and the exact request that would go
    /// upstream, or the refusal, through the same code as the proxy.
    Explain {
        #[command(flatten)]
        config: ConfigArg,
        /// The end-user, sent in the identity header.
        #[arg(long)]
        tenant: Option<String>,
        /// Extra request headers, "Name: value".
        #[arg(long = "header", short = 'H')]
        headers: Vec<String>,
        /// A JSON body (sent as application/json).
        #[arg(long)]
        body: Option<String>,
        /// "METHOD /path?query"
        request: String,
    },
    /// Prove isolation: run the config's [[verify.scenario]] canaries (canary a writes a
    /// marker, canary b and an unscoped caller must never see it) and print what held.
    /// Exits 0 only when every scenario held.
    Verify {
        #[command(flatten)]
        config: ConfigArg,
        /// Overrides [upstream] url (in-process runs).
        #[arg(long, conflicts_with = "admin")]
        upstream: Option<String>,
        /// Run inside the proxy serving this admin listener (http://HOST:PORT), which
        /// also updates its canary metrics.
        #[arg(long)]
        admin: Option<String>,
        /// The admin API's bearer token, for --admin.
        #[arg(long, env = "TENANTGATE_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// jemalloc returns freed memory to the system and keeps per-thread caches small;
/// glibc's per-thread arenas hold on to the large body buffers a proxy frees (see
/// scripts/rss.py for the figures).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const EXIT_CONFIG: u8 = 1;
const EXIT_RUNTIME: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_CONFIG } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Check { config } => check::run(&config.config),
        Command::Dev {
            config,
            listen,
            admin_listen,
        } => dev(
            config,
            Overrides {
                listen,
                admin_listen,
                ..Overrides::default()
            },
        ),
        Command::Explain {
            config,
            tenant,
            headers,
            body,
            request,
        } => explain::run(&config.config, tenant, &headers, body, &request),
        Command::Verify {
            config,
            upstream,
            admin,
            admin_token,
            json,
        } => verify_cmd::run(
            &config.config,
            verify_cmd::Args {
                upstream,
                admin,
                admin_token,
                json,
            },
        ),
        Command::Run {
            config,
            listen,
            admin_listen,
            upstream,
        } => {
            let overrides = Overrides {
                listen,
                admin_listen,
                upstream,
                ..Overrides::default()
            };
            run(config.config, overrides)
        }
    }
}

fn load(path: &std::path::Path, overrides: &Overrides) -> Result<Snapshot, ExitCode> {
    config::load_file(path, overrides, &config::process_env).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn run(path: PathBuf, overrides: Overrides) -> ExitCode {
    let first = match load(&path, &overrides) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let audit = audit::sink::Config {
        interval: first.config.audit_flush,
        ..audit::sink::Config::default()
    };
    let flusher = match init_logging(
        &first.config.log_level,
        first.config.audit_file.as_deref(),
        audit,
    ) {
        Ok(flusher) => flusher,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let code = serve(async move {
        let running = server::start(first, Some((path, overrides)))
            .await
            .map_err(|e| (EXIT_RUNTIME, e.to_string()))?;
        Ok((running, None))
    });
    // The drain is over: the last audit lines are written before the process exits.
    drop(flusher);
    code
}

fn dev(path: Option<PathBuf>, overrides: Overrides) -> ExitCode {
    let flusher = init_logging("info", None, audit::sink::Config::default()).ok();
    let source = dev::Source::choose(path);
    let code = serve(async move {
        let playground = dev::start(source, overrides).await.map_err(|e| {
            let code = match e {
                dev::DevError::Config(_) => EXIT_CONFIG,
                _ => EXIT_RUNTIME,
            };
            (code, e.to_string())
        })?;
        println!("{}", playground.banner());
        Ok((playground.proxy, Some(playground.backend)))
    });
    drop(flusher);
    code
}

/// The multi-threaded runtime every long-running command uses.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("cannot start the runtime: {e}");
            ExitCode::from(EXIT_RUNTIME)
        })
}

/// Runs the proxy that `start` brings up (and the dev backend beside it, if any) until
/// SIGTERM or SIGINT, then drains it.
fn serve<F>(start: F) -> ExitCode
where
    F: Future<Output = Result<(server::Running, Option<dev::backend::Backend>), (u8, String)>>,
{
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let (running, _backend) = match start.await {
            Ok(started) => started,
            Err((code, message)) => {
                tracing::error!(error = %message, "startup failed");
                eprintln!("{message}");
                return ExitCode::from(code);
            }
        };
        if let Err(e) = wait_for_shutdown(&running).await {
            eprintln!("cannot install signal handlers: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
        running.drain().await;
        ExitCode::SUCCESS
    })
}

/// Returns on SIGTERM or SIGINT; reloads the config on SIGHUP.
async fn wait_for_shutdown(running: &server::Running) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => {
                let app = running.app.clone();
                let outcome = tokio::task::spawn_blocking(move || app.reload()).await;
                tracing::info!(?outcome, "SIGHUP reload");
            }
        }
    }
}

/// The audit log goes to stdout (or `[log] audit_file`) through the audit sink, one
/// JSON line per request; everything else goes to stderr at `[log] level`. The
/// returned guard writes the last audit lines out when it is dropped.
fn init_logging(
    level: &str,
    audit_file: Option<&std::path::Path>,
    audit: audit::sink::Config,
) -> Result<audit::sink::Flusher, String> {
    use tracing_subscriber::{fmt, prelude::*, EnvFilter};
    let out: Box<dyn std::io::Write + Send> = match audit_file {
        Some(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open [log] audit_file {}: {e}", path.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let (sink, flusher) = audit::Sink::start(audit, out)
        .map_err(|e| format!("cannot start the audit writer: {e}"))?;
    audit::install(sink);
    let diagnostics = fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_filter(EnvFilter::new(level));
    tracing_subscriber::registry().with(diagnostics).init();
    Ok(flusher)
}
