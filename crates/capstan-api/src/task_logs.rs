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

/// Options of `GET /api/tasks/{id}/log`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TaskLogQuery {
    /// Stream the log as server-sent events as it grows, until the task has finished.
    #[serde(default)]
    pub follow: bool,
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
