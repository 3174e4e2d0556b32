//! Every error names the file, the document, the line and the field path, and says
//! what was expected.

mod support;

use support::{error_at, parse_err};
use weft_model::{parse_documents, Severity};

const MESH: &str = r#"# Bookinfo routing, with mistakes.
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 50
    - destination:
        host: reviews
        subset: v2
      weight: fifty
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: Reviews_Rule
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      tcp:
        connectTimeout: 10
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v1
    labels:
      version: v2
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  namespace: prod
spec:
  mtls:
    mode: strict
"#;

#[test]
fn every_error_is_located() {
    let parsed = parse_err("mesh.yaml", MESH);
    assert!(parsed.resources.is_empty());
    let expect = [
        (1, 18, "spec.http[0].route[1].weight", "expected an integer"),
        (2, 23, "metadata.name", "invalid name \"Reviews_Rule\""),
        (
            2,
            29,
            "spec.trafficPolicy.connectionPool.tcp.connectTimeout",
            "missing unit",
        ),
        (2, 34, "spec.subsets[1].name", "duplicate subset name"),
        (3, 41, "metadata.name", "required"),
        (3, 44, "spec.mtls.mode", "did you mean \"STRICT\""),
    ];
    for (document, line, path, words) in expect {
        let e = parsed
            .errors
            .iter()
            .find(|e| e.document == document && e.path == path)
            .unwrap_or_else(|| {
                panic!(
                    "no error at {path} in document {document}: {:#?}",
                    parsed.errors
                )
            });
        assert_eq!(e.source, "mesh.yaml");
        assert_eq!((e.document, e.line), (document, line), "{e}");
        assert!(e.column > 0, "{e}");
        assert!(e.message.contains(words), "{e}");
        assert_eq!(e.severity, Severity::Error);
        // The printed form carries all of it.
        let shown = e.to_string();
        assert!(shown.starts_with(&format!("mesh.yaml:{line}:")), "{shown}");
        assert!(shown.contains(&format!("document {document}")), "{shown}");
        assert!(shown.contains(path), "{shown}");
    }
    assert_eq!(parsed.errors.len(), expect.len(), "{:#?}", parsed.errors);
}

#[test]
fn syntax_errors_are_located_and_keep_earlier_documents() {
    let text = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a}\nspec: {host: a}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: b\n spec: {host: b}\n";
    let parsed = parse_documents("broken.yaml", text);
    assert_eq!(parsed.resources.len(), 1);
    let e = &parsed.errors[0];
    assert_eq!((e.document, e.line), (2, 10), "{e}");
    assert!(e.message.contains("invalid YAML"), "{e}");
    assert!(e.to_string().starts_with("broken.yaml:10:"), "{e}");
}

#[test]
fn type_errors_say_what_was_expected() {
    let base =
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n";
    let cases = [
        ("  hosts: reviews\n", "spec.hosts", "expected a list, found \"reviews\""),
        ("  hosts: [[a]]\n", "spec.hosts[0]", "expected a string, found a list"),
        ("  http: {route: []}\n", "spec.http", "expected a list, found a mapping"),
        ("  hosts: [r]\n  http:\n  - retries: {attempts: 3, retryRemoteLocalities: \"yes\"}\n    route: [{destination: {host: r}}]\n", "spec.http[0].retries.retryRemoteLocalities", "expected true or false"),
        ("  hosts: [r]\n  http:\n  - route: [{destination: {host: r}}]\n    fault: {abort: {percentage: {value: lots}, httpStatus: 500}}\n", "spec.http[0].fault.abort.percentage.value", "expected a number"),
        ("  hosts: [r]\n  http:\n  - match: [{port: 99999999999}]\n    route: [{destination: {host: r}}]\n", "spec.http[0].match[0].port", "from 0 to 4294967295"),
    ];
    for (spec, path, words) in cases {
        let parsed = parse_err("vs.yaml", &format!("{base}{spec}"));
        let e = error_at(&parsed, path);
        assert!(e.message.contains(words), "{path}: {e}");
        assert!(e.line >= 5, "{e}");
    }
}

#[test]
fn document_level_errors_name_the_document() {
    let parsed = parse_err(
        "x.yaml",
        "---\n---\nkind: VirtualService\nmetadata: {name: a}\n",
    );
    let e = error_at(&parsed, "apiVersion");
    assert_eq!(e.document, 2);
    assert_eq!(e.line, 3);
    let parsed = parse_err("x.yaml", "just a string\n");
    assert_eq!(parsed.errors[0].line, 1);
    assert!(parsed.errors[0].message.contains("expected a resource"));
}

#[test]
fn stored_json_errors_have_no_lines_but_keep_paths() {
    let json = r#"{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"r","namespace":"default"},"spec":{"host":"r","subsets":[{"name":"v1"},{"name":"v1"}]}}"#;
    let e = weft_model::Resource::from_json("store:DestinationRule/default/r", json)
        .expect_err("duplicate subsets");
    let d = &e.diagnostics()[0];
    assert_eq!(d.path, "spec.subsets[1].name");
    assert_eq!(d.line, 0);
    assert!(
        e.to_string()
            .starts_with("store:DestinationRule/default/r: document 1: spec.subsets[1].name"),
        "{e}"
    );
}

#[test]
fn all_type_errors_of_a_document_are_reported_once() {
    let text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [r]\n  http:\n  - match:\n    - uri: {prefx: /a}\n    route:\n    - destination: {host: r}\n      weight: lots\n    timeout: forever\n";
    let parsed = parse_err("vs.yaml", text);
    let paths: Vec<&str> = parsed.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.http[0].match[0].uri.prefx",
            "spec.http[0].route[0].weight",
            "spec.http[0].timeout"
        ],
        "{:#?}",
        parsed.errors
    );
}

/// Every prefix of a valid file, and the file with each line dropped, parses to
/// resources or located errors, never a panic.
#[test]
fn damaged_input_never_panics_and_is_always_located() {
    let text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\n  labels: {app: reviews}\nspec:\n  hosts: [reviews, \"*.example.com\"]\n  http:\n  - match:\n    - headers: {end-user: {exact: jason}}\n      uri: {prefix: /api}\n    route:\n    - destination: {host: reviews, subset: v2, port: {number: 9080}}\n      weight: 90\n    - destination: {host: reviews, subset: v1}\n      weight: 10\n    timeout: 1.5s\n    retries: {attempts: 3, perTryTimeout: 2s}\n---\n{\"apiVersion\": \"security.istio.io/v1\", \"kind\": \"PeerAuthentication\",\n\t\"metadata\": {\"name\": \"default\"}, \"spec\": {\"mtls\": {\"mode\": \"STRICT\"}}}\n";
    let check = |input: &str| {
        let parsed = parse_documents("damaged.yaml", input);
        for e in &parsed.errors {
            assert_eq!(e.source, "damaged.yaml");
            assert!(e.document >= 1 && e.line >= 1 && e.column >= 1, "{e}");
        }
    };
    let mut cut: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    cut.push(text.len());
    for end in cut {
        check(&text[..end]);
    }
    let lines: Vec<&str> = text.lines().collect();
    for skip in 0..lines.len() {
        let damaged: Vec<&str> = lines
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, l)| *l)
            .collect();
        check(&damaged.join("\n"));
    }
}
