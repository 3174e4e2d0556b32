//! Helpers shared by the integration tests.

#![allow(dead_code)]

use weft_model::{parse_documents, Diagnostic, Parsed, Resource};

/// Parses `text` as `source`, asserting there is no error.
pub fn parse_ok(source: &str, text: &str) -> (Vec<Resource>, Vec<Diagnostic>) {
    match parse_documents(source, text).into_result() {
        Ok(ok) => ok,
        Err(e) => panic!("{source} should parse, but:\n{e}"),
    }
}

/// Parses `text`, asserting there is at least one error, and returns everything.
pub fn parse_err(source: &str, text: &str) -> Parsed {
    let parsed = parse_documents(source, text);
    assert!(
        !parsed.errors.is_empty(),
        "{source} should have been rejected: {:#?}",
        parsed.resources
    );
    parsed
}

/// The error whose path is `path`.
pub fn error_at<'a>(parsed: &'a Parsed, path: &str) -> &'a Diagnostic {
    parsed
        .errors
        .iter()
        .find(|d| d.path == path)
        .unwrap_or_else(|| panic!("no error at {path}; errors:\n{:#?}", parsed.errors))
}
