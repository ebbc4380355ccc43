//! Telling HTTP/2's preface from HTTP/1.1, with a deadline. hyper-util's auto builder
//! reads the first bytes of a connection to decide, and that read has no timer: a
//! client that sends nothing, or a few bytes of the preface, would hold a connection
//! slot forever (`header_read_timeout` only starts once hyper reads a request head).
//! So the listener reads them itself, under `header_read_timeout`, and hands hyper a
//! stream that replays them, with the protocol already chosen.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// What every HTTP/2 connection with prior knowledge starts with (RFC 9113 3.4).
pub const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// Reads until the bytes so far can only be HTTP/1 or are the whole HTTP/2 preface.
/// An end of stream before that is an error: the client sent no request.
pub async fn sniff<S: AsyncRead + Unpin>(mut stream: S) -> io::Result<(Protocol, Replayed<S>)> {
    let mut head = [0u8; H2_PREFACE.len()];
    let mut len = 0;
    loop {
        let read = stream.read(&mut head[len..]).await?;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        len += read;
        let protocol = if head[..len] != H2_PREFACE[..len] {
            Protocol::Http1
        } else if len == H2_PREFACE.len() {
            Protocol::Http2
        } else {
            continue;
        };
        let replayed = Replayed {
            head,
            at: 0,
            len,
            inner: stream,
        };
        return Ok((protocol, replayed));
    }
}

/// A stream whose first bytes, already read, are read again before the rest.
#[derive(Debug)]
pub struct Replayed<S> {
    head: [u8; H2_PREFACE.len()],
    at: usize,
    len: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Replayed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at < self.len {
            let n = buf.remaining().min(self.len - self.at);
            let (at, end) = (self.at, self.at + n);
            buf.put_slice(&self.head[at..end]);
            self.at = end;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replayed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn detect(sent: &[u8]) -> io::Result<(Protocol, Vec<u8>)> {
        let (protocol, mut replayed) = sniff(sent).await?;
        let mut all = Vec::new();
        replayed.read_to_end(&mut all).await?;
        Ok((protocol, all))
    }

    #[tokio::test]
    async fn tells_the_protocols_apart_and_replays_every_byte() {
        let get = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";
        assert_eq!(detect(get).await.unwrap(), (Protocol::Http1, get.to_vec()));
        let pri = b"PRI * HTTP/1.1\r\n\r\n";
        assert_eq!(
            detect(pri).await.unwrap().0,
            Protocol::Http1,
            "a preface that diverges"
        );
        let mut h2 = H2_PREFACE.to_vec();
        h2.extend_from_slice(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00");
        assert_eq!(detect(&h2).await.unwrap(), (Protocol::Http2, h2.clone()));
        assert!(detect(b"").await.is_err(), "nothing sent");
        assert!(
            detect(&H2_PREFACE[..10]).await.is_err(),
            "half a preface, then the end"
        );
    }
}
