//! HTTP/1.1 proxying end to end over real sockets: routing, headers, rewrites, local
//! answers, retries, timeouts, failures and their response flags, pooling, bodies.

mod common;

use bytes::Bytes;
use common::{cluster, http_bootstrap, route_all};
use http_body_util::Full;
use std::time::{Duration, Instant};
use weft_test::proxy::{get, send};
use weft_test::{runtime, TestProxy, Upstream};

fn request(
    method: &str,
    url: String,
    host: &str,
    body: &'static [u8],
) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .method(method)
        .uri(url)
        .header("host", host)
        .body(Full::new(Bytes::from_static(body)))
        .expect("request")
}

#[test]
fn routes_by_domain_path_header_and_query() {
    let rt = runtime();
    let (a, b, c) = rt.block_on(async {
        (
            Upstream::start("a").await,
            Upstream::start("b").await,
            Upstream::start("c").await,
        )
    });
    let vhosts = r#"            - name: shop
              domains: ["shop.example.com", "shop.example.com:8080"]
              routes:
              - match: { prefix: "/api", headers: [{ name: x-canary, string_match: { exact: "yes" } }] }
                route: { cluster: b }
              - match: { prefix: "/api", query_parameters: [{ name: v, string_match: { exact: "3" } }] }
                route: { cluster: c }
              - match: { path: "/exact" }
                route: { cluster: c }
              - match: { safe_regex: { regex: "/items/[0-9]+" } }
                route: { cluster: b }
              - match: { prefix: "/" }
                route: { cluster: a }
            - name: wildcard
              domains: ["*.example.com"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: c }
"#;
    let yaml = http_bootstrap(
        vhosts,
        "",
        &[
            cluster("a", &[a.addr], ""),
            cluster("b", &[b.addr], ""),
            cluster("c", &[c.addr], ""),
        ],
    );
    let proxy = TestProxy::start(&yaml, 1);
    let addr = proxy.addr("http");
    rt.block_on(async {
        let upstream =
            |r: weft_test::proxy::Reply| r.headers["x-upstream"].to_str().expect("s").to_string();
        assert_eq!(upstream(get(addr, "shop.example.com", "/api/x").await), "a");
        assert_eq!(
            upstream(get(addr, "shop.example.com:8080", "/api/x?v=3").await),
            "c"
        );
        let mut req = request(
            "GET",
            format!("http://{addr}/api/x"),
            "shop.example.com",
            b"",
        );
        req.headers_mut()
            .insert("x-canary", "yes".parse().expect("v"));
        assert_eq!(upstream(send(req).await), "b");
        assert_eq!(upstream(get(addr, "shop.example.com", "/exact").await), "c");
        assert_eq!(
            upstream(get(addr, "shop.example.com", "/exact/more").await),
            "a"
        );
        assert_eq!(
            upstream(get(addr, "shop.example.com", "/items/42").await),
            "b"
        );
        assert_eq!(
            upstream(get(addr, "shop.example.com", "/items/abc").await),
            "a"
        );
        assert_eq!(upstream(get(addr, "www.example.com", "/").await), "c");
        let nr = get(addr, "nothing.org", "/").await;
        assert_eq!(nr.status, 404, "no virtual host: NR");
    });
}

#[test]
fn forwarding_headers_and_mutations() {
    let rt = runtime();
    let up = rt.block_on(Upstream::start("up"));
    let vhosts = r#"            - name: all
              domains: ["*"]
              request_headers_to_add:
              - header: { key: x-vhost, value: "v" }
              response_headers_to_add:
              - header: { key: x-resp, value: "%UPSTREAM_CLUSTER%" }
              routes:
              - match: { prefix: "/old/" }
                route: { cluster: up, prefix_rewrite: "/new/" }
                request_headers_to_add:
                - header: { key: x-client, value: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%" }
                request_headers_to_remove: [x-secret]
              - match: { prefix: "/re/" }
                route: { cluster: up, regex_rewrite: { pattern: { regex: "^/re/(\\w+)/(\\w+)$" }, substitution: "/\\2/\\1" }, host_rewrite_literal: rewritten.internal }
              - match: { prefix: "/" }
                route: { cluster: up }
"#;
    let yaml = http_bootstrap(
        vhosts,
        "          use_remote_address: true\n",
        &[cluster("up", &[up.addr], "")],
    );
    let proxy = TestProxy::start(&yaml, 1);
    let addr = proxy.addr("http");
    rt.block_on(async {
        let mut req = request("GET", format!("http://{addr}/old/thing?q=1"), "svc", b"");
        req.headers_mut()
            .insert("x-secret", "s".parse().expect("v"));
        req.headers_mut()
            .insert("connection", "keep-alive, x-hop".parse().expect("v"));
        req.headers_mut().insert("x-hop", "1".parse().expect("v"));
        let r = send(req).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.headers["x-resp"], "up");
        assert_eq!(r.headers["server"], "weft");
        assert!(r.headers.contains_key("x-envoy-upstream-service-time"));
        let j = r.json();
        let h = &j["headers"];
        assert_eq!(j["path"], "/new/thing?q=1");
        assert_eq!(h["x-envoy-original-path"], "/old/thing?q=1");
        assert_eq!(h["x-vhost"], "v");
        assert_eq!(h["x-client"], "127.0.0.1");
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["host"], "svc");
        assert!(h.get("x-secret").is_none(), "removed");
        assert!(h.get("x-hop").is_none(), "named in Connection: hop-by-hop");
        assert_eq!(h["x-request-id"].as_str().expect("request id").len(), 36);

        let r = get(addr, "svc", "/re/abc/def").await.json();
        assert_eq!(r["path"], "/def/abc");
        assert_eq!(r["headers"]["host"], "rewritten.internal");
    });
}

#[test]
fn redirects_and_direct_responses() {
    let rt = runtime();
    let vhosts = r#"            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/moved/" }
                redirect: { prefix_rewrite: "/new/", response_code: PERMANENT_REDIRECT }
              - match: { path: "/secure" }
                redirect: { https_redirect: true }
              - match: { path: "/teapot" }
                direct_response: { status: 418, body: { inline_string: "short and stout" } }
"#;
    let yaml = http_bootstrap(vhosts, "", &[]);
    let proxy = TestProxy::start(&yaml, 1);
    let addr = proxy.addr("http");
    rt.block_on(async {
        let r = get(addr, "example.com", "/moved/a?b=1").await;
        assert_eq!(r.status, 308);
        assert_eq!(r.headers["location"], "http://example.com/new/a?b=1");
        let r = get(addr, "example.com:80", "/secure").await;
        assert_eq!(r.status, 301);
        assert_eq!(r.headers["location"], "https://example.com/secure");
        let r = get(addr, "example.com", "/teapot").await;
        assert_eq!(r.status, 418);
        assert_eq!(r.text(), "short and stout");
    });
}

#[test]
fn weighted_split_follows_weights() {
    let rt = runtime();
    let (v1, v2) =
        rt.block_on(async { (Upstream::start("v1").await, Upstream::start("v2").await) });
    let vhosts = r#"            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route:
                  weighted_clusters:
                    clusters:
                    - { name: v1, weight: 80 }
                    - { name: v2, weight: 20, request_headers_to_add: [{ header: { key: x-arm, value: two } }] }
"#;
    let yaml = http_bootstrap(
        vhosts,
        "",
        &[cluster("v1", &[v1.addr], ""), cluster("v2", &[v2.addr], "")],
    );
    let proxy = TestProxy::start(&yaml, 2);
    let addr = proxy.addr("http");
    rt.block_on(async {
        let mut to_v2 = 0;
        for _ in 0..400 {
            let r = get(addr, "svc", "/").await;
            if r.headers["x-upstream"] == "v2" {
                to_v2 += 1;
                assert_eq!(r.json()["headers"]["x-arm"], "two");
            }
        }
        assert!(
            (40..=120).contains(&to_v2),
            "v2 got {to_v2} of 400 at weight 20%"
        );
    });
}

#[test]
fn retries_move_to_a_healthy_endpoint_and_replay_the_body() {
    let rt = runtime();
    let up = rt.block_on(Upstream::start("up"));
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let retry = "retry_policy: { retry_on: \"connect-failure,5xx\", num_retries: 3, retry_back_off: { base_interval: 0.001s } }";
    let vhosts = format!(
        r#"            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/flaky" }}
                route: {{ cluster: single, {retry} }}
              - match: {{ prefix: "/" }}
                route: {{ cluster: up, {retry} }}
"#
    );
    let yaml = http_bootstrap(
        &vhosts,
        "",
        &[
            cluster("up", &[dead, up.addr], "    lb_policy: ROUND_ROBIN\n"),
            cluster("single", &[up.addr], ""),
        ],
    );
    let proxy = TestProxy::start(&yaml, 1);
    let addr = proxy.addr("http");
    rt.block_on(async {
        for _ in 0..6 {
            let r = send(request(
                "POST",
                format!("http://{addr}/"),
                "svc",
                b"payload",
            ))
            .await;
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(
                r.json()["body_length"],
                7,
                "the body is sent again on retry"
            );
        }
        // 503s from the upstream are retried until the flaky path recovers.
        let r = get(addr, "svc", "/flaky/2").await;
        assert_eq!(r.status, 200, "two 503s then success within 3 retries");
    });
    let metrics = rt
        .block_on(weft_test::proxy::admin_get(
            proxy.admin(),
            "/stats/prometheus",
        ))
        .text();
    assert!(
        metrics.contains("weft_cluster_upstream_rq_retry_total{cluster=\"up\"}"),
        "{metrics}"
    );
}

#[test]
fn failures_map_to_status_and_response_flags() {
    let rt = runtime();
    let up = rt.block_on(Upstream::start("up"));
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let dir = std::env::temp_dir().join(format!("weft-flags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let log = dir.join("access.log");
    let vhosts = r#"            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/dead" }
                route: { cluster: dead }
              - match: { prefix: "/slow" }
                route: { cluster: up, timeout: 0.2s }
              - match: { prefix: "/per-try" }
                route: { cluster: up, retry_policy: { retry_on: 5xx, num_retries: 1, per_try_timeout: 0.1s } }
              - match: { prefix: "/empty" }
                route: { cluster: empty }
              - match: { prefix: "/ok" }
                route: { cluster: up }
"#;
    let hcm = format!(
        "          access_log:\n          - name: file\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n              path: {}\n",
        log.display()
    );
    let yaml = http_bootstrap(
        vhosts,
        &hcm,
        &[
            cluster("up", &[up.addr], ""),
            cluster("dead", &[dead], ""),
            cluster("empty", &[], ""),
        ],
    );
    let proxy = TestProxy::start(&yaml, 1);
    let addr = proxy.addr("http");
    rt.block_on(async {
        let r = get(addr, "svc", "/dead").await;
        assert_eq!(r.status, 503);
        assert!(r.text().contains("connection failure"), "{}", r.text());
        let started = Instant::now();
        let r = get(addr, "svc", "/slow/delay/2000").await;
        assert_eq!(r.status, 504);
        assert!(started.elapsed() < Duration::from_millis(1500));
        assert_eq!(get(addr, "svc", "/per-try/delay/1000").await.status, 504);
        assert_eq!(get(addr, "svc", "/empty").await.status, 503);
        assert_eq!(
            get(addr, "nowhere", "/nothing").await.status,
            404,
            "no route"
        );
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    let lines = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 4 || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let entries: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("every access log line is JSON"))
        .collect();
    let flags = |path: &str| {
        entries
            .iter()
            .find(|e| e["path"].as_str().is_some_and(|p| p.starts_with(path)))
            .map(|e| e["response_flags"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    assert_eq!(flags("/dead"), "UF");
    assert_eq!(flags("/slow"), "UT");
    assert!(flags("/per-try").contains("UT"), "{}", flags("/per-try"));
    assert_eq!(flags("/empty"), "UH");
    for e in &entries {
        for field in [
            "start_time",
            "method",
            "path",
            "protocol",
            "response_code",
            "bytes_received",
            "bytes_sent",
            "duration",
            "upstream_host",
            "request_id",
            "authority",
        ] {
            assert!(e.get(field).is_some(), "{field} missing in {e}");
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn no_route_is_404_nr() {
    let rt = runtime();
    let up = rt.block_on(Upstream::start("up"));
    let vhosts = r#"            - name: api
              domains: ["api"]
              routes:
              - match: { prefix: "/v1/" }
                route: { cluster: up }
"#;
    let yaml = http_bootstrap(vhosts, "", &[cluster("up", &[up.addr], "")]);
    let proxy = TestProxy::start(&yaml, 1);
    let addr = proxy.addr("http");
    rt.block_on(async {
        assert_eq!(get(addr, "api", "/v2/").await.status, 404);
        assert_eq!(get(addr, "other", "/v1/").await.status, 404);
        assert_eq!(get(addr, "api", "/v1/x").await.status, 200);
    });
    let metrics = rt
        .block_on(weft_test::proxy::admin_get(proxy.admin(), "/metrics"))
        .text();
    assert!(
        metrics.contains("weft_http_no_route_total{stat_prefix=\"ingress\"} 2"),
        "{metrics}"
    );
}

#[test]
fn upstream_connections_are_reused() {
    let rt = runtime();
    let up = rt.block_on(Upstream::start("up"));
    let yaml = http_bootstrap(&route_all("up", ""), "", &[cluster("up", &[up.addr], "")]);
    let proxy = TestProxy::start(&yaml, 1);
    let addr = proxy.addr("http");
    rt.block_on(async {
        for _ in 0..50 {
            assert_eq!(get(addr, "svc", "/").await.status, 200);
        }
        // Upstream closes after answering: the proxy notices and opens another.
        assert_eq!(get(addr, "svc", "/close").await.status, 200);
        assert_eq!(get(addr, "svc", "/").await.status, 200);
    });
    assert!(
        up.connection_count() <= 3,
        "{} upstream connections for 52 sequential requests",
        up.connection_count()
    );
}

#[test]
fn chunked_bodies_trailers_and_expect_continue() {
    let rt = runtime();
    let up = rt.block_on(Upstream::start("up"));
    let yaml = http_bootstrap(&route_all("up", ""), "", &[cluster("up", &[up.addr], "")]);
    let proxy = TestProxy::start(&yaml, 1);
    let addr = proxy.addr("http");
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-H",
            "Transfer-Encoding: chunked",
            "-H",
            "Expect: 100-continue",
            "--data-binary",
            "@-",
        ])
        .arg(format!("http://{addr}/"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .expect("stdin")
                .write_all(&vec![b'z'; 100_000])?;
            c.wait_with_output()
        })
        .expect("curl runs");
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["body_length"], 100_000);
    assert!(
        j["headers"].get("expect").is_none(),
        "100-continue is answered by the proxy"
    );
    rt.block_on(async {
        let r = get(addr, "svc", "/trailers").await;
        assert_eq!(r.text(), "body");
    });
}

#[test]
fn absolute_form_proxy_requests() {
    let rt = runtime();
    let up = rt.block_on(Upstream::start("reviews"));
    let vhosts = r#"            - name: reviews
              domains: ["reviews", "reviews:9080"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: reviews }
"#;
    let yaml = http_bootstrap(vhosts, "", &[cluster("reviews", &[up.addr], "")]);
    let proxy = TestProxy::start(&yaml, 1);
    let addr = proxy.addr("http");
    // curl with a proxy sends `GET http://reviews:9080/ratings HTTP/1.1`.
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--proxy",
            &format!("http://{addr}"),
            "http://reviews:9080/ratings?x=1",
        ])
        .output()
        .expect("curl");
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["path"], "/ratings?x=1");
    assert_eq!(j["headers"]["host"], "reviews:9080");
    assert!(j["headers"].get("proxy-connection").is_none());
}

#[test]
fn graceful_shutdown_finishes_in_flight_requests() {
    let rt = runtime();
    let up = rt.block_on(Upstream::start("up"));
    let yaml = http_bootstrap(&route_all("up", ""), "", &[cluster("up", &[up.addr], "")]);
    let proxy = TestProxy::start(&yaml, 1);
    let addr = proxy.addr("http");
    let inflight = rt.spawn(async move { get(addr, "svc", "/delay/500").await });
    std::thread::sleep(Duration::from_millis(100));
    proxy.shutdown();
    let r = rt.block_on(inflight).expect("join");
    assert_eq!(
        r.status, 200,
        "the in-flight request completed during the drain"
    );
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the listener is closed after shutdown"
    );
}
