//! Canonical source text of a selector.
//!
//! Spacing is fixed (`a == "x"`, `a in {"x", "y"}`, ` && `, ` || `), and parentheses are
//! written only where the structure needs them: around an `||` or `&&` node under `!`,
//! around an `&&` or `||` node under `&&`, and around an `||` node under `||`. Nested nodes of
//! the same kind are therefore parenthesised rather than merged, which keeps
//! `parse(display(s)) == s` exact.
//!
//! Values use double quotes, or single quotes when they contain a double quote. Calico's
//! syntax has no escapes, so a value holding both kinds of quote, or a label that is not an
//! identifier (`[A-Za-z0-9_./-]+`), cannot be written at all. [`Selector::parse`] never
//! produces either; only the constructors can, when given such strings. Such a piece is
//! written as `<unrepresentable "…">` (Rust string escaping): readable in a message, and
//! `<` makes the text fail to parse instead of silently meaning something else.

use std::fmt;

use super::Selector;
use super::lex::is_label_byte;
use super::tree::{CompareOp, NodeKind, SetOp, Term, Tree, Visit};

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tree = &self.tree;
        tree.walk(|visit| match visit {
            Visit::Enter(i) => {
                write_separator(f, tree, i)?;
                if needs_parentheses(tree, i) {
                    f.write_str("(")?;
                }
                match tree.kind(i) {
                    NodeKind::Not => f.write_str("!"),
                    NodeKind::Term(term) => write_term(f, term),
                    NodeKind::And | NodeKind::Or => Ok(()),
                }
            }
            Visit::Leave(i) if needs_parentheses(tree, i) => f.write_str(")"),
            Visit::Leave(_) => Ok(()),
        })
    }
}

/// ` && ` or ` || ` before every child of an n-ary node but its first.
fn write_separator(f: &mut fmt::Formatter<'_>, tree: &Tree, i: usize) -> fmt::Result {
    let Some(parent) = tree.parent(i) else {
        return Ok(());
    };
    if tree.start(i) == tree.start(parent) {
        return Ok(());
    }
    match tree.kind(parent) {
        NodeKind::And => f.write_str(" && "),
        NodeKind::Or => f.write_str(" || "),
        NodeKind::Not | NodeKind::Term(_) => Ok(()),
    }
}

fn needs_parentheses(tree: &Tree, i: usize) -> bool {
    let Some(parent) = tree.parent(i) else {
        return false;
    };
    matches!(
        (tree.kind(parent), tree.kind(i)),
        (NodeKind::Not | NodeKind::And, NodeKind::And | NodeKind::Or)
            | (NodeKind::Or, NodeKind::Or)
    )
}

fn write_term(f: &mut fmt::Formatter<'_>, term: &Term) -> fmt::Result {
    match term {
        Term::All => f.write_str("all()"),
        Term::Global => f.write_str("global()"),
        Term::Has(label) => {
            f.write_str("has(")?;
            write_label(f, label)?;
            f.write_str(")")
        }
        Term::Compare { label, op, value } => {
            write_label(f, label)?;
            f.write_str(match op {
                CompareOp::Equals => " == ",
                CompareOp::NotEquals => " != ",
                CompareOp::Contains => " contains ",
                CompareOp::StartsWith => " starts with ",
                CompareOp::EndsWith => " ends with ",
            })?;
            write_value(f, value)
        }
        Term::Set { label, op, values } => {
            write_label(f, label)?;
            f.write_str(match op {
                SetOp::In => " in {",
                SetOp::NotIn => " not in {",
            })?;
            for (n, value) in values.iter().enumerate() {
                if n > 0 {
                    f.write_str(", ")?;
                }
                write_value(f, value)?;
            }
            f.write_str("}")
        }
    }
}

/// Labels are written as they are, whatever their length: one over the limit then fails
/// to parse with a message that says so.
fn write_label(f: &mut fmt::Formatter<'_>, label: &str) -> fmt::Result {
    if !label.is_empty() && label.bytes().all(is_label_byte) {
        f.write_str(label)
    } else {
        write!(f, "<unrepresentable {label:?}>")
    }
}

fn write_value(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    let quote = if !value.contains('"') {
        '"'
    } else if !value.contains('\'') {
        '\''
    } else {
        return write!(f, "<unrepresentable {value:?}>");
    };
    write!(f, "{quote}{value}{quote}")
}
