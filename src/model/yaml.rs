//! YAML text to node trees: the composer between saphyr's event parser and the typed decoder.
//!
//! Every node keeps the line and column it was written on, so that any field of any resource
//! can be named in a problem message. Scalars keep their text exactly as written plus whether
//! they were plain (unquoted): typing happens later, driven by the type the decoder asks for
//! (see `de.rs`), so `enabled: no` stays the string `"no"` wherever a string is expected.
//!
//! Choices and defences:
//! - A document is an arena: nodes in one vector, children as ranges of another, scalar text
//!   in one string. An alias does not copy its anchored node; it points at it again, so the
//!   tree is a DAG whose memory is bounded by the input size. Each document is still capped
//!   on its *expanded* size (`Limits::max_yaml_nodes`, aliases counted by the full size of
//!   what they repeat) and on its expanded nesting (`Limits::max_yaml_depth`), so an alias
//!   bomb is rejected at the first alias that goes over, and nothing downstream (the
//!   recursive serde decoder) ever sees a deeper or larger tree than the caps allow.
//! - Composition is iterative (an explicit stack), so hostile nesting cannot overflow the
//!   stack; the depth cap is checked when a collection opens.
//! - Duplicate mapping keys are an error at the line of the second one.
//! - Merge keys (`<<: *base`, or `<<: [*a, *b]`) are supported as in YAML 1.1 and Kubernetes:
//!   keys written in the mapping win, then earlier merged mappings win over later ones.
//! - Tags: `!!str` makes a scalar a string even if it looks like a number; the other core
//!   schema tags (`!!int`, `!!map`, …) are accepted and change nothing; any other tag is an
//!   error, since nothing here could give it a meaning.
//! - Mapping keys must be scalars.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};

use super::Limits;

/// Index of a node in its [`Document`].
pub type NodeId = u32;

/// A YAML problem with its position (line 1-based, column 1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {} column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for YamlError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// `text[start..start + len]`.
    Scalar { start: u32, len: u32, plain: bool },
    /// `children[start..start + len]`.
    Seq { start: u32, len: u32 },
    /// `children[start..start + 2 * pairs]`, keys and values alternating.
    Map { start: u32, pairs: u32 },
}

#[derive(Debug, Clone, Copy)]
struct NodeData {
    line: u32,
    column: u32,
    slot: Slot,
}

/// One composed YAML document.
pub struct Document {
    nodes: Vec<NodeData>,
    children: Vec<NodeId>,
    text: String,
    root: NodeId,
}

impl fmt::Debug for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Document")
            .field("nodes", &self.nodes.len())
            .field("root_line", &self.root().line())
            .finish()
    }
}

impl Document {
    pub fn root(&self) -> Node<'_> {
        self.node(self.root)
    }

    /// The node `id` of this document. Ids come from this document's own nodes; an id from
    /// elsewhere is clamped to the root rather than panicking.
    pub fn node(&self, id: NodeId) -> Node<'_> {
        let id = if (id as usize) < self.nodes.len() {
            id
        } else {
            self.root
        };
        Node { doc: self, id }
    }
}

/// A node of a [`Document`]: cheap to copy, borrows the document.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    doc: &'a Document,
    id: NodeId,
}

impl fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Node(line {}: {})", self.line(), self.describe())
    }
}

/// What a node holds.
#[derive(Clone)]
pub enum NodeValue<'a> {
    /// A scalar as written; `plain` is false for quoted and block scalars and for `!!str`.
    Scalar {
        text: &'a str,
        plain: bool,
    },
    Seq(Items<'a>),
    Map(Entries<'a>),
}

impl<'a> Node<'a> {
    fn data(self) -> &'a NodeData {
        // `id` is checked against the arena when the node is made (`Document::node`) or comes
        // from the arena's own child lists, which the composer fills with ids it allocated.
        &self.doc.nodes[self.id as usize]
    }

    pub fn id(self) -> NodeId {
        self.id
    }

    /// Line, 1-based.
    pub fn line(self) -> usize {
        self.data().line as usize
    }

    /// Column, 1-based.
    pub fn column(self) -> usize {
        self.data().column as usize
    }

    pub fn value(self) -> NodeValue<'a> {
        let doc = self.doc;
        match self.data().slot {
            Slot::Scalar { start, len, plain } => NodeValue::Scalar {
                text: doc
                    .text
                    .get(start as usize..(start as usize + len as usize))
                    .unwrap_or(""),
                plain,
            },
            Slot::Seq { start, len } => NodeValue::Seq(Items {
                doc,
                ids: child_range(&doc.children, start, len).iter(),
            }),
            Slot::Map { start, pairs } => NodeValue::Map(Entries {
                doc,
                ids: child_range(&doc.children, start, pairs.saturating_mul(2)).chunks_exact(2),
            }),
        }
    }

    /// A plain scalar that YAML 1.2's core schema reads as null: empty, `~`, `null`.
    pub fn is_null(self) -> bool {
        matches!(self.value(), NodeValue::Scalar { text, plain: true } if is_null_text(text))
    }

    /// The text of a scalar node.
    pub fn as_scalar(self) -> Option<&'a str> {
        match self.value() {
            NodeValue::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    pub fn items(self) -> Option<Items<'a>> {
        match self.value() {
            NodeValue::Seq(items) => Some(items),
            _ => None,
        }
    }

    pub fn entries(self) -> Option<Entries<'a>> {
        match self.value() {
            NodeValue::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The entry of a mapping whose key is the scalar `key`, as (key node, value node).
    pub fn entry(self, key: &str) -> Option<(Node<'a>, Node<'a>)> {
        self.entries()?.find(|(k, _)| k.as_scalar() == Some(key))
    }

    /// The value of a mapping entry.
    pub fn get(self, key: &str) -> Option<Node<'a>> {
        self.entry(key).map(|(_, value)| value)
    }

    /// A short description for messages: `a mapping`, `a sequence`, `null`, `the string "x"`.
    pub fn describe(self) -> String {
        match self.value() {
            NodeValue::Seq(_) => "a sequence".to_owned(),
            NodeValue::Map(_) => "a mapping".to_owned(),
            NodeValue::Scalar { text, plain: true } if is_null_text(text) => "null".to_owned(),
            NodeValue::Scalar { text, plain } => describe_scalar(text, plain),
        }
    }
}

fn child_range(children: &[NodeId], start: u32, len: u32) -> &[NodeId] {
    let start = start as usize;
    children
        .get(start..start.saturating_add(len as usize))
        .unwrap_or(&[])
}

fn describe_scalar(text: &str, plain: bool) -> String {
    const MAX_CHARS: usize = 40;
    let shown: String = text.chars().take(MAX_CHARS).collect();
    let ellipsis = if shown.len() < text.len() { "…" } else { "" };
    if plain && looks_numeric(text) {
        format!("the number {shown}{ellipsis}")
    } else if plain && matches!(text, "true" | "True" | "TRUE" | "false" | "False" | "FALSE") {
        format!("the boolean {text}")
    } else {
        format!("the string {shown:?}{ellipsis}")
    }
}

fn looks_numeric(text: &str) -> bool {
    let digits = text.trim_start_matches(['-', '+']);
    digits.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && digits
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
        && digits.chars().any(|c| c.is_ascii_digit())
}

/// YAML 1.2 core schema null forms (for plain scalars).
pub fn is_null_text(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// Items of a sequence node.
#[derive(Clone)]
pub struct Items<'a> {
    doc: &'a Document,
    ids: std::slice::Iter<'a, NodeId>,
}

impl<'a> Iterator for Items<'a> {
    type Item = Node<'a>;

    fn next(&mut self) -> Option<Node<'a>> {
        self.ids.next().map(|&id| self.doc.node(id))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.ids.size_hint()
    }
}

impl ExactSizeIterator for Items<'_> {}

/// Entries of a mapping node, as (key, value), in the order written.
#[derive(Clone)]
pub struct Entries<'a> {
    doc: &'a Document,
    ids: std::slice::ChunksExact<'a, NodeId>,
}

impl<'a> Iterator for Entries<'a> {
    type Item = (Node<'a>, Node<'a>);

    fn next(&mut self) -> Option<(Node<'a>, Node<'a>)> {
        match self.ids.next()? {
            &[key, value] => Some((self.doc.node(key), self.doc.node(value))),
            _ => None,
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.ids.size_hint()
    }
}

impl ExactSizeIterator for Entries<'_> {}

// ---------------------------------------------------------------------------------------------
// Composition

/// Compose every document of a YAML stream. Each document is composed or fails on its own
/// (a duplicate key or a cap in one document does not hide the next); a syntax error ends
/// the stream, and is the last entry.
pub fn compose(text: &str, limits: &Limits) -> Vec<Result<Document, YamlError>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parser = Parser::new_from_str(text);
    let mut out = Vec::new();
    let mut current = DocState::Between;
    while let Some(next) = parser.next_event() {
        let (event, span) = match next {
            Ok(pair) => pair,
            Err(e) => {
                out.push(Err(YamlError {
                    line: e.marker().line(),
                    column: e.marker().col() + 1,
                    message: format!("YAML syntax error: {}", e.info()),
                }));
                break;
            }
        };
        match (event, &mut current) {
            (Event::StreamEnd, _) => break,
            (Event::DocumentStart(_), _) => current = DocState::Building(DocBuilder::new(limits)),
            (Event::DocumentEnd, _) => {
                if let DocState::Building(builder) =
                    std::mem::replace(&mut current, DocState::Between)
                {
                    out.push(builder.finish(span));
                }
            }
            (event, DocState::Building(builder)) => {
                if let Err(e) = builder.on_event(event, span) {
                    out.push(Err(e));
                    current = DocState::Skipping;
                }
            }
            (_, DocState::Between | DocState::Skipping) => {}
        }
    }
    out
}

/// Where the composer is in the stream.
enum DocState {
    /// Outside any document.
    Between,
    Building(DocBuilder),
    /// Inside a document that already failed: its error is recorded, its events are dropped.
    Skipping,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Collection {
    Seq,
    Map,
}

/// A collection whose end event has not come yet.
struct Open {
    collection: Collection,
    line: u32,
    column: u32,
    anchor: usize,
    /// Where this collection's children start in `DocBuilder::pending`.
    pending_start: usize,
    /// Expanded size so far, itself included.
    size: usize,
    /// Expanded height of the tallest child so far (0 when only scalars).
    child_height: usize,
}

/// What an anchor names, with its expanded size and height for the caps.
#[derive(Clone, Copy)]
struct Anchored {
    id: NodeId,
    size: usize,
    height: usize,
}

struct DocBuilder {
    max_depth: usize,
    max_nodes: usize,
    nodes: Vec<NodeData>,
    children: Vec<NodeId>,
    text: String,
    open: Vec<Open>,
    /// Children of every open collection, innermost last.
    pending: Vec<NodeId>,
    anchors: HashMap<usize, Anchored>,
    /// Expanded node count of the document so far.
    expanded: usize,
    root: Option<NodeId>,
}

fn error_at(span: Span, message: impl Into<String>) -> YamlError {
    YamlError {
        line: span.start.line(),
        column: span.start.col() + 1,
        message: message.into(),
    }
}

fn to_u32(value: usize, span: Span) -> Result<u32, YamlError> {
    u32::try_from(value).map_err(|_| error_at(span, "document too large"))
}

/// Whether a tag may be honoured; `Ok(true)` when it forces a string.
fn check_tag(tag: Option<&Tag>, span: Span) -> Result<bool, YamlError> {
    match tag {
        None => Ok(false),
        Some(tag) if tag.is_yaml_core_schema() => Ok(tag.suffix == "str"),
        Some(tag) => Err(error_at(
            span,
            format!("unsupported tag {}{}", tag.handle, tag.suffix),
        )),
    }
}

impl DocBuilder {
    fn new(limits: &Limits) -> DocBuilder {
        DocBuilder {
            max_depth: limits.max_yaml_depth,
            max_nodes: limits.max_yaml_nodes,
            nodes: Vec::new(),
            children: Vec::new(),
            text: String::new(),
            open: Vec::new(),
            pending: Vec::new(),
            anchors: HashMap::new(),
            expanded: 0,
            root: None,
        }
    }

    fn on_event(&mut self, event: Event<'_>, span: Span) -> Result<(), YamlError> {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let forced_string = check_tag(tag.as_deref(), span)?;
                let plain = style == ScalarStyle::Plain && !forced_string;
                self.add_scalar(&text, plain, anchor, span)
            }
            Event::SequenceStart(anchor, tag) => {
                check_tag(tag.as_deref(), span)?;
                self.open_collection(Collection::Seq, anchor, span)
            }
            Event::MappingStart(anchor, tag) => {
                check_tag(tag.as_deref(), span)?;
                self.open_collection(Collection::Map, anchor, span)
            }
            Event::SequenceEnd | Event::MappingEnd => self.close_collection(span),
            Event::Alias(anchor) => self.add_alias(anchor, span),
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd => Ok(()),
        }
    }

    fn count(&mut self, nodes: usize, span: Span) -> Result<(), YamlError> {
        self.expanded = self.expanded.saturating_add(nodes);
        if self.expanded > self.max_nodes {
            return Err(error_at(
                span,
                format!(
                    "document expands to more than {} nodes (aliases counted in full)",
                    self.max_nodes
                ),
            ));
        }
        Ok(())
    }

    fn too_deep(&self, span: Span) -> YamlError {
        error_at(
            span,
            format!(
                "nesting deeper than {} levels (aliases counted in full)",
                self.max_depth
            ),
        )
    }

    fn push_node(
        &mut self,
        slot: Slot,
        line: u32,
        column: u32,
        span: Span,
    ) -> Result<NodeId, YamlError> {
        let id = to_u32(self.nodes.len(), span)?;
        self.nodes.push(NodeData { line, column, slot });
        Ok(id)
    }

    fn add_scalar(
        &mut self,
        text: &str,
        plain: bool,
        anchor: usize,
        span: Span,
    ) -> Result<(), YamlError> {
        self.count(1, span)?;
        let start = to_u32(self.text.len(), span)?;
        let len = to_u32(text.len(), span)?;
        to_u32(self.text.len() + text.len(), span)?;
        self.text.push_str(text);
        let (line, column) = (
            to_u32(span.start.line(), span)?,
            to_u32(span.start.col() + 1, span)?,
        );
        let id = self.push_node(Slot::Scalar { start, len, plain }, line, column, span)?;
        self.attach(id, 1, 0, anchor, span)
    }

    fn add_alias(&mut self, anchor: usize, span: Span) -> Result<(), YamlError> {
        let Some(target) = self.anchors.get(&anchor).copied() else {
            return Err(error_at(span, "alias to an unknown or unfinished anchor"));
        };
        self.count(target.size, span)?;
        if self.open.len() + target.height > self.max_depth {
            return Err(self.too_deep(span));
        }
        self.attach(target.id, target.size, target.height, 0, span)
    }

    fn open_collection(
        &mut self,
        collection: Collection,
        anchor: usize,
        span: Span,
    ) -> Result<(), YamlError> {
        if self.open.len() >= self.max_depth {
            return Err(self.too_deep(span));
        }
        self.count(1, span)?;
        self.open.push(Open {
            collection,
            line: to_u32(span.start.line(), span)?,
            column: to_u32(span.start.col() + 1, span)?,
            anchor,
            pending_start: self.pending.len(),
            size: 1,
            child_height: 0,
        });
        Ok(())
    }

    fn close_collection(&mut self, span: Span) -> Result<(), YamlError> {
        let Some(open) = self.open.pop() else {
            return Err(error_at(span, "unbalanced collection end"));
        };
        let start = to_u32(self.children.len(), span)?;
        let slot = match open.collection {
            Collection::Seq => {
                self.children
                    .extend_from_slice(&self.pending[open.pending_start..]);
                let len = to_u32(self.children.len() - start as usize, span)?;
                Slot::Seq { start, len }
            }
            Collection::Map => {
                self.finish_map(open.pending_start)?;
                let pairs = to_u32((self.children.len() - start as usize) / 2, span)?;
                Slot::Map { start, pairs }
            }
        };
        self.pending.truncate(open.pending_start);
        let id = self.push_node(slot, open.line, open.column, span)?;
        self.attach(id, open.size, open.child_height + 1, open.anchor, span)
    }

    /// Record a finished node: as an anchor if it has one, then as the next child of the
    /// innermost open collection (or as the document root).
    fn attach(
        &mut self,
        id: NodeId,
        size: usize,
        height: usize,
        anchor: usize,
        span: Span,
    ) -> Result<(), YamlError> {
        if anchor != 0 {
            self.anchors.insert(anchor, Anchored { id, size, height });
        }
        let Some(top) = self.open.last_mut() else {
            self.root = Some(id);
            return Ok(());
        };
        let is_key =
            top.collection == Collection::Map && (self.pending.len() - top.pending_start) % 2 == 0;
        if is_key && !matches!(self.nodes[id as usize].slot, Slot::Scalar { .. }) {
            return Err(error_at(span, "mapping keys must be scalars"));
        }
        top.size = top.size.saturating_add(size);
        top.child_height = top.child_height.max(height);
        self.pending.push(id);
        Ok(())
    }

    /// Move the key/value pairs of a closing mapping from `pending` to `children`, checking
    /// for duplicate keys and resolving merge keys.
    fn finish_map(&mut self, pending_start: usize) -> Result<(), YamlError> {
        let mut merges = Vec::new();
        let mut seen = KeySet::default();
        let mut index = pending_start;
        while index + 1 < self.pending.len() {
            let (key, value) = (self.pending[index], self.pending[index + 1]);
            index += 2;
            let key_text = scalar_text(&self.nodes, &self.text, key);
            if self.is_merge_key(key) {
                merges.push(value);
                continue;
            }
            if !seen.insert(key_text) {
                let at = self.nodes[key as usize];
                return Err(YamlError {
                    line: at.line as usize,
                    column: at.column as usize,
                    message: format!("duplicate key {key_text:?}"),
                });
            }
            self.children.push(key);
            self.children.push(value);
        }
        for source in merges {
            for map in self.merge_sources(source)? {
                let Slot::Map { start, pairs } = self.nodes[map as usize].slot else {
                    continue;
                };
                for pair in 0..pairs as usize {
                    let at = start as usize + 2 * pair;
                    let (key, value) = (self.children[at], self.children[at + 1]);
                    if seen.insert(scalar_text(&self.nodes, &self.text, key)) {
                        self.children.push(key);
                        self.children.push(value);
                    }
                }
            }
        }
        Ok(())
    }

    fn is_merge_key(&self, key: NodeId) -> bool {
        matches!(
            self.nodes[key as usize].slot,
            Slot::Scalar { plain: true, .. }
        ) && scalar_text(&self.nodes, &self.text, key) == "<<"
    }

    /// The mappings a merge key's value names: one mapping, or a sequence of mappings.
    fn merge_sources(&self, value: NodeId) -> Result<Vec<NodeId>, YamlError> {
        let data = self.nodes[value as usize];
        let wrong = || YamlError {
            line: data.line as usize,
            column: data.column as usize,
            message: "a merge key (<<) needs a mapping or a sequence of mappings".to_owned(),
        };
        match data.slot {
            Slot::Map { .. } => Ok(vec![value]),
            Slot::Seq { start, len } => child_range(&self.children, start, len)
                .iter()
                .map(|&id| match self.nodes[id as usize].slot {
                    Slot::Map { .. } => Ok(id),
                    _ => Err(wrong()),
                })
                .collect(),
            Slot::Scalar { .. } => Err(wrong()),
        }
    }

    fn finish(mut self, span: Span) -> Result<Document, YamlError> {
        if !self.open.is_empty() {
            return Err(error_at(span, "document ended inside a collection"));
        }
        let root = match self.root {
            Some(root) => root,
            None => self.push_node(
                Slot::Scalar {
                    start: 0,
                    len: 0,
                    plain: true,
                },
                to_u32(span.start.line(), span)?,
                1,
                span,
            )?,
        };
        Ok(Document {
            nodes: self.nodes,
            children: self.children,
            text: self.text,
            root,
        })
    }
}

fn scalar_text<'t>(nodes: &[NodeData], text: &'t str, id: NodeId) -> &'t str {
    match nodes.get(id as usize).map(|n| n.slot) {
        Some(Slot::Scalar { start, len, .. }) => text
            .get(start as usize..start as usize + len as usize)
            .unwrap_or(""),
        _ => "",
    }
}

/// Keys of one mapping: a short list scanned linearly (the common case, a handful of keys),
/// switching to a hash set for large mappings so that hostile input stays linear.
#[derive(Default)]
struct KeySet<'t> {
    few: Vec<&'t str>,
    many: Option<HashSet<&'t str>>,
}

impl<'t> KeySet<'t> {
    const LINEAR_MAX: usize = 16;

    /// Insert `key`; false when it was already there.
    fn insert(&mut self, key: &'t str) -> bool {
        if let Some(many) = &mut self.many {
            return many.insert(key);
        }
        if self.few.contains(&key) {
            return false;
        }
        self.few.push(key);
        if self.few.len() > Self::LINEAR_MAX {
            self.many = Some(self.few.drain(..).collect());
        }
        true
    }
}

// ---------------------------------------------------------------------------------------------
// Field lines

/// Line of every field of one resource, found on demand by walking its node. Holds the
/// document it came from (shared by every resource of that document), so it costs one
/// reference count per resource.
#[derive(Clone, Default)]
pub struct FieldLines {
    source: Option<(Arc<Document>, NodeId)>,
}

impl fmt::Debug for FieldLines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some((doc, id)) => write!(f, "FieldLines(line {})", doc.node(*id).line()),
            None => f.write_str("FieldLines(none)"),
        }
    }
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step<'p> {
    Key(&'p str),
    Index(usize),
}

impl FieldLines {
    /// Lines of the resource rooted at `node` of `doc`.
    pub fn new(doc: Arc<Document>, node: NodeId) -> FieldLines {
        FieldLines {
            source: Some((doc, node)),
        }
    }

    /// Line of `path` (`spec.ingress[0].source.nets[1]`, `metadata.labels["a.b/c"]`): the
    /// line of the entry's key for a mapping field, of the item for a sequence element. For a
    /// path that does not fully exist, the line of its deepest existing prefix. Keys holding
    /// dots may also be written bare (`metadata.labels.a.b/c`). `None` only when there is no
    /// document behind these lines.
    pub fn line(&self, path: &str) -> Option<usize> {
        let (doc, root) = self.source.as_ref()?;
        let steps = parse_path(path);
        let mut node = doc.node(*root);
        let mut line = node.line();
        let mut rest = steps.as_slice();
        while let Some((first, tail)) = rest.split_first() {
            match first {
                Step::Index(i) => {
                    let Some(item) = node.items().and_then(|mut items| items.nth(*i)) else {
                        break;
                    };
                    node = item;
                    line = item.line();
                    rest = tail;
                }
                Step::Key(_) => {
                    let Some((key, value, used)) = find_key(node, rest) else {
                        break;
                    };
                    node = value;
                    line = key.line();
                    rest = &rest[used..];
                }
            }
        }
        Some(line)
    }
}

/// The entry of `node` named by the leading key steps: the first key alone, or (for keys
/// that contain dots, like label keys) the first key joined with the following ones.
fn find_key<'a>(node: Node<'a>, steps: &[Step<'_>]) -> Option<(Node<'a>, Node<'a>, usize)> {
    let entries = node.entries()?;
    let keys: Vec<&str> = steps
        .iter()
        .map_while(|s| match s {
            Step::Key(k) => Some(*k),
            Step::Index(_) => None,
        })
        .collect();
    let mut joined = String::new();
    for (used, key) in keys.iter().enumerate() {
        if used > 0 {
            joined.push('.');
        }
        joined.push_str(key);
        if let Some((k, v)) = entries
            .clone()
            .find(|(k, _)| k.as_scalar() == Some(&joined))
        {
            return Some((k, v, used + 1));
        }
    }
    None
}

fn parse_path(path: &str) -> Vec<Step<'_>> {
    let mut steps = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let Some(close) = bracket_end(after) else {
                break;
            };
            let inside = &after[..close];
            rest = &after[close + 1..];
            let quoted = inside
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .or_else(|| inside.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')));
            match (quoted, inside.parse::<usize>()) {
                (Some(key), _) => steps.push(Step::Key(key)),
                (None, Ok(index)) => steps.push(Step::Index(index)),
                (None, Err(_)) => steps.push(Step::Key(inside)),
            }
        } else if let Some(after) = rest.strip_prefix('.') {
            rest = after;
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            steps.push(Step::Key(&rest[..end]));
            rest = &rest[end..];
        }
    }
    steps
}

/// Index of the `]` closing a bracket whose content starts at `s`, skipping a quoted key.
fn bracket_end(s: &str) -> Option<usize> {
    match s.chars().next() {
        Some(q @ ('"' | '\'')) => {
            let close_quote = s[1..].find(q)? + 1;
            s[close_quote..].find(']').map(|i| close_quote + i)
        }
        _ => s.find(']'),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    fn one(text: &str) -> Document {
        let mut docs = compose(text, &limits());
        assert_eq!(docs.len(), 1, "{text:?}");
        docs.remove(0).unwrap()
    }

    fn error(text: &str, limits: &Limits) -> YamlError {
        compose(text, limits)
            .into_iter()
            .find_map(Result::err)
            .unwrap_or_else(|| panic!("no error for {text:?}"))
    }

    fn scalar(doc: &Document, key: &str) -> (String, bool) {
        match doc.root().get(key).unwrap().value() {
            NodeValue::Scalar { text, plain } => (text.to_owned(), plain),
            _ => panic!("{key} is not a scalar"),
        }
    }

    #[test]
    fn scalars_keep_their_text_and_style() {
        let doc = one(concat!(
            "plain: no\n",
            "number: 0123\n",
            "single: 'yes'\n",
            "double: \"on\\t\"\n",
            "empty:\n",
            "tilde: ~\n",
            "literal: |\n  a == 'x'\n",
            "literal_strip: |-\n  a == 'x'\n",
            "folded: >\n  a\n  b\n",
            "folded_strip: >-\n  has(a) &&\n  has(b)\n",
            "forced: !!str 80\n",
            "int_tag: !!int 80\n",
        ));
        let cases = [
            ("plain", "no", true),
            ("number", "0123", true),
            ("single", "yes", false),
            ("double", "on\t", false),
            ("empty", "", true),
            ("tilde", "~", true),
            ("literal", "a == 'x'\n", false),
            ("literal_strip", "a == 'x'", false),
            ("folded", "a b\n", false),
            ("folded_strip", "has(a) && has(b)", false),
            ("forced", "80", false),
            ("int_tag", "80", true),
        ];
        for (key, text, plain) in cases {
            assert_eq!(scalar(&doc, key), (text.to_owned(), plain), "{key}");
        }
        assert!(doc.root().get("empty").unwrap().is_null());
        assert!(doc.root().get("tilde").unwrap().is_null());
        assert!(!doc.root().get("single").unwrap().is_null());
    }

    #[test]
    fn nodes_know_their_line_and_column() {
        let doc = one("a: 1\nb:\n  - x\n  - {c: d}\n");
        let b = doc.root().get("b").unwrap();
        let items: Vec<_> = b.items().unwrap().collect();
        assert_eq!((items[0].line(), items[0].column()), (3, 5));
        assert_eq!(items[1].line(), 4);
        assert_eq!(items[1].get("c").unwrap().as_scalar(), Some("d"));
        assert_eq!(doc.root().entry("a").unwrap().0.line(), 1);
    }

    #[test]
    fn multi_document_streams_give_one_document_each() {
        let docs = compose("a: 1\n---\nb: 2\n---\n---\n# nothing\n...\n", &limits());
        let roots: Vec<(usize, bool)> = docs
            .iter()
            .map(|d| {
                let root = d.as_ref().unwrap().root();
                (root.line(), root.is_null())
            })
            .collect();
        assert_eq!(roots.len(), 4);
        assert_eq!(roots[0], (1, false));
        assert_eq!(roots[1], (3, false));
        assert!(roots[2].1 && roots[3].1, "{roots:?}");
        assert!(compose("", &limits()).is_empty());
        assert!(compose("# only a comment\n", &limits()).is_empty());
    }

    #[test]
    fn aliases_repeat_their_anchor() {
        let doc = one("ports: &p [80, 443]\nmore: *p\nname: &n web\nagain: *n\n");
        let texts = |key: &str| -> Vec<String> {
            doc.root()
                .get(key)
                .unwrap()
                .items()
                .unwrap()
                .map(|n| n.as_scalar().unwrap().to_owned())
                .collect()
        };
        assert_eq!(texts("more"), ["80", "443"]);
        assert_eq!(texts("ports"), texts("more"));
        assert_eq!(doc.root().get("again").unwrap().as_scalar(), Some("web"));
        // Root, four keys, the sequence and its two items, and "web": aliases add no node.
        assert_eq!(doc.nodes.len(), 9);
    }

    #[test]
    fn merge_keys_fill_in_missing_keys_only() {
        let doc = one(concat!(
            "base: &base {a: 1, b: 2}\n",
            "other: &other {b: 3, c: 4}\n",
            "one: {<<: *base, a: 9}\n",
            "many:\n  <<: [*base, *other]\n  d: 5\n",
        ));
        let flat = |key: &str| -> Vec<(String, String)> {
            let mut v: Vec<_> = doc
                .root()
                .get(key)
                .unwrap()
                .entries()
                .unwrap()
                .map(|(k, v)| {
                    (
                        k.as_scalar().unwrap().to_owned(),
                        v.as_scalar().unwrap().to_owned(),
                    )
                })
                .collect();
            v.sort();
            v
        };
        let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(flat("one"), pairs(&[("a", "9"), ("b", "2")]));
        assert_eq!(
            flat("many"),
            pairs(&[("a", "1"), ("b", "2"), ("c", "4"), ("d", "5")])
        );
        let e = error("a: {<<: 5}\n", &limits());
        assert!(e.message.contains("merge key"), "{e}");
        // A quoted "<<" is an ordinary key.
        assert!(one("{'<<': 5}\n").root().get("<<").is_some());
    }

    #[test]
    fn alias_bomb_is_rejected_quickly() {
        let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for level in 1..=9 {
            let prev = format!("*a{}", level - 1);
            let row = [prev.as_str(); 10].join(", ");
            text.push_str(&format!("a{level}: &a{level} [{row}]\n"));
        }
        let started = std::time::Instant::now();
        let e = error(&text, &limits());
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
        assert!(e.message.contains("more than 2000000 nodes"), "{e}");
        assert!(e.line >= 7, "{e}");
        // Root 1, keys 2, [x, y] 3, and [*a, *a, *a] 1 + 3 * 3: sixteen nodes once expanded.
        let small = "a: &a [x, y]\nb: [*a, *a, *a]\n";
        let tight = Limits {
            max_yaml_nodes: 16,
            ..Limits::default()
        };
        assert!(compose(small, &tight)[0].is_ok());
        let tighter = Limits {
            max_yaml_nodes: 15,
            ..Limits::default()
        };
        assert!(compose(small, &tighter)[0].is_err());
    }

    #[test]
    fn deep_nesting_is_rejected_without_overflowing_the_stack() {
        let worker = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(|| {
                // Compact block sequences: ten thousand levels on one line.
                let block = "- ".repeat(10_000) + "x\n";
                let block_error = error(&block, &limits());
                let flow = "[".repeat(10_000) + &"]".repeat(10_000);
                let flow_error = error(&flow, &limits());
                (block_error, flow_error)
            })
            .unwrap();
        let (block_error, flow_error) = worker.join().unwrap();
        assert!(
            block_error.message.contains("deeper than 64"),
            "{block_error}"
        );
        assert_eq!((block_error.line, block_error.column), (1, 129));
        assert_eq!(flow_error.line, 1, "{flow_error}");
    }

    #[test]
    fn aliases_count_towards_depth() {
        let shallow = Limits {
            max_yaml_depth: 4,
            ..Limits::default()
        };
        assert!(compose("a: &x [[1]]\nb: [*x]\n", &shallow)[0].is_ok());
        let e = error("a: &x [[[1]]]\nb: [[*x]]\n", &shallow);
        assert!(e.message.contains("deeper than 4"), "{e}");
        assert_eq!(e.line, 2);
    }

    #[test]
    fn malformed_documents_are_errors_with_positions() {
        let cases: [(&str, usize, &str); 7] = [
            ("a: 1\nb: 2\na: 3\n", 3, "duplicate key \"a\""),
            ("spec:\n  x: 1\n  'x': 2\n", 3, "duplicate key"),
            ("? [a]\n: 1\n", 1, "keys must be scalars"),
            ("a: !custom 1\n", 1, "unsupported tag"),
            ("a: [1, 2\nb: 3\n", 2, "syntax error"),
            ("a: *missing\n", 1, "syntax error"),
            ("a:\n\tb: 1\n", 2, "syntax error"),
        ];
        for (text, line, message) in cases {
            let e = error(text, &limits());
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(message), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_broken_document_does_not_hide_the_next() {
        let docs = compose("a: 1\na: 2\n---\nb: 1\n---\nc: [\n", &limits());
        assert_eq!(docs.len(), 3);
        assert!(docs[0].is_err());
        assert_eq!(
            docs[1]
                .as_ref()
                .unwrap()
                .root()
                .get("b")
                .unwrap()
                .as_scalar(),
            Some("1")
        );
        assert_eq!(docs[2].as_ref().unwrap_err().line, 7);
    }

    #[test]
    fn large_mappings_still_catch_duplicates() {
        let mut text: String = (0..100).map(|i| format!("k{i}: {i}\n")).collect();
        assert!(compose(&text, &limits())[0].is_ok());
        text.push_str("k42: again\n");
        assert_eq!(error(&text, &limits()).line, 101);
    }

    #[test]
    fn field_lines_find_every_field() {
        let text = concat!(
            "apiVersion: projectcalico.org/v3\n", // 1
            "kind: GlobalNetworkPolicy\n",        // 2
            "metadata:\n",                        // 3
            "  name: web\n",                      // 4
            "  labels:\n",                        // 5
            "    projectcalico.org/tier: x\n",    // 6
            "spec:\n",                            // 7
            "  ingress:\n",                       // 8
            "    - action: Allow\n",              // 9
            "      source:\n",                    // 10
            "        nets:\n",                    // 11
            "          - 192.0.2.0/24\n",         // 12
            "          - 198.51.100.0/24\n",      // 13
            "    - action: Deny\n",               // 14
        );
        let doc = Arc::new(one(text));
        let lines = FieldLines::new(Arc::clone(&doc), doc.root().id());
        let cases = [
            ("", 1),
            ("kind", 2),
            ("metadata.name", 4),
            ("metadata.labels.projectcalico.org/tier", 6),
            ("metadata.labels[\"projectcalico.org/tier\"]", 6),
            ("spec.ingress", 8),
            ("spec.ingress[0]", 9),
            ("spec.ingress[0].source.nets[1]", 13),
            ("spec.ingress[1].action", 14),
            // Deepest existing prefix for paths that do not exist.
            ("spec.ingress[1].destination.ports[0]", 14),
            ("spec.ingress[7]", 8),
            ("spec.egress", 7),
            ("nonsense", 1),
        ];
        for (path, line) in cases {
            assert_eq!(lines.line(path), Some(line), "{path}");
        }
        assert_eq!(FieldLines::default().line("spec"), None);
    }

    proptest::proptest! {
        /// Whatever the text, composing gives documents or positioned errors, never a panic.
        #[test]
        fn arbitrary_text_never_panics(text in "[ \n\t:,\\-\\[\\]{}&*!|>'\"#?%@`a-c0-9~.<]{0,160}") {
            let lines = text.lines().count() + 1;
            for document in compose(&text, &limits()) {
                if let Err(e) = document {
                    proptest::prop_assert!(e.line >= 1 && e.line <= lines + 1, "{e}");
                }
            }
        }

        /// Indented block structure, the shape real files have.
        #[test]
        fn arbitrary_block_structure_never_panics(
            lines in proptest::collection::vec(("[ ]{0,6}", "(- )?", "[a-c&*!]{0,3}", "(: ?)?", "[a-c0-9&*'\"|>-]{0,4}"), 0..30)
        ) {
            let text: String = lines
                .iter()
                .map(|(indent, dash, key, colon, value)| format!("{indent}{dash}{key}{colon}{value}\n"))
                .collect();
            let _ = compose(&text, &limits());
        }
    }
}
