//! Mutual TLS between proxies over real sockets, configured as Envoy is configured:
//! `UpstreamTlsContext` on clusters, `DownstreamTlsContext` on filter chains, SDS secret
//! names resolved from the proxy's secret store, SPIFFE identities as URI SANs. The CA
//! and the workload certificates come from `common/pki.rs`.

mod common;

use bytes::Bytes;
use common::pki::{client_config, start, store, tls_connect, Ca, Leaf, Tls, TD};
use common::{log_path, read_log};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_proxy::tls::SecretStore;
use weft_proxy::{Proxy, ProxyOptions, RunningProxy};
use weft_test::proxy::{admin_get, admin_metrics, get, metric};
use weft_test::{runtime, Upstream};

fn load_error(yaml: &str) -> String {
    let options = ProxyOptions {
        concurrency: 1,
        ..ProxyOptions::new("tls-test.yaml")
    };
    match Proxy::from_text(&options, yaml) {
        Ok(_) => panic!("accepted:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

const ADMIN: &str =
    "admin:\n  address: { socket_address: { address: 127.0.0.1, port_value: 0 } }\n";

const TLS_INSPECTOR: &str = r#"    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector }
"#;

/// An HTTP connection manager routing everything to `cluster`, answering with headers
/// that show what the proxy knew of the connection.
fn hcm(cluster: &str) -> String {
    format!(
        r#"      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {cluster}
          route_config:
            name: routes
            response_headers_to_add:
            - header: {{ key: x-inbound-protocol, value: "%PROTOCOL%" }}
            - header: {{ key: x-peer, value: "%DOWNSTREAM_PEER_URI_SAN%" }}
            - header: {{ key: x-tls, value: "%DOWNSTREAM_TLS_VERSION%" }}
            - header: {{ key: x-sni, value: "%REQUESTED_SERVER_NAME%" }}
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: {cluster} }}
          http_filters:
          - name: envoy.filters.http.router
"#
    )
}

fn tcp_proxy(cluster: &str) -> String {
    format!(
        r#"      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: {cluster}
          cluster: {cluster}
"#
    )
}

/// A `DownstreamTlsContext` with SDS secrets `default` and `ROOTCA`, client
/// certificates required, peers of this trust domain accepted.
fn downstream_tls(alpn: &str) -> String {
    format!(
        r#"      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_params: {{ tls_minimum_protocol_version: TLSv1_3 }}
            alpn_protocols: [{alpn}]
            tls_certificate_sds_secret_configs: [{{ name: default }}]
            combined_validation_context:
              default_validation_context:
                match_typed_subject_alt_names:
                - san_type: URI
                  matcher: {{ prefix: "spiffe://weft.local/" }}
              validation_context_sds_secret_config: {{ name: ROOTCA }}
"#
    )
}

/// An `UpstreamTlsContext` expecting the server `spiffe://weft.local/ns/default/sa/{server}`.
fn upstream_tls(server: &str, alpn: &str) -> String {
    format!(
        r#"    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: {server}.default.svc
        common_tls_context:
          tls_params: {{ tls_minimum_protocol_version: TLSv1_3 }}
          alpn_protocols: [{alpn}]
          tls_certificate_sds_secret_configs: [{{ name: default }}]
          combined_validation_context:
            default_validation_context:
              match_typed_subject_alt_names:
              - san_type: URI
                matcher: {{ exact: "{TD}/{server}" }}
            validation_context_sds_secret_config: {{ name: ROOTCA }}
"#
    )
}

fn cluster(name: &str, addr: SocketAddr, extra: &str) -> String {
    format!(
        "  - name: {name}\n    connect_timeout: 2s\n{extra}    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint: {{ address: {{ socket_address: {{ address: {}, port_value: {} }} }} }}\n",
        addr.ip(),
        addr.port()
    )
}

const H2: &str = r#"    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
"#;

/// The server side: an mTLS listener `inbound` in front of `app` (plaintext).
fn server_yaml(app: SocketAddr) -> String {
    format!(
        "{ADMIN}static_resources:\n  listeners:\n  - name: inbound\n    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}\n{TLS_INSPECTOR}    filter_chains:\n    - filter_chain_match: {{ transport_protocol: tls }}\n{}{}  clusters:\n{}",
        downstream_tls("\"h2\", \"http/1.1\""),
        hcm("app"),
        cluster("app", app, "")
    )
}

/// The client side: a plaintext listener `outbound` whose routes go over mTLS to
/// `server` (the identity expected) at `addr`: `/h1/...` over HTTP/1.1, `/h2/...` over
/// HTTP/2; and an access log of flags and failure reasons in `log`.
fn client_yaml(addr: SocketAddr, server: &str, log: &std::path::Path) -> String {
    format!(
        r#"{ADMIN}static_resources:
  listeners:
  - name: outbound
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: outbound
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {log}
              log_format: {{ text_format_source: {{ inline_string: "%RESPONSE_CODE% %RESPONSE_FLAGS% [%UPSTREAM_PEER_URI_SAN%] %UPSTREAM_TRANSPORT_FAILURE_REASON%\n" }} }}
          route_config:
            name: routes
            response_headers_to_add:
            - header: {{ key: x-upstream-peer, value: "%UPSTREAM_PEER_URI_SAN%" }}
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/h2/" }}
                route: {{ cluster: server-h2 }}
              - match: {{ prefix: "/" }}
                route: {{ cluster: server-h1 }}
          http_filters:
          - name: envoy.filters.http.router
  clusters:
{}{}"#,
        cluster(
            "server-h1",
            addr,
            &upstream_tls(server, "\"h2\", \"http/1.1\"")
        ),
        cluster(
            "server-h2",
            addr,
            &format!("{}{H2}", upstream_tls(server, "\"h2\", \"http/1.1\""))
        ),
        log = log.display()
    )
}

async fn metrics(p: &RunningProxy) -> String {
    admin_metrics(p.admin_addr().expect("admin")).await
}

/// The serial of the certificate the server presented.
fn server_serial(tls: &Tls) -> String {
    let cert = &tls.get_ref().1.peer_certificates().expect("certs")[0];
    weft_proxy::tls::x509::CertSummary::parse(cert)
        .expect("parses")
        .serial
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn http1(tls: Tls) -> hyper::Result<Sender> {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn send(sender: &mut Sender, path: &str) -> hyper::Result<(u16, http::HeaderMap)> {
    let req = http::Request::get(path)
        .header("host", "inbound")
        .body(Full::new(Bytes::new()))
        .expect("request");
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    resp.into_body().collect().await?;
    Ok((status, headers))
}

/// Whether the server refused the client: the handshake fails, or the first request
/// does (in TLS 1.3 the server judges the client's certificate after the client
/// considers the handshake done).
async fn refused(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> bool {
    let Ok(tls) = tls_connect(addr, config).await else {
        return true;
    };
    let Ok(mut sender) = http1(tls).await else {
        return true;
    };
    send(&mut sender, "/").await.is_err()
}

fn header<'a>(h: &'a http::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// (a) One proxy originates mTLS to another's TLS listener, which forwards plaintext to
/// the application: HTTP/1.1 and HTTP/2, identities on both sides, TLS 1.3 with the
/// post-quantum hybrid key exchange.
#[test]
fn proxy_to_proxy_mtls_http1_and_http2() {
    let rt = runtime();
    let app = rt.block_on(Upstream::start("app"));
    let ca = Ca::new("weft root");
    let server = start(
        &server_yaml(app.addr),
        &store(&ca, &ca.leaf("server", 10, false)),
    );
    let log = log_path("tls", "a");
    let client = start(
        &client_yaml(
            server.listener_addr("inbound").expect("inbound"),
            "server",
            &log,
        ),
        &store(&ca, &ca.leaf("client", 20, false)),
    );
    let outbound = client.listener_addr("outbound").expect("outbound");
    rt.block_on(async {
        for (path, protocol) in [("/h1/x", "HTTP/1.1"), ("/h2/x", "HTTP/2"), ("/h1/y", "HTTP/1.1")] {
            let r = get(outbound, "svc", path).await;
            assert_eq!(r.status, 200, "{path}: {}", r.text());
            assert_eq!(r.headers["x-upstream"], "app");
            assert_eq!(header(&r.headers, "x-inbound-protocol"), protocol, "{path}");
            assert_eq!(header(&r.headers, "x-peer"), format!("{TD}/client"));
            assert_eq!(header(&r.headers, "x-tls"), "TLSv1.3");
            assert_eq!(header(&r.headers, "x-sni"), "server.default.svc");
            assert_eq!(header(&r.headers, "x-upstream-peer"), format!("{TD}/server"));
        }
        let up = metrics(&client).await;
        let down = metrics(&server).await;
        // At least one connection per cluster, every one TLS 1.3 with X25519MLKEM768.
        let handshakes =
            metric(&up, r#"weft_tls_handshakes_total{side="upstream",result="success"}"#);
        assert!(handshakes >= 2.0, "{up}");
        assert_eq!(
            metric(
                &up,
                r#"weft_tls_handshake_negotiated_total{side="upstream",version="TLSv1.3",group="X25519MLKEM768"}"#
            ),
            handshakes,
            "{up}"
        );
        assert_eq!(
            metric(
                &down,
                r#"weft_tls_handshake_negotiated_total{side="downstream",version="TLSv1.3",group="X25519MLKEM768"}"#
            ),
            handshakes,
            "{down}"
        );
    });
    let lines = read_log(&log, 3);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with(&format!("200 - [{TD}/server]"))),
        "{lines:?}"
    );
    let _ = std::fs::remove_file(&log);
}

/// TCP proxying over mTLS, with a half-close crossing both proxies.
#[test]
fn proxy_to_proxy_mtls_tcp() {
    let rt = runtime();
    let (echo, _task) = rt.block_on(weft_test::tcp::start_echo());
    let ca = Ca::new("weft root");
    let server = start(
        &format!(
            "{ADMIN}static_resources:\n  listeners:\n  - name: inbound\n    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}\n    filter_chains:\n    -\n{}{}  clusters:\n{}",
            downstream_tls("\"weft-tcp\""),
            tcp_proxy("echo"),
            cluster("echo", echo, "")
        ),
        &store(&ca, &ca.leaf("server", 1, false)),
    );
    let inbound = server.listener_addr("inbound").expect("inbound");
    let client = start(
        &format!(
            "{ADMIN}static_resources:\n  listeners:\n  - name: outbound\n    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}\n    filter_chains:\n    -\n{}  clusters:\n{}",
            tcp_proxy("server"),
            cluster("server", inbound, &upstream_tls("server", "\"weft-tcp\""))
        ),
        &store(&ca, &ca.leaf("client", 2, false)),
    );
    let outbound = client.listener_addr("outbound").expect("outbound");
    rt.block_on(async {
        let mut s = TcpStream::connect(outbound).await.expect("connect");
        s.write_all(b"hello over mtls").await.expect("write");
        s.shutdown().await.expect("half-close");
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
            .await
            .expect("in time")
            .expect("read");
        assert_eq!(got, b"echo:hello over mtls");
        let down = metrics(&server).await;
        assert_eq!(
            metric(
                &down,
                r#"weft_tls_handshakes_total{side="downstream",result="success"}"#
            ),
            1.0,
            "{down}"
        );
    });
}

/// (b) A listener that only takes mTLS refuses plaintext, clients without a
/// certificate, and clients whose certificate another CA signed.
#[test]
fn strict_listener_refuses_plaintext_and_strangers() {
    let rt = runtime();
    let app = rt.block_on(Upstream::start("app"));
    let ca = Ca::new("weft root");
    let other = Ca::new("someone else");
    let server = start(
        &server_yaml(app.addr),
        &store(&ca, &ca.leaf("server", 1, false)),
    );
    let inbound = server.listener_addr("inbound").expect("inbound");
    rt.block_on(async {
        // Plaintext: no filter chain takes it; the connection closes without an answer.
        let mut s = TcpStream::connect(inbound).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{buf:?}");

        let roots = vec![ca.root()];
        let stranger = other.leaf("client", 5, false);
        assert!(
            refused(
                inbound,
                client_config(roots.clone(), Some(&stranger), &["http/1.1"])
            )
            .await
        );
        assert!(refused(inbound, client_config(roots.clone(), None, &["http/1.1"])).await);
        let expired = ca.leaf("client", 6, true);
        assert!(
            refused(
                inbound,
                client_config(roots.clone(), Some(&expired), &["http/1.1"])
            )
            .await
        );

        // A client of the mesh gets through.
        let friend = ca.leaf("client", 7, false);
        let tls = tls_connect(inbound, client_config(roots, Some(&friend), &["http/1.1"]))
            .await
            .expect("handshake");
        let mut sender = http1(tls).await.expect("http");
        let (status, headers) = send(&mut sender, "/").await.expect("answer");
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "x-peer"), format!("{TD}/client"));

        let m = metrics(&server).await;
        let series =
            |r: &str| format!(r#"weft_tls_handshakes_total{{side="downstream",result="{r}"}}"#);
        assert_eq!(metric(&m, &series("bad_certificate")), 2.0, "{m}");
        assert_eq!(metric(&m, &series("no_certificate")), 1.0, "{m}");
        assert_eq!(metric(&m, &series("success")), 1.0, "{m}");
        assert_eq!(
            metric(
                &m,
                r#"weft_listener_no_filter_chain_match_total{listener="inbound"}"#
            ),
            1.0,
            "{m}"
        );
    });
}

/// A TLS server of the test presenting `leaf`, answering every request with 200.
async fn tls_server(leaf: &Leaf) -> SocketAddr {
    let config = rustls::ServerConfig::builder_with_provider(weft_proxy::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(leaf.chain.clone(), leaf.key())
        .expect("server cert");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                        Bytes::from_static(b"ok"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

/// (c) The client side refuses a server with the wrong SPIFFE ID and one whose
/// certificate expired: 503 with `UF`, the reason in the access log.
#[test]
fn client_refuses_wrong_identity_and_expired_server() {
    let rt = runtime();
    let ca = Ca::new("weft root");
    let impostor = rt.block_on(tls_server(&ca.leaf("impostor", 3, false)));
    let expired = rt.block_on(tls_server(&ca.leaf("server", 4, true)));
    let genuine = rt.block_on(tls_server(&ca.leaf("server", 5, false)));
    let secrets = store(&ca, &ca.leaf("client", 9, false));
    let cases = [
        (impostor, "wrong_identity"),
        (expired, "bad_certificate"),
        (genuine, "success"),
    ];
    for (addr, result) in cases {
        let log = log_path("tls", "c");
        let client = start(&client_yaml(addr, "server", &log), &secrets);
        let outbound = client.listener_addr("outbound").expect("outbound");
        rt.block_on(async {
            let r = get(outbound, "svc", "/h1/").await;
            let m = metrics(&client).await;
            let series =
                format!(r#"weft_tls_handshakes_total{{side="upstream",result="{result}"}}"#);
            assert_eq!(metric(&m, &series), 1.0, "{result}: {m}");
            if result == "success" {
                assert_eq!(r.status, 200, "{}", r.text());
            } else {
                assert_eq!(r.status, 503, "{result}");
                assert!(r.text().contains("TLS"), "{}", r.text());
            }
        });
        let line = read_log(&log, 1).join("\n");
        match result {
            "wrong_identity" => {
                assert!(line.starts_with("503 UF [-] TLS_error"), "{line}");
                assert!(line.contains("expected identities"), "{line}");
                assert!(line.contains("impostor"), "{line}");
            }
            "bad_certificate" => {
                assert!(line.starts_with("503 UF [-] TLS_error"), "{line}");
                assert!(line.to_lowercase().contains("expired"), "{line}");
            }
            _ => assert!(line.starts_with(&format!("200 - [{TD}/server]")), "{line}"),
        }
        let _ = std::fs::remove_file(&log);
    }
}

/// (d) One port, two filter chains: mTLS (`transport_protocol: tls`) and plaintext
/// (`raw_buffer`), as Istio's PERMISSIVE mode.
#[test]
fn permissive_port_takes_mtls_and_plaintext() {
    let rt = runtime();
    let app = rt.block_on(Upstream::start("app"));
    let ca = Ca::new("weft root");
    let yaml = format!(
        "{ADMIN}static_resources:\n  listeners:\n  - name: inbound\n    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}\n{TLS_INSPECTOR}    filter_chains:\n    - filter_chain_match: {{ transport_protocol: tls }}\n{}{}    - filter_chain_match: {{ transport_protocol: raw_buffer }}\n{}  clusters:\n{}",
        downstream_tls("\"h2\", \"http/1.1\""),
        hcm("app"),
        hcm("app"),
        cluster("app", app.addr, "")
    );
    let server = start(&yaml, &store(&ca, &ca.leaf("server", 1, false)));
    let inbound = server.listener_addr("inbound").expect("inbound");
    rt.block_on(async {
        let plain = get(inbound, "svc", "/").await;
        assert_eq!(plain.status, 200);
        // Envoy's "-" for a value not known: no TLS, no peer.
        assert_eq!(header(&plain.headers, "x-tls"), "-");
        assert_eq!(header(&plain.headers, "x-peer"), "-");

        let leaf = ca.leaf("client", 2, false);
        let tls = tls_connect(
            inbound,
            client_config(vec![ca.root()], Some(&leaf), &["h2"]),
        )
        .await
        .expect("handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        // ALPN chose HTTP/2: speak it without further negotiation.
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(tls),
        )
        .await
        .expect("h2");
        tokio::spawn(conn);
        let req = http::Request::get("https://inbound/x")
            .body(Full::new(Bytes::new()))
            .expect("request");
        let resp = sender.send_request(req).await.expect("answer");
        assert_eq!(resp.status(), 200);
        assert_eq!(header(resp.headers(), "x-inbound-protocol"), "HTTP/2");
        assert_eq!(header(resp.headers(), "x-peer"), format!("{TD}/client"));
        assert_eq!(header(resp.headers(), "x-tls"), "TLSv1.3");
    });
}

/// (e) Rotation: the certificate is replaced while a client keeps a connection and
/// sends requests on it: none fails, and new connections see the new certificate.
#[test]
fn certificate_rotation_keeps_connections_and_serves_the_new_one() {
    let rt = runtime();
    let app = rt.block_on(Upstream::start("app"));
    let ca = Ca::new("weft root");
    let secrets = store(&ca, &ca.leaf("server", 0x1111, false));
    let server = start(&server_yaml(app.addr), &secrets);
    let inbound = server.listener_addr("inbound").expect("inbound");
    let admin = server.admin_addr().expect("admin");
    let leaf = ca.leaf("client", 2, false);
    let config = client_config(vec![ca.root()], Some(&leaf), &["http/1.1"]);
    rt.block_on(async {
        let tls = tls_connect(inbound, config.clone())
            .await
            .expect("handshake");
        assert_eq!(server_serial(&tls), "1111");
        let mut kept = http1(tls).await.expect("http");
        for i in 0..30 {
            if i == 10 {
                let next = ca.leaf("server", 0x2222, false);
                server
                    .secrets()
                    .try_set_certificate("default", next.chain.clone(), next.key())
                    .expect("rotated");
            }
            let (status, _) = send(&mut kept, "/").await.expect("kept connection works");
            assert_eq!(status, 200, "request {i}");
            if i >= 10 {
                let fresh = tls_connect(inbound, config.clone())
                    .await
                    .expect("handshake");
                assert_eq!(server_serial(&fresh), "2222", "request {i}");
            }
        }
        let certs = admin_get(admin, "/certs").await;
        assert_eq!(certs.status, 200);
        let text = certs.text();
        assert!(
            text.contains("\"2222\"") && !text.contains("\"1111\""),
            "{text}"
        );
        assert!(text.contains(&format!("{TD}/server")), "{text}");
        assert!(text.contains("days_until_expiration"), "{text}");
        assert!(!text.to_lowercase().contains("private"), "{text}");
    });
}

/// A secret named by the configuration but not yet in the store fails handshakes (503,
/// a metric) until it arrives; then traffic flows, without a restart.
#[test]
fn missing_secret_fails_until_it_arrives() {
    let rt = runtime();
    let app = rt.block_on(Upstream::start("app"));
    let ca = Ca::new("weft root");
    let server = start(
        &server_yaml(app.addr),
        &store(&ca, &ca.leaf("server", 1, false)),
    );
    let log = log_path("tls", "missing");
    let empty = SecretStore::new();
    let client = start(
        &client_yaml(
            server.listener_addr("inbound").expect("inbound"),
            "server",
            &log,
        ),
        &empty,
    );
    let outbound = client.listener_addr("outbound").expect("outbound");
    rt.block_on(async {
        let r = get(outbound, "svc", "/h1/").await;
        assert_eq!(r.status, 503);
        let m = metrics(&client).await;
        assert_eq!(
            metric(
                &m,
                r#"weft_tls_handshakes_total{side="upstream",result="missing_secret"}"#
            ),
            1.0,
            "{m}"
        );
        let waiter = {
            let s = empty.clone();
            tokio::spawn(async move { s.wait_for_all(&["default", "ROOTCA"]).await })
        };
        let leaf = ca.leaf("client", 2, false);
        empty.set_certificate("default", leaf.chain.clone(), leaf.key());
        empty.set_trust("ROOTCA", vec![ca.root()]);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("secrets arrived")
            .expect("join");
        let r = get(outbound, "svc", "/h1/").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(header(&r.headers, "x-peer"), format!("{TD}/client"));
    });
    let lines = read_log(&log, 2);
    assert!(
        lines[0].contains("TLS secret \"default\"") || lines[0].contains("TLS secret \"ROOTCA\""),
        "{lines:?}"
    );
    let _ = std::fs::remove_file(&log);
}

/// Inline material for static bootstraps (files and inline PEM, and the deprecated
/// untyped SAN matchers), and a `/config_dump` that never shows a private key.
#[test]
fn inline_material_and_redacted_dump() {
    let rt = runtime();
    let app = rt.block_on(Upstream::start("app"));
    let ca = Ca::new("weft root");
    let dir = std::env::temp_dir().join(format!(
        "weft-tls-inline-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let server_leaf = ca.leaf("server", 1, false);
    let (cert, key, root) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("root.pem"),
    );
    std::fs::write(&cert, &server_leaf.cert_pem).expect("write");
    std::fs::write(&key, &server_leaf.key_pem).expect("write");
    std::fs::write(&root, ca.root_pem()).expect("write");
    let server = start(
        &format!(
            r#"{ADMIN}static_resources:
  listeners:
  - name: inbound
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificates:
            - certificate_chain: {{ filename: {cert} }}
              private_key: {{ filename: {key} }}
            validation_context:
              trusted_ca: {{ filename: {root} }}
              match_subject_alt_names: [{{ exact: "{TD}/client" }}]
{hcm}  clusters:
{app}"#,
            cert = cert.display(),
            key = key.display(),
            root = root.display(),
            hcm = hcm("app"),
            app = cluster("app", app.addr, "")
        ),
        &SecretStore::new(),
    );
    let inbound = server.listener_addr("inbound").expect("inbound");
    let client_leaf = ca.leaf("client", 2, false);
    let indent = |s: &str| s.replace('\n', "\n                ");
    let client = start(
        &format!(
            r#"{ADMIN}static_resources:
  listeners:
  - name: outbound
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    -
{hcm}  clusters:
  - name: server
    connect_timeout: 2s
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        common_tls_context:
          tls_certificates:
          - certificate_chain:
              inline_string: |
                {cert}
            private_key:
              inline_string: |
                {key}
          validation_context:
            trusted_ca:
              inline_string: |
                {root}
            match_typed_subject_alt_names:
            - {{ san_type: URI, matcher: {{ exact: "{TD}/server" }} }}
    load_assignment:
      cluster_name: server
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}
"#,
            hcm = hcm("server"),
            cert = indent(&client_leaf.cert_pem),
            key = indent(&client_leaf.key_pem),
            root = indent(&ca.root_pem()),
            port = inbound.port(),
        ),
        &SecretStore::new(),
    );
    let outbound = client.listener_addr("outbound").expect("outbound");
    rt.block_on(async {
        let r = get(outbound, "svc", "/").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let dump = admin_get(client.admin_addr().expect("admin"), "/config_dump").await;
        let text = dump.text();
        assert!(
            text.contains("UpstreamTlsContext"),
            "transport socket dumped"
        );
        assert!(text.contains("[redacted]"), "{text}");
        assert!(!text.contains("PRIVATE KEY"), "a key was dumped");
        assert!(
            text.contains("BEGIN CERTIFICATE"),
            "certificates are not secret"
        );
        let dump = admin_get(server.admin_addr().expect("admin"), "/config_dump").await;
        assert!(
            dump.text().contains(&key.display().to_string()),
            "file names stay"
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// (f) Configuration errors name the field at fault.
#[test]
fn config_errors_name_the_field() {
    let ca = Ca::new("weft root");
    let base = |cluster_extra: &str| {
        format!(
            "static_resources:\n  clusters:\n{}",
            cluster("c", "127.0.0.1:1".parse().expect("addr"), cluster_extra)
        )
    };
    let e = load_error(&base(
        "    transport_socket_matches:\n    - name: m\n      transport_socket: { name: envoy.transport_sockets.raw_buffer }\n",
    ));
    assert!(
        e.contains(
            "static_resources.clusters[0].transport_socket_matches: this field is not supported"
        ),
        "{e}"
    );

    let tls = |common: &str| {
        format!(
            "    transport_socket:\n      name: envoy.transport_sockets.tls\n      typed_config:\n        \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext\n        common_tls_context:\n{common}"
        )
    };
    let e = load_error(&base(&tls(
        "          tls_certificate_sds_secret_configs: [{ name: \"\" }]\n",
    )));
    assert!(
        e.contains("static_resources.clusters[0].transport_socket.typed_config.common_tls_context.tls_certificate_sds_secret_configs[0].name: a secret name is required"),
        "{e}"
    );

    let e = load_error(&base(&tls(
        "          tls_certificate_sds_secret_configs: [{ name: default, sds_config: { resource_api_version: V3 } }]\n",
    )));
    assert!(
        e.contains("tls_certificate_sds_secret_configs[0].sds_config: secrets come from the proxy's own secret store"),
        "{e}"
    );

    let bad = std::env::temp_dir().join(format!("weft-tls-bad-{}.pem", std::process::id()));
    std::fs::write(
        &bad,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let leaf = ca.leaf("x", 1, false);
    let key_file = std::env::temp_dir().join(format!("weft-tls-key-{}.pem", std::process::id()));
    std::fs::write(&key_file, &leaf.key_pem).expect("write");
    let e = load_error(&base(&tls(&format!(
        "          tls_certificates:\n          - certificate_chain: {{ filename: {} }}\n            private_key: {{ filename: {} }}\n",
        bad.display(),
        key_file.display()
    ))));
    assert!(
        e.contains("static_resources.clusters[0].transport_socket.typed_config.common_tls_context.tls_certificates[0].certificate_chain.filename: "),
        "{e}"
    );
    let _ = std::fs::remove_file(&bad);
    let _ = std::fs::remove_file(&key_file);

    let e = load_error(&base(&tls(
        "          validation_context: { match_typed_subject_alt_names: [{ san_type: URI, matcher: { exact: x } }] }\n          tls_params: { tls_maximum_protocol_version: TLSv1_1 }\n",
    )));
    assert!(
        e.contains("common_tls_context.validation_context.trusted_ca: trusted_ca is required"),
        "{e}"
    );
    assert!(e.contains("tls_params.tls_maximum_protocol_version"), "{e}");

    let e = load_error(&base(&tls(
        "          tls_params: { cipher_suites: [ECDHE-RSA-AES128-GCM-SHA256] }\n",
    )));
    assert!(
        e.contains("common_tls_context.tls_params.cipher_suites: this field is not supported"),
        "{e}"
    );

    // A listener requiring client certificates without trusted roots.
    let e = load_error(&format!(
        "static_resources:\n  listeners:\n  - name: l\n    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}\n    filter_chains:\n    - transport_socket:\n        name: envoy.transport_sockets.tls\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext\n          require_client_certificate: true\n          common_tls_context:\n            tls_certificate_sds_secret_configs: [{{ name: default }}]\n{}  clusters:\n{}",
        tcp_proxy("c"),
        cluster("c", "127.0.0.1:1".parse().expect("addr"), "")
    ));
    assert!(
        e.contains("static_resources.listeners[0].filter_chains[0].transport_socket.typed_config.require_client_certificate"),
        "{e}"
    );
}
