//! Configuration: bootstraps as people write them for Envoy load unchanged; whatever
//! the proxy cannot honour is refused with every problem's field path.

use weft_proxy::{LoadError, Proxy, ProxyOptions};

fn load(text: &str) -> Result<Proxy, LoadError> {
    Proxy::from_text(
        &ProxyOptions {
            concurrency: 1,
            ..ProxyOptions::new("bootstrap.yaml")
        },
        text,
    )
}

fn errors(text: &str) -> Vec<String> {
    match load(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(LoadError::Invalid { errors, .. }) => errors.0.iter().map(|e| e.to_string()).collect(),
        Err(other) => vec![other.to_string()],
    }
}

/// Envoy's own "getting started" configuration, as its documentation prints it: router
/// named without typed_config, a cluster without type (STATIC) and
/// with a hostname on a LOGICAL_DNS cluster.
const ENVOY_EXAMPLE: &str = r#"
static_resources:
  listeners:
  - name: listener_0
    address:
      socket_address:
        address: 0.0.0.0
        port_value: 10000
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
          access_log:
          - name: envoy.access_loggers.stdout
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
          route_config:
            name: local_route
            virtual_hosts:
            - name: local_service
              domains: ["*"]
              routes:
              - match:
                  prefix: "/"
                route:
                  host_rewrite_literal: www.envoyproxy.io
                  cluster: service_envoyproxy_io
  clusters:
  - name: service_envoyproxy_io
    type: LOGICAL_DNS
    # Comment out the following line to test on v6 networks
    dns_lookup_family: V4_ONLY
    load_assignment:
      cluster_name: service_envoyproxy_io
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address:
                address: www.envoyproxy.io
                port_value: 443
"#;

#[test]
fn envoy_documentation_example_loads_unchanged() {
    let proxy = load(ENVOY_EXAMPLE).expect("Envoy's example loads");
    assert_eq!(proxy.compiled().listeners.len(), 1);
    assert!(proxy
        .compiled()
        .clusters
        .contains_key("service_envoyproxy_io"));
}

#[test]
fn json_bootstrap_with_camel_case_loads() {
    let json = r#"{
      "staticResources": {
        "listeners": [{
          "name": "l",
          "address": {"socketAddress": {"address": "127.0.0.1", "portValue": 0}},
          "filterChains": [{"filterChainMatch": null, "filters": [{
            "name": "tcp",
            "typedConfig": {"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", "statPrefix": "t", "cluster": "c"}
          }]}]
        }],
        "clusters": [{"name": "c", "connectTimeout": "0.25s", "loadAssignment": {"clusterName": "c", "endpoints": [{"lbEndpoints": [{"endpoint": {"address": {"socketAddress": {"address": "127.0.0.1", "portValue": 1}}}}]}]}}]
      }
    }"#;
    load(json).expect("JSON with the proto3 JSON names loads");
}

#[test]
fn every_problem_is_named_with_its_path() {
    let text = r#"
static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: not-an-ip, port_value: 80 } }
    filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: s
          route_config:
            virtual_hosts:
            - name: v
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: missing, retry_policy: { retry_on: "5xx,sometimes" } }
          http_filters:
          - name: envoy.filters.http.fault
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault }
          - name: envoy.filters.http.router
  clusters:
  - name: c
    lb_policy: CLUSTER_PROVIDED
  - name: c
  - name: h2
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: { max_concurrent_streams: 10 } }
"#;
    let errs = errors(text);
    let expect = [
        "static_resources.listeners[0].address.socket_address.address: \"not-an-ip\" is not an IP address",
        "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].route.retry_policy.retry_on: unknown retry_on condition \"sometimes\"",
        "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0]: HTTP filter \"envoy.filters.http.fault\" is not supported (mark it is_optional to skip it)",
        "static_resources.clusters[0].lb_policy: CLUSTER_PROVIDED is not supported",
        "static_resources.clusters[1].name: duplicate cluster name \"c\"",
        "static_resources.clusters[2].typed_extension_protocol_options[envoy.extensions.upstreams.http.v3.HttpProtocolOptions].explicit_http_config.http2_protocol_options.max_concurrent_streams: not supported on clusters (the upstream's SETTINGS_MAX_CONCURRENT_STREAMS applies)",
    ];
    for e in expect {
        assert!(
            errs.iter().any(|x| x == e),
            "missing {e:?} in\n{}",
            errs.join("\n")
        );
    }
}

#[test]
fn unknown_route_cluster_is_refused() {
    let text = r#"
static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: s
          route_config:
            virtual_hosts:
            - { name: v, domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: nowhere } }] }
          http_filters: [{ name: envoy.filters.http.router }]
"#;
    let errs = errors(text);
    assert_eq!(
        errs,
        ["static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].route.cluster: cluster \"nowhere\" does not exist"]
    );
}

#[test]
fn unsupported_fields_and_parse_errors() {
    let errs = errors("static_resources:\n  clusters:\n  - name: c\n    outlier_detection: { consecutive_5xx: 5 }\n");
    assert_eq!(
        errs,
        ["static_resources.clusters[0].outlier_detection: this field is not supported by weft"]
    );
    match load("static_resources:\n  clusters:\n  - name: c\n    connect_timeout: soon\n") {
        Err(LoadError::Parse { source, .. }) => {
            assert_eq!(source.path, "static_resources.clusters[0].connect_timeout");
            assert_eq!(source.line, Some(4));
        }
        other => panic!("expected a parse error, got {:?}", other.err()),
    }
    match load("static_resources:\n  listeners:\n  - name: l\n    colour: blue\n") {
        Err(LoadError::Parse { source, .. }) => {
            assert!(source.message.contains("colour"), "{source}")
        }
        other => panic!("expected a parse error, got {:?}", other.err()),
    }
    let optional = r#"
static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: s
          route_config: { virtual_hosts: [{ name: v, domains: ["*"], routes: [{ match: { prefix: "/" }, direct_response: { status: 200 } }] }] }
          http_filters:
          - { name: envoy.filters.http.fault, is_optional: true, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault } }
          - { name: envoy.filters.http.router }
"#;
    load(optional).expect("an optional filter is skipped, as Envoy does");
}
