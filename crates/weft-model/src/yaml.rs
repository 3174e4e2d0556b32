//! Multi-document YAML (and JSON, tab-indented or not) into [`Node`] trees, from
//! `saphyr-parser`'s event stream. This is where the YAML facts users rely on are
//! enforced: duplicate keys are errors, empty documents are kept for counting but hold no
//! tree, anchors and aliases are expanded (with a cap against alias bombs), and
//! `[1.2.3.4, 001:db8::]` is two strings as in Go's YAML.

use crate::node::{Entry, Mark, Node, Seg, Value};
use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};
use std::collections::HashMap;

/// Deeper nesting than any resource needs; the cap keeps recursion (and drop) bounded.
const MAX_DEPTH: usize = 128;
/// Nodes one document may gain through aliases before it is refused.
const MAX_ALIAS_NODES: usize = 100_000;

/// One document of a stream.
#[derive(Debug)]
pub(crate) struct Document {
    /// 1-based position in the stream.
    pub index: usize,
    /// `None` for an empty document.
    pub root: Option<Node>,
    /// Problems found while building the tree (duplicate keys, unsupported tags, ...).
    pub errors: Vec<LoadIssue>,
}

/// A problem found while reading YAML.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LoadIssue {
    pub mark: Mark,
    pub path: Vec<Seg>,
    pub message: String,
}

/// A syntax error that ended the stream: documents after it were not read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SyntaxError {
    pub document: usize,
    pub mark: Mark,
    pub message: String,
}

/// Reads every document of `text`.
pub(crate) fn load(text: &str) -> (Vec<Document>, Option<SyntaxError>) {
    let mut parser = Parser::new_from_str(text);
    let mut builder = Builder::new(text);
    let mut docs = Vec::new();
    let mut index = 0;
    let mut in_document = false;
    while let Some(event) = parser.next_event() {
        let (event, span) = match event {
            Ok(ok) => ok,
            Err(e) => {
                let m = e.marker();
                let document = if in_document { index } else { index + 1 };
                let error = SyntaxError {
                    document: document.max(1),
                    mark: Mark {
                        line: m.line(),
                        column: m.col() + 1,
                    },
                    message: format!("invalid YAML: {}", e.info()),
                };
                return (docs, Some(error));
            }
        };
        match event {
            Event::DocumentStart(_) => {
                index += 1;
                in_document = true;
                builder.reset();
            }
            Event::DocumentEnd => {
                in_document = false;
                docs.push(Document {
                    index,
                    // A document holding nothing (or only `null`) is empty.
                    root: builder.root.take().filter(|n| !n.is_null()),
                    errors: std::mem::take(&mut builder.errors),
                });
            }
            other => builder.event(other, span),
        }
    }
    (docs, None)
}

enum Frame {
    Seq {
        mark: Mark,
        anchor: usize,
        flow: bool,
        items: Vec<Node>,
    },
    Map {
        mark: Mark,
        anchor: usize,
        /// A `key: value` pair written bare inside a flow sequence (`[a: b]`).
        implicit_pair: bool,
        entries: Vec<Entry>,
        /// The key waiting for its value, with the char index just after it.
        key: Option<(Node, usize)>,
        /// The pending key repeats an earlier one: its value is dropped.
        skip_value: bool,
        /// The char index just after the first key.
        first_key_end: Option<usize>,
    },
}

struct Builder<'s> {
    source: Source<'s>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    alias_nodes: usize,
    /// Collections open beyond [`MAX_DEPTH`], skipped rather than built.
    skip_depth: usize,
    root: Option<Node>,
    errors: Vec<LoadIssue>,
}

impl<'s> Builder<'s> {
    fn new(text: &'s str) -> Self {
        Builder {
            source: Source::new(text),
            stack: Vec::new(),
            anchors: HashMap::new(),
            alias_nodes: 0,
            skip_depth: 0,
            root: None,
            errors: Vec::new(),
        }
    }

    fn reset(&mut self) {
        self.stack.clear();
        self.anchors.clear();
        self.alias_nodes = 0;
        self.skip_depth = 0;
        self.root = None;
        self.errors.clear();
    }

    fn event(&mut self, event: Event<'_>, span: Span) {
        let mark = Mark {
            line: span.start.line(),
            column: span.start.col() + 1,
        };
        if self.skip_depth > 0 {
            match event {
                Event::SequenceStart(..) | Event::MappingStart(..) => self.skip_depth += 1,
                Event::SequenceEnd | Event::MappingEnd => {
                    self.skip_depth -= 1;
                    if self.skip_depth == 0 {
                        self.complete(Node::new(mark, Value::Null), 0, span.end.index());
                    }
                }
                _ => {}
            }
            return;
        }
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let node = self.scalar(text.into_owned(), style, tag.as_deref(), mark);
                self.complete(node, anchor, span.end.index());
            }
            Event::SequenceStart(anchor, tag) => {
                self.check_collection_tag(tag.as_deref(), mark);
                let flow = self.source.char_at(span.start.index()) == Some('[');
                self.open(Frame::Seq {
                    mark,
                    anchor,
                    flow,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(anchor, tag) => {
                self.check_collection_tag(tag.as_deref(), mark);
                let in_flow_seq = matches!(self.stack.last(), Some(Frame::Seq { flow: true, .. }));
                let implicit_pair =
                    in_flow_seq && self.source.char_at(span.start.index()) != Some('{');
                self.open(Frame::Map {
                    mark,
                    anchor,
                    implicit_pair,
                    entries: Vec::new(),
                    key: None,
                    skip_value: false,
                    first_key_end: None,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(frame) = self.stack.pop() {
                    let (node, anchor) = self.close(frame);
                    self.complete(node, anchor, span.end.index());
                }
            }
            Event::Alias(id) => {
                let node = match self.anchors.get(&id) {
                    Some(node) => {
                        self.alias_nodes += count_nodes(node);
                        if self.alias_nodes > MAX_ALIAS_NODES {
                            self.issue(mark, "aliases expand to too many nodes".into());
                            Node::new(mark, Value::Null)
                        } else {
                            node.clone()
                        }
                    }
                    None => {
                        self.issue(mark, "alias to an unknown anchor".into());
                        Node::new(mark, Value::Null)
                    }
                };
                self.complete(node, 0, span.end.index());
            }
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd
            | Event::Nothing => {}
        }
    }

    fn scalar(&mut self, text: String, style: ScalarStyle, tag: Option<&Tag>, mark: Mark) -> Node {
        let mut plain = style == ScalarStyle::Plain;
        if let Some(tag) = tag {
            if tag.is_yaml_core_schema() {
                if tag.suffix == "str" {
                    plain = false;
                }
            } else {
                self.issue(mark, format!("unsupported YAML tag {tag}"));
            }
        }
        if plain && is_null(&text) {
            return Node::new(mark, Value::Null);
        }
        Node::new(mark, Value::Scalar { text, plain })
    }

    fn check_collection_tag(&mut self, tag: Option<&Tag>, mark: Mark) {
        if let Some(tag) = tag {
            if !tag.is_yaml_core_schema() {
                self.issue(mark, format!("unsupported YAML tag {tag}"));
            }
        }
    }

    fn open(&mut self, frame: Frame) {
        if self.stack.len() >= MAX_DEPTH {
            let mark = match &frame {
                Frame::Seq { mark, .. } | Frame::Map { mark, .. } => *mark,
            };
            self.issue(mark, format!("nested deeper than {MAX_DEPTH} levels"));
            self.skip_depth = 1;
            return;
        }
        self.stack.push(frame);
    }

    fn close(&mut self, frame: Frame) -> (Node, usize) {
        match frame {
            Frame::Seq {
                mark,
                anchor,
                items,
                ..
            } => (Node::new(mark, Value::Seq(items)), anchor),
            Frame::Map {
                mark,
                anchor,
                implicit_pair,
                entries,
                first_key_end,
                ..
            } => {
                if implicit_pair {
                    if let Some(node) = self.colon_scalar(&entries, first_key_end) {
                        return (node, anchor);
                    }
                }
                (Node::new(mark, Value::Map(entries)), anchor)
            }
        }
    }

    /// Go's YAML reads `001:db8::` inside `[...]` as one scalar, while YAML 1.2 (and
    /// saphyr) sees the key `001:db8:` with an empty value. Undo that: a bare pair in a
    /// flow sequence whose `:` is directly followed by `,`, `]` or `}` and whose value is
    /// empty is the key's text plus the colon.
    fn colon_scalar(&self, entries: &[Entry], key_end: Option<usize>) -> Option<Node> {
        let [entry] = entries else { return None };
        let Value::Scalar { text, plain: true } = &entry.key.value else {
            return None;
        };
        if !entry.value.is_null() {
            return None;
        }
        let end = key_end?;
        if self.source.char_at(end) != Some(':') {
            return None;
        }
        if !matches!(self.source.char_at(end + 1), Some(',' | ']' | '}')) {
            return None;
        }
        Some(Node::new(
            entry.key.mark,
            Value::Scalar {
                text: format!("{text}:"),
                plain: true,
            },
        ))
    }

    /// Attaches a finished node to its parent (or makes it the document's root).
    fn complete(&mut self, node: Node, anchor: usize, end_index: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let path = self.path();
        let mut issue = None;
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                key,
                skip_value,
                first_key_end,
                ..
            }) => match key.take() {
                None => {
                    first_key_end.get_or_insert(end_index);
                    let text = match &node.value {
                        Value::Scalar { text, .. } => Some(text.clone()),
                        _ => None,
                    };
                    match text {
                        None => {
                            issue = Some((node.mark, "mapping keys must be strings".to_string()));
                            *skip_value = true;
                            *key = Some((node, end_index));
                        }
                        Some(text) => {
                            if let Some(first) = entries.iter().find(|e| e.key() == text) {
                                issue = Some((
                                    node.mark,
                                    format!(
                                        "duplicate key {text:?} (first at line {})",
                                        first.key.mark.line
                                    ),
                                ));
                                *skip_value = true;
                            } else {
                                *skip_value = false;
                            }
                            *key = Some((node, end_index));
                        }
                    }
                }
                Some((key_node, _)) => {
                    if !*skip_value {
                        entries.push(Entry {
                            key: key_node,
                            value: node,
                        });
                    }
                    *skip_value = false;
                }
            },
        }
        if let Some((mark, message)) = issue {
            let mut path = path;
            if let Some(Frame::Map {
                key: Some((k, _)), ..
            }) = self.stack.last()
            {
                if let Some(text) = k.as_str() {
                    path.push(Seg::Key(text.to_string()));
                }
            }
            self.errors.push(LoadIssue {
                mark,
                path,
                message,
            });
        }
    }

    /// The field path of the node being built.
    fn path(&self) -> Vec<Seg> {
        let mut path = Vec::new();
        for frame in &self.stack {
            match frame {
                Frame::Seq { items, .. } => path.push(Seg::Index(items.len())),
                Frame::Map {
                    key: Some((k, _)), ..
                } => path.push(Seg::Key(k.as_str().unwrap_or_default().to_string())),
                Frame::Map { key: None, .. } => {}
            }
        }
        path
    }

    fn issue(&mut self, mark: Mark, message: String) {
        let path = self.path();
        self.errors.push(LoadIssue {
            mark,
            path,
            message,
        });
    }
}

fn count_nodes(node: &Node) -> usize {
    1 + match &node.value {
        Value::Seq(items) => items.iter().map(count_nodes).sum(),
        Value::Map(entries) => entries.iter().map(|e| 1 + count_nodes(&e.value)).sum(),
        _ => 0,
    }
}

/// YAML 1.2 core schema nulls (what Go's YAML also reads as null).
fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// Character-indexed access to the source (saphyr's markers count characters).
struct Source<'s> {
    text: &'s str,
    ascii: bool,
    /// Byte offset of every character when the text is not ASCII; built on first use.
    offsets: std::cell::OnceCell<Vec<usize>>,
}

impl<'s> Source<'s> {
    fn new(text: &'s str) -> Self {
        Source {
            text,
            ascii: text.is_ascii(),
            offsets: std::cell::OnceCell::new(),
        }
    }

    fn char_at(&self, index: usize) -> Option<char> {
        if self.ascii {
            return self.text.as_bytes().get(index).map(|b| char::from(*b));
        }
        let offsets = self
            .offsets
            .get_or_init(|| self.text.char_indices().map(|(i, _)| i).collect());
        let at = *offsets.get(index)?;
        self.text[at..].chars().next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Node {
        let (docs, err) = load(text);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(docs.len(), 1, "{docs:?}");
        assert!(docs[0].errors.is_empty(), "{:?}", docs[0].errors);
        docs[0].root.clone().expect("a tree")
    }

    fn strings(node: &Node) -> Vec<String> {
        match &node.value {
            Value::Seq(items) => items
                .iter()
                .map(|n| n.as_str().expect("scalar").to_string())
                .collect(),
            other => panic!("not a list: {other:?}"),
        }
    }

    #[test]
    fn ipv6_in_a_flow_list_is_a_string() {
        let n = one("a: [1.2.3.4, 001:db8::]\n");
        assert_eq!(strings(n.get("a").expect("a")), ["1.2.3.4", "001:db8::"]);
        let n = one("a: [fe80::1:, 'x', 001:db8::/32]\n");
        assert_eq!(
            strings(n.get("a").expect("a")),
            ["fe80::1:", "x", "001:db8::/32"]
        );
        // A real pair in a flow list stays a pair.
        let n = one("a: [b: c]\n");
        let items = match &n.get("a").expect("a").value {
            Value::Seq(items) => items.clone(),
            other => panic!("{other:?}"),
        };
        assert!(items[0].entries().is_some());
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let (docs, _) = load("a: 1\nb:\n  c: 1\n  c: 2\n");
        assert_eq!(docs[0].errors.len(), 1);
        let issue = &docs[0].errors[0];
        assert_eq!(issue.mark.line, 4);
        assert_eq!(issue.path, vec![Seg::Key("b".into()), Seg::Key("c".into())]);
        assert!(
            issue.message.contains("duplicate key \"c\""),
            "{}",
            issue.message
        );
        // The first value is kept in the tree.
        let root = docs[0].root.as_ref().expect("root");
        let b = root.get("b").expect("b");
        assert_eq!(b.get("c").and_then(Node::as_str), Some("1"));
    }

    #[test]
    fn documents_are_counted_and_empty_ones_have_no_tree() {
        let (docs, err) = load("a: 1\n---\n---\n# only a comment\n---\nb: 2\n---\n");
        assert!(err.is_none());
        let roots: Vec<bool> = docs.iter().map(|d| d.root.is_some()).collect();
        assert_eq!(roots, [true, false, false, true, false]);
        assert_eq!(docs[3].index, 4);
    }

    #[test]
    fn tab_indented_json_loads() {
        let n = one("{\n\t\"a\": {\n\t\t\"b\": [\n\t\t\t1,\n\t\t\t\"x\"\n\t\t]\n\t}\n}\n");
        let b = n.get("a").and_then(|a| a.get("b")).expect("b");
        assert_eq!(strings(b), ["1", "x"]);
        assert_eq!(b.mark.line, 3);
    }

    #[test]
    fn syntax_errors_name_document_and_line() {
        let (docs, err) = load("a: 1\n---\nb:\n  c: d\n e: f\n");
        assert_eq!(docs.len(), 1);
        let err = err.expect("an error");
        assert_eq!(err.document, 2);
        assert_eq!(err.mark.line, 5);
    }

    #[test]
    fn aliases_expand_and_bombs_are_refused() {
        let n = one("x: &a {y: 1}\nz: *a\n");
        assert_eq!(n.get("z"), n.get("x"));
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..8 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("b{}", i - 1)
            };
            bomb.push_str(&format!(
                "b{i}: &b{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        let (docs, _) = load(&bomb);
        assert!(docs[0]
            .errors
            .iter()
            .any(|e| e.message.contains("too many")));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let text = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        let (docs, err) = load(&text);
        assert!(err.is_some() || docs.iter().any(|d| !d.errors.is_empty()));
    }

    #[test]
    fn quoted_and_tagged_scalars_are_not_plain() {
        let n = one("a: \"80\"\nb: !!str 80\nc: 80\nd: null\ne: ''\n");
        let plain = |k: &str| match &n.get(k).expect(k).value {
            Value::Scalar { plain, .. } => Some(*plain),
            _ => None,
        };
        assert_eq!(plain("a"), Some(false));
        assert_eq!(plain("b"), Some(false));
        assert_eq!(plain("c"), Some(true));
        assert!(n.get("d").expect("d").is_null());
        assert_eq!(plain("e"), Some(false));
    }
}
