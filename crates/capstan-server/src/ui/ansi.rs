//! ANSI colours in log lines (SGR escapes, `ESC [ … m`) as HTML spans with classes: the
//! text escaped, the colours in the style sheet (the Content-Security-Policy allows no
//! inline style). Other escapes (cursor moves, titles) are dropped. `assets/log.js` does
//! the same for lines that arrive live; the two agree on the class names.

use maud::{Markup, html};

/// The look a piece of text has: colours 0-15 (8-15 the bright ones) and attributes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Look {
    fg: Option<u8>,
    bg: Option<u8>,
    bold: bool,
    italic: bool,
    underline: bool,
}

impl Look {
    /// Applies one SGR sequence's parameters (`1;31`, empty = reset).
    fn apply(&mut self, params: &str) {
        let mut codes = params.split([';', ':']).map(|p| {
            if p.is_empty() {
                Some(0)
            } else {
                p.parse::<u16>().ok()
            }
        });
        while let Some(code) = codes.next() {
            let Some(code) = code else { continue };
            match code {
                0 => *self = Self::default(),
                1 => self.bold = true,
                3 => self.italic = true,
                4 => self.underline = true,
                22 => self.bold = false,
                23 => self.italic = false,
                24 => self.underline = false,
                30..=37 => self.fg = Some((code - 30) as u8),
                39 => self.fg = None,
                40..=47 => self.bg = Some((code - 40) as u8),
                49 => self.bg = None,
                90..=97 => self.fg = Some((code - 90 + 8) as u8),
                100..=107 => self.bg = Some((code - 100 + 8) as u8),
                // 256 colours: the first 16 are the named ones; others are left plain.
                // Truecolour is left plain too (its parameters are skipped).
                38 | 48 => {
                    let colour = match codes.next().flatten() {
                        Some(5) => codes.next().flatten().filter(|n| *n < 16).map(|n| n as u8),
                        Some(2) => {
                            codes.by_ref().take(3).for_each(drop);
                            None
                        }
                        _ => None,
                    };
                    if code == 38 {
                        self.fg = colour;
                    } else {
                        self.bg = colour;
                    }
                }
                _ => {}
            }
        }
    }

    /// The classes of a span with this look; empty when plain.
    fn classes(&self) -> String {
        let mut classes = Vec::new();
        if let Some(fg) = self.fg {
            classes.push(format!("ansi-fg-{fg}"));
        }
        if let Some(bg) = self.bg {
            classes.push(format!("ansi-bg-{bg}"));
        }
        if self.bold {
            classes.push("ansi-bold".to_owned());
        }
        if self.italic {
            classes.push("ansi-italic".to_owned());
        }
        if self.underline {
            classes.push("ansi-underline".to_owned());
        }
        classes.join(" ")
    }
}

/// Splits `text` into pieces with their look, escapes removed.
fn pieces(text: &str) -> Vec<(Look, String)> {
    let mut out: Vec<(Look, String)> = Vec::new();
    let mut look = Look::default();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            // Other control characters would show as boxes or nothing useful.
            if !c.is_control() || c == '\t' {
                current.push(c);
            }
            continue;
        }
        match chars.peek() {
            Some('[') => {
                chars.next();
                let mut params = String::new();
                let mut last = None;
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        last = Some(c);
                        break;
                    }
                    params.push(c);
                }
                if last == Some('m') {
                    let mut next = look;
                    next.apply(&params);
                    if next != look {
                        if !current.is_empty() {
                            out.push((look, std::mem::take(&mut current)));
                        }
                        look = next;
                    }
                }
            }
            // OSC (titles, links): up to BEL or ESC \.
            Some(']') => {
                chars.next();
                while let Some(c) = chars.next() {
                    if c == '\u{7}' {
                        break;
                    }
                    if c == '\u{1b}' {
                        chars.next_if_eq(&'\\');
                        break;
                    }
                }
            }
            Some(_) => {
                chars.next();
            }
            None => {}
        }
    }
    if !current.is_empty() {
        out.push((look, current));
    }
    out
}

/// `text` as HTML: plain pieces as text, coloured ones in `span`s with classes.
pub(crate) fn to_html(text: &str) -> Markup {
    html! {
        @for (look, piece) in pieces(text) {
            @let classes = look.classes();
            @if classes.is_empty() { (piece) } @else { span class=(classes) { (piece) } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html(text: &str) -> String {
        to_html(text).into_string()
    }

    #[test]
    fn plain_text_is_escaped() {
        assert_eq!(
            html("<script>alert('x')</script> & more"),
            "&lt;script&gt;alert('x')&lt;/script&gt; &amp; more"
        );
    }

    #[test]
    fn colours_become_classes_and_reset_ends_them() {
        assert_eq!(
            html("ok \u{1b}[31mred\u{1b}[0m plain"),
            "ok <span class=\"ansi-fg-1\">red</span> plain"
        );
        assert_eq!(
            html("\u{1b}[1;92;44mbold\u{1b}[22m not\u{1b}[m"),
            "<span class=\"ansi-fg-10 ansi-bg-4 ansi-bold\">bold</span>\
             <span class=\"ansi-fg-10 ansi-bg-4\"> not</span>"
        );
    }

    #[test]
    fn extended_colours_keep_the_named_sixteen_and_skip_the_rest() {
        assert_eq!(
            html("\u{1b}[38;5;9ma\u{1b}[38;5;200mb\u{1b}[38;2;1;2;3mc\u{1b}[4md"),
            "<span class=\"ansi-fg-9\">a</span>bc<span class=\"ansi-underline\">d</span>"
        );
    }

    #[test]
    fn other_escapes_and_controls_are_dropped_and_markup_in_colour_is_escaped() {
        assert_eq!(
            html("\u{1b}]0;title\u{7}\u{1b}[2Kx\u{8}\u{1b}[33m<b>"),
            "x<span class=\"ansi-fg-3\">&lt;b&gt;</span>"
        );
        // A cut-off escape at the end leaves nothing behind.
        assert_eq!(html("end\u{1b}[3"), "end");
        assert_eq!(html("end\u{1b}"), "end");
    }
}
