//! `weft proxy` as a process: its flags, `--validate`, serving, SIGTERM draining, and
//! memory that stays bounded while gigabytes stream through.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use weft_test::{runtime, Upstream};

fn weft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weft"))
}

fn bootstrap(upstream: SocketAddr) -> String {
    format!(
        r#"
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
static_resources:
  listeners:
  - name: ingress
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: backend, timeout: 0s }}
          http_filters:
          - name: envoy.filters.http.router
  clusters:
  - name: backend
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: {}, port_value: {} }} }} }}
"#,
        upstream.ip(),
        upstream.port()
    )
}

fn write_temp(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("bootstrap.yaml");
    std::fs::write(&path, text).expect("write");
    path
}

/// A running `weft proxy` and the addresses it logged.
struct Running {
    child: Child,
    listener: SocketAddr,
    admin: SocketAddr,
}

fn start(config: &std::path::Path) -> Running {
    let mut child = weft()
        .args([
            "--log-format",
            "json",
            "proxy",
            "--concurrency",
            "1",
            "--drain-timeout",
            "5s",
            "--config",
        ])
        .arg(config)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("weft starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let (mut listener, mut admin) = (None, None);
    while listener.is_none() || admin.is_none() {
        let line = lines
            .next()
            .expect("weft logs its addresses")
            .expect("line");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if let Some(a) = v["fields"]["addr"].as_str() {
            listener = a.parse().ok();
        }
        if let Some(a) = v["fields"]["admin"].as_str() {
            admin = a.parse().ok();
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Running {
        child,
        listener: listener.expect("listener"),
        admin: admin.expect("admin"),
    }
}

fn rss_peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

#[test]
fn help_describes_every_flag() {
    let out = weft().arg("--help").output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("proxy"), "{text}");
    let out = weft().args(["proxy", "--help"]).output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config",
        "--validate",
        "--concurrency",
        "--drain-timeout",
        "--log-level",
        "--log-format",
    ] {
        assert!(text.contains(flag), "{flag} missing from:\n{text}");
    }
}

#[test]
fn validate_names_every_problem() {
    let good = write_temp("good", &bootstrap("127.0.0.1:1".parse().expect("addr")));
    let out = weft()
        .args(["proxy", "--validate", "--config"])
        .arg(&good)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));

    let bad_text = bootstrap("127.0.0.1:1".parse().expect("addr"))
        .replace(
            "cluster: backend, timeout: 0s",
            "cluster: nope, timeout: 0s",
        )
        .replace(
            "  - name: backend\n",
            "  - name: backend\n    circuit_breakers: {}\n",
        );
    let bad = write_temp("bad", &bad_text);
    let out = weft()
        .args(["proxy", "--validate", "--config"])
        .arg(&bad)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "static_resources.clusters[0].circuit_breakers: this field is not supported by weft"
        ),
        "{err}"
    );

    let missing = weft()
        .args(["proxy", "--validate", "--config", "/nonexistent.yaml"])
        .output()
        .expect("runs");
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read /nonexistent.yaml"));
}

#[test]
fn sigterm_drains_in_flight_requests() {
    let rt = runtime();
    let up = rt.block_on(Upstream::start("up"));
    let config = write_temp("drain", &bootstrap(up.addr));
    let mut running = start(&config);
    let addr = running.listener;
    rt.block_on(async {
        assert_eq!(weft_test::proxy::get(addr, "svc", "/").await.status, 200);
        let ready = weft_test::proxy::admin_get(running.admin, "/ready").await;
        assert_eq!(ready.status, 200);
    });
    let slow = rt.spawn(async move { weft_test::proxy::get(addr, "svc", "/delay/700").await });
    std::thread::sleep(Duration::from_millis(150));
    sigterm(&running.child);
    let reply = rt.block_on(slow).expect("join");
    assert_eq!(
        reply.status, 200,
        "the request in flight at SIGTERM completed"
    );
    let started = Instant::now();
    let status = loop {
        if let Some(s) = running.child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "weft did not exit after draining"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn gigabytes_stream_with_bounded_memory() {
    const SIZE: u64 = 1 << 30;
    let rt = runtime();
    let up = rt.block_on(Upstream::start("up"));
    let config = write_temp("big", &bootstrap(up.addr));
    let mut running = start(&config);
    let addr = running.listener;
    let baseline = rss_peak_kib(running.child.id());
    rt.block_on(async {
        use http_body_util::BodyExt;
        let client = weft_test::proxy::client();
        let req = http::Request::get(format!("http://{addr}/bytes/{SIZE}"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("req");
        let mut body = client.request(req).await.expect("download").into_body();
        let mut got = 0u64;
        while let Some(f) = body.frame().await {
            got += f.expect("frame").data_ref().map_or(0, |d| d.len() as u64);
        }
        assert_eq!(got, SIZE, "1 GiB downloaded through the proxy");

        let chunks = upload_body(SIZE);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let resp = client
            .request(
                http::Request::post(format!("http://{addr}/up"))
                    .body(chunks)
                    .expect("req"),
            )
            .await
            .expect("upload");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        let j: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(j["body_length"], SIZE, "1 GiB uploaded through the proxy");
    });
    let peak = rss_peak_kib(running.child.id());
    sigterm(&running.child);
    let _ = running.child.wait();
    assert!(
        peak < baseline + 64 * 1024,
        "proxy peak RSS grew from {baseline} KiB to {peak} KiB for 2 GiB streamed"
    );
}

/// `total` bytes in 1 MiB frames, produced as they are sent.
fn upload_body(
    total: u64,
) -> impl http_body::Body<Data = bytes::Bytes, Error = std::io::Error> + Send + 'static {
    let chunk = bytes::Bytes::from(vec![1u8; 1 << 20]);
    let frames =
        (0..total / chunk.len() as u64).map(move |_| Ok(http_body::Frame::data(chunk.clone())));
    http_body_util::StreamBody::new(futures_util::stream::iter(frames))
}
