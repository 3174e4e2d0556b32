//! An HTTP/1.1 + h2c upstream that answers with what it received, and behaves as the
//! path asks: `/status/N`, `/delay/MS`, `/bytes/N` (a streamed body of N bytes),
//! `/echo` (the request body streamed back), `/flaky/N` (503 for the first N requests),
//! `/trailers`, `/close` (`Connection: close`).

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

type BoxBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// A running upstream.
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its name, sent back in `x-upstream`.
    pub name: String,
    /// Connections accepted.
    pub connections: Arc<AtomicUsize>,
    /// Requests served.
    pub requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// Starts an upstream named `name` on a free 127.0.0.1 port (call inside a runtime).
    pub async fn start(name: &str) -> Upstream {
        Upstream::start_on("127.0.0.1:0".parse().expect("addr"), name).await
    }

    /// Starts an upstream on `addr`.
    pub async fn start_on(addr: SocketAddr, name: &str) -> Upstream {
        Upstream::start_full(addr, name, Duration::ZERO).await
    }

    /// Starts an upstream that waits `delay` before every answer.
    pub async fn start_slow(name: &str, delay: Duration) -> Upstream {
        Upstream::start_full("127.0.0.1:0".parse().expect("addr"), name, delay).await
    }

    async fn start_full(addr: SocketAddr, name: &str, delay: Duration) -> Upstream {
        let listener = TcpListener::bind(addr).await.expect("bind upstream");
        let addr = listener.local_addr().expect("local addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let flaky = Arc::new(AtomicUsize::new(0));
        let (c, r, n) = (connections.clone(), requests.clone(), name.to_string());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let (r, n, flaky) = (r.clone(), n.clone(), flaky.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let (r, n, flaky) = (r.clone(), n.clone(), flaky.clone());
                        async move {
                            r.fetch_add(1, Ordering::SeqCst);
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            Ok::<_, Infallible>(answer(req, &n, &flaky).await)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            name: name.to_string(),
            connections,
            requests,
            task,
        }
    }

    /// Connections accepted so far.
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Requests served so far.
    pub fn request_count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn full(b: impl Into<Bytes>) -> BoxBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

async fn answer(req: Request<Incoming>, name: &str, flaky: &AtomicUsize) -> Response<BoxBody> {
    // The first known command anywhere in the path, so that route prefixes can precede it.
    const COMMANDS: [&str; 7] = [
        "status", "delay", "bytes", "echo", "flaky", "trailers", "close",
    ];
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let at = segments.iter().position(|s| COMMANDS.contains(s));
    let first = at.map_or("", |i| segments[i]);
    let number = at
        .and_then(|i| segments.get(i + 1))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    let mut resp = match first {
        "status" => {
            let mut r = Response::new(full(format!("status {number}\n")));
            *r.status_mut() =
                StatusCode::from_u16(number as u16).unwrap_or(StatusCode::BAD_REQUEST);
            r
        }
        "delay" => {
            tokio::time::sleep(Duration::from_millis(number)).await;
            describe(req, name).await
        }
        "bytes" => {
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let mut left = number;
            let stream = futures_util::stream::poll_fn(move |_| {
                if left == 0 {
                    return std::task::Poll::Ready(None);
                }
                let n = left.min(chunk.len() as u64);
                left -= n;
                std::task::Poll::Ready(Some(Ok::<_, std::io::Error>(Frame::data(
                    chunk.slice(..n as usize),
                ))))
            });
            let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
            r.headers_mut().insert("content-length", number.into());
            r
        }
        "echo" => {
            let body = req.into_body().map_err(std::io::Error::other).boxed();
            Response::new(body)
        }
        "flaky" => {
            if flaky.fetch_add(1, Ordering::SeqCst) < number as usize {
                let mut r = Response::new(full("flaky\n"));
                *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                r
            } else {
                describe(req, name).await
            }
        }
        "trailers" => {
            let frames = futures_util::stream::iter(vec![
                Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(b"body"))),
                Ok(Frame::trailers({
                    let mut t = http::HeaderMap::new();
                    t.insert("x-trailer", "done".parse().expect("v"));
                    t
                })),
            ]);
            Response::new(BodyExt::boxed(StreamBody::new(frames)))
        }
        "close" => {
            let mut r = describe(req, name).await;
            r.headers_mut()
                .insert("connection", "close".parse().expect("v"));
            r
        }
        _ => describe(req, name).await,
    };
    resp.headers_mut()
        .insert("x-upstream", name.parse().expect("name is a header value"));
    resp
}

/// A JSON description of the request; the body is counted, not kept.
async fn describe(req: Request<Incoming>, name: &str) -> Response<BoxBody> {
    let (parts, body) = req.into_parts();
    let mut headers = serde_json::Map::new();
    for (k, v) in &parts.headers {
        let v = v.to_str().unwrap_or("").to_string();
        match headers.get_mut(k.as_str()) {
            Some(serde_json::Value::String(s)) => {
                s.push(',');
                s.push_str(&v);
            }
            _ => {
                headers.insert(k.as_str().to_string(), serde_json::Value::String(v));
            }
        }
    }
    let mut stream = body.into_data_stream();
    let mut len = 0u64;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => len += c.len() as u64,
            Err(_) => break,
        }
    }
    let json = serde_json::json!({
        "upstream": name,
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "path": parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or(""),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body_length": len,
    });
    let mut r = Response::new(full(json.to_string()));
    r.headers_mut()
        .insert("content-type", "application/json".parse().expect("v"));
    r
}
