//! [`DeError`], a type error located at its node, and the "did you mean" hints for
//! unknown fields and values.

use crate::node::{Mark, Seg};
use serde::de;
use std::fmt;

/// A deserialization failure, located at the node it concerns.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeError {
    pub message: String,
    pub mark: Option<Mark>,
    pub path: Option<Vec<Seg>>,
    /// A field below the located node (a missing field names itself this way).
    pub child: Option<String>,
}

impl DeError {
    /// An error not yet located.
    pub fn new(message: impl Into<String>) -> Self {
        DeError {
            message: message.into(),
            mark: None,
            path: None,
            child: None,
        }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::new(msg.to_string())
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::new(format!("expected {exp}, found {unexp}"))
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::new(format!("expected {exp}, found {unexp}"))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError::new(format!(
            "unknown field {field:?}{}",
            hint(field, expected, "fields")
        ))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError::new(format!(
            "unknown value {variant:?}{}",
            hint(variant, expected, "values")
        ))
    }

    fn missing_field(field: &'static str) -> Self {
        DeError {
            message: "required field is missing".into(),
            mark: None,
            path: None,
            child: Some(field.to_string()),
        }
    }
}

/// ", did you mean `x`?" when one expected name is close, else the list of names.
pub(crate) fn hint(given: &str, expected: &[&str], what: &str) -> String {
    if let Some(best) = did_you_mean(given, expected) {
        return format!("; did you mean {best:?}?");
    }
    if expected.is_empty() {
        return format!("; no {what} are allowed here");
    }
    format!("; expected one of: {}", expected.join(", "))
}

/// The expected name closest to `given`, if it is close enough to be a typo.
pub(crate) fn did_you_mean<'a>(given: &str, expected: &[&'a str]) -> Option<&'a str> {
    // Long input is no typo of a short name; skip the quadratic comparison.
    if given.len() > 64 {
        return None;
    }
    let lower = given.to_ascii_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for &cand in expected {
        let d = if cand.to_ascii_lowercase() == lower {
            0
        } else {
            edit_distance(&lower, &cand.to_ascii_lowercase())
        };
        let limit = (cand.len() / 3).clamp(1, 3);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, cand));
        }
    }
    best.map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typo_hints() {
        assert_eq!(did_you_mean("subest", &["subset", "host"]), Some("subset"));
        assert_eq!(did_you_mean("Hosts", &["hosts"]), Some("hosts"));
        assert_eq!(did_you_mean("zzzzzz", &["subset", "host"]), None);
    }
}
