//! Tokens of the selector language (SPEC B §1.1).
//!
//! The lexer is context-sensitive in two places, exactly as Calico's: `has(`, `all(` and
//! `global(` are keywords only when the word is immediately followed by `(`, and the
//! operator words (`in`, `not in`, `contains`, `starts with`, `ends with`) are recognised
//! only directly after a label. Everywhere else those words are labels.

use super::SelectorError;

/// Longest label name Calico accepts.
pub const MAX_LABEL_LEN: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokenKind<'a> {
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    Equals,
    NotEquals,
    Not,
    And,
    Or,
    /// `has(`, with its parenthesis.
    HasOpen,
    /// `all(`, with its parenthesis.
    AllOpen,
    /// `global(`, with its parenthesis.
    GlobalOpen,
    Contains,
    StartsWith,
    EndsWith,
    In,
    NotIn,
    Label(&'a str),
    /// A string literal's contents, without the quotes.
    Str(&'a str),
    End,
}

impl TokenKind<'_> {
    /// How the token is named in error messages.
    pub(super) fn describe(&self) -> String {
        let fixed = match self {
            TokenKind::LParen => "'('",
            TokenKind::RParen => "')'",
            TokenKind::LBrace => "'{'",
            TokenKind::RBrace => "'}'",
            TokenKind::Comma => "','",
            TokenKind::Equals => "'=='",
            TokenKind::NotEquals => "'!='",
            TokenKind::Not => "'!'",
            TokenKind::And => "'&&'",
            TokenKind::Or => "'||'",
            TokenKind::HasOpen => "'has('",
            TokenKind::AllOpen => "'all('",
            TokenKind::GlobalOpen => "'global('",
            TokenKind::Contains => "'contains'",
            TokenKind::StartsWith => "'starts with'",
            TokenKind::EndsWith => "'ends with'",
            TokenKind::In => "'in'",
            TokenKind::NotIn => "'not in'",
            TokenKind::End => "end of input",
            TokenKind::Label(label) => return format!("label '{label}'"),
            TokenKind::Str(value) => return format!("string {value:?}"),
        };
        fixed.to_owned()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Token<'a> {
    pub(super) kind: TokenKind<'a>,
    /// Byte offset of the token's first character.
    pub(super) start: usize,
}

pub(super) fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-')
}

/// Only space and tab separate tokens; any other whitespace is an error.
pub(super) fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Operator words, each one or two words; two-word operators allow any run of blanks,
/// including none, between the words.
const OPERATOR_WORDS: [(&str, Option<&str>, TokenKind<'static>); 5] = [
    ("in", None, TokenKind::In),
    ("not", Some("in"), TokenKind::NotIn),
    ("contains", None, TokenKind::Contains),
    ("starts", Some("with"), TokenKind::StartsWith),
    ("ends", Some("with"), TokenKind::EndsWith),
];

pub(super) struct Lexer<'a> {
    text: &'a str,
    pos: usize,
    after_label: bool,
}

impl<'a> Lexer<'a> {
    pub(super) fn new(text: &'a str) -> Lexer<'a> {
        Lexer {
            text,
            pos: 0,
            after_label: false,
        }
    }

    pub(super) fn next_token(&mut self) -> Result<Token<'a>, SelectorError> {
        let bytes = self.text.as_bytes();
        while bytes.get(self.pos).copied().is_some_and(is_blank) {
            self.pos += 1;
        }
        let start = self.pos;
        let after_label = std::mem::replace(&mut self.after_label, false);
        let Some(&first) = bytes.get(start) else {
            return Ok(Token {
                kind: TokenKind::End,
                start,
            });
        };
        if after_label && is_label_byte(first) {
            return self.operator_word();
        }
        let next = bytes.get(start + 1).copied();
        let (kind, len) = match first {
            b'(' => (TokenKind::LParen, 1),
            b')' => (TokenKind::RParen, 1),
            b'{' => (TokenKind::LBrace, 1),
            b'}' => (TokenKind::RBrace, 1),
            b',' => (TokenKind::Comma, 1),
            b'=' if next == Some(b'=') => (TokenKind::Equals, 2),
            b'!' if next == Some(b'=') => (TokenKind::NotEquals, 2),
            b'!' => (TokenKind::Not, 1),
            b'&' if next == Some(b'&') => (TokenKind::And, 2),
            b'|' if next == Some(b'|') => (TokenKind::Or, 2),
            b'=' | b'&' | b'|' => {
                let c = char::from(first);
                return Err(self.error(
                    start,
                    format!("a single '{c}' is not an operator (did you mean '{c}{c}'?)"),
                ));
            }
            b'"' | b'\'' => return self.string(first),
            b if is_label_byte(b) => return self.word(),
            _ => return Err(self.unexpected_character(start)),
        };
        self.pos += len;
        Ok(Token { kind, start })
    }

    fn error(&self, position: usize, message: String) -> SelectorError {
        SelectorError { position, message }
    }

    fn unexpected_character(&self, position: usize) -> SelectorError {
        let found = self
            .text
            .get(position..)
            .and_then(|rest| rest.chars().next());
        let message = match found {
            Some(c) if c.is_whitespace() => {
                format!("unexpected whitespace {c:?} (only space and tab separate tokens)")
            }
            Some(c) => format!("unexpected character {c:?}"),
            None => "unexpected character".to_owned(),
        };
        self.error(position, message)
    }

    fn string(&mut self, quote: u8) -> Result<Token<'a>, SelectorError> {
        let start = self.pos;
        let body = start + 1;
        let rest = &self.text.as_bytes()[body..];
        let Some(len) = rest.iter().position(|&b| b == quote) else {
            return Err(self.error(
                start,
                "unterminated string literal (strings have no escapes)".to_owned(),
            ));
        };
        // Both ends are at an ASCII quote, hence at char boundaries.
        let value = &self.text[body..body + len];
        self.pos = body + len + 1;
        Ok(Token {
            kind: TokenKind::Str(value),
            start,
        })
    }

    /// A label, or `has(` / `all(` / `global(` when the word is directly followed by `(`.
    fn word(&mut self) -> Result<Token<'a>, SelectorError> {
        let start = self.pos;
        let end = self.label_end(start);
        let word = &self.text[start..end];
        let keyword = match word {
            "has" => Some(TokenKind::HasOpen),
            "all" => Some(TokenKind::AllOpen),
            "global" => Some(TokenKind::GlobalOpen),
            _ => None,
        };
        if let Some(kind) = keyword
            && self.text.as_bytes().get(end) == Some(&b'(')
        {
            self.pos = end + 1;
            return Ok(Token { kind, start });
        }
        if word.len() > MAX_LABEL_LEN {
            return Err(self.error(
                start,
                format!(
                    "label is {} characters long, longer than the limit of {MAX_LABEL_LEN}",
                    word.len()
                ),
            ));
        }
        self.pos = end;
        self.after_label = true;
        Ok(Token {
            kind: TokenKind::Label(word),
            start,
        })
    }

    fn label_end(&self, from: usize) -> usize {
        let bytes = self.text.as_bytes();
        from + bytes[from..]
            .iter()
            .take_while(|&&b| is_label_byte(b))
            .count()
    }

    /// After a label, a word must be one of the operator words followed by a word
    /// boundary (end of input or a non-label character).
    fn operator_word(&mut self) -> Result<Token<'a>, SelectorError> {
        let start = self.pos;
        for (first, second, kind) in OPERATOR_WORDS {
            if let Some(end) = self.match_words(start, first, second) {
                self.pos = end;
                return Ok(Token { kind, start });
            }
        }
        let word = &self.text[start..self.label_end(start)];
        Err(self.error(
            start,
            format!(
                "expected an operator after the label (==, !=, contains, starts with, \
                 ends with, in, not in), found '{word}'"
            ),
        ))
    }

    fn match_words(&self, from: usize, first: &str, second: Option<&str>) -> Option<usize> {
        let bytes = self.text.as_bytes();
        let mut end = from + first.len();
        if !bytes[from..].starts_with(first.as_bytes()) {
            return None;
        }
        if let Some(second) = second {
            while bytes.get(end).copied().is_some_and(is_blank) {
                end += 1;
            }
            if !bytes[end..].starts_with(second.as_bytes()) {
                return None;
            }
            end += second.len();
        }
        let at_boundary = !bytes.get(end).copied().is_some_and(is_label_byte);
        at_boundary.then_some(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Result<Vec<TokenKind<'_>>, SelectorError> {
        let mut lexer = Lexer::new(text);
        let mut out = Vec::new();
        loop {
            let token = lexer.next_token()?;
            if token.kind == TokenKind::End {
                return Ok(out);
            }
            out.push(token.kind);
        }
    }

    #[test]
    fn tokenises_context_sensitive_words() {
        use TokenKind::*;
        let table: &[(&str, &[TokenKind])] = &[
            ("has(a)", &[HasOpen, Label("a"), RParen]),
            ("has (a)", &[Label("has"), LParen, Label("a"), RParen]),
            ("has in {}", &[Label("has"), In, LBrace, RBrace]),
            ("not in{}", &[Label("not"), In, LBrace, RBrace]),
            ("a not\t in{}", &[Label("a"), NotIn, LBrace, RBrace]),
            ("a notin{}", &[Label("a"), NotIn, LBrace, RBrace]),
            ("a startswith''", &[Label("a"), StartsWith, Str("")]),
            ("a ends  with'x'", &[Label("a"), EndsWith, Str("x")]),
            ("a contains\"it's\"", &[Label("a"), Contains, Str("it's")]),
            ("a!=\"\"", &[Label("a"), NotEquals, Str("")]),
            ("!!a", &[Not, Not, Label("a")]),
            ("all( )", &[AllOpen, RParen]),
            ("global()", &[GlobalOpen, RParen]),
            ("x==y", &[Label("x"), Equals, Label("y")]),
            ("a&&b||c", &[Label("a"), And, Label("b"), Or, Label("c")]),
            ("'&& {,}'", &[Str("&& {,}")]),
        ];
        for (text, expected) in table {
            assert_eq!(kinds(text).as_deref(), Ok(*expected), "{text:?}");
        }
    }

    #[test]
    fn errors_carry_position_and_reason() {
        let table: &[(&str, usize, &str)] = &[
            ("a = 'x'", 2, "single '='"),
            ("a !== 'x'", 4, "single '='"),
            ("a & b", 2, "single '&'"),
            ("a | b", 2, "single '|'"),
            ("a == 'x", 5, "unterminated"),
            ("a inx {}", 2, "found 'inx'"),
            ("starts with", 7, "found 'with'"),
            ("a\n", 1, "whitespace '\\n'"),
            ("a\u{a0}", 1, "whitespace '\\u{a0}'"),
            ("a@b", 1, "unexpected character '@'"),
            ("é", 0, "unexpected character 'é'"),
        ];
        for (text, position, message) in table {
            let error = kinds(text).unwrap_err();
            assert_eq!(error.position, *position, "{text:?}: {error}");
            assert!(error.message.contains(message), "{text:?}: {error}");
        }
    }

    #[test]
    fn label_length_limit_applies_to_labels_only() {
        let long = "k".repeat(MAX_LABEL_LEN);
        assert_eq!(kinds(&long), Ok(vec![TokenKind::Label(&long)]));
        let too_long = "k".repeat(MAX_LABEL_LEN + 1);
        let error = kinds(&too_long).unwrap_err();
        assert_eq!(error.position, 0);
        assert!(error.message.contains("513"), "{error}");
        let long_value = format!("'{}'", "v".repeat(5000));
        assert_eq!(kinds(&long_value).map(|k| k.len()), Ok(1));
    }
}
