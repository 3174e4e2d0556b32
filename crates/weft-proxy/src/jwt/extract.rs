//! Where a provider looks for its token (`from_headers`, `from_params`, `from_cookies`;
//! by default Envoy's `Authorization: Bearer <token>` and the `access_token` query
//! parameter), and how a verified token leaves the request before it is forwarded.
//!
//! As in Envoy: a header's value prefix may stand anywhere in the value and the token is
//! what follows it from the first base64url character on; every value of a repeated
//! header counts. A token is removed only from a header (the whole header goes);
//! query parameters and cookies are left as they came.

use crate::http::headers::cookie;
use http::header::{HeaderName, AUTHORIZATION};
use http::HeaderMap;

/// Envoy's default header prefix.
pub const BEARER_PREFIX: &str = "Bearer ";
/// Envoy's default query parameter.
pub const ACCESS_TOKEN_PARAM: &str = "access_token";

/// One place a token may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A header, the token after `prefix` (the whole value when empty).
    Header {
        /// The header.
        name: HeaderName,
        /// `value_prefix`.
        prefix: String,
    },
    /// A query parameter.
    Param(String),
    /// A cookie.
    Cookie(String),
}

impl Location {
    /// Where a provider that names no location looks, as Envoy.
    pub fn defaults() -> Vec<Location> {
        vec![
            Location::Header {
                name: AUTHORIZATION,
                prefix: BEARER_PREFIX.to_string(),
            },
            Location::Param(ACCESS_TOKEN_PARAM.to_string()),
        ]
    }

    /// Appends the tokens found here in the request's headers and query string.
    pub fn find(&self, headers: &HeaderMap, query: Option<&str>, out: &mut Vec<String>) {
        match self {
            Location::Header { name, prefix } => {
                for value in headers.get_all(name) {
                    let Ok(value) = value.to_str() else { continue };
                    if let Some(token) = after_prefix(value, prefix) {
                        out.push(token.to_string());
                    }
                }
            }
            Location::Param(name) => {
                if let Some(token) = query.and_then(|q| query_param(q, name)) {
                    out.push(token);
                }
            }
            Location::Cookie(name) => {
                if let Some(token) = cookie(headers, name).map(|v| v.trim_matches('"')) {
                    out.push(token.to_string());
                }
            }
        }
    }

    /// Removes a verified token from the request: a header goes whole, as in Envoy.
    pub fn remove(&self, headers: &mut HeaderMap) {
        if let Location::Header { name, .. } = self {
            headers.remove(name);
        }
    }
}

/// The token in a header value: from the first base64url character after `prefix`.
fn after_prefix<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    if prefix.is_empty() {
        return Some(value);
    }
    let rest = &value[value.find(prefix)? + prefix.len()..];
    let is_token_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    // Envoy keeps the value as it is when no such character follows.
    Some(
        rest.find(is_token_char)
            .map_or(value, |start| &rest[start..]),
    )
}

/// The first value of query parameter `name`, percent-decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k).as_deref() == Some(name))
            .then(|| percent_decode(v))
            .flatten()
    })
}

/// `%XX` escapes decoded; `None` when the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h)? * 16 + hex(l)?) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn found(l: &Location, h: &HeaderMap, q: Option<&str>) -> Vec<String> {
        let mut out = Vec::new();
        l.find(h, q, &mut out);
        out
    }

    #[test]
    fn default_locations() {
        let [bearer, param] = <[Location; 2]>::try_from(Location::defaults()).expect("two");
        let h = headers(&[
            ("authorization", "Bearer a.b.c"),
            ("authorization", "Basic xyz"),
        ]);
        assert_eq!(found(&bearer, &h, None), ["a.b.c"]);
        // The prefix is matched as written, and may stand after other text.
        let h = headers(&[("authorization", "bearer a.b.c")]);
        assert!(found(&bearer, &h, None).is_empty());
        let h = headers(&[("authorization", "Token, Bearer   x.y.z")]);
        assert_eq!(found(&bearer, &h, None), ["x.y.z"]);
        let h = headers(&[("authorization", "Bearer ")]);
        assert_eq!(found(&bearer, &h, None), ["Bearer "]);
        assert_eq!(
            found(
                &param,
                &HeaderMap::new(),
                Some("a=1&access_token=t%2Eu.v&access_token=2")
            ),
            ["t.u.v"]
        );
        assert!(found(&param, &HeaderMap::new(), Some("access_tokens=x")).is_empty());
        assert!(found(&param, &HeaderMap::new(), None).is_empty());
        let mut h = headers(&[("authorization", "Bearer a.b.c"), ("x-other", "1")]);
        bearer.remove(&mut h);
        param.remove(&mut h);
        assert!(!h.contains_key(AUTHORIZATION));
        assert!(h.contains_key("x-other"));
    }

    #[test]
    fn custom_headers_and_cookies() {
        let plain = Location::Header {
            name: HeaderName::from_static("x-jwt"),
            prefix: String::new(),
        };
        let h = headers(&[
            ("x-jwt", "a.b.c"),
            ("cookie", "x=1; session=\"s.t.u\"; y=2"),
        ]);
        assert_eq!(found(&plain, &h, None), ["a.b.c"]);
        assert_eq!(
            found(&Location::Cookie("session".into()), &h, None),
            ["s.t.u"]
        );
        assert!(found(&Location::Cookie("none".into()), &h, None).is_empty());
        assert_eq!(percent_decode("%zz%41%"), Some("%zzA%".into()));
        assert_eq!(percent_decode("%ff"), None);
    }
}
