//! The journal: the commands this agent has started, so that none runs twice, and how
//! each ended, so that a result the server never got can be given again.
//!
//! A command's id is appended and flushed to disk before the command is acknowledged
//! and run. A command whose acknowledgement was lost comes back on the next poll, and
//! comes back after a restart too; the journal is what tells the agent it already ran
//! it. A crash between the append and the run means the command never runs: at most
//! once is the promise.
//!
//! When a command ends, a second line records how: `<id> <outcome> <exit code>` (`-`
//! for none), flushed before its result is sent. A command that comes back once more
//! is then answered from the journal instead of being run; one started by an earlier
//! process of this agent with no end recorded was cut off by a restart, and is
//! reported failed rather than left to time out. Files written before ends were
//! recorded (bare ids) read as they always did; an agent that predates them skips the
//! end lines, which hold no bare id.

use std::{collections::HashMap, io, os::unix::fs::OpenOptionsExt, path::PathBuf};

use capstan_api::CommandOutcome;
use tokio::io::AsyncWriteExt;

/// How a command ended, as the journal keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    pub outcome: CommandOutcome,
    pub exit_code: Option<i32>,
}

/// What the journal knows of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Started by this process, not ended yet.
    Started,
    /// Started by an earlier process of this agent, which stopped before it ended.
    Interrupted,
    /// Ended, this way.
    Ended(Ended),
}

/// One line of the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    Started(i64),
    Ended(i64, Ended),
}

impl Line {
    fn parse(line: &str) -> Option<Self> {
        let mut words = line.split_whitespace();
        let id = words.next()?.parse().ok()?;
        let Some(outcome) = words.next() else {
            return Some(Self::Started(id));
        };
        let outcome = [
            CommandOutcome::Succeeded,
            CommandOutcome::Failed,
            CommandOutcome::TimedOut,
            CommandOutcome::Cancelled,
        ]
        .into_iter()
        .find(|o| o.as_str() == outcome)?;
        let exit_code = match words.next()? {
            "-" => None,
            code => Some(code.parse().ok()?),
        };
        if words.next().is_some() {
            return None;
        }
        Some(Self::Ended(id, Ended { outcome, exit_code }))
    }

    fn render(self) -> String {
        match self {
            Self::Started(id) => format!("{id}\n"),
            Self::Ended(id, ended) => {
                let code = ended
                    .exit_code
                    .map_or_else(|| "-".to_owned(), |c| c.to_string());
                format!("{id} {} {code}\n", ended.outcome.as_str())
            }
        }
    }
}

/// The append-only file of started and ended commands, and what it says in memory.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: tokio::fs::File,
    seen: HashMap<i64, Seen>,
}

impl Journal {
    /// Opens the journal at `path`, creating it if needed, and reads it.
    pub async fn open(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        let annotate = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(annotate(e)),
        };
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true).mode(0o600);
        let file = tokio::fs::OpenOptions::from(options)
            .open(&path)
            .await
            .map_err(annotate)?;
        let complete = match bytes.iter().rposition(|b| *b == b'\n') {
            Some(end) => &bytes[..=end],
            None => &[][..],
        };
        // A line cut short by a crash was never on disk whole: its command never
        // started, or its end was never recorded. Drop it, or the next line would be
        // appended to it.
        if complete.len() < bytes.len() {
            file.set_len(complete.len() as u64)
                .await
                .map_err(annotate)?;
            file.sync_data().await.map_err(annotate)?;
        }
        let mut seen = HashMap::new();
        for line in String::from_utf8_lossy(complete)
            .lines()
            .filter_map(Line::parse)
        {
            match line {
                Line::Started(id) => {
                    seen.entry(id).or_insert(Seen::Interrupted);
                }
                Line::Ended(id, ended) => {
                    seen.insert(id, Seen::Ended(ended));
                }
            }
        }
        Ok(Self { path, file, seen })
    }

    /// Whether the command was started here before.
    pub fn contains(&self, command_id: i64) -> bool {
        self.seen.contains_key(&command_id)
    }

    /// What the journal knows of the command, if it was started here.
    pub fn seen(&self, command_id: i64) -> Option<Seen> {
        self.seen.get(&command_id).copied()
    }

    /// Appends the id of a command about to start and waits until it is on disk.
    pub async fn record(&mut self, command_id: i64) -> io::Result<()> {
        self.append(Line::Started(command_id)).await?;
        self.seen.insert(command_id, Seen::Started);
        Ok(())
    }

    /// Appends how a command ended and waits until it is on disk.
    pub async fn record_end(&mut self, command_id: i64, ended: Ended) -> io::Result<()> {
        self.append(Line::Ended(command_id, ended)).await?;
        self.seen.insert(command_id, Seen::Ended(ended));
        Ok(())
    }

    async fn append(&mut self, line: Line) -> io::Result<()> {
        let text = line.render();
        let write = async {
            self.file.write_all(text.as_bytes()).await?;
            self.file.sync_data().await
        };
        write
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))
    }

    /// How many commands were started here.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    #[tokio::test]
    async fn started_commands_are_remembered_across_restarts() {
        let dir = TempDir::new();
        let path = dir.path().join("journal");
        let mut journal = Journal::open(&path).await.unwrap();
        assert!(journal.is_empty());
        journal.record(41).await.unwrap();
        journal.record(42).await.unwrap();
        assert!(journal.contains(41) && journal.contains(42));
        drop(journal);

        let mut reopened = Journal::open(&path).await.unwrap();
        assert!(reopened.contains(41) && reopened.contains(42));
        assert!(!reopened.contains(43));
        reopened.record(43).await.unwrap();
        drop(reopened);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "41\n42\n43\n");
    }

    #[tokio::test]
    async fn a_line_cut_short_by_a_crash_does_not_merge_with_the_next() {
        let dir = TempDir::new();
        let path = dir.path().join("journal");
        std::fs::write(&path, "41\n4").unwrap();
        let mut journal = Journal::open(&path).await.unwrap();
        assert!(journal.contains(41));
        assert!(
            !journal.contains(4),
            "the cut line is not a started command"
        );
        journal.record(50).await.unwrap();
        drop(journal);
        let journal = Journal::open(&path).await.unwrap();
        assert!(journal.contains(50));
        assert!(!journal.contains(450) && !journal.contains(4));
        assert_eq!(journal.len(), 2);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "41\n50\n");
    }

    #[tokio::test]
    async fn ends_are_kept_as_a_line_after_the_start() {
        let dir = TempDir::new();
        let path = dir.path().join("journal");
        let mut journal = Journal::open(&path).await.unwrap();
        journal.record(7).await.unwrap();
        assert_eq!(journal.seen(7), Some(Seen::Started));
        let ok = Ended {
            outcome: CommandOutcome::Succeeded,
            exit_code: Some(0),
        };
        journal.record_end(7, ok).await.unwrap();
        journal.record(8).await.unwrap();
        let timed_out = Ended {
            outcome: CommandOutcome::TimedOut,
            exit_code: None,
        };
        journal.record_end(8, timed_out).await.unwrap();
        journal.record(9).await.unwrap();
        drop(journal);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "7\n7 succeeded 0\n8\n8 timed_out -\n9\n"
        );

        let reopened = Journal::open(&path).await.unwrap();
        assert_eq!(reopened.seen(7), Some(Seen::Ended(ok)));
        assert_eq!(reopened.seen(8), Some(Seen::Ended(timed_out)));
        assert_eq!(
            reopened.seen(9),
            Some(Seen::Interrupted),
            "started by the process before, never ended"
        );
        assert_eq!(reopened.seen(10), None);
        assert_eq!(reopened.len(), 3);
    }

    #[tokio::test]
    async fn a_journal_of_bare_ids_reads_as_commands_cut_off_by_a_restart() {
        let dir = TempDir::new();
        let path = dir.path().join("journal");
        std::fs::write(&path, "41\n42\n").unwrap();
        let journal = Journal::open(&path).await.unwrap();
        assert_eq!(journal.seen(41), Some(Seen::Interrupted));
        assert!(journal.contains(42));
    }

    #[tokio::test]
    async fn lines_it_cannot_read_are_skipped_and_negative_exit_codes_kept() {
        let dir = TempDir::new();
        let path = dir.path().join("journal");
        std::fs::write(
            &path,
            "5\n5 failed -9\n6 exploded 1\n7 succeeded\n8 failed 1 extra\nx\n",
        )
        .unwrap();
        let journal = Journal::open(&path).await.unwrap();
        assert_eq!(
            journal.seen(5),
            Some(Seen::Ended(Ended {
                outcome: CommandOutcome::Failed,
                exit_code: Some(-9),
            }))
        );
        for id in [6, 7, 8] {
            assert!(
                !journal.contains(id),
                "line of {id} is not one the agent writes"
            );
        }
    }
}
