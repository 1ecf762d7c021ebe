//! Expanding a parsed template against a [`Lookup`].
//!
//! A value that contains `#{` is itself a template and is expanded where it is used.
//! That recursion is bounded four ways: a variable already being expanded is a cycle,
//! expansion depth and total nesting are capped, every buffer is capped at
//! [`MAX_OUTPUT_BYTES`], and the whole render has a work budget ([`MAX_WORK`]).

use std::collections::HashMap;
use std::rc::Rc;

use super::ast::{Condition, IndexPart, Name, Node, Operand, Reference};
use super::cursor::Pos;
use super::error::{TemplateError, TemplateErrorKind as Kind};
use super::limits::{MAX_EXPANSION_DEPTH, MAX_OUTPUT_BYTES, MAX_RENDER_DEPTH, MAX_WORK};
use super::lookup::{Lookup, key};
use super::parser;
use super::truthiness::is_truthy;

/// What one variable lookup and expansion costs against [`MAX_WORK`], in the same
/// units as copying a byte: roughly their relative time, so the budget bounds time.
const LOOKUP_COST: usize = 16;

pub(super) struct Renderer<'v> {
    vars: &'v dyn Lookup,
    /// Variables whose values are being expanded, outermost first: (key, name as written).
    expanding: Vec<(String, String)>,
    /// Parsed values, by key, so a value used many times is parsed once.
    parsed: HashMap<String, Rc<Vec<Node>>>,
    work: u64,
    depth: usize,
    /// Names whose values a condition or an index must not read, when guarded.
    sensitive: Option<&'v dyn Fn(&str) -> bool>,
    /// How many conditions and indexes are being evaluated around the current point.
    deciding: usize,
}

impl<'v> Renderer<'v> {
    pub(super) fn new(vars: &'v dyn Lookup) -> Self {
        Self {
            vars,
            expanding: Vec::new(),
            parsed: HashMap::new(),
            work: 0,
            depth: 0,
            sensitive: None,
            deciding: 0,
        }
    }

    /// A renderer that refuses to read a variable for which `sensitive` holds inside
    /// a condition or an index, however deep in values: the outcome of either tells
    /// something about the value (whether it equals a guess; which name it completes).
    pub(super) fn guarded(vars: &'v dyn Lookup, sensitive: &'v dyn Fn(&str) -> bool) -> Self {
        Self {
            sensitive: Some(sensitive),
            ..Self::new(vars)
        }
    }

    fn look_up(&self, name: &str, pos: Pos) -> Result<Option<&'v str>, TemplateError> {
        if self.deciding > 0 && self.sensitive.is_some_and(|sensitive| sensitive(name)) {
            return Err(TemplateError::at(
                pos,
                Kind::SensitiveRead {
                    name: name.to_owned(),
                },
            ));
        }
        Ok(self.vars.lookup(name))
    }

    pub(super) fn render(&mut self, nodes: &[Node], out: &mut String) -> Result<(), TemplateError> {
        let Some(first) = nodes.first() else {
            return Ok(());
        };
        self.enter(node_pos(first))?;
        let result = self.render_each(nodes, out);
        self.depth -= 1;
        result
    }

    fn render_each(&mut self, nodes: &[Node], out: &mut String) -> Result<(), TemplateError> {
        for node in nodes {
            let pos = node_pos(node);
            self.charge(1, pos)?;
            match node {
                Node::Text { text, .. } => self.push(out, text, pos)?,
                Node::Substitution(reference) => self.expand_reference(reference, out)?,
                Node::Block(block) => {
                    let holds = self.holds(&block.condition)?;
                    let branch = if holds != block.negated {
                        &block.then
                    } else {
                        &block.otherwise
                    };
                    self.render(branch, out)?;
                }
            }
        }
        Ok(())
    }

    fn enter(&mut self, pos: Pos) -> Result<(), TemplateError> {
        if self.depth >= MAX_RENDER_DEPTH {
            return Err(TemplateError::at(
                pos,
                Kind::TooDeep {
                    limit: MAX_RENDER_DEPTH,
                },
            ));
        }
        self.depth += 1;
        Ok(())
    }

    fn charge(&mut self, units: usize, pos: Pos) -> Result<(), TemplateError> {
        self.work = self.work.saturating_add(units as u64);
        if self.work > MAX_WORK {
            return Err(TemplateError::at(pos, Kind::TooMuchWork));
        }
        Ok(())
    }

    fn push(&mut self, out: &mut String, text: &str, pos: Pos) -> Result<(), TemplateError> {
        if out.len().saturating_add(text.len()) > MAX_OUTPUT_BYTES {
            return Err(TemplateError::at(
                pos,
                Kind::OutputTooLarge {
                    limit: MAX_OUTPUT_BYTES,
                },
            ));
        }
        self.charge(text.len(), pos)?;
        out.push_str(text);
        Ok(())
    }

    fn expand_reference(
        &mut self,
        reference: &Reference,
        out: &mut String,
    ) -> Result<(), TemplateError> {
        let name = self.resolve_name(&reference.name, reference.pos)?;
        self.charge(LOOKUP_COST, reference.pos)?;
        let Some(value) = self.look_up(&name, reference.pos)? else {
            return Err(TemplateError::at(reference.pos, Kind::Undefined { name }));
        };
        self.expand_value(&name, value, reference.pos, out)
    }

    /// The name to look up: the segments as written, nested indexes replaced by their
    /// values.
    fn resolve_name(&mut self, name: &Name, pos: Pos) -> Result<String, TemplateError> {
        self.enter(pos)?;
        let result = self.resolve_segments(name, pos);
        self.depth -= 1;
        result
    }

    fn resolve_segments(&mut self, name: &Name, pos: Pos) -> Result<String, TemplateError> {
        let mut resolved = String::new();
        for (i, segment) in name.segments.iter().enumerate() {
            if i > 0 {
                self.push(&mut resolved, ".", pos)?;
            }
            self.push(&mut resolved, &segment.ident, pos)?;
            let Some(parts) = &segment.index else {
                continue;
            };
            self.push(&mut resolved, "[", pos)?;
            for part in parts {
                match part {
                    IndexPart::Text(text) => self.push(&mut resolved, text, pos)?,
                    IndexPart::Reference(nested) => {
                        self.deciding += 1;
                        let expanded = self.expand_reference(nested, &mut resolved);
                        self.deciding -= 1;
                        expanded?;
                    }
                }
            }
            self.push(&mut resolved, "]", pos)?;
        }
        Ok(resolved)
    }

    /// Appends `value`, expanding any template in it; `pos` is where the reference
    /// that asked for it is.
    fn expand_value(
        &mut self,
        name: &str,
        value: &str,
        pos: Pos,
        out: &mut String,
    ) -> Result<(), TemplateError> {
        if !value.contains("#{") {
            return self.push(out, value, pos);
        }
        let key = key(name);
        if let Some(i) = self.expanding.iter().position(|(k, _)| *k == key) {
            let mut names: Vec<String> = self.expanding[i..]
                .iter()
                .map(|(_, written)| written.clone())
                .collect();
            names.push(name.to_owned());
            return Err(TemplateError::at(pos, Kind::Cycle { names }));
        }
        if self.expanding.len() >= MAX_EXPANSION_DEPTH {
            return Err(TemplateError::at(
                pos,
                Kind::ExpansionTooDeep {
                    limit: MAX_EXPANSION_DEPTH,
                },
            ));
        }
        let nodes = match self.parsed.get(&key) {
            Some(nodes) => Rc::clone(nodes),
            None => {
                self.charge(value.len(), pos)?;
                let nodes = parser::parse(value).map_err(|error| in_value(name, error, pos))?;
                let nodes = Rc::new(nodes);
                self.parsed.insert(key.clone(), Rc::clone(&nodes));
                nodes
            }
        };
        self.expanding.push((key, name.to_owned()));
        let result = self.render(&nodes, out);
        self.expanding.pop();
        result.map_err(|error| {
            if error.kind.concerns_whole_expansion() {
                TemplateError::at(pos, error.kind)
            } else {
                in_value(name, error, pos)
            }
        })
    }

    fn holds(&mut self, condition: &Condition) -> Result<bool, TemplateError> {
        self.deciding += 1;
        let holds = self.decide(condition);
        self.deciding -= 1;
        holds
    }

    fn decide(&mut self, condition: &Condition) -> Result<bool, TemplateError> {
        match condition {
            Condition::Truthy(reference) => {
                let value = self.variable_value(reference)?;
                Ok(value.is_some_and(|v| is_truthy(&v)))
            }
            Condition::Compare { left, equal, right } => {
                let left = self.operand_value(left)?;
                let right = self.operand_value(right)?;
                Ok((left == right) == *equal)
            }
        }
    }

    /// An operand's text; an undefined variable reads as empty text.
    fn operand_value(&mut self, operand: &Operand) -> Result<String, TemplateError> {
        match operand {
            Operand::Literal(text) => Ok(text.clone()),
            Operand::Variable(reference) => Ok(self.variable_value(reference)?.unwrap_or_default()),
        }
    }

    /// A variable's expanded value, or `None` when it is not defined: in a condition
    /// that is an answer, not an error.
    fn variable_value(&mut self, reference: &Reference) -> Result<Option<String>, TemplateError> {
        let name = self.resolve_name(&reference.name, reference.pos)?;
        self.charge(LOOKUP_COST, reference.pos)?;
        let Some(value) = self.look_up(&name, reference.pos)? else {
            return Ok(None);
        };
        let mut expanded = String::new();
        self.expand_value(&name, value, reference.pos, &mut expanded)?;
        Ok(Some(expanded))
    }
}

/// Keeps the inner error whole: its position is where in the value the problem is.
fn in_value(name: &str, error: TemplateError, pos: Pos) -> TemplateError {
    TemplateError::at(
        pos,
        Kind::InValue {
            name: name.to_owned(),
            error: Box::new(error),
        },
    )
}

fn node_pos(node: &Node) -> Pos {
    match node {
        Node::Text { pos, .. } => *pos,
        Node::Substitution(reference) => reference.pos,
        Node::Block(block) => block.pos,
    }
}
