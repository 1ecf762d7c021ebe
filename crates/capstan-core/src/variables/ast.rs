//! The parsed form of a template.

use super::cursor::Pos;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Node {
    Text { pos: Pos, text: String },
    Substitution(Reference),
    Block(Box<Block>),
}

/// A variable name as it appears in a template, at the place it appears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reference {
    /// Where `#{` starts for a substitution, or where the name starts in a condition.
    pub(super) pos: Pos,
    pub(super) name: Name,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Name {
    pub(super) segments: Vec<Segment>,
}

/// One dot-separated part of a name: `Action[Deploy web]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Segment {
    pub(super) ident: String,
    pub(super) index: Option<Vec<IndexPart>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum IndexPart {
    Text(String),
    Reference(Reference),
}

/// `#{if …}…#{else}…#{/if}`; `#{unless}` is the same with `negated` set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Block {
    /// Where the opening `#{if` starts.
    pub(super) pos: Pos,
    pub(super) negated: bool,
    pub(super) condition: Condition,
    pub(super) then: Vec<Node>,
    pub(super) otherwise: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Condition {
    Truthy(Reference),
    Compare {
        left: Operand,
        equal: bool,
        right: Operand,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Operand {
    Literal(String),
    Variable(Reference),
}

impl Name {
    /// The name as written, with each nested index shown as `*`.
    pub(super) fn pattern(&self) -> String {
        let mut pattern = String::new();
        for (i, segment) in self.segments.iter().enumerate() {
            if i > 0 {
                pattern.push('.');
            }
            pattern.push_str(&segment.ident);
            if let Some(parts) = &segment.index {
                pattern.push('[');
                if parts.iter().any(|p| matches!(p, IndexPart::Reference(_))) {
                    pattern.push('*');
                } else {
                    for part in parts {
                        if let IndexPart::Text(text) = part {
                            pattern.push_str(text);
                        }
                    }
                }
                pattern.push(']');
            }
        }
        pattern
    }
}
