//! The translator, rule by rule: Istio resources and registered instances in, Envoy
//! resources out, and every resource out accepted by Weft's own proxy.

use prost::Message;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use weft_control::registry::Instance;
use weft_control::translate::listener::ProxyInfo;
use weft_control::translate::Snapshot;
use weft_model::Resource as ModelResource;
use weft_xds::pb::envoy::config::cluster::v3::{cluster, Cluster};
use weft_xds::pb::envoy::config::core::v3::http_uri::HttpUpstreamType;
use weft_xds::pb::envoy::config::core::v3::{
    address, transport_socket, HealthStatus, Node, TransportSocket,
};
use weft_xds::pb::envoy::config::endpoint::v3::{lb_endpoint, ClusterLoadAssignment};
use weft_xds::pb::envoy::config::listener::v3::{filter, Listener};
use weft_xds::pb::envoy::config::route::v3 as r;
use weft_xds::pb::envoy::extensions::filters::http::jwt_authn::v3 as jwt;
use weft_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use weft_xds::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context, CommonTlsContext, DownstreamTlsContext, UpstreamTlsContext,
};
use weft_xds::pb::envoy::extensions::upstreams::http::v3::{
    http_protocol_options, HttpProtocolOptions,
};
use weft_xds::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use weft_xds::{type_url, Resource};

const NETWORKING: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/bookinfo/networking"
);

// ---- building a mesh ----

fn parse(name: &str, text: &str) -> Vec<ModelResource> {
    weft_model::parse_documents(name, text)
        .into_result()
        .unwrap_or_else(|e| panic!("{name} does not parse: {e}"))
        .0
}

fn example(file: &str) -> Vec<ModelResource> {
    let path = format!("{NETWORKING}/{file}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    parse(file, &text)
}

/// A sidecar-registered instance on 127.0.0.1 (built from JSON, as the registry stores
/// instances).
fn instance(service: &str, version: &str, inbound: u16, healthy: bool) -> Arc<Instance> {
    instance_with(service, "default", version, 9080, inbound, "http", healthy)
}

fn instance_with(
    service: &str,
    namespace: &str,
    version: &str,
    port: u16,
    inbound: u16,
    protocol: &str,
    healthy: bool,
) -> Arc<Instance> {
    let json = serde_json::json!({
        "id": format!("{service}-{version}-{inbound}.{namespace}"),
        "service": service,
        "namespace": namespace,
        "labels": {"app": service, "version": version},
        "address": "127.0.0.1",
        "ports": [{
            "name": protocol,
            "service_port": port,
            "endpoint_port": inbound,
            "app_port": inbound + 1000,
            "protocol": protocol,
        }],
        "healthy": healthy,
        "sidecar": true,
        "weight": 1,
    });
    Arc::new(serde_json::from_value(json).expect("an instance"))
}

/// Bookinfo's instances; one of reviews v2's two instances has not passed its health
/// check.
fn bookinfo_instances() -> Vec<Arc<Instance>> {
    vec![
        instance("productpage", "v1", 15100, true),
        instance("details", "v1", 15200, true),
        instance("reviews", "v1", 15300, true),
        instance("reviews", "v2", 15310, true),
        instance("reviews", "v2", 15311, false),
        instance("reviews", "v3", 15320, true),
        instance("ratings", "v1", 15400, true),
    ]
}

fn sidecar(service: &str) -> ProxyInfo {
    ProxyInfo {
        role: "sidecar".into(),
        service: service.into(),
        namespace: "default".into(),
        labels: [("app".to_string(), service.to_string())].into(),
        inbound_address: Some([127, 0, 0, 1].into()),
        ports: vec![
            ("http".into(), 9080, 9081, 15006, "http".into()),
            ("grpc".into(), 50051, 50052, 15007, "grpc".into()),
            ("tcp-db".into(), 5432, 5433, 15008, "tcp".into()),
            ("tls".into(), 8443, 8444, 15009, "tls".into()),
        ],
        outbound_port: Some(15001),
        gateway_ports: Vec::new(),
        vhds: false,
    }
}

fn ingress_gateway(ports: &[(u16, u16)]) -> ProxyInfo {
    ProxyInfo {
        role: "gateway".into(),
        service: "istio-ingressgateway".into(),
        namespace: "istio-system".into(),
        labels: [("istio".to_string(), "ingressgateway".to_string())].into(),
        inbound_address: Some([127, 0, 0, 1].into()),
        ports: Vec::new(),
        outbound_port: None,
        gateway_ports: ports.to_vec(),
        vhds: false,
    }
}

// ---- reading what came out ----

fn decode<M: Message + Default>(r: &Resource) -> M {
    M::decode(r.body.value.as_slice()).unwrap_or_else(|e| panic!("{}: {e}", r.name))
}

fn one(snap: &Snapshot, proxy: &ProxyInfo, type_url: &str, name: &str) -> Arc<Resource> {
    let names = BTreeSet::from([name.to_string()]);
    snap.resources_for(proxy, type_url, Some(&names))
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no {type_url} named {name}"))
}

fn cluster(snap: &Snapshot, name: &str) -> Cluster {
    decode(&one(snap, &sidecar("productpage"), type_url::CLUSTER, name))
}

fn assignment(snap: &Snapshot, name: &str) -> ClusterLoadAssignment {
    decode(&one(
        snap,
        &sidecar("productpage"),
        type_url::CLUSTER_LOAD_ASSIGNMENT,
        name,
    ))
}

fn route_config(snap: &Snapshot, proxy: &ProxyInfo, name: &str) -> r::RouteConfiguration {
    decode(&one(snap, proxy, type_url::ROUTE_CONFIGURATION, name))
}

/// The outbound routes of `host:port` as clients in `default` see them.
fn outbound(snap: &Snapshot, host: &str, port: u16) -> Vec<r::Route> {
    let rc = route_config(snap, &sidecar("productpage"), "outbound|default");
    let name = format!("{host}.default.svc.cluster.local:{port}");
    rc.virtual_hosts
        .into_iter()
        .find(|vh| vh.name == name)
        .unwrap_or_else(|| panic!("no virtual host {name}"))
        .routes
}

fn named<'a>(routes: &'a [r::Route], name: &str) -> Vec<&'a r::Route> {
    routes.iter().filter(|r| r.name == name).collect()
}

fn forward(route: &r::Route) -> &r::RouteAction {
    match &route.action {
        Some(r::route::Action::Route(a)) => a,
        other => panic!("route {} does not forward: {other:?}", route.name),
    }
}

fn target(route: &r::Route) -> Vec<(String, u32)> {
    match &forward(route).cluster_specifier {
        Some(r::route_action::ClusterSpecifier::Cluster(c)) => vec![(c.clone(), 100)],
        Some(r::route_action::ClusterSpecifier::WeightedClusters(w)) => w
            .clusters
            .iter()
            .map(|c| (c.name.clone(), c.weight.map_or(0, |w| w.value)))
            .collect(),
        other => panic!("unexpected target {other:?}"),
    }
}

fn path(route: &r::Route) -> Option<&r::route_match::PathSpecifier> {
    route.r#match.as_ref()?.path_specifier.as_ref()
}

fn warnings(snap: &Snapshot) -> Vec<String> {
    snap.diagnostics
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .warnings
        .clone()
}

fn manager(l: &Listener) -> hcm::HttpConnectionManager {
    let chain = l.filter_chains.first().expect("a filter chain");
    let Some(filter::ConfigType::TypedConfig(any)) = &chain.filters[0].config_type else {
        panic!("no typed config")
    };
    assert_eq!(
        any.type_url,
        type_url::HTTP_CONNECTION_MANAGER,
        "{}",
        l.name
    );
    hcm::HttpConnectionManager::decode(any.value.as_slice()).expect("an HCM")
}

fn rds_name(m: &hcm::HttpConnectionManager) -> Option<&str> {
    match &m.route_specifier {
        Some(hcm::http_connection_manager::RouteSpecifier::Rds(rds)) => {
            Some(&rds.route_config_name)
        }
        _ => None,
    }
}

fn socket(l: &Listener) -> (String, u32) {
    match l.address.as_ref().and_then(|a| a.address.as_ref()) {
        Some(address::Address::SocketAddress(s)) => (
            s.address.clone(),
            match s.port_specifier {
                Some(
                    weft_xds::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(
                        p,
                    ),
                ) => p,
                _ => 0,
            },
        ),
        _ => panic!("no socket address"),
    }
}

fn protocol_options(c: &Cluster) -> Option<HttpProtocolOptions> {
    c.typed_extension_protocol_options
        .get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions")
        .map(|a| HttpProtocolOptions::decode(a.value.as_slice()).expect("options"))
}

fn is_http2(c: &Cluster) -> bool {
    use http_protocol_options::explicit_http_config::ProtocolConfig;
    use http_protocol_options::UpstreamProtocolOptions;
    matches!(
        protocol_options(c).and_then(|o| o.upstream_protocol_options),
        Some(UpstreamProtocolOptions::ExplicitHttpConfig(e))
            if matches!(e.protocol_config, Some(ProtocolConfig::Http2ProtocolOptions(_)))
    )
}

fn duration(seconds: i64, nanos: i32) -> Option<weft_xds::pb::google::protobuf::Duration> {
    Some(weft_xds::pb::google::protobuf::Duration { seconds, nanos })
}

// ---- services ----

#[test]
fn hosts_resolve_by_short_name_namespace_and_fqdn() {
    let mut instances = bookinfo_instances();
    instances.push(instance_with(
        "ratings", "prod", "v9", 9080, 15900, "http", true,
    ));
    let vs = parse(
        "vs.yaml",
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: prod}
spec:
  hosts: [ratings]
  http:
  - match: [{uri: {prefix: /short}}]
    route: [{destination: {host: ratings}}]
  - match: [{uri: {prefix: /other-namespace}}]
    route: [{destination: {host: ratings.default}}]
  - match: [{uri: {prefix: /svc}}]
    route: [{destination: {host: ratings.default.svc}}]
  - route: [{destination: {host: ratings.default.svc.cluster.local}}]
"#,
    );
    let snap = Snapshot::build(1, &vs, &instances);
    let prod = ProxyInfo {
        namespace: "prod".into(),
        ..sidecar("client")
    };
    let rc = route_config(&snap, &prod, "outbound|prod");
    let vh = rc
        .virtual_hosts
        .iter()
        .find(|vh| vh.name == "ratings.prod.svc.cluster.local:9080")
        .expect("the prod ratings");
    // Short names only within the service's namespace.
    assert!(vh.domains.contains(&"ratings".to_string()));
    assert!(vh.domains.contains(&"ratings.prod:9080".to_string()));
    let targets: Vec<_> = vh
        .routes
        .iter()
        .take(4)
        .map(|r| target(r)[0].0.clone())
        .collect();
    assert_eq!(
        targets,
        vec![
            "outbound|9080||ratings.prod.svc.cluster.local",
            "outbound|9080||ratings.default.svc.cluster.local",
            "outbound|9080||ratings.default.svc.cluster.local",
            "outbound|9080||ratings.default.svc.cluster.local",
        ]
    );
    // The VirtualService of prod does not touch ratings of default.
    let rc = route_config(&snap, &sidecar("productpage"), "outbound|default");
    let vh = rc
        .virtual_hosts
        .iter()
        .find(|vh| vh.name == "ratings.default.svc.cluster.local:9080")
        .expect("the default ratings");
    assert_eq!(vh.routes[0].name, "default");
    assert!(!vh.domains.contains(&"ratings.prod:9080".to_string()));
    assert!(
        !rc.virtual_hosts
            .iter()
            .find(|vh| vh.name == "ratings.prod.svc.cluster.local:9080")
            .expect("prod ratings from default")
            .domains
            .contains(&"ratings".to_string()),
        "short names are namespace-relative"
    );
}

// ---- VirtualService → routes ----

const REVIEWS_RICH: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match:
    - headers: {end-user: {exact: jason}}
      uri: {prefix: /reviews}
      method: {exact: GET}
      queryParams: {debug: {exact: "1"}}
      ignoreUriCase: true
    - uri: {regex: "/r/[0-9]+"}
      withoutHeaders: {x-skip: {prefix: y}}
      authority: {exact: "reviews:9080"}
    rewrite: {uri: /v2/reviews}
    timeout: 2s
    retries: {attempts: 3, perTryTimeout: 500ms, retryOn: "5xx,503,connect-failure,http3-post-connect-failure"}
    headers:
      request:
        set: {x-route: jason, host: reviews.internal}
        add: {x-trace: "1"}
        remove: [x-debug]
      response:
        set: {x-served-by: reviews}
        remove: [x-internal]
    route:
    - destination: {host: reviews, subset: v2}
      weight: 80
      headers:
        request: {set: {x-arm: v2}}
    - destination: {host: reviews, subset: v3}
      weight: 20
  - name: moved
    match: [{uri: {exact: /old}}]
    redirect: {uri: /new, authority: example.com, redirectCode: 302}
  - name: derived
    match: [{uri: {exact: /derived}}]
    redirect: {uri: /new, derivePort: FROM_REQUEST_PORT, scheme: https}
  - name: gone
    match: [{uri: {prefix: /gone}}]
    directResponse: {status: 410, body: {string: gone}}
  - name: legacy
    match: [{uri: {prefix: /legacy}}]
    rewrite: {uriRegexRewrite: {match: "^/legacy/(.*)$", rewrite: "/\\1"}, authority: reviews.example.com}
    route: [{destination: {host: reviews, subset: v1}}]
  - name: fast
    match: [{uri: {prefix: /fast}}]
    retries: {attempts: 0}
    fault: {abort: {httpStatus: 500, percentage: {value: 10}}}
    route: [{destination: {host: reviews, subset: v1}}]
  - name: exact-rewrite
    match: [{uri: {exact: /exact}}]
    rewrite: {uri: /elsewhere}
    route: [{destination: {host: reviews, subset: v1}}]
  - route:
    - destination: {host: reviews, subset: v1}
"#;

fn reviews_snapshot() -> Snapshot {
    let mut resources = example("destination-rule-all.yaml");
    resources.extend(parse("reviews.yaml", REVIEWS_RICH));
    Snapshot::build(1, &resources, &bookinfo_instances())
}

#[test]
fn matches_become_route_matches() {
    let snap = reviews_snapshot();
    let routes = outbound(&snap, "reviews", 9080);
    let jason = named(&routes, "jason");
    assert_eq!(jason.len(), 2, "one Envoy route per match block");
    let m = jason[0].r#match.as_ref().expect("match");
    assert_eq!(
        m.path_specifier,
        Some(r::route_match::PathSpecifier::Prefix("/reviews".into()))
    );
    assert_eq!(m.case_sensitive.map(|b| b.value), Some(false));
    let headers: BTreeMap<&str, (&r::HeaderMatcher, bool)> = m
        .headers
        .iter()
        .map(|h| (h.name.as_str(), (h, h.invert_match)))
        .collect();
    assert!(headers.contains_key(":method"));
    assert!(headers.contains_key("end-user"));
    assert_eq!(m.query_parameters.len(), 1);
    assert_eq!(m.query_parameters[0].name, "debug");
    let m = jason[1].r#match.as_ref().expect("match");
    assert!(matches!(
        &m.path_specifier,
        Some(r::route_match::PathSpecifier::SafeRegex(re)) if re.regex == "/r/[0-9]+"
    ));
    let skip = m
        .headers
        .iter()
        .find(|h| h.name == "x-skip")
        .expect("withoutHeaders");
    assert!(skip.invert_match);
    assert!(m.headers.iter().any(|h| h.name == ":authority"));
    let exact = named(&routes, "moved");
    assert_eq!(
        path(exact[0]),
        Some(&r::route_match::PathSpecifier::Path("/old".into()))
    );
    // No match: everything.
    let last = &routes[routes.len() - 2];
    assert_eq!(
        path(last),
        Some(&r::route_match::PathSpecifier::Prefix("/".into()))
    );
    // CONNECT tunnels come last.
    assert!(matches!(
        path(&routes[routes.len() - 1]),
        Some(r::route_match::PathSpecifier::ConnectMatcher(_))
    ));
}

#[test]
fn weighted_destinations_go_to_subset_clusters() {
    let mut resources = example("destination-rule-all.yaml");
    resources.extend(example("virtual-service-reviews-90-10.yaml"));
    let snap = Snapshot::build(1, &resources, &bookinfo_instances());
    let routes = outbound(&snap, "reviews", 9080);
    assert_eq!(
        target(&routes[0]),
        vec![
            (
                "outbound|9080|v1|reviews.default.svc.cluster.local".into(),
                90
            ),
            (
                "outbound|9080|v2|reviews.default.svc.cluster.local".into(),
                10
            ),
        ]
    );
    // A single destination is a plain cluster.
    let snap = Snapshot::build(
        1,
        &[
            example("destination-rule-all.yaml"),
            example("virtual-service-reviews-v3.yaml"),
        ]
        .concat(),
        &bookinfo_instances(),
    );
    assert_eq!(
        target(&outbound(&snap, "reviews", 9080)[0]),
        vec![(
            "outbound|9080|v3|reviews.default.svc.cluster.local".into(),
            100
        )]
    );
    // A header match before the default, as in the test-v2 file.
    let snap = Snapshot::build(
        1,
        &[
            example("destination-rule-all.yaml"),
            example("virtual-service-reviews-test-v2.yaml"),
        ]
        .concat(),
        &bookinfo_instances(),
    );
    let routes = outbound(&snap, "reviews", 9080);
    assert_eq!(
        routes[0].r#match.as_ref().expect("m").headers[0].name,
        "end-user"
    );
    assert_eq!(
        target(&routes[0])[0].0,
        "outbound|9080|v2|reviews.default.svc.cluster.local"
    );
    assert_eq!(
        target(&routes[1])[0].0,
        "outbound|9080|v1|reviews.default.svc.cluster.local"
    );
    assert!(warnings(&snap).is_empty(), "{:?}", warnings(&snap));
}

#[test]
fn timeouts_and_retries_follow_istio() {
    let snap = reviews_snapshot();
    let routes = outbound(&snap, "reviews", 9080);
    let jason = forward(named(&routes, "jason")[0]);
    assert_eq!(jason.timeout, duration(2, 0));
    let retry = jason.retry_policy.as_ref().expect("retries");
    assert_eq!(retry.num_retries.map(|n| n.value), Some(3));
    assert_eq!(retry.per_try_timeout, duration(0, 500_000_000));
    // Status codes among the conditions become retriable codes; a condition the proxy
    // does not implement is left out, with a warning.
    assert_eq!(retry.retry_on, "5xx,connect-failure,retriable-status-codes");
    assert_eq!(retry.retriable_status_codes, vec![503]);
    assert!(warnings(&snap)
        .iter()
        .any(|w| w.contains("http3-post-connect-failure")));
    // No retries given: Istio's default policy; no timeout.
    let default = forward(
        routes
            .iter()
            .find(|r| r.name.ends_with("/7"))
            .expect("last"),
    );
    assert_eq!(default.timeout, duration(0, 0));
    let retry = default.retry_policy.as_ref().expect("default retries");
    assert_eq!(
        retry.retry_on,
        "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
    );
    assert_eq!(retry.num_retries.map(|n| n.value), Some(2));
    assert_eq!(retry.retriable_status_codes, vec![503]);
    // attempts: 0 turns retries off.
    assert!(forward(named(&routes, "fast")[0]).retry_policy.is_none());
    assert!(warnings(&snap)
        .iter()
        .any(|w| w.contains("fault injection")));
    // Services without a VirtualService get the defaults too.
    let details = outbound(&snap, "details", 9080);
    assert_eq!(details[0].name, "default");
    assert_eq!(forward(&details[0]).timeout, duration(0, 0));
    assert!(forward(&details[0]).retry_policy.is_some());
}

#[test]
fn rewrites_redirects_and_direct_responses() {
    let snap = reviews_snapshot();
    let routes = outbound(&snap, "reviews", 9080);
    let jason = named(&routes, "jason");
    // Prefix match: the matched prefix is replaced; regex match: the whole path.
    assert_eq!(forward(jason[0]).prefix_rewrite, "/v2/reviews");
    let whole = forward(jason[1])
        .regex_rewrite
        .as_ref()
        .expect("regex rewrite");
    assert_eq!(whole.substitution, "/v2/reviews");
    let exact = forward(named(&routes, "exact-rewrite")[0]);
    assert_eq!(
        exact
            .regex_rewrite
            .as_ref()
            .map(|r| r.substitution.as_str()),
        Some("/elsewhere")
    );
    let legacy = forward(named(&routes, "legacy")[0]);
    let rr = legacy.regex_rewrite.as_ref().expect("uriRegexRewrite");
    assert_eq!(
        rr.pattern.as_ref().map(|p| p.regex.as_str()),
        Some("^/legacy/(.*)$")
    );
    assert_eq!(rr.substitution, "/\\1");
    assert_eq!(
        legacy.host_rewrite_specifier,
        Some(r::route_action::HostRewriteSpecifier::HostRewriteLiteral(
            "reviews.example.com".into()
        ))
    );
    let Some(r::route::Action::Redirect(moved)) = &named(&routes, "moved")[0].action else {
        panic!("moved redirects")
    };
    assert_eq!(moved.host_redirect, "example.com");
    assert_eq!(
        moved.response_code,
        r::redirect_action::RedirectResponseCode::Found as i32
    );
    assert_eq!(
        moved.path_rewrite_specifier,
        Some(r::redirect_action::PathRewriteSpecifier::PathRedirect(
            "/new".into()
        ))
    );
    let Some(r::route::Action::Redirect(derived)) = &named(&routes, "derived")[0].action else {
        panic!("derived redirects")
    };
    assert_eq!(derived.port_redirect, 9080, "FROM_REQUEST_PORT");
    assert_eq!(
        derived.scheme_rewrite_specifier,
        Some(r::redirect_action::SchemeRewriteSpecifier::SchemeRedirect(
            "https".into()
        ))
    );
    assert_eq!(
        derived.response_code,
        r::redirect_action::RedirectResponseCode::MovedPermanently as i32
    );
    let Some(r::route::Action::DirectResponse(gone)) = &named(&routes, "gone")[0].action else {
        panic!("gone answers directly")
    };
    assert_eq!(gone.status, 410);
    assert_eq!(
        gone.body.as_ref().and_then(|b| b.specifier.clone()),
        Some(
            weft_xds::pb::envoy::config::core::v3::data_source::Specifier::InlineString(
                "gone".into()
            )
        )
    );
}

#[test]
fn header_operations() {
    use weft_xds::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
    let snap = reviews_snapshot();
    let routes = outbound(&snap, "reviews", 9080);
    let jason = named(&routes, "jason")[0];
    let added: Vec<(String, String, i32)> = jason
        .request_headers_to_add
        .iter()
        .map(|h| {
            let v = h.header.as_ref().expect("header");
            (v.key.clone(), v.value.clone(), h.append_action)
        })
        .collect();
    assert_eq!(
        added,
        vec![
            (
                "x-route".into(),
                "jason".into(),
                HeaderAppendAction::OverwriteIfExistsOrAdd as i32
            ),
            (
                "x-trace".into(),
                "1".into(),
                HeaderAppendAction::AppendIfExistsOrAdd as i32
            ),
        ],
        "the host is not a header to set"
    );
    assert_eq!(jason.request_headers_to_remove, vec!["x-debug"]);
    assert_eq!(jason.response_headers_to_add.len(), 1);
    assert_eq!(jason.response_headers_to_remove, vec!["x-internal"]);
    // Setting `host` rewrites the authority.
    assert_eq!(
        forward(jason).host_rewrite_specifier,
        Some(r::route_action::HostRewriteSpecifier::HostRewriteLiteral(
            "reviews.internal".into()
        ))
    );
    let Some(r::route_action::ClusterSpecifier::WeightedClusters(w)) =
        &forward(jason).cluster_specifier
    else {
        panic!("weighted")
    };
    assert_eq!(
        w.clusters[0].request_headers_to_add[0]
            .header
            .as_ref()
            .map(|h| h.key.as_str()),
        Some("x-arm")
    );
}

// ---- DestinationRule → clusters ----

const POLICIES: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
    connectionPool:
      tcp: {connectTimeout: 2s, maxConnections: 100}
      http: {idleTimeout: 30s, maxRequestsPerConnection: 10}
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer: {simple: ROUND_ROBIN}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer:
        consistentHash: {httpHeaderName: x-user}
  - name: v3
    labels: {version: v3}
    trafficPolicy:
      loadBalancer:
        consistentHash:
          maglev: {tableSize: 65537}
          httpCookie: {name: session, path: /, ttl: 60s}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings.default.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      consistentHash:
        useSourceIp: true
        ringHash: {minimumRingSize: 2048}
  subsets:
  - name: v1
    labels: {version: v1}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: details}
spec:
  host: details
  trafficPolicy:
    loadBalancer: {simple: RANDOM}
    connectionPool:
      http: {h2UpgradePolicy: UPGRADE}
    tls: {mode: SIMPLE}
  subsets:
  - name: v1
    labels: {version: v1}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: productpage}
spec:
  host: productpage
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpQueryParameterName: user}
    connectionPool:
      http: {useClientProtocol: true}
  subsets:
  - name: v1
    labels: {version: v1}
"#;

#[test]
fn destination_rules_set_balancing_and_connections() {
    use cluster::LbPolicy;
    let mut resources = parse("policies.yaml", POLICIES);
    resources.extend(parse("reviews.yaml", REVIEWS_RICH));
    let snap = Snapshot::build(1, &resources, &bookinfo_instances());
    let reviews = |subset: &str| {
        cluster(
            &snap,
            &format!("outbound|9080|{subset}|reviews.default.svc.cluster.local"),
        )
    };
    let base = reviews("");
    assert_eq!(base.lb_policy, LbPolicy::LeastRequest as i32);
    assert!(base.load_balancing_policy.is_none());
    assert_eq!(base.connect_timeout, duration(2, 0));
    let common = protocol_options(&base)
        .and_then(|o| o.common_http_protocol_options)
        .expect("common options");
    assert_eq!(common.idle_timeout, duration(30, 0));
    assert_eq!(
        common.max_requests_per_connection.map(|v| v.value),
        Some(10)
    );
    // Subsets inherit what they do not override.
    let v1 = reviews("v1");
    assert_eq!(v1.lb_policy, LbPolicy::RoundRobin as i32);
    assert_eq!(v1.connect_timeout, duration(2, 0));
    let v2 = reviews("v2");
    assert_eq!(v2.lb_policy, LbPolicy::RingHash as i32);
    let v3 = reviews("v3");
    assert_eq!(v3.lb_policy, LbPolicy::Maglev as i32);
    assert!(matches!(
        v3.lb_config,
        Some(cluster::LbConfig::MaglevLbConfig(ref m)) if m.table_size.map(|t| t.value) == Some(65537)
    ));
    // The hash key travels on the route.
    let routes = outbound(&snap, "reviews", 9080);
    let jason = forward(named(&routes, "jason")[0]);
    assert!(matches!(
        jason.hash_policy[0].policy_specifier,
        Some(r::route_action::hash_policy::PolicySpecifier::Header(ref h)) if h.header_name == "x-user"
    ));
    let ratings = cluster(&snap, "outbound|9080||ratings.default.svc.cluster.local");
    assert_eq!(ratings.lb_policy, LbPolicy::RingHash as i32);
    assert!(matches!(
        ratings.lb_config,
        Some(cluster::LbConfig::RingHashLbConfig(ref c)) if c.minimum_ring_size.map(|m| m.value) == Some(2048)
    ));
    let details = cluster(&snap, "outbound|9080|v1|details.default.svc.cluster.local");
    assert_eq!(details.lb_policy, LbPolicy::Random as i32);
    assert!(is_http2(&details), "h2UpgradePolicy: UPGRADE");
    let productpage = cluster(
        &snap,
        "outbound|9080||productpage.default.svc.cluster.local",
    );
    assert!(matches!(
        protocol_options(&productpage).and_then(|o| o.upstream_protocol_options),
        Some(http_protocol_options::UpstreamProtocolOptions::UseDownstreamProtocolConfig(_))
    ));
    let pp_routes = outbound(&snap, "productpage", 9080);
    assert!(matches!(
        forward(&pp_routes[0]).hash_policy[0].policy_specifier,
        Some(r::route_action::hash_policy::PolicySpecifier::QueryParameter(ref q)) if q.name == "user"
    ));
    // The mesh default: peak EWMA for Weft, round robin for the others.
    let ratings_v1 = cluster(&snap, "outbound|9080|v1|ratings.default.svc.cluster.local");
    assert_eq!(ratings_v1.lb_policy, LbPolicy::RingHash as i32);
    let undeclared = Snapshot::build(1, &[], &bookinfo_instances());
    let plain = cluster(
        &undeclared,
        "outbound|9080||reviews.default.svc.cluster.local",
    );
    let names: Vec<String> = plain
        .load_balancing_policy
        .expect("a policy list")
        .policies
        .iter()
        .filter_map(|p| p.typed_extension_config.as_ref().map(|t| t.name.clone()))
        .collect();
    assert_eq!(
        names,
        vec![
            "weft.lb.peak_ewma",
            "envoy.load_balancing_policies.round_robin"
        ]
    );
    // What the proxy cannot do yet is named, not sent.
    let w = warnings(&snap);
    for what in [
        "outlierDetection",
        "connectionPool.tcp.maxConnections",
        "tls SIMPLE/MUTUAL",
        "httpCookie.ttl",
    ] {
        assert!(w.iter().any(|x| x.contains(what)), "{what} in {w:?}");
    }
    assert!(base.outlier_detection.is_none() && base.circuit_breakers.is_none());
}

#[test]
fn port_level_settings_replace_the_rules() {
    let resources = parse(
        "dr.yaml",
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: multi}
spec:
  host: multi
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
    connectionPool: {tcp: {connectTimeout: 3s}}
    portLevelSettings:
    - port: {number: 9090}
      loadBalancer: {simple: RANDOM}
"#,
    );
    let instances = vec![
        instance_with("multi", "default", "v1", 9080, 16000, "http", true),
        instance_with("multi", "default", "v1", 9090, 16001, "http", true),
    ];
    let snap = Snapshot::build(1, &resources, &instances);
    let a = cluster(&snap, "outbound|9080||multi.default.svc.cluster.local");
    assert_eq!(a.lb_policy, cluster::LbPolicy::LeastRequest as i32);
    assert_eq!(a.connect_timeout, duration(3, 0));
    let b = cluster(&snap, "outbound|9090||multi.default.svc.cluster.local");
    assert_eq!(b.lb_policy, cluster::LbPolicy::Random as i32);
    // Port-level settings do not inherit: the connect timeout is the default again.
    assert_eq!(b.connect_timeout, duration(10, 0));
}

#[test]
fn subset_assignments_hold_matching_healthy_instances() {
    let snap = Snapshot::build(
        1,
        &example("destination-rule-all.yaml"),
        &bookinfo_instances(),
    );
    let ports = |name: &str| -> Vec<(u32, i32)> {
        assignment(&snap, name)
            .endpoints
            .iter()
            .flat_map(|l| l.lb_endpoints.iter())
            .map(|e| {
                let Some(lb_endpoint::HostIdentifier::Endpoint(ep)) = &e.host_identifier else {
                    panic!("an endpoint")
                };
                let Some(address::Address::SocketAddress(s)) =
                    ep.address.as_ref().and_then(|a| a.address.as_ref())
                else {
                    panic!("an address")
                };
                let Some(
                    weft_xds::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(
                        p,
                    ),
                ) = s.port_specifier
                else {
                    panic!("a port")
                };
                (p, e.health_status)
            })
            .collect()
    };
    let healthy = HealthStatus::Healthy as i32;
    assert_eq!(
        ports("outbound|9080|v2|reviews.default.svc.cluster.local"),
        vec![(15310, healthy)],
        "v2's unhealthy instance takes no traffic"
    );
    assert_eq!(
        ports("outbound|9080|v1|reviews.default.svc.cluster.local"),
        vec![(15300, healthy)]
    );
    assert_eq!(
        ports("outbound|9080||reviews.default.svc.cluster.local"),
        vec![(15300, healthy), (15310, healthy), (15320, healthy)]
    );
    // gRPC drops localities without a weight.
    let cla = assignment(&snap, "outbound|9080|v3|reviews.default.svc.cluster.local");
    assert!(cla.endpoints[0].load_balancing_weight.is_some());
}

#[test]
fn service_entries_and_named_hosts_resolve_by_dns() {
    let resources = parse(
        "external.yaml",
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin}
spec:
  hosts: [httpbin.org]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
  location: MESH_EXTERNAL
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db}
spec:
  hosts: [db.internal]
  ports: [{number: 5432, name: tcp-pg, protocol: TCP, targetPort: 15432}]
  resolution: STATIC
  endpoints:
  - address: 10.0.0.5
  - address: 10.0.0.6
    ports: {tcp-pg: 6543}
---
apiVersion: weft.dev/v1
kind: Workload
metadata: {name: legacy-1}
spec:
  service: legacy
  address: legacy.example.internal
  ports: {http: 8000}
"#,
    );
    let snap = Snapshot::build(1, &resources, &[]);
    let httpbin = cluster(&snap, "outbound|80||httpbin.org");
    assert_eq!(
        httpbin.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::StrictDns as i32
        ))
    );
    let hosts: Vec<String> = httpbin
        .load_assignment
        .iter()
        .flat_map(|a| a.endpoints.iter())
        .flat_map(|l| l.lb_endpoints.iter())
        .filter_map(|e| match &e.host_identifier {
            Some(lb_endpoint::HostIdentifier::Endpoint(ep)) => {
                match ep.address.as_ref().and_then(|a| a.address.as_ref()) {
                    Some(address::Address::SocketAddress(s)) => Some(s.address.clone()),
                    _ => None,
                }
            }
            _ => None,
        })
        .collect();
    assert_eq!(hosts, vec!["httpbin.org"]);
    let names = BTreeSet::from(["outbound|80||httpbin.org".to_string()]);
    assert!(
        snap.resources_for(
            &sidecar("productpage"),
            type_url::CLUSTER_LOAD_ASSIGNMENT,
            Some(&names)
        )
        .is_empty(),
        "DNS clusters carry their endpoints"
    );
    let legacy = cluster(&snap, "outbound|8000||legacy.default.svc.cluster.local");
    assert_eq!(
        legacy.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::StrictDns as i32
        ))
    );
    let db = assignment(&snap, "outbound|5432||db.internal");
    let ports: Vec<u32> = db.endpoints[0]
        .lb_endpoints
        .iter()
        .filter_map(|e| match &e.host_identifier {
            Some(lb_endpoint::HostIdentifier::Endpoint(ep)) => {
                match ep.address.as_ref().and_then(|a| a.address.as_ref()) {
                    Some(address::Address::SocketAddress(s)) => match s.port_specifier {
                        Some(weft_xds::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(p)) => Some(p),
                        _ => None,
                    },
                    _ => None,
                }
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        ports,
        vec![15432, 6543],
        "targetPort, then the endpoint's own"
    );
    // An opaque TCP service is reached by CONNECT only.
    let rc = route_config(&snap, &sidecar("productpage"), "outbound|default");
    let db_vh = rc
        .virtual_hosts
        .iter()
        .find(|vh| vh.name == "db.internal:5432")
        .expect("db");
    assert_eq!(db_vh.routes.len(), 1);
    assert!(matches!(
        path(&db_vh.routes[0]),
        Some(r::route_match::PathSpecifier::ConnectMatcher(_))
    ));
}

// ---- listeners ----

#[test]
fn sidecar_listeners_and_local_clusters() {
    let snap = Snapshot::build(1, &[], &bookinfo_instances());
    let proxy = sidecar("productpage");
    let listeners: BTreeMap<String, Listener> = snap
        .resources_for(&proxy, type_url::LISTENER, None)
        .iter()
        .map(|r| (r.name.clone(), decode(r)))
        .collect();
    assert_eq!(
        listeners.keys().cloned().collect::<Vec<_>>(),
        vec![
            "inbound|15006",
            "inbound|15007",
            "inbound|15008",
            "inbound|15009",
            "outbound"
        ]
    );
    assert_eq!(
        socket(&listeners["inbound|15006"]),
        ("127.0.0.1".into(), 15006)
    );
    let http = manager(&listeners["inbound|15006"]);
    let Some(hcm::http_connection_manager::RouteSpecifier::RouteConfig(rc)) = &http.route_specifier
    else {
        panic!("inline routes")
    };
    assert_eq!(
        target(&rc.virtual_hosts[0].routes[0])[0].0,
        "inbound|9081||"
    );
    // TCP and TLS ports are forwarded as bytes.
    for name in ["inbound|15008", "inbound|15009"] {
        let f = &listeners[name].filter_chains[0].filters[0];
        assert_eq!(f.name, "envoy.filters.network.tcp_proxy", "{name}");
    }
    let out = manager(&listeners["outbound"]);
    assert_eq!(rds_name(&out), Some("outbound|default"));
    assert_eq!(socket(&listeners["outbound"]), ("127.0.0.1".into(), 15001));
    // Local clusters: a gRPC application gets HTTP/2.
    let clusters: BTreeMap<String, Cluster> = snap
        .resources_for(&proxy, type_url::CLUSTER, None)
        .iter()
        .map(|r| (r.name.clone(), decode(r)))
        .collect();
    assert!(is_http2(&clusters["inbound|50052||"]));
    assert!(!is_http2(&clusters["inbound|9081||"]));
    // With no names asked, RDS answers the namespace's outbound routes.
    let routes = snap.resources_for(&proxy, type_url::ROUTE_CONFIGURATION, None);
    assert_eq!(routes[0].name, "outbound|default");
}

#[test]
fn proxy_info_reads_node_metadata() {
    let (node, _) = weft_xds::from_json_or_yaml::<Node>(
        r#"
id: gw-1
metadata:
  WEFT_SERVICE: istio-ingressgateway
  WEFT_NAMESPACE: istio-system
  WEFT_ROLE: gateway
  WEFT_LABELS: {istio: ingressgateway}
  WEFT_INBOUND_ADDRESS: 127.0.0.2
  WEFT_GATEWAY_PORTS: [80, {port: 8080, bind: 18080}, {port: 8443}, {bind: 1}, -1, 70000]
"#,
    )
    .expect("a node");
    let p = ProxyInfo::from_node(&node);
    assert_eq!(p.role, "gateway");
    assert_eq!(p.namespace, "istio-system");
    assert_eq!(
        p.labels.get("istio").map(String::as_str),
        Some("ingressgateway")
    );
    assert_eq!(p.inbound_address, Some([127, 0, 0, 2].into()));
    assert_eq!(p.gateway_ports, vec![(80, 80), (8080, 18080), (8443, 8443)]);
    let (node, _) = weft_xds::from_json_or_yaml::<Node>("id: grpc-client\n").expect("a node");
    assert_eq!(ProxyInfo::from_node(&node).role, "proxyless");
}

fn bookinfo_gateway_snapshot(extra: &str) -> Snapshot {
    let mut resources = example("destination-rule-all.yaml");
    resources.extend(example("bookinfo-gateway.yaml"));
    if !extra.is_empty() {
        resources.extend(parse("extra.yaml", extra));
    }
    Snapshot::build(1, &resources, &bookinfo_instances())
}

#[test]
fn bookinfo_gateway_listener_and_routes() {
    let snap = bookinfo_gateway_snapshot("");
    let gw = ingress_gateway(&[(8080, 18080)]);
    let listeners = snap.resources_for(&gw, type_url::LISTENER, None);
    assert_eq!(listeners.len(), 1);
    let l: Listener = decode(&listeners[0]);
    assert_eq!(l.name, "gateway|8080");
    assert_eq!(socket(&l), ("127.0.0.1".into(), 18080));
    let m = manager(&l);
    assert_eq!(rds_name(&m), Some("gateway|8080|default/bookinfo-gateway"));
    assert_eq!(m.use_remote_address.map(|b| b.value), Some(true));
    let rc = route_config(&snap, &gw, "gateway|8080|default/bookinfo-gateway");
    assert_eq!(rc.virtual_hosts.len(), 1);
    let vh = &rc.virtual_hosts[0];
    assert_eq!(vh.domains, vec!["*"]);
    let matches: Vec<_> = vh.routes.iter().map(|r| path(r).cloned()).collect();
    use r::route_match::PathSpecifier::{Path, Prefix};
    assert_eq!(
        matches,
        vec![
            Some(Path("/productpage".into())),
            Some(Prefix("/static".into())),
            Some(Path("/login".into())),
            Some(Path("/logout".into())),
            Some(Prefix("/api/v1/products".into())),
        ]
    );
    for route in &vh.routes {
        assert_eq!(
            target(route),
            vec![(
                "outbound|9080||productpage.default.svc.cluster.local".into(),
                100
            )]
        );
    }
    // The same without names asked; and the shared clusters.
    let routes = snap.resources_for(&gw, type_url::ROUTE_CONFIGURATION, None);
    assert_eq!(routes[0].name, "gateway|8080|default/bookinfo-gateway");
    let clusters = snap.resources_for(&gw, type_url::CLUSTER, None);
    assert!(clusters
        .iter()
        .any(|c| c.name == "outbound|9080||productpage.default.svc.cluster.local"));
    assert!(clusters.iter().all(|c| c.name.starts_with("outbound|")));
    // Not selected, no port for it, or a sidecar: nothing.
    let other = ProxyInfo {
        labels: [("istio".to_string(), "egressgateway".to_string())].into(),
        ..ingress_gateway(&[(8080, 18080)])
    };
    assert!(snap
        .resources_for(&other, type_url::LISTENER, None)
        .is_empty());
    assert!(snap
        .resources_for(&ingress_gateway(&[(9090, 19090)]), type_url::LISTENER, None)
        .is_empty());
    assert!(warnings(&snap)
        .iter()
        .any(|w| w.contains("no port for server port 8080")));
}

#[test]
fn gateway_hosts_and_match_gateways() {
    let snap = bookinfo_gateway_snapshot(
        r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*.example.com", "./internal.example.org"]
  - port: {number: 8081, name: http-redirect, protocol: HTTP}
    hosts: ["*.example.com"]
    tls: {httpsRedirect: true}
  - port: {number: 8443, name: https, protocol: HTTPS}
    hosts: ["*.example.com"]
    tls: {mode: SIMPLE, credentialName: example-cert}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-edge}
spec:
  hosts: [reviews.example.com, other.org, internal.example.org, reviews]
  gateways: [istio-system/public, mesh]
  http:
  - match:
    - uri: {prefix: /edge}
      gateways: [istio-system/public]
    route: [{destination: {host: reviews, subset: v2}}]
  - match:
    - uri: {prefix: /inside}
      gateways: [mesh]
    route: [{destination: {host: reviews, subset: v3}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"#,
    );
    let gw = ingress_gateway(&[(8080, 18080), (8081, 18081), (8443, 18443)]);
    let listeners: Vec<Listener> = snap
        .resources_for(&gw, type_url::LISTENER, None)
        .iter()
        .map(|r| decode(r))
        .collect();
    let names: Vec<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, vec!["gateway|8080", "gateway|8081"], "no TLS yet");
    assert!(warnings(&snap)
        .iter()
        .any(|w| w.contains("TLS servers are not supported yet")));
    let rds: Vec<String> = listeners
        .iter()
        .filter_map(|l| rds_name(&manager(l)).map(str::to_string))
        .collect();
    assert_eq!(
        rds,
        vec![
            "gateway|8080|default/bookinfo-gateway,istio-system/public",
            "gateway|8081|istio-system/public",
        ]
    );
    let rc = route_config(&snap, &gw, &rds[0]);
    let domains: BTreeMap<String, Vec<r::Route>> = rc
        .virtual_hosts
        .iter()
        .map(|vh| (vh.domains.join(","), vh.routes.clone()))
        .collect();
    // `*` from bookinfo; the edge VirtualService's host under `*.example.com`; not
    // `other.org` (no server has it), not `internal.example.org` (the server takes it
    // from istio-system only), not the service's own name.
    assert_eq!(
        domains.keys().cloned().collect::<Vec<_>>(),
        vec!["*", "reviews.example.com"]
    );
    let edge = &domains["reviews.example.com"];
    let prefixes: Vec<_> = edge.iter().map(|r| path(r).cloned()).collect();
    assert_eq!(
        prefixes,
        vec![
            Some(r::route_match::PathSpecifier::Prefix("/edge".into())),
            Some(r::route_match::PathSpecifier::Prefix("/".into())),
        ],
        "the mesh-only match is not the gateway's"
    );
    // Redirect to HTTPS.
    let rc = route_config(&snap, &gw, &rds[1]);
    assert_eq!(rc.virtual_hosts[0].domains, vec!["reviews.example.com"]);
    assert!(matches!(
        &rc.virtual_hosts[0].routes[0].action,
        Some(r::route::Action::Redirect(rd)) if rd.scheme_rewrite_specifier
            == Some(r::redirect_action::SchemeRewriteSpecifier::HttpsRedirect(true))
    ));
    // Sidecars see the mesh-only match, not the gateway's.
    let routes = outbound(&snap, "reviews", 9080);
    let prefixes: Vec<_> = routes.iter().map(|r| path(r).cloned()).collect();
    assert_eq!(
        prefixes[0],
        Some(r::route_match::PathSpecifier::Prefix("/inside".into()))
    );
    assert_eq!(
        prefixes[1],
        Some(r::route_match::PathSpecifier::Prefix("/".into()))
    );
}

#[test]
fn proxyless_grpc_gets_api_listeners() {
    let mut instances = bookinfo_instances();
    instances.push(instance_with(
        "greeter", "default", "v1", 50051, 16100, "grpc", true,
    ));
    let resources = parse(
        "greeter.yaml",
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: greeter}
spec:
  hosts: [greeter]
  http:
  - timeout: 3s
    route: [{destination: {host: greeter}}]
"#,
    );
    let snap = Snapshot::build(1, &resources, &instances);
    let grpc = ProxyInfo {
        role: "proxyless".into(),
        namespace: "default".into(),
        ..Default::default()
    };
    let names = BTreeSet::from(["greeter:50051".to_string(), "nowhere:1".to_string()]);
    let listeners = snap.resources_for(&grpc, type_url::LISTENER, Some(&names));
    assert_eq!(listeners.len(), 1, "unknown names get nothing");
    let l: Listener = decode(&listeners[0]);
    assert_eq!(l.name, "greeter:50051");
    let api = l
        .api_listener
        .expect("an api listener")
        .api_listener
        .expect("any");
    let m = hcm::HttpConnectionManager::decode(api.value.as_slice()).expect("hcm");
    let Some(hcm::http_connection_manager::RouteSpecifier::RouteConfig(rc)) = m.route_specifier
    else {
        panic!("inline routes")
    };
    let vh = &rc.virtual_hosts[0];
    assert!(vh.domains.contains(&"greeter:50051".to_string()));
    assert_eq!(vh.routes.len(), 1, "no CONNECT route");
    let a = forward(&vh.routes[0]);
    assert_eq!(
        target(&vh.routes[0])[0].0,
        "outbound|50051||greeter.default.svc.cluster.local"
    );
    assert!(a.timeout.is_none() && a.retry_policy.is_none());
    assert_eq!(
        a.max_stream_duration
            .as_ref()
            .and_then(|d| d.max_stream_duration),
        duration(3, 0),
        "gRPC reads the timeout here"
    );
    // The cluster speaks HTTP/2; without names no listeners.
    assert!(is_http2(&cluster(
        &snap,
        "outbound|50051||greeter.default.svc.cluster.local"
    )));
    assert!(snap
        .resources_for(&grpc, type_url::LISTENER, None)
        .is_empty());
}

// ---- everything goes through the proxy ----

/// The rich mesh: Bookinfo's rules and gateway, a VirtualService and DestinationRules
/// using every feature Weft translates, external services and a gRPC service.
fn rich_mesh(vs_file: Option<&str>) -> (Vec<ModelResource>, Vec<Arc<Instance>>) {
    let mut resources = parse("policies.yaml", POLICIES);
    resources.extend(example("bookinfo-gateway.yaml"));
    match vs_file {
        Some(f) => resources.extend(example(f)),
        None => resources.extend(parse("reviews.yaml", REVIEWS_RICH)),
    }
    resources.extend(parse(
        "more.yaml",
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin}
spec:
  hosts: [httpbin.org]
  ports: [{number: 80, name: http, protocol: HTTP}, {number: 443, name: https, protocol: HTTPS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: single}
spec:
  hosts: [single.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS_ROUND_ROBIN
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db}
spec:
  hosts: [db.internal]
  ports: [{number: 5432, name: tcp-pg, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.5, labels: {role: primary}}, {address: 10.0.0.6}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db}
spec:
  host: db.internal
  subsets: [{name: primary, labels: {role: primary}}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt}
spec:
  jwtRules:
  - issuer: issuer-a
    jwks: '{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}'
    forwardOriginalToken: true
    fromHeaders: [{name: x-jwt, prefix: "Bearer "}]
  - issuer: issuer-b
    jwksUri: http://details:9080/jwks.json
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: jwt}
spec:
  rules:
  - from: [{source: {requestPrincipals: ["issuer-a/*"], notRequestPrincipals: ["*/banned"]}}]
    when:
    - {key: "request.auth.claims[groups]", values: [admins]}
    - {key: request.auth.audiences, values: [bookinfo]}
---
apiVersion: weft.dev/v1
kind: Workload
metadata: {name: legacy-1}
spec:
  service: legacy
  address: legacy.example.internal
  ports: {http: 8000}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: greeter}
spec:
  hosts: [greeter]
  http:
  - match: [{headers: {x-canary: {regex: "^(yes|true)$"}}}]
    timeout: 1s
    retries: {attempts: 2, retryOn: "unavailable,deadline-exceeded"}
    route: [{destination: {host: greeter, subset: canary}}]
  - route: [{destination: {host: greeter, subset: stable}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: greeter}
spec:
  host: greeter
  trafficPolicy:
    portLevelSettings:
    - port: {number: 50051}
      loadBalancer: {consistentHash: {httpHeaderName: x-user, minimumRingSize: 0}}
  subsets:
  - {name: canary, labels: {version: v2}}
  - {name: stable, labels: {version: v1}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8081, name: http-redirect, protocol: HTTP}
    hosts: ["*.example.com"]
    tls: {httpsRedirect: true}
  - port: {number: 8082, name: grpc, protocol: GRPC}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: edge}
spec:
  hosts: ["bookinfo.example.com", "greeter.example.com"]
  gateways: [istio-system/public]
  http:
  - match: [{uri: {prefix: /helloworld.Greeter}}]
    route: [{destination: {host: greeter, port: {number: 50051}}}]
  - route: [{destination: {host: productpage}}]
"#,
    ));
    let mut instances = bookinfo_instances();
    instances.push(instance_with(
        "greeter", "default", "v1", 50051, 16100, "grpc", true,
    ));
    instances.push(instance_with(
        "greeter", "default", "v2", 50051, 16101, "grpc", true,
    ));
    (resources, instances)
}

/// Every resource a proxy would receive is one weft-proxy accepts, and every cluster a
/// route or listener names is one the proxy receives.
fn assert_proxy_accepts(snap: &Snapshot, proxy: &ProxyInfo) -> usize {
    let check = |type_url: &str, r: &Resource, clusters: &HashSet<String>| {
        weft_proxy::compile::check_resource(type_url, &r.body, clusters)
            .unwrap_or_else(|e| panic!("weft-proxy refuses {type_url} {:?}:\n{e}", r.name));
    };
    let clusters = snap.resources_for(proxy, type_url::CLUSTER, None);
    let names: HashSet<String> = clusters.iter().map(|c| c.name.clone()).collect();
    let mut eds = BTreeSet::new();
    for c in &clusters {
        check(type_url::CLUSTER, c, &names);
        let decoded: Cluster = decode(c);
        if let Some(e) = decoded.eds_cluster_config {
            eds.insert(e.service_name);
        }
    }
    let assignments = snap.resources_for(proxy, type_url::CLUSTER_LOAD_ASSIGNMENT, Some(&eds));
    assert_eq!(
        assignments.len(),
        eds.len(),
        "every EDS cluster has endpoints"
    );
    for a in &assignments {
        check(type_url::CLUSTER_LOAD_ASSIGNMENT, a, &names);
    }
    let listeners = snap.resources_for(proxy, type_url::LISTENER, None);
    let mut rds = BTreeSet::new();
    let mut inline = Vec::new();
    for l in &listeners {
        check(type_url::LISTENER, l, &names);
        let decoded: Listener = decode(l);
        for chain in &decoded.filter_chains {
            let Some(filter::ConfigType::TypedConfig(any)) = &chain.filters[0].config_type else {
                continue;
            };
            if any.type_url != type_url::HTTP_CONNECTION_MANAGER {
                continue;
            }
            let m = hcm::HttpConnectionManager::decode(any.value.as_slice()).expect("hcm");
            match m.route_specifier {
                Some(hcm::http_connection_manager::RouteSpecifier::Rds(r)) => {
                    rds.insert(r.route_config_name);
                }
                Some(hcm::http_connection_manager::RouteSpecifier::RouteConfig(rc)) => {
                    inline.push(rc)
                }
                _ => {}
            }
        }
    }
    let routes = snap.resources_for(proxy, type_url::ROUTE_CONFIGURATION, Some(&rds));
    assert_eq!(routes.len(), rds.len(), "every RDS name has routes");
    let mut configs = inline;
    for r in &routes {
        check(type_url::ROUTE_CONFIGURATION, r, &names);
        configs.push(decode(r));
    }
    // VHDS: the virtual hosts of the route configurations that take them.
    let vhosts = snap.resources_for(proxy, type_url::VIRTUAL_HOST, Some(&rds));
    assert_eq!(
        configs.iter().any(|rc| rc.vhds.is_some()),
        !vhosts.is_empty(),
        "virtual hosts over VHDS exactly when a route configuration asks for them"
    );
    for v in &vhosts {
        check(type_url::VIRTUAL_HOST, v, &names);
        configs.push(r::RouteConfiguration {
            name: v.name.clone(),
            virtual_hosts: vec![decode(v)],
            ..Default::default()
        });
    }
    for rc in &configs {
        for vh in &rc.virtual_hosts {
            for route in &vh.routes {
                if let Some(r::route::Action::Route(_)) = &route.action {
                    for (c, _) in target(route) {
                        assert!(
                            names.contains(&c),
                            "{}: route {} names cluster {c}, which is not sent",
                            rc.name,
                            route.name
                        );
                    }
                }
            }
        }
    }
    clusters.len() + assignments.len() + listeners.len() + routes.len() + vhosts.len()
}

#[test]
fn weft_proxy_accepts_everything_translated() {
    let (resources, instances) = rich_mesh(None);
    let snap = Snapshot::build(7, &resources, &instances);
    let proxies = [
        sidecar("productpage"),
        ProxyInfo {
            namespace: "prod".into(),
            ..sidecar("client")
        },
        ingress_gateway(&[(8080, 0), (8081, 0), (8082, 0)]),
        ProxyInfo {
            vhds: true,
            ..sidecar("productpage")
        },
    ];
    for p in &proxies {
        let n = assert_proxy_accepts(&snap, p);
        assert!(n > 20, "{} resources for {}", n, p.service);
    }
    // The gateway's three ports all listen.
    let gw = ingress_gateway(&[(8080, 0), (8081, 0), (8082, 0)]);
    assert_eq!(snap.resources_for(&gw, type_url::LISTENER, None).len(), 3);
    // And Bookinfo's own routing files, each in turn.
    for file in [
        "virtual-service-all-v1.yaml",
        "virtual-service-reviews-50-50.yaml",
        "virtual-service-reviews-90-10.yaml",
        "virtual-service-reviews-test-v2.yaml",
        "virtual-service-reviews-v3.yaml",
    ] {
        let (mut resources, instances) = rich_mesh(Some(file));
        resources.extend(example("destination-rule-all.yaml"));
        let snap = Snapshot::build(8, &resources, &instances);
        for p in &proxies {
            assert_proxy_accepts(&snap, p);
        }
    }
}

#[test]
fn vhds_is_for_delta_sidecars_that_take_it() {
    use weft_control::translate::listener::{takes_vhds, VHDS_CLIENT_FEATURE};
    let weft = Node {
        user_agent_name: "weft".into(),
        client_features: vec![VHDS_CLIENT_FEATURE.into()],
        ..Default::default()
    };
    let envoy = Node {
        user_agent_name: "envoy".into(),
        ..Default::default()
    };
    let older = Node {
        user_agent_name: "weft".into(),
        ..Default::default()
    };
    assert!(takes_vhds(&weft, "sidecar", true));
    assert!(takes_vhds(&envoy, "sidecar", true));
    // Envoy takes VHDS over delta only; a proxy that does not say it takes it, and
    // gateways and gRPC clients, keep whole route configurations.
    assert!(!takes_vhds(&weft, "sidecar", false));
    assert!(!takes_vhds(&envoy, "sidecar", false));
    assert!(!takes_vhds(&older, "sidecar", true));
    assert!(!takes_vhds(&weft, "gateway", true));
    assert!(!takes_vhds(&weft, "proxyless", true));
}

/// The outbound virtual hosts of a VHDS sidecar: its route configuration holds none,
/// each comes as a resource of its own, equal to the one a whole route configuration
/// holds, and a VirtualService changes only its service's virtual host.
#[test]
fn vhds_sends_outbound_virtual_hosts_one_by_one() {
    let resources = example("destination-rule-all.yaml");
    let before = Snapshot::build(1, &resources, &bookinfo_instances());
    let classic = sidecar("productpage");
    let vhds = ProxyInfo {
        vhds: true,
        ..sidecar("productpage")
    };
    let names = BTreeSet::from(["outbound|default".to_string()]);

    let whole = route_config(&before, &classic, "outbound|default");
    assert!(whole.vhds.is_none());
    assert!(whole.virtual_hosts.len() >= 4, "{:?}", whole.virtual_hosts);
    assert!(before
        .resources_for(&classic, type_url::VIRTUAL_HOST, Some(&names))
        .is_empty());

    let empty = route_config(&before, &vhds, "outbound|default");
    assert!(empty.vhds.is_some(), "VHDS asked for");
    assert!(empty.virtual_hosts.is_empty());
    let vhosts = before.resources_for(&vhds, type_url::VIRTUAL_HOST, Some(&names));
    assert_eq!(vhosts.len(), whole.virtual_hosts.len());
    for (res, want) in vhosts.iter().zip(&whole.virtual_hosts) {
        let got: r::VirtualHost = decode(res);
        assert_eq!(res.name, format!("outbound|default/{}", want.name));
        assert_eq!(
            got.name, res.name,
            "the resource's name is the virtual host's"
        );
        assert_eq!(
            r::VirtualHost {
                name: want.name.clone(),
                ..got
            },
            *want
        );
    }
    // Without names: the proxy's own namespace's.
    assert_eq!(
        before
            .resources_for(&vhds, type_url::VIRTUAL_HOST, None)
            .len(),
        vhosts.len()
    );

    // A VirtualService for reviews: only reviews' virtual host changes.
    let mut changed = resources.clone();
    changed.extend(example("virtual-service-reviews-v3.yaml"));
    let after = Snapshot::build(2, &changed, &bookinfo_instances());
    let later = after.resources_for(&vhds, type_url::VIRTUAL_HOST, Some(&names));
    assert_eq!(later.len(), vhosts.len());
    let differ: Vec<&str> = vhosts
        .iter()
        .zip(&later)
        .filter(|(a, b)| a.version != b.version)
        .map(|(a, _)| a.name.as_str())
        .collect();
    assert_eq!(
        differ,
        vec!["outbound|default/reviews.default.svc.cluster.local:9080"]
    );
    // ... and the route configuration itself does not change at all.
    assert_eq!(
        one(
            &before,
            &vhds,
            type_url::ROUTE_CONFIGURATION,
            "outbound|default"
        )
        .version,
        one(
            &after,
            &vhds,
            type_url::ROUTE_CONFIGURATION,
            "outbound|default"
        )
        .version
    );
}

#[test]
fn the_proxy_check_refuses_what_it_cannot_do() {
    // The check is real: a field the proxy does not honour is named.
    let c = Cluster {
        name: "c".into(),
        outlier_detection: Some(Default::default()),
        ..Default::default()
    };
    let r = Resource::new("c", &c);
    let err = weft_proxy::compile::check_resource(type_url::CLUSTER, &r.body, &HashSet::new())
        .expect_err("outlier detection is refused");
    assert!(err.to_string().contains("outlier_detection"), "{err}");
}

// ---- mutual TLS ----

/// The TLS context a transport socket carries.
fn tls_context<M: Message + Default>(ts: &TransportSocket) -> M {
    let Some(transport_socket::ConfigType::TypedConfig(any)) = &ts.config_type else {
        panic!("typed config")
    };
    M::decode(any.value.as_slice()).expect("a TLS context")
}

fn upstream_tls(c: &Cluster) -> Option<UpstreamTlsContext> {
    c.transport_socket.as_ref().map(tls_context)
}

/// The URI SAN a TLS context accepts (exact or prefix), and its ALPN.
fn san_and_alpn(common: &CommonTlsContext) -> (String, Vec<String>) {
    let Some(common_tls_context::ValidationContextType::CombinedValidationContext(v)) =
        &common.validation_context_type
    else {
        panic!("a combined validation context")
    };
    let m = &v
        .default_validation_context
        .as_ref()
        .expect("defaults")
        .match_typed_subject_alt_names[0];
    let san = match m.matcher.as_ref().and_then(|m| m.match_pattern.as_ref()) {
        Some(MatchPattern::Exact(s)) => format!("exact {s}"),
        Some(MatchPattern::Prefix(s)) => format!("prefix {s}"),
        other => panic!("{other:?}"),
    };
    (san, common.alpn_protocols.clone())
}

#[test]
fn sidecar_services_are_reached_over_mutual_tls() {
    let mut resources = parse(
        "mesh.yaml",
        r#"
apiVersion: weft.dev/v1
kind: Workload
metadata: {name: legacy-1}
spec: {service: legacy, address: 127.0.0.1, ports: {http: 9000}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: details}
spec:
  host: details
  trafficPolicy: {tls: {mode: DISABLE}}
"#,
    );
    resources.extend(parse(
        "legacy-mtls.yaml",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: legacy}\nspec:\n  host: legacy\n  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}\n",
    ));
    let snap = Snapshot::build(1, &resources, &bookinfo_instances());
    // Sidecars only: mTLS, expecting the service's SPIFFE ID, ALPN for the protocol.
    let reviews = upstream_tls(&cluster(
        &snap,
        "outbound|9080||reviews.default.svc.cluster.local",
    ))
    .expect("mTLS to reviews");
    let common = reviews.common_tls_context.as_ref().expect("common");
    assert_eq!(
        san_and_alpn(common),
        (
            "exact spiffe://cluster.local/ns/default/sa/reviews".to_string(),
            vec!["http/1.1".to_string()]
        )
    );
    assert_eq!(common.tls_certificate_sds_secret_configs[0].name, "default");
    let ratings_grpc = snap
        .clusters
        .keys()
        .find(|n| n.starts_with("outbound|50051||"))
        .cloned();
    if let Some(name) = ratings_grpc {
        let tls = upstream_tls(&cluster(&snap, &name)).expect("mTLS");
        assert_eq!(
            san_and_alpn(tls.common_tls_context.as_ref().expect("common")).1,
            ["h2"]
        );
    }
    // A DestinationRule's DISABLE wins over auto mTLS; ISTIO_MUTUAL forces it on a
    // service without sidecars, which otherwise gets plain text.
    assert!(upstream_tls(&cluster(
        &snap,
        "outbound|9080||details.default.svc.cluster.local"
    ))
    .is_none());
    let legacy = cluster(&snap, "outbound|9000||legacy.default.svc.cluster.local");
    assert!(upstream_tls(&legacy).is_some(), "ISTIO_MUTUAL");
    let no_rule = Snapshot::build(1, &resources[..1], &bookinfo_instances());
    assert!(upstream_tls(&cluster(
        &no_rule,
        "outbound|9000||legacy.default.svc.cluster.local"
    ))
    .is_none());
    // Proxyless gRPC clients hold no workload certificate: they get the plain cluster.
    let (node, _) = weft_xds::from_json_or_yaml::<Node>("id: grpc-client\n").expect("a node");
    let proxyless = ProxyInfo::from_node(&node);
    let plain: Cluster = decode(&one(
        &snap,
        &proxyless,
        type_url::CLUSTER,
        "outbound|9080||reviews.default.svc.cluster.local",
    ));
    assert!(plain.transport_socket.is_none());
}

fn inbound_chains(snap: &Snapshot, proxy: &ProxyInfo, listener: &str) -> Vec<String> {
    let l: Listener = decode(&one(snap, proxy, type_url::LISTENER, listener));
    l.filter_chains
        .iter()
        .map(|c| {
            let transport = c
                .filter_chain_match
                .as_ref()
                .map_or("any", |m| m.transport_protocol.as_str());
            let tls = c.transport_socket.is_some();
            format!("{transport}{}", if tls { "+tls" } else { "" })
        })
        .collect()
}

#[test]
fn peer_authentication_decides_inbound_chains() {
    let proxy = sidecar("reviews");
    let permissive = Snapshot::build(1, &[], &bookinfo_instances());
    assert_eq!(
        inbound_chains(&permissive, &proxy, "inbound|15006"),
        ["tls+tls", "raw_buffer"],
        "PERMISSIVE when nothing says otherwise"
    );
    let resources = parse(
        "pa.yaml",
        r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: reviews, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  portLevelMtls:
    "5433": {mode: DISABLE}
    8444: {mode: PERMISSIVE}
"#,
    );
    let snap = Snapshot::build(1, &resources, &bookinfo_instances());
    assert_eq!(
        inbound_chains(&snap, &proxy, "inbound|15006"),
        ["tls+tls"],
        "mesh-wide STRICT"
    );
    assert_eq!(
        inbound_chains(&snap, &proxy, "inbound|15008"),
        ["any"],
        "port 5433 DISABLE"
    );
    assert_eq!(
        inbound_chains(&snap, &proxy, "inbound|15009"),
        ["tls+tls", "raw_buffer"],
        "port 8444 PERMISSIVE"
    );
    // The workload policy selects reviews only.
    assert_eq!(
        inbound_chains(&snap, &sidecar("ratings"), "inbound|15008"),
        ["tls+tls"]
    );
    // The server side requires a client certificate of the trust domain.
    let l: Listener = decode(&one(&snap, &proxy, type_url::LISTENER, "inbound|15006"));
    let down: DownstreamTlsContext =
        tls_context(l.filter_chains[0].transport_socket.as_ref().expect("tls"));
    assert_eq!(down.require_client_certificate.map(|b| b.value), Some(true));
    assert_eq!(
        san_and_alpn(down.common_tls_context.as_ref().expect("common")).0,
        "prefix spiffe://cluster.local/"
    );
}

#[test]
fn request_authentication_verifies_tokens_before_the_policies() {
    let resources = parse(
        "jwt.yaml",
        r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  jwtRules:
  - issuer: issuer-b
    jwksUri: http://details:9080/jwks.json
  - issuer: issuer-a
    jwks: '{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}'
  - issuer: issuer-c
    jwksUri: https://keys.example.com/jwks.json
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: tokens, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - from: [{source: {requestPrincipals: ["issuer-a/alice"]}}]
"#,
    );
    let snap = Snapshot::build(1, &resources, &bookinfo_instances());
    let proxy = sidecar("reviews");
    let listener: Listener = decode(&one(&snap, &proxy, type_url::LISTENER, "inbound|15006"));
    let names: Vec<String> = manager(&listener)
        .http_filters
        .iter()
        .map(|f| f.name.clone())
        .collect();
    assert_eq!(
        names,
        [
            "envoy.filters.http.jwt_authn",
            "envoy.filters.http.rbac",
            "envoy.filters.http.router"
        ]
    );
    let Some(hcm::http_filter::ConfigType::TypedConfig(any)) =
        &manager(&listener).http_filters[0].config_type
    else {
        panic!("typed config")
    };
    let authn = jwt::JwtAuthentication::decode(any.value.as_slice()).expect("jwt_authn");
    let b = &authn.providers["origins-0"];
    assert_eq!(b.issuer, "issuer-b");
    assert_eq!(b.payload_in_metadata, "issuer-b");
    let Some(jwt::jwt_provider::JwksSourceSpecifier::RemoteJwks(remote)) = &b.jwks_source_specifier
    else {
        panic!("remote keys for a mesh service: {b:?}")
    };
    let uri = remote.http_uri.as_ref().expect("http_uri");
    assert_eq!(
        uri.http_upstream_type,
        Some(HttpUpstreamType::Cluster(
            "outbound|9080||details.default.svc.cluster.local".into()
        ))
    );
    assert!(matches!(
        authn.providers["origins-1"].jwks_source_specifier,
        Some(jwt::jwt_provider::JwksSourceSpecifier::LocalJwks(_))
    ));
    let w = warnings(&snap);
    assert!(
        w.iter()
            .any(|w| w.contains("issuer-c") && w.contains("refused")),
        "an https jwksUri outside the mesh is refused loudly: {w:?}"
    );
    // The same configuration, built again, gives the same bytes (providers is a map).
    let again = Snapshot::build(2, &resources, &bookinfo_instances());
    assert_eq!(
        one(&snap, &proxy, type_url::LISTENER, "inbound|15006").body,
        one(&again, &proxy, type_url::LISTENER, "inbound|15006").body
    );
    // requestPrincipals cannot be checked on a TCP port: the ALLOW rule matches nothing.
    assert!(
        w.iter()
            .any(|w| w.contains("tokens") && w.contains("cannot be checked on a TCP port")),
        "{w:?}"
    );
}

/// A proxy's stream keeps its listeners across snapshots while the policies they are
/// made from stay the same, and builds them again when those change.
#[test]
fn a_proxys_listeners_are_kept_until_its_policies_change() {
    use weft_control::translate::ProxyCache;
    let cache = ProxyCache::default();
    let proxy = sidecar("productpage");
    let fresh = |snap: &Snapshot| snap.resources_for(&proxy, type_url::LISTENER, None);
    let kept = |snap: &Snapshot| snap.select(&proxy, type_url::LISTENER, None, Some(&cache));
    let versions = |list: &[Arc<Resource>]| -> Vec<String> {
        list.iter()
            .map(|r| format!("{} {}", r.name, r.version))
            .collect()
    };

    let first = Snapshot::build(1, &[], &bookinfo_instances());
    let a = kept(&first);
    assert_eq!(versions(&a), versions(&fresh(&first)));

    // Routing changes: the listeners are the very same resources.
    let second = Snapshot::build(
        2,
        &example("destination-rule-all.yaml"),
        &bookinfo_instances(),
    );
    let b = kept(&second);
    assert!(a.iter().zip(&b).all(|(x, y)| Arc::ptr_eq(x, y)));
    assert_eq!(versions(&b), versions(&fresh(&second)));

    // mTLS becomes STRICT: they are built again, as a fresh build has them.
    let strict = parse(
        "pa.yaml",
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n",
    );
    let third = Snapshot::build(3, &strict, &bookinfo_instances());
    let c = kept(&third);
    assert_eq!(versions(&c), versions(&fresh(&third)));
    assert_ne!(versions(&c), versions(&a));
    // Names still select.
    let one = BTreeSet::from(["outbound".to_string()]);
    let selected = third.select(&proxy, type_url::LISTENER, Some(&one), Some(&cache));
    assert_eq!(selected.len(), 1);
    assert_eq!(selected[0].name, "outbound");

    // A RequestAuthentication adds the JWT filter: built again.
    let mut with_jwt = strict.clone();
    with_jwt.extend(parse(
        "ra.yaml",
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt}\nspec:\n  jwtRules: [{issuer: a, jwksUri: \"http://keys:8080/jwks\"}]\n",
    ));
    let fourth = Snapshot::build(4, &with_jwt, &bookinfo_instances());
    let d = kept(&fourth);
    assert_eq!(versions(&d), versions(&fresh(&fourth)));
    assert_ne!(versions(&d), versions(&c));
    // The service its jwksUri names appears: the filter now fetches from it.
    let mut instances = bookinfo_instances();
    instances.push(instance_with(
        "keys", "default", "v1", 8080, 16200, "http", true,
    ));
    let fifth = Snapshot::build(5, &with_jwt, &instances);
    let e = kept(&fifth);
    assert_eq!(versions(&e), versions(&fresh(&fifth)));
    assert_ne!(versions(&e), versions(&d));
}

/// A snapshot's generations move with what each type's resources are made of, and
/// only then: a stream skips the types a change did not touch.
#[test]
fn generations_follow_what_changed() {
    let proxy = ProxyInfo {
        vhds: true,
        ..sidecar("productpage")
    };
    let gens = |snap: &Snapshot| -> Vec<Option<u64>> {
        [
            type_url::CLUSTER,
            type_url::CLUSTER_LOAD_ASSIGNMENT,
            type_url::LISTENER,
            type_url::VIRTUAL_HOST,
        ]
        .iter()
        .map(|t| snap.generation(&proxy, t, None))
        .collect()
    };
    let rules = example("destination-rule-all.yaml");
    let base = Snapshot::build(1, &rules, &bookinfo_instances());
    let same = Snapshot::build(2, &rules, &bookinfo_instances());
    assert!(gens(&base).iter().all(Option::is_some));
    assert_eq!(gens(&base), gens(&same), "equal content, equal generations");

    // An instance becomes healthy: endpoints move, clusters and listeners do not.
    let mut instances = bookinfo_instances();
    instances[4] = instance("reviews", "v2", 15311, true);
    let healthier = Snapshot::build(3, &rules, &instances);
    let (a, b) = (gens(&base), gens(&healthier));
    assert_ne!(a[1], b[1], "endpoints");
    assert_eq!((a[0], a[2]), (b[0], b[2]), "clusters and listeners");

    // A VirtualService: the virtual hosts move, endpoints do not.
    let mut routed = rules.clone();
    routed.extend(example("virtual-service-reviews-v3.yaml"));
    let c = gens(&Snapshot::build(4, &routed, &bookinfo_instances()));
    assert_ne!(a[3], c[3], "virtual hosts");
    assert_eq!(a[1], c[1], "endpoints");
    // A gateway's listeners have no generation: its stream always looks.
    let gw = ingress_gateway(&[(8080, 0)]);
    assert_eq!(base.generation(&gw, type_url::LISTENER, None), None);
}

#[test]
fn a_sidecar_resource_is_not_ignored_in_silence() {
    let resources = parse(
        "sidecar.yaml",
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: default}\nspec:\n  egress:\n  - hosts: [\"./*\"]\n",
    );
    let snap = Snapshot::build(1, &resources, &bookinfo_instances());
    let w = warnings(&snap);
    assert!(
        w.iter()
            .any(|w| w.contains("Sidecar default/default") && w.contains("not enforced")),
        "{w:?}"
    );
}
