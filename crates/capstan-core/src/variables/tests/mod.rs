//! Specs for the template language, one behaviour per test.

mod errors;
mod expansion;
mod syntax;

use super::{TemplateError, TemplateErrorKind, VariableMap, evaluate};

fn vars(pairs: &[(&str, &str)]) -> VariableMap {
    pairs.iter().copied().collect()
}

fn render(template: &str, pairs: &[(&str, &str)]) -> Result<String, TemplateError> {
    evaluate(template, &vars(pairs))
}

fn rendered(template: &str, pairs: &[(&str, &str)]) -> String {
    render(template, pairs).unwrap_or_else(|e| panic!("{template:?} failed: {e}"))
}

/// The error as `(line, column, kind)`, for exact comparisons.
fn error(template: &str, pairs: &[(&str, &str)]) -> (u32, u32, TemplateErrorKind) {
    match render(template, pairs) {
        Ok(out) => panic!("{template:?} rendered {out:?}, expected an error"),
        Err(e) => (e.line, e.column, e.kind),
    }
}
