//! Request-scoped dynamic metadata and Envoy's `MetadataMatcher` over it.
//!
//! A filter that learns something about a request records it under its own name as a
//! JSON object (Envoy keeps a `google.protobuf.Struct` per filter name; JSON has the
//! same shape): the JWT filter records the verified payload. Filters after it read it
//! back by filter name and a path of keys, as RBAC's `metadata` principals and
//! permissions do.

use crate::http::matcher::StringMatch;
use serde_json::{Map, Value};

/// What the filters of one request recorded, by filter name.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DynamicMetadata(Map<String, Value>);

impl DynamicMetadata {
    /// Sets `key` to `value` in the namespace of `filter`.
    pub fn set(&mut self, filter: &str, key: &str, value: Value) {
        let namespace = self
            .0
            .entry(filter)
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(fields) = namespace {
            fields.insert(key.to_string(), value);
        }
    }

    /// The value at `path` in the namespace of `filter`, if every key on the way exists.
    pub fn get(&self, filter: &str, path: &[String]) -> Option<&Value> {
        let mut value = self.0.get(filter)?;
        for key in path {
            value = value.as_object()?.get(key)?;
        }
        Some(value)
    }

    /// Whether no filter recorded anything.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Envoy's `DoubleMatcher`.
#[derive(Debug, Clone, PartialEq)]
pub enum DoubleMatch {
    /// Equal.
    Exact(f64),
    /// In `[start, end)`.
    Range(f64, f64),
}

/// Envoy's `ValueMatcher`: a test of one metadata value, which may be absent.
#[derive(Debug, Clone)]
pub enum ValueMatch {
    /// `null_match`: the value is null.
    Null,
    /// `double_match`: a number that matches.
    Double(DoubleMatch),
    /// `string_match`: a string that matches.
    String(StringMatch),
    /// `bool_match`: this boolean.
    Bool(bool),
    /// `present_match`: `true` matches any value that exists; `false` matches nothing,
    /// as in Envoy.
    Present(bool),
    /// `list_match.one_of`: a list with an element that matches.
    ListOneOf(Box<ValueMatch>),
    /// `or_match`: one of the matchers matches.
    Or(Vec<ValueMatch>),
}

impl ValueMatch {
    /// Whether `value` (`None`: absent) matches.
    pub fn matches(&self, value: Option<&Value>) -> bool {
        match (self, value) {
            (ValueMatch::Present(present), v) => *present && v.is_some(),
            (ValueMatch::Or(any), v) => any.iter().any(|m| m.matches(v)),
            (_, None) => false,
            (ValueMatch::Null, Some(v)) => v.is_null(),
            (ValueMatch::Double(d), Some(v)) => v.as_f64().is_some_and(|n| match d {
                DoubleMatch::Exact(x) => n == *x,
                DoubleMatch::Range(start, end) => n >= *start && n < *end,
            }),
            (ValueMatch::String(s), Some(v)) => v.as_str().is_some_and(|v| s.matches(v)),
            (ValueMatch::Bool(b), Some(v)) => v.as_bool() == Some(*b),
            (ValueMatch::ListOneOf(m), Some(v)) => v
                .as_array()
                .is_some_and(|items| items.iter().any(|item| m.matches(Some(item)))),
        }
    }
}

/// Envoy's `MetadataMatcher`: the value at a path of keys in one filter's namespace.
#[derive(Debug, Clone)]
pub struct MetadataMatcher {
    /// The filter name, e.g. `istio_authn`.
    pub filter: String,
    /// Keys from the namespace down to the value; at least one.
    pub path: Vec<String>,
    /// The test of the value found (or of its absence).
    pub value: ValueMatch,
    /// `invert`: the result is negated, so an absent value matches an inverted string
    /// matcher, as in Envoy.
    pub invert: bool,
}

impl MetadataMatcher {
    /// Whether the request's metadata matches.
    pub fn matches(&self, metadata: &DynamicMetadata) -> bool {
        self.value.matches(metadata.get(&self.filter, &self.path)) != self.invert
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn metadata() -> DynamicMetadata {
        let mut m = DynamicMetadata::default();
        m.set("istio_authn", "request.auth.principal", json!("iss/sub"));
        m.set(
            "istio_authn",
            "request.auth.claims",
            json!({"groups": ["dev", "ops"], "email": "a@b", "n": 3, "ok": true, "none": null}),
        );
        m
    }

    fn matcher(path: &[&str], value: ValueMatch, invert: bool) -> MetadataMatcher {
        MetadataMatcher {
            filter: "istio_authn".into(),
            path: path.iter().map(|s| s.to_string()).collect(),
            value,
            invert,
        }
    }

    fn exact(s: &str) -> ValueMatch {
        ValueMatch::String(StringMatch::Exact(s.into(), false))
    }

    #[test]
    fn paths_and_values() {
        let m = metadata();
        assert!(matcher(&["request.auth.principal"], exact("iss/sub"), false).matches(&m));
        assert!(!matcher(&["request.auth.principal"], exact("iss/x"), false).matches(&m));
        let claims = |k: &str| vec!["request.auth.claims".to_string(), k.to_string()];
        assert_eq!(m.get("istio_authn", &claims("email")), Some(&json!("a@b")));
        assert_eq!(m.get("istio_authn", &claims("missing")), None);
        assert_eq!(m.get("other", &claims("email")), None);
        let groups = ValueMatch::ListOneOf(Box::new(exact("ops")));
        assert!(matcher(&["request.auth.claims", "groups"], groups.clone(), false).matches(&m));
        // A list matcher does not match a string; Istio pairs it with a string matcher.
        assert!(!matcher(&["request.auth.claims", "email"], groups, false).matches(&m));
        let either = ValueMatch::Or(vec![
            ValueMatch::ListOneOf(Box::new(exact("a@b"))),
            exact("a@b"),
        ]);
        assert!(matcher(&["request.auth.claims", "email"], either, false).matches(&m));
        let n = |d| matcher(&["request.auth.claims", "n"], ValueMatch::Double(d), false);
        assert!(n(DoubleMatch::Exact(3.0)).matches(&m));
        assert!(n(DoubleMatch::Range(0.0, 4.0)).matches(&m));
        assert!(!n(DoubleMatch::Range(0.0, 3.0)).matches(&m));
        assert!(matcher(
            &["request.auth.claims", "ok"],
            ValueMatch::Bool(true),
            false
        )
        .matches(&m));
        assert!(matcher(&["request.auth.claims", "none"], ValueMatch::Null, false).matches(&m));
        assert!(!matcher(&["request.auth.claims", "ok"], ValueMatch::Null, false).matches(&m));
    }

    #[test]
    fn presence_and_invert() {
        let m = metadata();
        let present = |path: &[&str], p| matcher(path, ValueMatch::Present(p), false);
        assert!(present(&["request.auth.principal"], true).matches(&m));
        assert!(!present(&["request.auth.nothing"], true).matches(&m));
        assert!(!present(&["request.auth.principal"], false).matches(&m));
        // An absent value fails every matcher, so an inverted one matches it.
        let absent = matcher(&["request.auth.principal"], exact("iss/sub"), true);
        assert!(!absent.matches(&m));
        assert!(absent.matches(&DynamicMetadata::default()));
        assert!(DynamicMetadata::default().is_empty());
    }
}
