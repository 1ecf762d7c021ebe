//! Task logs in the blob store: where a task's log objects live, and how a line reads.
//!
//! A task's log is one stream of lines, `<time> <LEVEL> <text>\n`, with the time in
//! RFC 3339 UTC with microseconds. Its runs write it as segments, one object each, and
//! once the task has finished the segments are compacted into one object. Byte offsets
//! into the stream stay the same throughout, so a reader can resume at an offset
//! whichever objects hold the bytes now. Every object gets a fresh key: an upload that
//! is retried, or a run that lost its lease, never overwrites an object a database row
//! points to. Whatever lies under [`prefix`] belongs to the task and goes with it.

use time::{OffsetDateTime, UtcOffset, format_description::FormatItem, macros::format_description};
use uuid::Uuid;

/// The longest text one line keeps; longer ones are cut, saying so.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

const TIME_FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// Everything of task `task_id`'s log lives under this prefix.
pub fn prefix(task_id: i64) -> String {
    format!("logs/{task_id}/")
}

/// A fresh key for segment `seq` of a task's log.
pub fn segment_key(task_id: i64, seq: i32) -> String {
    format!("logs/{task_id}/seg-{seq:08}-{}", Uuid::new_v4().simple())
}

/// A fresh key for a task's compacted log.
pub fn compacted_key(task_id: i64) -> String {
    format!("logs/{task_id}/log-{}", Uuid::new_v4().simple())
}

/// How much a log line matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "INFO",
            Self::Warn => "WARN",
            Self::Error => "ERROR",
        }
    }
}

/// Appends `text` to `out` as log lines stamped `at`, one per line of `text` (a
/// trailing newline does not make an empty line), and returns how many it wrote.
/// Carriage returns are dropped and over-long lines cut, so every line is exactly one
/// line of the log.
pub fn write_lines(out: &mut Vec<u8>, at: OffsetDateTime, level: Level, text: &str) -> usize {
    let stamp = at
        .to_offset(UtcOffset::UTC)
        .format(TIME_FORMAT)
        .unwrap_or_else(|_| "0000-00-00T00:00:00.000000Z".to_owned());
    let text = text.strip_suffix('\n').unwrap_or(text);
    let mut lines = 0;
    for piece in text.split('\n') {
        out.extend_from_slice(stamp.as_bytes());
        out.push(b' ');
        out.extend_from_slice(level.as_str().as_bytes());
        out.push(b' ');
        let piece = piece.strip_suffix('\r').unwrap_or(piece);
        let kept = if piece.len() > MAX_LINE_BYTES {
            let mut end = MAX_LINE_BYTES;
            while !piece.is_char_boundary(end) {
                end -= 1;
            }
            &piece[..end]
        } else {
            piece
        };
        out.extend(kept.bytes().filter(|b| *b != b'\r'));
        if kept.len() < piece.len() {
            out.extend_from_slice(format!(" [line cut: it had {} bytes]", piece.len()).as_bytes());
        }
        out.push(b'\n');
        lines += 1;
    }
    lines
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn lines(level: Level, text: &str) -> String {
        let mut out = Vec::new();
        write_lines(
            &mut out,
            datetime!(2026-11-29 10:00:01.5 +01:00),
            level,
            text,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_line_is_time_level_text() {
        assert_eq!(
            lines(Level::Info, "tick 1"),
            "2026-11-29T09:00:01.500000Z INFO tick 1\n"
        );
        assert_eq!(
            lines(Level::Error, ""),
            "2026-11-29T09:00:01.500000Z ERROR \n"
        );
    }

    #[test]
    fn several_lines_of_text_become_several_log_lines() {
        assert_eq!(
            lines(Level::Warn, "one\r\ntwo\n"),
            "2026-11-29T09:00:01.500000Z WARN one\n2026-11-29T09:00:01.500000Z WARN two\n"
        );
    }

    #[test]
    fn long_lines_are_cut_at_a_character_and_say_so() {
        let long = "é".repeat(MAX_LINE_BYTES);
        let out = lines(Level::Info, &long);
        assert_eq!(out.lines().count(), 1);
        assert!(out.ends_with(&format!(" [line cut: it had {} bytes]\n", long.len())));
        assert!(out.len() < MAX_LINE_BYTES + 100);
    }

    #[test]
    fn keys_are_fresh_and_under_the_task_prefix() {
        let (a, b) = (segment_key(7, 3), segment_key(7, 3));
        assert_ne!(a, b);
        assert!(a.starts_with("logs/7/seg-00000003-"), "{a}");
        assert!(compacted_key(7).starts_with(&prefix(7)));
    }
}
