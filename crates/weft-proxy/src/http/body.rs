//! The bodies the proxy streams: the request body going upstream (counted, optionally
//! buffered for retries, bounded by `request_timeout`) and the response body going
//! downstream, which enforces the route timeout and stream idle timeout, returns the
//! upstream connection to its pool at the end, and closes the stream's books (metrics,
//! access log) however it ends.

use crate::cluster::endpoint::{Endpoint, InFlight};
use crate::error::ResponseFlags;
use crate::http::manager::HttpManager;
use crate::metrics::{code_class, RouteStats};
use crate::stream_info::{capture, StreamInfo};
use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::time::Sleep;

/// Request bytes kept to replay a body on retry (Envoy's default buffer limit).
pub const REPLAY_LIMIT: usize = 1024 * 1024;

/// Why a proxied body stopped.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The other side failed.
    #[error("body stream failed: {0}")]
    Stream(#[from] hyper::Error),
    /// The route timeout passed while streaming.
    #[error("upstream request timeout")]
    Timeout,
    /// Nothing moved for the stream idle timeout.
    #[error("stream idle timeout")]
    Idle,
    /// The whole request was not received within `request_timeout`.
    #[error("request timeout")]
    RequestTimeout,
    /// A newer attempt took over this request body.
    #[error("request body taken by a retry")]
    Superseded,
}

/// The request body sent upstream.
#[derive(Debug)]
pub enum RequestBody {
    /// No body.
    Empty,
    /// A body in memory.
    Full(Option<Bytes>),
    /// The downstream body, streamed.
    Stream(Streamed),
    /// The downstream body, streamed and kept for a retry.
    Replay(ReplayBody),
}

/// A downstream body on its way upstream.
#[derive(Debug)]
pub struct Streamed {
    body: Incoming,
    received: Option<Arc<AtomicU64>>,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl Streamed {
    /// Streams `body`, counting bytes into `received` and failing after `timeout`.
    pub fn new(
        body: Incoming,
        received: Option<Arc<AtomicU64>>,
        timeout: Option<Duration>,
    ) -> Streamed {
        Streamed {
            body,
            received,
            deadline: timeout.map(|t| Box::pin(tokio::time::sleep(t))),
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(r)) = (frame.data_ref(), &self.received) {
                    r.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                self.deadline = None;
                Poll::Ready(None)
            }
            Poll::Pending => match &mut self.deadline {
                Some(d) => match d.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(BodyError::RequestTimeout))),
                    Poll::Pending => Poll::Pending,
                },
                None => Poll::Pending,
            },
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            RequestBody::Stream(s) => s.poll(cx),
            RequestBody::Replay(r) => r.poll(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Full(d) => d.is_none(),
            RequestBody::Stream(s) => s.body.is_end_stream(),
            RequestBody::Replay(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Full(d) => SizeHint::with_exact(d.as_ref().map_or(0, |d| d.len() as u64)),
            RequestBody::Stream(s) => s.body.size_hint(),
            RequestBody::Replay(r) => r.hint,
        }
    }
}

#[derive(Debug)]
struct ReplayState {
    source: Streamed,
    kept: Vec<Bytes>,
    kept_len: usize,
    trailers: Option<HeaderMap>,
    done: bool,
    overflowed: bool,
    generation: u64,
}

/// A request body that keeps what it sent (up to [`REPLAY_LIMIT`]) so that a retry can
/// send it again, then continues from the downstream where the first attempt stopped.
#[derive(Debug)]
pub struct ReplayBody {
    state: Arc<Mutex<ReplayState>>,
    /// Claimed on first poll, so that a copy made but never sent supersedes nothing.
    generation: Option<u64>,
    next: usize,
    trailers_sent: bool,
    hint: SizeHint,
}

impl ReplayBody {
    /// Wraps the downstream body for its first attempt.
    pub fn new(source: Streamed) -> ReplayBody {
        let hint = source.body.size_hint();
        let state = ReplayState {
            source,
            kept: Vec::new(),
            kept_len: 0,
            trailers: None,
            done: false,
            overflowed: false,
            generation: 0,
        };
        ReplayBody {
            state: Arc::new(Mutex::new(state)),
            generation: Some(0),
            next: 0,
            trailers_sent: false,
            hint,
        }
    }

    /// A body for the next attempt, or `None` when too much was sent to replay it.
    pub fn retry(&self) -> Option<ReplayBody> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.overflowed {
            return None;
        }
        Some(ReplayBody {
            state: self.state.clone(),
            generation: None,
            next: 0,
            trailers_sent: false,
            hint: self.hint,
        })
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let generation = *self.generation.get_or_insert_with(|| {
            s.generation += 1;
            s.generation
        });
        if s.generation != generation {
            return Poll::Ready(Some(Err(BodyError::Superseded)));
        }
        if s.overflowed && self.next < s.kept.len() {
            return Poll::Ready(Some(Err(BodyError::Superseded)));
        }
        if self.next < s.kept.len() {
            let chunk = s.kept[self.next].clone();
            self.next += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if s.done {
            if let (Some(t), false) = (&s.trailers, self.trailers_sent) {
                self.trailers_sent = true;
                return Poll::Ready(Some(Ok(Frame::trailers(t.clone()))));
            }
            return Poll::Ready(None);
        }
        match s.source.poll(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if !s.overflowed {
                        if s.kept_len + data.len() > REPLAY_LIMIT {
                            s.overflowed = true;
                            s.kept = Vec::new();
                        } else {
                            s.kept_len += data.len();
                            s.kept.push(data.clone());
                            self.next = s.kept.len();
                        }
                    }
                } else if let Some(t) = frame.trailers_ref() {
                    s.trailers = Some(t.clone());
                    s.done = true;
                    self.trailers_sent = true;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                s.done = true;
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

/// An HTTP/1.1 upstream connection to give back when the response ends.
#[derive(Debug)]
pub struct PooledConn {
    /// The endpoint.
    pub endpoint: Arc<Endpoint>,
    /// The connection.
    pub sender: http1::SendRequest<RequestBody>,
    /// Requests it carried before.
    pub uses: u32,
    /// Its TLS session.
    pub tls: crate::cluster::pool::Session,
}

/// Everything needed to close a stream's books.
#[derive(Debug)]
pub struct StreamEnd {
    /// The record.
    pub info: StreamInfo,
    /// The connection manager (stats, access logs).
    pub manager: Arc<HttpManager>,
    /// Stats of the route taken.
    pub route_stats: Option<Arc<RouteStats>>,
    /// Request body bytes, counted as they stream.
    pub received: Option<Arc<AtomicU64>>,
    /// Connection to return to the pool on success.
    pub pooled: Option<PooledConn>,
    /// Keeps the endpoint's in-flight count until the response ends.
    pub in_flight: Option<InFlight>,
}

impl StreamEnd {
    fn finish(mut self: Box<Self>, complete: bool) {
        let info = &mut self.info;
        info.duration = Some(info.start.elapsed());
        if let Some(r) = &self.received {
            info.bytes_received = r.load(Ordering::Relaxed);
        }
        let status = info.response_code.unwrap_or(0);
        let class = code_class(status);
        let millis = info.duration.unwrap_or_default().as_secs_f64() * 1000.0;
        let stats = &self.manager.stats;
        stats.rq_by_class[class].inc();
        stats.rq_time.observe(millis);
        stats.rq_active.dec();
        if let Some(r) = &self.route_stats {
            r.rq_by_class[class].inc();
            r.rq_time.observe(millis);
        }
        for log in &self.manager.access_logs {
            log.log(&self.info);
        }
        if complete {
            if let Some(p) = self.pooled.take() {
                crate::cluster::pool::release(&p.endpoint, p.sender, p.uses, p.tls);
            }
        }
    }
}

/// Where the response body comes from.
#[derive(Debug)]
enum Source {
    Empty,
    Full(Option<Bytes>),
    Upstream(Incoming),
}

/// The response body sent downstream.
#[derive(Debug)]
pub struct ResponseBody {
    source: Source,
    end: Option<Box<StreamEnd>>,
    timer: Option<Pin<Box<Sleep>>>,
    deadline: Option<Instant>,
    idle: Option<Duration>,
    last_frame: Option<Instant>,
    trailer_names: bool,
}

impl ResponseBody {
    /// No body.
    pub fn empty() -> ResponseBody {
        ResponseBody::new(Source::Empty)
    }

    /// A body in memory.
    pub fn full(data: impl Into<Bytes>) -> ResponseBody {
        let data = data.into();
        ResponseBody::new(if data.is_empty() {
            Source::Empty
        } else {
            Source::Full(Some(data))
        })
    }

    /// The upstream's body, streamed.
    pub fn upstream(body: Incoming) -> ResponseBody {
        ResponseBody::new(Source::Upstream(body))
    }

    fn new(source: Source) -> ResponseBody {
        ResponseBody {
            source,
            end: None,
            timer: None,
            deadline: None,
            idle: None,
            last_frame: None,
            trailer_names: false,
        }
    }

    /// Attaches the stream's books, closed when the body ends or is dropped.
    pub fn with_end(mut self, end: Box<StreamEnd>) -> ResponseBody {
        self.trailer_names = !end.manager.response_header_names.is_empty();
        self.end = Some(end);
        self
    }

    /// Fails the body at `deadline` (route timeout) or after `idle` without a frame.
    pub fn with_timeouts(
        mut self,
        deadline: Option<Instant>,
        idle: Option<Duration>,
    ) -> ResponseBody {
        // The timer is armed only if the body ever has to wait: most small responses
        // are complete when first polled and never touch the timer wheel.
        self.deadline = deadline;
        self.idle = idle;
        self
    }

    fn next_wake(&self) -> Option<Instant> {
        let idle_at = self.idle.map(|i| Instant::now() + i);
        match (self.deadline, idle_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn close(&mut self, complete: bool) {
        if let Some(end) = self.end.take() {
            end.finish(complete);
        }
        self.timer = None;
    }

    fn fail(&mut self, flag: ResponseFlags, details: &'static str) {
        if let Some(end) = &mut self.end {
            end.info.flags.insert(flag);
            end.info.details = details.into();
            end.pooled = None;
        }
        self.close(false);
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let polled = match &mut this.source {
            Source::Empty => Poll::Ready(None),
            Source::Full(d) => Poll::Ready(d.take().map(|d| Ok(Frame::data(d)))),
            Source::Upstream(b) => match Pin::new(b).poll_frame(cx) {
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Stream(e)))),
                Poll::Ready(Some(Ok(f))) => Poll::Ready(Some(Ok(f))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        };
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(end) = &mut this.end {
                    if let Some(data) = frame.data_ref() {
                        end.info.bytes_sent += data.len() as u64;
                    } else if let (Some(t), true) = (frame.trailers_ref(), this.trailer_names) {
                        let names = end.manager.response_header_names.clone();
                        capture(t, &names, &mut end.info.response_trailers);
                    }
                }
                if this.timer.is_some() && this.idle.is_some() {
                    // Not reset per frame: the timer re-arms itself when it fires early.
                    this.last_frame = Some(Instant::now());
                }
                if this.is_end_stream() {
                    this.close(true);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.fail(
                    ResponseFlags::UPSTREAM_CONNECTION_TERMINATION,
                    "upstream_reset_after_response_started",
                );
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.close(true);
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.timer.is_none() {
                    match this.next_wake() {
                        Some(at) => {
                            this.timer = Some(Box::pin(tokio::time::sleep_until(at.into())))
                        }
                        None => return Poll::Pending,
                    }
                }
                loop {
                    let Some(timer) = &mut this.timer else {
                        return Poll::Pending;
                    };
                    if timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    let now = Instant::now();
                    if this.deadline.is_some_and(|d| now >= d) {
                        this.fail(ResponseFlags::UPSTREAM_REQUEST_TIMEOUT, "response_timeout");
                        return Poll::Ready(Some(Err(BodyError::Timeout)));
                    }
                    let idle_until = match (this.idle, this.last_frame) {
                        (Some(idle), Some(last)) => last + idle,
                        _ => now,
                    };
                    if idle_until <= now {
                        this.fail(ResponseFlags::STREAM_IDLE_TIMEOUT, "stream_idle_timeout");
                        return Poll::Ready(Some(Err(BodyError::Idle)));
                    }
                    // Frames arrived since the timer was set: wait for the rest.
                    let at = this.deadline.map_or(idle_until, |d| d.min(idle_until));
                    timer.as_mut().reset(at.into());
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Empty => true,
            Source::Full(d) => d.is_none(),
            Source::Upstream(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Empty => SizeHint::with_exact(0),
            Source::Full(d) => SizeHint::with_exact(d.as_ref().map_or(0, |d| d.len() as u64)),
            Source::Upstream(b) => b.size_hint(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if self.end.is_some() {
            // Dropped before its end: the downstream went away.
            let complete = self.is_end_stream();
            if !complete {
                if let Some(end) = &mut self.end {
                    end.info
                        .flags
                        .insert(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION);
                    end.pooled = None;
                }
            }
            self.close(complete);
        }
    }
}
