//! Parsing what sits between `#{` and `}`: a variable name, a block keyword, or a
//! condition.
//!
//! Names recurse only through nested indexes (`#{A[#{B}]}`), and every level counts
//! against [`MAX_NESTING_DEPTH`], so hostile input cannot exhaust the stack.

use super::ast::{Condition, IndexPart, Name, Operand, Reference, Segment};
use super::cursor::{Cursor, Pos};
use super::error::{TemplateError, TemplateErrorKind as Kind};
use super::limits::MAX_NESTING_DEPTH;

/// One tag, such as `#{Name}`, `#{if X}`, `#{else}` or `#{/if}`.
#[derive(Debug)]
pub(super) enum Tag {
    Substitution(Name),
    Open { negated: bool, condition: Condition },
    Else,
    Close { negated: bool },
}

/// Parses one tag; `cursor` is just past its `#{`, which is at `start`. `depth` is how
/// deeply the tag is nested already.
pub(super) fn parse_tag(
    cursor: &mut Cursor<'_>,
    start: Pos,
    depth: usize,
) -> Result<Tag, TemplateError> {
    cursor.skip_whitespace();
    if let Some((keyword, negated)) = opening_keyword(cursor.rest()) {
        cursor.eat(keyword);
        cursor.skip_whitespace();
        return match cursor.peek() {
            None => Err(TemplateError::at(start, Kind::UnclosedTag)),
            Some('}') => Err(TemplateError::at(start, Kind::MissingCondition { keyword })),
            Some(_) => {
                let condition = parse_condition(cursor, start, depth)?;
                Ok(Tag::Open { negated, condition })
            }
        };
    }
    for (keyword, tag) in [
        ("else", Tag::Else),
        ("/if", Tag::Close { negated: false }),
        ("/unless", Tag::Close { negated: true }),
    ] {
        if is_keyword(cursor.rest(), keyword) {
            cursor.eat(keyword);
            cursor.skip_whitespace();
            return match cursor.bump() {
                Some('}') => Ok(tag),
                Some(_) => Err(TemplateError::at(
                    start,
                    Kind::TrailingAfterKeyword { keyword },
                )),
                None => Err(TemplateError::at(start, Kind::UnclosedTag)),
            };
        }
    }
    let name = parse_name(cursor, depth)?;
    let Some(name) = name else {
        return match cursor.peek() {
            None => Err(TemplateError::at(start, Kind::UnclosedTag)),
            Some('}') => Err(TemplateError::at(start, Kind::EmptyTag)),
            Some(found) => Err(unexpected(cursor, found, "a variable name")),
        };
    };
    expect_close(cursor, start, "`}` after the variable name")?;
    Ok(Tag::Substitution(name))
}

fn opening_keyword(rest: &str) -> Option<(&'static str, bool)> {
    if is_keyword(rest, "if") {
        Some(("if", false))
    } else if is_keyword(rest, "unless") {
        Some(("unless", true))
    } else {
        None
    }
}

/// A keyword only counts as one when a space or the closing brace follows it, so
/// `#{iffy}` is still a variable.
fn is_keyword(rest: &str, keyword: &str) -> bool {
    rest.strip_prefix(keyword).is_some_and(|after| {
        after
            .chars()
            .next()
            .is_none_or(|c| c.is_whitespace() || c == '}')
    })
}

fn expect_close(
    cursor: &mut Cursor<'_>,
    start: Pos,
    expected: &'static str,
) -> Result<(), TemplateError> {
    cursor.skip_whitespace();
    match cursor.peek() {
        Some('}') => {
            cursor.bump();
            Ok(())
        }
        Some(found) => Err(unexpected(cursor, found, expected)),
        None => Err(TemplateError::at(start, Kind::UnclosedTag)),
    }
}

fn unexpected(cursor: &Cursor<'_>, found: char, expected: &'static str) -> TemplateError {
    TemplateError::at(cursor.pos(), Kind::UnexpectedCharacter { found, expected })
}

/// `Name`, `Name == "text"`, `"text" != Name`, `Name == Other`, up to and including
/// the closing `}`.
fn parse_condition(
    cursor: &mut Cursor<'_>,
    start: Pos,
    depth: usize,
) -> Result<Condition, TemplateError> {
    let left_pos = cursor.pos();
    let left = parse_operand(cursor, depth)?;
    cursor.skip_whitespace();
    let equal = if cursor.eat("==") {
        true
    } else if cursor.eat("!=") {
        false
    } else {
        return match (cursor.peek(), left) {
            (None, _) => Err(TemplateError::at(start, Kind::UnclosedTag)),
            (Some('}'), Some(Operand::Variable(reference))) => {
                cursor.bump();
                Ok(Condition::Truthy(reference))
            }
            (Some('}'), _) => Err(TemplateError::at(
                left_pos,
                Kind::InvalidCondition {
                    detail: "a quoted string alone is not a condition: compare it with `==` or `!=`",
                },
            )),
            (Some(found), _) => Err(unexpected(
                cursor,
                found,
                "`==`, `!=` or `}` after the condition",
            )),
        };
    };
    let Some(left) = left else {
        return Err(TemplateError::at(
            left_pos,
            Kind::InvalidCondition {
                detail: "a comparison needs a variable name or a quoted string before `==` or `!=`",
            },
        ));
    };
    cursor.skip_whitespace();
    let right_pos = cursor.pos();
    let Some(right) = parse_operand(cursor, depth)? else {
        if cursor.is_at_end() {
            return Err(TemplateError::at(start, Kind::UnclosedTag));
        }
        return Err(TemplateError::at(
            right_pos,
            Kind::InvalidCondition {
                detail: "a comparison needs a variable name or a quoted string after `==` or `!=`",
            },
        ));
    };
    expect_close(cursor, start, "`}` after the comparison")?;
    Ok(Condition::Compare { left, equal, right })
}

fn parse_operand(cursor: &mut Cursor<'_>, depth: usize) -> Result<Option<Operand>, TemplateError> {
    if cursor.peek() == Some('"') {
        return parse_string(cursor).map(|text| Some(Operand::Literal(text)));
    }
    let pos = cursor.pos();
    let name = parse_name(cursor, depth)?;
    Ok(name.map(|name| Operand::Variable(Reference { pos, name })))
}

/// A double-quoted string; `\"` and `\\` are its only escapes.
fn parse_string(cursor: &mut Cursor<'_>) -> Result<String, TemplateError> {
    let start = cursor.pos();
    cursor.bump();
    let mut text = String::new();
    loop {
        let escape_pos = cursor.pos();
        match cursor.bump() {
            None => return Err(TemplateError::at(start, Kind::UnterminatedString)),
            Some('"') => return Ok(text),
            Some('\\') => match cursor.bump() {
                Some(c @ ('"' | '\\')) => text.push(c),
                Some(found) => {
                    return Err(TemplateError::at(escape_pos, Kind::UnknownEscape { found }));
                }
                None => return Err(TemplateError::at(start, Kind::UnterminatedString)),
            },
            Some(c) => text.push(c),
        }
    }
}

/// A dotted name with optional indexes, leaving the cursor on whatever follows it.
/// `None` when there is no name at all, so the caller can say what it expected.
fn parse_name(cursor: &mut Cursor<'_>, depth: usize) -> Result<Option<Name>, TemplateError> {
    let mut segments = Vec::new();
    loop {
        let segment_pos = cursor.pos();
        let ident = read_ident(cursor);
        let index = if cursor.peek() == Some('[') {
            Some(parse_index(cursor, depth)?)
        } else {
            None
        };
        if ident.is_empty() {
            if segments.is_empty() && index.is_none() && cursor.peek() != Some('.') {
                return Ok(None);
            }
            return Err(TemplateError::at(segment_pos, Kind::EmptySegment));
        }
        segments.push(Segment { ident, index });
        if !cursor.eat(".") {
            return Ok(Some(Name { segments }));
        }
    }
}

/// Reads up to the next character that cannot be part of a name segment, trimming
/// the whitespace around it: `#{ Name }` and `#{Name}` are the same.
fn read_ident(cursor: &mut Cursor<'_>) -> String {
    let rest = cursor.rest();
    let mut end = rest.len();
    for (i, c) in rest.char_indices() {
        let after = &rest[i..];
        let stops = matches!(c, '.' | '[' | ']' | '{' | '}' | '"')
            || c.is_control()
            || after.starts_with("#{")
            || after.starts_with("==")
            || after.starts_with("!=");
        if stops {
            end = i;
            break;
        }
    }
    let ident = rest[..end].trim().to_owned();
    cursor.advance(end);
    ident
}

/// `[literal]` or `[#{Nested}]`, or a mix; the cursor is on the `[`.
fn parse_index(cursor: &mut Cursor<'_>, depth: usize) -> Result<Vec<IndexPart>, TemplateError> {
    let open = cursor.pos();
    cursor.bump();
    let mut parts = Vec::new();
    let mut text = String::new();
    loop {
        if cursor.starts_with("#{") {
            let nested_start = cursor.pos();
            if depth + 1 >= MAX_NESTING_DEPTH {
                return Err(TemplateError::at(
                    nested_start,
                    Kind::TooDeep {
                        limit: MAX_NESTING_DEPTH,
                    },
                ));
            }
            cursor.advance(2);
            let reference = parse_nested(cursor, nested_start, depth + 1)?;
            if !text.is_empty() {
                parts.push(IndexPart::Text(std::mem::take(&mut text)));
            }
            parts.push(IndexPart::Reference(reference));
            continue;
        }
        match cursor.peek() {
            None | Some('}') => return Err(TemplateError::at(open, Kind::UnclosedIndex)),
            Some(']') => {
                cursor.bump();
                break;
            }
            Some(found) if found == '[' || found.is_control() => {
                return Err(unexpected(cursor, found, "`]` to close the index"));
            }
            Some(c) => {
                cursor.bump();
                text.push(c);
            }
        }
    }
    if !text.is_empty() {
        parts.push(IndexPart::Text(text));
    }
    if parts.is_empty() {
        return Err(TemplateError::at(open, Kind::EmptyIndex));
    }
    Ok(parts)
}

/// The `#{Name}` inside an index; `cursor` is past its `#{`.
fn parse_nested(
    cursor: &mut Cursor<'_>,
    start: Pos,
    depth: usize,
) -> Result<Reference, TemplateError> {
    match parse_tag(cursor, start, depth)? {
        Tag::Substitution(name) => Ok(Reference { pos: start, name }),
        Tag::Open { negated, .. } => Err(TemplateError::at(
            start,
            Kind::BlockInIndex {
                keyword: if negated { "unless" } else { "if" },
            },
        )),
        Tag::Else => Err(TemplateError::at(
            start,
            Kind::BlockInIndex { keyword: "else" },
        )),
        Tag::Close { negated } => Err(TemplateError::at(
            start,
            Kind::BlockInIndex {
                keyword: if negated { "/unless" } else { "/if" },
            },
        )),
    }
}
