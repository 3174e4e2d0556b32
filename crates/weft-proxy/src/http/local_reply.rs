//! Responses the proxy makes itself: errors, redirects and direct responses. A gRPC
//! caller gets a trailers-only gRPC response with a `grpc-status` instead of an HTTP
//! error, so its client library reports the failure properly.

use super::body::ResponseBody;
use crate::error::ProxyError;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};

static TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain");
static GRPC: HeaderValue = HeaderValue::from_static("application/grpc");

/// The local reply for a failure.
pub fn error_reply(err: &ProxyError, grpc: bool) -> Response<ResponseBody> {
    let mut resp = if grpc {
        grpc_reply(err.grpc_status(), err.body())
    } else {
        text_reply(err.status(), err.body())
    };
    if let Some(challenge) = err.challenge() {
        resp.headers_mut()
            .insert(WWW_AUTHENTICATE, challenge.clone());
    }
    resp
}

/// A plain-text response.
pub fn text_reply(status: StatusCode, body: &'static str) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::full(body));
    *resp.status_mut() = status;
    if !body.is_empty() {
        resp.headers_mut().insert(CONTENT_TYPE, TEXT_PLAIN.clone());
    }
    resp.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    resp
}

/// A trailers-only gRPC response.
pub fn grpc_reply(code: u32, message: &str) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::empty());
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, GRPC.clone());
    h.insert("grpc-status", HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_str(&percent_encode_message(message)) {
        h.insert("grpc-message", v);
    }
    resp
}

/// A redirect.
pub fn redirect(status: StatusCode, location: &str) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::empty());
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(0));
    resp
}

/// A direct response with an optional body.
pub fn direct(status: StatusCode, body: Option<bytes::Bytes>) -> Response<ResponseBody> {
    let len = body.as_ref().map_or(0, |b| b.len());
    let mut resp = Response::new(match body {
        Some(b) => ResponseBody::full(b),
        None => ResponseBody::empty(),
    });
    *resp.status_mut() = status;
    if len > 0 {
        resp.headers_mut().insert(CONTENT_TYPE, TEXT_PLAIN.clone());
    }
    resp.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

/// gRPC's percent-encoding of `grpc-message` (RFC 3986 unreserved set kept, plus space).
fn percent_encode_message(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    for b in msg.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_failures_are_trailers_only() {
        let r = error_reply(&ProxyError::NoHealthyUpstream, true);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["grpc-status"], "14");
        assert_eq!(r.headers()["grpc-message"], "no healthy upstream");
        assert_eq!(r.headers()["content-type"], "application/grpc");
    }

    #[test]
    fn http_failures() {
        let r = error_reply(&ProxyError::NoRoute, false);
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()["content-length"], "0");
        assert_eq!(percent_encode_message("a%b\n"), "a%25b%0A");
    }
}
