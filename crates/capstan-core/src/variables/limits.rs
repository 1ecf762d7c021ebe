//! The bounds that keep parsing and rendering cheap on hostile input.
//!
//! Templates come from users and variable values may come from scripts (output
//! variables), so every dimension that could grow without bound has a ceiling here.

/// Longest template accepted by [`Template::parse`](super::Template::parse), in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 4 * 1024 * 1024;

/// How deeply `#{if}`/`#{unless}` blocks and `#{A[#{B}]}` indexes may nest in one
/// template. Keeps the parser's and renderer's recursion shallow.
pub const MAX_NESTING_DEPTH: usize = 64;

/// How many variables deep a value may refer to another variable's value.
pub const MAX_EXPANSION_DEPTH: usize = 32;

/// Largest rendered result (and largest intermediate value, such as a condition's
/// operand), in bytes.
pub const MAX_OUTPUT_BYTES: usize = 10 * 1024 * 1024;

/// Units of work one render may spend: one per template element visited and per byte
/// copied or parsed, sixteen per variable looked up. Without it, values that test
/// each other in conditions could take exponential time while producing no output.
/// Three times what the largest possible output costs to copy.
pub const MAX_WORK: u64 = 32 * 1024 * 1024;

/// Nested render calls (blocks, indexes and expanded values together) one render may
/// stack up, so the call stack stays bounded even when every other limit is reached
/// at once.
pub(super) const MAX_RENDER_DEPTH: usize = 256;
