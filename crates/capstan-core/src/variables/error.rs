//! What goes wrong when a template is parsed or rendered, and where.

use super::cursor::Pos;

/// A template that cannot be parsed or rendered, with the 1-based line and column
/// (counted in characters) of the place that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {kind}")]
pub struct TemplateError {
    pub line: u32,
    pub column: u32,
    pub kind: TemplateErrorKind,
}

impl TemplateError {
    /// The message with every sensitive value (and line of one) masked. Messages can
    /// hold evaluated text, such as a name whose index a sensitive value filled in:
    /// show users this, never the plain message.
    pub fn masked(&self, masker: &super::Masker) -> String {
        masker.mask(&self.to_string()).into_owned()
    }

    pub(super) fn at(pos: Pos, kind: TemplateErrorKind) -> Self {
        Self {
            line: pos.line,
            column: pos.column,
            kind,
        }
    }
}

/// What is wrong, in words meant for the person who wrote the template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateErrorKind {
    #[error("`#{{` is not closed: add a `}}` (or write `##{{` for a literal `#{{`)")]
    UnclosedTag,
    #[error("`#{{}}` has no variable name in it")]
    EmptyTag,
    #[error("a variable name has an empty part: two dots in a row, or a dot at its start or end")]
    EmptySegment,
    #[error("an index `[]` is empty: write the key between the brackets")]
    EmptyIndex,
    #[error("`[` is not closed: add a `]`")]
    UnclosedIndex,
    #[error("unexpected {}: expected {expected}", describe(*.found))]
    UnexpectedCharacter { found: char, expected: &'static str },
    #[error("only a variable name can be nested inside an index, not `#{{{keyword}}}`")]
    BlockInIndex { keyword: &'static str },
    #[error(
        "`#{{{keyword}}}` needs a condition, such as `#{{{keyword} Name}}` or `#{{{keyword} Name == \"text\"}}`"
    )]
    MissingCondition { keyword: &'static str },
    #[error("invalid condition: {detail}")]
    InvalidCondition { detail: &'static str },
    #[error("a quoted string is not closed: add a `\"`")]
    UnterminatedString,
    #[error("`\\{found}` is not an escape in a quoted string: only `\\\"` and `\\\\` are")]
    UnknownEscape { found: char },
    #[error("`#{{{keyword}}}` takes nothing after the keyword")]
    TrailingAfterKeyword { keyword: &'static str },
    #[error("`#{{{keyword} …}}` is never closed: add `#{{/{keyword}}}`")]
    UnclosedBlock { keyword: &'static str },
    #[error("`#{{/{keyword}}}` has no `#{{{keyword} …}}` to close")]
    UnexpectedBlockEnd { keyword: &'static str },
    #[error("`#{{/{found}}}` cannot close `#{{{expected} …}}`: write `#{{/{expected}}}`")]
    MismatchedBlockEnd {
        expected: &'static str,
        found: &'static str,
    },
    #[error("`#{{else}}` is outside any `#{{if …}}` or `#{{unless …}}` block")]
    ElseOutsideBlock,
    #[error("this `#{{{keyword} …}}` block already has an `#{{else}}`")]
    DuplicateElse { keyword: &'static str },
    #[error("blocks, nested names and the values they use nest more than {limit} levels deep")]
    TooDeep { limit: usize },
    #[error("the template is {size} bytes, more than the limit of {limit} bytes")]
    TemplateTooLarge { size: usize, limit: usize },
    #[error("the variable \"{name}\" is not defined")]
    Undefined { name: String },
    #[error("the variables refer to each other in a cycle: {}", .names.join(" -> "))]
    Cycle { names: Vec<String> },
    #[error("values refer to other variables more than {limit} levels deep")]
    ExpansionTooDeep { limit: usize },
    #[error("the result would be larger than {limit} bytes")]
    OutputTooLarge { limit: usize },
    #[error("expanding this takes too much work: variables refer to each other too many times")]
    TooMuchWork,
    #[error(
        "the variable \"{name}\" is sensitive: it cannot be read in a condition or an index here, since the outcome would reveal its value"
    )]
    SensitiveRead { name: String },
    #[error("in the value of \"{name}\": {error}")]
    InValue {
        name: String,
        error: Box<TemplateError>,
    },
}

impl TemplateErrorKind {
    /// Errors about the expansion as a whole rather than one place in one value: they
    /// are reported at the outermost reference instead of being wrapped in
    /// [`TemplateErrorKind::InValue`] once per level.
    pub(super) fn concerns_whole_expansion(&self) -> bool {
        matches!(
            self,
            Self::Cycle { .. }
                | Self::SensitiveRead { .. }
                | Self::TooDeep { .. }
                | Self::ExpansionTooDeep { .. }
                | Self::OutputTooLarge { .. }
                | Self::TooMuchWork
        )
    }
}

/// Names characters that would be invisible or confusing if printed as they are.
fn describe(found: char) -> String {
    match found {
        '\n' => "line break".to_owned(),
        '\t' => "tab".to_owned(),
        c if c.is_control() => format!("control character U+{:04X}", u32::from(c)),
        c => format!("`{c}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_leads_with_line_and_column() {
        let error = TemplateError {
            line: 3,
            column: 14,
            kind: TemplateErrorKind::Undefined {
                name: "Db.Password".to_owned(),
            },
        };
        assert_eq!(
            error.to_string(),
            "line 3, column 14: the variable \"Db.Password\" is not defined"
        );
    }

    #[test]
    fn invisible_characters_are_named() {
        let kind = TemplateErrorKind::UnexpectedCharacter {
            found: '\n',
            expected: "`}`",
        };
        assert_eq!(kind.to_string(), "unexpected line break: expected `}`");
        let kind = TemplateErrorKind::UnexpectedCharacter {
            found: '\u{7}',
            expected: "`}`",
        };
        assert_eq!(
            kind.to_string(),
            "unexpected control character U+0007: expected `}`"
        );
    }
}
