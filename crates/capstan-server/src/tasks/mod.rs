//! The API's side of tasks beyond one statement, kept out of the HTTP handlers.

pub mod blocked;
