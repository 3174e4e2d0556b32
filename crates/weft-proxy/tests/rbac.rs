//! Envoy's RBAC filters over real sockets: the HTTP filter (DENY, ALLOW, LOG, chained as
//! Istio chains them, overridden per route, over mutual TLS with SPIFFE principals), the
//! network filter in front of a TCP proxy and a connection manager, the metrics and
//! access-log details they leave, and the configuration the proxy refuses.

mod common;

use bytes::Bytes;
use common::pki::{self, Ca, Leaf, TD};
use common::{log_path, read_log};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use weft_proxy::{Proxy, ProxyOptions};
use weft_test::proxy::{admin_metrics as metrics, metric, send, Reply};
use weft_test::{runtime, TestProxy, Upstream};
use weft_xds::pb::envoy::config::listener::v3::Listener;
use weft_xds::pb::envoy::config::route::v3::RouteConfiguration;
use weft_xds::{type_url, Resource};

const ADMIN: &str =
    "admin:\n  address: { socket_address: { address: 127.0.0.1, port_value: 0 } }\n";
const HTTP_RBAC: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
const PER_ROUTE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute";
const NETWORK_RBAC: &str = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC";
const LOG_FORMAT: &str =
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %ROUTE_NAME% %REQ(:PATH)%\\n";

// ---- configuration, as flow-style YAML ----

/// A policy entry of a `policies` map.
fn policy(name: &str, permissions: &str, principals: &str) -> String {
    format!("\"{name}\": {{ permissions: [{permissions}], principals: [{principals}] }}")
}

/// An `envoy.config.rbac.v3.RBAC`.
fn rules(action: &str, policies: &[String]) -> String {
    format!(
        "{{ action: {action}, policies: {{ {} }} }}",
        policies.join(", ")
    )
}

/// An HTTP filter list item (indented for [`http_yaml`]): an RBAC filter with `fields`
/// (flow-mapping entries, e.g. `rules: {...}`).
fn http_rbac(fields: &str) -> String {
    http_rbac_at(10, fields)
}

/// [`http_rbac`], its dash at column `indent`.
fn http_rbac_at(indent: usize, fields: &str) -> String {
    let pad = " ".repeat(indent);
    format!(
        "{pad}- name: envoy.filters.http.rbac\n{pad}  typed_config: {{ \"@type\": {HTTP_RBAC}, {fields} }}\n"
    )
}

/// `typed_per_filter_config` (indented by `indent`) holding an `RBACPerRoute` with
/// `fields`.
fn per_route(indent: usize, fields: &str) -> String {
    let pad = " ".repeat(indent);
    let sep = if fields.is_empty() { "" } else { ", " };
    format!(
        "{pad}typed_per_filter_config:\n{pad}  envoy.filters.http.rbac: {{ \"@type\": {PER_ROUTE}{sep}{fields} }}\n"
    )
}

const GET: &str = r#"{ header: { name: ":method", string_match: { exact: GET } } }"#;
const POST: &str = r#"{ header: { name: ":method", string_match: { exact: POST } } }"#;
const ANY: &str = "{ any: true }";

/// A listener `http` (with `transport_socket`, YAML at indent 6, when given) whose
/// connection manager (`stat_prefix: ingress`) runs `filters` then the router over
/// `vhosts`, logging to `log`, and a cluster `app` at `app`.
fn http_yaml(filters: &str, vhosts: &str, app: SocketAddr, log: &Path, tls: &str) -> String {
    let app = common::cluster("app", &[app], "");
    common::filtered_http_bootstrap(filters, vhosts, tls, &app, log, LOG_FORMAT)
}

/// One virtual host `all` routing everything to `app` (route `all/0`).
fn all_to_app() -> String {
    common::route_all("app", "")
}

/// A `DownstreamTlsContext` requiring client certificates from this trust domain.
fn downstream_tls() -> String {
    r#"      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            alpn_protocols: ["http/1.1", "weft-tcp"]
            tls_certificate_sds_secret_configs: [{ name: default }]
            combined_validation_context:
              default_validation_context:
                match_typed_subject_alt_names:
                - san_type: URI
                  matcher: { prefix: "spiffe://weft.local/" }
              validation_context_sds_secret_config: { name: ROOTCA }
"#
    .to_string()
}

// ---- clients and observations ----

fn request(method: &str, addr: SocketAddr, host: &str, path: &str) -> http::request::Builder {
    http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("host", host)
}

async fn call(method: &str, addr: SocketAddr, host: &str, path: &str) -> Reply {
    send(
        request(method, addr, host, path)
            .body(Full::new(Bytes::new()))
            .expect("request"),
    )
    .await
}

fn assert_denied(r: &Reply, what: &str) {
    assert_eq!(r.status, 403, "{what}: {}", r.text());
    assert_eq!(r.text(), "RBAC: access denied", "{what}");
    assert_eq!(r.headers["content-type"], "text/plain", "{what}");
}

fn assert_passed(r: &Reply, what: &str) {
    assert_eq!(r.status, 200, "{what}: {}", r.text());
    assert_eq!(r.headers["x-upstream"], "app", "{what}");
}

fn rbac_metric(text: &str, outcome: &str, stat_prefix: &str, policy: &str) -> f64 {
    metric(
        text,
        &format!(r#"weft_rbac_{outcome}_total{{stat_prefix="{stat_prefix}",policy="{policy}"}}"#),
    )
}

/// Writes `payload`, half-closes and reads to the end; a reset counts as the end.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(s: S, payload: &[u8]) -> Vec<u8> {
    exchange_with(s, payload, true).await
}

/// [`exchange`], half-closing only when asked (an HTTP server takes a half-close for
/// a client gone).
async fn exchange_with<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    payload: &[u8],
    half_close: bool,
) -> Vec<u8> {
    let _ = s.write_all(payload).await;
    if half_close {
        let _ = s.shutdown().await;
    }
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
    got
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{from}:0").parse().expect("address"))
        .expect("bind");
    socket.connect(to).await.expect("connect")
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// An HTTP/1.1 connection over `io` that stays open between requests.
async fn keep_alive<T>(io: T) -> Sender
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

async fn on(sender: &mut Sender, method: &str, path: &str) -> (u16, String) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "inbound")
        .body(Full::new(Bytes::new()))
        .expect("request");
    sender.ready().await.expect("connection open");
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

// ---- (a) DENY by header value ----

#[test]
fn deny_by_header_value() {
    let rt = runtime();
    let app = rt.block_on(Upstream::start("app"));
    let log = log_path("rbac", "a");
    let filters = http_rbac(&format!(
        "rules: {}",
        rules(
            "DENY",
            &[
                policy(
                    "deny-evil",
                    r#"{ header: { name: x-user, string_match: { exact: evil } } }"#,
                    ANY
                ),
                // Several values of one header are matched joined by commas, as in Envoy.
                policy(
                    "deny-joined",
                    r#"{ header: { name: x-team, exact_match: "a,b" } }"#,
                    ANY
                ),
            ]
        )
    ));
    let proxy = TestProxy::start(&http_yaml(&filters, &all_to_app(), app.addr, &log, ""), 1);
    let addr = proxy.addr("http");
    rt.block_on(async {
        let with = |name: &'static str, values: &'static [&'static str]| {
            let mut b = request("GET", addr, "svc", "/things");
            for v in values {
                b = b.header(name, *v);
            }
            send(b.body(Full::new(Bytes::new())).expect("request"))
        };
        assert_denied(&with("x-user", &["evil"]).await, "x-user: evil");
        assert_passed(&with("x-user", &["good"]).await, "x-user: good");
        assert_passed(&call("GET", addr, "svc", "/things").await, "no header");
        assert_denied(&with("x-team", &["a", "b"]).await, "x-team: a, b");
        assert_passed(&with("x-team", &["a"]).await, "x-team: a");
    });
    assert_eq!(
        app.request_count(),
        3,
        "denied requests never reach the app"
    );
    let lines = read_log(&log, 5);
    let denied: Vec<&String> = lines.iter().filter(|l| l.starts_with("403")).collect();
    assert_eq!(
        denied,
        [
            "403 - rbac_access_denied_matched_policy[deny-evil] all/0 /things",
            "403 - rbac_access_denied_matched_policy[deny-joined] all/0 /things",
        ],
        "{lines:?}"
    );
}

// ---- (b) ALLOW GET on one path from one SPIFFE principal, over mTLS ----

#[test]
fn allow_get_on_path_from_one_spiffe_principal_over_mtls() {
    let rt = runtime();
    let app = rt.block_on(Upstream::start("app"));
    let ca = Ca::new("weft root");
    let log = log_path("rbac", "b");
    let reader = policy(
        "reader",
        &format!(
            r#"{{ and_rules: {{ rules: [{GET}, {{ url_path: {{ path: {{ prefix: /api/ }} }} }}] }} }}"#
        ),
        &format!(r#"{{ authenticated: {{ principal_name: {{ exact: "{TD}/allowed" }} }} }}"#),
    );
    let filters = http_rbac(&format!("rules: {}", rules("ALLOW", &[reader])));
    let yaml = http_yaml(&filters, &all_to_app(), app.addr, &log, &downstream_tls());
    let server = pki::start(&yaml, &pki::store(&ca, &ca.leaf("server", 1, false)));
    let addr = server.listener_addr("http").expect("listener");
    let allowed = ca.leaf("allowed", 2, false);
    let intruder = ca.leaf("intruder", 3, false);
    rt.block_on(async {
        let connect = |leaf: &Leaf| {
            let config = pki::client_config(vec![ca.root()], Some(leaf), &["http/1.1"]);
            async move { keep_alive(pki::tls_connect(addr, config).await.expect("TLS")).await }
        };
        let mut a = connect(&allowed).await;
        assert_eq!(on(&mut a, "GET", "/api/items?x=1").await.0, 200);
        let (status, body) = on(&mut a, "POST", "/api/items").await;
        assert_eq!((status, body.as_str()), (403, "RBAC: access denied"));
        assert_eq!(on(&mut a, "GET", "/admin").await.0, 403);
        assert_eq!(on(&mut a, "GET", "/api/other").await.0, 200);
        let mut i = connect(&intruder).await;
        let (status, body) = on(&mut i, "GET", "/api/items").await;
        assert_eq!((status, body.as_str()), (403, "RBAC: access denied"));
    });
    assert_eq!(app.request_count(), 2);
    let lines = read_log(&log, 5);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("rbac_access_denied_matched_policy[none]"))
            .count(),
        3,
        "{lines:?}"
    );
}

// ---- (c) an empty ALLOW denies everything ----

#[test]
fn empty_allow_denies_every_request() {
    let rt = runtime();
    let app = rt.block_on(Upstream::start("app"));
    let log = log_path("rbac", "c");
    let filters = http_rbac("rules: { action: ALLOW }");
    let proxy = TestProxy::start(&http_yaml(&filters, &all_to_app(), app.addr, &log, ""), 1);
    let addr = proxy.addr("http");
    rt.block_on(async {
        assert_denied(&call("GET", addr, "svc", "/").await, "GET /");
        assert_denied(&call("POST", addr, "other", "/x").await, "POST /x");
        // A gRPC caller gets PERMISSION_DENIED, as Envoy maps 403.
        let grpc = send(
            request("POST", addr, "svc", "/pkg.Svc/Method")
                .header("content-type", "application/grpc")
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await;
        assert_eq!(grpc.status, 200);
        assert_eq!(grpc.headers["grpc-status"], "7");
        assert_eq!(grpc.headers["grpc-message"], "RBAC: access denied");
        let m = metrics(proxy.admin()).await;
        assert_eq!(rbac_metric(&m, "denied", "ingress", "none"), 3.0, "{m}");
    });
    assert_eq!(app.request_count(), 0);
    let lines = read_log(&log, 3);
    assert!(
        lines
            .iter()
            .all(|l| l.contains(" - rbac_access_denied_matched_policy[none] all/0 ")),
        "{lines:?}"
    );
}

// ---- (d) per-route overrides ----

#[test]
fn per_route_overrides_disable_or_replace_the_rules() {
    let rt = runtime();
    let app = rt.block_on(Upstream::start("app"));
    let log = log_path("rbac", "d");
    let no_get = rules("DENY", &[policy("no-get", GET, ANY)]);
    let posts_only = rules("ALLOW", &[policy("posts-only", POST, ANY)]);
    let vhosts = format!(
        r#"            - name: open
              domains: ["open.example"]
{open_vh}              routes:
              - name: open-strict
                match: {{ prefix: "/strict" }}
{strict}                route: {{ cluster: app }}
              - name: open-default
                match: {{ prefix: "/" }}
                route: {{ cluster: app }}
            - name: narrow
              domains: ["narrow.example"]
              routes:
              - name: exact
                match: {{ path: "/exact" }}
                route: {{ cluster: app }}
            - name: main
              domains: ["*"]
              routes:
              - name: public
                match: {{ prefix: "/public" }}
{public}                route: {{ cluster: app }}
              - name: replaced
                match: {{ prefix: "/replaced" }}
{replaced}                route: {{ cluster: app }}
              - name: base
                match: {{ prefix: "/" }}
                route: {{ cluster: app }}
"#,
        open_vh = per_route(14, ""),
        strict = per_route(16, &format!("rbac: {{ rules: {posts_only} }}")),
        public = per_route(16, ""),
        replaced = per_route(16, &format!("rbac: {{ rules: {no_get} }}")),
    );
    // The filter's own rules deny everything.
    let filters = http_rbac("rules: { action: ALLOW }");
    let proxy = TestProxy::start(&http_yaml(&filters, &vhosts, app.addr, &log, ""), 1);
    let addr = proxy.addr("http");
    rt.block_on(async {
        assert_passed(
            &call("GET", addr, "svc", "/public/x").await,
            "disabled on the route",
        );
        assert_denied(
            &call("GET", addr, "svc", "/replaced").await,
            "GET, replaced",
        );
        assert_passed(
            &call("POST", addr, "svc", "/replaced").await,
            "POST, replaced",
        );
        assert_denied(
            &call("GET", addr, "svc", "/other").await,
            "the filter's rules",
        );
        assert_passed(
            &call("GET", addr, "open.example", "/").await,
            "disabled on the vhost",
        );
        assert_denied(
            &call("GET", addr, "open.example", "/strict").await,
            "route over vhost",
        );
        assert_passed(
            &call("POST", addr, "open.example", "/strict").await,
            "route's ALLOW",
        );
        // No route matched: no override applies, and RBAC answers before "no route".
        assert_denied(
            &call("GET", addr, "narrow.example", "/else").await,
            "no route",
        );
        let m = metrics(proxy.admin()).await;
        // Rules from a route configuration count under its name.
        assert_eq!(rbac_metric(&m, "denied", "routes", "no-get"), 1.0, "{m}");
        assert_eq!(rbac_metric(&m, "allowed", "routes", "none"), 1.0, "{m}");
        assert_eq!(
            rbac_metric(&m, "allowed", "routes", "posts-only"),
            1.0,
            "{m}"
        );
        assert_eq!(rbac_metric(&m, "denied", "routes", "none"), 1.0, "{m}");
        assert_eq!(rbac_metric(&m, "denied", "ingress", "none"), 2.0, "{m}");
    });
    assert_eq!(app.request_count(), 4);
    let lines = read_log(&log, 8);
    assert!(
        lines
            .contains(&"403 - rbac_access_denied_matched_policy[no-get] replaced /replaced".into()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"403 - rbac_access_denied_matched_policy[none] - /else".into()),
        "{lines:?}"
    );
}

// ---- (d) a route update governs the next request of an open connection ----

/// The listener over LDS: its filter's own rules deny everything; routes come by RDS.
fn dynamic_listener() -> Resource {
    let yaml = format!(
        r#"
name: dynamic
address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: inbound
      rds: {{ config_source: {{ ads: {{}} }}, route_config_name: routes }}
      http_filters:
{}      - name: envoy.filters.http.router
"#,
        http_rbac_at(6, "rules: { action: ALLOW }")
    );
    let (l, _) = weft_xds::from_json_or_yaml::<Listener>(&yaml).expect("listener YAML");
    Resource::new("dynamic", &l)
}

/// The route configuration over RDS: one route, with `per_route` fields.
fn dynamic_routes(per_route_fields: &str) -> Resource {
    let yaml = format!(
        r#"
name: routes
virtual_hosts:
- name: all
  domains: ["*"]
  routes:
  - name: only
    match: {{ prefix: "/" }}
    route: {{ cluster: app }}
{}"#,
        per_route(4, per_route_fields)
    );
    let (rc, _) = weft_xds::from_json_or_yaml::<RouteConfiguration>(&yaml).expect("routes YAML");
    Resource::new("routes", &rc)
}

#[test]
fn a_route_update_governs_the_next_request_of_an_open_connection() {
    let rt = runtime();
    let app = rt.block_on(Upstream::start("app"));
    let config = Arc::new(common::ads::Config::default());
    config.set(type_url::LISTENER, vec![dynamic_listener()]);
    // First the route turns the filter off.
    config.set(type_url::ROUTE_CONFIGURATION, vec![dynamic_routes("")]);
    let xds = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind xDS socket");
    let xds_addr = xds.local_addr().expect("address");
    let _server = rt.spawn(common::ads::serve(config.clone(), xds));
    let app_cluster = common::cluster("app", &[app.addr], "");
    let bootstrap = common::ads::bootstrap(xds_addr, "GRPC", &[app_cluster]);
    let proxy = TestProxy::start(&bootstrap, 1);
    let addr = proxy.addr("dynamic");
    rt.block_on(async {
        let mut open = keep_alive(TcpStream::connect(addr).await.expect("connect")).await;
        assert_eq!(on(&mut open, "GET", "/").await.0, 200);
        // Then the route carries rules of its own: GET is denied there.
        let no_get = rules("DENY", &[policy("no-get", GET, ANY)]);
        config.set(
            type_url::ROUTE_CONFIGURATION,
            vec![dynamic_routes(&format!("rbac: {{ rules: {no_get} }}"))],
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while call("GET", addr, "svc", "/").await.status != 403 {
            assert!(Instant::now() < deadline, "the route update never arrived");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (status, body) = on(&mut open, "GET", "/").await;
        assert_eq!((status, body.as_str()), (403, "RBAC: access denied"));
        assert_eq!(on(&mut open, "POST", "/").await.0, 200);
        assert_eq!(app.connection_count(), 1, "one upstream connection, reused");
    });
    let nacks = config.nacks.lock().expect("lock");
    assert!(
        nacks.is_empty(),
        "the proxy refused a configuration: {nacks:?}"
    );
}

// ---- (e) the network filter ----

#[test]
fn network_rbac_closes_connections_from_a_denied_address() {
    let rt = runtime();
    let (echo, _echo_task) = rt.block_on(weft_test::tcp::start_echo());
    let app = rt.block_on(Upstream::start("app"));
    let log = log_path("rbac", "e");
    let deny_local2 = rules(
        "DENY",
        &[policy(
            "no-127.0.0.2",
            ANY,
            "{ direct_remote_ip: { address_prefix: 127.0.0.2, prefix_len: 32 } }",
        )],
    );
    let network_rbac = |stat_prefix: &str| {
        format!(
            "      - name: envoy.filters.network.rbac\n        typed_config: {{ \"@type\": {NETWORK_RBAC}, stat_prefix: {stat_prefix}, rules: {deny_local2} }}\n"
        )
    };
    let yaml = format!(
        r#"{ADMIN}static_resources:
  listeners:
  - name: tcp
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
{tcp_rbac}      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: echo
          cluster: echo
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {log}
              log_format: {{ text_format_source: {{ inline_string: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% [%CONNECTION_TERMINATION_DETAILS%]\n" }} }}
  - name: http
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
{http_rbac}      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            name: routes
            virtual_hosts:
{vhosts}          http_filters:
          - name: envoy.filters.http.router
  clusters:
{echo_cluster}{app_cluster}"#,
        tcp_rbac = network_rbac("tcp_guard"),
        http_rbac = network_rbac("http_guard"),
        log = log.display(),
        vhosts = all_to_app(),
        echo_cluster = common::cluster("echo", &[echo], ""),
        app_cluster = common::cluster("app", &[app.addr], ""),
    );
    let proxy = TestProxy::start(&yaml, 1);
    let (tcp, http) = (proxy.addr("tcp"), proxy.addr("http"));
    rt.block_on(async {
        let ok = exchange(connect_from("127.0.0.1", tcp).await, b"hello").await;
        assert_eq!(ok, b"echo:hello");
        let closed = exchange(connect_from("127.0.0.2", tcp).await, b"hello").await;
        assert!(closed.is_empty(), "forwarded: {closed:?}");

        let get = b"GET / HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n";
        let ok = exchange_with(connect_from("127.0.0.1", http).await, get, false).await;
        assert!(
            ok.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&ok)
        );
        let closed = exchange_with(connect_from("127.0.0.2", http).await, get, false).await;
        assert!(
            closed.is_empty(),
            "answered: {}",
            String::from_utf8_lossy(&closed)
        );

        let m = metrics(proxy.admin()).await;
        for prefix in ["tcp_guard", "http_guard"] {
            assert_eq!(
                rbac_metric(&m, "denied", prefix, "no-127.0.0.2"),
                1.0,
                "{m}"
            );
            assert_eq!(rbac_metric(&m, "allowed", prefix, "none"), 1.0, "{m}");
        }
    });
    assert_eq!(app.request_count(), 1);
    let mut lines = read_log(&log, 2);
    lines.sort();
    assert_eq!(
        lines,
        [
            "127.0.0.1 [-]",
            "127.0.0.2 [rbac_access_denied_matched_policy[no-127.0.0.2]]"
        ]
    );
}

#[test]
fn network_rbac_admits_only_the_allowed_principal() {
    let rt = runtime();
    let (echo, _echo_task) = rt.block_on(weft_test::tcp::start_echo());
    let ca = Ca::new("weft root");
    let allow = rules(
        "ALLOW",
        &[policy(
            "allowed-only",
            ANY,
            &format!(r#"{{ authenticated: {{ principal_name: {{ exact: "{TD}/allowed" }} }} }}"#),
        )],
    );
    let yaml = format!(
        r#"{ADMIN}static_resources:
  listeners:
  - name: tcp
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.rbac
        typed_config: {{ "@type": {NETWORK_RBAC}, stat_prefix: mtls_guard, rules: {allow} }}
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: echo
          cluster: echo
{tls}  clusters:
{cluster}"#,
        tls = downstream_tls(),
        cluster = common::cluster("echo", &[echo], ""),
    );
    let server = pki::start(&yaml, &pki::store(&ca, &ca.leaf("server", 1, false)));
    let addr = server.listener_addr("tcp").expect("listener");
    rt.block_on(async {
        let via = |leaf: Leaf| {
            let config = pki::client_config(vec![ca.root()], Some(&leaf), &["weft-tcp"]);
            async move {
                let tls = pki::tls_connect(addr, config).await.expect("TLS");
                exchange(tls, b"hello").await
            }
        };
        assert_eq!(via(ca.leaf("allowed", 2, false)).await, b"echo:hello");
        assert!(via(ca.leaf("intruder", 3, false)).await.is_empty());
        let m = metrics(server.admin_addr().expect("admin")).await;
        assert_eq!(
            rbac_metric(&m, "allowed", "mtls_guard", "allowed-only"),
            1.0,
            "{m}"
        );
        assert_eq!(rbac_metric(&m, "denied", "mtls_guard", "none"), 1.0, "{m}");
    });
}

// ---- (f) LOG counts and lets pass ----

#[test]
fn log_action_counts_without_denying() {
    let rt = runtime();
    let app = rt.block_on(Upstream::start("app"));
    let log = log_path("rbac", "f");
    let audit = rules(
        "LOG",
        &[policy(
            "audit-admin",
            "{ url_path: { path: { prefix: /admin } } }",
            ANY,
        )],
    );
    let filters = http_rbac(&format!("rules: {audit}"));
    let proxy = TestProxy::start(&http_yaml(&filters, &all_to_app(), app.addr, &log, ""), 1);
    let addr = proxy.addr("http");
    rt.block_on(async {
        for path in ["/admin/users", "/admin?debug=1", "/public"] {
            assert_passed(&call("GET", addr, "svc", path).await, path);
        }
        let m = metrics(proxy.admin()).await;
        assert_eq!(
            rbac_metric(&m, "logged", "ingress", "audit-admin"),
            2.0,
            "{m}"
        );
        assert_eq!(rbac_metric(&m, "allowed", "ingress", "none"), 1.0, "{m}");
        assert!(
            !m.contains("weft_rbac_denied_total{stat_prefix=\"ingress\""),
            "{m}"
        );
    });
    let _ = read_log(&log, 3);
}

// ---- (g) metrics of an Istio-style chain: DENY, then ALLOW ----

#[test]
fn each_filter_of_a_chain_counts_its_decisions() {
    let rt = runtime();
    let app = rt.block_on(Upstream::start("app"));
    let log = log_path("rbac", "g");
    let block = "ns[default]-policy[block-admin]-rule[0]";
    let allow_get = "ns[default]-policy[allow-get]-rule[0]";
    let deny = rules(
        "DENY",
        &[policy(
            block,
            "{ url_path: { path: { prefix: /admin } } }",
            ANY,
        )],
    );
    let allow = rules("ALLOW", &[policy(allow_get, GET, ANY)]);
    let filters = format!(
        "{}{}",
        http_rbac(&format!("rules_stat_prefix: deny, rules: {deny}")),
        http_rbac(&format!("rules: {allow}"))
    );
    let proxy = TestProxy::start(&http_yaml(&filters, &all_to_app(), app.addr, &log, ""), 1);
    let addr = proxy.addr("http");
    rt.block_on(async {
        assert_passed(&call("GET", addr, "svc", "/x").await, "GET /x");
        assert_passed(&call("GET", addr, "svc", "/y").await, "GET /y");
        assert_denied(&call("GET", addr, "svc", "/admin").await, "GET /admin");
        assert_denied(&call("POST", addr, "svc", "/x").await, "POST /x");
        let m = metrics(proxy.admin()).await;
        assert_eq!(
            rbac_metric(&m, "allowed", "ingress.deny", "none"),
            3.0,
            "{m}"
        );
        assert_eq!(rbac_metric(&m, "denied", "ingress.deny", block), 1.0, "{m}");
        assert_eq!(rbac_metric(&m, "allowed", "ingress", allow_get), 2.0, "{m}");
        assert_eq!(rbac_metric(&m, "denied", "ingress", "none"), 1.0, "{m}");
        // The ALLOW filter never ran for the request the DENY filter refused.
        assert_eq!(rbac_metric(&m, "allowed", "ingress", "none"), 0.0, "{m}");
    });
    let lines = read_log(&log, 4);
    let details: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split(' ').nth(2))
        .filter(|d| d.starts_with("rbac"))
        .collect();
    assert_eq!(
        details,
        [
            format!("rbac_access_denied_matched_policy[{block}]"),
            "rbac_access_denied_matched_policy[none]".to_string()
        ],
        "{lines:?}"
    );
}

// ---- (h) what is refused, with its path ----

fn load_error(yaml: &str) -> String {
    let options = ProxyOptions {
        concurrency: 1,
        ..ProxyOptions::new("rbac-test.yaml")
    };
    match Proxy::from_text(&options, yaml) {
        Ok(_) => panic!("accepted:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unsupported_configuration_is_refused_with_its_path() {
    let app: SocketAddr = "127.0.0.1:9".parse().expect("address");
    let log = log_path("rbac", "h");
    let filter_path = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config";
    let cases: Vec<(String, String)> = vec![
        (
            http_rbac(&format!(
                "rules: {}",
                rules(
                    "ALLOW",
                    &[policy(
                        "p",
                        ANY,
                        "{ metadata: { filter: istio_authn, path: [], value: { string_match: { exact: me } } } }"
                    )]
                )
            )),
            format!(r#"{filter_path}.rules.policies["p"].principals[0].metadata.path"#),
        ),
        (
            http_rbac(&format!(
                "shadow_rules: {}",
                rules("ALLOW", &[policy("p", ANY, ANY)])
            )),
            format!("{filter_path}.shadow_rules"),
        ),
        (
            http_rbac(&format!(
                "rules: {}",
                rules("DENY", &[policy("p", ANY, "{ not_id: { filter_state: { key: k, string_match: { exact: v } } } }")])
            )),
            format!(r#"{filter_path}.rules.policies["p"].principals[0].not_id.filter_state"#),
        ),
        (
            http_rbac("rules: { action: DENY, policies: { p: { permissions: [{ any: true }] } } }"),
            format!(r#"{filter_path}.rules.policies["p"].principals"#),
        ),
    ];
    for (filters, path) in cases {
        let err = load_error(&http_yaml(&filters, &all_to_app(), app, &log, ""));
        assert!(err.contains(&format!("{path}:")), "{path} not in:\n{err}");
    }

    // A per-filter configuration no filter of Weft reads.
    let vhosts = r#"            - name: all
              domains: ["*"]
              typed_per_filter_config:
                envoy.filters.http.fault: { "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault }
              routes:
              - match: { prefix: "/" }
                route: { cluster: app }
"#;
    let err = load_error(&http_yaml("", vhosts, app, &log, ""));
    assert!(
        err.contains(
            r#"route_config.virtual_hosts[0].typed_per_filter_config["envoy.filters.http.fault"]"#
        ),
        "{err}"
    );

    // A network filter sees no request: header and request metadata rules are refused
    // there.
    let metadata = "{ metadata: { filter: istio_authn, path: [{ key: request.auth.principal }], value: { present_match: true } } }";
    let yaml = format!(
        r#"{ADMIN}static_resources:
  listeners:
  - name: tcp
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.rbac
        typed_config: {{ "@type": {NETWORK_RBAC}, stat_prefix: t, rules: {} }}
      - name: envoy.filters.network.tcp_proxy
        typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: app }}
  clusters:
{}"#,
        rules("DENY", &[policy("p", GET, metadata)]),
        common::cluster("app", &[app], "")
    );
    let err = load_error(&yaml);
    for field in ["permissions[0].header", "principals[0].metadata"] {
        assert!(
            err.contains(&format!(r#"static_resources.listeners[0].filter_chains[0].filters[0].typed_config.rules.policies["p"].{field}: a network RBAC filter sees no HTTP request"#)),
            "{field}: {err}"
        );
    }
}
