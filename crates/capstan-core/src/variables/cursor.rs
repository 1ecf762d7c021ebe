//! A scanner over template text that knows its line and column, so every error can
//! say where it happened.

/// A 1-based line and column; columns count characters, not bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pos {
    pub(super) line: u32,
    pub(super) column: u32,
}

#[derive(Debug, Clone)]
pub(super) struct Cursor<'a> {
    text: &'a str,
    offset: usize,
    pos: Pos,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Self {
            text,
            offset: 0,
            pos: Pos { line: 1, column: 1 },
        }
    }

    pub(super) fn pos(&self) -> Pos {
        self.pos
    }

    pub(super) fn rest(&self) -> &'a str {
        &self.text[self.offset..]
    }

    pub(super) fn is_at_end(&self) -> bool {
        self.offset == self.text.len()
    }

    pub(super) fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    pub(super) fn starts_with(&self, prefix: &str) -> bool {
        self.rest().starts_with(prefix)
    }

    pub(super) fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.offset += c.len_utf8();
        self.step_over(c);
        Some(c)
    }

    /// Consumes `prefix` if the text continues with it.
    pub(super) fn eat(&mut self, prefix: &str) -> bool {
        if self.starts_with(prefix) {
            self.advance(prefix.len());
            true
        } else {
            false
        }
    }

    /// Moves `bytes` forward; the caller guarantees a character boundary there.
    pub(super) fn advance(&mut self, bytes: usize) -> &'a str {
        let taken = &self.rest()[..bytes];
        for c in taken.chars() {
            self.step_over(c);
        }
        self.offset += bytes;
        taken
    }

    pub(super) fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn step_over(&mut self, c: char) {
        // Saturating: a template is far below 4 GiB, but this must not panic if a
        // caller ever raises the size limit.
        if c == '\n' {
            self.pos.line = self.pos.line.saturating_add(1);
            self.pos.column = 1;
        } else {
            self.pos.column = self.pos.column.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_count_characters_and_lines_restart_them() {
        let mut cursor = Cursor::new("é\nab");
        cursor.bump();
        assert_eq!(cursor.pos(), Pos { line: 1, column: 2 });
        cursor.bump();
        assert_eq!(cursor.pos(), Pos { line: 2, column: 1 });
        cursor.advance(2);
        assert_eq!(cursor.pos(), Pos { line: 2, column: 3 });
        assert!(cursor.is_at_end());
    }
}
