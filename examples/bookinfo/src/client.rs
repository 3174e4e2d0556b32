//! Calls to other services by name, through `HTTP_PROXY`/`http_proxy` when set (the
//! Weft sidecar's outbound listener), forwarding the request's tracing and routing
//! headers.

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as Hyper;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// Headers passed along so the mesh can trace a request and route it by user.
const PROPAGATED: &[&str] = &[
    "x-request-id",
    "traceparent",
    "tracestate",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
    "end-user",
    "user-agent",
];

/// An HTTP client that goes through the proxy named in the environment.
pub struct Client {
    inner: Hyper<HttpConnector, Full<Bytes>>,
    proxy: Option<String>,
}

impl Client {
    /// Reads `http_proxy` (curl's spelling) then `HTTP_PROXY`.
    pub fn from_env() -> Client {
        let proxy = ["http_proxy", "HTTP_PROXY"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
            .map(|p| p.trim_end_matches('/').to_string());
        Client {
            inner: Hyper::builder(TokioExecutor::new()).build_http(),
            proxy,
        }
    }

    /// `GET url`, propagating headers from `incoming`; the body as JSON, or an error.
    pub async fn get_json(
        &self,
        url: &str,
        incoming: &HeaderMap,
    ) -> Result<serde_json::Value, String> {
        let mut builder = Request::get(url);
        for name in PROPAGATED {
            if let Some(v) = incoming.get(*name) {
                builder = builder.header(*name, v);
            }
        }
        let mut req = builder
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        if let Some(proxy) = &self.proxy {
            // The request keeps its absolute URI, so the proxy learns the service; the
            // connection goes to the proxy.
            let target: http::Uri = proxy
                .parse()
                .map_err(|e| format!("bad proxy {proxy}: {e}"))?;
            req.extensions_mut().insert(ProxyTarget(target));
        }
        let send = async {
            match req.extensions().get::<ProxyTarget>().cloned() {
                Some(ProxyTarget(target)) => self.via_proxy(target, req).await,
                None => self.inner.request(req).await.map_err(|e| e.to_string()),
            }
        };
        let resp = tokio::time::timeout(Duration::from_secs(3), send)
            .await
            .map_err(|_| format!("{url}: timed out"))??;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "{url}: {status} {}",
                String::from_utf8_lossy(&body).trim()
            ));
        }
        serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))
    }

    async fn via_proxy(
        &self,
        target: http::Uri,
        req: Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, String> {
        let host = target.host().unwrap_or("127.0.0.1").to_string();
        let port = target.port_u16().unwrap_or(80);
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("proxy {target}: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        sender.send_request(req).await.map_err(|e| e.to_string())
    }
}

#[derive(Clone)]
struct ProxyTarget(http::Uri);
