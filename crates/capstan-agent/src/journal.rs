//! The journal: ids of the commands this agent has started, so that none runs twice.
//!
//! An id is appended and flushed to disk before its command is acknowledged and run.
//! A command whose acknowledgement was lost comes back on the next poll, and comes
//! back after a restart too; the journal is what tells the agent it already ran it.
//! A crash between the append and the run means the command never runs: at most
//! once is the promise, and the server times out a command that never reports.

use std::{collections::HashSet, io, os::unix::fs::OpenOptionsExt, path::PathBuf};

use tokio::io::AsyncWriteExt;

/// The append-only file of started command ids, and those ids in memory.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: tokio::fs::File,
    started: HashSet<i64>,
}

impl Journal {
    /// Opens the journal at `path`, creating it if needed, and reads the ids in it.
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
        // A line cut short by a crash was never on disk whole, so its command never
        // started: drop it, or the next id would be appended to it.
        if complete.len() < bytes.len() {
            file.set_len(complete.len() as u64)
                .await
                .map_err(annotate)?;
            file.sync_data().await.map_err(annotate)?;
        }
        let started = String::from_utf8_lossy(complete)
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .collect();
        Ok(Self {
            path,
            file,
            started,
        })
    }

    /// Whether the command was started here before.
    pub fn contains(&self, command_id: i64) -> bool {
        self.started.contains(&command_id)
    }

    /// Appends the id and waits until it is on disk.
    pub async fn record(&mut self, command_id: i64) -> io::Result<()> {
        let line = format!("{command_id}\n");
        let write = async {
            self.file.write_all(line.as_bytes()).await?;
            self.file.sync_data().await
        };
        write
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))?;
        self.started.insert(command_id);
        Ok(())
    }

    /// How many commands were started here.
    pub fn len(&self) -> usize {
        self.started.len()
    }

    pub fn is_empty(&self) -> bool {
        self.started.is_empty()
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
}
