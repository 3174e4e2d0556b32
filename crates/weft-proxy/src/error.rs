//! Why a request or connection failed, on which side, whether a retry may help, and
//! the one place that maps a failure to its status code, response flag and body.

use http::StatusCode;
use std::borrow::Cow;
use std::time::Duration;

/// Envoy's response flags (`%RESPONSE_FLAGS%`), as a bit set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponseFlags(u32);

macro_rules! flags {
    ($($name:ident = $bit:expr, $short:literal;)*) => {
        impl ResponseFlags {
            $(#[doc = concat!("`", $short, "`")] pub const $name: ResponseFlags = ResponseFlags(1 << $bit);)*
            const SHORT: &'static [(ResponseFlags, &'static str)] = &[$((ResponseFlags::$name, $short)),*];
        }
    };
}

flags! {
    NO_HEALTHY_UPSTREAM = 0, "UH";
    UPSTREAM_CONNECTION_FAILURE = 1, "UF";
    UPSTREAM_OVERFLOW = 2, "UO";
    NO_ROUTE_FOUND = 3, "NR";
    UPSTREAM_RETRY_LIMIT_EXCEEDED = 4, "URX";
    NO_CLUSTER_FOUND = 5, "NC";
    UPSTREAM_REQUEST_TIMEOUT = 6, "UT";
    UPSTREAM_CONNECTION_TERMINATION = 7, "UC";
    UPSTREAM_REMOTE_RESET = 8, "UR";
    LOCAL_RESET = 9, "LR";
    DOWNSTREAM_CONNECTION_TERMINATION = 10, "DC";
    STREAM_IDLE_TIMEOUT = 11, "SI";
    DOWNSTREAM_PROTOCOL_ERROR = 12, "DPE";
    UPSTREAM_PROTOCOL_ERROR = 13, "UPE";
    DURATION_TIMEOUT = 14, "DT";
    NO_FILTER_CONFIG_FOUND = 15, "NFCF";
}

impl ResponseFlags {
    /// No flag set.
    pub const NONE: ResponseFlags = ResponseFlags(0);

    /// Whether no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Sets the flags of `other` too.
    pub fn insert(&mut self, other: ResponseFlags) {
        self.0 |= other.0;
    }

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: ResponseFlags) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    /// Envoy's spelling: short names joined by commas, `-` when empty.
    pub fn write_to(self, out: &mut String) {
        if self.is_empty() {
            out.push('-');
            return;
        }
        let mut first = true;
        for (flag, short) in Self::SHORT {
            if self.contains(*flag) {
                if !first {
                    out.push(',');
                }
                out.push_str(short);
                first = false;
            }
        }
    }
}

impl std::fmt::Display for ResponseFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::new();
        self.write_to(&mut s);
        f.write_str(&s)
    }
}

/// A failure while proxying one HTTP request, before a response was sent downstream.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No virtual host or route matched.
    #[error("no route matched")]
    NoRoute,
    /// The route names a cluster that does not exist.
    #[error("cluster {0:?} not found")]
    NoCluster(String, StatusCode),
    /// The cluster has no endpoint to send to.
    #[error("no healthy upstream")]
    NoHealthyUpstream,
    /// A connection to the chosen endpoint could not be made.
    #[error("connection to {addr} failed: {source}")]
    ConnectFailure {
        /// The endpoint.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake with the chosen endpoint failed (or its secrets are missing).
    #[error("TLS with {addr} failed: {source}")]
    TlsHandshake {
        /// The endpoint.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: crate::tls::TlsError,
    },
    /// The connection to the chosen endpoint was not made within the connect timeout.
    #[error("connection to {0} timed out")]
    ConnectTimeout(std::net::SocketAddr),
    /// The route (or gRPC) deadline passed before the upstream answered.
    #[error("upstream request timeout after {0:?}")]
    UpstreamTimeout(Duration),
    /// One attempt's per-try timeout passed.
    #[error("upstream per-try timeout after {0:?}")]
    PerTryTimeout(Duration),
    /// The upstream closed or reset the stream before a response.
    #[error("upstream reset before response: {0}")]
    UpstreamReset(#[source] hyper::Error),
    /// The upstream refused the stream (HTTP/2 REFUSED_STREAM): safe to retry anywhere.
    #[error("upstream refused the stream")]
    RefusedStream(#[source] hyper::Error),
    /// The upstream answered with something that is not valid HTTP.
    #[error("upstream protocol error: {0}")]
    UpstreamProtocol(#[source] hyper::Error),
    /// A circuit breaker is open.
    #[error("upstream overflow: {0}")]
    Overflow(&'static str),
    /// The downstream request was malformed or broke a limit.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// HTTP/1.0 without `accept_http_10`.
    #[error("HTTP/1.0 is not accepted")]
    Http10NotAccepted,
    /// The whole request was not received within `request_timeout`.
    #[error("request timeout")]
    RequestTimeout,
    /// The upgrade (WebSocket, CONNECT) is not allowed on this route.
    #[error("upgrade {0:?} not allowed")]
    UpgradeNotAllowed(String),
    /// An RBAC filter denied the request; Envoy's response code details, which name
    /// the policy (`rbac_access_denied_matched_policy[NAME]`).
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// The JWT filter refused the request: why, and the challenge to send.
    #[error("JWT authentication failed: {}", .0.error)]
    JwtDenied(Box<crate::jwt::JwtDenial>),
}

impl ProxyError {
    /// The HTTP status of the local reply.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoCluster(_, code) => *code,
            ProxyError::NoHealthyUpstream
            | ProxyError::ConnectFailure { .. }
            | ProxyError::TlsHandshake { .. }
            | ProxyError::ConnectTimeout(_)
            | ProxyError::UpstreamReset(_)
            | ProxyError::RefusedStream(_)
            | ProxyError::Overflow(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::UpstreamTimeout(_) | ProxyError::PerTryTimeout(_) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ProxyError::UpstreamProtocol(_) => StatusCode::BAD_GATEWAY,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::Http10NotAccepted => StatusCode::UPGRADE_REQUIRED,
            ProxyError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::UpgradeNotAllowed(_) | ProxyError::AccessDenied(_) => StatusCode::FORBIDDEN,
            ProxyError::JwtDenied(d) => d.error.status(),
        }
    }

    /// The response flag recorded in the access log.
    pub fn flag(&self) -> ResponseFlags {
        match self {
            ProxyError::NoRoute => ResponseFlags::NO_ROUTE_FOUND,
            ProxyError::NoCluster(..) => ResponseFlags::NO_CLUSTER_FOUND,
            ProxyError::NoHealthyUpstream => ResponseFlags::NO_HEALTHY_UPSTREAM,
            ProxyError::ConnectFailure { .. }
            | ProxyError::TlsHandshake { .. }
            | ProxyError::ConnectTimeout(_) => ResponseFlags::UPSTREAM_CONNECTION_FAILURE,
            ProxyError::UpstreamTimeout(_) | ProxyError::PerTryTimeout(_) => {
                ResponseFlags::UPSTREAM_REQUEST_TIMEOUT
            }
            ProxyError::UpstreamReset(_) => ResponseFlags::UPSTREAM_CONNECTION_TERMINATION,
            ProxyError::RefusedStream(_) => ResponseFlags::UPSTREAM_REMOTE_RESET,
            ProxyError::UpstreamProtocol(_) => ResponseFlags::UPSTREAM_PROTOCOL_ERROR,
            ProxyError::Overflow(_) => ResponseFlags::UPSTREAM_OVERFLOW,
            ProxyError::BadRequest(_) | ProxyError::Http10NotAccepted => {
                ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR
            }
            ProxyError::RequestTimeout => ResponseFlags::STREAM_IDLE_TIMEOUT,
            // Envoy sets no flag for an RBAC or JWT denial: its details say why.
            ProxyError::UpgradeNotAllowed(_)
            | ProxyError::AccessDenied(_)
            | ProxyError::JwtDenied(_) => ResponseFlags::NONE,
        }
    }

    /// The body of the local reply, worded as Envoy words it so that tools keyed on
    /// Envoy's messages keep working.
    pub fn body(&self) -> &'static str {
        match self {
            ProxyError::NoRoute => "",
            ProxyError::NoCluster(..) => "cluster not found",
            ProxyError::NoHealthyUpstream => "no healthy upstream",
            ProxyError::ConnectFailure { .. } | ProxyError::ConnectTimeout(_) => {
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
            }
            ProxyError::TlsHandshake { .. } => {
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure, transport failure reason: TLS error"
            }
            ProxyError::UpstreamTimeout(_) | ProxyError::PerTryTimeout(_) => "upstream request timeout",
            ProxyError::UpstreamReset(_) => {
                "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
            }
            ProxyError::RefusedStream(_) => {
                "upstream connect error or disconnect/reset before headers. reset reason: remote refused stream reset"
            }
            ProxyError::UpstreamProtocol(_) => "upstream protocol error",
            ProxyError::Overflow(_) => "upstream connect error or disconnect/reset before headers. reset reason: overflow",
            ProxyError::BadRequest(_) => "Bad Request",
            ProxyError::Http10NotAccepted => "Upgrade Required",
            ProxyError::RequestTimeout => "request timeout",
            ProxyError::UpgradeNotAllowed(_) => "upgrade not allowed",
            ProxyError::AccessDenied(_) => crate::rbac::DENIED_BODY,
            // `strip_failure_response` (no challenge) leaves the body empty too.
            ProxyError::JwtDenied(d) if d.challenge.is_none() => "",
            ProxyError::JwtDenied(d) => d.error.message(),
        }
    }

    /// Envoy's `%RESPONSE_CODE_DETAILS%` for this failure.
    pub fn details(&self) -> Cow<'static, str> {
        let fixed = match self {
            ProxyError::NoRoute => "route_not_found",
            ProxyError::NoCluster(..) => "cluster_not_found",
            ProxyError::NoHealthyUpstream => "no_healthy_upstream",
            ProxyError::ConnectFailure { .. } | ProxyError::ConnectTimeout(_) => {
                "upstream_reset_before_response_started{connection_failure}"
            }
            ProxyError::TlsHandshake { .. } => {
                "upstream_reset_before_response_started{connection_failure,TLS_error}"
            }
            ProxyError::UpstreamTimeout(_) => "upstream_response_timeout",
            ProxyError::PerTryTimeout(_) => "upstream_per_try_timeout",
            ProxyError::UpstreamReset(_) => {
                "upstream_reset_before_response_started{connection_termination}"
            }
            ProxyError::RefusedStream(_) => {
                "upstream_reset_before_response_started{remote_refused_stream_reset}"
            }
            ProxyError::UpstreamProtocol(_) => {
                "upstream_reset_before_response_started{protocol_error}"
            }
            ProxyError::Overflow(_) => "upstream_reset_before_response_started{overflow}",
            ProxyError::BadRequest(_) => "downstream_protocol_error",
            ProxyError::Http10NotAccepted => "low_version",
            ProxyError::RequestTimeout => "request_overall_timeout",
            ProxyError::UpgradeNotAllowed(_) => "upgrade_failed",
            ProxyError::AccessDenied(details) => return Cow::Owned(details.clone()),
            ProxyError::JwtDenied(d) => return Cow::Owned(d.error.details()),
        };
        Cow::Borrowed(fixed)
    }

    /// The gRPC status a gRPC caller sees for this failure (gRPC's HTTP mapping, with
    /// timeouts as DEADLINE_EXCEEDED since that is what the caller's deadline means).
    pub fn grpc_status(&self) -> u32 {
        match self {
            ProxyError::UpstreamTimeout(_) | ProxyError::PerTryTimeout(_) => 4,
            ProxyError::NoRoute => 12,
            ProxyError::BadRequest(_) | ProxyError::Http10NotAccepted => 13,
            ProxyError::UpgradeNotAllowed(_) | ProxyError::AccessDenied(_) => 7,
            // gRPC's HTTP mapping: 401 is UNAUTHENTICATED, 403 PERMISSION_DENIED.
            ProxyError::JwtDenied(d) if d.error.status() == StatusCode::UNAUTHORIZED => 16,
            ProxyError::JwtDenied(_) => 7,
            _ => 14,
        }
    }

    /// The `www-authenticate` challenge of the local reply, if it has one.
    pub fn challenge(&self) -> Option<&http::HeaderValue> {
        match self {
            ProxyError::JwtDenied(d) => d.challenge.as_ref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_render_like_envoy() {
        let mut f = ResponseFlags::NONE;
        assert_eq!(f.to_string(), "-");
        f.insert(ResponseFlags::UPSTREAM_CONNECTION_FAILURE);
        f.insert(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
        assert_eq!(f.to_string(), "UF,URX");
    }

    #[test]
    fn connect_failure_is_503_uf() {
        let e = ProxyError::ConnectTimeout("127.0.0.1:1".parse().expect("addr"));
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.flag().to_string(), "UF");
    }
}
