//! Retry policies with Envoy's `retry_on` conditions and its fully jittered exponential
//! back-off.

use super::matcher::{HeaderMatcher, RequestView};
use crate::error::ProxyError;
use http::HeaderMap;
use std::time::Duration;

/// Envoy's default back-off base interval.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(25);

/// The conditions of `retry_on`, as bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryOn(u32);

impl RetryOn {
    /// `5xx`
    pub const FIVE_XX: RetryOn = RetryOn(1);
    /// `gateway-error`
    pub const GATEWAY_ERROR: RetryOn = RetryOn(1 << 1);
    /// `connect-failure`
    pub const CONNECT_FAILURE: RetryOn = RetryOn(1 << 2);
    /// `refused-stream`
    pub const REFUSED_STREAM: RetryOn = RetryOn(1 << 3);
    /// `reset`
    pub const RESET: RetryOn = RetryOn(1 << 4);
    /// `retriable-4xx`
    pub const RETRIABLE_4XX: RetryOn = RetryOn(1 << 5);
    /// `retriable-status-codes`
    pub const RETRIABLE_STATUS_CODES: RetryOn = RetryOn(1 << 6);
    /// `retriable-headers`
    pub const RETRIABLE_HEADERS: RetryOn = RetryOn(1 << 7);
    /// `envoy-ratelimited`
    pub const RATE_LIMITED: RetryOn = RetryOn(1 << 8);
    /// `cancelled` (gRPC)
    pub const GRPC_CANCELLED: RetryOn = RetryOn(1 << 9);
    /// `deadline-exceeded` (gRPC)
    pub const GRPC_DEADLINE_EXCEEDED: RetryOn = RetryOn(1 << 10);
    /// `internal` (gRPC)
    pub const GRPC_INTERNAL: RetryOn = RetryOn(1 << 11);
    /// `resource-exhausted` (gRPC)
    pub const GRPC_RESOURCE_EXHAUSTED: RetryOn = RetryOn(1 << 12);
    /// `unavailable` (gRPC)
    pub const GRPC_UNAVAILABLE: RetryOn = RetryOn(1 << 13);

    /// Whether any bit of `other` is set.
    pub fn any(self, other: RetryOn) -> bool {
        self.0 & other.0 != 0
    }

    fn union(self, other: RetryOn) -> RetryOn {
        RetryOn(self.0 | other.0)
    }

    /// Parses Envoy's comma-separated `retry_on` value.
    pub fn parse(s: &str) -> Result<RetryOn, String> {
        let mut on = RetryOn::default();
        for token in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let bit = match token {
                "5xx" => RetryOn::FIVE_XX,
                "gateway-error" => RetryOn::GATEWAY_ERROR,
                "connect-failure" => RetryOn::CONNECT_FAILURE,
                "refused-stream" => RetryOn::REFUSED_STREAM,
                "reset" | "reset-before-request" => RetryOn::RESET,
                "retriable-4xx" => RetryOn::RETRIABLE_4XX,
                "retriable-status-codes" => RetryOn::RETRIABLE_STATUS_CODES,
                "retriable-headers" => RetryOn::RETRIABLE_HEADERS,
                "envoy-ratelimited" => RetryOn::RATE_LIMITED,
                "cancelled" => RetryOn::GRPC_CANCELLED,
                "deadline-exceeded" => RetryOn::GRPC_DEADLINE_EXCEEDED,
                "internal" => RetryOn::GRPC_INTERNAL,
                "resource-exhausted" => RetryOn::GRPC_RESOURCE_EXHAUSTED,
                "unavailable" => RetryOn::GRPC_UNAVAILABLE,
                other => return Err(format!("unknown retry_on condition {other:?}")),
            };
            on = on.union(bit);
        }
        Ok(on)
    }
}

/// A compiled `RetryPolicy`.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// When to retry.
    pub on: RetryOn,
    /// Retries after the first attempt.
    pub num_retries: u32,
    /// Timeout of each attempt, until response headers.
    pub per_try_timeout: Option<Duration>,
    /// Back-off base interval.
    pub backoff_base: Duration,
    /// Back-off ceiling.
    pub backoff_max: Duration,
    /// Status codes for `retriable-status-codes`.
    pub retriable_status_codes: Vec<u16>,
    /// Response header matchers for `retriable-headers`.
    pub retriable_headers: Vec<HeaderMatcher>,
    /// The request must match all of these for any retry.
    pub retriable_request_headers: Vec<HeaderMatcher>,
}

impl RetryPolicy {
    /// Whether this request may be retried at all.
    pub fn request_eligible(&self, req: &RequestView<'_>) -> bool {
        self.retriable_request_headers.is_empty()
            || self
                .retriable_request_headers
                .iter()
                .any(|m| m.matches(req))
    }

    /// Whether a response with this status and headers should be retried.
    pub fn retry_response(&self, status: u16, headers: &HeaderMap) -> bool {
        let on = self.on;
        if on.any(RetryOn::FIVE_XX) && status >= 500 {
            return true;
        }
        if on.any(RetryOn::GATEWAY_ERROR) && matches!(status, 502..=504) {
            return true;
        }
        if on.any(RetryOn::RETRIABLE_4XX) && status == 409 {
            return true;
        }
        if on.any(RetryOn::RETRIABLE_STATUS_CODES) && self.retriable_status_codes.contains(&status)
        {
            return true;
        }
        if on.any(RetryOn::RATE_LIMITED) && headers.contains_key("x-envoy-ratelimited") {
            return true;
        }
        if on.any(RetryOn::RETRIABLE_HEADERS) && !self.retriable_headers.is_empty() {
            let method = http::Method::GET;
            let view = RequestView {
                method: &method,
                path: "",
                authority: "",
                scheme: "",
                headers,
            };
            if self.retriable_headers.iter().any(|m| m.matches(&view)) {
                return true;
            }
        }
        if let Some(code) = headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok()?.parse::<u32>().ok())
        {
            let bit = match code {
                1 => RetryOn::GRPC_CANCELLED,
                4 => RetryOn::GRPC_DEADLINE_EXCEEDED,
                8 => RetryOn::GRPC_RESOURCE_EXHAUSTED,
                13 => RetryOn::GRPC_INTERNAL,
                14 => RetryOn::GRPC_UNAVAILABLE,
                _ => RetryOn::default(),
            };
            return on.any(bit);
        }
        false
    }

    /// Whether a failure before any response should be retried.
    pub fn retry_error(&self, err: &ProxyError) -> bool {
        let on = self.on;
        let resets = RetryOn::FIVE_XX
            .union(RetryOn::GATEWAY_ERROR)
            .union(RetryOn::RESET);
        match err {
            ProxyError::ConnectFailure { .. }
            | ProxyError::TlsHandshake { .. }
            | ProxyError::ConnectTimeout(_) => on.any(resets.union(RetryOn::CONNECT_FAILURE)),
            ProxyError::RefusedStream(_) => on.any(resets.union(RetryOn::REFUSED_STREAM)),
            ProxyError::UpstreamReset(_) | ProxyError::UpstreamProtocol(_) => on.any(resets),
            ProxyError::PerTryTimeout(_) => on.any(RetryOn::FIVE_XX.union(RetryOn::GATEWAY_ERROR)),
            _ => false,
        }
    }

    /// How long to wait before retry number `retry` (1-based): a uniform draw in
    /// `[0, min(base * 2^(retry-1), max))`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .backoff_base
            .saturating_mul(1u32 << (retry.saturating_sub(1)).min(20))
            .min(self.backoff_max);
        let nanos = ceiling.as_nanos().min(u64::MAX as u128) as u64;
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(fastrand::u64(0..nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(on: &str) -> RetryPolicy {
        RetryPolicy {
            on: RetryOn::parse(on).expect("parses"),
            num_retries: 2,
            per_try_timeout: None,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_BASE * 10,
            retriable_status_codes: vec![418],
            retriable_headers: vec![],
            retriable_request_headers: vec![],
        }
    }

    #[test]
    fn parse_rejects_unknown() {
        assert!(RetryOn::parse("5xx,bogus").is_err());
        assert!(RetryOn::parse("5xx, connect-failure ,refused-stream").is_ok());
    }

    #[test]
    fn response_conditions() {
        let h = HeaderMap::new();
        assert!(policy("5xx").retry_response(500, &h));
        assert!(!policy("gateway-error").retry_response(500, &h));
        assert!(policy("gateway-error").retry_response(503, &h));
        assert!(policy("retriable-4xx").retry_response(409, &h));
        assert!(!policy("retriable-4xx").retry_response(404, &h));
        assert!(policy("retriable-status-codes").retry_response(418, &h));
        let mut g = HeaderMap::new();
        g.insert("grpc-status", "14".parse().expect("v"));
        assert!(policy("unavailable").retry_response(200, &g));
        assert!(!policy("internal").retry_response(200, &g));
    }

    #[test]
    fn error_conditions() {
        let cf = ProxyError::ConnectTimeout("127.0.0.1:1".parse().expect("a"));
        assert!(policy("connect-failure").retry_error(&cf));
        assert!(policy("5xx").retry_error(&cf));
        assert!(!policy("retriable-4xx").retry_error(&cf));
        let pt = ProxyError::PerTryTimeout(Duration::from_millis(1));
        assert!(policy("5xx").retry_error(&pt));
        assert!(!policy("reset").retry_error(&pt));
        assert!(!policy("5xx").retry_error(&ProxyError::NoHealthyUpstream));
    }

    #[test]
    fn backoff_is_bounded_and_grows() {
        let p = policy("5xx");
        for retry in 1..10 {
            let ceiling = (DEFAULT_BACKOFF_BASE * 2u32.pow(retry - 1)).min(p.backoff_max);
            for _ in 0..50 {
                assert!(p.backoff(retry) < ceiling);
            }
        }
    }
}
