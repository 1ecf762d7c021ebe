//! Projects, their variables and releases: what needs more than one statement or the
//! node's secrets, kept out of the HTTP handlers.

pub mod preview;
pub mod releases;
pub mod variables;
