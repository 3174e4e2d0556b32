//! Runs a `weft proxy` in the test process from bootstrap YAML, on real 127.0.0.1
//! sockets, and offers a plain HTTP client to talk through it.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::time::Duration;
use weft_proxy::{Proxy, ProxyOptions, RunningProxy};

/// A proxy running in this process.
pub struct TestProxy {
    running: Option<RunningProxy>,
}

impl TestProxy {
    /// Starts a proxy from bootstrap YAML with `workers` worker threads.
    pub fn start(yaml: &str, workers: usize) -> TestProxy {
        let options = ProxyOptions {
            concurrency: workers,
            drain_timeout: Duration::from_secs(2),
            ..ProxyOptions::new("test-bootstrap.yaml")
        };
        let proxy = match Proxy::from_text(&options, yaml) {
            Ok(p) => p,
            Err(e) => panic!("bootstrap rejected: {e}\n{yaml}"),
        };
        let running = proxy.start().expect("proxy starts");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !running.is_ready() {
            assert!(
                std::time::Instant::now() < deadline,
                "proxy never became ready"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        TestProxy {
            running: Some(running),
        }
    }

    fn running(&self) -> &RunningProxy {
        self.running.as_ref().expect("running")
    }

    /// Address of the named listener.
    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.running()
            .listener_addr(listener)
            .unwrap_or_else(|| panic!("no listener {listener}"))
    }

    /// Address of the admin listener.
    pub fn admin(&self) -> SocketAddr {
        self.running().admin_addr().expect("admin configured")
    }

    /// Drains and stops the proxy.
    pub fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
        }
    }

    /// The running proxy.
    pub fn handle(&self) -> &RunningProxy {
        self.running()
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
        }
    }
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A pooled HTTP/1.1 client.
pub fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends one request and reads the whole response.
pub async fn send(req: http::Request<Full<Bytes>>) -> Reply {
    let resp = client().request(req).await.expect("request sent");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body read").to_bytes();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

/// `GET http://addr{path}` with a `Host` header.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Reply {
    let req = http::Request::get(format!("http://{addr}{path}"))
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .expect("request");
    send(req).await
}

/// Fetches an admin page.
pub async fn admin_get(admin: SocketAddr, path: &str) -> Reply {
    get(admin, "admin", path).await
}

/// A proxy's Prometheus metrics, from its admin listener.
pub async fn admin_metrics(admin: SocketAddr) -> String {
    admin_get(admin, "/metrics").await.text()
}

/// The value of the metric line starting with `series` (0 when absent).
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}
