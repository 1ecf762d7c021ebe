//! The public face of the template language: parse once, list references, render.

use std::collections::HashSet;

use super::ast::{Condition, IndexPart, Node, Operand, Reference};
use super::error::TemplateError;
use super::lookup::{Lookup, key};
use super::parser;
use super::render::Renderer;
use super::truthiness::is_truthy;

/// A parsed template: text with `#{Name}` substitutions and `#{if}`/`#{unless}`
/// blocks. Parse once, render against as many variable sets as needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    nodes: Vec<Node>,
}

impl Template {
    /// Parses `text`, reporting the first syntax error with its line and column.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        parser::parse(text).map(|nodes| Template { nodes })
    }

    /// Every variable name the template can reference, as written with literal
    /// indexes, each once (compared case-insensitively) in order of first appearance.
    /// Names in conditions are included; a name with a nested `#{}` index is reported
    /// with that index as `*`, e.g. `Outer[*]`, followed by the nested name.
    ///
    /// Names that only appear inside variable values are not included: they are
    /// known only once the values are.
    pub fn references(&self) -> Vec<String> {
        let mut references = References::default();
        references.nodes(&self.nodes);
        references.names
    }

    /// Renders the template, expanding templates found in variable values too.
    ///
    /// Errors in a value are reported at the reference that used it, wrapping the
    /// value's own error ([`TemplateErrorKind::InValue`](super::TemplateErrorKind::InValue)).
    pub fn render(&self, vars: &dyn Lookup) -> Result<String, TemplateError> {
        let mut out = String::new();
        Renderer::new(vars).render(&self.nodes, &mut out)?;
        Ok(out)
    }

    /// Renders like [`Template::render`], but refuses
    /// ([`TemplateErrorKind::SensitiveRead`](super::TemplateErrorKind::SensitiveRead))
    /// to read a variable for which `sensitive` holds (given the name as looked up)
    /// inside a condition or an index, directly or through other values. For renders
    /// whose caller may not learn sensitive values, such as a preview: the branch a
    /// condition takes, or the name an index completes, would reveal them.
    pub fn render_guarded(
        &self,
        vars: &dyn Lookup,
        sensitive: &dyn Fn(&str) -> bool,
    ) -> Result<String, TemplateError> {
        let mut out = String::new();
        Renderer::guarded(vars, sensitive).render(&self.nodes, &mut out)?;
        Ok(out)
    }
}

/// Parses and renders `text` in one go.
pub fn evaluate(text: &str, vars: &dyn Lookup) -> Result<String, TemplateError> {
    Template::parse(text)?.render(vars)
}

/// Evaluates a run condition: renders `text`, then asks whether the result is truthy
/// (see [`is_truthy`]).
pub fn evaluate_condition(text: &str, vars: &dyn Lookup) -> Result<bool, TemplateError> {
    evaluate(text, vars).map(|rendered| is_truthy(&rendered))
}

#[derive(Default)]
struct References {
    names: Vec<String>,
    seen: HashSet<String>,
}

impl References {
    fn nodes(&mut self, nodes: &[Node]) {
        for node in nodes {
            match node {
                Node::Text { .. } => {}
                Node::Substitution(reference) => self.reference(reference),
                Node::Block(block) => {
                    match &block.condition {
                        Condition::Truthy(reference) => self.reference(reference),
                        Condition::Compare { left, right, .. } => {
                            for operand in [left, right] {
                                if let Operand::Variable(reference) = operand {
                                    self.reference(reference);
                                }
                            }
                        }
                    }
                    self.nodes(&block.then);
                    self.nodes(&block.otherwise);
                }
            }
        }
    }

    fn reference(&mut self, reference: &Reference) {
        let pattern = reference.name.pattern();
        if self.seen.insert(key(&pattern)) {
            self.names.push(pattern);
        }
        for segment in &reference.name.segments {
            for part in segment.index.iter().flatten() {
                if let IndexPart::Reference(nested) = part {
                    self.reference(nested);
                }
            }
        }
    }
}
