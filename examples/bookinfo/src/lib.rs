//! Bookinfo, written for Weft's demo after the application Istio made famous: a product
//! page that calls `details` and `reviews`; `reviews` comes in three versions, of which
//! v2 (black stars) and v3 (red stars) call `ratings`. Every service is a plain HTTP
//! server that calls the others by name (`http://reviews:9080/...`) through
//! `HTTP_PROXY`, so it runs unchanged beside a Weft sidecar, and forwards the headers a
//! mesh needs to trace and route (`x-request-id`, B3, `traceparent`, `end-user`).

mod client;
mod details;
mod productpage;
mod ratings;
mod reviews;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

/// Which Bookinfo service to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// The page people open.
    ProductPage,
    /// Book details.
    Details,
    /// Reviews: 1 = no stars, 2 = black stars, 3 = red stars.
    Reviews(u8),
    /// Star ratings.
    Ratings,
}

impl Service {
    /// Parses `productpage`, `details`, `ratings`, or `reviews` with a version.
    pub fn parse(name: &str, version: &str) -> Option<Service> {
        Some(match name {
            "productpage" => Service::ProductPage,
            "details" => Service::Details,
            "ratings" => Service::Ratings,
            "reviews" => Service::Reviews(match version {
                "v1" | "1" | "" => 1,
                "v2" | "2" => 2,
                "v3" | "3" => 3,
                _ => return None,
            }),
            _ => return None,
        })
    }
}

/// Serves `service` on `addr` until the process ends.
pub async fn serve(service: Service, addr: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let client = Arc::new(client::Client::from_env());
    tracing::info!(?service, %addr, "bookinfo service listening");
    loop {
        let (stream, _) = listener.accept().await?;
        let client = client.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let client = client.clone();
                async move { Ok::<_, Infallible>(handle(service, req, &client).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn handle(
    service: Service,
    req: Request<Incoming>,
    client: &client::Client,
) -> Response<Full<Bytes>> {
    if req.uri().path() == "/health" {
        return text(StatusCode::OK, "ok");
    }
    match service {
        Service::ProductPage => productpage::handle(req, client).await,
        Service::Details => details::handle(req),
        Service::Reviews(v) => reviews::handle(req, v, client).await,
        Service::Ratings => ratings::handle(req),
    }
}

/// A plain-text response.
fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", "text/plain".parse().expect("valid"));
    r
}

/// A JSON response.
fn json(value: serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    r.headers_mut()
        .insert("content-type", "application/json".parse().expect("valid"));
    r
}

/// The product id in `/prefix/{id}`, default 0.
fn id_in(path: &str) -> u64 {
    path.rsplit('/')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
