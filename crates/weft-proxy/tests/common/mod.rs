//! Bootstrap YAML for tests: one HTTP listener with the given virtual hosts, and
//! STATIC clusters pointing at real upstreams; an ADS server and a PKI in submodules
//! (JWT issuers are in `weft_test::jwt`).
#![allow(dead_code)]

pub mod ads;
pub mod pki;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

/// A bootstrap with an admin port and a listener `http` whose connection manager
/// (`stat_prefix: ingress`) runs `filters` (list items at indent 10) then the router
/// over `vhosts` (list items at indent 12), access-logged to `log` in `log_format`;
/// `tls` (a `transport_socket` at indent 6, or nothing) and `clusters` (from
/// [`cluster`]).
pub fn filtered_http_bootstrap(
    filters: &str,
    vhosts: &str,
    tls: &str,
    clusters: &str,
    log: &Path,
    log_format: &str,
) -> String {
    format!(
        r#"admin:
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
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {log}
              log_format: {{ text_format_source: {{ inline_string: "{log_format}" }} }}
          route_config:
            name: routes
            virtual_hosts:
{vhosts}          http_filters:
{filters}          - name: envoy.filters.http.router
{tls}  clusters:
{clusters}"#,
        log = log.display(),
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

/// A fresh path in the temporary directory for the access log `name` of the test file
/// `suite`.
pub fn log_path(suite: &str, name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "weft-{suite}-{name}-{}-{}.log",
        std::process::id(),
        fastrand::u64(..)
    ));
    let _ = std::fs::remove_file(&p);
    p
}

/// Waits (up to 5 s) until the access log at `path` has `lines` lines, removes it and
/// returns its lines.
pub fn read_log(path: &Path, lines: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let got: Vec<String> = text.lines().map(str::to_string).collect();
        if got.len() >= lines || Instant::now() > deadline {
            let _ = std::fs::remove_file(path);
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
