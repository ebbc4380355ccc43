//! One accepted connection's life: served until it ends, asked to finish gracefully
//! when the listener drains, and, for HTTP/2, closed with GOAWAY once it has held no
//! open stream for `idle_timeout` (keep-alive pings alone would keep it forever).
//!
//! hyper-util's `GracefulShutdown` only watches for the drain, and its connection
//! trait is sealed, so the drain signal is kept here, the same way: a watch channel
//! whose receivers are the open connections.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// The open connections of one listener, drained together.
#[derive(Debug)]
pub struct Connections {
    drain: watch::Sender<()>,
}

impl Default for Connections {
    fn default() -> Self {
        Self {
            drain: watch::Sender::new(()),
        }
    }
}

impl Connections {
    pub(super) fn watcher(&self) -> watch::Receiver<()> {
        self.drain.subscribe()
    }

    /// Connections still open.
    pub fn count(&self) -> usize {
        self.drain.receiver_count()
    }

    /// Asks every connection to finish what it has started and close, and resolves
    /// once all have closed.
    pub async fn shutdown(self) {
        let _ = self.drain.send(());
        self.drain.closed().await;
    }
}

/// Streams open on one HTTP/2 connection, and when the last one ended.
#[derive(Debug)]
pub struct Streams {
    open: AtomicUsize,
    quiet_since: Mutex<Instant>,
}

impl Default for Streams {
    fn default() -> Self {
        Self {
            open: AtomicUsize::new(0),
            quiet_since: Mutex::new(Instant::now()),
        }
    }
}

impl Streams {
    /// Counts a stream open until the returned guard is dropped.
    pub fn open(self: &Arc<Self>) -> OpenStream {
        self.open.fetch_add(1, Ordering::AcqRel);
        OpenStream(self.clone())
    }

    /// When the connection will have been idle for `timeout`, if it stays as it is.
    fn idle_at(&self, timeout: Duration) -> Instant {
        if self.open.load(Ordering::Acquire) > 0 {
            return Instant::now() + timeout;
        }
        *self
            .quiet_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            + timeout
    }

    fn is_idle_for(&self, timeout: Duration) -> bool {
        self.open.load(Ordering::Acquire) == 0 && self.idle_at(timeout) <= Instant::now()
    }
}

/// One open stream; see [`Streams::open`].
#[derive(Debug)]
pub struct OpenStream(Arc<Streams>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        // The time is set before the count drops, so a zero count never pairs with
        // the end of an earlier stream.
        *self
            .0
            .quiet_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How a connection may go idle before it is closed: HTTP/2 only (an HTTP/1.1
/// connection waiting for its next request is bounded by `header_read_timeout`).
pub struct Idle {
    pub streams: Arc<Streams>,
    pub timeout: Duration,
}

/// Serves `connection` to its end. `shutdown` starts its graceful close: on drain, or
/// once idle past the limit.
pub async fn drive<C, E>(
    connection: C,
    shutdown: fn(Pin<&mut C>),
    mut drain: watch::Receiver<()>,
    idle: Option<Idle>,
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    let mut connection = pin!(connection);
    let mut closing = false;
    loop {
        let check = idle.as_ref().map(|i| i.streams.idle_at(i.timeout));
        tokio::select! {
            result = connection.as_mut() => return result,
            // A closed channel (the listener gone) drains too.
            _ = drain.changed(), if !closing => {
                closing = true;
                shutdown(connection.as_mut());
            }
            () = sleep_until(check), if !closing => {
                if idle.as_ref().is_some_and(|i| i.streams.is_idle_for(i.timeout)) {
                    tracing::debug!("HTTP/2 connection idle past idle_timeout; closing");
                    closing = true;
                    shutdown(connection.as_mut());
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_without_open_streams_for_the_timeout() {
        let timeout = Duration::from_secs(60);
        let streams = Arc::new(Streams::default());
        let stream = streams.open();
        tokio::time::advance(Duration::from_secs(120)).await;
        assert!(!streams.is_idle_for(timeout), "a stream is open");
        drop(stream);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(!streams.is_idle_for(timeout));
        assert_eq!(
            streams.idle_at(timeout),
            Instant::now() + Duration::from_secs(1)
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(streams.is_idle_for(timeout));
    }

    #[tokio::test(start_paused = true)]
    async fn drive_closes_an_idle_connection_and_a_draining_one() {
        // A stand-in connection that ends once asked to shut down.
        struct Conn(bool);
        impl Future for Conn {
            type Output = Result<(), ()>;
            fn poll(
                self: Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Self::Output> {
                if self.0 {
                    std::task::Poll::Ready(Ok(()))
                } else {
                    std::task::Poll::Pending
                }
            }
        }
        fn stop(mut c: Pin<&mut Conn>) {
            c.0 = true;
        }
        let connections = Connections::default();
        let streams = Arc::new(Streams::default());
        let idle = Idle {
            streams: streams.clone(),
            timeout: Duration::from_secs(30),
        };
        let started = Instant::now();
        drive(Conn(false), stop, connections.watcher(), Some(idle))
            .await
            .unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(30));

        let served = tokio::spawn(drive(Conn(false), stop, connections.watcher(), None));
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(!served.is_finished(), "no idle limit without Idle");
        assert_eq!(connections.count(), 1);
        connections.shutdown().await;
        served.await.unwrap().unwrap();
    }
}
