//! What is known about one stream (an HTTP request or a TCP connection) as it goes: the
//! record that access logs, header templates and metrics read.

use crate::error::ResponseFlags;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Version};
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// What one downstream connection tells every stream on it.
#[derive(Debug)]
pub struct Downstream {
    /// Connection id, unique in this process.
    pub id: u64,
    /// The peer of the socket.
    pub remote: SocketAddr,
    /// The local address of the socket, or the original destination when restored.
    pub local: SocketAddr,
    /// The TLS server name the client asked for.
    pub server_name: Option<Box<str>>,
    /// The listener that accepted the connection.
    pub listener: Arc<str>,
    /// The downstream TLS session (`None`: plaintext).
    pub tls: Option<Arc<crate::tls::TlsInfo>>,
}

impl Downstream {
    /// The client's identity: the URI SAN of its TLS certificate.
    pub fn peer_identity(&self) -> Option<&str> {
        self.tls.as_ref()?.peer_identity()
    }
}

/// The request half of an HTTP stream's record.
#[derive(Debug)]
pub struct RequestInfo {
    /// Request method.
    pub method: Method,
    /// Path and query as received (before any rewrite).
    pub path: Option<http::uri::PathAndQuery>,
    /// `:authority` or `Host`.
    pub authority: Option<HeaderValue>,
    /// Protocol version.
    pub version: Version,
    /// Request headers that log formats refer to, captured before forwarding.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// The record of one stream.
#[derive(Debug)]
pub struct StreamInfo {
    /// Wall-clock start, for `%START_TIME%`.
    pub start_time: SystemTime,
    /// Monotonic start, for durations.
    pub start: Instant,
    /// The connection.
    pub downstream: Arc<Downstream>,
    /// The client address after `X-Forwarded-For` processing (HTTP), else the peer.
    pub client: SocketAddr,
    /// The HTTP request, absent for TCP streams.
    pub request: Option<RequestInfo>,
    /// Name of the route taken.
    pub route_name: Option<Arc<str>>,
    /// Cluster the stream went to.
    pub cluster: Option<Arc<str>>,
    /// Endpoint of the last attempt.
    pub upstream_host: Option<SocketAddr>,
    /// Local address of the upstream connection.
    pub upstream_local: Option<SocketAddr>,
    /// Why the last upstream connection attempt failed.
    pub upstream_failure: Option<String>,
    /// The upstream connection's TLS session (`None`: plaintext or none yet).
    pub upstream_tls: Option<Arc<crate::tls::TlsInfo>>,
    /// Upstream attempts made.
    pub attempts: u32,
    /// Response status sent downstream.
    pub response_code: Option<u16>,
    /// Envoy's response code details (most are fixed words; an RBAC denial names the
    /// policy).
    pub details: Cow<'static, str>,
    /// Envoy's response flags.
    pub flags: ResponseFlags,
    /// Body bytes received from downstream.
    pub bytes_received: u64,
    /// Body bytes sent downstream.
    pub bytes_sent: u64,
    /// Time until the upstream response headers arrived.
    pub response_after: Option<Duration>,
    /// Total time, set when the stream ends.
    pub duration: Option<Duration>,
    /// Response headers that log formats refer to.
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
    /// Response trailers that log formats refer to.
    pub response_trailers: Vec<(HeaderName, HeaderValue)>,
    /// Why the connection ended, when the proxy ended it.
    pub termination_details: Option<Cow<'static, str>>,
    /// What the request's filters recorded (Envoy's dynamic metadata).
    pub metadata: crate::metadata::DynamicMetadata,
}

impl StreamInfo {
    /// A new record for a stream on `downstream` starting now.
    pub fn new(downstream: Arc<Downstream>) -> Self {
        let client = downstream.remote;
        StreamInfo {
            start_time: SystemTime::now(),
            start: Instant::now(),
            downstream,
            client,
            request: None,
            route_name: None,
            cluster: None,
            upstream_host: None,
            upstream_local: None,
            upstream_failure: None,
            upstream_tls: None,
            attempts: 0,
            response_code: None,
            details: Cow::Borrowed(""),
            flags: ResponseFlags::NONE,
            bytes_received: 0,
            bytes_sent: 0,
            response_after: None,
            duration: None,
            response_headers: Vec::new(),
            response_trailers: Vec::new(),
            termination_details: None,
            metadata: crate::metadata::DynamicMetadata::default(),
        }
    }

    /// A captured request header.
    pub fn request_header(&self, name: &HeaderName) -> Option<&HeaderValue> {
        let request = self.request.as_ref()?;
        request
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// A captured response header.
    pub fn response_header(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.response_headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// A captured response trailer.
    pub fn response_trailer(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.response_trailers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }
}

/// Copies the headers named in `names` out of `headers`.
pub fn capture(
    headers: &HeaderMap,
    names: &[HeaderName],
    into: &mut Vec<(HeaderName, HeaderValue)>,
) {
    for name in names {
        if let Some(v) = headers.get(name) {
            into.push((name.clone(), v.clone()));
        }
    }
}
