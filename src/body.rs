//! The body types that flow through the proxy, and the idle timeout that guards both
//! directions of a stream.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};
use tokio::time::{Instant, Sleep};

use crate::budget::{Held, OverBudget};
use crate::BoxError;

/// What every response from tenantgate carries: a refusal's JSON, or the upstream's
/// stream.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A body fed chunk by chunk from elsewhere (a task streaming a large admin answer):
/// at most `capacity` chunks wait, so the producer follows the client's pace. The body
/// ends cleanly only after [`Feed::finish`]; a feed dropped without it (a failed
/// source, a stalled client given up on) ends the body as failed, so the client sees a
/// truncated transfer rather than a short answer that looks whole.
pub fn channel(capacity: usize) -> (Feed, ProxyBody) {
    let (sender, receiver) = tokio::sync::mpsc::channel(capacity);
    let finished = Arc::new(AtomicBool::new(false));
    let feed = Feed {
        sender,
        finished: finished.clone(),
    };
    (feed, Channel { receiver, finished }.boxed_unsync())
}

pub struct Feed {
    sender: tokio::sync::mpsc::Sender<Bytes>,
    finished: Arc<AtomicBool>,
}

impl Feed {
    /// Waits for room; `Err` once the client has gone.
    pub async fn send(&self, chunk: Bytes) -> Result<(), Bytes> {
        self.sender.send(chunk).await.map_err(|e| e.0)
    }

    /// The body ends cleanly after the chunks sent.
    pub fn finish(self) {
        self.finished.store(true, Ordering::Release);
    }
}

struct Channel {
    receiver: tokio::sync::mpsc::Receiver<Bytes>,
    finished: Arc<AtomicBool>,
}

impl Body for Channel {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.receiver.poll_recv(cx) {
            Poll::Ready(Some(chunk)) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
            Poll::Ready(None) if self.finished.load(Ordering::Acquire) => Poll::Ready(None),
            Poll::Ready(None) => Poll::Ready(Some(Err("the body's source broke off".into()))),
            Poll::Pending => Poll::Pending,
        }
    }
}

type Collecting =
    Pin<Box<dyn Future<Output = Result<http_body_util::Collected<Bytes>, BoxError>> + Send>>;

/// Reads a whole body, failing past `max` bytes without reading further. Boxed so that
/// callers' futures stay provably `Send` (rustc cannot see through `Limited::collect`
/// across an await otherwise).
pub fn collect_at_most(body: ProxyBody, max: usize) -> Collecting {
    Box::pin(http_body_util::Limited::new(body, max).collect())
}

/// Reads a whole body as [`collect_at_most`] does, taking every byte from `held`'s
/// budget as it arrives: past the budget it fails with [`OverBudget`].
pub fn collect_within<'a>(
    mut body: ProxyBody,
    max: usize,
    held: &'a mut Held,
) -> Pin<Box<dyn Future<Output = Result<Bytes, BoxError>> + Send + 'a>> {
    Box::pin(async move {
        // A declared length is taken from the budget, then read into one allocation
        // instead of a doubling one; bytes past it are taken as they arrive.
        let declared = http_body::Body::size_hint(&body).exact().unwrap_or(0);
        let declared = usize::try_from(declared).unwrap_or(usize::MAX);
        if declared > max {
            return Err(Box::new(TooLarge) as BoxError);
        }
        if !held.grow(declared) {
            return Err(Box::new(OverBudget) as BoxError);
        }
        let mut taken = declared;
        let mut buf = bytes::BytesMut::with_capacity(declared);
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            if buf.len() + data.len() > max {
                return Err(Box::new(TooLarge) as BoxError);
            }
            let more = (buf.len() + data.len()).saturating_sub(taken);
            if !held.grow(more) {
                return Err(Box::new(OverBudget) as BoxError);
            }
            taken += more;
            buf.extend_from_slice(&data);
        }
        Ok(buf.freeze())
    })
}

#[derive(Debug, thiserror::Error)]
#[error("the body is larger than its limit")]
struct TooLarge;

pub fn is_too_large(error: &BoxError) -> bool {
    error
        .downcast_ref::<http_body_util::LengthLimitError>()
        .is_some()
        || error.downcast_ref::<TooLarge>().is_some()
}

pub fn is_over_budget(error: &BoxError) -> bool {
    error.downcast_ref::<OverBudget>().is_some()
}

#[derive(Debug, thiserror::Error)]
#[error("no body data for {0:?}: the peer stalled mid-body")]
pub struct BodyStalled(pub Duration);

pin_project_lite::pin_project! {
    /// Fails the stream when no frame arrives for `idle`, so a peer that stalls
    /// mid-body cannot pin a connection (and a tenant's concurrency slot) forever.
    pub struct IdleTimeout<B> {
        #[pin]
        inner: B,
        #[pin]
        sleep: Sleep,
        idle: Duration,
    }
}

impl<B> IdleTimeout<B> {
    pub fn new(inner: B, idle: Duration) -> Self {
        Self {
            inner,
            sleep: tokio::time::sleep(idle),
            idle,
        }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep.as_mut().reset(Instant::now() + *this.idle);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.sleep.poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyStalled(*this.idle))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `body`, counting the data bytes that pass into `counter` (the request side of
/// metering: the upstream reads it, the meter reads the count) and raising `broke`
/// when the body itself fails (a malformed chunk, a client that stalls or leaves):
/// then a failed upstream call is the client's doing, not the upstream's.
pub fn counted(
    body: ProxyBody,
    counter: std::sync::Arc<std::sync::atomic::AtomicU64>,
    broke: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> ProxyBody {
    Counted {
        inner: body,
        counter: Some(counter),
        broke: Some(broke),
        seen: 0,
        failed: false,
        done: None,
    }
    .boxed_unsync()
}

/// `body`, calling `done` with the bytes sent once it has ended or been dropped (a
/// client that hangs up mid-body is still metered for what it got, and guards moved
/// into `done` live exactly as long as the body).
pub fn on_end(body: ProxyBody, done: impl FnOnce(Sent) + Send + 'static) -> ProxyBody {
    Counted {
        inner: body,
        counter: None,
        broke: None,
        seen: 0,
        failed: false,
        done: Some(Box::new(done)),
    }
    .boxed_unsync()
}

/// How a body ended, for [`on_end`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Data bytes that passed.
    pub bytes: u64,
    /// The body itself failed (its source closed or stalled mid-body), as opposed to
    /// ending, or being dropped by a client that hung up.
    pub failed: bool,
}

type Done = Box<dyn FnOnce(Sent) + Send>;

struct Counted {
    inner: ProxyBody,
    counter: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    broke: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    seen: u64,
    failed: bool,
    done: Option<Done>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done(Sent {
                bytes: self.seen,
                failed: self.failed,
            });
        }
    }
}

impl Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &polled {
            self.failed = true;
            if let Some(broke) = &self.broke {
                broke.store(true, std::sync::atomic::Ordering::Release);
            }
        }
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                let len = data.len() as u64;
                self.seen += len;
                if let Some(counter) = &self.counter {
                    counter.fetch_add(len, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Bodies at least this large are edited with the worker handed off (see [`heavy`]):
/// about a third of a millisecond of JSON work.
pub const HEAVY_BYTES: usize = 256 * 1024;

/// Runs CPU-bound work on a body of `len` bytes. Above [`HEAVY_BYTES`], on a
/// multi-thread runtime, the current worker hands its other tasks to the rest of the
/// pool first (`block_in_place`), so one tenant's 8 MiB body never stalls another
/// tenant's small request queued behind it on the same worker.
pub fn heavy<T>(len: usize, work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let pooled =
        Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    if len >= HEAVY_BYTES && pooled {
        tokio::task::block_in_place(work)
    } else {
        work()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::Budget;

    #[tokio::test]
    async fn a_declared_length_is_taken_from_the_budget_before_it_is_read() {
        let budget = Budget::new(50);
        let mut held = budget.claim();
        let refused = collect_within(full(vec![b'x'; 100]), 1000, &mut held).await;
        assert!(refused.is_err_and(|e| is_over_budget(&e)));
        assert_eq!(budget.left(), 50, "nothing of a refused body stays taken");
        let mut held = budget.claim();
        let read = collect_within(full(vec![b'x'; 40]), 1000, &mut held).await;
        assert_eq!(read.unwrap().len(), 40);
        assert_eq!(budget.left(), 10);
        drop(held);
        assert_eq!(budget.left(), 50);
    }
}
