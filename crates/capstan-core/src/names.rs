//! The character rule every name an operator gives follows: one spelling per name and
//! nothing hidden in it.
//!
//! Two names that look the same must be the same name, or one of them must be refused:
//! otherwise `Shop` and `Sh\u{200B}op` are two projects an operator cannot tell apart,
//! and a right-to-left override makes a name read backwards in every log and table.
//! So a name is normalised to NFC (a composed `é` and `e` + U+0301 are one name), and
//! control characters, format characters (Unicode category Cf: zero-width spaces and
//! joiners, bidirectional marks, embeddings, overrides and isolates, the soft hyphen,
//! the byte order mark), line and paragraph separators and a few invisible fillers are
//! refused, naming the character.

use unicode_normalization::UnicodeNormalization;

/// A name holds a character that cannot be seen or that changes how text around it
/// reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "holds {}, {}; names cannot hold control, invisible or text-direction characters",
    describe(*.character),
    kind(*.character)
)]
pub struct HiddenCharacter {
    pub character: char,
}

/// `name` in NFC, or the first character it must not hold.
pub fn normalize(name: &str) -> Result<String, HiddenCharacter> {
    if let Some(character) = name.chars().find(|c| is_hidden(*c)) {
        return Err(HiddenCharacter { character });
    }
    Ok(name.nfc().collect())
}

/// `name` in NFC, without checking it: for looking up names given in filters, which
/// match nothing rather than being refused.
pub fn nfc(name: &str) -> String {
    name.nfc().collect()
}

/// Whether `c` is a control, format or separator character, or an invisible filler.
pub fn is_hidden(c: char) -> bool {
    c.is_control() || is_format(c) || matches!(c, '\u{2028}' | '\u{2029}') || is_filler(c)
}

/// Unicode general category Cf (Unicode 15.1).
fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// Characters of other categories that render as nothing at all.
fn is_filler(c: char) -> bool {
    matches!(
        c,
        '\u{034F}' | '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}'
    )
}

fn kind(c: char) -> &'static str {
    match c {
        '\u{200E}'
        | '\u{200F}'
        | '\u{061C}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}' => "a text-direction character",
        c if c.is_control() => "a control character",
        _ => "an invisible character",
    }
}

/// `U+202E RIGHT-TO-LEFT OVERRIDE`: the code point, and the name of the ones people
/// meet in pasted text.
pub fn describe(c: char) -> String {
    let name = match c {
        '\0' => "NUL",
        '\t' => "CHARACTER TABULATION",
        '\n' => "LINE FEED",
        '\r' => "CARRIAGE RETURN",
        '\u{1B}' => "ESCAPE",
        '\u{7F}' => "DELETE",
        '\u{00AD}' => "SOFT HYPHEN",
        '\u{034F}' => "COMBINING GRAPHEME JOINER",
        '\u{061C}' => "ARABIC LETTER MARK",
        '\u{180E}' => "MONGOLIAN VOWEL SEPARATOR",
        '\u{200B}' => "ZERO WIDTH SPACE",
        '\u{200C}' => "ZERO WIDTH NON-JOINER",
        '\u{200D}' => "ZERO WIDTH JOINER",
        '\u{200E}' => "LEFT-TO-RIGHT MARK",
        '\u{200F}' => "RIGHT-TO-LEFT MARK",
        '\u{2028}' => "LINE SEPARATOR",
        '\u{2029}' => "PARAGRAPH SEPARATOR",
        '\u{202A}' => "LEFT-TO-RIGHT EMBEDDING",
        '\u{202B}' => "RIGHT-TO-LEFT EMBEDDING",
        '\u{202C}' => "POP DIRECTIONAL FORMATTING",
        '\u{202D}' => "LEFT-TO-RIGHT OVERRIDE",
        '\u{202E}' => "RIGHT-TO-LEFT OVERRIDE",
        '\u{2060}' => "WORD JOINER",
        '\u{2061}' => "FUNCTION APPLICATION",
        '\u{2062}' => "INVISIBLE TIMES",
        '\u{2063}' => "INVISIBLE SEPARATOR",
        '\u{2064}' => "INVISIBLE PLUS",
        '\u{2066}' => "LEFT-TO-RIGHT ISOLATE",
        '\u{2067}' => "RIGHT-TO-LEFT ISOLATE",
        '\u{2068}' => "FIRST STRONG ISOLATE",
        '\u{2069}' => "POP DIRECTIONAL ISOLATE",
        '\u{3164}' => "HANGUL FILLER",
        '\u{FEFF}' => "ZERO WIDTH NO-BREAK SPACE (byte order mark)",
        _ => return format!("U+{:04X}", u32::from(c)),
    };
    format!("U+{:04X} {name}", u32::from(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composed_and_decomposed_accents_are_one_name() {
        assert_eq!(normalize("Cafe\u{301}").unwrap(), "Caf\u{e9}");
        assert_eq!(normalize("Caf\u{e9}").unwrap(), "Caf\u{e9}");
        assert_eq!(normalize("Shop").unwrap(), "Shop");
        assert_eq!(normalize("東京 ✓ Ünïcödé").unwrap(), "東京 ✓ Ünïcödé");
    }

    #[test]
    fn invisible_and_direction_characters_are_refused_by_name() {
        let refused = |name: &str| normalize(name).unwrap_err().to_string();
        assert!(refused("Sh\u{200B}op").contains("U+200B ZERO WIDTH SPACE"));
        assert!(refused("Prod\u{202E}dorp").contains("U+202E RIGHT-TO-LEFT OVERRIDE"));
        assert!(refused("Prod\u{202E}").contains("text-direction"));
        assert!(refused("Sh\u{AD}op").contains("U+00AD SOFT HYPHEN"));
        assert!(refused("\u{FEFF}Shop").contains("U+FEFF"));
        assert!(refused("a\u{2066}b").contains("U+2066 LEFT-TO-RIGHT ISOLATE"));
        assert!(refused("a\u{0}b").contains("U+0000 NUL"));
        assert!(refused("a\u{85}b").contains("U+0085, a control character"));
        assert!(refused("a\u{E0041}b").contains("U+E0041"));
        assert!(refused("a\u{2028}b").contains("U+2028 LINE SEPARATOR"));
        for c in ('\u{200B}'..='\u{200F}')
            .chain('\u{202A}'..='\u{202E}')
            .chain('\u{2066}'..='\u{2069}')
            .chain(['\u{AD}', '\u{FEFF}', '\u{7F}', '\u{1}'])
        {
            assert!(is_hidden(c), "{}", describe(c));
        }
    }

    #[test]
    fn visible_text_is_not_hidden() {
        for c in [
            'a', 'é', ' ', '-', '_', '.', '東', '✓', '\u{301}', '\u{FE0F}',
        ] {
            assert!(!is_hidden(c), "{}", describe(c));
        }
    }
}
