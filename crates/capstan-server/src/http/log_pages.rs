//! Pages of a task's log (`?tail=N`, `?before=<offset>&lines=N`): lines found by
//! reading backwards from an offset, a block at a time, out of the objects holding those
//! bytes only. A page of a 100,000-line log reads about a page's worth of it, whatever
//! the log's length.

use bytes::{Bytes, BytesMut};
use capstan_api::{PageRequest, TaskLogLine, TaskLogPage};
use capstan_db::task_logs::LogView;

use super::log_reader::{LogSink, ReadError, read_range};
use crate::node::NodeContext;

/// The first block read backwards; each next one is twice as large, up to
/// [`MAX_BLOCK`]: a tail of short lines costs one small read.
const FIRST_BLOCK: u64 = 64 * 1024;
const MAX_BLOCK: u64 = 1024 * 1024;
/// The most bytes one page holds: fewer lines than asked come back rather than more.
/// Above the longest line (64 KiB and the note that it was cut), so a page always
/// holds at least one line.
pub(crate) const MAX_PAGE_BYTES: u64 = 4 * 1024 * 1024;

/// Why a page could not be given.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PageError {
    /// The request names an offset that is not where a line starts.
    #[error("{0}")]
    Bad(String),
    #[error("{0}")]
    Read(#[from] ReadError),
}

/// A page and what reading it cost.
pub(crate) struct Read {
    pub page: TaskLogPage,
    /// Log bytes read from the blob store for it.
    pub bytes_read: u64,
}

/// The page `request` asks for of task `task_id`'s log, whose state and length `view`
/// gives.
pub(crate) async fn read_page(
    ctx: &NodeContext,
    task_id: i64,
    view: &LogView,
    request: PageRequest,
) -> Result<Read, PageError> {
    let log_bytes = view.bytes.max(0) as u64;
    let (end, wanted) = match request {
        PageRequest::Tail { lines } => (log_bytes, lines),
        PageRequest::Before { before, lines } => {
            if before > log_bytes {
                return Err(PageError::Bad(format!(
                    "`before` is past the end of the log: it is {log_bytes} bytes long, got {before}"
                )));
            }
            (before, lines)
        }
    };
    let mut blocks = Backwards::default();
    let mut low = end;
    let mut block = FIRST_BLOCK;
    // Until the bytes read hold `wanted` whole lines and the newline ending the line
    // before them, or reach the log's start, or the page's limit.
    while low > 0 && blocks.newlines <= wanted as usize {
        if blocks.len >= MAX_PAGE_BYTES {
            break;
        }
        let from = low.saturating_sub(block.min(MAX_PAGE_BYTES - blocks.len));
        let mut sink = Collect::default();
        read_range(ctx, task_id, from..low, &mut sink).await?;
        let got = sink.0.len() as u64;
        if got != low - from {
            return Err(PageError::Read(ReadError::Missing {
                offset: from,
                detail: format!("read {got} of the {} bytes asked for", low - from),
            }));
        }
        if low == end && matches!(request, PageRequest::Before { .. }) {
            // The byte before `before` must end a line: `before` starts one.
            if sink.0.last() != Some(&b'\n') {
                return Err(PageError::Bad(format!(
                    "`before` must be where a line starts (a line's `offset_start`, or a \
                     page's `start`); byte {end} is inside a line"
                )));
            }
        }
        blocks.push_front(sink.0.freeze());
        low = from;
        block = (block * 2).min(MAX_BLOCK);
    }
    let bytes = blocks.concat();
    let lines = split_lines(&bytes, low, wanted as usize);
    let start = lines.first().map_or(end, |l| l.offset_start);
    let page_end = lines.last().map_or(end, |l| l.offset_end);
    Ok(Read {
        page: TaskLogPage {
            more_before: start > 0,
            start,
            end: page_end,
            log_bytes,
            complete: view.state.is_finished(),
            state: view.state,
            lines,
        },
        bytes_read: bytes.len() as u64,
    })
}

/// The last `wanted` whole lines of `bytes`, which start at log offset `low`: the
/// first piece is a line only if `low` is the log's start, and bytes after the last
/// newline (a line still being written) are no line yet.
fn split_lines(bytes: &[u8], low: u64, wanted: usize) -> Vec<TaskLogLine> {
    let mut starts = Vec::new();
    let mut at = 0;
    if low > 0 {
        match bytes.iter().position(|b| *b == b'\n') {
            Some(first) => at = first + 1,
            None => return Vec::new(),
        }
    }
    while let Some(len) = bytes[at..].iter().position(|b| *b == b'\n') {
        starts.push((at, at + len));
        at += len + 1;
    }
    let skip = starts.len().saturating_sub(wanted);
    starts[skip..]
        .iter()
        .map(|&(s, e)| TaskLogLine {
            offset_start: low + s as u64,
            offset_end: low + e as u64 + 1,
            text: String::from_utf8_lossy(&bytes[s..e]).into_owned(),
        })
        .collect()
}

/// Blocks read backwards, oldest first, and how many newlines they hold.
#[derive(Default)]
struct Backwards {
    blocks: std::collections::VecDeque<Bytes>,
    newlines: usize,
    len: u64,
}

impl Backwards {
    fn push_front(&mut self, block: Bytes) {
        self.newlines += block.iter().filter(|b| **b == b'\n').count();
        self.len += block.len() as u64;
        self.blocks.push_front(block);
    }

    fn concat(&self) -> Bytes {
        let mut all = BytesMut::with_capacity(self.len as usize);
        for block in &self.blocks {
            all.extend_from_slice(block);
        }
        all.freeze()
    }
}

/// Gathers what a range read sends.
#[derive(Default)]
struct Collect(BytesMut);

impl LogSink for Collect {
    async fn accept(&mut self, chunk: Bytes) -> bool {
        self.0.extend_from_slice(&chunk);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cut_from_the_bytes_with_their_offsets() {
        let bytes = b"tail of one\nline two\nline three\npartial";
        let lines = split_lines(bytes, 100, 10);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].text, "line two");
        assert_eq!(lines[0].offset_start, 112);
        assert_eq!(lines[0].offset_end, 121);
        assert_eq!(lines[1].offset_start, 121);
        assert_eq!(lines[1].text, "line three");

        let from_start = split_lines(b"a\nb\nc\n", 0, 2);
        let texts: Vec<&str> = from_start.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["b", "c"]);
        assert_eq!(from_start[0].offset_start, 2);
        assert!(split_lines(b"no newline", 5, 3).is_empty());
    }
}
