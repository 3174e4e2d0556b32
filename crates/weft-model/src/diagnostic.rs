//! What parsing and validation report: one [`Diagnostic`] per problem, each naming the
//! source (file), the document, the line and column and the field path, and [`Errors`],
//! the error type that carries them.

use std::fmt;

/// How serious a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The document is accepted; the user should still hear about it (deprecated fields).
    Warning,
    /// The document is rejected and yields no resource.
    Error,
}

/// One problem found in a source, located as precisely as the input allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The name the caller gave the source, usually a file name.
    pub source: String,
    /// The document within the source, 1-based (multi-document YAML counts every `---`).
    pub document: usize,
    /// The line, 1-based; 0 when the input had no positions (stored JSON).
    pub line: usize,
    /// The column, 1-based; 0 when the input had no positions.
    pub column: usize,
    /// The field at fault, e.g. `spec.http[0].route[1].weight`; empty for the whole
    /// document.
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl Diagnostic {
    /// Whether this is an error (not a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(f, ": document {}", self.document)?;
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        if self.severity == Severity::Warning {
            write!(f, ": warning")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The errors that made one or more documents invalid; displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Errors(pub Vec<Diagnostic>);

impl Errors {
    /// The diagnostics, in source order.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.0
    }
}

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag(severity: Severity, line: usize) -> Diagnostic {
        Diagnostic {
            severity,
            source: "mesh.yaml".into(),
            document: 2,
            line,
            column: 9,
            path: "spec.hosts[0]".into(),
            message: "bad host".into(),
        }
    }

    #[test]
    fn display_names_everything() {
        assert_eq!(
            diag(Severity::Error, 12).to_string(),
            "mesh.yaml:12:9: document 2: spec.hosts[0]: bad host"
        );
        assert_eq!(
            diag(Severity::Warning, 0).to_string(),
            "mesh.yaml: document 2: spec.hosts[0]: warning: bad host"
        );
    }

    #[test]
    fn errors_display_one_per_line() {
        let e = Errors(vec![diag(Severity::Error, 1), diag(Severity::Error, 2)]);
        assert_eq!(e.to_string().lines().count(), 2);
    }
}
