//! What commands print on stdout. A reader that goes away early (`capstan tasks list |
//! head -2`) is not an error of the command: the write reports [`ReaderGone`], the
//! command stops there, and `main` exits quietly. `println!` would panic instead.

use std::{fmt, io::Write as _};

/// Stdout's reader closed its end of the pipe.
#[derive(Debug)]
pub struct ReaderGone;

impl fmt::Display for ReaderGone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stdout was closed by its reader")
    }
}

impl std::error::Error for ReaderGone {}

/// Whether `error` is, or was caused by, stdout's reader going away.
pub fn reader_gone(error: &anyhow::Error) -> bool {
    error.chain().any(<dyn std::error::Error>::is::<ReaderGone>)
}

/// Writes formatted text to stdout, as `outln!` does.
pub fn write_fmt(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args).map_err(stdout_error)
}

/// Writes bytes to stdout and flushes them, for output that streams.
pub fn write_all_and_flush(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(stdout_error)
}

/// Writes to stdout when nobody may be reading any more, as `capstan dev` does while
/// its cluster runs on regardless: a failed write is dropped, not an error.
pub fn write_best_effort(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn stdout_error(error: std::io::Error) -> anyhow::Error {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        ReaderGone.into()
    } else {
        anyhow::Error::new(error).context("cannot write to stdout")
    }
}

/// `println!` that returns an `anyhow::Result` instead of panicking when stdout is gone.
macro_rules! outln {
    () => {
        $crate::output::write_fmt(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;
