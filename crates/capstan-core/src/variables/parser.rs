//! Turns template text into nodes: literal text, substitutions and blocks.
//!
//! Blocks are tracked on an explicit stack rather than by recursion, so the only
//! recursion left is through nested indexes, which [`tag`](super::tag) bounds.

use super::ast::{Block, Condition, Node, Reference};
use super::cursor::{Cursor, Pos};
use super::error::{TemplateError, TemplateErrorKind as Kind};
use super::limits::{MAX_NESTING_DEPTH, MAX_TEMPLATE_BYTES};
use super::tag::{Tag, parse_tag};

/// A block whose `#{/if}` has not been seen yet.
struct OpenBlock {
    pos: Pos,
    negated: bool,
    condition: Condition,
    then: Vec<Node>,
    otherwise: Option<Vec<Node>>,
}

impl OpenBlock {
    fn keyword(&self) -> &'static str {
        keyword(self.negated)
    }

    fn current(&mut self) -> &mut Vec<Node> {
        self.otherwise.as_mut().unwrap_or(&mut self.then)
    }
}

fn keyword(negated: bool) -> &'static str {
    if negated { "unless" } else { "if" }
}

pub(super) fn parse(text: &str) -> Result<Vec<Node>, TemplateError> {
    if text.len() > MAX_TEMPLATE_BYTES {
        return Err(TemplateError::at(
            Pos { line: 1, column: 1 },
            Kind::TemplateTooLarge {
                size: text.len(),
                limit: MAX_TEMPLATE_BYTES,
            },
        ));
    }
    let mut cursor = Cursor::new(text);
    let mut root = Vec::new();
    let mut open: Vec<OpenBlock> = Vec::new();
    loop {
        let text_pos = cursor.pos();
        let literal = read_text(&mut cursor);
        if !literal.is_empty() {
            current(&mut root, &mut open).push(Node::Text {
                pos: text_pos,
                text: literal,
            });
        }
        if cursor.is_at_end() {
            break;
        }
        let start = cursor.pos();
        cursor.advance(2);
        match parse_tag(&mut cursor, start, open.len())? {
            Tag::Substitution(name) => {
                current(&mut root, &mut open)
                    .push(Node::Substitution(Reference { pos: start, name }));
            }
            Tag::Open { negated, condition } => {
                if open.len() + 1 >= MAX_NESTING_DEPTH {
                    return Err(TemplateError::at(
                        start,
                        Kind::TooDeep {
                            limit: MAX_NESTING_DEPTH,
                        },
                    ));
                }
                open.push(OpenBlock {
                    pos: start,
                    negated,
                    condition,
                    then: Vec::new(),
                    otherwise: None,
                });
            }
            Tag::Else => {
                let Some(block) = open.last_mut() else {
                    return Err(TemplateError::at(start, Kind::ElseOutsideBlock));
                };
                if block.otherwise.is_some() {
                    let keyword = block.keyword();
                    return Err(TemplateError::at(start, Kind::DuplicateElse { keyword }));
                }
                block.otherwise = Some(Vec::new());
            }
            Tag::Close { negated } => {
                let Some(block) = open.pop() else {
                    return Err(TemplateError::at(
                        start,
                        Kind::UnexpectedBlockEnd {
                            keyword: keyword(negated),
                        },
                    ));
                };
                if block.negated != negated {
                    return Err(TemplateError::at(
                        start,
                        Kind::MismatchedBlockEnd {
                            expected: block.keyword(),
                            found: keyword(negated),
                        },
                    ));
                }
                current(&mut root, &mut open).push(Node::Block(Box::new(Block {
                    pos: block.pos,
                    negated: block.negated,
                    condition: block.condition,
                    then: block.then,
                    otherwise: block.otherwise.unwrap_or_default(),
                })));
            }
        }
    }
    if let Some(block) = open.last() {
        return Err(TemplateError::at(
            block.pos,
            Kind::UnclosedBlock {
                keyword: block.keyword(),
            },
        ));
    }
    Ok(root)
}

fn current<'a>(root: &'a mut Vec<Node>, open: &'a mut [OpenBlock]) -> &'a mut Vec<Node> {
    match open.last_mut() {
        Some(block) => block.current(),
        None => root,
    }
}

/// Literal text up to the next `#{` that starts a tag, turning each `##{` into `#{`.
fn read_text(cursor: &mut Cursor<'_>) -> String {
    let mut text = String::new();
    loop {
        let rest = cursor.rest();
        let Some(hash) = rest.find('#') else {
            text.push_str(cursor.advance(rest.len()));
            return text;
        };
        text.push_str(cursor.advance(hash));
        if cursor.eat("##{") {
            text.push_str("#{");
        } else if cursor.starts_with("#{") {
            return text;
        } else {
            text.push_str(cursor.advance(1));
        }
    }
}
