//! A compiled HTTP connection manager (`envoy.filters.network.http_connection_manager`):
//! codec, limits, timeouts, forwarding headers, access logs, the HTTP filters before
//! the router, and the route table.

use super::route::RouteTable;
use crate::access_log::AccessLog;
use crate::cluster::ClusterMap;
use crate::metrics::HttpStats;
use arc_swap::ArcSwap;
use http::{HeaderName, HeaderValue};
use std::sync::Arc;
use std::time::Duration;

/// Envoy's default stream idle timeout.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Envoy's default connection idle timeout.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Envoy's default request header limit, in KiB.
pub const DEFAULT_MAX_REQUEST_HEADERS_KB: u32 = 60;
/// Envoy's default header count limit.
pub const DEFAULT_MAX_HEADERS_COUNT: u32 = 100;
/// Envoy's default drain timeout.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Which HTTP versions the listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// HTTP/1.1, and HTTP/2 when the client starts with its preface (h2c).
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only.
    Http2,
}

/// What happens to the `server` response header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerHeader {
    /// Always set to the configured name.
    Overwrite(HeaderValue),
    /// Set when the upstream sent none.
    AppendIfAbsent(HeaderValue),
    /// Left as the upstream sent it.
    PassThrough,
}

/// Which port is removed from the host before route matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StripPort {
    /// None.
    None,
    /// The listener's own port.
    Matching,
    /// Any port.
    Any,
}

/// HTTP/2 server settings.
#[derive(Debug, Clone, Default)]
pub struct Http2Server {
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    pub max_concurrent_streams: Option<u32>,
    /// Initial stream window.
    pub initial_stream_window_size: Option<u32>,
    /// Initial connection window.
    pub initial_connection_window_size: Option<u32>,
}

/// One HTTP filter before the router. Filters run in order and the first that refuses
/// a request answers it.
#[derive(Debug)]
pub enum HttpFilter {
    /// `envoy.filters.http.jwt_authn`: verifies request tokens, records their payload.
    Jwt(Box<crate::jwt::JwtAuthn>),
    /// `envoy.filters.http.rbac`: allows or denies, reading what earlier filters
    /// recorded.
    Rbac(super::rbac::HttpRbac),
}

/// A compiled HTTP connection manager.
#[derive(Debug)]
pub struct HttpManager {
    /// Stat prefix.
    pub stat_prefix: String,
    /// Codec.
    pub codec: Codec,
    /// Routes: inline, or the RDS slot a route-configuration update replaces.
    pub routes: Arc<ArcSwap<RouteTable>>,
    /// The route configuration name, when routes come from RDS.
    pub rds_name: Option<String>,
    /// Every cluster, looked up by name per request.
    pub clusters: Arc<ArcSwap<ClusterMap>>,
    /// Stream idle timeout (`None`: disabled).
    pub stream_idle_timeout: Option<Duration>,
    /// Time to receive a whole request (`None`: disabled).
    pub request_timeout: Option<Duration>,
    /// Time to receive request headers (`None`: disabled).
    pub request_headers_timeout: Option<Duration>,
    /// Connection idle timeout (`None`: disabled).
    pub idle_timeout: Option<Duration>,
    /// Time given to in-flight requests when draining.
    pub drain_timeout: Duration,
    /// Trust the socket peer as the client (edge proxy).
    pub use_remote_address: bool,
    /// Trusted proxies in front of this one.
    pub xff_num_trusted_hops: u32,
    /// Do not append to `X-Forwarded-For`.
    pub skip_xff_append: bool,
    /// Access logs.
    pub access_logs: Vec<Arc<AccessLog>>,
    /// Request headers the access logs read.
    pub request_header_names: Vec<HeaderName>,
    /// Response headers and trailers the access logs read.
    pub response_header_names: Vec<HeaderName>,
    /// Generate `x-request-id` when missing.
    pub generate_request_id: bool,
    /// Keep an external `x-request-id` (edge).
    pub preserve_external_request_id: bool,
    /// Echo `x-request-id` in responses.
    pub always_set_request_id_in_response: bool,
    /// `server` header handling.
    pub server_header: ServerHeader,
    /// Upgrades allowed: (type in lower case, enabled).
    pub upgrades: Vec<(String, bool)>,
    /// Request header size limit, KiB.
    pub max_request_headers_kb: u32,
    /// Request header count limit.
    pub max_headers_count: u32,
    /// Normalize the path (RFC 3986 dot segments) before routing.
    pub normalize_path: bool,
    /// Merge repeated slashes before routing.
    pub merge_slashes: bool,
    /// Port removal before routing.
    pub strip_port: StripPort,
    /// Accept HTTP/1.0 requests.
    pub accept_http_10: bool,
    /// HTTP/2 server settings.
    pub http2: Http2Server,
    /// Leave out `x-envoy-*` headers the router adds.
    pub suppress_envoy_headers: bool,
    /// `via` header to append.
    pub via: Option<HeaderValue>,
    /// The HTTP filters before the router, in their configured order.
    pub filters: Vec<HttpFilter>,
    /// Metrics.
    pub stats: HttpStats,
}

impl HttpManager {
    /// Whether an upgrade of this type may pass (the route may override).
    pub fn upgrade_allowed(&self, kind: &str, route_overrides: &[(String, bool)]) -> bool {
        let find = |list: &[(String, bool)]| {
            list.iter()
                .find(|(t, _)| t.eq_ignore_ascii_case(kind))
                .map(|(_, e)| *e)
        };
        match find(route_overrides) {
            Some(enabled) => enabled && find(&self.upgrades).is_some(),
            None => find(&self.upgrades).unwrap_or(false),
        }
    }
}
