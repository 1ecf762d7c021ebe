//! When a value counts as "true" in `#{if}`, `#{unless}` and run conditions.

/// Whether `value` counts as true: anything except empty text (after trimming) and,
/// in any case, `false`, `0`, `no` and `off`.
///
/// Scripts print `True`/`False` (PowerShell) or `true`/`false`, so the words are
/// compared case-insensitively, and surrounding whitespace such as a trailing line
/// break from `echo` does not change the answer.
pub fn is_truthy(value: &str) -> bool {
    let value = value.trim();
    !(value.is_empty()
        || ["false", "0", "no", "off"]
            .iter()
            .any(|falsy| value.eq_ignore_ascii_case(falsy)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falsy_words_in_any_case_and_empty_text_are_false() {
        for value in [
            "", "  ", "false", "False", "FALSE", "0", "no", "No", "off", "OFF", " false\n",
        ] {
            assert!(!is_truthy(value), "{value:?} should be false");
        }
    }

    #[test]
    fn anything_else_is_true() {
        for value in ["true", "True", "1", "yes", "on", "x", "00", "falsey", "-1"] {
            assert!(is_truthy(value), "{value:?} should be true");
        }
    }
}
