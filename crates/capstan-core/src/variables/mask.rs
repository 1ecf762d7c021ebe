//! Hiding sensitive values in task logs, error messages and previews. The agent and
//! the server use this one masker.

use std::borrow::Cow;
use std::ops::Range;

/// What each hidden stretch of text becomes.
pub const MASK: &str = "********";

/// A line of a multi-line secret with fewer non-whitespace characters than this is not
/// masked on its own (it still is within the whole value): `}`, `-- `, `END` are too
/// common in ordinary output to tell, and masking them everywhere would mangle logs
/// without hiding anything worth hiding.
pub const MIN_LINE_CHARS: usize = 4;

/// Replaces every occurrence of any secret in a piece of text with [`MASK`].
#[derive(Clone, Default)]
pub struct Masker {
    /// Longest first, without duplicates.
    secrets: Vec<String>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The whole point of a masker is that its contents never get printed.
        f.debug_struct("Masker")
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

impl Masker {
    /// A masker for `secrets`. Empty values are ignored. A multi-line secret is also
    /// masked line by line, because logs arrive one line at a time and a line of the
    /// secret would otherwise leak on its own. Each line is matched without its
    /// surrounding whitespace, and lines of fewer than [`MIN_LINE_CHARS`]
    /// non-whitespace characters are skipped.
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut all: Vec<String> = Vec::new();
        for secret in secrets {
            let secret = secret.as_ref();
            if secret.is_empty() {
                continue;
            }
            all.push(secret.to_owned());
            if secret.contains(['\n', '\r']) {
                all.extend(
                    secret
                        .split(['\n', '\r'])
                        .map(str::trim)
                        .filter(|line| {
                            line.chars().filter(|c| !c.is_whitespace()).count() >= MIN_LINE_CHARS
                        })
                        .map(str::to_owned),
                );
            }
        }
        all.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        all.dedup();
        Self { secrets: all }
    }

    /// `text` with every occurrence of a secret replaced by [`MASK`]; borrowed when
    /// nothing needed hiding.
    ///
    /// Overlapping or adjacent occurrences become one mask, so a secret that contains
    /// another, or two secrets that overlap, leave no fragment behind.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut hidden: Vec<Range<usize>> = Vec::new();
        for secret in &self.secrets {
            // Overlapping occurrences matter too ("aa" in "aaa"); after each match the
            // search restarts one character later rather than after the match.
            let mut from = 0;
            while let Some(found) = text[from..].find(secret.as_str()) {
                let start = from + found;
                hidden.push(start..start + secret.len());
                let step = text[start..].chars().next().map_or(1, char::len_utf8);
                from = start + step;
            }
        }
        if hidden.is_empty() {
            return Cow::Borrowed(text);
        }
        hidden.sort_by_key(|range| range.start);
        let mut masked = String::with_capacity(text.len());
        let mut shown_from = 0;
        let mut ranges = hidden.into_iter().peekable();
        while let Some(mut range) = ranges.next() {
            while let Some(next) = ranges.next_if(|next| next.start <= range.end) {
                range.end = range.end.max(next.end);
            }
            masked.push_str(&text[shown_from..range.start]);
            masked.push_str(MASK);
            shown_from = range.end;
        }
        masked.push_str(&text[shown_from..]);
        Cow::Owned(masked)
    }

    /// Whether `text` holds a secret (or a line of one) that [`Masker::mask`] would hide.
    pub fn reveals(&self, text: &str) -> bool {
        self.secrets
            .iter()
            .any(|secret| text.contains(secret.as_str()))
    }

    /// Whether there is nothing to hide.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_occurrence_is_masked() {
        let masker = Masker::new(["hunter2"]);
        assert_eq!(
            masker.mask("password hunter2, again hunter2."),
            "password ********, again ********."
        );
    }

    #[test]
    fn text_without_secrets_is_borrowed() {
        let masker = Masker::new(["hunter2"]);
        assert!(matches!(masker.mask("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn empty_secrets_are_ignored() {
        let masker = Masker::new(["", ""]);
        assert!(masker.is_empty());
        assert_eq!(masker.mask("anything"), "anything");
        assert!(Masker::new(Vec::<String>::new()).is_empty());
    }

    #[test]
    fn a_secret_containing_another_is_hidden_whole() {
        let masker = Masker::new(["abc", "abcdef"]);
        assert_eq!(masker.mask("x abcdef y abc z"), "x ******** y ******** z");
    }

    #[test]
    fn overlapping_secrets_leave_no_fragment() {
        let masker = Masker::new(["abcd", "cdef"]);
        assert_eq!(masker.mask("xabcdefx"), "x********x");
        let masker = Masker::new(["aa"]);
        assert_eq!(masker.mask("aaa b aa"), "******** b ********");
    }

    #[test]
    fn multi_line_secrets_are_masked_whole_and_line_by_line() {
        let key = "-----BEGIN KEY-----\r\nMIIEow\nAKCAQ\n-----END KEY-----";
        let masker = Masker::new([key]);
        assert_eq!(masker.mask(&format!("key: {key}")), "key: ********");
        assert_eq!(masker.mask("line MIIEow here"), "line ******** here");
        assert_eq!(masker.mask("-----END KEY-----"), "********");
    }

    #[test]
    fn lines_too_short_to_tell_from_ordinary_output_are_masked_only_within_the_whole() {
        let secret = "{\n  \"password\": \"hunter2\"\n  abc\n}";
        let masker = Masker::new([secret]);
        assert_eq!(masker.mask(secret), MASK);
        // Three non-whitespace characters or fewer: left alone on their own.
        assert_eq!(masker.mask("{ abc }"), "{ abc }");
        // Indented differently, a long line is still found.
        assert_eq!(masker.mask("\"password\": \"hunter2\""), MASK);
        assert!(masker.reveals("x \"password\": \"hunter2\" y"));
        assert!(!masker.reveals("}"));
    }

    #[test]
    fn a_line_of_exactly_the_least_characters_is_masked_on_its_own() {
        let at_least = "x".repeat(MIN_LINE_CHARS);
        let too_short = "y".repeat(MIN_LINE_CHARS - 1);
        // Whitespace inside a line does not count towards its length.
        let spread = format!(" {} ", "z ".repeat(MIN_LINE_CHARS - 1));
        let masker = Masker::new([format!("{at_least}\n{too_short}\n{spread}")]);
        assert_eq!(
            masker.mask(&format!("a {at_least} b")),
            format!("a {MASK} b")
        );
        assert_eq!(masker.mask(&too_short), too_short);
        assert_eq!(masker.mask(spread.trim()), spread.trim());
    }

    #[test]
    fn multibyte_secrets_and_text_are_handled() {
        let masker = Masker::new(["pässwörd", "ö"]);
        assert_eq!(masker.mask("é pässwörd ö"), "é ******** ********");
    }

    #[test]
    fn debug_output_does_not_show_secrets() {
        let shown = format!("{:?}", Masker::new(["hunter2"]));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
