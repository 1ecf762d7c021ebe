//! A run's log. Lines wait in memory and are stored as a segment (one blob object, then
//! one row) once the oldest of them is [`FLUSH_AFTER`] old, once [`FLUSH_BYTES`] are
//! waiting, and when the run ends, before its outcome is written. A node that dies
//! loses at most the lines of its last second.
//!
//! A run that logs nothing costs nothing: the writer task, the log's row and every
//! object start with the first line. Segments are added only while the run holds its
//! attempt, so a node that lost the task cannot add to its log.

use std::{
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use capstan_blob::task_log::{self, Level};
use capstan_core::format_size;
use capstan_db::task_logs::{self, NewSegment};
use time::OffsetDateTime;
use tokio::{sync::Notify, task::JoinHandle, time::Instant};

use crate::node::NodeContext;

/// How long a line may wait in memory: what a killed node loses at most.
pub const FLUSH_AFTER: Duration = Duration::from_secs(1);
/// Waiting bytes that are stored at once, however young.
pub const FLUSH_BYTES: usize = 256 * 1024;
/// While the log cannot be stored, lines wait in memory up to this much; later ones
/// are dropped, and counted in the log once it can be stored again.
const MAX_WAITING_BYTES: usize = 8 * 1024 * 1024;
/// Room kept below the cap for the line that says the log was cut, and for the count
/// of dropped lines at the end.
const CAP_RESERVE: u64 = 1024;
/// A run's last lines are tried this often before its outcome is written without them.
const FINAL_TRIES: u32 = 5;
/// The longest a run's outcome waits for its last lines to be stored.
const FINISH_WITHIN: Duration = Duration::from_secs(10);

/// A run's log: cheap to clone, and writing to it never waits.
#[derive(Clone)]
pub struct TaskLog {
    shared: Arc<Shared>,
}

struct Shared {
    ctx: Arc<NodeContext>,
    task_id: i64,
    attempt: i32,
    cap: u64,
    lines: Mutex<Lines>,
    /// Wakes the writer: the first line, a full buffer, or the end of the run.
    wake: Notify,
    /// Some of the log has been stored (a segment recorded).
    stored: AtomicBool,
}

/// What the run logged and the writer has not taken yet.
#[derive(Default)]
struct Lines {
    waiting: Vec<u8>,
    /// When the oldest waiting line was logged.
    oldest: Option<Instant>,
    /// The log's length once everything accepted is stored: what this run accepted,
    /// plus what earlier attempts wrote once the writer has learnt it.
    length: u64,
    /// The cap was reached: the line saying so is written, later lines are dropped.
    capped: bool,
    dropped_lines: u64,
    dropped_bytes: u64,
    /// Lines dropped because the log could not be stored for a while.
    unstored_lines: u64,
    writer: Option<JoinHandle<()>>,
    /// The run has ended; no more lines.
    closed: bool,
}

impl TaskLog {
    pub(crate) fn new(ctx: Arc<NodeContext>, task_id: i64, attempt: i32) -> Self {
        let cap = ctx.settings.task_log_cap;
        Self {
            shared: Arc::new(Shared {
                ctx,
                task_id,
                attempt,
                cap,
                lines: Mutex::new(Lines::default()),
                wake: Notify::new(),
                stored: AtomicBool::new(false),
            }),
        }
    }

    pub fn info(&self, text: impl AsRef<str>) {
        self.log(Level::Info, text.as_ref());
    }

    pub fn warn(&self, text: impl AsRef<str>) {
        self.log(Level::Warn, text.as_ref());
    }

    pub fn error(&self, text: impl AsRef<str>) {
        self.log(Level::Error, text.as_ref());
    }

    fn log(&self, level: Level, text: &str) {
        let mut rendered = Vec::with_capacity(text.len() + 40);
        let count = task_log::write_lines(&mut rendered, OffsetDateTime::now_utc(), level, text);
        let shared = &self.shared;
        let mut lines = shared.lines();
        if lines.closed {
            return;
        }
        if lines.capped {
            lines.dropped_lines += count as u64;
            lines.dropped_bytes += rendered.len() as u64;
            return;
        }
        if lines.waiting.len() + rendered.len() > MAX_WAITING_BYTES {
            lines.unstored_lines += count as u64;
            return;
        }
        let first = lines.oldest.is_none();
        if lines.length + rendered.len() as u64 + CAP_RESERVE > shared.cap {
            lines.dropped_lines += count as u64;
            lines.dropped_bytes += rendered.len() as u64;
            lines.cap_here(shared.cap);
        } else {
            lines.length += rendered.len() as u64;
            lines.waiting.extend_from_slice(&rendered);
        }
        if first {
            lines.oldest = Some(Instant::now());
        }
        if lines.writer.is_none() {
            lines.writer = Some(tokio::spawn(write_segments(shared.clone())));
        }
        if first || lines.waiting.len() >= FLUSH_BYTES {
            shared.wake.notify_one();
        }
    }

    /// Stores what is left; call when the run has ended, before its outcome is written.
    /// Returns whether the run stored any of the log.
    pub(crate) async fn finish(&self) -> bool {
        let writer = {
            let mut lines = self.shared.lines();
            if lines.dropped_lines > 0 {
                let note = format!(
                    "{} line(s) ({}) were dropped after the log reached its cap",
                    lines.dropped_lines,
                    format_size(lines.dropped_bytes)
                );
                lines.append_note(Level::Warn, &note);
            }
            lines.closed = true;
            lines.writer.take()
        };
        let Some(mut writer) = writer else {
            return false;
        };
        self.shared.wake.notify_one();
        if tokio::time::timeout(FINISH_WITHIN, &mut writer)
            .await
            .is_err()
        {
            writer.abort();
            self.shared.ctx.metrics.task_log_write_failures.increment(1);
            tracing::warn!(
                task.id = self.shared.task_id,
                "the last lines of the log of task {} were not stored within {}s and are lost",
                self.shared.task_id,
                FINISH_WITHIN.as_secs()
            );
        }
        self.shared.stored.load(Ordering::Relaxed)
    }

    /// Drops what is left: the run lost its lease and may write nothing more.
    pub(crate) fn abandon(&self) {
        let mut lines = self.shared.lines();
        lines.closed = true;
        if let Some(writer) = lines.writer.take() {
            writer.abort();
        }
    }
}

impl Shared {
    fn lines(&self) -> MutexGuard<'_, Lines> {
        self.lines.lock().expect("task log lock")
    }
}

impl Lines {
    /// Writes the line that says the log reached its cap; later lines are dropped.
    fn cap_here(&mut self, cap: u64) {
        self.capped = true;
        let marker = format!(
            "the log reached its cap of {} (CAPSTAN_TASK_LOG_CAP); later lines are dropped",
            format_size(cap)
        );
        self.append_note(Level::Warn, &marker);
    }

    /// A line of the log's own, written whatever the cap (whose reserve is for these).
    fn append_note(&mut self, level: Level, text: &str) {
        let before = self.waiting.len();
        task_log::write_lines(&mut self.waiting, OffsetDateTime::now_utc(), level, text);
        self.length += (self.waiting.len() - before) as u64;
        self.oldest.get_or_insert_with(Instant::now);
    }

    /// Counts what earlier attempts of the task wrote, cutting what this run has
    /// logged so far if the two together pass the cap.
    fn continue_after(&mut self, earlier: u64, earlier_capped: bool, cap: u64) {
        self.length += earlier;
        if self.capped {
            return;
        }
        if earlier_capped {
            // The earlier attempt already said the log is cut.
            self.dropped_lines += bytecount_newlines(&self.waiting);
            self.dropped_bytes += self.waiting.len() as u64;
            self.length -= self.waiting.len() as u64;
            self.waiting.clear();
            self.capped = true;
            return;
        }
        if self.length + CAP_RESERVE <= cap {
            return;
        }
        let room = cap.saturating_sub(CAP_RESERVE + earlier) as usize;
        let keep = self.waiting[..room.min(self.waiting.len())]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |at| at + 1);
        let cut = self.waiting.split_off(keep);
        self.dropped_lines += bytecount_newlines(&cut);
        self.dropped_bytes += cut.len() as u64;
        self.length -= cut.len() as u64;
        self.cap_here(cap);
    }
}

fn bytecount_newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|b| **b == b'\n').count() as u64
}

/// Bytes taken from the buffer and not recorded yet: not stored (no key), or stored
/// under `key` with the row still to write.
struct Unrecorded {
    bytes: Bytes,
    key: Option<String>,
    truncated: bool,
}

/// Where the run's next segment goes.
struct Writer {
    /// Where the log of earlier attempts ends is known.
    opened: bool,
    next_seq: i32,
    /// The log offset the next segment starts at.
    offset: u64,
    unrecorded: Option<Unrecorded>,
    /// After a failure: when to try again.
    retry_at: Option<Instant>,
    failing: bool,
    fenced: bool,
}

/// The writer task of one run: stores segments until the run ends, then stores the
/// rest.
async fn write_segments(shared: Arc<Shared>) {
    let mut writer = Writer {
        // Nothing came before a first attempt: its log starts empty, and its first
        // segment creates the log's row. One durable statement less per task.
        opened: shared.attempt == 1,
        next_seq: 1,
        offset: 0,
        unrecorded: None,
        retry_at: None,
        failing: false,
        fenced: false,
    };
    loop {
        let (due, closed) = {
            let lines = shared.lines();
            let ready = lines.oldest.map(|at| {
                if lines.waiting.len() >= FLUSH_BYTES {
                    at
                } else {
                    at + FLUSH_AFTER
                }
            });
            let due = match (writer.unrecorded.is_some(), writer.retry_at) {
                (true, Some(retry)) => Some(retry),
                (true, None) => Some(Instant::now()),
                (false, Some(retry)) => ready.map(|r| r.max(retry)),
                (false, None) => ready,
            };
            (due, lines.closed)
        };
        if closed {
            writer.store_the_rest(&shared).await;
            return;
        }
        match due {
            Some(due) if due <= Instant::now() => {
                writer.flush_once(&shared).await;
                if writer.fenced {
                    shared.lines().closed = true;
                    return;
                }
            }
            Some(due) => {
                tokio::select! {
                    () = tokio::time::sleep_until(due) => {}
                    () = shared.wake.notified() => {}
                }
            }
            None => shared.wake.notified().await,
        }
    }
}

impl Writer {
    /// Stores one segment, noting a failure so the next try waits a while.
    async fn flush_once(&mut self, shared: &Shared) {
        match self.flush(shared).await {
            Ok(()) => {
                self.retry_at = None;
                if self.failing {
                    self.failing = false;
                    tracing::info!(
                        task.id = shared.task_id,
                        "the log of task {} is stored again",
                        shared.task_id
                    );
                }
            }
            Err(e) => {
                self.retry_at = Some(Instant::now() + FLUSH_AFTER);
                shared.ctx.metrics.task_log_write_failures.increment(1);
                if !self.failing {
                    self.failing = true;
                    tracing::warn!(
                        task.id = shared.task_id,
                        "cannot store the log of task {}: {e}; its lines wait in memory and are retried",
                        shared.task_id
                    );
                }
            }
        }
    }

    /// After the run ended: stores everything left, with a few tries, so the outcome
    /// is not held up for long by a store that does not answer.
    async fn store_the_rest(&mut self, shared: &Shared) {
        let mut pause = Duration::from_millis(100);
        let mut failures = 0;
        loop {
            if self.fenced {
                return;
            }
            let left = self.unrecorded.is_some() || !shared.lines().waiting.is_empty();
            if !left {
                return;
            }
            if let Err(e) = self.flush(shared).await {
                tracing::debug!(
                    task.id = shared.task_id,
                    "storing the last lines of task {} failed: {e}",
                    shared.task_id
                );
                failures += 1;
                if failures >= FINAL_TRIES {
                    break;
                }
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
        let waiting =
            shared.lines().waiting.len() + self.unrecorded.as_ref().map_or(0, |u| u.bytes.len());
        if waiting > 0 {
            shared.ctx.metrics.task_log_write_failures.increment(1);
            tracing::warn!(
                task.id = shared.task_id,
                "the last {} of the log of task {} could not be stored and are lost",
                format_size(waiting as u64),
                shared.task_id
            );
        }
    }

    /// Stores one segment: what was left unrecorded, or else what is waiting.
    async fn flush(&mut self, shared: &Shared) -> Result<(), String> {
        let ctx = &shared.ctx;
        if !self.opened {
            let start =
                task_logs::open(&ctx.pools.api, shared.task_id, shared.attempt, ctx.state.id)
                    .await
                    .map_err(|e| e.to_string())?;
            let Some(start) = start else {
                self.fenced = true;
                return Ok(());
            };
            self.opened = true;
            self.next_seq = start.segments + 1;
            self.offset = start.bytes.max(0) as u64;
            shared
                .lines()
                .continue_after(self.offset, start.truncated, shared.cap);
        }
        if self.unrecorded.is_none() {
            let mut lines = shared.lines();
            if lines.unstored_lines > 0 {
                let note = format!(
                    "{} line(s) were dropped: the log could not be stored for a while",
                    lines.unstored_lines
                );
                lines.unstored_lines = 0;
                lines.append_note(Level::Warn, &note);
            }
            if lines.waiting.is_empty() {
                return Ok(());
            }
            let bytes = Bytes::from(std::mem::take(&mut lines.waiting));
            lines.oldest = None;
            self.unrecorded = Some(Unrecorded {
                bytes,
                key: None,
                truncated: lines.capped,
            });
        }
        let Some(unrecorded) = self.unrecorded.as_mut() else {
            return Ok(());
        };
        let key = match &unrecorded.key {
            Some(key) => key.clone(),
            None => {
                let key = task_log::segment_key(shared.task_id, self.next_seq);
                ctx.blob
                    .put(&key, unrecorded.bytes.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                unrecorded.key = Some(key.clone());
                key
            }
        };
        let size = unrecorded.bytes.len() as u64;
        let segment = NewSegment {
            task_id: shared.task_id,
            attempt: shared.attempt,
            node_id: ctx.state.id,
            seq: self.next_seq,
            first_byte: self.offset as i64,
            bytes: size as i64,
            blob_key: &key,
            truncated: unrecorded.truncated,
        };
        let held = task_logs::add_segment(&ctx.pools.api, segment)
            .await
            .map_err(|e| e.to_string())?;
        if !held {
            self.fenced = true;
            return Ok(());
        }
        ctx.metrics.task_log_bytes.increment(size);
        self.unrecorded = None;
        self.next_seq += 1;
        self.offset += size;
        shared.stored.store(true, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_with(waiting: &str) -> Lines {
        Lines {
            waiting: waiting.as_bytes().to_vec(),
            length: waiting.len() as u64,
            ..Lines::default()
        }
    }

    #[test]
    fn earlier_attempts_count_against_the_cap_and_cut_at_a_line() {
        let cap = 4096;
        let line = "x".repeat(99) + "\n";
        let mut lines = lines_with(&line.repeat(20));
        // 2000 bytes waiting; earlier attempts wrote 2500: 1500 - 1024 = 572 fit.
        lines.continue_after(2500, false, cap);
        assert!(lines.capped);
        assert_eq!(lines.dropped_lines, 15);
        let text = String::from_utf8(lines.waiting.clone()).unwrap();
        assert!(text.starts_with(&line.repeat(5)), "{text}");
        assert!(text.ends_with("later lines are dropped\n"), "{text}");
        assert_eq!(lines.length, 2500 + lines.waiting.len() as u64);
        assert!(lines.length <= cap);
    }

    #[test]
    fn a_log_cut_by_an_earlier_attempt_takes_no_more_lines() {
        let mut lines = lines_with("a\nb\n");
        lines.continue_after(5000, true, 4096);
        assert!(lines.capped && lines.waiting.is_empty());
        assert_eq!(lines.dropped_lines, 2);
        assert_eq!(lines.length, 5000);
    }

    #[test]
    fn room_under_the_cap_keeps_everything() {
        let mut lines = lines_with("a\nb\n");
        lines.continue_after(100, false, 4096);
        assert!(!lines.capped);
        assert_eq!(lines.length, 104);
    }
}
