//! The log's way to stdout, which never makes the thread that logs wait for it. A
//! record is serialised where it is logged, into a line of its own (`LineWriter`);
//! whole lines collect in a buffer that a flusher thread writes out `FLUSH_DELAY`
//! after the first of them arrived, or at once past `FLUSH_BYTES`. While stdout
//! stalls, lines beyond `MAX_PENDING` bytes are dropped and counted, and the count
//! is written once it moves again.
//!
//! Not slog-async: under a webhook flood its channel woke the log thread for nearly
//! every line, and those wake-ups with the copies of each record's values for that
//! thread cost an eighth of an acknowledgement's CPU (about 5 of 41 µs). Serialising
//! in place costs one short lock per line, and the flusher wakes once per batch.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::redact::Redactor;

const FLUSH_DELAY: Duration = Duration::from_millis(50);
const FLUSH_BYTES: usize = 64 * 1024;
/// About 25,000 access lines (~330 bytes each): what a stalled stdout may hold up
/// before lines are lost.
const MAX_PENDING: usize = 8 * 1024 * 1024;

struct Shared<W> {
    pending: Mutex<Pending>,
    arrived: Condvar,
    out: Mutex<W>,
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// Lines refused since the last write because `bytes` was full.
    dropped: u64,
    /// No flusher runs (stopped, or it never started): lines go straight out.
    closed: bool,
}

impl<W: Write> Shared<W> {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_out(&self) -> MutexGuard<'_, W> {
        self.out.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, line: &[u8]) -> io::Result<()> {
        let mut pending = self.lock();
        if pending.closed {
            drop(pending);
            let mut out = self.lock_out();
            out.write_all(line)?;
            return out.flush();
        }
        let before = pending.bytes.len();
        if before + line.len() > MAX_PENDING {
            pending.dropped += 1;
            return Ok(());
        }
        pending.bytes.extend_from_slice(line);
        // The first line starts the flusher's delay; crossing the threshold ends it.
        if before == 0 || (before < FLUSH_BYTES && pending.bytes.len() >= FLUSH_BYTES) {
            self.arrived.notify_one();
        }
        Ok(())
    }

    /// Writes what is pending (and the count of lines dropped). The output's lock is
    /// taken first and held until the bytes are out, so two batches can never reach
    /// it in the wrong order; `close` stops the flusher in the same step.
    fn drain(&self, close: bool) -> io::Result<()> {
        let mut out = self.lock_out();
        let (mut bytes, dropped) = {
            let mut pending = self.lock();
            pending.closed |= close;
            (
                std::mem::take(&mut pending.bytes),
                std::mem::take(&mut pending.dropped),
            )
        };
        if dropped > 0 {
            bytes.extend_from_slice(dropped_line(dropped).as_bytes());
        }
        if bytes.is_empty() {
            return Ok(());
        }
        out.write_all(&bytes)?;
        out.flush()
    }
}

/// The report of lines lost to a stalled stdout, in the log's own format.
fn dropped_line(dropped: u64) -> String {
    let line = serde_json::json!({
        "msg": "log lines dropped: stdout did not keep up",
        "level": "WARN",
        "ts": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "service": "amosync",
        "log.dropped": dropped,
    });
    format!("{line}\n")
}

/// Owns the flusher thread; dropping it writes out what is pending and stops it.
/// Lines logged after that go straight to the output.
pub struct LogOutput<W: Write + Send + 'static> {
    shared: Arc<Shared<W>>,
    flusher: Option<JoinHandle<()>>,
}

impl<W: Write + Send + 'static> LogOutput<W> {
    pub fn new(out: W) -> Self {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            arrived: Condvar::new(),
            out: Mutex::new(out),
        });
        let for_flusher = Arc::clone(&shared);
        let flusher = std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(move || flush_until_closed(&for_flusher))
            .ok();
        if flusher.is_none() {
            shared.lock().closed = true;
        }
        LogOutput { shared, flusher }
    }

    /// A writer for one serialiser: what it wrote becomes a line of the output at
    /// its `flush`.
    pub fn line_writer(&self) -> LineWriter<W> {
        LineWriter {
            line: Vec::new(),
            shared: Arc::clone(&self.shared),
            torn: PartialLine::default(),
            redactor: Redactor::default(),
        }
    }
}

impl<W: Write + Send + 'static> Drop for LogOutput<W> {
    fn drop(&mut self) {
        // Nowhere to report a failing stdout at exit.
        let _ = self.shared.drain(true);
        self.shared.arrived.notify_one();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
    }
}

/// Collects one record's bytes; `flush` hands them to the output as one line.
pub struct LineWriter<W: Write + Send + 'static> {
    line: Vec<u8>,
    shared: Arc<Shared<W>>,
    torn: PartialLine,
    redactor: Redactor,
}

impl<W: Write + Send + 'static> LineWriter<W> {
    /// Masks `redactor`'s secrets in each line before it is handed on.
    pub fn redacting(mut self, redactor: Redactor) -> Self {
        self.redactor = redactor;
        self
    }

    /// The handle that tells this writer a record failed half-way.
    pub fn partial_line(&self) -> PartialLine {
        self.torn.clone()
    }
}

/// Marks what a writer holds as the remains of a record that failed half-way:
/// they are dropped before the next record is written, never sent as a line.
#[derive(Clone, Default)]
pub struct PartialLine(Arc<AtomicBool>);

impl PartialLine {
    pub fn discard(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl<W: Write + Send + 'static> Write for LineWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.torn.0.load(Ordering::Relaxed) {
            self.torn.0.store(false, Ordering::Relaxed);
            self.line.clear();
        }
        self.line.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.line.is_empty() {
            return Ok(());
        }
        self.redactor.redact_bytes(&mut self.line);
        let pushed = self.shared.push(&self.line);
        self.line.clear();
        // One huge record must not keep its buffer for the life of the process.
        if self.line.capacity() > FLUSH_BYTES {
            self.line = Vec::new();
        }
        pushed
    }
}

fn flush_until_closed<W: Write>(shared: &Shared<W>) {
    loop {
        {
            let mut pending = shared.lock();
            while pending.bytes.is_empty() && pending.dropped == 0 && !pending.closed {
                pending = shared
                    .arrived
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            let deadline = Instant::now() + FLUSH_DELAY;
            while pending.bytes.len() < FLUSH_BYTES && !pending.closed {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                pending = shared
                    .arrived
                    .wait_timeout(pending, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            if pending.closed {
                return;
            }
        }
        // Nowhere to report a failing stdout; the next batch tries again.
        let _ = shared.drain(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output tests can read while the flusher writes into it, and hold up.
    #[derive(Clone, Default)]
    struct Sink {
        bytes: Arc<Mutex<Vec<u8>>>,
        held: Arc<(Mutex<bool>, Condvar)>,
    }

    impl Write for Sink {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            let (held, released) = &*self.held;
            let mut held = held.lock().expect("gate");
            while *held {
                held = released.wait(held).expect("gate");
            }
            self.bytes.lock().expect("sink").extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.bytes.lock().expect("sink")).into_owned()
        }

        fn hold(&self, held: bool) {
            *self.held.0.lock().expect("gate") = held;
            self.held.1.notify_all();
        }

        fn wait_for(&self, done: impl Fn(&str) -> bool) -> String {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !done(&self.text()) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            self.text()
        }
    }

    fn line(writer: &mut impl Write, text: &str) {
        writer.write_all(text.as_bytes()).expect("write");
        writer.flush().expect("flush");
    }

    #[test]
    fn lines_reach_the_output_after_the_delay_without_anything_else_happening() {
        let sink = Sink::default();
        let output = LogOutput::new(sink.clone());
        let mut writer = output.line_writer();
        writer.write_all(b"on").expect("write");
        writer.write_all(b"e\n").expect("write");
        assert_eq!(sink.text(), "", "nothing leaves before the line is whole");
        writer.flush().expect("flush");
        line(&mut writer, "two\n");
        assert_eq!(sink.wait_for(|t| t == "one\ntwo\n"), "one\ntwo\n");
    }

    #[test]
    fn what_is_pending_is_written_when_the_output_is_dropped_and_later_lines_go_straight_out() {
        let sink = Sink::default();
        let output = LogOutput::new(sink.clone());
        let mut writer = output.line_writer();
        line(&mut writer, "first\n");
        line(&mut writer, "second\n");
        drop(output);
        assert_eq!(sink.text(), "first\nsecond\n");
        line(&mut writer, "after\n");
        assert_eq!(sink.text(), "first\nsecond\nafter\n");
    }

    #[test]
    fn a_stalled_output_never_holds_up_the_logger_and_the_lost_lines_are_counted() {
        let sink = Sink::default();
        sink.hold(true);
        let output = LogOutput::new(sink.clone());
        let mut writer = output.line_writer();
        let text = format!("{}\n", "x".repeat(1023));
        let lines = 2 * MAX_PENDING / text.len();
        for _ in 0..lines {
            line(&mut writer, &text);
        }
        assert_eq!(sink.text(), "", "the output is still held");
        sink.hold(false);
        drop(output);
        let written = sink.text();
        let report = written.lines().last().expect("a report");
        let report: serde_json::Value = serde_json::from_str(report).expect("a JSON line");
        let kept = written.lines().filter(|l| l.len() == 1023).count();
        assert!(kept >= MAX_PENDING / text.len(), "kept only {kept} lines");
        assert_eq!(report["log.dropped"].as_u64(), Some((lines - kept) as u64));
        assert_eq!(report["level"], "WARN");
    }
}
