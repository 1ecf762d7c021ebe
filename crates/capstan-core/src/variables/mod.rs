//! Variables: the `#{Name}` template language, scoped variable sets and masking of
//! sensitive values.
//!
//! Everything here is pure. The server gathers variables (project, scoped, system and
//! output variables) into something that implements [`Lookup`]; templates are rendered
//! against it. `docs/variables.md` is the user-facing description of the language.
//!
//! Layout: [`cursor`] tracks line and column while scanning, [`tag`] parses what sits
//! between `#{` and `}`, [`parser`] assembles tags and text into blocks, [`render`]
//! expands a parsed template with recursive, bounded expansion of values.

mod ast;
mod cursor;
mod error;
mod limits;
mod lookup;
mod mask;
mod name;
mod parser;
mod render;
mod scope;
mod tag;
mod template;
mod truthiness;

pub use error::{TemplateError, TemplateErrorKind};
pub use limits::{
    MAX_EXPANSION_DEPTH, MAX_NESTING_DEPTH, MAX_OUTPUT_BYTES, MAX_TEMPLATE_BYTES, MAX_WORK,
};
pub use lookup::{Lookup, VariableMap};
pub use mask::{MASK, MIN_LINE_CHARS, Masker};
pub use name::{MAX_NAME_CHARS, NameError, RESERVED_PREFIX, validate_name};
pub use scope::{Scope, ScopeContext, ScopedVariable, resolve, resolve_map};
pub use template::{Template, evaluate, evaluate_condition};
pub use truthiness::is_truthy;

#[cfg(test)]
mod tests;
