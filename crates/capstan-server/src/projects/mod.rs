//! Projects, their variables and releases: what needs more than one statement or the
//! node's secrets, kept out of the HTTP handlers. Each service returns its own error;
//! the HTTP layer words it as a status.

pub mod preview;
pub mod releases;
pub mod variables;

/// Why a save based on an outdated version was refused, and how to recover.
pub fn outdated(what: &str, sent: i64, current: i64) -> String {
    format!(
        "the {what} changed since you read them: you sent version {sent}, it is at version \
         {current} now; read them again, reapply your change and save with version {current}"
    )
}
