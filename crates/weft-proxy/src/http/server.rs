//! Serving one downstream connection with hyper: HTTP/1.1, HTTP/2 or both (detected
//! by the client's preface), with the manager's limits, and graceful shutdown when
//! draining.

use super::manager::{Codec, HttpManager};
use super::proxy;
use crate::drain::Drain;
use crate::follow::Following;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// Serves requests on `io` with `codec` (the manager's, or the one ALPN chose) until
/// the client closes, an error, or draining ends it.
pub async fn serve<I>(io: I, conn: Arc<Following>, codec: Codec, drain: Drain)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let manager = conn.manager();
    let following = conn.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let conn = following.next();
        async move { Ok::<_, Infallible>(proxy::handle(conn, req).await) }
    });
    let io = TokioIo::new(io);
    match codec {
        Codec::Http1 => {
            let mut b = hyper::server::conn::http1::Builder::new();
            configure_http1(&mut b, &manager);
            drive(
                b.serve_connection(io, service).with_upgrades(),
                |c| c.graceful_shutdown(),
                &manager,
                &drain,
                &conn,
            )
            .await
        }
        Codec::Http2 => {
            let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            configure_http2(&mut b, &manager);
            drive(
                b.serve_connection(io, service),
                |c| c.graceful_shutdown(),
                &manager,
                &drain,
                &conn,
            )
            .await
        }
        Codec::Auto => {
            let mut b = auto::Builder::new(TokioExecutor::new());
            configure_http1(&mut b.http1(), &manager);
            configure_http2(&mut b.http2(), &manager);
            drive(
                b.serve_connection_with_upgrades(io, service),
                |c| c.graceful_shutdown(),
                &manager,
                &drain,
                &conn,
            )
            .await
        }
    }
}

/// The HTTP/1.1 settings both builders share.
trait Http1Settings {
    fn max_buf_size(&mut self, max: usize);
    fn max_headers(&mut self, n: usize);
    fn header_read_timeout(&mut self, t: Option<std::time::Duration>);
    fn timer(&mut self);
}

impl Http1Settings for hyper::server::conn::http1::Builder {
    fn max_buf_size(&mut self, max: usize) {
        hyper::server::conn::http1::Builder::max_buf_size(self, max);
    }
    fn max_headers(&mut self, n: usize) {
        hyper::server::conn::http1::Builder::max_headers(self, n);
    }
    fn header_read_timeout(&mut self, t: Option<std::time::Duration>) {
        hyper::server::conn::http1::Builder::header_read_timeout(self, t);
    }
    fn timer(&mut self) {
        hyper::server::conn::http1::Builder::timer(self, TokioTimer::new());
    }
}

impl Http1Settings for auto::Http1Builder<'_, TokioExecutor> {
    fn max_buf_size(&mut self, max: usize) {
        auto::Http1Builder::max_buf_size(self, max);
    }
    fn max_headers(&mut self, n: usize) {
        auto::Http1Builder::max_headers(self, n);
    }
    fn header_read_timeout(&mut self, t: Option<std::time::Duration>) {
        auto::Http1Builder::header_read_timeout(self, t);
    }
    fn timer(&mut self) {
        auto::Http1Builder::timer(self, TokioTimer::new());
    }
}

fn configure_http1(b: &mut impl Http1Settings, m: &HttpManager) {
    b.timer();
    // hyper's read buffer bounds the request head: past it, 431.
    b.max_buf_size((m.max_request_headers_kb as usize * 1024).max(8192));
    b.max_headers(m.max_headers_count as usize);
    // Waiting for the next request head is bounded by the idle timeout.
    b.header_read_timeout(m.request_headers_timeout.or(m.idle_timeout));
}

/// The HTTP/2 settings both builders share.
trait Http2Settings {
    fn apply(&mut self, m: &HttpManager);
}

impl Http2Settings for hyper::server::conn::http2::Builder<TokioExecutor> {
    fn apply(&mut self, m: &HttpManager) {
        self.timer(TokioTimer::new());
        self.max_header_list_size(m.max_request_headers_kb * 1024);
        self.max_concurrent_streams(m.http2.max_concurrent_streams);
        if let Some(w) = m.http2.initial_stream_window_size {
            self.initial_stream_window_size(w);
        }
        if let Some(w) = m.http2.initial_connection_window_size {
            self.initial_connection_window_size(w);
        }
        self.enable_connect_protocol();
    }
}

impl Http2Settings for auto::Http2Builder<'_, TokioExecutor> {
    fn apply(&mut self, m: &HttpManager) {
        self.timer(TokioTimer::new());
        self.max_header_list_size(m.max_request_headers_kb * 1024);
        self.max_concurrent_streams(m.http2.max_concurrent_streams);
        if let Some(w) = m.http2.initial_stream_window_size {
            self.initial_stream_window_size(w);
        }
        if let Some(w) = m.http2.initial_connection_window_size {
            self.initial_connection_window_size(w);
        }
        self.enable_connect_protocol();
    }
}

fn configure_http2(b: &mut impl Http2Settings, m: &HttpManager) {
    b.apply(m);
}

/// Runs the connection; when draining starts or a listener update retires it, asks it
/// to finish (HTTP/1.1: close after the current response; HTTP/2: GOAWAY) and gives it
/// the drain timeout.
async fn drive<C, E>(
    conn: C,
    graceful: impl FnOnce(Pin<&mut C>),
    manager: &HttpManager,
    drain: &Drain,
    following: &Following,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "downstream connection ended with an error");
            }
        }
        _ = async { tokio::select! {
            _ = drain.signaled() => {},
            _ = following.retired() => {},
        } } => {
            graceful(conn.as_mut());
            let _ = tokio::time::timeout(manager.drain_timeout, conn.as_mut()).await;
        }
    }
}
