//! Heap allocations per proxied request, counted: the proxy runs in-process on a
//! runtime of its own, whose threads alone are counted, in front of a real upstream
//! on loopback answering the 88-byte JSON of scripts/bench.py; a keep-alive client on
//! another runtime sends the requests. Prints allocations and bytes per request on the
//! fully enforced route and on a pass-through `shared` route, with the audit line on.
//! `cargo bench --bench allocations`. Counts, not times: the figure is exact and
//! repeatable, so a change that adds an allocation to the hot path shows here.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tenantgate::audit::{self, sink};
use tenantgate::config::{self, Overrides};
use tenantgate::server;

const ANSWER: &str =
    r#"{"id":"m_1","session_id":"u_alice__trip","user_id":"u_alice","memory":"likes green tea"}"#;
const REQUEST: &str = r#"{"memory":"likes green tea","metadata":{"topic":"drinks"}}"#;
const REQUESTS: u64 = 2_000;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set on the proxy runtime's threads: only their allocations are the proxy's.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn count(size: usize) {
    if COUNTED.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(size as u64, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn config(upstream: SocketAddr, store: &std::path::Path) -> String {
    format!(
        r#"
[listen]
addr = "127.0.0.1:0"
[admin]
addr = "127.0.0.1:0"
[upstream]
url = "http://{upstream}"
[store]
path = "{}"
[limits]
default_plan = "bench"
[limits.plans.bench]
rate = 100000000
per = "1s"
burst = 100000000
daily_units = 1000000000000
[[route]]
name = "full"
match = "POST /v1/sessions/{{session_id}}/memories"
scope = "tenant"
[route.rewrite]
path = {{ session_id = "prefix" }}
json = {{ "/user_id" = "bind" }}
[[route]]
name = "pass"
match = "POST /v1/pass"
scope = "shared"
"#,
        store.display()
    )
}

async fn upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|request: hyper::Request<hyper::body::Incoming>| async {
                    let _ = request.into_body().collect().await;
                    let mut answer =
                        hyper::Response::new(Full::new(Bytes::from_static(ANSWER.as_bytes())));
                    answer.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    );
                    Ok::<_, Infallible>(answer)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn main() {
    let proxy_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .on_thread_start(|| COUNTED.with(|c| c.set(true)))
        .build()
        .unwrap();
    let side = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // The audit line is written, as in production, to a sink (here: /dev/null).
    let (audit_sink, _flusher) =
        sink::Sink::start(sink::Config::default(), Box::new(std::io::sink())).unwrap();
    audit::install(audit_sink);
    let store = tempfile::tempdir().unwrap();
    let upstream = side.block_on(upstream());
    let snapshot = config::load_str(
        &config(upstream, store.path()),
        "bench.toml",
        &Overrides::default(),
        &|_| None,
    )
    .expect("bench config");
    let running = proxy_runtime
        .block_on(server::start(snapshot, None))
        .expect("proxy starts");
    let proxy = running.proxy_addr;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    println!("allocations per proxied request (proxy threads only, {REQUESTS} keep-alive POSTs):");
    for (route, path) in [("full", "/v1/sessions/trip/memories"), ("pass", "/v1/pass")] {
        let send = |n: u64| {
            let client = client.clone();
            side.block_on(async move {
                for _ in 0..n {
                    let request = hyper::Request::post(format!("http://{proxy}{path}"))
                        .header("content-type", "application/json")
                        .header("x-tenant-id", "alice")
                        .body(Full::new(Bytes::from_static(REQUEST.as_bytes())))
                        .unwrap();
                    let answer = client.request(request).await.unwrap();
                    assert_eq!(answer.status(), 200);
                    answer.into_body().collect().await.unwrap();
                }
            })
        };
        send(200);
        // The least of three batches: a background flush may land in one of them.
        let mut best = (u64::MAX, u64::MAX);
        for _ in 0..3 {
            let (a0, b0) = (
                ALLOCATIONS.load(Ordering::Relaxed),
                BYTES.load(Ordering::Relaxed),
            );
            send(REQUESTS);
            let (a1, b1) = (
                ALLOCATIONS.load(Ordering::Relaxed),
                BYTES.load(Ordering::Relaxed),
            );
            best = best.min(((a1 - a0), (b1 - b0)));
        }
        println!(
            "  {route:5} {:6.1} allocations, {:7.0} bytes per request",
            best.0 as f64 / REQUESTS as f64,
            best.1 as f64 / REQUESTS as f64
        );
    }
    drop(running);
}
