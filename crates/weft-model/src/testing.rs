//! Helpers for the unit tests: build a document around a spec, parse it, and find the
//! error or warning at a field path.

use crate::diagnostic::Diagnostic;
use crate::parse::{parse_documents, Parsed};
use crate::resource::{Kind, Resource};

/// A document of `kind` named `test` whose spec is `spec` (written at column 0).
pub(crate) fn doc(kind: Kind, spec: &str) -> String {
    let mut text = format!(
        "apiVersion: {}\nkind: {kind}\nmetadata:\n  name: test\n  namespace: ns\nspec:\n",
        kind.api_version()
    );
    for line in spec.lines() {
        text.push_str("  ");
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// Parses `spec` as a `kind`.
pub(crate) fn parse(kind: Kind, spec: &str) -> Parsed {
    parse_documents("test.yaml", &doc(kind, spec))
}

/// The one resource `spec` makes, asserting there is no error.
pub(crate) fn ok(kind: Kind, spec: &str) -> Resource {
    let p = parse(kind, spec);
    assert!(p.errors.is_empty(), "unexpected errors: {:#?}", p.errors);
    assert_eq!(p.resources.len(), 1);
    p.resources.into_iter().next().expect("one resource")
}

/// The error at `path` (relative to `spec`), asserting the document was rejected.
pub(crate) fn err(kind: Kind, spec: &str, path: &str) -> Diagnostic {
    let p = parse(kind, spec);
    assert!(
        p.resources.is_empty(),
        "an invalid document made a resource"
    );
    let full = format!("spec{path}");
    p.errors
        .iter()
        .find(|d| d.path == full)
        .cloned()
        .unwrap_or_else(|| panic!("no error at {full}; errors: {:#?}", p.errors))
}

/// The warning at `path` (relative to `spec`), asserting the document was accepted.
pub(crate) fn warn(kind: Kind, spec: &str, path: &str) -> Diagnostic {
    let p = parse(kind, spec);
    assert!(p.errors.is_empty(), "unexpected errors: {:#?}", p.errors);
    let full = format!("spec{path}");
    p.warnings
        .iter()
        .find(|d| d.path == full)
        .cloned()
        .unwrap_or_else(|| panic!("no warning at {full}; warnings: {:#?}", p.warnings))
}
