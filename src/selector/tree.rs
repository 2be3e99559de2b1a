//! The expression tree, stored flat.
//!
//! Selectors nest without limit (`((((…))))`, `!!!!…`, alternating `&&`/`||` groups), so a
//! boxed recursive tree would overflow the stack in every recursive walk, including the
//! compiler-generated `Drop`, `Clone`, `Hash` and `PartialEq`. Instead the nodes live in one
//! `Vec` in **post-order** (children before their parent, left to right), and each node
//! records the size of its subtree and the distance to its parent. Then:
//!
//! * the derived `Clone`/`Drop`/`Hash`/`Eq` are flat loops over the vector, and two trees are
//!   structurally equal exactly when their vectors are equal (post-order plus subtree sizes
//!   determines the tree, and the parent distances are derived from it);
//! * the subtree of node `i` is `start(i)..=i`, and `start(i)` is its leftmost leaf;
//! * in a left-to-right walk, the node after a finished child is either its parent or the
//!   leftmost leaf of its next sibling, so evaluation needs neither a stack nor recursion
//!   ([`Tree::evaluate`]).
//!
//! Invariants, upheld by [`Builder`] (the only way to make a tree): the vector is non-empty,
//! every `Not` has exactly one child, every `And`/`Or` has at least two, terms have none,
//! and set values are sorted and deduplicated.

use std::collections::BTreeMap;

/// A leaf of the expression: one primary of the grammar (SPEC B §1.2) other than a
/// parenthesised group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Term {
    All,
    Global,
    Has(String),
    Compare {
        label: String,
        op: CompareOp,
        value: String,
    },
    Set {
        label: String,
        op: SetOp,
        /// Sorted and deduplicated, so that equal sets compare equal and lookups can
        /// binary-search.
        values: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum CompareOp {
    Equals,
    NotEquals,
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum SetOp {
    In,
    NotIn,
}

impl Term {
    pub(super) fn set(label: &str, op: SetOp, values: impl IntoIterator<Item = String>) -> Term {
        let mut values: Vec<String> = values.into_iter().collect();
        values.sort_unstable();
        values.dedup();
        Term::Set {
            label: label.to_owned(),
            op,
            values,
        }
    }

    /// The label this term tests, if any.
    pub(super) fn label_mut(&mut self) -> Option<&mut String> {
        match self {
            Term::All | Term::Global => None,
            Term::Has(label) | Term::Compare { label, .. } | Term::Set { label, .. } => Some(label),
        }
    }

    /// SPEC B §1.3. Allocation-free: map lookups borrow the label as `&str`.
    pub(super) fn evaluate(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Term::All | Term::Global => true,
            Term::Has(label) => labels.contains_key(label.as_str()),
            Term::Compare { label, op, value } => {
                let found = labels.get(label.as_str()).map(String::as_str);
                match (op, found) {
                    (CompareOp::NotEquals, None) => true,
                    (_, None) => false,
                    (CompareOp::Equals, Some(v)) => v == value,
                    (CompareOp::NotEquals, Some(v)) => v != value,
                    (CompareOp::Contains, Some(v)) => v.contains(value.as_str()),
                    (CompareOp::StartsWith, Some(v)) => v.starts_with(value.as_str()),
                    (CompareOp::EndsWith, Some(v)) => v.ends_with(value.as_str()),
                }
            }
            Term::Set { label, op, values } => {
                let member = labels
                    .get(label.as_str())
                    .map(|v| values.binary_search_by(|x| x.as_str().cmp(v)).is_ok());
                match op {
                    SetOp::In => member == Some(true),
                    SetOp::NotIn => member != Some(true),
                }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum NodeKind {
    Term(Term),
    Not,
    And,
    Or,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Node {
    pub(super) kind: NodeKind,
    /// Number of nodes in the subtree rooted here, this one included.
    size: usize,
    /// `parent index - own index`; 0 for the root.
    parent_offset: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Tree {
    nodes: Vec<Node>,
}

impl Tree {
    pub(super) fn term(term: Term) -> Tree {
        let mut builder = Builder::default();
        builder.term(term);
        builder.finish()
    }

    pub(super) fn root(&self) -> usize {
        self.nodes.len().saturating_sub(1)
    }

    /// Index of the first node of the subtree rooted at `i`, which is its leftmost leaf.
    pub(super) fn start(&self, i: usize) -> usize {
        i + 1 - self.nodes[i].size
    }

    pub(super) fn parent(&self, i: usize) -> Option<usize> {
        match self.nodes[i].parent_offset {
            0 => None,
            offset => Some(i + offset),
        }
    }

    pub(super) fn kind(&self, i: usize) -> &NodeKind {
        &self.nodes[i].kind
    }

    /// The children of node `i`, left to right.
    pub(super) fn children(&self, i: usize) -> Vec<usize> {
        let mut children = Vec::new();
        let first = self.start(i);
        let mut next_end = i;
        while next_end > first {
            let child = next_end - 1;
            children.push(child);
            next_end = self.start(child);
        }
        children.reverse();
        children
    }

    pub(super) fn terms_mut(&mut self) -> impl Iterator<Item = &mut Term> {
        self.nodes
            .iter_mut()
            .filter_map(|node| match &mut node.kind {
                NodeKind::Term(term) => Some(term),
                _ => None,
            })
    }

    pub(super) fn terms(&self) -> impl Iterator<Item = &Term> {
        self.nodes.iter().filter_map(|node| match &node.kind {
            NodeKind::Term(term) => Some(term),
            _ => None,
        })
    }

    /// Evaluates left to right with short-circuiting, without recursion, a stack or
    /// allocation. The walk is always at a leaf (evaluate it) or climbing from a finished
    /// subtree with its value (combine it into the parent, then either move on to the
    /// leftmost leaf of the next sibling, which is the very next node, or keep climbing
    /// because the parent's value is now known).
    pub(super) fn evaluate(&self, labels: &BTreeMap<String, String>) -> bool {
        let root = self.root();
        let mut i = 0;
        loop {
            let mut value = match &self.nodes[i].kind {
                NodeKind::Term(term) => term.evaluate(labels),
                // Unreachable: the first node of any subtree is a leaf (module invariant).
                _ => false,
            };
            loop {
                if i == root {
                    return value;
                }
                let parent = i + self.nodes[i].parent_offset;
                let is_last_child = i + 1 == parent;
                match self.nodes[parent].kind {
                    NodeKind::Not => {
                        value = !value;
                        i = parent;
                    }
                    NodeKind::And if value && !is_last_child => {
                        i += 1;
                        break;
                    }
                    NodeKind::Or if !value && !is_last_child => {
                        i += 1;
                        break;
                    }
                    // The parent's value is now known: a short circuit or its last child.
                    NodeKind::And | NodeKind::Or => i = parent,
                    // Unreachable: terms have no children.
                    NodeKind::Term(_) => return value,
                }
            }
        }
    }

    /// Walks the tree in source order, calling `visit` when entering and leaving each node.
    /// Iterative: the nodes entered just before a leaf are that leaf's ancestors whose
    /// subtree starts at it, found by climbing parent links.
    pub(super) fn walk<E>(&self, mut visit: impl FnMut(Visit) -> Result<(), E>) -> Result<(), E> {
        let mut entering = Vec::new();
        for i in 0..self.nodes.len() {
            if matches!(self.nodes[i].kind, NodeKind::Term(_)) {
                entering.clear();
                entering.push(i);
                let mut node = i;
                while let Some(parent) = self.parent(node) {
                    if self.start(parent) != i {
                        break;
                    }
                    entering.push(parent);
                    node = parent;
                }
                for &node in entering.iter().rev() {
                    visit(Visit::Enter(node))?;
                }
            }
            visit(Visit::Leave(i))?;
        }
        Ok(())
    }

    /// A copy in which every term for which `is_target` holds is replaced by `with`.
    pub(super) fn replace_terms(&self, is_target: impl Fn(&Term) -> bool, with: &Tree) -> Tree {
        let mut builder = Builder::with_capacity(self.nodes.len());
        for (i, node) in self.nodes.iter().enumerate() {
            match &node.kind {
                NodeKind::Term(term) if is_target(term) => builder.subtree(with),
                NodeKind::Term(term) => builder.term(term.clone()),
                kind => builder.combine(kind.clone(), self.children(i).len()),
            }
        }
        builder.finish()
    }

    /// `kind` (`And` or `Or`) applied to `parts`. With `flatten`, a part that is itself a
    /// `kind` node contributes its children instead, so repeated `and` calls build one
    /// n-ary node rather than a deep chain.
    pub(super) fn combine(kind: NodeKind, parts: &[&Tree], flatten: bool) -> Tree {
        let mut builder = Builder::default();
        let mut arity = 0;
        for part in parts {
            if flatten && *part.kind(part.root()) == kind {
                arity += builder.children_of(part);
            } else {
                builder.subtree(part);
                arity += 1;
            }
        }
        builder.combine(kind, arity);
        builder.finish()
    }

    pub(super) fn negate(&self) -> Tree {
        let mut builder = Builder::with_capacity(self.nodes.len() + 1);
        builder.subtree(self);
        builder.combine(NodeKind::Not, 1);
        builder.finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Visit {
    Enter(usize),
    Leave(usize),
}

/// Builds a tree bottom-up, the way a post-fix expression is evaluated: terms push an
/// operand, `combine` replaces the last `arity` operands with one node over them.
#[derive(Debug, Default)]
pub(super) struct Builder {
    nodes: Vec<Node>,
    /// Roots of the finished subtrees not yet given a parent, left to right.
    operands: Vec<usize>,
}

impl Builder {
    pub(super) fn with_capacity(nodes: usize) -> Builder {
        Builder {
            nodes: Vec::with_capacity(nodes),
            operands: Vec::new(),
        }
    }

    pub(super) fn term(&mut self, term: Term) {
        self.operands.push(self.nodes.len());
        self.nodes.push(Node {
            kind: NodeKind::Term(term),
            size: 1,
            parent_offset: 0,
        });
    }

    /// Pushes a copy of `tree` as one operand. Sizes and parent offsets are relative, so
    /// they stay valid wherever the copy lands.
    pub(super) fn subtree(&mut self, tree: &Tree) {
        self.nodes.extend_from_slice(&tree.nodes);
        self.operands.push(self.nodes.len() - 1);
    }

    /// Pushes the children of `tree`'s root as separate operands; returns how many.
    fn children_of(&mut self, tree: &Tree) -> usize {
        let base = self.nodes.len();
        let root = tree.root();
        self.nodes.extend_from_slice(&tree.nodes[..root]);
        let children = tree.children(root);
        self.operands
            .extend(children.iter().map(|child| base + child));
        children.len()
    }

    /// Makes a `kind` node over the last `arity` operands. Callers pass `arity` 1 for
    /// `Not` and at least 2 for `And`/`Or`; the parser and the tree walks guarantee
    /// that many operands are pending.
    pub(super) fn combine(&mut self, kind: NodeKind, arity: usize) {
        debug_assert!(arity >= 1 && arity <= self.operands.len());
        let index = self.nodes.len();
        let first = self.operands.len() - arity;
        let start = self.operands[first] + 1 - self.nodes[self.operands[first]].size;
        for child in self.operands.drain(first..) {
            self.nodes[child].parent_offset = index - child;
        }
        self.nodes.push(Node {
            kind,
            size: index + 1 - start,
            parent_offset: 0,
        });
        self.operands.push(index);
    }

    pub(super) fn negate(&mut self, times: usize) {
        for _ in 0..times {
            self.combine(NodeKind::Not, 1);
        }
    }

    /// The finished tree; the caller has reduced everything to a single operand.
    pub(super) fn finish(self) -> Tree {
        debug_assert_eq!(self.operands.len(), 1);
        Tree { nodes: self.nodes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(label: &str) -> Tree {
        Tree::term(Term::Has(label.to_owned()))
    }

    fn labels(keys: &[&str]) -> BTreeMap<String, String> {
        keys.iter()
            .map(|k| ((*k).to_owned(), String::new()))
            .collect()
    }

    /// (a && (b || !c)) laid out by hand: a b c Not Or And.
    fn sample() -> Tree {
        let not_c = has("c").negate();
        let b_or_not_c = Tree::combine(NodeKind::Or, &[&has("b"), &not_c], false);
        Tree::combine(NodeKind::And, &[&has("a"), &b_or_not_c], false)
    }

    #[test]
    fn post_order_layout_records_sizes_and_parents() {
        let tree = sample();
        let kinds: Vec<String> = tree.nodes.iter().map(|n| format!("{:?}", n.kind)).collect();
        assert_eq!(kinds.len(), 6);
        assert!(kinds[0].contains("\"a\"") && kinds[1].contains("\"b\""));
        assert_eq!(tree.nodes[3].kind, NodeKind::Not);
        assert_eq!(tree.nodes[4].kind, NodeKind::Or);
        assert_eq!(tree.nodes[5].kind, NodeKind::And);
        let sizes: Vec<usize> = tree.nodes.iter().map(|n| n.size).collect();
        assert_eq!(sizes, [1, 1, 1, 2, 4, 6]);
        let parents: Vec<Option<usize>> = (0..6).map(|i| tree.parent(i)).collect();
        assert_eq!(parents, [Some(5), Some(4), Some(3), Some(4), Some(5), None]);
        assert_eq!(tree.children(5), [0, 4]);
        assert_eq!(tree.children(4), [1, 3]);
        assert_eq!(tree.start(4), 1);
    }

    #[test]
    fn evaluation_follows_and_or_not() {
        let tree = sample();
        let table: &[(&[&str], bool)] = &[
            (&[], false),
            (&["a"], true),
            (&["a", "c"], false),
            (&["a", "b", "c"], true),
            (&["b"], false),
        ];
        for (keys, expected) in table {
            assert_eq!(tree.evaluate(&labels(keys)), *expected, "labels {keys:?}");
        }
    }

    #[test]
    fn walk_enters_and_leaves_in_source_order() {
        let mut events = Vec::new();
        sample()
            .walk(|visit| {
                events.push(visit);
                Ok::<(), ()>(())
            })
            .unwrap();
        use Visit::{Enter, Leave};
        let expected = [
            Enter(5),
            Enter(0),
            Leave(0),
            Enter(4),
            Enter(1),
            Leave(1),
            Enter(3),
            Enter(2),
            Leave(2),
            Leave(3),
            Leave(4),
            Leave(5),
        ];
        assert_eq!(events, expected);
    }

    #[test]
    fn combine_flattens_only_when_asked_and_only_same_kind() {
        let ab = Tree::combine(NodeKind::And, &[&has("a"), &has("b")], false);
        let flat = Tree::combine(NodeKind::And, &[&ab, &has("c")], true);
        assert_eq!(flat.children(flat.root()).len(), 3);
        let nested = Tree::combine(NodeKind::And, &[&ab, &has("c")], false);
        assert_eq!(nested.children(nested.root()).len(), 2);
        let or = Tree::combine(NodeKind::Or, &[&ab, &has("c")], true);
        assert_eq!(or.children(or.root()).len(), 2);
    }

    #[test]
    fn replace_terms_splices_whole_subtrees() {
        let tree = sample();
        let with = Tree::combine(NodeKind::Or, &[&has("x"), &has("y")], false);
        let replaced = tree.replace_terms(|t| *t == Term::Has("c".to_owned()), &with);
        assert_eq!(replaced.nodes.len(), 8);
        // a && (b || !(x || y))
        assert!(replaced.evaluate(&labels(&["a"])));
        assert!(!replaced.evaluate(&labels(&["a", "y"])));
        assert!(replaced.evaluate(&labels(&["a", "y", "b"])));
    }

    #[test]
    fn sets_are_sorted_and_deduplicated() {
        let term = Term::set(
            "k",
            SetOp::In,
            ["b", "a", "b", ""].map(str::to_owned).to_vec(),
        );
        let Term::Set { values, .. } = &term else {
            panic!("not a set");
        };
        assert_eq!(values, &["", "a", "b"]);
    }
}
