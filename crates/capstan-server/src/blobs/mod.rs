//! The node's side of the shared blob store: is it working (for ping), streaming
//! uploads in without orphans, and cleaning up what dead nodes and deleted rows left.

mod health;
mod sweep;
mod upload;

pub use health::BlobHealth;
pub(crate) use health::watch as watch_health;
pub(crate) use sweep::run as sweep;
pub use upload::InFlight;
pub(crate) use upload::{receive, refuse_declared_oversize, store_error};
