//! Bootstrap YAML for tests: one HTTP listener with the given virtual hosts, and
//! STATIC clusters pointing at real upstreams; PKI and JWT issuers in submodules.
#![allow(dead_code)]

pub mod jwt;
pub mod pki;

use std::net::SocketAddr;

/// A STATIC cluster named `name` over `addrs`, with extra cluster fields (YAML lines,
/// indented by 4).
pub fn cluster(name: &str, addrs: &[SocketAddr], extra: &str) -> String {
    let mut eps = String::new();
    for a in addrs {
        eps.push_str(&format!(
            "        - endpoint: {{ address: {{ socket_address: {{ address: {}, port_value: {} }} }} }}\n",
            a.ip(),
            a.port()
        ));
    }
    format!(
        "  - name: {name}\n    connect_timeout: 1s\n{extra}    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n{eps}"
    )
}

/// A bootstrap with an admin port, one listener `http` running an HTTP connection
/// manager with `hcm_extra` fields and `vhosts` (YAML list items indented by 12), and
/// `clusters` (from [`cluster`]).
pub fn http_bootstrap(vhosts: &str, hcm_extra: &str, clusters: &[String]) -> String {
    format!(
        r#"
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
static_resources:
  listeners:
  - name: http
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
{hcm_extra}          route_config:
            name: routes
            virtual_hosts:
{vhosts}
          http_filters:
          - name: envoy.filters.http.router
  clusters:
{clusters}
"#,
        clusters = clusters.join("")
    )
}

/// A single catch-all virtual host routing every path to `cluster` with extra route
/// action fields (inline YAML, e.g. `timeout: 1s`).
pub fn route_all(cluster: &str, action_extra: &str) -> String {
    format!(
        "            - name: all\n              domains: [\"*\"]\n              routes:\n              - match: {{ prefix: \"/\" }}\n                route: {{ cluster: {cluster}{sep}{action_extra} }}\n",
        sep = if action_extra.is_empty() { "" } else { ", " }
    )
}
