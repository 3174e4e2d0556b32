//! The position-keeping document tree every resource is read from: scalars keep their
//! text as written (and whether they were quoted), mappings keep their entries in order,
//! and every node knows its line and column. Field paths ([`Seg`]) are rendered and
//! resolved back to a node's position here.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// A position in the source, 1-based; 0 when unknown (a tree built from stored JSON).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Mark {
    pub line: usize,
    pub column: usize,
}

/// One node of a document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub mark: Mark,
    pub value: Value,
}

/// What a node holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// `null`, `~` or nothing at all.
    Null,
    /// Text as written; `plain` is false when it was quoted (or tagged `!!str`).
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// A mapping entry; the loader guarantees the key is a scalar and unique.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub key: Node,
    pub value: Node,
}

impl Entry {
    /// The key's text.
    pub fn key(&self) -> &str {
        self.key.as_str().unwrap_or_default()
    }
}

impl Node {
    pub fn new(mark: Mark, value: Value) -> Self {
        Node { mark, value }
    }

    /// The text of a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The entries of a mapping.
    pub fn entries(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The value under `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries()?
            .iter()
            .find(|e| e.key() == key)
            .map(|e| &e.value)
    }

    /// Removes `key` from a mapping, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Node> {
        match &mut self.value {
            Value::Map(entries) => {
                let at = entries.iter().position(|e| e.key() == key)?;
                Some(entries.remove(at).value)
            }
            _ => None,
        }
    }

    /// Whether this is `null` (or empty).
    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// A short description for "found ..." in messages.
    pub fn describe(&self) -> String {
        match &self.value {
            Value::Null => "null".to_string(),
            Value::Scalar { text, .. } => {
                let mut shown: String = text.chars().take(60).collect();
                if shown.len() < text.len() {
                    shown.push('…');
                }
                format!("{shown:?}")
            }
            Value::Seq(_) => "a list".to_string(),
            Value::Map(_) => "a mapping".to_string(),
        }
    }

    /// The position of the deepest node on `path` (the path's own node when it exists).
    pub fn locate(&self, path: &[Seg]) -> Mark {
        let mut node = self;
        for seg in path {
            let next = match (seg, &node.value) {
                (Seg::Key(k), Value::Map(entries)) => {
                    entries.iter().find(|e| e.key() == k).map(|e| &e.value)
                }
                (Seg::Index(i), Value::Seq(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node.mark
    }
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// Renders a path the way users read it: `spec.http[0].route[1].weight`, with keys that
/// are not plain words quoted: `metadata.labels["app.kubernetes.io/name"]`.
pub(crate) fn render_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
            Seg::Key(k) => {
                let plain = !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !plain {
                    out.push_str(&format!("[{k:?}]"));
                } else {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
            }
        }
    }
    out
}

/// Builds a tree from any serde format (the control plane's stored JSON); positions are
/// unknown there.
impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

fn scalar(text: String, plain: bool) -> Node {
    Node::new(Mark::default(), Value::Scalar { text, plain })
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(scalar(v.to_string(), true))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(scalar(v.to_string(), true))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(scalar(v.to_string(), true))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(scalar(v.to_string(), true))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(scalar(v.to_string(), false))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(scalar(v, false))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::new(Mark::default(), Value::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        self.visit_unit()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Node::new(Mark::default(), Value::Seq(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries: Vec<Entry> = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let Some(text) = key.as_str() else {
                return Err(de::Error::custom("mapping keys must be strings"));
            };
            if entries.iter().any(|e| e.key() == text) {
                return Err(de::Error::custom(format!("duplicate key {text:?}")));
            }
            let value = map.next_value::<Node>()?;
            entries.push(Entry { key, value });
        }
        Ok(Node::new(Mark::default(), Value::Map(entries)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_like_users_write_them() {
        let p = vec![
            Seg::Key("spec".into()),
            Seg::Key("http".into()),
            Seg::Index(0),
            Seg::Key("route".into()),
            Seg::Index(1),
            Seg::Key("weight".into()),
        ];
        assert_eq!(render_path(&p), "spec.http[0].route[1].weight");
        let p = vec![
            Seg::Key("metadata".into()),
            Seg::Key("labels".into()),
            Seg::Key("app.kubernetes.io/name".into()),
        ];
        assert_eq!(
            render_path(&p),
            "metadata.labels[\"app.kubernetes.io/name\"]"
        );
    }

    #[test]
    fn json_builds_a_tree_and_rejects_duplicates() {
        let n: Node = serde_json::from_str(r#"{"a": [1, "x", true, null]}"#).expect("parses");
        let items = match &n.get("a").expect("a").value {
            Value::Seq(items) => items.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(items.len(), 4);
        assert!(items[3].is_null());
        assert!(serde_json::from_str::<Node>(r#"{"a": 1, "a": 2}"#).is_err());
    }
}
