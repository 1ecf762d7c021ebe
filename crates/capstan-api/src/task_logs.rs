//! A task's log on the wire: `GET /api/tasks/{id}/log` as plain text, or followed as
//! server-sent events, and a reader for those events.
//!
//! Each event of a followed log is one line (`data:`) with the byte offset just past it
//! (`id:`); a client that reconnects with `Last-Event-ID: <offset>` continues after that
//! line. The last event is `event: end` with a [`TaskLogEnd`], once the task has
//! finished and every line was sent.

use capstan_core::TaskState;
use serde::{Deserialize, Serialize};

/// The media type of a followed log.
pub const EVENT_STREAM: &str = "text/event-stream";
/// The name of the last event of a followed log.
pub const END_EVENT: &str = "end";

/// The most lines one page of a log (`tail`, `before` with `lines`) holds.
pub const MAX_PAGE_LINES: u32 = 5_000;
/// The lines a `before` page holds when `lines` is not given.
pub const DEFAULT_PAGE_LINES: u32 = 500;

/// Options of `GET /api/tasks/{id}/log`. Without any, the whole log as text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TaskLogQuery {
    /// Stream the log as server-sent events as it grows, until the task has finished.
    #[serde(default)]
    pub follow: bool,
    /// With `follow`: start at this byte offset (a line's `offset_end`, or a page's
    /// `end`) instead of the log's start; `Last-Event-ID`, sent on a reconnection,
    /// takes precedence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 0)]
    pub from: Option<u64>,
    /// Answer a page (JSON, a [`TaskLogPage`]) of the log's last this many lines,
    /// 1-5000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 5000)]
    pub tail: Option<u32>,
    /// Answer a page (JSON, a [`TaskLogPage`]) of the `lines` lines that end at this
    /// byte offset: a line's `offset_start`, or a page's `start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 0)]
    pub before: Option<u64>,
    /// With `before`: how many lines, 1-5000 (500 if not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 5000)]
    pub lines: Option<u32>,
}

/// What a page of the log asks for, once the query is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageRequest {
    /// The last `lines` lines.
    Tail { lines: u32 },
    /// The `lines` lines ending at byte offset `before`.
    Before { before: u64, lines: u32 },
}

impl TaskLogQuery {
    /// The page asked for, if any; an error in words for a query that makes no sense.
    pub fn page(&self) -> Result<Option<PageRequest>, String> {
        let count = |name: &str, n: u32| {
            if (1..=MAX_PAGE_LINES).contains(&n) {
                Ok(n)
            } else {
                Err(format!(
                    "`{name}` must be 1-{MAX_PAGE_LINES} lines, got {n}"
                ))
            }
        };
        if self.follow && (self.tail.is_some() || self.before.is_some()) {
            return Err(
                "`follow` streams the log from `from`; it does not go with `tail` or `before`"
                    .to_owned(),
            );
        }
        if self.from.is_some() && !self.follow {
            return Err("`from` goes with `follow=true` (use `before` to page back)".to_owned());
        }
        match (self.tail, self.before, self.lines) {
            (Some(_), Some(_), _) => Err("give either `tail` or `before`, not both".to_owned()),
            (Some(_), None, Some(_)) => {
                Err("`lines` goes with `before`; `tail` itself says how many lines".to_owned())
            }
            (Some(tail), None, None) => Ok(Some(PageRequest::Tail {
                lines: count("tail", tail)?,
            })),
            (None, Some(before), lines) => Ok(Some(PageRequest::Before {
                before,
                lines: count("lines", lines.unwrap_or(DEFAULT_PAGE_LINES))?,
            })),
            (None, None, Some(_)) => Err("`lines` goes with `before`".to_owned()),
            (None, None, None) => Ok(None),
        }
    }
}

/// One line of a page of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskLogLine {
    /// The byte offset of the line's first byte.
    pub offset_start: u64,
    /// The byte offset just past the line's newline: the next line's `offset_start`.
    pub offset_end: u64,
    /// The line without its newline: `<time> <LEVEL> <text>`.
    pub text: String,
}

/// A page of a task's log: consecutive lines, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskLogPage {
    pub lines: Vec<TaskLogLine>,
    /// The offset of the first line (`end` when there are no lines): page back with
    /// `before=<start>`.
    pub start: u64,
    /// The offset just past the last line: follow on with `follow=true&from=<end>`.
    pub end: u64,
    /// There are lines before `start`.
    pub more_before: bool,
    /// The log's length when the page was read.
    pub log_bytes: u64,
    /// The task has finished: the log grows no more.
    pub complete: bool,
    #[schema(value_type = String, example = "running")]
    pub state: TaskState,
}

/// The data of the `end` event: how the task finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskLogEnd {
    #[schema(value_type = String, example = "succeeded")]
    pub state: TaskState,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
}

/// One event of a followed log, as a client sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum LogEvent {
    /// A line of the log, without its newline; `offset` is the byte offset just past it.
    Line { offset: u64, text: String },
    /// The task has finished and every line was sent.
    End(TaskLogEnd),
}

/// A server-sent event, as [`SseParser`] reads it; in the OpenAPI document, the shape
/// of each event of a followed log.
#[derive(Debug, Clone, Default, PartialEq, Eq, utoipa::ToSchema)]
pub struct SseEvent {
    /// A line's byte offset just past it; absent on the `end` event.
    #[schema(pattern = "^[0-9]+$")]
    pub id: Option<String>,
    /// `message` for a line, `end` for the last event.
    pub event: Option<String>,
    /// The line, or the `end` event's TaskLogEnd as JSON.
    pub data: String,
}

/// Reads server-sent events out of bytes as they arrive, whatever the chunking.
#[derive(Debug, Default)]
pub struct SseParser {
    partial: Vec<u8>,
    current: SseEvent,
    has_data: bool,
}

impl SseParser {
    /// Takes the next bytes and returns the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.partial.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(end) = self.partial[start..].iter().position(|b| *b == b'\n') {
            let line_end = start + end;
            let line = String::from_utf8_lossy(&self.partial[start..line_end]).into_owned();
            let line = line.strip_suffix('\r').unwrap_or(&line);
            start = line_end + 1;
            if line.is_empty() {
                if self.has_data || self.current.event.is_some() {
                    events.push(std::mem::take(&mut self.current));
                } else {
                    self.current = SseEvent::default();
                }
                self.has_data = false;
                continue;
            }
            // Comments (keep-alives) start with a colon.
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => self.current.id = Some(value.to_owned()),
                "event" => self.current.event = Some(value.to_owned()),
                "data" => {
                    if self.has_data {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        self.partial.drain(..start);
        events
    }
}

impl SseEvent {
    /// The log event this is, if it is one.
    pub fn into_log_event(self) -> Result<LogEvent, String> {
        match self.event.as_deref() {
            Some(END_EVENT) => serde_json::from_str(&self.data)
                .map(LogEvent::End)
                .map_err(|e| format!("the end event is not a task's end: {e}")),
            None | Some("message") => {
                let offset = self
                    .id
                    .as_deref()
                    .and_then(|id| id.parse().ok())
                    .ok_or_else(|| format!("a log line came without a byte offset: {self:?}"))?;
                Ok(LogEvent::Line {
                    offset,
                    text: self.data,
                })
            }
            Some(other) => Err(format!("unexpected event `{other}`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_whatever_the_chunks() {
        let stream = b": keep-alive\n\nid: 42\ndata: 2026-11-29T09:00:01.500000Z INFO tick 1\n\nevent: end\ndata: {\"state\":\"failed\",\"error\":\"boom\"}\n\n";
        for split in 0..stream.len() {
            let mut parser = SseParser::default();
            let mut events = parser.feed(&stream[..split]);
            events.extend(parser.feed(&stream[split..]));
            let events: Vec<LogEvent> = events
                .into_iter()
                .map(|e| e.into_log_event().unwrap())
                .collect();
            assert_eq!(
                events,
                vec![
                    LogEvent::Line {
                        offset: 42,
                        text: "2026-11-29T09:00:01.500000Z INFO tick 1".to_owned()
                    },
                    LogEvent::End(TaskLogEnd {
                        state: TaskState::Failed,
                        error: Some("boom".to_owned())
                    })
                ],
                "split at {split}"
            );
        }
    }
}
