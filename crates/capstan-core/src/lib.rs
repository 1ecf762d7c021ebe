//! Capstan's domain: the types every other crate speaks in, and the pure logic over them.
//!
//! This crate owns newtypes that are parsed once at the edge (node names, task caps,
//! durations, task and agent command states) so inner code never handles raw strings,
//! and the pure logic of deployments: the process model and its checks ([`process`]),
//! and the `#{...}` variable language with scoping and masking ([`variables`]), and the
//! character rule of every name an operator gives ([`names`]). It must never import a
//! database, HTTP or async crate: everything here is deterministic and unit-testable.

/// The text side of a state enum that has `ALL` and `as_str`: `Display` writes
/// `as_str`, and `FromStr` and `TryFrom<String>` take back exactly those strings,
/// anything else being `$unknown(text)`.
macro_rules! state_text {
    ($state:ty, $unknown:ident) => {
        impl std::fmt::Display for $state {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $state {
            type Err = $unknown;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .into_iter()
                    .find(|state| state.as_str() == s)
                    .ok_or_else(|| $unknown(s.to_owned()))
            }
        }

        impl TryFrom<String> for $state {
            type Error = $unknown;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                value.parse()
            }
        }
    };
}

pub mod access;
pub mod agent;
pub mod approval;
pub mod audit;
pub mod command;
pub mod deployment;
pub mod duration;
pub mod error_chain;
pub mod freeze;
pub mod lifecycle;
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
