//! Istio's security examples: authorization policies and peer authentication, as the
//! documentation writes them.

mod support;

use support::{error_at, parse_err, parse_ok};
use weft_model::security::authorization_policy::Action;
use weft_model::security::peer_authentication::MtlsMode;
use weft_model::{Resource, Spec};

const ALLOW_NOTHING: &str = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-nothing
  namespace: default
spec:
  {}
"#;

const GET_PRODUCTPAGE: &str = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: "get-productpage"
  namespace: default
spec:
  selector:
    matchLabels:
      app: productpage
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/bookinfo-gateway-istio"]
    to:
    - operation:
        methods: ["GET"]
        paths: ["/productpage"]
"#;

const DENY_BY_HEADER: &str = r#"apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: deny-method-get
  namespace: foo
spec:
  selector:
    matchLabels:
      app: httpbin
  action: DENY
  rules:
  - to:
    - operation:
        methods: ["GET"]
        paths: ["/get"]
    when:
    - key: request.headers[x-token]
      notValues: ["admin"]
"#;

const PORTS_AS_STRINGS: &str = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: tcp-policy
  namespace: foo
spec:
  selector:
    matchLabels:
      app: tcp-echo
  action: ALLOW
  rules:
  - to:
    - operation:
        ports: ["9000", "9001"]
"#;

const STRICT_MESH_WIDE: &str = r#"apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: "default"
  namespace: "istio-system"
spec:
  mtls:
    mode: STRICT
"#;

const PORT_LEVEL: &str = r#"apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata:
  name: "example-workload-policy"
  namespace: "foo"
spec:
  selector:
     matchLabels:
       app: example-app
  mtls:
    mode: STRICT
  portLevelMtls:
    80:
      mode: DISABLE
    "8080":
      mode: PERMISSIVE
"#;

fn one(source: &str, text: &str) -> Resource {
    let (mut r, _) = parse_ok(source, text);
    assert_eq!(r.len(), 1);
    r.remove(0)
}

#[test]
fn deny_all_is_an_empty_spec() {
    let r = one("allow-nothing.yaml", ALLOW_NOTHING);
    let Spec::AuthorizationPolicy(p) = &r.spec else {
        panic!("{r:?}")
    };
    assert!(p.rules.is_empty());
    assert_eq!(p.action, None);
    assert_eq!(
        r.key().to_string(),
        "AuthorizationPolicy/default/allow-nothing"
    );
    // Printed back, the empty spec stays empty.
    let json = serde_json::to_value(&r).expect("json");
    assert_eq!(json["spec"], serde_json::json!({}));
}

#[test]
fn allow_get_from_one_principal_to_one_path() {
    let r = one("get-productpage.yaml", GET_PRODUCTPAGE);
    let Spec::AuthorizationPolicy(p) = &r.spec else {
        panic!("{r:?}")
    };
    assert_eq!(p.action, Some(Action::Allow));
    let rule = &p.rules[0];
    let source = rule.from.as_ref().expect("from")[0]
        .source
        .clone()
        .expect("source");
    assert_eq!(
        source.principals,
        ["cluster.local/ns/default/sa/bookinfo-gateway-istio"]
    );
    let op = rule.to.as_ref().expect("to")[0]
        .operation
        .clone()
        .expect("operation");
    assert_eq!(op.methods, ["GET"]);
    assert_eq!(op.paths, ["/productpage"]);
    assert_eq!(
        p.selector.as_ref().expect("selector").match_labels["app"],
        "productpage"
    );
}

#[test]
fn deny_by_header_value() {
    let (r, warnings) = parse_ok("deny-method-get.yaml", DENY_BY_HEADER);
    let Spec::AuthorizationPolicy(p) = &r[0].spec else {
        panic!("{r:?}")
    };
    assert_eq!(p.action, Some(Action::Deny));
    assert_eq!(p.rules[0].when[0].key, "request.headers[x-token]");
    assert_eq!(p.rules[0].when[0].not_values, ["admin"]);
    // Istio warns that an HTTP-only DENY rule also denies TCP traffic.
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].path, "spec.rules[0]");
}

#[test]
fn ports_are_strings_and_numbers_are_read_as_written() {
    let r = one("tcp-policy.yaml", PORTS_AS_STRINGS);
    let Spec::AuthorizationPolicy(p) = &r.spec else {
        panic!("{r:?}")
    };
    let op = p.rules[0].to.as_ref().expect("to")[0]
        .operation
        .clone()
        .expect("op");
    assert_eq!(op.ports, ["9000", "9001"]);
    let unquoted = PORTS_AS_STRINGS.replace("[\"9000\", \"9001\"]", "[9000, 9001]");
    assert_eq!(one("tcp-policy.yaml", &unquoted), r);
    let bad = PORTS_AS_STRINGS.replace("\"9001\"", "\"http\"");
    let parsed = parse_err("tcp-policy.yaml", &bad);
    let e = error_at(&parsed, "spec.rules[0].to[0].operation.ports[1]");
    assert_eq!(e.line, 14);
}

#[test]
fn custom_needs_a_provider() {
    let text = GET_PRODUCTPAGE.replace("action: ALLOW", "action: CUSTOM");
    let parsed = parse_err("custom.yaml", &text);
    let e = error_at(&parsed, "spec.provider");
    assert!(e.message.contains("provider.name"), "{e}");
    let text = GET_PRODUCTPAGE
        .replace(
            "action: ALLOW",
            "action: CUSTOM\n  provider:\n    name: my-ext-authz",
        )
        .replace("principals", "ipBlocks")
        .replace(
            "cluster.local/ns/default/sa/bookinfo-gateway-istio",
            "10.0.0.0/8",
        );
    one("custom.yaml", &text);
}

#[test]
fn strict_mesh_wide() {
    let r = one("peer-authentication.yaml", STRICT_MESH_WIDE);
    let Spec::PeerAuthentication(p) = &r.spec else {
        panic!("{r:?}")
    };
    assert_eq!(p.mtls.as_ref().and_then(|m| m.mode), Some(MtlsMode::Strict));
    assert_eq!(r.namespace(), "istio-system");
    assert!(p.selector.is_none());
}

#[test]
fn port_level_mtls_keys_quoted_and_unquoted() {
    let r = one("workload-policy.yaml", PORT_LEVEL);
    let Spec::PeerAuthentication(p) = &r.spec else {
        panic!("{r:?}")
    };
    let ports = p.port_level_mtls.as_ref().expect("ports");
    assert_eq!(ports[&80].mode, Some(MtlsMode::Disable));
    assert_eq!(ports[&8080].mode, Some(MtlsMode::Permissive));
    // Round trip: JSON has string keys; they read back as the same ports.
    let json = serde_json::to_string(&r).expect("json");
    assert!(json.contains("\"80\":{\"mode\":\"DISABLE\"}"), "{json}");
    assert_eq!(Resource::from_json("stored", &json).expect("reads"), r);
    // The same port written both ways is a duplicate.
    let dup = PORT_LEVEL.replace("\"8080\"", "\"80\"");
    let parsed = parse_err("dup.yaml", &dup);
    assert!(
        parsed.errors[0].message.contains("duplicate key"),
        "{:?}",
        parsed.errors
    );
    assert_eq!(parsed.errors[0].line, 15);
}

#[test]
fn port_level_mtls_needs_a_selector() {
    let text = PORT_LEVEL.replace(
        "  selector:\n     matchLabels:\n       app: example-app\n",
        "",
    );
    let parsed = parse_err("pa.yaml", &text);
    error_at(&parsed, "spec.portLevelMtls");
}
