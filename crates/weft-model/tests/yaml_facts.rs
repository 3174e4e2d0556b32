//! The facts about Istio YAML as people write it (shared/INTEROP.md), one test each.

mod support;

use support::{error_at, parse_err, parse_ok};
use weft_model::{parse_documents, Kind, Spec};

fn vs(spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: r\nspec:\n{}",
        spec.lines().map(|l| format!("  {l}\n")).collect::<String>()
    )
}

fn dr(spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: r\nspec:\n{}",
        spec.lines().map(|l| format!("  {l}\n")).collect::<String>()
    )
}

const ROUTE: &str = "hosts: [r]\nhttp:\n- route:\n  - destination: {host: r}\n";

#[test]
fn all_networking_versions_share_one_schema() {
    for version in ["v1alpha3", "v1beta1", "v1"] {
        let text = vs(ROUTE).replace(
            "networking.istio.io/v1",
            &format!("networking.istio.io/{version}"),
        );
        let (r, _) = parse_ok("vs.yaml", &text);
        assert_eq!(r[0].api_version, format!("networking.istio.io/{version}"));
    }
    for version in ["v1beta1", "v1"] {
        let text = format!("apiVersion: security.istio.io/{version}\nkind: PeerAuthentication\nmetadata: {{name: default}}\nspec: {{mtls: {{mode: STRICT}}}}\n");
        parse_ok("pa.yaml", &text);
    }
    let bad = parse_err(
        "pa.yaml",
        "apiVersion: security.istio.io/v1alpha3\nkind: PeerAuthentication\nmetadata: {name: d}\n",
    );
    error_at(&bad, "apiVersion");
}

#[test]
fn go_durations() {
    for (text, ms) in [
        ("3m", 180_000),
        ("30ms", 30),
        ("0.5s", 500),
        ("1h2m", 3_720_000),
    ] {
        let (r, _) = parse_ok("vs.yaml", &vs(&format!("{ROUTE}  timeout: {text}\n")));
        let Spec::VirtualService(v) = &r[0].spec else {
            panic!()
        };
        assert_eq!(v.http[0].timeout.map(|d| d.as_millis()), Some(ms), "{text}");
    }
    for bad in ["0s", "0.5ms", "1500us", "10", "-1s", "1d"] {
        let parsed = parse_err("vs.yaml", &vs(&format!("{ROUTE}  timeout: {bad}\n")));
        let e = error_at(&parsed, "spec.http[0].timeout");
        assert_eq!(e.line, 10, "{bad}");
    }
}

#[test]
fn numbers_as_strings_and_strings_as_numbers() {
    let (r, _) = parse_ok(
        "vs.yaml",
        &vs("hosts: [r]\nhttp:\n- match: [{port: \"8080\", headers: {x-version: {exact: 2}}}]\n  route:\n  - destination: {host: r, port: {number: \"9080\"}}\n    weight: \"100\"\n"),
    );
    let Spec::VirtualService(v) = &r[0].spec else {
        panic!()
    };
    assert_eq!(v.http[0].matches[0].port, Some(8080));
    assert_eq!(v.http[0].route[0].weight, Some(100));
    // A version label written as a number keeps its text.
    let (r, _) = parse_ok(
        "dr.yaml",
        &dr("host: r\nsubsets:\n- {name: v1, labels: {version: 1.10}}\n"),
    );
    let Spec::DestinationRule(d) = &r[0].spec else {
        panic!()
    };
    assert_eq!(d.subsets[0].labels["version"], "1.10");
}

#[test]
fn weights_are_non_negative_and_need_not_sum_to_100() {
    parse_ok("vs.yaml", &vs("hosts: [r]\nhttp:\n- route:\n  - {destination: {host: r, subset: a}, weight: 3}\n  - {destination: {host: r, subset: b}, weight: 1}\n"));
    let parsed = parse_err("vs.yaml", &vs("hosts: [r]\nhttp:\n- route:\n  - {destination: {host: r, subset: a}, weight: 0}\n  - {destination: {host: r, subset: b}, weight: 0}\n"));
    error_at(&parsed, "spec.http[0].route");
    let parsed = parse_err(
        "vs.yaml",
        &vs("hosts: [r]\nhttp:\n- route:\n  - {destination: {host: r}, weight: 1.5}\n"),
    );
    error_at(&parsed, "spec.http[0].route[0].weight");
}

#[test]
fn absent_empty_and_null_differ() {
    parse_ok(
        "dr.yaml",
        &dr("host: r\ntrafficPolicy:\n  tls: {mode: ISTIO_MUTUAL}\n"),
    );
    parse_ok(
        "dr.yaml",
        &dr("host: r\ntrafficPolicy:\n  tls: {mode: ISTIO_MUTUAL}\n  connectionPool: null\n"),
    );
    let parsed = parse_err(
        "dr.yaml",
        &dr("host: r\ntrafficPolicy:\n  tls: {mode: ISTIO_MUTUAL}\n  connectionPool: {}\n"),
    );
    error_at(&parsed, "spec.trafficPolicy.connectionPool");

    parse_ok("vs.yaml", &vs("hosts: [r]\nhttp:\n- match: [{uri: {prefix: /a}}]\n  route: [{destination: {host: r}}]\n"));
    let parsed = parse_err("vs.yaml", &vs("hosts: [r]\nhttp:\n- match: [{uri: {prefix: \"\"}}]\n  route: [{destination: {host: r}}]\n"));
    error_at(&parsed, "spec.http[0].match[0].uri.prefix");
    let parsed = parse_err("vs.yaml", &vs("hosts: [r]\nhttp:\n- match: [{uri: {prefix: null}}]\n  route: [{destination: {host: r}}]\n"));
    error_at(&parsed, "spec.http[0].match[0].uri.prefix");
}

#[test]
fn export_to_values() {
    parse_ok("vs.yaml", &vs(&format!("{ROUTE}exportTo: [\".\"]\n")));
    parse_ok("vs.yaml", &vs(&format!("{ROUTE}exportTo: [\"*\"]\n")));
    parse_ok(
        "vs.yaml",
        &vs(&format!("{ROUTE}exportTo: [\".\", istio-system]\n")),
    );
    let parsed = parse_err("vs.yaml", &vs(&format!("{ROUTE}exportTo: [\"~\"]\n")));
    error_at(&parsed, "spec.exportTo[0]");
    let parsed = parse_err("vs.yaml", &vs(&format!("{ROUTE}exportTo: [a, b, a]\n")));
    error_at(&parsed, "spec.exportTo[2]");
    parse_ok(
        "se.yaml",
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: se}\nspec:\n  hosts: [a.example.com]\n  exportTo: [\"~\"]\n",
    );
}

#[test]
fn short_hosts_in_routing_rules_but_not_in_gateways_or_sidecars() {
    parse_ok("vs.yaml", &vs(ROUTE));
    parse_ok("dr.yaml", &dr("host: reviews\n"));
    let gw = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [HOST]\n";
    parse_ok(
        "gw.yaml",
        &gw.replace("HOST", "bookinfo/reviews.bookinfo.svc.cluster.local"),
    );
    let parsed = parse_err("gw.yaml", &gw.replace("HOST", "bookinfo/reviews"));
    error_at(&parsed, "spec.servers[0].hosts[0]");
    let sc = "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default}\nspec:\n  egress:\n  - hosts: [HOST]\n";
    parse_ok(
        "sc.yaml",
        &sc.replace("HOST", "./reviews.default.svc.cluster.local"),
    );
    let parsed = parse_err("sc.yaml", &sc.replace("HOST", "reviews"));
    error_at(&parsed, "spec.egress[0].hosts[0]");
}

#[test]
fn duplicate_keys_are_errors() {
    let text = vs("hosts: [r]\nhosts: [s]\nhttp:\n- route:\n  - destination: {host: r}\n");
    let parsed = parse_err("vs.yaml", &text);
    let e = error_at(&parsed, "spec.hosts");
    assert_eq!(e.line, 7);
    assert!(
        e.message
            .contains("duplicate key \"hosts\" (first at line 6)"),
        "{e}"
    );
    assert!(parsed.resources.is_empty());
    let parsed = parse_err(
        "vs.yaml",
        "{\"apiVersion\": \"v1\", \"apiVersion\": \"v2\"}",
    );
    error_at(&parsed, "apiVersion");
}

#[test]
fn json_tab_indented_json_and_multi_document_files() {
    let json = "{\n\t\"apiVersion\": \"networking.istio.io/v1\",\n\t\"kind\": \"DestinationRule\",\n\t\"metadata\": {\n\t\t\"name\": \"reviews\"\n\t},\n\t\"spec\": {\n\t\t\"host\": \"reviews\",\n\t\t\"subsets\": [\n\t\t\t{\n\t\t\t\t\"name\": \"v1\",\n\t\t\t\t\"labels\": {\n\t\t\t\t\t\"version\": \"v1\"\n\t\t\t\t}\n\t\t\t}\n\t\t]\n\t}\n}\n";
    let (r, _) = parse_ok("dr.json", json);
    assert_eq!(r[0].kind(), Kind::DestinationRule);
    let compact =
        serde_json::to_string(&serde_json::from_str::<serde_json::Value>(json).expect("json"))
            .expect("json");
    assert_eq!(parse_ok("dr.json", &compact).0, r);
    // A trailing `---` and empty documents are fine.
    let text = format!("---\n{}---\n---\n{}---\n", vs(ROUTE), dr("host: r\n"));
    let (r, _) = parse_ok("both.yaml", &text);
    assert_eq!(r.len(), 2);
}

#[test]
fn ipv6_addresses_in_flow_lists_are_strings() {
    let text = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: se}\nspec:\n  hosts: [db.internal]\n  addresses: [1.2.3.4, 001:db8::]\n  ports: [{number: 5432, name: pg, protocol: TCP}]\n  resolution: STATIC\n  endpoints: [{address: 10.0.0.1}]\n";
    let (r, _) = parse_ok("se.yaml", text);
    let Spec::ServiceEntry(se) = &r[0].spec else {
        panic!()
    };
    assert_eq!(se.addresses, ["1.2.3.4", "001:db8::"]);
    let ap = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec:\n  rules:\n  - from:\n    - source: {ipBlocks: [1.2.3.4, 001:db8::]}\n";
    parse_ok("ap.yaml", ap);
}

#[test]
fn deprecated_fields_warn() {
    let (r, warnings) = parse_ok("vs.yaml", &vs("hosts: [r]\nhttp:\n- route: [{destination: {host: r}}]\n  mirror: {host: shadow}\n  mirrorPercent: 10\n"));
    assert_eq!(r.len(), 1);
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].path, "spec.http[0].mirrorPercent");
    assert_eq!(warnings[0].line, 10);
    assert!(
        warnings[0].to_string().contains("warning"),
        "{}",
        warnings[0]
    );
    let (r, warnings) = parse_ok(
        "dr.yaml",
        &dr("host: r\ntrafficPolicy:\n  outlierDetection:\n    consecutiveErrors: 5\n"),
    );
    assert_eq!(r.len(), 1);
    assert_eq!(
        warnings[0].path,
        "spec.trafficPolicy.outlierDetection.consecutiveErrors"
    );
}

#[test]
fn unknown_fields_are_errors_with_a_hint() {
    let parsed = parse_err(
        "dr.yaml",
        &dr("host: r\ntrafficPolicy:\n  connectionPool:\n    tcp: {maxConnection: 10}\n"),
    );
    let e = error_at(
        &parsed,
        "spec.trafficPolicy.connectionPool.tcp.maxConnection",
    );
    assert!(e.message.contains("did you mean \"maxConnections\""), "{e}");
    let parsed = parse_err("dr.yaml", &format!("{}stauts: {{}}\n", dr("host: r\n")));
    let e = error_at(&parsed, "stauts");
    assert!(e.message.contains("did you mean \"status\""), "{e}");
}

#[test]
fn kubectl_output_is_accepted() {
    let text = r#"apiVersion: v1
kind: List
items:
- apiVersion: networking.istio.io/v1
  kind: DestinationRule
  metadata:
    annotations:
      kubectl.kubernetes.io/last-applied-configuration: |
        {"apiVersion":"networking.istio.io/v1","kind":"DestinationRule"}
    creationTimestamp: "2024-05-01T10:00:00Z"
    generation: 1
    managedFields:
    - apiVersion: networking.istio.io/v1
      fieldsType: FieldsV1
      manager: kubectl-client-side-apply
    name: reviews
    namespace: default
    resourceVersion: "1234"
    uid: 7c1b3f6e-0000-4000-8000-000000000000
  spec:
    host: reviews
    subsets:
    - labels:
        version: v1
      name: v1
  status: {}
metadata:
  resourceVersion: ""
"#;
    let (r, _) = parse_ok("kubectl.yaml", text);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].key().to_string(), "DestinationRule/default/reviews");
    assert_eq!(r[0].metadata.annotations.len(), 1);
    let bad = text.replace("host: reviews", "host: \"\"");
    let parsed = parse_err("kubectl.yaml", &bad);
    let e = error_at(&parsed, "items[0].spec.host");
    assert_eq!(e.line, 21);
}

#[test]
fn an_invalid_document_yields_no_resource_and_the_caller_decides() {
    let text = format!("{}---\n{}", vs(ROUTE), dr("host: \"\"\n"));
    let parsed = parse_documents("mixed.yaml", &text);
    assert_eq!(parsed.resources.len(), 1);
    assert_eq!(parsed.errors.len(), 1);
    assert_eq!(parsed.errors[0].document, 2);
    assert!(parsed.into_result().is_err());
}
