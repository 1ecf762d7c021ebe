//! Rules for the names of user-defined variables.
//!
//! A valid name is one that `#{Name}` can refer to and that cannot be mistaken for
//! a system variable.

/// Longest name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// Names starting with this (in any case) belong to system variables.
pub const RESERVED_PREFIX: &str = "Capstan.";

/// Text a name may not contain, because the template language gives it a meaning.
const FORBIDDEN: [&str; 8] = ["#{", "{", "}", "[", "]", "\"", "==", "!="];

/// Why a variable name is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("a variable name cannot be empty")]
    Empty,
    #[error("a variable name is at most {MAX_NAME_CHARS} characters, this one has {chars}")]
    TooLong { chars: usize },
    #[error("a variable name cannot contain control characters such as tabs or line breaks")]
    ControlCharacter,
    #[error("a variable name {0}")]
    Hidden(crate::names::HiddenCharacter),
    #[error("a variable name cannot contain `{text}`")]
    Forbidden { text: &'static str },
    #[error("a variable name cannot start or end with whitespace")]
    SurroundingWhitespace,
    #[error(
        "a variable name cannot have an empty part (two dots in a row, or a dot at its start or end) or spaces around a dot"
    )]
    BadPart,
    #[error("`{name}` reads as a template keyword (`if`, `unless`, `else`, `/if`, `/unless`)")]
    Keyword { name: String },
    #[error("names starting with `{RESERVED_PREFIX}` are reserved for system variables")]
    Reserved,
}

/// Checks a user-defined variable's name.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(NameError::TooLong { chars });
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::ControlCharacter);
    }
    crate::names::normalize(name).map_err(NameError::Hidden)?;
    if let Some(text) = FORBIDDEN.into_iter().find(|text| name.contains(text)) {
        return Err(NameError::Forbidden { text });
    }
    if name.trim() != name {
        return Err(NameError::SurroundingWhitespace);
    }
    if name
        .split('.')
        .any(|part| part.is_empty() || part.trim() != part)
    {
        return Err(NameError::BadPart);
    }
    if is_keyword(name) {
        return Err(NameError::Keyword {
            name: name.to_owned(),
        });
    }
    let reserved = name
        .get(..RESERVED_PREFIX.len())
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(RESERVED_PREFIX));
    if reserved {
        return Err(NameError::Reserved);
    }
    Ok(())
}

/// Whether `#{name}` would be read as a keyword tag rather than a substitution.
fn is_keyword(name: &str) -> bool {
    let first = name.split(char::is_whitespace).next().unwrap_or(name);
    matches!(first, "if" | "unless" | "else" | "/if" | "/unless")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_are_accepted() {
        for name in [
            "Db.Password",
            "Web Site Name",
            "a",
            "Port#2",
            "x=y",
            "Capstanx",
            "Capstan",
            "iffy",
            "If Enabled",
            &"n".repeat(MAX_NAME_CHARS),
        ] {
            assert_eq!(validate_name(name), Ok(()), "{name:?}");
        }
    }

    #[test]
    fn each_rule_has_its_own_error() {
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert_eq!(
            validate_name(&"n".repeat(MAX_NAME_CHARS + 1)),
            Err(NameError::TooLong { chars: 201 })
        );
        assert_eq!(validate_name("a\tb"), Err(NameError::ControlCharacter));
        assert_eq!(validate_name("a\nb"), Err(NameError::ControlCharacter));
        assert!(
            validate_name("Db\u{200b}Name")
                .unwrap_err()
                .to_string()
                .contains("U+200B ZERO WIDTH SPACE")
        );
        assert_eq!(
            validate_name("a#{b"),
            Err(NameError::Forbidden { text: "#{" })
        );
        assert_eq!(validate_name("a}"), Err(NameError::Forbidden { text: "}" }));
        assert_eq!(
            validate_name("a[1]"),
            Err(NameError::Forbidden { text: "[" })
        );
        assert_eq!(validate_name("a]"), Err(NameError::Forbidden { text: "]" }));
        assert_eq!(
            validate_name("a==b"),
            Err(NameError::Forbidden { text: "==" })
        );
        assert_eq!(validate_name(" a"), Err(NameError::SurroundingWhitespace));
        assert_eq!(validate_name("a "), Err(NameError::SurroundingWhitespace));
        assert_eq!(validate_name("a..b"), Err(NameError::BadPart));
        assert_eq!(validate_name(".a"), Err(NameError::BadPart));
        assert_eq!(validate_name("a .b"), Err(NameError::BadPart));
        assert!(matches!(
            validate_name("if x"),
            Err(NameError::Keyword { .. })
        ));
        assert!(matches!(
            validate_name("else"),
            Err(NameError::Keyword { .. })
        ));
    }

    #[test]
    fn the_system_prefix_is_reserved_in_any_case() {
        for name in ["Capstan.Release.Number", "capstan.x", "CAPSTAN.Y"] {
            assert_eq!(validate_name(name), Err(NameError::Reserved), "{name}");
        }
    }

    #[test]
    fn the_reserved_check_survives_multibyte_names() {
        assert_eq!(validate_name("Capsta\u{e9}n"), Ok(()));
        assert_eq!(validate_name("\u{e9}\u{e9}\u{e9}\u{e9}"), Ok(()));
    }
}
