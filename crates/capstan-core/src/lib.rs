//! Capstan's domain: the types every other crate speaks in, and the pure logic over them.
//!
//! This crate owns newtypes that are parsed once at the edge (node names, task caps,
//! durations, task and agent command states) so inner code never handles raw strings,
//! and the pure logic of deployments: the process model and its checks ([`process`]),
//! and the `#{...}` variable language with scoping and masking ([`variables`]), and the
//! character rule of every name an operator gives ([`names`]). It must never import a
//! database, HTTP or async crate: everything here is deterministic and unit-testable.

pub mod agent;
pub mod command;
pub mod duration;
pub mod error_chain;
pub mod names;
pub mod node;
pub mod package;
pub mod process;
pub mod script;
pub mod service_message;
pub mod size;
pub mod task;
pub mod variables;

pub use command::{CommandState, UnknownCommandState};
pub use duration::{DurationError, parse_duration};
pub use error_chain::error_chain;
pub use node::{NodeName, NodeNameError, TaskCap, TaskCapError};
pub use package::{PACKAGE_EXTENSIONS, PackageFileName, PackageId, PackageVersion};
pub use service_message::ServiceMessage;
pub use size::{SizeError, format_size, parse_size};
pub use task::{ConcurrencyKey, NodeLostPolicy, SleepArgs, TaskState, UnknownTaskState};
pub use variables::{Lookup, Template, TemplateError, VariableMap};
