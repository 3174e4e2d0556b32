//! A serde `Deserializer` over [`Node`] trees. It tracks the field path as it goes, so
//! every type error names the node's line and the path (`spec.http[0].route[1].weight`),
//! and it reads scalars the way Istio users write them: a string field takes any scalar
//! as written (`version: 1.10` is `"1.10"`), a number field takes a quoted number
//! (protobuf's JSON mapping does), booleans must be plain `true`/`false`, and null reads
//! as absent.

use crate::node::{Entry, Node, Seg, Value};
use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};

mod enums;
mod error;

pub(crate) use error::{did_you_mean, hint, DeError};

use enums::{MapEnum, UnitEnum};

/// The path to the node being read, as a list linked through the stack.
#[derive(Clone, Copy)]
pub(crate) struct PathLink<'a> {
    pub(super) parent: Option<&'a PathLink<'a>>,
    pub(super) seg: SegRef<'a>,
}

/// One step of a [`PathLink`].
#[derive(Clone, Copy)]
pub(super) enum SegRef<'a> {
    Key(&'a str),
    Index(usize),
}

impl<'a> PathLink<'a> {
    fn to_vec(self) -> Vec<Seg> {
        let mut segs = Vec::new();
        let mut cur = Some(&self);
        while let Some(link) = cur {
            segs.push(match link.seg {
                SegRef::Key(k) => Seg::Key(k.to_string()),
                SegRef::Index(i) => Seg::Index(i),
            });
            cur = link.parent;
        }
        segs.reverse();
        segs
    }
}

/// Deserializes `node` (found at `root`, e.g. `spec`) into `T`.
pub(crate) fn from_node<T: DeserializeOwned>(node: &Node, root: &str) -> Result<T, DeError> {
    let path = PathLink {
        parent: None,
        seg: SegRef::Key(root),
    };
    T::deserialize(NodeDe { node, path: &path })
}

/// Deserializes one node.
pub(super) struct NodeDe<'n, 'p> {
    pub(super) node: &'n Node,
    pub(super) path: &'p PathLink<'p>,
}

impl NodeDe<'_, '_> {
    /// Gives an error that has no position yet this node's position and path.
    fn locate(&self, mut e: DeError) -> DeError {
        if e.path.is_none() {
            let mut path = self.path.to_vec();
            if let Some(child) = e.child.take() {
                path.push(Seg::Key(child));
            }
            e.path = Some(path);
            e.mark = Some(self.node.mark);
        }
        e
    }

    fn fail(&self, expected: &str) -> DeError {
        self.locate(DeError::new(format!(
            "expected {expected}, found {}",
            self.node.describe()
        )))
    }

    fn scalar(&self, expected: &str) -> Result<(&str, bool), DeError> {
        match &self.node.value {
            Value::Scalar { text, plain } => Ok((text, *plain)),
            _ => Err(self.fail(expected)),
        }
    }

    fn integer(&self, min: i128, max: i128) -> Result<i128, DeError> {
        let expected = if min == 0 {
            format!("an integer from 0 to {max}")
        } else {
            format!("an integer from {min} to {max}")
        };
        let (text, _) = self.scalar(&expected)?;
        match parse_integer(text) {
            Some(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(self.fail(&expected)),
        }
    }

    fn float(&self) -> Result<f64, DeError> {
        let (text, _) = self.scalar("a number")?;
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() && !text.starts_with('+') => Ok(v),
            _ => Err(self.fail("a number")),
        }
    }
}

fn parse_integer(text: &str) -> Option<i128> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || digits.len() > 30 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<i128>().ok()
}

fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

macro_rules! integer_method {
    ($method:ident, $visit:ident, $ty:ty) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let v = self.integer(i128::from(<$ty>::MIN), i128::from(<$ty>::MAX))?;
            // In range by the check above.
            let v = <$ty>::try_from(v).map_err(|_| self.fail("an integer"))?;
            visitor.$visit(v).map_err(|e| self.locate(e))
        }
    };
}

impl<'de> de::Deserializer<'de> for NodeDe<'_, '_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Scalar { text, plain: true } => {
                if let Some(b) = parse_bool(text) {
                    visitor.visit_bool(b)
                } else if let Some(i) = parse_integer(text).and_then(|i| i64::try_from(i).ok()) {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_str(text)
                }
            }
            Value::Scalar { text, plain: false } => visitor.visit_str(text),
            Value::Seq(items) => visitor.visit_seq(SeqDe::new(items, self.path)),
            Value::Map(entries) => visitor.visit_map(MapDe::new(entries, self.path)),
        };
        result.map_err(|e| self.locate(e))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Scalar { text, plain: true } => match parse_bool(text) {
                Some(b) => visitor.visit_bool(b).map_err(|e| self.locate(e)),
                None => Err(self.fail("true or false")),
            },
            Value::Scalar { text, plain: false } if parse_bool(text).is_some() => {
                Err(self.fail("true or false (unquoted)"))
            }
            _ => Err(self.fail("true or false")),
        }
    }

    integer_method!(deserialize_i8, visit_i8, i8);
    integer_method!(deserialize_i16, visit_i16, i16);
    integer_method!(deserialize_i32, visit_i32, i32);
    integer_method!(deserialize_i64, visit_i64, i64);
    integer_method!(deserialize_u8, visit_u8, u8);
    integer_method!(deserialize_u16, visit_u16, u16);
    integer_method!(deserialize_u32, visit_u32, u32);
    integer_method!(deserialize_u64, visit_u64, u64);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let v = self.float()?;
        visitor.visit_f64(v).map_err(|e| self.locate(e))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let (text, _) = self.scalar("a string")?;
        visitor.visit_str(text).map_err(|e| self.locate(e))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // Null reads as absent, as Kubernetes and protobuf's JSON mapping read it.
        let result = if self.node.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(NodeDe {
                node: self.node,
                path: self.path,
            })
        };
        result.map_err(|e| self.locate(e))
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            visitor.visit_unit().map_err(|e| self.locate(e))
        } else {
            Err(self.fail("null"))
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let node = self.node;
        let path = self.path;
        visitor
            .visit_newtype_struct(NodeDe { node, path })
            .map_err(|e| self.locate(e))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.value {
            Value::Seq(items) => visitor.visit_seq(SeqDe::new(items, self.path)),
            Value::Null => visitor.visit_seq(SeqDe::new(&[], self.path)),
            _ => return Err(self.fail("a list")),
        };
        result.map_err(|e| self.locate(e))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.value {
            Value::Map(entries) => visitor.visit_map(MapDe::new(entries, self.path)),
            Value::Null => visitor.visit_map(MapDe::new(&[], self.path)),
            _ => return Err(self.fail("a mapping")),
        };
        result.map_err(|e| self.locate(e))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Scalar { text, .. } => visitor
                .visit_enum(UnitEnum { text })
                .map_err(|e| self.locate(e)),
            // A oneof written as a one-entry mapping (`uri: {prefix: /api}`).
            Value::Map(entries) => match entries.as_slice() {
                [entry] => visitor
                    .visit_enum(MapEnum {
                        entry,
                        path: self.path,
                    })
                    .map_err(|e| self.locate(e)),
                [] => Err(self.fail(&format!("exactly one of: {}", variants.join(", ")))),
                [a, b, ..] => Err(self.locate(DeError::new(format!(
                    "only one of {} may be set, found {:?} and {:?}",
                    variants.join(", "),
                    a.key(),
                    b.key()
                )))),
            },
            _ => Err(self.fail(&format!("one of {}", variants.join(", ")))),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let (text, _) = self.scalar("a field name")?;
        visitor.visit_str(text).map_err(|e| self.locate(e))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit().map_err(|e| self.locate(e))
    }
}

struct SeqDe<'n, 'p> {
    items: std::slice::Iter<'n, Node>,
    index: usize,
    path: &'p PathLink<'p>,
}

impl<'n, 'p> SeqDe<'n, 'p> {
    fn new(items: &'n [Node], path: &'p PathLink<'p>) -> Self {
        SeqDe {
            items: items.iter(),
            index: 0,
            path,
        }
    }
}

impl<'de> SeqAccess<'de> for SeqDe<'_, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(node) = self.items.next() else {
            return Ok(None);
        };
        let link = PathLink {
            parent: Some(self.path),
            seg: SegRef::Index(self.index),
        };
        self.index += 1;
        seed.deserialize(NodeDe { node, path: &link }).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'n, 'p> {
    entries: std::slice::Iter<'n, Entry>,
    current: Option<&'n Entry>,
    path: &'p PathLink<'p>,
}

impl<'n, 'p> MapDe<'n, 'p> {
    fn new(entries: &'n [Entry], path: &'p PathLink<'p>) -> Self {
        MapDe {
            entries: entries.iter(),
            current: None,
            path,
        }
    }
}

impl<'de> MapAccess<'de> for MapDe<'_, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.current = Some(entry);
        let link = PathLink {
            parent: Some(self.path),
            seg: SegRef::Key(entry.key()),
        };
        seed.deserialize(NodeDe {
            node: &entry.key,
            path: &link,
        })
        .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some(entry) = self.current.take() else {
            return Err(DeError::new("a value without a key"));
        };
        let link = PathLink {
            parent: Some(self.path),
            seg: SegRef::Key(entry.key()),
        };
        seed.deserialize(NodeDe {
            node: &entry.value,
            path: &link,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Sample {
        name: String,
        #[serde(default)]
        weight: Option<i32>,
        #[serde(default)]
        enabled: Option<bool>,
        #[serde(default)]
        ports: BTreeMap<u32, String>,
        #[serde(default)]
        values: Vec<String>,
        #[serde(default)]
        mode: Option<Mode>,
        #[serde(default)]
        value: Option<f64>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
    enum Mode {
        Strict,
        Permissive,
    }

    fn read(text: &str) -> Result<Sample, DeError> {
        let (docs, err) = yaml::load(text);
        assert!(err.is_none(), "{err:?}");
        let root = docs[0].root.clone().expect("root");
        from_node(&root, "spec")
    }

    fn fails(text: &str) -> (String, usize, String) {
        let e = read(text).expect_err("should fail");
        let path = crate::node::render_path(&e.path.clone().expect("path"));
        (path, e.mark.expect("mark").line, e.message)
    }

    #[test]
    fn scalars_read_as_users_write_them() {
        let s = read(
            "name: 1.10\nweight: \"80\"\nports: {8080: a, \"9090\": b}\nvalues: [1, true, x]\nmode: STRICT\nvalue: 0.5\n",
        )
        .expect("reads");
        assert_eq!(s.name, "1.10");
        assert_eq!(s.weight, Some(80));
        assert_eq!(s.ports.keys().copied().collect::<Vec<_>>(), [8080, 9090]);
        assert_eq!(s.values, ["1", "true", "x"]);
        assert_eq!(s.mode, Some(Mode::Strict));
        assert_eq!(s.value, Some(0.5));
        let s = read("name: x\nweight: null\n").expect("reads");
        assert_eq!(s.weight, None);
    }

    #[test]
    fn errors_carry_line_and_path() {
        let (path, line, msg) = fails("name: x\nweight: abc\n");
        assert_eq!((path.as_str(), line), ("spec.weight", 2));
        assert!(msg.contains("expected an integer"), "{msg}");
        let (path, line, msg) = fails("name: x\nvalues:\n  - a\n  - [b]\n");
        assert_eq!((path.as_str(), line), ("spec.values[1]", 4));
        assert!(msg.contains("expected a string, found a list"), "{msg}");
        let (path, line, msg) = fails("name: x\nwieght: 1\n");
        assert_eq!((path.as_str(), line), ("spec.wieght", 2));
        assert!(msg.contains("did you mean \"weight\""), "{msg}");
        let (path, line, msg) = fails("weight: 1\n");
        assert_eq!((path.as_str(), line), ("spec.name", 1));
        assert!(msg.contains("required"), "{msg}");
        let (path, _, msg) = fails("name: x\nmode: STRICTT\n");
        assert_eq!(path, "spec.mode");
        assert!(msg.contains("did you mean \"STRICT\""), "{msg}");
        let (_, _, msg) = fails("name: x\nenabled: \"true\"\n");
        assert!(msg.contains("unquoted"), "{msg}");
        let (_, _, msg) = fails("name: x\nweight: 3000000000\n");
        assert!(msg.contains("from -2147483648 to 2147483647"), "{msg}");
        let (path, _, _) = fails("name: x\nports: {x: a}\n");
        assert_eq!(path, "spec.ports.x");
    }
}
