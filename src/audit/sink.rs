//! Where audit lines go without a worker ever waiting on a disk or a pipe. A request
//! appends its whole line to a bounded buffer in memory (one short lock, no syscall);
//! one thread of its own writes the buffer out when it holds `flush_at` bytes or every
//! `interval`, whichever comes first, as nginx's `access_log ... buffer= flush=` does.
//! A full buffer drops the line and counts it: a stalled log consumer slows nothing
//! down and costs at most `capacity` bytes of memory (the batch being written
//! included), and a stop waits for it at most `stop_wait`.
//!
//! Why not `tracing-appender`'s non-blocking writer: it sends every line through a
//! channel to a worker that writes and parks again, so under load each request wakes a
//! thread (a futex call and a context switch on the core the proxy runs on). Batching
//! by time makes that one wake per interval.

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

/// How the sink batches; `Default` is what `tenantgate run` uses.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// The most bytes held in memory; a line that does not fit is dropped.
    pub capacity: usize,
    /// Bytes that wake the writer before its interval is up.
    pub flush_at: usize,
    /// The longest a line waits in memory.
    pub interval: Duration,
    /// The longest a stop waits for the last lines to be written (a log reader that
    /// stopped reading must not hold the process past its drain).
    pub stop_wait: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            capacity: 16 << 20,
            flush_at: 64 << 10,
            interval: Duration::from_millis(100),
            stop_wait: Duration::from_secs(5),
        }
    }
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    lines: u64,
    closed: bool,
}

/// The buffer shared by the request path and the writer thread.
pub struct Sink {
    config: Config,
    pending: Mutex<Pending>,
    wake: Condvar,
    /// Bytes of the batch the writer holds, counted against `capacity`.
    writing: AtomicUsize,
    dropped: AtomicU64,
    failed: AtomicU64,
}

impl Sink {
    /// Starts the writer thread; dropping the returned guard writes what is left and
    /// ends it.
    pub fn start(
        config: Config,
        out: Box<dyn Write + Send>,
    ) -> std::io::Result<(Arc<Self>, Flusher)> {
        let sink = Arc::new(Self {
            config,
            pending: Mutex::default(),
            wake: Condvar::new(),
            writing: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let writer = Arc::clone(&sink);
        let (done, finished) = mpsc::channel();
        std::thread::Builder::new()
            .name("tenantgate-audit".into())
            .spawn(move || {
                writer.write_out(out);
                let _ = done.send(());
            })?;
        let flusher = Flusher {
            sink: Arc::clone(&sink),
            finished,
        };
        Ok((sink, flusher))
    }

    /// Appends one whole line (it ends in `\n`), or drops it if the buffer is full.
    pub fn append(&self, line: &[u8]) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let held = pending.bytes.len() + self.writing.load(Ordering::Acquire);
        if pending.closed || held + line.len() > self.config.capacity {
            drop(pending);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let before = pending.bytes.len();
        pending.bytes.extend_from_slice(line);
        pending.lines += 1;
        let crossed = before < self.config.flush_at && pending.bytes.len() >= self.config.flush_at;
        drop(pending);
        if crossed {
            self.wake.notify_one();
        }
    }

    /// Lines dropped because the buffer was full, or lost because the output failed.
    pub fn dropped_lines(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }

    /// Counts a line that never reached the buffer (it could not be encoded).
    pub fn count_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    fn write_out(&self, mut out: Box<dyn Write + Send>) {
        let mut spare = Vec::new();
        // A write that failed part-way may have left half a line: the next batch
        // starts on a line of its own.
        let mut torn = false;
        loop {
            let (lines, closed) = {
                let guard = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
                let keep_waiting =
                    |p: &mut Pending| p.bytes.len() < self.config.flush_at && !p.closed;
                let (mut pending, _) = self
                    .wake
                    .wait_timeout_while(guard, self.config.interval, keep_waiting)
                    .unwrap_or_else(PoisonError::into_inner);
                std::mem::swap(&mut pending.bytes, &mut spare);
                self.writing.store(spare.len(), Ordering::Release);
                (std::mem::take(&mut pending.lines), pending.closed)
            };
            if !spare.is_empty() {
                let newline: &[u8] = if torn { b"\n" } else { b"" };
                let written = out
                    .write_all(newline)
                    .and_then(|()| out.write_all(&spare))
                    .and_then(|()| out.flush());
                torn = written.is_err();
                if let Err(error) = written {
                    self.failed.fetch_add(lines, Ordering::Relaxed);
                    tracing::warn!(%error, lines, "audit lines could not be written");
                }
                // Keep the allocation for the next batch unless a burst grew it large.
                spare.clear();
                spare.shrink_to(self.config.flush_at * 2);
                self.writing.store(0, Ordering::Release);
            }
            if closed {
                return;
            }
        }
    }

    fn close(&self) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed = true;
        self.wake.notify_one();
    }
}

/// Held by `main` for the process's life: its drop writes the last lines out, or
/// gives up after `stop_wait` and counts what was left.
pub struct Flusher {
    sink: Arc<Sink>,
    finished: mpsc::Receiver<()>,
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.sink.close();
        // Err: the writer is stuck on its output past stop_wait, or it panicked.
        if self
            .finished
            .recv_timeout(self.sink.config.stop_wait)
            .is_err()
        {
            let left = self
                .sink
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .lines;
            self.sink.dropped.fetch_add(left, Ordering::Relaxed);
            tracing::warn!(lines = left, "audit lines not written before the stop");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output the test reads back, and can make fail.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>, Arc<std::sync::atomic::AtomicBool>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.1.load(Ordering::Relaxed) {
                return Err(std::io::Error::other("disk full"));
            }
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn config(capacity: usize, interval: Duration) -> Config {
        Config {
            capacity,
            flush_at: 1 << 20,
            interval,
            stop_wait: Duration::from_secs(10),
        }
    }

    #[test]
    fn the_guard_writes_every_line_in_order_before_it_returns() {
        let out = Shared::default();
        // An interval far longer than the test: only the guard's drop can write.
        let (sink, guard) = Sink::start(
            config(1 << 20, Duration::from_secs(3600)),
            Box::new(out.clone()),
        )
        .unwrap();
        for i in 0..1000 {
            sink.append(format!("{{\"n\":{i}}}\n").as_bytes());
        }
        assert!(
            out.0.lock().unwrap().is_empty(),
            "nothing written before a flush"
        );
        drop(guard);
        let written = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = written.lines().collect();
        assert_eq!(lines.len(), 1000);
        assert_eq!(lines[999], "{\"n\":999}");
        assert_eq!(sink.dropped_lines(), 0);
    }

    #[test]
    fn a_full_buffer_drops_whole_lines_and_counts_them() {
        let out = Shared::default();
        let (sink, guard) = Sink::start(
            config(100, Duration::from_secs(3600)),
            Box::new(out.clone()),
        )
        .unwrap();
        let line = [b'x'; 39];
        let line = [&line[..], b"\n"].concat();
        for _ in 0..5 {
            sink.append(&line);
        }
        assert_eq!(
            sink.dropped_lines(),
            3,
            "two 40-byte lines fit in 100 bytes"
        );
        drop(guard);
        assert_eq!(
            out.0.lock().unwrap().len(),
            80,
            "only whole lines were written"
        );
    }

    #[test]
    fn reaching_flush_at_writes_without_waiting_for_the_interval() {
        let out = Shared::default();
        let config = Config {
            flush_at: 64,
            ..self::config(1 << 20, Duration::from_secs(3600))
        };
        let (sink, _guard) = Sink::start(config, Box::new(out.clone())).unwrap();
        sink.append(&[b'y'; 100]);
        // Bounded wait: the writer was woken by the size, not by a timer an hour away.
        for _ in 0..500 {
            if out.0.lock().unwrap().len() == 100 {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the writer was not woken by flush_at");
    }

    /// An output that never returns, like a pipe nobody reads.
    struct Stalled;

    impl Write for Stalled {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            std::thread::park();
            Err(std::io::Error::other("unparked"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_output_holds_the_stop_at_most_stop_wait_and_counts_the_rest() {
        let config = Config {
            stop_wait: Duration::from_millis(200),
            ..config(1 << 20, Duration::from_millis(10))
        };
        let (sink, guard) = Sink::start(config, Box::new(Stalled)).unwrap();
        sink.append(b"first\n");
        // The writer takes the first line and blocks on it; these wait behind it.
        std::thread::sleep(Duration::from_millis(100));
        sink.append(b"second\n");
        sink.append(b"third\n");
        let stopping = std::time::Instant::now();
        drop(guard);
        assert!(stopping.elapsed() < Duration::from_secs(5));
        assert_eq!(
            sink.dropped_lines(),
            2,
            "the lines never handed to the output"
        );
    }

    #[test]
    fn a_failing_output_counts_its_lines_as_lost() {
        let out = Shared::default();
        out.1.store(true, Ordering::Relaxed);
        let (sink, guard) = Sink::start(
            config(1 << 20, Duration::from_secs(3600)),
            Box::new(out.clone()),
        )
        .unwrap();
        sink.append(b"a\n");
        sink.append(b"b\n");
        drop(guard);
        assert_eq!(sink.dropped_lines(), 2);
    }
}
