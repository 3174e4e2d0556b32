//! The validation walk: a [`Validator`] follows the field path while each kind checks
//! its rules, and records errors and warnings against that path (the caller later turns
//! paths into lines).

use crate::diagnostic::Severity;
use crate::node::Seg;

/// Types that check themselves with Istio's rules.
pub(crate) trait Validate {
    /// Records every problem in `v`, at `v`'s current path.
    fn validate(&self, v: &mut Validator<'_>);
}

impl<T: Validate> Validate for Option<T> {
    fn validate(&self, v: &mut Validator<'_>) {
        if let Some(t) = self {
            t.validate(v);
        }
    }
}

/// A problem found by validation, at a field path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Issue {
    pub severity: Severity,
    pub path: Vec<Seg>,
    pub message: String,
}

/// Walks a resource, keeping the current field path and the problems found.
pub(crate) struct Validator<'a> {
    /// The namespace the resource lives in (some rules depend on it).
    pub namespace: &'a str,
    /// The resource's name (some kinds restrict it further).
    pub name: &'a str,
    path: Vec<Seg>,
    issues: Vec<Issue>,
}

impl<'a> Validator<'a> {
    /// A walk starting at `root` (e.g. `spec`) of the resource `namespace`/`name`.
    pub fn new(namespace: &'a str, name: &'a str, root: Vec<Seg>) -> Self {
        Validator {
            namespace,
            name,
            path: root,
            issues: Vec::new(),
        }
    }

    /// Runs `f` at field `key` below the current path.
    pub fn at<R>(&mut self, key: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        self.path.push(Seg::Key(key.to_string()));
        let r = f(self);
        self.path.pop();
        r
    }

    /// Runs `f` at list element `index` below the current path.
    pub fn index<R>(&mut self, index: usize, f: impl FnOnce(&mut Self) -> R) -> R {
        self.path.push(Seg::Index(index));
        let r = f(self);
        self.path.pop();
        r
    }

    /// Runs `f` on each element of the list at `key`.
    pub fn each<'t, T>(&mut self, key: &str, items: &'t [T], mut f: impl FnMut(&mut Self, &'t T)) {
        self.at(key, |v| {
            for (i, item) in items.iter().enumerate() {
                v.index(i, |v| f(v, item));
            }
        });
    }

    /// Validates `item` at field `key`.
    pub fn field(&mut self, key: &str, item: &impl Validate) {
        self.at(key, |v| item.validate(v));
    }

    /// Validates each element of the list at `key`.
    pub fn list<T: Validate>(&mut self, key: &str, items: &[T]) {
        self.each(key, items, |v, item| item.validate(v));
    }

    /// Records an error at the current path.
    pub fn error(&mut self, message: impl Into<String>) {
        self.push(Severity::Error, message.into());
    }

    /// Records a warning at the current path.
    pub fn warn(&mut self, message: impl Into<String>) {
        self.push(Severity::Warning, message.into());
    }

    /// Records an error at field `key`.
    pub fn error_at(&mut self, key: &str, message: impl Into<String>) {
        let message = message.into();
        self.at(key, |v| v.error(message));
    }

    /// Records a warning at field `key`.
    pub fn warn_at(&mut self, key: &str, message: impl Into<String>) {
        let message = message.into();
        self.at(key, |v| v.warn(message));
    }

    /// Records `result`'s error, if any, at the current path.
    pub fn check(&mut self, result: Result<(), String>) {
        if let Err(e) = result {
            self.error(e);
        }
    }

    /// Records `result`'s error, if any, at field `key`.
    pub fn check_at(&mut self, key: &str, result: Result<(), String>) {
        if let Err(e) = result {
            self.error_at(key, e);
        }
    }

    /// Records an error that `key` must be set.
    pub fn required(&mut self, key: &str) {
        self.error_at(key, "required field is missing");
    }

    /// Whether any error (not warning) was recorded.
    #[cfg(test)]
    pub fn has_errors(&self) -> bool {
        self.issues.iter().any(|i| i.severity == Severity::Error)
    }

    /// The problems found.
    pub fn into_issues(self) -> Vec<Issue> {
        self.issues
    }

    fn push(&mut self, severity: Severity, message: String) {
        self.issues.push(Issue {
            severity,
            path: self.path.clone(),
            message,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::render_path;

    #[test]
    fn issues_carry_the_path() {
        let mut v = Validator::new("default", "x", vec![Seg::Key("spec".into())]);
        v.each("hosts", &["a", "b"], |v, h| {
            if *h == "b" {
                v.error("bad");
            }
        });
        v.warn_at("exportTo", "old");
        let issues = v.into_issues();
        assert_eq!(render_path(&issues[0].path), "spec.hosts[1]");
        assert_eq!(issues[0].severity, Severity::Error);
        assert_eq!(render_path(&issues[1].path), "spec.exportTo");
        assert_eq!(issues[1].severity, Severity::Warning);
    }
}
