//! Open connections follow listener updates (LDS, in place): a policy pushed now
//! governs the next request of a keep-alive HTTP connection, and closes a TCP
//! connection it denies; an update that does not concern a connection leaves it open.

mod common;

use common::ads::{bootstrap, serve, Config};
use common::cluster;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_test::{runtime, TestProxy, Upstream};
use weft_xds::pb::envoy::config::listener::v3::Listener;
use weft_xds::{type_url, Resource};

/// An ALLOW RBAC config without policies: denies everything.
const DENY_ALL: &str = "{ action: ALLOW }";
/// A DENY RBAC config without policies: denies nothing.
const DENY_NOTHING: &str = "{ action: DENY }";

fn resource(yaml: &str) -> Resource {
    let (l, _) = weft_xds::json::from_json_or_yaml::<Listener>(yaml).expect("listener YAML");
    Resource::new(l.name.clone(), &l)
}

/// Listener `http`: an HTTP connection manager to cluster `app`, with an HTTP RBAC
/// filter holding `rules`.
fn http_listener(rules: &str) -> Resource {
    resource(&format!(
        r#"
name: http
address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: inbound
      route_config:
        virtual_hosts:
        - name: all
          domains: ["*"]
          routes: [{{ match: {{ prefix: / }}, route: {{ cluster: app }} }}]
      http_filters:
      - name: envoy.filters.http.rbac
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
          rules: {rules}
      - name: envoy.filters.http.router
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#
    ))
}

/// Listener `tcp`: a TCP proxy to cluster `app` behind a network RBAC filter.
fn tcp_listener(rules: &str) -> Resource {
    resource(&format!(
        r#"
name: tcp
address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
filter_chains:
- filters:
  - name: envoy.filters.network.rbac
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC
      stat_prefix: tcp
      rules: {rules}
  - name: envoy.filters.network.tcp_proxy
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
      stat_prefix: tcp
      cluster: app
"#
    ))
}

/// One HTTP/1.1 request on an open connection: status and body, or `None` once the
/// connection is closed.
async fn exchange(s: &mut TcpStream, path: &str) -> Option<(u16, String)> {
    let req = format!("GET {path} HTTP/1.1\r\nhost: app\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().expect("content-length"))
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
    Some((status, body))
}

/// Waits (up to 5 s) until `check` holds for the answer on the same connection.
async fn eventually(s: &mut TcpStream, what: &str, check: impl Fn(Option<(u16, String)>) -> bool) {
    for _ in 0..100 {
        if check(exchange(s, "/").await) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not seen within 5 s");
}

#[test]
fn open_connections_follow_listener_updates() {
    let rt = runtime();
    let app = rt.block_on(Upstream::start("app"));
    let config = Arc::new(Config::default());
    config.set(
        type_url::LISTENER,
        vec![http_listener(DENY_NOTHING), tcp_listener(DENY_NOTHING)],
    );
    let xds = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind xDS socket");
    let xds_addr = xds.local_addr().expect("local address");
    let _server = rt.spawn(serve(config.clone(), xds));
    let app_cluster = cluster("app", &[app.addr], "");
    let proxy = TestProxy::start(&bootstrap(xds_addr, "GRPC", &[app_cluster]), 2);
    let (http_addr, tcp_addr) = (proxy.addr("http"), proxy.addr("tcp"));

    rt.block_on(async {
        let mut http = TcpStream::connect(http_addr).await.expect("connect");
        let mut tcp = TcpStream::connect(tcp_addr).await.expect("connect");
        assert_eq!(exchange(&mut http, "/").await.map(|a| a.0), Some(200));
        assert_eq!(exchange(&mut tcp, "/").await.map(|a| a.0), Some(200));

        // Deny all over HTTP: the open connection's next request is denied.
        config.set(
            type_url::LISTENER,
            vec![http_listener(DENY_ALL), tcp_listener(DENY_NOTHING)],
        );
        eventually(&mut http, "403 on the open HTTP connection", |a| {
            a == Some((403, "RBAC: access denied".to_string()))
        })
        .await;
        // The TCP listener's update left its connection as it was.
        assert_eq!(
            exchange(&mut tcp, "/").await.map(|a| a.0),
            Some(200),
            "an update that does not deny a TCP connection keeps it open"
        );

        // Lifted again: the same connection is served.
        config.set(
            type_url::LISTENER,
            vec![http_listener(DENY_NOTHING), tcp_listener(DENY_NOTHING)],
        );
        eventually(&mut http, "200 on the same HTTP connection", |a| {
            matches!(a, Some((200, _)))
        })
        .await;

        // Deny all over TCP: the open connection is closed.
        config.set(
            type_url::LISTENER,
            vec![http_listener(DENY_NOTHING), tcp_listener(DENY_ALL)],
        );
        let mut closed = false;
        for _ in 0..100 {
            if exchange(&mut tcp, "/").await.is_none() {
                closed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(closed, "the denied TCP connection was closed");
        assert_eq!(
            exchange(&mut http, "/").await.map(|a| a.0),
            Some(200),
            "the HTTP connection outlived every update"
        );
    });
    let metrics = rt.block_on(weft_test::proxy::admin_metrics(proxy.admin()));
    assert_eq!(
        weft_test::proxy::metric(
            &metrics,
            "weft_listener_downstream_cx_total{listener=\"http\"}"
        ),
        1.0,
        "one HTTP connection served every request:\n{metrics}"
    );
}
