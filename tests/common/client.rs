//! The raw-socket HTTP/1.1 client: requests go out exactly as written, responses are
//! parsed by hand (interim 1xx, chunked and content-length bodies, truncation).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::upstream::Upstream;
use super::PATIENCE;

pub fn request_bytes(method: &str, target: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut out =
        format!("{method} {target} HTTP/1.1\r\nHost: tenantgate.test\r\nConnection: close\r\n");
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    if !body.is_empty() {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// False when the connection ended before the declared body was complete.
    pub complete: bool,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts a SPEC 7 refusal: status, JSON content type, `{"error":{"code","message"}}`.
    pub fn assert_refusal(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "status for {code}: {self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        let body = self.json();
        assert_eq!(body["error"]["code"], code, "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.len() > 10, "a refusal explains itself: {body}");
    }
}

pub async fn raw(addr: SocketAddr, request: &[u8]) -> RawResponse {
    tokio::time::timeout(PATIENCE, async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        read_response(&mut stream).await
    })
    .await
    .expect("the proxy answered within the test's patience")
}

pub async fn read_response(stream: &mut TcpStream) -> RawResponse {
    let mut data = Vec::new();
    let _ = stream.read_to_end(&mut data).await;
    parse_response(&data)
}

pub fn parse_response(mut data: &[u8]) -> RawResponse {
    // Interim 1xx responses (100 Continue) precede the real one.
    while data.starts_with(b"HTTP/1.1 1") {
        let end = data
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("complete interim head");
        data = &data[end + 4..];
    }
    let split = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "no complete response head in {:?}",
                String::from_utf8_lossy(data)
            )
        });
    let head = String::from_utf8_lossy(&data[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &data[split + 4..];
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let (body, complete) = if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(rest)
    } else if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        (rest[..rest.len().min(len)].to_vec(), rest.len() >= len)
    } else {
        (rest.to_vec(), true)
    };
    RawResponse {
        status,
        headers,
        body,
        complete,
    }
}

fn dechunk(mut rest: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return (body, false);
        };
        let size_text = String::from_utf8_lossy(&rest[..eol]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
        else {
            return (body, false);
        };
        rest = &rest[eol + 2..];
        if size == 0 {
            return (body, true);
        }
        if rest.len() < size + 2 {
            body.extend_from_slice(&rest[..rest.len().min(size)]);
            return (body, false);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Sends `request`, reads until `first` has arrived (proving the proxy streamed it while
/// the upstream still held the rest), opens the upstream's gate and reads to the end.
pub async fn read_streamed(
    addr: SocketAddr,
    request: &[u8],
    first: &str,
    upstream: &Upstream,
) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&received).contains(first) {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed before {first:?} arrived");
            received.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the first part arrived while the upstream was still holding the rest");
    upstream.gate.notify_one();
    let mut tail = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut tail))
        .await
        .expect("the rest arrived")
        .unwrap();
    received.extend_from_slice(&tail);
    parse_response(&received)
}
