//! Protocols through the proxy with real clients: HTTP/2 (curl, tonic), gRPC unary and
//! bidirectional streams with deadlines, HTTP/1.1 ⇄ HTTP/2 translation, WebSocket
//! (tokio-tungstenite), CONNECT tunnels, opaque TCP with half-close, large bodies.

mod common;

use bytes::Bytes;
use common::{cluster, http_bootstrap, route_all};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{
    attribute_context, AttributeContext, CheckRequest,
};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_test::proxy::get;
use weft_test::{runtime, TestProxy, Upstream};

const H2_OPTIONS: &str = r#"    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
"#;

fn check(path: &str) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request {
                http: Some(attribute_context::HttpRequest {
                    path: path.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

fn grpc_proxy(route_extra: &str) -> (tokio::runtime::Runtime, TestProxy) {
    let rt = runtime();
    let (addr, _task) = rt.block_on(weft_test::grpc::start());
    let yaml = http_bootstrap(
        &route_all("grpc", route_extra),
        "",
        &[cluster("grpc", &[addr], H2_OPTIONS)],
    );
    (rt, TestProxy::start(&yaml, 2))
}

#[test]
fn grpc_unary_and_status_pass_through() {
    let (rt, proxy) = grpc_proxy("");
    let addr = proxy.addr("http");
    rt.block_on(async {
        let mut client = AuthorizationClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        client
            .check(check("/ok"))
            .await
            .expect("unary call succeeds");
        let err = client
            .check(check("/fail"))
            .await
            .expect_err("server status");
        assert_eq!(err.code(), tonic::Code::Unavailable);
        assert_eq!(err.message(), "told to fail");
    });
}

#[test]
fn grpc_bidirectional_stream() {
    let (rt, proxy) = grpc_proxy("timeout: 0s");
    let addr = proxy.addr("http");
    rt.block_on(async {
        let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut responses = client
            .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("stream opens")
            .into_inner();
        for i in 0..5 {
            tx.send(DiscoveryRequest {
                version_info: format!("v{i}"),
                ..Default::default()
            })
            .await
            .expect("send");
            let echo = responses.next().await.expect("a response").expect("ok");
            assert_eq!(
                echo.version_info,
                format!("v{i}"),
                "each message crosses while the stream stays open"
            );
        }
        drop(tx);
        assert!(
            responses.next().await.is_none(),
            "the stream ends when the client half-closes"
        );
    });
}

#[test]
fn grpc_deadline_from_grpc_timeout() {
    // No route timeout: only the caller's grpc-timeout bounds the call. A raw HTTP/2
    // client sends it, since tonic would enforce the deadline itself.
    let (rt, proxy) = grpc_proxy("timeout: 0s");
    let addr = proxy.addr("http");
    rt.block_on(async {
        use prost::Message;
        let payload = check("/sleep/3000").encode_to_vec();
        let mut frame = vec![0u8];
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&payload);
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut h2, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .expect("h2c");
        tokio::spawn(conn);
        let req = http::Request::post(format!(
            "http://{addr}/envoy.service.auth.v3.Authorization/Check"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "200m")
        .body(Full::new(Bytes::from(frame)))
        .expect("request");
        let started = std::time::Instant::now();
        let resp = h2.send_request(req).await.expect("response");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "answered at the deadline, not after the upstream"
        );
        assert_eq!(
            resp.status(),
            200,
            "gRPC failures travel as trailers-only responses"
        );
        assert_eq!(resp.headers()["grpc-status"], "4", "DEADLINE_EXCEEDED");
        assert_eq!(resp.headers()["grpc-message"], "upstream request timeout");
    });
}

#[test]
fn http1_client_to_http2_upstream_and_back() {
    let rt = runtime();
    let up = rt.block_on(Upstream::start("up"));
    let vhosts = r#"            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/h2/" }
                route: { cluster: h2 }
              - match: { prefix: "/" }
                route: { cluster: h1 }
"#;
    let yaml = http_bootstrap(
        vhosts,
        "",
        &[
            cluster("h2", &[up.addr], H2_OPTIONS),
            cluster("h1", &[up.addr], ""),
        ],
    );
    let proxy = TestProxy::start(&yaml, 1);
    let addr = proxy.addr("http");
    rt.block_on(async {
        let r = get(addr, "svc", "/h2/x").await.json();
        assert_eq!(
            r["version"], "HTTP/2.0",
            "HTTP/1.1 downstream became HTTP/2 upstream"
        );
        assert_eq!(r["uri"], "http://svc/h2/x");
    });
    // curl speaks h2c with prior knowledge to the proxy; the upstream sees HTTP/1.1.
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-w",
            "\n%{http_version}",
            &format!("http://{addr}/plain"),
        ])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, version) = text.rsplit_once('\n').expect("two parts");
    assert_eq!(version, "2", "curl got HTTP/2");
    let j: serde_json::Value = serde_json::from_str(body).expect("json");
    assert_eq!(j["version"], "HTTP/1.1");
    assert_eq!(j["headers"]["host"], format!("{addr}"));
}

#[test]
fn websocket_tunnel_both_ways() {
    let rt = runtime();
    let (ws_addr, _task) = rt.block_on(weft_test::websocket::start_echo());
    let allowed = http_bootstrap(
        &route_all("ws", "timeout: 0s"),
        "          upgrade_configs: [{ upgrade_type: websocket }]\n",
        &[cluster("ws", &[ws_addr], "")],
    );
    let proxy = TestProxy::start(&allowed, 1);
    let addr = proxy.addr("http");
    rt.block_on(async {
        let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{addr}/chat"))
            .await
            .expect("upgrade");
        assert_eq!(resp.status(), 101);
        for i in 0..10 {
            let msg = format!("message {i}");
            ws.send(tokio_tungstenite::tungstenite::Message::text(msg.clone()))
                .await
                .expect("send");
            let back = ws.next().await.expect("echo").expect("ok");
            assert_eq!(back.into_text().expect("text").as_str(), msg);
        }
        ws.send(tokio_tungstenite::tungstenite::Message::binary(vec![
            0u8, 1, 2,
        ]))
        .await
        .expect("binary");
        assert_eq!(
            ws.next()
                .await
                .expect("echo")
                .expect("ok")
                .into_data()
                .as_ref(),
            &[0u8, 1, 2]
        );
        ws.close(None).await.expect("close");
    });
    drop(proxy);
    // Without upgrade_configs the upgrade is refused, as Envoy does.
    let refused = http_bootstrap(&route_all("ws", ""), "", &[cluster("ws", &[ws_addr], "")]);
    let proxy = TestProxy::start(&refused, 1);
    let addr = proxy.addr("http");
    rt.block_on(async {
        let err = tokio_tungstenite::connect_async(format!("ws://{addr}/chat"))
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("403"), "{err}");
    });
}

#[test]
fn tcp_proxy_keeps_half_close() {
    let rt = runtime();
    let (echo, _task) = rt.block_on(weft_test::tcp::start_echo());
    let yaml = format!(
        r#"
static_resources:
  listeners:
  - name: tcp
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: echo
          idle_timeout: 5s
  clusters:
{}"#,
        cluster("echo", &[echo], "")
    );
    let proxy = TestProxy::start(&yaml, 1);
    let addr = proxy.addr("tcp");
    rt.block_on(async {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"hello over tcp").await.expect("write");
        s.shutdown().await.expect("half-close");
        let mut back = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut back))
            .await
            .expect("in time")
            .expect("read");
        assert_eq!(
            back, b"echo:hello over tcp",
            "the upstream saw our half-close and still answered"
        );
    });
}

#[test]
fn connect_tunnels_to_a_tcp_upstream() {
    let rt = runtime();
    let (echo, _task) = rt.block_on(weft_test::tcp::start_echo());
    let vhosts = r#"            - name: tunnel
              domains: ["echo:9000"]
              routes:
              - match: { connect_matcher: {} }
                route: { cluster: echo, timeout: 0s, upgrade_configs: [{ upgrade_type: CONNECT, connect_config: {} }] }
"#;
    let yaml = http_bootstrap(
        vhosts,
        "          upgrade_configs: [{ upgrade_type: CONNECT }]\n",
        &[cluster("echo", &[echo], "")],
    );
    let proxy = TestProxy::start(&yaml, 1);
    let addr = proxy.addr("http");
    rt.block_on(async {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"CONNECT echo:9000 HTTP/1.1\r\nHost: echo:9000\r\n\r\n")
            .await
            .expect("write");
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.expect("status line");
        assert_eq!(&head, b"HTTP/1.1 200");
        let mut rest = Vec::new();
        loop {
            let b = s.read_u8().await.expect("header byte");
            rest.push(b);
            if rest.ends_with(b"\r\n\r\n") {
                break;
            }
        }
        s.write_all(b"through the tunnel").await.expect("payload");
        s.shutdown().await.expect("half-close");
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.expect("read");
        assert_eq!(back, b"echo:through the tunnel");
    });
}

#[test]
fn large_bodies_stream_both_ways() {
    const SIZE: u64 = 256 * 1024 * 1024;
    let rt = runtime();
    let up = rt.block_on(Upstream::start("up"));
    let yaml = http_bootstrap(
        &route_all("up", "timeout: 0s"),
        "",
        &[cluster("up", &[up.addr], "")],
    );
    let proxy = TestProxy::start(&yaml, 2);
    let addr = proxy.addr("http");
    rt.block_on(async {
        let resp = weft_test::proxy::client()
            .request(
                http::Request::get(format!("http://{addr}/bytes/{SIZE}"))
                    .body(Full::new(Bytes::new()))
                    .expect("req"),
            )
            .await
            .expect("download");
        let mut body = resp.into_body();
        let mut got = 0u64;
        while let Some(frame) = body.frame().await {
            got += frame
                .expect("frame")
                .data_ref()
                .map_or(0, |d| d.len() as u64);
        }
        assert_eq!(got, SIZE);

        let chunks = futures_util::stream::iter((0..SIZE / (1 << 20)).map(|_| {
            Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(vec![7u8; 1 << 20])))
        }));
        let body = http_body_util::StreamBody::new(chunks);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let resp = client
            .request(
                http::Request::post(format!("http://{addr}/upload"))
                    .body(body)
                    .expect("req"),
            )
            .await
            .expect("upload");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        let j: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(j["body_length"], SIZE);
    });
}
