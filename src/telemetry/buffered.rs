//! The log's way to stdout: lines collect in a buffer that a flusher thread writes
//! out `FLUSH_DELAY` after the first of them arrived, or at once past
//! `FLUSH_BYTES`. Under a webhook flood the log thread took an eighth of amosync's
//! CPU, about a sixth of that in writing each line with a system call of its own
//! (which also woke whatever reads stdout once per line); now a burst's lines
//! leave together, and a quiet service's lines leave within the delay.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

const FLUSH_DELAY: Duration = Duration::from_millis(50);
const FLUSH_BYTES: usize = 64 * 1024;

struct Shared {
    pending: Mutex<Pending>,
    arrived: Condvar,
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A writer whose bytes reach `W` in batches; dropping it writes what is left.
pub struct BufferedWriter<W: Write + Send + 'static> {
    shared: Arc<Shared>,
    inner: Arc<Mutex<W>>,
    /// Whether the flusher thread runs; without it every write goes straight out.
    flusher: bool,
}

impl<W: Write + Send + 'static> BufferedWriter<W> {
    pub fn new(inner: W) -> Self {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            arrived: Condvar::new(),
        });
        let inner = Arc::new(Mutex::new(inner));
        let (flusher_shared, flusher_inner) = (Arc::clone(&shared), Arc::clone(&inner));
        let flusher = std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(move || flush_until_closed(&flusher_shared, &flusher_inner))
            .is_ok();
        BufferedWriter {
            shared,
            inner,
            flusher,
        }
    }

    fn drain(&self) -> io::Result<()> {
        drain(&self.shared, &self.inner)
    }
}

/// Writes the pending bytes. The writer's lock is taken first and held until they
/// are out, so two batches can never reach it in the wrong order.
fn drain<W: Write>(shared: &Shared, inner: &Mutex<W>) -> io::Result<()> {
    let mut inner = inner.lock().unwrap_or_else(PoisonError::into_inner);
    let bytes = std::mem::take(&mut shared.lock().bytes);
    if bytes.is_empty() {
        return Ok(());
    }
    inner.write_all(&bytes)?;
    inner.flush()
}

impl<W: Write + Send + 'static> Write for BufferedWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let full = {
            let mut pending = self.shared.lock();
            let first = pending.bytes.is_empty();
            pending.bytes.extend_from_slice(data);
            if first {
                self.shared.arrived.notify_one();
            }
            pending.bytes.len() >= FLUSH_BYTES || !self.flusher
        };
        if full {
            self.drain()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.drain()
    }
}

impl<W: Write + Send + 'static> Drop for BufferedWriter<W> {
    fn drop(&mut self) {
        let _ = self.drain();
        self.shared.lock().closed = true;
        self.shared.arrived.notify_one();
    }
}

fn flush_until_closed<W: Write>(shared: &Shared, inner: &Mutex<W>) {
    loop {
        {
            let mut pending = shared.lock();
            while pending.bytes.is_empty() && !pending.closed {
                pending = shared
                    .arrived
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if pending.closed {
                return;
            }
        }
        std::thread::sleep(FLUSH_DELAY);
        // Nowhere to report a failing stdout; the next batch tries again.
        let _ = drain(shared, inner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A writer tests can read while the flusher writes into it.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("sink").extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().expect("sink")).into_owned()
        }
    }

    #[test]
    fn lines_reach_the_writer_without_another_write_or_a_flush() {
        let sink = Sink::default();
        let mut writer = BufferedWriter::new(sink.clone());
        writer.write_all(b"one\n").expect("write");
        writer.write_all(b"two\n").expect("write");
        let deadline = Instant::now() + Duration::from_secs(5);
        while sink.text() != "one\ntwo\n" && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(sink.text(), "one\ntwo\n");
    }

    #[test]
    fn what_is_pending_is_written_when_the_writer_is_dropped() {
        let sink = Sink::default();
        let mut writer = BufferedWriter::new(sink.clone());
        let big = vec![b'x'; FLUSH_BYTES + 1];
        writer.write_all(&big).expect("write");
        writer.write_all(b"tail\n").expect("write");
        drop(writer);
        let text = sink.text();
        assert_eq!(text.len(), FLUSH_BYTES + 6);
        assert!(text.ends_with("xtail\n"));
    }
}
