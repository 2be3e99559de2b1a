//! The grammar of SPEC B §1.2, parsed without recursion.
//!
//! ```text
//! selector   := ws* EOF | or_expr EOF
//! or_expr    := and_expr ( "||" and_expr )*
//! and_expr   := unary ( "&&" unary )*
//! unary      := "!"* primary
//! primary    := "has(" ident ")" | "all(" ")" | "global(" ")" | "(" or_expr ")"
//!             | ident ("=="|"!="|"contains"|"starts with"|"ends with") string
//!             | ident ("in"|"not in") "{" [ string ( "," string )* [","] ] "}"
//! ```
//!
//! Each open parenthesis pushes a [`Group`] on an explicit stack instead of recursing, so
//! nesting depth is bounded only by memory. Operands are built bottom-up into a
//! [`Builder`]; a chain `a && b && c` becomes one n-ary node, while explicit parentheses
//! keep their structure, so `a && (b && c)` stays nested (and prints back that way).

use super::SelectorError;
use super::lex::{Lexer, Token, TokenKind};
use super::tree::{Builder, CompareOp, NodeKind, SetOp, Term, Tree};

/// Parses a selector that is not blank (the caller maps blank text to `all()`).
pub(super) fn parse(text: &str) -> Result<Tree, SelectorError> {
    Parser {
        lexer: Lexer::new(text),
        builder: Builder::default(),
    }
    .run()
}

/// One level of parentheses (or the whole selector, at the bottom of the stack).
struct Group {
    /// Where its `(` is, for the "unclosed" error; `None` for the top level.
    open: Option<usize>,
    /// How many `!` preceded the `(`.
    negations: usize,
    /// Finished `&&` chains (or single operands) joined by `||` so far.
    or_operands: usize,
    /// Operands of the `&&` chain being read.
    and_operands: usize,
}

impl Group {
    fn new(open: Option<usize>, negations: usize) -> Group {
        Group {
            open,
            negations,
            or_operands: 0,
            and_operands: 0,
        }
    }
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    builder: Builder,
}

impl<'a> Parser<'a> {
    fn run(mut self) -> Result<Tree, SelectorError> {
        let mut groups = vec![Group::new(None, 0)];
        loop {
            // Expecting a unary: `!`* then a primary or an opening parenthesis.
            let mut negations = 0;
            let mut token = self.lexer.next_token()?;
            while token.kind == TokenKind::Not {
                negations += 1;
                token = self.lexer.next_token()?;
            }
            if token.kind == TokenKind::LParen {
                groups.push(Group::new(Some(token.start), negations));
                continue;
            }
            self.primary(token)?;
            self.builder.negate(negations);
            // One operand is complete: now expecting `&&`, `||`, `)` or the end.
            loop {
                let Some(group) = groups.last_mut() else {
                    return Err(internal_error());
                };
                group.and_operands += 1;
                let token = self.lexer.next_token()?;
                match token.kind {
                    TokenKind::And => break,
                    TokenKind::Or => {
                        self.close_and_chain(group);
                        break;
                    }
                    TokenKind::RParen if group.open.is_some() => {
                        self.close_group(group);
                        let negations = group.negations;
                        groups.pop();
                        // The group is itself one operand of the enclosing group.
                        self.builder.negate(negations);
                    }
                    TokenKind::End if group.open.is_none() => {
                        self.close_group(group);
                        return Ok(self.builder.finish());
                    }
                    TokenKind::RParen => {
                        return Err(error(token.start, "unmatched ')'".to_owned()));
                    }
                    TokenKind::End => {
                        let open = group.open.unwrap_or(0);
                        return Err(error(
                            token.start,
                            format!("missing ')' to close the '(' at position {open}"),
                        ));
                    }
                    other => {
                        return Err(error(
                            token.start,
                            format!(
                                "expected '&&', '||', ')' or end of input, found {}",
                                other.describe()
                            ),
                        ));
                    }
                }
            }
        }
    }

    fn close_and_chain(&mut self, group: &mut Group) {
        if group.and_operands > 1 {
            self.builder.combine(NodeKind::And, group.and_operands);
        }
        group.and_operands = 0;
        group.or_operands += 1;
    }

    fn close_group(&mut self, group: &mut Group) {
        self.close_and_chain(group);
        if group.or_operands > 1 {
            self.builder.combine(NodeKind::Or, group.or_operands);
        }
        group.or_operands = 0;
    }

    fn primary(&mut self, token: Token<'_>) -> Result<(), SelectorError> {
        let term = match token.kind {
            TokenKind::HasOpen => {
                let label = self.expect_label_in_has()?;
                self.expect_close("has(")?;
                Term::Has(label.to_owned())
            }
            TokenKind::AllOpen => {
                self.expect_close("all(")?;
                Term::All
            }
            TokenKind::GlobalOpen => {
                self.expect_close("global(")?;
                Term::Global
            }
            TokenKind::Label(label) => self.comparison(label)?,
            other => {
                return Err(error(
                    token.start,
                    format!(
                        "expected a selector term (a label with an operator, has(…), all(), \
                         global(), '(' or '!'), found {}",
                        other.describe()
                    ),
                ));
            }
        };
        self.builder.term(term);
        Ok(())
    }

    fn expect_label_in_has(&mut self) -> Result<&'a str, SelectorError> {
        let token = self.lexer.next_token()?;
        match token.kind {
            TokenKind::Label(label) => Ok(label),
            other => Err(error(
                token.start,
                format!("expected a label inside has(…), found {}", other.describe()),
            )),
        }
    }

    fn expect_close(&mut self, opened: &str) -> Result<(), SelectorError> {
        let token = self.lexer.next_token()?;
        match token.kind {
            TokenKind::RParen => Ok(()),
            other => Err(error(
                token.start,
                format!("expected ')' to close {opened}, found {}", other.describe()),
            )),
        }
    }

    /// The rest of a primary that starts with a label: an operator and its operand.
    fn comparison(&mut self, label: &str) -> Result<Term, SelectorError> {
        let token = self.lexer.next_token()?;
        let op = match token.kind {
            TokenKind::Equals => CompareOp::Equals,
            TokenKind::NotEquals => CompareOp::NotEquals,
            TokenKind::Contains => CompareOp::Contains,
            TokenKind::StartsWith => CompareOp::StartsWith,
            TokenKind::EndsWith => CompareOp::EndsWith,
            TokenKind::In => return self.set(label, SetOp::In),
            TokenKind::NotIn => return self.set(label, SetOp::NotIn),
            other => {
                return Err(error(
                    token.start,
                    format!(
                        "expected an operator after label '{label}' (==, !=, contains, \
                         starts with, ends with, in, not in), found {}",
                        other.describe()
                    ),
                ));
            }
        };
        let token = self.lexer.next_token()?;
        match token.kind {
            TokenKind::Str(value) => Ok(Term::Compare {
                label: label.to_owned(),
                op,
                value: value.to_owned(),
            }),
            other => Err(error(
                token.start,
                format!(
                    "expected a quoted string after the operator, found {}",
                    other.describe()
                ),
            )),
        }
    }

    /// `{ [ string ( "," string )* [","] ] }`
    fn set(&mut self, label: &str, op: SetOp) -> Result<Term, SelectorError> {
        let token = self.lexer.next_token()?;
        if token.kind != TokenKind::LBrace {
            return Err(error(
                token.start,
                format!(
                    "expected '{{' to start a set, found {}",
                    token.kind.describe()
                ),
            ));
        }
        let mut values = Vec::new();
        loop {
            let token = self.lexer.next_token()?;
            match token.kind {
                TokenKind::RBrace => break,
                TokenKind::Str(value) => values.push(value.to_owned()),
                other => {
                    return Err(error(
                        token.start,
                        format!(
                            "expected a quoted string or '}}' in a set, found {}",
                            other.describe()
                        ),
                    ));
                }
            }
            let token = self.lexer.next_token()?;
            match token.kind {
                TokenKind::RBrace => break,
                TokenKind::Comma => {}
                other => {
                    return Err(error(
                        token.start,
                        format!(
                            "expected ',' or '}}' after a set member, found {}",
                            other.describe()
                        ),
                    ));
                }
            }
        }
        Ok(Term::set(label, op, values))
    }
}

fn error(position: usize, message: String) -> SelectorError {
    SelectorError { position, message }
}

/// The group stack always holds the top level while parsing; this is never returned.
fn internal_error() -> SelectorError {
    error(
        0,
        "internal error: parser lost its top-level group".to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn children_count(text: &str) -> usize {
        let tree = parse(text).unwrap();
        tree.children(tree.root()).len()
    }

    #[test]
    fn chains_are_n_ary_and_parentheses_keep_structure() {
        let table: &[(&str, usize)] = &[
            ("has(a) && has(b) && has(c) && has(d)", 4),
            ("has(a) || has(b) || has(c)", 3),
            ("has(a) && (has(b) && has(c))", 2),
            ("(has(a) && has(b)) && has(c)", 2),
            ("has(a) && has(b) || has(c) && has(d) || has(e)", 3),
            ("((has(a) && has(b) && has(c)))", 3),
            ("!has(a)", 1),
            ("has(a)", 0),
        ];
        for (text, expected) in table {
            assert_eq!(children_count(text), *expected, "{text}");
        }
    }

    #[test]
    fn long_flat_chain_is_one_level() {
        let text = vec!["has(a)"; 5000].join(" && ");
        assert_eq!(children_count(&text), 5000);
    }

    #[test]
    fn messages_name_what_was_expected_and_found() {
        let table: &[(&str, &str)] = &[
            ("a", "expected an operator after label 'a'"),
            (
                "a == b",
                "expected a quoted string after the operator, found label 'b'",
            ),
            ("()", "expected a selector term"),
            ("(has(a)", "missing ')' to close the '(' at position 0"),
            ("has(a))", "unmatched ')'"),
            ("has(a) has(b)", "found 'has('"),
            ("has()", "expected a label inside has(…), found ')'"),
            ("all(a)", "expected ')' to close all(, found label 'a'"),
            (
                "a in {,}",
                "expected a quoted string or '}' in a set, found ','",
            ),
            (
                "a in {'x' 'y'}",
                "expected ',' or '}' after a set member, found string \"y\"",
            ),
            ("a in 'x'", "expected '{' to start a set"),
        ];
        for (text, message) in table {
            let error = parse(text).unwrap_err();
            assert!(error.message.contains(message), "{text:?}: {error}");
        }
    }
}
