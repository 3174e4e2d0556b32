//! From text to resources: split the stream into documents, read each document's
//! `apiVersion`, `kind`, `metadata` and `spec` (or a `kind: List`'s `items`), read the
//! spec into its type and validate it, and turn every problem into a [`Diagnostic`] with
//! file, document, line and field path. A document with any error yields no resource.

use crate::de::{did_you_mean, from_node, hint, DeError};
use crate::diagnostic::{Diagnostic, Errors, Severity};
use crate::meta::ObjectMeta;
use crate::node::{render_path, Node, Seg, Value};
use crate::resource::{Kind, Resource, Spec};
use crate::validate::{Issue, Validate, Validator};
use crate::yaml;

/// Fields of a resource document.
const TOP_LEVEL: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];

/// What a source held: the valid resources, the warnings, and the errors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    /// Resources from documents without errors, in source order.
    pub resources: Vec<Resource>,
    /// Warnings (deprecated fields and the like); they reject nothing.
    pub warnings: Vec<Diagnostic>,
    /// Errors; each invalid document contributed no resource.
    pub errors: Vec<Diagnostic>,
}

impl Parsed {
    /// All or nothing: the resources and warnings if there was no error.
    pub fn into_result(self) -> Result<(Vec<Resource>, Vec<Diagnostic>), Errors> {
        if self.errors.is_empty() {
            Ok((self.resources, self.warnings))
        } else {
            Err(Errors(self.errors))
        }
    }
}

/// Parses multi-document YAML or JSON. `source_name` (usually the file name) is named in
/// every diagnostic. Documents are independent: an invalid one (for a `kind: List`, one
/// with any invalid item) adds errors and no resource, and the others still parse (see [`Parsed::into_result`] for all or
/// nothing). A YAML syntax error stops the stream there.
pub fn parse_documents(source_name: &str, text: &str) -> Parsed {
    let (docs, syntax) = yaml::load(text);
    let mut parsed = Parsed::default();
    for doc in docs {
        let Some(root) = &doc.root else { continue };
        let mut sink = Sink::new(source_name, doc.index, root);
        for issue in &doc.errors {
            sink.push(
                Severity::Error,
                issue.mark.line,
                issue.mark.column,
                &issue.path,
                &issue.message,
            );
        }
        let mut resources = Vec::new();
        read_value(root, Vec::new(), &mut sink, &mut resources);
        // A document with any error (in any item of a List) yields nothing.
        if sink.error_count() == 0 {
            parsed.resources.extend(resources);
        }
        sink.drain_into(&mut parsed);
    }
    if let Some(e) = syntax {
        parsed.errors.push(Diagnostic {
            severity: Severity::Error,
            source: source_name.to_string(),
            document: e.document,
            line: e.mark.line,
            column: e.mark.column,
            path: String::new(),
            message: e.message,
        });
    }
    parsed
}

/// Reads exactly one resource from a tree (stored JSON); errors are reported against
/// `source`.
pub(crate) fn parse_node(source: &str, node: Node) -> Result<Resource, Errors> {
    let mut sink = Sink::new(source, 1, &node);
    let mut resources = Vec::new();
    read_value(&node, Vec::new(), &mut sink, &mut resources);
    let mut parsed = Parsed::default();
    sink.drain_into(&mut parsed);
    if !parsed.errors.is_empty() {
        return Err(Errors(parsed.errors));
    }
    match (resources.pop(), resources.is_empty()) {
        (Some(r), true) => Ok(r),
        _ => Err(Errors(vec![Diagnostic {
            severity: Severity::Error,
            source: source.to_string(),
            document: 1,
            line: 0,
            column: 0,
            path: String::new(),
            message: "expected exactly one resource".into(),
        }])),
    }
}

/// Collects diagnostics for one document, resolving paths to lines.
struct Sink<'a> {
    source: &'a str,
    document: usize,
    root: &'a Node,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Sink<'a> {
    fn new(source: &'a str, document: usize, root: &'a Node) -> Self {
        Sink {
            source,
            document,
            root,
            diagnostics: Vec::new(),
        }
    }

    fn push(
        &mut self,
        severity: Severity,
        line: usize,
        column: usize,
        path: &[Seg],
        message: &str,
    ) {
        self.diagnostics.push(Diagnostic {
            severity,
            source: self.source.to_string(),
            document: self.document,
            line,
            column,
            path: render_path(path),
            message: message.to_string(),
        });
    }

    /// An error at `path`, on the line of the deepest node of it that exists.
    fn error(&mut self, path: &[Seg], message: &str) {
        let mark = self.root.locate(path);
        self.push(Severity::Error, mark.line, mark.column, path, message);
    }

    fn issue(&mut self, issue: &Issue) {
        let mark = self.root.locate(&issue.path);
        self.push(
            issue.severity,
            mark.line,
            mark.column,
            &issue.path,
            &issue.message,
        );
    }

    fn de_error(&mut self, base: &[Seg], e: DeError) {
        let mut path = base.to_vec();
        path.extend(e.path.unwrap_or_default());
        match e.mark {
            Some(mark) => self.push(Severity::Error, mark.line, mark.column, &path, &e.message),
            None => self.error(&path, &e.message),
        }
    }

    fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    fn drain_into(self, parsed: &mut Parsed) {
        for d in self.diagnostics {
            if d.is_error() {
                parsed.errors.push(d);
            } else {
                parsed.warnings.push(d);
            }
        }
    }
}

fn with(base: &[Seg], seg: Seg) -> Vec<Seg> {
    let mut path = base.to_vec();
    path.push(seg);
    path
}

fn key(base: &[Seg], k: &str) -> Vec<Seg> {
    with(base, Seg::Key(k.to_string()))
}

/// A required string field of the document.
fn string_field(node: &Node, base: &[Seg], field: &str, sink: &mut Sink<'_>) -> Option<String> {
    match node.get(field) {
        None => {
            sink.error(&key(base, field), "required field is missing");
            None
        }
        Some(n) => match n.as_str() {
            Some(s) if !s.is_empty() => Some(s.to_string()),
            _ => {
                sink.error(
                    &key(base, field),
                    &format!("expected a string, found {}", n.describe()),
                );
                None
            }
        },
    }
}

/// Reads one document value: a resource or a `kind: List` of them.
fn read_value(node: &Node, base: Vec<Seg>, sink: &mut Sink<'_>, out: &mut Vec<Resource>) {
    let errors_before = sink.error_count();
    let Some(entries) = node.entries() else {
        sink.error(
            &base,
            &format!(
                "expected a resource (a mapping with apiVersion, kind, metadata and spec), found {}",
                node.describe()
            ),
        );
        return;
    };
    let api_version = string_field(node, &base, "apiVersion", sink);
    let kind_name = string_field(node, &base, "kind", sink);
    let (Some(api_version), Some(kind_name)) = (api_version, kind_name) else {
        return;
    };
    if kind_name == "List" && api_version == "v1" {
        read_list(node, &base, sink, out);
        return;
    }
    let Some(kind) = resolve_kind(&api_version, &kind_name, &base, sink) else {
        return;
    };
    for entry in entries {
        if !TOP_LEVEL.contains(&entry.key()) {
            sink.error(
                &key(&base, entry.key()),
                &format!(
                    "unknown field {:?}{}",
                    entry.key(),
                    hint(entry.key(), TOP_LEVEL, "fields")
                ),
            );
        }
    }

    let mut meta_node = node
        .get("metadata")
        .cloned()
        .unwrap_or_else(|| Node::new(node.mark, Value::Map(Vec::new())));
    ObjectMeta::strip_server_fields(&mut meta_node);
    let metadata = read_typed(&meta_node, &base, sink, |n| {
        from_node::<ObjectMeta>(n, "metadata")
    })
    .map(|mut m| {
        m.value.apply_defaults();
        let mut v = Validator::new(&m.value.namespace, &m.value.name, key(&base, "metadata"));
        m.value.validate(&mut v);
        report(sink, &base, &m, v);
        m.value
    });

    let empty = Node::new(node.mark, Value::Map(Vec::new()));
    let spec_node = node.get("spec").filter(|n| !n.is_null()).unwrap_or(&empty);
    let spec = read_typed(spec_node, &base, sink, |n| Spec::read(kind, n)).map(|spec| {
        let namespace = metadata
            .as_ref()
            .map_or("default", |m| m.namespace.as_str());
        let name = metadata.as_ref().map_or("", |m| m.name.as_str());
        let mut v = Validator::new(namespace, name, key(&base, "spec"));
        spec.value.validate(&mut v);
        report(sink, &base, &spec, v);
        spec.value
    });

    if let (Some(metadata), Some(spec)) = (metadata, spec) {
        if sink.error_count() == errors_before {
            out.push(Resource {
                api_version,
                metadata,
                spec,
            });
        }
    }
}

/// Records validation issues, except those a dropped field may have caused.
fn report<T>(sink: &mut Sink<'_>, base: &[Seg], read: &Recovered<T>, v: Validator<'_>) {
    for issue in v.into_issues() {
        let relative = issue.path.get(base.len()..).unwrap_or_default();
        if !read.caused(relative) {
            sink.issue(&issue);
        }
    }
}

/// Most type errors reported for one document.
const MAX_TYPE_ERRORS: usize = 20;

/// A typed value read despite type errors, and the fields dropped to read it.
struct Recovered<T> {
    value: T,
    /// Paths (from the read's root, e.g. `spec.hosts`) of the dropped fields.
    dropped: Vec<Vec<Seg>>,
}

impl<T> Recovered<T> {
    /// Whether a validation issue at `path` may be a consequence of a dropped field (it
    /// is at the dropped field or above it), and so should not be reported.
    fn caused(&self, path: &[Seg]) -> bool {
        self.dropped
            .iter()
            .any(|d| d.len() >= path.len() && d.starts_with(path))
    }
}

/// Reads a typed value, reporting every type error rather than only the first: after
/// an error the offending field is dropped and the read repeated. Errors at a parent of
/// an already reported field are left out, since the drop caused them.
fn read_typed<T>(
    node: &Node,
    base: &[Seg],
    sink: &mut Sink<'_>,
    read: impl Fn(&Node) -> Result<T, DeError>,
) -> Option<Recovered<T>> {
    let mut error = match read(node) {
        Ok(value) => {
            return Some(Recovered {
                value,
                dropped: Vec::new(),
            })
        }
        Err(e) => e,
    };
    let mut node = node.clone();
    let mut dropped: Vec<Vec<Seg>> = Vec::new();
    for _ in 0..MAX_TYPE_ERRORS {
        let path = error.path.clone().unwrap_or_default();
        let caused = dropped
            .iter()
            .any(|p| p.len() >= path.len() && p.starts_with(&path));
        if !caused {
            sink.de_error(base, error);
        }
        if !drop_field(&mut node, path.get(1..).unwrap_or_default()) {
            return None;
        }
        dropped.push(path);
        match read(&node) {
            Ok(value) => return Some(Recovered { value, dropped }),
            Err(e) => error = e,
        }
    }
    None
}

/// Removes the innermost mapping entry on `path` (relative to `node`); false when there
/// is none.
fn drop_field(node: &mut Node, path: &[Seg]) -> bool {
    let Some(last_key) = path.iter().rposition(|s| matches!(s, Seg::Key(_))) else {
        return false;
    };
    let mut parent = node;
    for seg in &path[..last_key] {
        let next = match (seg, &mut parent.value) {
            (Seg::Key(k), Value::Map(entries)) => entries
                .iter_mut()
                .find(|e| e.key() == k)
                .map(|e| &mut e.value),
            (Seg::Index(i), Value::Seq(items)) => items.get_mut(*i),
            _ => None,
        };
        match next {
            Some(n) => parent = n,
            None => return false,
        }
    }
    match &path[last_key] {
        Seg::Key(k) => parent.remove(k).is_some(),
        Seg::Index(_) => false,
    }
}

/// `kubectl get -o yaml` of several objects: `apiVersion: v1`, `kind: List`, `items`.
fn read_list(node: &Node, base: &[Seg], sink: &mut Sink<'_>, out: &mut Vec<Resource>) {
    for entry in node.entries().unwrap_or_default() {
        if !["apiVersion", "kind", "items", "metadata"].contains(&entry.key()) {
            sink.error(
                &key(base, entry.key()),
                &format!("unknown field {:?} in a List", entry.key()),
            );
        }
    }
    match node.get("items").map(|n| &n.value) {
        Some(Value::Seq(items)) => {
            for (i, item) in items.iter().enumerate() {
                let path = with(&key(base, "items"), Seg::Index(i));
                read_value(item, path, sink, out);
            }
        }
        Some(Value::Null) | None => {}
        Some(_) => sink.error(&key(base, "items"), "expected a list of resources"),
    }
}

fn resolve_kind(
    api_version: &str,
    kind_name: &str,
    base: &[Seg],
    sink: &mut Sink<'_>,
) -> Option<Kind> {
    let Some(kind) = Kind::from_name(kind_name) else {
        let names: Vec<&str> = Kind::ALL.iter().map(Kind::as_str).collect();
        let message = match did_you_mean(kind_name, &names) {
            Some(best) => format!("unknown kind {kind_name:?}; did you mean {best:?}?"),
            None => format!(
                "unknown kind {kind_name:?}; Weft accepts {}",
                names.join(", ")
            ),
        };
        sink.error(&key(base, "kind"), &message);
        return None;
    };
    if kind.accepts(api_version) {
        return Some(kind);
    }
    let versions: Vec<String> = kind
        .versions()
        .iter()
        .map(|v| format!("{}/{v}", kind.group()))
        .collect();
    sink.error(
        &key(base, "apiVersion"),
        &format!(
            "apiVersion {api_version:?} does not serve kind {kind}; use {}",
            versions.join(" or ")
        ),
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_comment_only_sources_hold_nothing() {
        for text in ["", "---\n", "# nothing\n", "---\n---\n"] {
            let p = parse_documents("f.yaml", text);
            assert!(
                p.errors.is_empty() && p.resources.is_empty(),
                "{text:?}: {p:?}"
            );
        }
    }

    #[test]
    fn unknown_kinds_and_versions_are_named() {
        let p = parse_documents(
            "f.yaml",
            "apiVersion: networking.istio.io/v1\nkind: VirtualServce\nmetadata: {name: x}\n",
        );
        assert!(
            p.errors[0]
                .message
                .contains("did you mean \"VirtualService\""),
            "{p:?}"
        );
        assert_eq!(p.errors[0].path, "kind");
        assert_eq!(p.errors[0].line, 2);
        let p = parse_documents(
            "f.yaml",
            "apiVersion: networking.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: x}\n",
        );
        assert!(
            p.errors[0].message.contains("security.istio.io/v1"),
            "{p:?}"
        );
        let p = parse_documents("f.yaml", "- a\n- b\n");
        assert!(p.errors[0].message.contains("expected a resource"), "{p:?}");
    }

    #[test]
    fn any_error_rejects_the_document() {
        let good = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: r}\n";
        assert_eq!(parse_documents("f.yaml", good).resources.len(), 1);
        for bad in [
            format!("{good}stauts: {{}}\n"),
            good.replace("{name: r}", "{name: r, generateName: r-}"),
            good.replace("{host: r}", "{host: r, exportTo: [a, a]}"),
        ] {
            let p = parse_documents("f.yaml", &bad);
            assert!(
                p.resources.is_empty() && !p.errors.is_empty(),
                "{bad}: {p:?}"
            );
        }
    }
}
