//! The Calico label-selector language (SPEC Part B §1): parse, evaluate, combine, rewrite.
//!
//! ```text
//! text ──lex──► tokens ──parse──► Tree (flat, post-order) ──► matches(&labels)
//!                                    │
//!                                    └─► and / negate / prefix / replace ──► Display
//! ```
//!
//! - `lex`: tokens, with Calico's context-sensitive keywords and operator words.
//! - `parse`: the grammar, with an explicit stack instead of recursion.
//! - `tree`: the expression stored flat in post-order; evaluation without recursion.
//! - `display`: canonical source text that parses back to an equal selector.
//! - `batch`: one line of `portcullis selector --batch`.
//!
//! **Depth.** Nothing in this module recurses over the expression: parsing, evaluation,
//! `Display`, the rewrites and the derived `Clone`/`Drop`/`Hash`/`PartialEq` all work on a
//! flat vector, so nesting depth (parentheses, `!`, alternating `&&`/`||` groups) is limited
//! only by memory, and there is no depth cap. Callers cap the input length instead
//! (1024 characters for policy fields, SPEC B §1.4).
//!
//! **Equality** is structural, modulo what the grammar cannot tell apart: redundant
//! parentheses, and the order and duplicates of set members (sets are kept sorted). A chain
//! `a && b && c` is one n-ary node, while `a && (b && c)` is two nested ones, so those two
//! are semantically equivalent but not equal. `!!x` is kept as two negations.

mod batch;
mod display;
mod lex;
mod parse;
mod tree;

use std::collections::BTreeMap;
use std::fmt;

pub use batch::batch_line;
pub use lex::MAX_LABEL_LEN;

use tree::{CompareOp, NodeKind, SetOp, Term, Tree};

/// A parsed label selector.
///
/// `Display` gives canonical source text that parses back to an equal selector. Calico's
/// syntax has no escapes, so a value containing both `'` and `"`, or a label that is not an
/// identifier (`[A-Za-z0-9_./-]+`), cannot be written. [`Selector::parse`] never produces
/// either; the constructors can, if given such strings (callers in this crate pass validated
/// Kubernetes label keys and values, which cannot). Such a piece is written as
/// `<unrepresentable "…">`, so the text is readable but fails to parse, rather than silently
/// parsing as a different selector.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Selector {
    tree: Tree,
}

/// Why a selector did not parse, and where: `position` is the 0-based byte offset in the
/// input of the offending token (the input's length for an unexpected end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorError {
    pub position: usize,
    pub message: String,
}

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at position {}", self.message, self.position)
    }
}

impl std::error::Error for SelectorError {}

/// Shows the canonical source text, which is far easier to read than the flat tree.
impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Selector").field(&self.to_string()).finish()
    }
}

impl Selector {
    /// Parses selector text. Empty text, or text of spaces and tabs only, means `all()`.
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        if text.bytes().all(lex::is_blank) {
            return Ok(Selector::all());
        }
        parse::parse(text).map(|tree| Selector { tree })
    }

    pub fn all() -> Selector {
        Selector::term(Term::All)
    }

    /// `global()`: only legal as a whole rule `namespaceSelector` (SPEC B §1.4); true here.
    pub fn global() -> Selector {
        Selector::term(Term::Global)
    }

    pub fn has(label: &str) -> Selector {
        Selector::term(Term::Has(label.to_owned()))
    }

    /// `label == 'value'`.
    pub fn equals(label: &str, value: &str) -> Selector {
        Selector::compare(label, CompareOp::Equals, value)
    }

    /// `label != 'value'`: also true when the label is absent.
    pub fn not_equals(label: &str, value: &str) -> Selector {
        Selector::compare(label, CompareOp::NotEquals, value)
    }

    /// `label in {values…}`.
    pub fn in_set(label: &str, values: &[String]) -> Selector {
        Selector::term(Term::set(label, SetOp::In, values.iter().cloned()))
    }

    /// `label not in {values…}`: also true when the label is absent.
    pub fn not_in_set(label: &str, values: &[String]) -> Selector {
        Selector::term(Term::set(label, SetOp::NotIn, values.iter().cloned()))
    }

    /// `self && other`. An operand that is itself an `&&` contributes its operands, so
    /// repeated calls build one flat conjunction. `all()` operands are kept, not
    /// simplified away, because [`Selector::replace_all`] must still find them.
    pub fn and(&self, other: &Selector) -> Selector {
        let tree = Tree::combine(NodeKind::And, &[&self.tree, &other.tree], true);
        Selector { tree }
    }

    /// `self || other`, flattened like [`Selector::and`].
    pub fn or(&self, other: &Selector) -> Selector {
        let tree = Tree::combine(NodeKind::Or, &[&self.tree, &other.tree], true);
        Selector { tree }
    }

    /// `!(self)`.
    pub fn negate(&self) -> Selector {
        Selector {
            tree: self.tree.negate(),
        }
    }

    /// Prepends `prefix` to every label the expression tests (`pcns.`, `pcsa.`; SPEC B §3.1,
    /// §5), so that testing label `k` becomes testing label `prefix` + `k`.
    pub fn with_prefixed_labels(&self, prefix: &str) -> Selector {
        let mut tree = self.tree.clone();
        for label in tree.terms_mut().filter_map(Term::label_mut) {
            label.insert_str(0, prefix);
        }
        Selector { tree }
    }

    /// Replaces every `all()` term by `with`: Calico's textual replacement of `all()` by
    /// `has(projectcalico.org/namespace)` (SPEC B §3.1, §5), done on the tree.
    pub fn replace_all(&self, with: &Selector) -> Selector {
        let tree = self
            .tree
            .replace_terms(|term| *term == Term::All, &with.tree);
        Selector { tree }
    }

    /// Replaces every `global()` term by `with` (SPEC B §5: `!has(projectcalico.org/namespace)`).
    pub fn replace_global(&self, with: &Selector) -> Selector {
        let tree = self
            .tree
            .replace_terms(|term| *term == Term::Global, &with.tree);
        Selector { tree }
    }

    /// Whether the expression contains a `global()` term anywhere.
    pub fn uses_global(&self) -> bool {
        self.tree.terms().any(|term| *term == Term::Global)
    }

    /// Evaluates the selector against a label map (SPEC B §1.3). Does not allocate.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.tree.evaluate(labels)
    }

    fn term(term: Term) -> Selector {
        Selector {
            tree: Tree::term(term),
        }
    }

    fn compare(label: &str, op: CompareOp, value: &str) -> Selector {
        Selector::term(Term::Compare {
            label: label.to_owned(),
            op,
            value: value.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::tree::Tree;
    use super::*;
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;
    use std::collections::hash_map::DefaultHasher;
    use std::hash::{Hash, Hasher};

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Expect {
        /// Parses and matches the labels.
        T,
        /// Parses and does not match the labels.
        F,
        /// Fails to parse, at this byte position.
        E(usize),
    }
    use Expect::{E, F, T};

    type Labels = &'static [(&'static str, &'static str)];
    const NONE: Labels = &[];
    const AX: Labels = &[("a", "x")];
    const AY: Labels = &[("a", "y")];
    const AE: Labels = &[("a", "")];
    const HELLO: Labels = &[("a", "hello")];
    const ABC: Labels = &[("a", "x"), ("b", "y"), ("c", "z")];
    const BY: Labels = &[("b", "y")];
    const BN: Labels = &[("b", "n")];
    const CZ: Labels = &[("c", "z")];

    /// Every lexical, grammar and evaluation rule of SPEC B §1 and the selector items of §8.
    const CASES: &[(&str, Labels, Expect)] = &[
        // Blank selectors and whitespace: only space and tab.
        ("", NONE, T),
        ("   ", NONE, T),
        ("\t \t", NONE, T),
        ("\n", NONE, E(0)),
        (" \n", NONE, E(1)),
        ("\r", NONE, E(0)),
        ("all()", NONE, T),
        ("all( )", NONE, T),
        ("all(\t)", NONE, T),
        ("global()", NONE, T),
        ("global( )", NONE, T),
        ("all() \n", NONE, E(6)),
        ("a == 'x'\n", AX, E(8)),
        ("a == 'x'\r", AX, E(8)),
        ("a == 'x'\r\n", AX, E(8)),
        ("\x0ca == 'x'", AX, E(0)),
        ("a\x0b== 'x'", AX, E(1)),
        ("a ==\u{a0}'x'", AX, E(4)),
        ("a\u{2003}== 'x'", AX, E(1)),
        ("\u{feff}a == 'x'", AX, E(0)),
        ("a\t==\t'x'", AX, T),
        ("  a == 'x'  ", AX, T),
        ("\ta == 'x'", AX, T),
        // == : exact, byte for byte.
        ("a == 'x'", AX, T),
        ("a == \"x\"", AX, T),
        ("a == 'x'", AY, F),
        ("a == 'x'", NONE, F),
        ("a == ''", AE, T),
        ("a == ''", NONE, F),
        ("a == 'X'", AX, F),
        ("a == 'x '", AX, F),
        ("a == ' x'", &[("a", " x")], T),
        ("A == 'x'", AX, F),
        ("a=='x'", AX, T),
        ("a == \"it's\"", &[("a", "it's")], T),
        ("a == 'say \"hi\"'", &[("a", "say \"hi\"")], T),
        (
            "a == \"&& || { } , ( ) !\"",
            &[("a", "&& || { } , ( ) !")],
            T,
        ),
        ("a == 'héllo'", &[("a", "héllo")], T),
        ("a == 'e\u{301}'", &[("a", "\u{e9}")], F),
        ("a == 'x\ny'", &[("a", "x\ny")], T),
        ("a == 'x\ty'", &[("a", "x\ty")], T),
        // != : true when absent.
        ("a != 'x'", AX, F),
        ("a != 'x'", AY, T),
        ("a != 'x'", NONE, T),
        ("a!='x'", AY, T),
        ("a != ''", AE, F),
        ("a != ''", NONE, T),
        // contains / starts with / ends with: false when absent.
        ("a contains 'ell'", HELLO, T),
        ("a contains 'xyz'", HELLO, F),
        ("a contains ''", HELLO, T),
        ("a contains ''", NONE, F),
        ("a contains 'x'", NONE, F),
        ("a contains\"ell\"", HELLO, T),
        ("a contains'ell'", HELLO, T),
        ("a starts with 'he'", HELLO, T),
        ("a starts with 'lo'", HELLO, F),
        ("a startswith 'he'", HELLO, T),
        ("a starts\twith 'he'", HELLO, T),
        ("a starts  \t with 'he'", HELLO, T),
        ("a starts with ''", NONE, F),
        ("a starts with ''", AE, T),
        ("a starts with 'HE'", HELLO, F),
        ("a ends with 'lo'", HELLO, T),
        ("a endswith 'lo'", HELLO, T),
        ("a ends with 'he'", HELLO, F),
        ("a ends with 'x'", NONE, F),
        ("a ends with\"lo\"", HELLO, T),
        ("a Contains 'x'", AX, E(2)),
        ("a CONTAINS 'x'", AX, E(2)),
        ("a startsWith 'h'", HELLO, E(2)),
        ("a starts-with 'h'", HELLO, E(2)),
        ("a containsx 'x'", AX, E(2)),
        ("a start with 'h'", HELLO, E(2)),
        ("a contains", HELLO, E(10)),
        ("a starts", HELLO, E(2)),
        ("a contains x", HELLO, E(11)),
        // in / not in: sets, empty sets, trailing commas, duplicates.
        ("a in {'x'}", AX, T),
        ("a in {'x'}", AY, F),
        ("a in {'x'}", NONE, F),
        ("a in {}", AX, F),
        ("a in {}", NONE, F),
        ("a in {}", AE, F),
        ("a not in {}", AX, T),
        ("a not in {}", NONE, T),
        ("a not in {'x'}", AX, F),
        ("a not in {'x'}", AY, T),
        ("a not in {'x'}", NONE, T),
        ("a notin {'x'}", AY, T),
        ("a not\tin {'x'}", AX, F),
        ("a not   in{'y'}", AX, T),
        ("a in{'x'}", AX, T),
        ("a in{\"x\"}", AX, T),
        ("a in {'x',}", AX, T),
        ("a in {'x', 'x', 'y'}", AY, T),
        ("a in {'y', 'x'}", AX, T),
        ("a in {\"x\", 'y'}", AY, T),
        ("a in {'x' , 'y' ,}", AY, T),
        ("a in {\t}", NONE, F),
        ("a in {''}", AE, T),
        ("a in {'X'}", AX, F),
        ("a not in {'x',}", NONE, T),
        ("a in {'x'} ", AX, T),
        ("a in {',', '}'}", &[("a", "}")], T),
        ("a in {,}", NONE, E(6)),
        ("a in {\"a\" \"b\"}", NONE, E(10)),
        ("a in {x}", NONE, E(6)),
        ("a in {'x', y}", NONE, E(11)),
        ("a in {(\"a\")}", NONE, E(6)),
        ("a in {'x',,}", NONE, E(10)),
        ("a in {,'x'}", NONE, E(6)),
        ("a in {'x'", NONE, E(9)),
        ("a in {'x',", NONE, E(10)),
        ("a in 'x'", NONE, E(5)),
        ("a in ('x')", NONE, E(5)),
        ("a in", NONE, E(4)),
        ("a inx {'x'}", NONE, E(2)),
        ("a in-x {'x'}", NONE, E(2)),
        ("a In {'x'}", NONE, E(2)),
        ("a NOT IN {'x'}", NONE, E(2)),
        ("a not {'x'}", NONE, E(2)),
        ("a not in", NONE, E(8)),
        // has(): exactly one label; true for an empty value.
        ("has(a)", AX, T),
        ("has(a)", NONE, F),
        ("has(a)", AE, T),
        ("has( a )", AX, T),
        ("has(\ta\t)", AX, T),
        ("has(a)", &[("A", "x")], F),
        ("has (a)", AX, E(4)),
        ("has()", NONE, E(4)),
        ("has(a b)", NONE, E(6)),
        ("has(a, b)", NONE, E(5)),
        ("has(a", NONE, E(5)),
        ("has('a')", NONE, E(4)),
        ("has(a) has(b)", NONE, E(7)),
        ("has(in)", &[("in", "1")], T),
        ("has(has)", &[("has", "1")], T),
        ("has(a/b.c-d_e)", &[("a/b.c-d_e", "1")], T),
        ("has(123)", &[("123", "")], T),
        ("has(./-)", &[("./-", "")], T),
        // Keywords only in their positions; upper case is never a keyword.
        ("HAS(a)", AX, E(3)),
        ("Has(a)", AX, E(3)),
        ("All()", NONE, E(3)),
        ("ALL()", NONE, E(3)),
        ("Global()", NONE, E(6)),
        ("all(a)", NONE, E(4)),
        ("global(a)", NONE, E(7)),
        ("all ()", NONE, E(4)),
        ("global ()", NONE, E(7)),
        ("has == \"x\"", &[("has", "x")], T),
        ("all == \"x\"", &[("all", "x")], T),
        ("all == \"x\"", NONE, F),
        ("global == \"x\"", &[("global", "x")], T),
        ("in in {\"x\"}", &[("in", "x")], T),
        ("in in {}", &[("in", "x")], F),
        ("contains contains \"x\"", &[("contains", "xyz")], T),
        ("not in {\"x\"}", &[("not", "x")], T),
        ("not in {\"x\"}", &[("not", "y")], F),
        ("not in {\"x\"}", NONE, F),
        ("notin notin {\"x\"}", NONE, T),
        ("starts starts with \"x\"", &[("starts", "xy")], T),
        ("starts with \"x\"", NONE, E(7)),
        ("ends with \"x\"", NONE, E(5)),
        ("has(a) && all == 'x'", &[("a", ""), ("all", "x")], T),
        // Label names.
        ("123 == 'x'", &[("123", "x")], T),
        ("-x == 'x'", &[("-x", "x")], T),
        ("./- == 'x'", &[("./-", "x")], T),
        ("a.b/c == 'x'", &[("a.b/c", "x")], T),
        (
            "app.kubernetes.io/name == 'web'",
            &[("app.kubernetes.io/name", "web")],
            T,
        ),
        ("a:b == 'x'", NONE, E(1)),
        ("a@b == 'x'", NONE, E(1)),
        ("a+b == 'x'", NONE, E(1)),
        ("é == 'x'", NONE, E(0)),
        ("aé == 'x'", NONE, E(1)),
        // Punctuation: single = & | are errors; != is greedy.
        ("a = 'x'", AX, E(2)),
        ("role = 'db'", &[("role", "db")], E(5)),
        ("a === 'x'", AX, E(4)),
        ("a !== 'x'", AX, E(4)),
        ("a =! 'x'", AX, E(2)),
        ("a == 'x' & b == 'y'", ABC, E(9)),
        ("a == 'x' | b == 'y'", ABC, E(9)),
        ("a == 'x' &&& b == 'y'", ABC, E(11)),
        ("a == 'x' ||| b == 'y'", ABC, E(11)),
        ("a <> 'x'", AX, E(2)),
        // Values must be quoted strings; no escapes.
        ("a == b", NONE, E(5)),
        ("a == 1", NONE, E(5)),
        ("\"a\" == a", NONE, E(0)),
        ("a == {}", NONE, E(5)),
        ("a == \"x", NONE, E(5)),
        ("a == 'x", NONE, E(5)),
        ("a == \"x'", NONE, E(5)),
        ("a == \"a\\\"b\"", NONE, E(9)),
        ("a == 'a\\'b'", NONE, E(9)),
        ("a == \"a\\\"", &[("a", "a\\")], T),
        // Grammar: bare labels, empty groups, leftovers, unbalanced parentheses.
        ("a", AX, E(1)),
        ("a ", AX, E(2)),
        ("a b", AX, E(2)),
        ("()", NONE, E(1)),
        ("(", NONE, E(1)),
        (")", NONE, E(0)),
        ("(a == 'x'", AX, E(9)),
        ("a == 'x')", AX, E(8)),
        ("((a == 'x')", AX, E(11)),
        ("(a == 'x'))", AX, E(10)),
        ("a == 'x' ,", AX, E(9)),
        ("a == 'x' b == 'y'", ABC, E(9)),
        ("a == 'x' &&", AX, E(11)),
        ("a == 'x' && ", AX, E(12)),
        ("&& a == 'x'", AX, E(0)),
        ("a == 'x' || || b == 'y'", ABC, E(12)),
        ("a == 'x' (b == 'y')", ABC, E(9)),
        ("{}", NONE, E(0)),
        (",", NONE, E(0)),
        ("'x'", NONE, E(0)),
        ("(a == 'x') (b == 'y')", ABC, E(11)),
        ("(a == 'x')", AX, T),
        ("((a == 'x'))", AX, T),
        ("( ( a == 'x' ) )", AX, T),
        // ! binds tightest and applies to one primary.
        ("!a == 'x'", NONE, T),
        ("!a == 'x'", AX, F),
        ("!!a == 'x'", NONE, F),
        ("!!a == 'x'", AX, T),
        ("!!!a == 'x'", NONE, T),
        ("! a == 'x'", NONE, T),
        ("! ! a == 'x'", AX, T),
        ("!has(a)", NONE, T),
        ("!has(a)", AE, F),
        ("!a == 'x' && b == 'y'", BN, F),
        ("!(a == 'x' && b == 'y')", BN, T),
        ("!a == 'x' || b == 'y'", AX, F),
        ("!(a == 'x')", AX, F),
        ("!(!(a == 'x'))", AX, T),
        ("!all()", NONE, F),
        ("!global()", NONE, F),
        ("!a != 'x'", NONE, F),
        ("!a not in {'x'}", NONE, F),
        ("!a in {'x'}", NONE, T),
        ("!a contains 'x'", NONE, T),
        ("!", NONE, E(1)),
        ("!!", NONE, E(2)),
        ("!(", NONE, E(2)),
        ("!a", NONE, E(2)),
        ("a ! == 'x'", NONE, E(2)),
        ("a == 'x' !", AX, E(9)),
        ("a == 'x' && !", AX, E(13)),
        ("a == !'x'", AX, E(5)),
        // && binds tighter than ||.
        ("a == 'x' || b == 'y' && c == 'z'", AX, T),
        ("(a == 'x' || b == 'y') && c == 'z'", AX, F),
        ("a == 'x' && b == 'y' || c == 'z'", CZ, T),
        ("a == 'x' && (b == 'y' || c == 'z')", CZ, F),
        ("a == 'x' && b == 'y' && c == 'z'", ABC, T),
        ("a == 'x' && b == 'y' && c == 'w'", ABC, F),
        ("a == 'w' || b == 'w' || c == 'z'", ABC, T),
        ("a == 'w' || b == 'w' || c == 'w'", ABC, F),
        ("a == 'x'&&b == 'y'", ABC, T),
        ("has(a)||has(b)", BY, T),
        ("has(a)&&has(b)", BY, F),
        ("all() && has(a)", NONE, F),
        ("all() || has(a)", NONE, T),
        ("global() && a == 'x'", AX, T),
        ("a == 'x' && b != 'y'", NONE, F),
        ("a != 'x' && b not in {'y'}", NONE, T),
        ("(a == 'x' || (b == 'y' && (c == 'z' || !has(d))))", BY, T),
    ];

    fn label_map<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
            .collect()
    }

    /// The static table plus the rows built at run time (label length limits).
    fn all_cases() -> Vec<(String, BTreeMap<String, String>, Expect)> {
        let mut cases: Vec<_> = CASES
            .iter()
            .map(|(text, labels, expect)| (text.to_string(), label_map(labels), *expect))
            .collect();
        let max = "k".repeat(MAX_LABEL_LEN);
        let over = "k".repeat(MAX_LABEL_LEN + 1);
        let with_max = label_map(&[(max.as_str(), "x")]);
        cases.push((format!("{max} == 'x'"), with_max.clone(), T));
        cases.push((format!("has({max})"), with_max.clone(), T));
        cases.push((format!("{over} == 'x'"), with_max.clone(), E(0)));
        cases.push((format!("has({over})"), with_max.clone(), E(4)));
        cases.push((format!("has(a) && {over} == 'x'"), with_max, E(10)));
        cases
    }

    #[test]
    fn selector_language_table() {
        let cases = all_cases();
        assert!(cases.len() >= 150, "only {} cases", cases.len());
        let mut failures = Vec::new();
        for (text, labels, expect) in &cases {
            let got = match Selector::parse(text) {
                Ok(selector) if selector.matches(labels) => T,
                Ok(_) => F,
                Err(error) => E(error.position),
            };
            if got != *expect {
                failures.push(format!(
                    "{text:?} with {labels:?}: expected {expect:?}, got {got:?}"
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn table_selectors_print_back_to_themselves() {
        for (text, labels, expect) in all_cases() {
            let Ok(selector) = Selector::parse(&text) else {
                assert!(matches!(expect, E(_)), "{text:?}");
                continue;
            };
            let printed = selector.to_string();
            let reparsed = Selector::parse(&printed);
            assert_eq!(
                reparsed.as_ref(),
                Ok(&selector),
                "{text:?} printed as {printed:?}"
            );
            assert_eq!(selector.matches(&labels), expect == T, "{text:?}");
        }
    }

    #[test]
    fn error_display_has_message_and_position() {
        let table: &[(&str, &str)] = &[
            (
                "a = 'x'",
                "a single '=' is not an operator (did you mean '=='?) at position 2",
            ),
            (
                "has (a)",
                "expected an operator after label 'has' (==, !=, contains, starts with, ends with, in, not in), found '(' at position 4",
            ),
            (
                "a == 'x'\n",
                "unexpected whitespace '\\n' (only space and tab separate tokens) at position 8",
            ),
            (
                "(a == 'x'",
                "missing ')' to close the '(' at position 0 at position 9",
            ),
            (
                "a in {'x' 'y'}",
                "expected ',' or '}' after a set member, found string \"y\" at position 10",
            ),
            (
                "a == \"x",
                "unterminated string literal (strings have no escapes) at position 5",
            ),
            (
                "  a inx {}",
                "expected an operator after the label (==, !=, contains, starts with, ends with, in, not in), found 'inx' at position 4",
            ),
            (
                "a == 'x' ||",
                "expected a selector term (a label with an operator, has(…), all(), global(), '(' or '!'), found end of input at position 11",
            ),
        ];
        for (text, expected) in table {
            let error = Selector::parse(text).unwrap_err();
            assert_eq!(error.to_string(), *expected, "{text:?}");
        }
    }

    #[test]
    fn error_position_is_a_byte_offset() {
        // Multi-byte characters inside strings count in bytes.
        let error = Selector::parse("a == 'ééé' @").unwrap_err();
        assert_eq!(error.position, "a == 'ééé' ".len());
        assert_eq!(error.position, 14);
    }

    #[test]
    fn constructors_equal_their_parsed_text() {
        let values = ["x".to_owned(), "a".to_owned(), "x".to_owned()];
        let table: Vec<(Selector, &str)> = vec![
            (Selector::all(), "all()"),
            (Selector::all(), ""),
            (Selector::global(), "global( )"),
            (Selector::has("app"), "has(app)"),
            (Selector::equals("app", "web"), "app == 'web'"),
            (Selector::not_equals("app", "web"), "app != \"web\""),
            (Selector::in_set("k", &values), "k in {'a', 'x'}"),
            (Selector::not_in_set("k", &values), "k not in {'x', 'a',}"),
            (Selector::in_set("k", &[]), "k in {}"),
            (Selector::has("a").negate(), "!has(a)"),
            (Selector::has("a").negate().negate(), "!!has(a)"),
            (
                Selector::has("a").and(&Selector::has("b")),
                "has(a) && has(b)",
            ),
            (
                Selector::has("a")
                    .and(&Selector::has("b"))
                    .and(&Selector::has("c")),
                "has(a) && has(b) && has(c)",
            ),
            (
                Selector::has("a").and(&Selector::has("b").and(&Selector::has("c"))),
                "has(a) && has(b) && has(c)",
            ),
            (
                Selector::has("a")
                    .or(&Selector::has("b"))
                    .and(&Selector::has("c")),
                "(has(a) || has(b)) && has(c)",
            ),
            (
                Selector::has("a")
                    .and(&Selector::has("b"))
                    .or(&Selector::has("c")),
                "has(a) && has(b) || has(c)",
            ),
            (
                Selector::has("a").and(&Selector::has("b")).negate(),
                "!(has(a) && has(b))",
            ),
            (Selector::all().and(&Selector::all()), "all() && all()"),
        ];
        for (built, text) in table {
            assert_eq!(Ok(&built), Selector::parse(text).as_ref(), "{text:?}");
        }
    }

    #[test]
    fn rewrites_on_examples() {
        let ns = Selector::has("projectcalico.org/namespace");
        let not_ns = ns.negate();
        let sel = |text: &str| Selector::parse(text).unwrap();
        let table: Vec<(Selector, &str)> = vec![
            (
                sel("a == 'x' && !has(b) || c in {'y'}").with_prefixed_labels("pcns."),
                "pcns.a == 'x' && !has(pcns.b) || pcns.c in {'y'}",
            ),
            (sel("all()").with_prefixed_labels("pcns."), "all()"),
            (
                sel("all() && all()").replace_all(&ns),
                "has(projectcalico.org/namespace) && has(projectcalico.org/namespace)",
            ),
            (
                sel("global( )").replace_global(&not_ns),
                "!has(projectcalico.org/namespace)",
            ),
            (
                sel("!global()").replace_global(&not_ns),
                "!!has(projectcalico.org/namespace)",
            ),
            (sel("global()").replace_all(&ns), "global()"),
            (sel("has(a)").replace_all(&ns), "has(a)"),
            (
                sel("has(a) && all()").replace_all(&sel("has(x) && has(y)")),
                "has(a) && (has(x) && has(y))",
            ),
            (
                sel("!all()").replace_all(&sel("has(x) || has(y)")),
                "!(has(x) || has(y))",
            ),
            (
                sel("all()")
                    .with_prefixed_labels("pcns.")
                    .and(&sel("role == 'db'"))
                    .replace_all(&ns),
                "has(projectcalico.org/namespace) && role == 'db'",
            ),
        ];
        for (rewritten, text) in table {
            assert_eq!(Ok(&rewritten), Selector::parse(text).as_ref(), "{text:?}");
        }
        assert!(sel("global()").uses_global());
        assert!(sel("has(a) || !(b == 'x' && global())").uses_global());
        assert!(!sel("global == 'x' && has(global)").uses_global());
        assert!(!sel("global()").replace_global(&not_ns).uses_global());
    }

    #[test]
    fn unrepresentable_pieces_never_print_as_a_different_selector() {
        let table = [
            Selector::equals("a", "'\" || has(b) || a == \""),
            Selector::has("a) || all("),
            Selector::has(""),
            Selector::in_set("k", &["'\"".to_owned()]),
        ];
        for selector in table {
            let printed = selector.to_string();
            assert!(printed.contains("<unrepresentable "), "{printed}");
            assert!(Selector::parse(&printed).is_err(), "{printed}");
        }
    }

    // ---- Depth: everything must work on a 2 MiB stack without recursion. ----

    fn on_small_stack(f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap();
    }

    fn hash_of(selector: &Selector) -> u64 {
        let mut hasher = DefaultHasher::new();
        selector.hash(&mut hasher);
        hasher.finish()
    }

    /// Exercises every operation on one deep selector; `expected` is its value on `labels`.
    /// Plain `assert!`s: a failing `assert_eq!` would print megabytes of selector.
    fn exercise_deep(text: &str, labels: &BTreeMap<String, String>, expected: bool) {
        let selector = Selector::parse(text).unwrap();
        assert!(selector.matches(labels) == expected, "matches");
        assert!(selector.negate().matches(labels) != expected, "negate");
        let copy = selector.clone();
        assert!(copy == selector, "clone");
        assert!(hash_of(&copy) == hash_of(&selector), "hash");
        let printed = selector.to_string();
        assert!(Selector::parse(&printed) == Ok(selector.clone()), "display");
        assert!(format!("{selector:?}").starts_with("Selector("), "debug");
        let prefixed_labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (format!("pcns.{k}"), v.clone()))
            .collect();
        let prefixed = selector.with_prefixed_labels("pcns.");
        assert!(prefixed.matches(&prefixed_labels) == expected, "prefix");
        let replaced = selector.replace_all(&Selector::has("a"));
        let replaced = replaced.replace_global(&Selector::has("a"));
        assert!(replaced.matches(labels) == expected, "replace");
        assert!(!selector.uses_global(), "uses_global");
        let combined = selector.and(&copy);
        assert!(combined.matches(labels) == expected, "and");
        drop((selector, copy, prefixed, replaced, combined));
    }

    fn deep_cases(depth: usize) -> Vec<(String, bool)> {
        let odd = depth % 2 == 1;
        vec![
            // ((((a == 'x'))))
            (
                format!("{}a == 'x'{}", "(".repeat(depth), ")".repeat(depth)),
                true,
            ),
            // !!!!a == 'x'
            (format!("{}a == 'x'", "!".repeat(depth)), !odd),
            // !(!(!(a == 'x')))
            (
                format!("{}a == 'x'{}", "!(".repeat(depth), ")".repeat(depth)),
                !odd,
            ),
            // has(z) || (a == 'x' && (has(z) || (a == 'x' && … ))) : alternating n-ary nodes
            (
                format!(
                    "{}all(){}",
                    "has(z) || (a == 'x' && (".repeat(depth),
                    "))".repeat(depth)
                ),
                true,
            ),
            // all() && !(all() && !(…)) : alternating And and Not
            (
                format!("{}all(){}", "all() && !(".repeat(depth), ")".repeat(depth)),
                !odd,
            ),
        ]
    }

    #[test]
    fn a_thousand_levels_of_nesting_on_a_small_stack() {
        on_small_stack(|| {
            let labels = label_map(&[("a", "x")]);
            for (text, expected) in deep_cases(1000) {
                exercise_deep(&text, &labels, expected);
            }
        });
    }

    #[test]
    fn nesting_depth_has_no_cap() {
        on_small_stack(|| {
            let labels = label_map(&[("a", "x")]);
            for (text, expected) in deep_cases(20_001) {
                exercise_deep(&text, &labels, expected);
            }
        });
    }

    #[test]
    fn deep_selectors_built_by_the_api_on_a_small_stack() {
        on_small_stack(|| {
            let mut selector = Selector::all();
            for i in 0..3000 {
                selector = if i % 2 == 0 {
                    selector.negate()
                } else {
                    selector.or(&Selector::has("z")).and(&Selector::has("a"))
                };
            }
            // With `a` present and `z` absent each `|| has(z)) && has(a)` keeps the value,
            // so it is that of all() under 1500 negations.
            let labels = label_map(&[("a", "")]);
            let with_q = label_map(&[("a", ""), ("q", "")]);
            assert!(selector.matches(&labels));
            assert!(selector.matches(&with_q));
            let printed = selector.to_string();
            assert!(Selector::parse(&printed) == Ok(selector.clone()));
            // all() becomes !has(q): unchanged without q, false with it.
            let replaced = selector.replace_all(&Selector::has("q").negate());
            assert!(replaced.matches(&labels));
            assert!(!replaced.matches(&with_q));
        });
    }

    #[test]
    fn unclosed_deep_nesting_is_an_error_not_a_crash() {
        on_small_stack(|| {
            let text = "(".repeat(200_000);
            let error = Selector::parse(&text).unwrap_err();
            assert_eq!(error.position, 200_000);
            let text = "!".repeat(200_000);
            assert_eq!(Selector::parse(&text).unwrap_err().position, 200_000);
        });
    }

    // ---- Properties over random expressions. ----

    const LABEL_POOL: &[&str] = &[
        "a",
        "b",
        "app.kubernetes.io/name",
        "x-1",
        "in",
        "has",
        "not",
        "starts",
        "all",
        "global",
    ];
    const VALUE_POOL: &[&str] = &[
        "",
        "x",
        "y",
        "xy",
        "it's",
        "say \"hi\"",
        "a b",
        "&&",
        "é",
        "{,}",
        "x\ny",
    ];

    fn arb_label() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => proptest::sample::select(LABEL_POOL).prop_map(str::to_owned),
            1 => "[A-Za-z0-9_./-]{1,6}",
        ]
    }

    fn arb_value() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => proptest::sample::select(VALUE_POOL).prop_map(str::to_owned),
            1 => "[ -~é]{0,5}".prop_filter("both quote kinds", |v| !(v.contains('"') && v.contains('\''))),
        ]
    }

    fn arb_term() -> impl Strategy<Value = Selector> {
        let compare_op = proptest::sample::select(&[
            CompareOp::Equals,
            CompareOp::NotEquals,
            CompareOp::Contains,
            CompareOp::StartsWith,
            CompareOp::EndsWith,
        ]);
        prop_oneof![
            Just(Selector::all()),
            Just(Selector::global()),
            arb_label().prop_map(|l| Selector::has(&l)),
            (arb_label(), compare_op, arb_value())
                .prop_map(|(l, op, v)| Selector::compare(&l, op, &v)),
            (arb_label(), vec(arb_value(), 0..4)).prop_map(|(l, v)| Selector::in_set(&l, &v)),
            (arb_label(), vec(arb_value(), 0..4)).prop_map(|(l, v)| Selector::not_in_set(&l, &v)),
        ]
    }

    /// Random trees, including nested same-kind nodes (`a && (b && c)`) that `and` would
    /// flatten, so every shape the parser can produce is covered.
    fn arb_selector() -> impl Strategy<Value = Selector> {
        arb_term().prop_recursive(6, 64, 4, |inner| {
            let nary = |kind: NodeKind| {
                vec(inner.clone(), 2..5).prop_map(move |parts| {
                    let trees: Vec<&Tree> = parts.iter().map(|p| &p.tree).collect();
                    Selector {
                        tree: Tree::combine(kind.clone(), &trees, false),
                    }
                })
            };
            prop_oneof![
                inner.clone().prop_map(|s| s.negate()),
                nary(NodeKind::And),
                nary(NodeKind::Or),
            ]
        })
    }

    fn arb_labels() -> impl Strategy<Value = BTreeMap<String, String>> {
        btree_map(arb_label(), arb_value(), 0..6)
    }

    /// The obvious recursive evaluator, with chosen values for `all()` and `global()`.
    fn reference(
        tree: &Tree,
        i: usize,
        labels: &BTreeMap<String, String>,
        all: bool,
        global: bool,
    ) -> bool {
        match tree.kind(i) {
            NodeKind::Term(Term::All) => all,
            NodeKind::Term(Term::Global) => global,
            NodeKind::Term(term) => reference_term(term, labels),
            NodeKind::Not => !reference(tree, i - 1, labels, all, global),
            NodeKind::And => tree
                .children(i)
                .iter()
                .all(|&c| reference(tree, c, labels, all, global)),
            NodeKind::Or => tree
                .children(i)
                .iter()
                .any(|&c| reference(tree, c, labels, all, global)),
        }
    }

    /// SPEC B §1.3, written out independently of `Term::evaluate`.
    fn reference_term(term: &Term, labels: &BTreeMap<String, String>) -> bool {
        match term {
            Term::All | Term::Global => true,
            Term::Has(label) => labels.contains_key(label),
            Term::Compare { label, op, value } => match (labels.get(label), op) {
                (None, CompareOp::NotEquals) => true,
                (None, _) => false,
                (Some(v), CompareOp::Equals) => v == value,
                (Some(v), CompareOp::NotEquals) => v != value,
                (Some(v), CompareOp::Contains) => v.contains(value.as_str()),
                (Some(v), CompareOp::StartsWith) => v.starts_with(value.as_str()),
                (Some(v), CompareOp::EndsWith) => v.ends_with(value.as_str()),
            },
            Term::Set { label, op, values } => {
                let member = labels.get(label).is_some_and(|v| values.contains(v));
                match op {
                    SetOp::In => member,
                    SetOp::NotIn => !member,
                }
            }
        }
    }

    fn evaluate_reference(
        selector: &Selector,
        labels: &BTreeMap<String, String>,
        all: bool,
        global: bool,
    ) -> bool {
        reference(&selector.tree, selector.tree.root(), labels, all, global)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn display_round_trips(selector in arb_selector(), labels in arb_labels()) {
            let printed = selector.to_string();
            let reparsed = Selector::parse(&printed);
            prop_assert_eq!(reparsed.as_ref(), Ok(&selector), "printed {:?}", printed);
            prop_assert_eq!(reparsed.map(|s| s.matches(&labels)), Ok(selector.matches(&labels)));
        }

        #[test]
        fn evaluation_agrees_with_the_recursive_definition(
            selector in arb_selector(),
            labels in arb_labels(),
        ) {
            prop_assert_eq!(selector.matches(&labels), evaluate_reference(&selector, &labels, true, true));
        }

        #[test]
        fn prefixing_labels_is_looking_them_up_under_the_prefix(
            selector in arb_selector(),
            labels in arb_labels(),
            prefix in proptest::sample::select(&["pcns.", "pcsa.", "x/", "a"]),
        ) {
            // L' holds, for every key of L that starts with the prefix, that key without it.
            let stripped: BTreeMap<String, String> = labels
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_owned(), v.clone())))
                .collect();
            let prefixed = selector.with_prefixed_labels(prefix);
            prop_assert_eq!(prefixed.matches(&labels), selector.matches(&stripped));
            prop_assert_eq!(Selector::parse(&prefixed.to_string()), Ok(prefixed));
        }

        #[test]
        fn replacing_all_and_global_is_substituting_their_value(
            selector in arb_selector(),
            with in arb_selector(),
            labels in arb_labels(),
        ) {
            let with_value = with.matches(&labels);
            let replaced_all = selector.replace_all(&with);
            prop_assert_eq!(
                replaced_all.matches(&labels),
                evaluate_reference(&selector, &labels, with_value, true)
            );
            let replaced_global = selector.replace_global(&with);
            prop_assert_eq!(
                replaced_global.matches(&labels),
                evaluate_reference(&selector, &labels, true, with_value)
            );
            prop_assert_eq!(selector.replace_all(&Selector::all()), selector.clone());
            prop_assert_eq!(selector.replace_global(&Selector::global()), selector.clone());
            prop_assert_eq!(replaced_all.uses_global(), selector.uses_global() || (with.uses_global() && selector.tree.terms().any(|t| *t == Term::All)));
            prop_assert!(!selector.replace_global(&Selector::has("n")).uses_global());
            prop_assert_eq!(Selector::parse(&replaced_all.to_string()), Ok(replaced_all));
        }

        #[test]
        fn combinators_are_boolean_operators(
            left in arb_selector(),
            right in arb_selector(),
            labels in arb_labels(),
        ) {
            let (l, r) = (left.matches(&labels), right.matches(&labels));
            prop_assert_eq!(left.and(&right).matches(&labels), l && r);
            prop_assert_eq!(left.or(&right).matches(&labels), l || r);
            prop_assert_eq!(left.negate().matches(&labels), !l);
            let and = left.and(&right);
            prop_assert_eq!(Selector::parse(&and.to_string()), Ok(and));
        }

        #[test]
        fn parse_never_panics(text in "[ -~\t\n\u{a0}é]{0,40}") {
            if let Err(error) = Selector::parse(&text) {
                prop_assert!(error.position <= text.len());
            }
        }

        #[test]
        fn parse_never_panics_on_selector_like_text(
            parts in vec(proptest::sample::select(&[
                "a", "b", " ", "\t", "(", ")", "!", "&&", "||", "==", "!=", "=", "&", "|",
                "'x'", "\"y\"", "'", "\"", "{", "}", ",", "in", "not", "contains", "starts",
                "with", "has(", "all(", "global(", "notin", "\n",
            ]), 0..16),
        ) {
            let text = parts.concat();
            match Selector::parse(&text) {
                Ok(selector) => {
                    prop_assert_eq!(Selector::parse(&selector.to_string()), Ok(selector));
                }
                Err(error) => prop_assert!(error.position <= text.len()),
            }
        }
    }
}
