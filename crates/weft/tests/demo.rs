//! `weft demo` as a user runs it: it starts, its product page is served through the
//! gateway with reviews from the mesh, the CLI works against it, and Ctrl-C stops
//! everything.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::*;
use weft_control::client::ApiClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_the_product_page_and_stops_cleanly() {
    let dir = TempDir::new("demo");
    let log = std::fs::File::create(dir.join("demo.log")).expect("log");
    let mut child = weft()
        .args(["demo", "--port", "0", "--api-address", "127.0.0.1:0"])
        .args(["--xds-address", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("start weft demo");
    let stdout = child.stdout.take().expect("stdout");
    let mut demo = Proc {
        child,
        name: "demo".into(),
        log: dir.join("demo.log"),
    };
    // The banner names the product page and the API.
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut page = None;
    let mut api = None;
    let mut token_file = None;
    let mut strict_mtls = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while page.is_none() || api.is_none() || token_file.is_none() {
        let line = lines_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no banner from the demo:\n{}", demo.log_text()));
        strict_mtls |= line.trim().starts_with("Mutual TLS      STRICT mesh-wide");
        if let Some(url) = line.trim().strip_prefix("Product page") {
            page = Some(url.trim().to_string());
        }
        if let Some(rest) = line.trim().strip_prefix("Control plane   API http://") {
            api = rest.split_whitespace().next().map(str::to_string);
        }
        // export WEFT_TOKEN=$(cat PATH)     # the mesh's admin token
        if let Some(rest) = line.trim().strip_prefix("export WEFT_TOKEN=$(cat ") {
            token_file = rest.split(')').next().map(str::to_string);
        }
    }
    // Every service is called over mTLS: the page below needs all of them.
    assert!(strict_mtls, "the banner says mTLS is STRICT");
    let token = std::fs::read_to_string(token_file.expect("token file"))
        .expect("the admin token the banner names")
        .trim()
        .to_string();
    let page = page.expect("page");
    let api: SocketAddr = api.expect("api").parse().expect("API address");
    let gateway: SocketAddr = page
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("host")
        .parse()
        .expect("gateway address");

    let http = ApiClient::new(&[gateway.to_string()], None);
    let body = http
        .call(hyper::Method::GET, "/productpage", None)
        .await
        .expect("product page");
    let html = String::from_utf8_lossy(&body);
    assert!(html.contains("The Comedy of Errors"), "{html}");
    assert!(html.contains("Book Reviews"), "{html}");
    assert!(
        !html.contains("unavailable"),
        "a service is unavailable:\n{html}"
    );
    let product = http
        .call(hyper::Method::GET, "/api/v1/products/0/reviews", None)
        .await
        .expect("API through the gateway");
    assert!(String::from_utf8_lossy(&product).contains("reviews"));

    // The CLI talks to the demo's control plane.
    let out = weft()
        .args(["get", "services", "--server", &api.to_string()])
        .env("WEFT_TOKEN", &token)
        .output()
        .expect("weft get services");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    for service in ["details", "productpage", "ratings", "reviews"] {
        assert!(table.contains(service), "{service} missing:\n{table}");
    }
    assert!(table.contains("3/3 healthy"), "{table}");

    // Routing as Istio's task does it: everything to v1, then jason to v2.
    let apply = |file: &str| {
        let out = weft()
            .args(["apply", "--server", &api.to_string(), "-f"])
            .env("WEFT_TOKEN", &token)
            .arg(format!(
                "{}/../../examples/bookinfo/networking/{file}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .output()
            .expect("weft apply");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    apply("virtual-service-all-v1.yaml");
    apply("virtual-service-reviews-test-v2.yaml");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = http
            .call(hyper::Method::GET, "/api/v1/products/0/reviews", None)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        if body.contains("reviews-v1") {
            break;
        }
        assert!(Instant::now() < deadline, "v1 never took over: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    demo.terminate();
    let status = demo
        .wait(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the demo did not stop:\n{}", demo.log_text()));
    assert!(status.success(), "{status}\n{}", demo.log_text());
    assert!(
        std::net::TcpStream::connect(gateway).is_err(),
        "the gateway is still serving after the demo stopped"
    );
}
