//! A command's output on its way to the server: read line by line, masked, numbered,
//! searched for service messages, then sent in batches.
//!
//! Masking happens in [`OutputLog`], before a line is numbered, so no unmasked text
//! reaches the channel to the sender, let alone the network.

use std::{
    collections::{BTreeMap, VecDeque},
    io,
    sync::Arc,
    time::Duration,
};

use capstan_api::{
    CommandVariable, OutputBatch, OutputLine, OutputStream,
    agents::{MAX_OUTPUT_BYTES, MAX_OUTPUT_LINES},
};
pub use capstan_core::variables::{MASK, Masker};
use capstan_core::{ServiceMessage, format_size, service_message};
use tokio::{
    io::{AsyncBufRead, AsyncBufReadExt},
    sync::{Mutex, mpsc},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::{
    client::AgentClient,
    retry::{GaveUp, until_accepted},
};

/// Longest line sent; longer ones are cut into pieces of this size.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Most output variables one command may set.
pub const MAX_OUTPUTS: usize = 100;
/// Longest value of an output variable.
pub const MAX_OUTPUT_VALUE_BYTES: usize = 64 * 1024;
/// Lines wait at most this long before they are sent...
const BATCH_EVERY: Duration = Duration::from_millis(200);
/// ...or less, once this many are waiting...
const BATCH_LINES: usize = 500;
/// ...or this many bytes of text.
const BATCH_BYTES: usize = 256 * 1024;

/// Lines between the script and the sender. When the server is slow the channel
/// fills, reading stops, and the script blocks on its next write instead of the
/// agent holding an unbounded backlog in memory.
pub const CHANNEL_LINES: usize = 4 * BATCH_LINES;

/// The masker for the sensitive values among a command's variables: the one the
/// server uses too, so a value is hidden the same way wherever it shows.
pub fn masker_for(variables: &[CommandVariable]) -> Masker {
    Masker::new(
        variables
            .iter()
            .filter(|v| v.sensitive)
            .map(|v| v.value.as_str()),
    )
}

/// The numbered, masked output of one command. Clones write to the same log.
#[derive(Debug, Clone)]
pub struct OutputLog {
    state: Arc<Mutex<LogState>>,
}

#[derive(Debug)]
struct LogState {
    next_seq: u64,
    masker: Masker,
    outputs: BTreeMap<String, String>,
    lines_tx: Option<mpsc::Sender<OutputLine>>,
}

impl LogState {
    /// Masks, cuts to [`MAX_LINE_BYTES`], numbers and queues a line. Cutting after
    /// masking means a cut can never split a secret and leave its halves readable.
    async fn emit(&mut self, stream: OutputStream, text: &str) {
        let masked = self.masker.mask(text);
        for piece in split_at_most(&masked, MAX_LINE_BYTES) {
            let line = OutputLine {
                seq: self.next_seq,
                stream,
                text: piece.to_owned(),
            };
            self.next_seq += 1;
            if let Some(lines_tx) = &self.lines_tx {
                // The sender is gone only when the agent gave up on this command's
                // output; the script still runs to its end.
                if lines_tx.send(line).await.is_err() {
                    self.lines_tx = None;
                }
            }
        }
    }
}

impl OutputLog {
    /// A log whose lines, numbered from 1, go to `lines_tx`.
    pub fn new(masker: Masker, lines_tx: mpsc::Sender<OutputLine>) -> Self {
        Self {
            state: Arc::new(Mutex::new(LogState {
                next_seq: 1,
                masker,
                outputs: BTreeMap::new(),
                lines_tx: Some(lines_tx),
            })),
        }
    }

    /// A line the agent writes about the command: a fetch, a warning, the exit.
    pub async fn agent(&self, text: &str) {
        self.state
            .lock()
            .await
            .emit(OutputStream::Agent, text)
            .await;
    }

    /// A line the script wrote, which may be a service message.
    pub async fn script(&self, stream: OutputStream, text: &str) {
        let mut state = self.state.lock().await;
        match service_message::parse(text) {
            None => state.emit(stream, text).await,
            Some(Ok(ServiceMessage::SetOutput { name, value })) => {
                let note = record_output(&mut state, name, value);
                state.emit(OutputStream::Agent, &note).await;
            }
            Some(Err(reason)) => {
                state.emit(stream, text).await;
                let note = format!("ignored a malformed service message: {reason}");
                state.emit(OutputStream::Agent, &note).await;
            }
        }
    }

    /// Masks a text that leaves the agent some other way, such as a result's error.
    pub async fn mask(&self, text: &str) -> String {
        self.state.lock().await.masker.mask(text).into_owned()
    }

    /// Ends the log: no more lines are sent, and the output variables are returned.
    pub async fn finish(&self) -> BTreeMap<String, String> {
        let mut state = self.state.lock().await;
        state.lines_tx = None;
        std::mem::take(&mut state.outputs)
    }
}

/// Stores an output variable within the limits; says in a line what happened. Values
/// are stored masked: the result leaves the agent as surely as the log does.
fn record_output(state: &mut LogState, name: String, value: String) -> String {
    let shown_name = state.masker.mask(&name).into_owned();
    if value.len() > MAX_OUTPUT_VALUE_BYTES {
        return format!(
            "ignored set-output of {shown_name}: its value is {}, more than the {} an output variable may hold",
            format_size(value.len() as u64),
            format_size(MAX_OUTPUT_VALUE_BYTES as u64),
        );
    }
    if state.outputs.len() >= MAX_OUTPUTS && !state.outputs.contains_key(&shown_name) {
        return format!(
            "ignored set-output of {shown_name}: a command sets at most {MAX_OUTPUTS} output variables"
        );
    }
    let note = if state.masker.reveals(&value) {
        format!(
            "set output variable {shown_name} (its value is not shown: it holds a sensitive value)"
        )
    } else {
        format!("set output variable {shown_name} to {value:?}")
    };
    let value = state.masker.mask(&value).into_owned();
    state.outputs.insert(shown_name, value);
    note
}

/// `text` in pieces of at most `max` bytes, cut at character boundaries.
fn split_at_most(text: &str, max: usize) -> Vec<&str> {
    if text.len() <= max {
        return vec![text];
    }
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, tail) = rest.split_at(cut);
        pieces.push(piece);
        rest = tail;
    }
    pieces.push(rest);
    pieces
}

/// Reads lines of at most a given length from a pipe: a script printing a gigabyte
/// without a newline must not make the agent hold a gigabyte.
#[derive(Debug)]
pub struct LineReader<R> {
    reader: R,
    max: usize,
    /// The start of a character cut in two at the end of the previous piece.
    carry: Vec<u8>,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub fn new(reader: R, max: usize) -> Self {
        Self {
            reader,
            max,
            carry: Vec::new(),
        }
    }

    /// The next line without its line ending, or a piece of `max` bytes of a longer
    /// one; `None` at the end.
    pub async fn next_line(&mut self) -> io::Result<Option<String>> {
        let mut line = std::mem::take(&mut self.carry);
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                return Ok((!line.is_empty()).then(|| decode(line)));
            }
            let room = self.max - line.len();
            // One byte past the room: a line of exactly `max` bytes still ends here.
            let search = &available[..available.len().min(room + 1)];
            if let Some(end) = search.iter().position(|b| *b == b'\n') {
                line.extend_from_slice(&search[..end]);
                self.reader.consume(end + 1);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(decode(line)));
            }
            let taken = available.len().min(room);
            line.extend_from_slice(&available[..taken]);
            self.reader.consume(taken);
            if line.len() >= self.max {
                let cut_char = incomplete_tail(&line);
                self.carry = line.split_off(line.len() - cut_char);
                return Ok(Some(decode(line)));
            }
        }
    }
}

fn decode(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// How many bytes at the end of `bytes` begin a UTF-8 character that is not complete.
fn incomplete_tail(bytes: &[u8]) -> usize {
    let start = bytes.len().saturating_sub(3);
    for i in (start..bytes.len()).rev() {
        let byte = bytes[i];
        if byte & 0b1100_0000 == 0b1000_0000 {
            continue;
        }
        let length = match byte {
            0xF0.. => 4,
            0xE0.. => 3,
            0xC0.. => 2,
            _ => 1,
        };
        let present = bytes.len() - i;
        return if present < length { present } else { 0 };
    }
    0
}

/// Lines waiting to be sent, cut into batches within the protocol's limits.
#[derive(Debug, Default)]
pub struct Batcher {
    pending: VecDeque<OutputLine>,
    bytes: usize,
    oldest: Option<Instant>,
}

impl Batcher {
    pub fn push(&mut self, line: OutputLine, now: Instant) {
        self.bytes += line.text.len();
        self.pending.push_back(line);
        self.oldest.get_or_insert(now);
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Enough is waiting to send without waiting for the timer.
    pub fn is_full(&self) -> bool {
        self.pending.len() >= BATCH_LINES || self.bytes >= BATCH_BYTES
    }

    /// When the waiting lines are due, if any wait.
    pub fn due_at(&self) -> Option<Instant> {
        self.oldest.map(|oldest| oldest + BATCH_EVERY)
    }

    /// The next batch: as many waiting lines as the protocol allows, at least one.
    pub fn take(&mut self) -> Vec<OutputLine> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(line) = self.pending.front() {
            let fits = batch.len() < MAX_OUTPUT_LINES
                && (batch.is_empty() || bytes + line.text.len() <= MAX_OUTPUT_BYTES);
            if !fits {
                break;
            }
            bytes += line.text.len();
            batch.extend(self.pending.pop_front());
        }
        self.bytes -= bytes;
        // Lines left behind are overdue already: keep the old clock so they go next.
        if self.pending.is_empty() {
            self.oldest = None;
        }
        batch
    }

    pub fn clear(&mut self) {
        self.pending.clear();
        self.bytes = 0;
        self.oldest = None;
    }
}

/// How sending a command's output ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shipped {
    /// Every line was accepted.
    All,
    /// The server no longer takes output for the command (404 or 409).
    Refused,
    /// The agent gave up before every line was accepted (shutting down).
    Abandoned,
}

/// Sends the lines from `lines_rx` as batches until the log is finished, one batch in
/// flight, each repeated until accepted.
pub async fn ship(
    mut lines_rx: mpsc::Receiver<OutputLine>,
    client: AgentClient,
    command_id: i64,
    give_up: CancellationToken,
) -> Shipped {
    let mut batcher = Batcher::default();
    let mut open = true;
    let mut refused = false;
    loop {
        if !open && batcher.is_empty() {
            return if refused {
                Shipped::Refused
            } else {
                Shipped::All
            };
        }
        let due = batcher.due_at();
        let send_now = !open || batcher.is_full() || due.is_some_and(|due| due <= Instant::now());
        if send_now && !batcher.is_empty() {
            let batch = OutputBatch {
                lines: batcher.take(),
            };
            let what = format!("sending output of command {command_id}");
            let sent = until_accepted(&what, &client, &give_up, || {
                client.post_output(command_id, &batch)
            })
            .await;
            match sent {
                Ok(()) => {}
                Err(GaveUp::Stopped) => return Shipped::Abandoned,
                Err(GaveUp::Refused(error)) if error.is_gone() => {
                    tracing::warn!(
                        command.id = command_id,
                        "the server no longer takes output of command {command_id}: {}; discarding the rest",
                        error.detail()
                    );
                    refused = true;
                    batcher.clear();
                }
                Err(GaveUp::Refused(error)) => {
                    tracing::error!(
                        command.id = command_id,
                        "the server refused {} lines of output of command {command_id}: {error}; they are lost",
                        batch.lines.len()
                    );
                }
            }
            continue;
        }
        tokio::select! {
            line = lines_rx.recv() => match line {
                Some(line) if !refused => batcher.push(line, Instant::now()),
                Some(_) => {}
                None => open = false,
            },
            () = sleep_until_some(due) => {}
        }
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(secrets: &[&str]) -> (OutputLog, mpsc::Receiver<OutputLine>) {
        let (lines_tx, lines_rx) = mpsc::channel(1000);
        let masker = Masker::new(secrets);
        (OutputLog::new(masker, lines_tx), lines_rx)
    }

    fn drain(lines_rx: &mut mpsc::Receiver<OutputLine>) -> Vec<OutputLine> {
        let mut lines = Vec::new();
        while let Ok(line) = lines_rx.try_recv() {
            lines.push(line);
        }
        lines
    }

    #[test]
    fn every_occurrence_of_every_secret_is_masked() {
        let masker = masker_for(&[
            CommandVariable {
                name: "A".into(),
                value: "hunter2".into(),
                sensitive: true,
            },
            CommandVariable {
                name: "B".into(),
                value: "hunter2-admin".into(),
                sensitive: true,
            },
            CommandVariable {
                name: "C".into(),
                value: "plain".into(),
                sensitive: false,
            },
        ]);
        assert_eq!(
            masker.mask("a hunter2 b hunter2-admin c hunter2hunter2 plain"),
            "a ******** b ******** c ******** plain"
        );
        assert_eq!(masker.mask("nothing to see"), "nothing to see");
        assert!(!Masker::new([""]).reveals("anything"));
    }

    #[tokio::test]
    async fn lines_are_numbered_and_masked_before_they_are_queued() {
        let (log, mut lines_rx) = log_with(&["s3cret"]);
        log.agent("starting").await;
        log.script(OutputStream::Stdout, "password=s3cret").await;
        log.script(OutputStream::Stderr, "warning").await;
        let lines = drain(&mut lines_rx);
        let seen: Vec<_> = lines
            .iter()
            .map(|l| (l.seq, l.stream, l.text.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                (1, OutputStream::Agent, "starting"),
                (2, OutputStream::Stdout, "password=********"),
                (3, OutputStream::Stderr, "warning"),
            ]
        );
    }

    #[tokio::test]
    async fn every_line_of_a_multi_line_secret_is_masked_as_the_script_prints_it() {
        let key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n}\n-----END PRIVATE KEY-----";
        let (log, mut lines_rx) = log_with(&[key]);
        for line in key.lines() {
            log.script(OutputStream::Stdout, &format!("key: {line}"))
                .await;
        }
        let texts: Vec<String> = drain(&mut lines_rx).into_iter().map(|l| l.text).collect();
        // `}` is too short to be told from ordinary output: it is left alone.
        assert_eq!(
            texts,
            ["key: ********", "key: ********", "key: }", "key: ********"]
        );
    }

    #[tokio::test]
    async fn a_valid_set_output_is_recorded_and_replaced_by_an_agent_line() {
        let (log, mut lines_rx) = log_with(&["tok3n"]);
        log.script(
            OutputStream::Stdout,
            "##capstan[set-output name='Ready' value='False']",
        )
        .await;
        log.script(
            OutputStream::Stdout,
            "##capstan[set-output name='Ready' value='True']",
        )
        .await;
        log.script(
            OutputStream::Stdout,
            "##capstan[set-output name='Url' value='https://u:tok3n@h']",
        )
        .await;
        let lines = drain(&mut lines_rx);
        let texts: Vec<_> = lines.iter().map(|l| (l.stream, l.text.as_str())).collect();
        assert_eq!(
            texts,
            [
                (
                    OutputStream::Agent,
                    "set output variable Ready to \"False\""
                ),
                (OutputStream::Agent, "set output variable Ready to \"True\""),
                (
                    OutputStream::Agent,
                    "set output variable Url (its value is not shown: it holds a sensitive value)"
                ),
            ]
        );
        let outputs = log.finish().await;
        assert_eq!(outputs["Ready"], "True", "the last one wins");
        assert_eq!(outputs["Url"], "https://u:********@h");
    }

    #[tokio::test]
    async fn a_malformed_service_message_is_kept_and_explained() {
        let (log, mut lines_rx) = log_with(&[]);
        let bad = "##capstan[set-output name='Ready']";
        log.script(OutputStream::Stdout, bad).await;
        let lines = drain(&mut lines_rx);
        assert_eq!(lines.len(), 2);
        assert_eq!(
            (lines[0].stream, lines[0].text.as_str()),
            (OutputStream::Stdout, bad)
        );
        assert_eq!(lines[1].stream, OutputStream::Agent);
        assert_eq!(
            lines[1].text,
            "ignored a malformed service message: set-output needs value='…'"
        );
        assert!(log.finish().await.is_empty());
    }

    #[tokio::test]
    async fn output_variables_are_limited_in_number_and_size() {
        let (log, mut lines_rx) = log_with(&[]);
        for i in 0..MAX_OUTPUTS {
            let line = format!("##capstan[set-output name='V{i}' value='{i}']");
            log.script(OutputStream::Stdout, &line).await;
        }
        log.script(
            OutputStream::Stdout,
            "##capstan[set-output name='Extra' value='x']",
        )
        .await;
        log.script(
            OutputStream::Stdout,
            "##capstan[set-output name='V0' value='again']",
        )
        .await;
        let big = "x".repeat(MAX_OUTPUT_VALUE_BYTES + 1);
        log.script(
            OutputStream::Stdout,
            &format!("##capstan[set-output name='V1' value='{big}']"),
        )
        .await;
        let lines = drain(&mut lines_rx);
        let last: Vec<_> = lines[MAX_OUTPUTS..]
            .iter()
            .map(|l| l.text.as_str())
            .collect();
        assert_eq!(
            last[0],
            "ignored set-output of Extra: a command sets at most 100 output variables"
        );
        assert_eq!(last[1], "set output variable V0 to \"again\"");
        assert!(
            last[2].starts_with("ignored set-output of V1: its value is 64 KiB"),
            "{}",
            last[2]
        );
        let outputs = log.finish().await;
        assert_eq!(outputs.len(), MAX_OUTPUTS);
        assert_eq!(outputs["V0"], "again");
        assert_eq!(outputs["V1"], "1");
    }

    #[tokio::test]
    async fn long_lines_are_cut_after_masking() {
        let (log, mut lines_rx) = log_with(&["S"]);
        // Masking makes the line 4.5 times longer than the 64 KiB read (adjacent
        // occurrences would merge into one mask, hence the dots).
        log.script(OutputStream::Stdout, &"S.".repeat(MAX_LINE_BYTES / 2))
            .await;
        let lines = drain(&mut lines_rx);
        assert_eq!(lines.len(), 5);
        assert!(lines.iter().all(|l| !l.text.contains('S')));
        assert!(lines[..4].iter().all(|l| l.text.len() == MAX_LINE_BYTES));
        assert_eq!(lines.last().unwrap().seq, 5);
    }

    #[tokio::test]
    async fn the_line_reader_caps_lines_and_keeps_characters_whole() {
        let mut input = Vec::new();
        input.extend_from_slice(b"short\r\n");
        input.extend_from_slice(b"exactly8\n");
        input.extend_from_slice("abcdefgé12\n".as_bytes()); // é straddles byte 8
        input.extend_from_slice(b"\n");
        input.extend_from_slice(b"no newline at the end");
        let mut reader = LineReader::new(&input[..], 8);
        let mut lines = Vec::new();
        while let Some(line) = reader.next_line().await.unwrap() {
            lines.push(line);
        }
        assert_eq!(
            lines,
            [
                "short", "exactly8", "abcdefg", "é12", "", "no newli", "ne at th", "e end"
            ]
        );
    }

    #[test]
    fn batches_respect_the_protocol_limits() {
        let now = Instant::now();
        let mut batcher = Batcher::default();
        assert_eq!(batcher.due_at(), None);
        for seq in 1..=1500 {
            let line = OutputLine {
                seq,
                stream: OutputStream::Stdout,
                text: "x".repeat(10),
            };
            batcher.push(line, now);
            if seq == BATCH_LINES as u64 - 1 {
                assert!(!batcher.is_full());
            }
        }
        assert!(batcher.is_full());
        assert_eq!(batcher.due_at(), Some(now + BATCH_EVERY));
        let first = batcher.take();
        assert_eq!(first.len(), MAX_OUTPUT_LINES);
        assert_eq!(first[0].seq, 1);
        let second = batcher.take();
        assert_eq!(second.len(), 500);
        assert_eq!(second[0].seq, 1001);
        assert!(batcher.is_empty() && batcher.due_at().is_none());

        let big = "y".repeat(MAX_LINE_BYTES);
        for seq in 0..20 {
            batcher.push(
                OutputLine {
                    seq,
                    stream: OutputStream::Stdout,
                    text: big.clone(),
                },
                now,
            );
        }
        let batch = batcher.take();
        let bytes: usize = batch.iter().map(|l| l.text.len()).sum();
        assert_eq!(batch.len(), MAX_OUTPUT_BYTES / MAX_LINE_BYTES);
        assert!(bytes <= MAX_OUTPUT_BYTES);
    }
}
