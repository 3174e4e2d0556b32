//! Validation of the policies an HTTP route carries: header edits, CORS, faults,
//! mirrors, redirects, direct responses, retries, rewrites and delegation.

use super::*;
use crate::rules;
use crate::validate::{Validate, Validator};

/// Envoy's `x-envoy-retry-on` and `x-envoy-retry-grpc-on` policies.
const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// Methods CORS may allow (Go's `net/http` list, as Istio uses).
const HTTP_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE",
];

/// gRPC status names a fault may abort with.
const GRPC_STATUSES: &[&str] = &[
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// Largest direct response body Istio accepts, and the size it warns above.
const MAX_BODY: usize = 1024 * 1024;
const WARN_BODY: usize = 100 * 1024;

/// `Host` and `:authority` name the same header.
pub(super) fn is_authority_header(name: &str) -> bool {
    name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host")
}

/// Pseudo-headers and `Host` are Envoy's, not the user's.
fn is_internal_header(name: &str) -> bool {
    name.starts_with(':') || name.eq_ignore_ascii_case("host")
}

impl Validate for Headers {
    fn validate(&self, v: &mut Validator<'_>) {
        if let Some(req) = &self.request {
            v.at("request", |v| {
                for (key, map) in [("set", &req.set), ("add", &req.add)] {
                    v.at(key, |v| {
                        for (name, value) in map {
                            v.at(name, |v| {
                                if name.is_empty() {
                                    v.error("header name cannot be empty");
                                } else if is_internal_header(name) && !is_authority_header(name) {
                                    v.error(format!("header {name:?} cannot be set: names starting with ':' are reserved"));
                                }
                                v.check(rules::check_header_value(value));
                            });
                        }
                    });
                }
                v.each("remove", &req.remove, |v, name| v.check(check_operation_name(name)));
            });
        }
        if let Some(resp) = &self.response {
            v.at("response", |v| {
                for (key, map) in [("set", &resp.set), ("add", &resp.add)] {
                    v.at(key, |v| {
                        for (name, value) in map {
                            v.at(name, |v| {
                                v.check(check_operation_name(name));
                                v.check(rules::check_header_value(value));
                            });
                        }
                    });
                }
                v.each("remove", &resp.remove, |v, name| {
                    v.check(check_operation_name(name))
                });
            });
        }
    }
}

fn check_operation_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err("header name cannot be empty".into())
    } else if name.eq_ignore_ascii_case("host") {
        Err(format!(
            "header {name:?} cannot be changed here (use rewrite.authority)"
        ))
    } else if name.starts_with(':') {
        Err(format!(
            "header {name:?} cannot be changed: names starting with ':' are reserved"
        ))
    } else {
        Ok(())
    }
}

impl Validate for CorsPolicy {
    fn validate(&self, v: &mut Validator<'_>) {
        if !self.allow_origin.is_empty() {
            v.warn_at("allowOrigin", "allowOrigin is deprecated; use allowOrigins");
        }
        v.each("allowOrigins", &self.allow_origins, |v, m| {
            let (_, text) = m.as_pair();
            if text.is_empty() {
                v.error("an allowed origin must not be empty");
            } else {
                m.validate(v);
            }
        });
        v.each("allowMethods", &self.allow_methods, |v, m| {
            if !HTTP_METHODS.contains(&m.as_str()) {
                v.error(format!(
                    "{m:?} is not a supported HTTP method{}",
                    crate::de::hint(m, HTTP_METHODS, "methods")
                ));
            }
        });
        for (key, names) in [
            ("allowHeaders", &self.allow_headers),
            ("exposeHeaders", &self.expose_headers),
        ] {
            v.each(key, names, |v, name| {
                if name != "*" {
                    v.check(rules::check_header_name(name));
                }
            });
        }
        if let Some(age) = self.max_age {
            if age.as_millis() % 1000 != 0 {
                v.error_at("maxAge", "maxAge is accurate only to whole seconds");
            }
        }
    }
}

impl Validate for HttpFaultInjection {
    fn validate(&self, v: &mut Validator<'_>) {
        if self.abort.is_none() && self.delay.is_none() {
            v.error("fault injection needs abort, delay or both");
        }
        v.field("abort", &self.abort);
        v.field("delay", &self.delay);
    }
}

impl Validate for FaultAbort {
    fn validate(&self, v: &mut Validator<'_>) {
        v.field("percentage", &self.percentage);
        let set = [
            self.http_status.is_some(),
            self.grpc_status.is_some(),
            self.http2_error.is_some(),
        ];
        if set.iter().filter(|s| **s).count() > 1 {
            v.error("only one of httpStatus, grpcStatus and http2Error may be set");
        }
        if let Some(status) = self.http_status {
            if !(200..=599).contains(&status) {
                v.error_at(
                    "httpStatus",
                    format!("HTTP status {status} is not in the range 200..599"),
                );
            }
        } else if let Some(status) = &self.grpc_status {
            if !GRPC_STATUSES.contains(&status.as_str()) {
                v.error_at(
                    "grpcStatus",
                    format!(
                        "gRPC status {status:?} is not supported{}",
                        crate::de::hint(status, GRPC_STATUSES, "statuses")
                    ),
                );
            }
        } else if self.http2_error.is_some() {
            v.error_at("http2Error", "HTTP/2 error aborts are not supported");
        } else {
            v.warn("abort configured without httpStatus or grpcStatus: it does nothing");
        }
    }
}

impl Validate for FaultDelay {
    fn validate(&self, v: &mut Validator<'_>) {
        v.field("percentage", &self.percentage);
        if let Some(p) = self.percent {
            v.at("percent", |v| {
                v.check(rules::check_percent(i64::from(p)));
                v.warn("percent is deprecated; use percentage");
            });
        }
        if self.exponential_delay.is_some() {
            v.error_at("exponentialDelay", "exponentialDelay is not supported");
        } else if self.fixed_delay.is_none() {
            v.required("fixedDelay");
        }
    }
}

impl Validate for HttpMirrorPolicy {
    fn validate(&self, v: &mut Validator<'_>) {
        v.field("destination", &self.destination);
        if let Some(p) = &self.percentage {
            if !(0.0..=100.0).contains(&p.value) {
                v.error_at(
                    "percentage",
                    format!(
                        "mirror percentage must be between 0 and 100 (it is {})",
                        p.value
                    ),
                );
            }
        }
    }
}

impl Validate for HttpRedirect {
    fn validate(&self, v: &mut Validator<'_>) {
        if self.uri.is_none()
            && self.authority.is_none()
            && self.port.is_none()
            && self.derive_port.is_none()
            && self.scheme.is_none()
        {
            v.error("redirect must specify uri, authority, scheme, port or derivePort");
        }
        if self.port.is_some() && self.derive_port.is_some() {
            v.error_at("derivePort", "only one of port and derivePort may be set");
        }
        if let Some(code) = self.redirect_code {
            if !(300..=399).contains(&code) {
                v.error_at(
                    "redirectCode",
                    format!("{code} is not a redirect code (3xx)"),
                );
            }
        }
        if let Some(scheme) = &self.scheme {
            if scheme != "http" && scheme != "https" {
                v.error_at(
                    "scheme",
                    format!("redirect scheme {scheme:?} must be \"http\" or \"https\""),
                );
            }
        }
        if let Some(port) = self.port {
            v.check_at("port", rules::check_port(port));
        }
    }
}

impl Validate for HttpDirectResponse {
    fn validate(&self, v: &mut Validator<'_>) {
        if !(200..=599).contains(&self.status) {
            v.error_at(
                "status",
                format!("HTTP status {} is not in the range 200..599", self.status),
            );
        }
        let Some(body) = &self.body else { return };
        let size = match body {
            HttpBody::String(s) => s.len(),
            HttpBody::Bytes(b) => {
                if !is_base64(b) {
                    v.error_at("body", "bytes must be base64-encoded");
                }
                b.len() / 4 * 3
            }
        };
        if size > MAX_BODY {
            v.error_at("body", "direct response bodies must be smaller than 1MB");
        } else if size > WARN_BODY {
            v.warn_at(
                "body",
                "large direct response bodies may slow the control plane",
            );
        }
    }
}

/// Standard base64 (with padding), as protobuf's JSON mapping writes bytes.
fn is_base64(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    s.len().is_multiple_of(4)
        && s.len() - body.len() <= 2
        && body
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'-' || c == b'_')
}

impl Validate for HttpRetry {
    fn validate(&self, v: &mut Validator<'_>) {
        if self.attempts < 0 {
            v.error_at("attempts", "attempts cannot be negative");
        }
        if self.attempts == 0
            && (self.per_try_timeout.is_some()
                || self.retry_on.is_some()
                || self.retry_remote_localities.is_some())
        {
            v.error_at(
                "attempts",
                "retry settings are given but attempts is 0, which disables retries",
            );
        }
        if let Some(on) = &self.retry_on {
            v.at("retryOn", |v| {
                for policy in on.split(',') {
                    let policy = policy.trim();
                    let status = policy
                        .parse::<u16>()
                        .is_ok_and(|c| (100..=599).contains(&c));
                    if !status && !RETRY_ON.contains(&policy) {
                        v.error(format!(
                            "{policy:?} is not a valid retryOn policy{}",
                            crate::de::hint(policy, RETRY_ON, "policies")
                        ));
                    }
                }
            });
        }
    }
}

impl Validate for HttpRewrite {
    fn validate(&self, v: &mut Validator<'_>) {
        if self.uri.is_some() && self.uri_regex_rewrite.is_some() {
            v.error("rewrite may contain only one of uri and uriRegexRewrite");
        }
        if self.uri.is_none() && self.uri_regex_rewrite.is_none() && self.authority.is_none() {
            v.error("rewrite must specify uri, uriRegexRewrite or authority");
        }
        if let Some(rr) = &self.uri_regex_rewrite {
            v.at("uriRegexRewrite", |v| {
                if rr.pattern.is_empty() {
                    v.required("match");
                } else {
                    v.check_at("match", rules::check_regex(&rr.pattern));
                }
                if rr.rewrite.is_empty() {
                    v.required("rewrite");
                }
            });
        }
    }
}

impl Validate for Delegate {
    fn validate(&self, v: &mut Validator<'_>) {
        if self.name.is_empty() {
            v.required("name");
        } else {
            v.check_at("name", rules::check_name(&self.name));
        }
        if let Some(ns) = &self.namespace {
            v.check_at("namespace", rules::check_namespace(ns));
        }
    }
}
