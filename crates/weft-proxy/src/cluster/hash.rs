//! Route hash policies: the request key that ring hash and Maglev balance on.

use crate::http::matcher::{HeaderKey, RequestView};
use std::net::IpAddr;
use xxhash_rust::xxh64::xxh64;

/// What one hash policy hashes.
#[derive(Debug, Clone)]
pub enum HashKey {
    /// A request header (or pseudo-header).
    Header(HeaderKey),
    /// A cookie.
    Cookie(String),
    /// The downstream client address.
    SourceIp,
    /// A query parameter.
    QueryParameter(String),
}

/// A compiled `RouteAction.HashPolicy`.
#[derive(Debug, Clone)]
pub struct HashPolicy {
    /// The key.
    pub key: HashKey,
    /// Stop at this policy when it produced a hash.
    pub terminal: bool,
}

/// Computes the request's hash from the policies, combining several as Envoy does
/// (rotate left by one, xor); `None` when no policy found its key.
pub fn request_hash(policies: &[HashPolicy], req: &RequestView<'_>, client: IpAddr) -> Option<u64> {
    let mut hash: Option<u64> = None;
    for policy in policies {
        let Some(h) = key_hash(&policy.key, req, client) else {
            continue;
        };
        hash = Some(match hash {
            Some(prev) => prev.rotate_left(1) ^ h,
            None => h,
        });
        if policy.terminal {
            break;
        }
    }
    hash
}

fn key_hash(key: &HashKey, req: &RequestView<'_>, client: IpAddr) -> Option<u64> {
    match key {
        HashKey::Header(HeaderKey::Named(name)) => {
            let mut values = req.headers.get_all(name).iter().peekable();
            values.peek()?;
            let mut h = 0u64;
            for v in values {
                h = h.rotate_left(1) ^ xxh64(v.as_bytes(), 0);
            }
            Some(h)
        }
        HashKey::Header(HeaderKey::Method) => Some(xxh64(req.method.as_str().as_bytes(), 0)),
        HashKey::Header(HeaderKey::Path) => Some(xxh64(req.path.as_bytes(), 0)),
        HashKey::Header(HeaderKey::Authority) => Some(xxh64(req.authority.as_bytes(), 0)),
        HashKey::Header(HeaderKey::Scheme) => Some(xxh64(req.scheme.as_bytes(), 0)),
        HashKey::Cookie(name) => {
            crate::http::headers::cookie(req.headers, name).map(|v| xxh64(v.as_bytes(), 0))
        }
        HashKey::SourceIp => Some(match client {
            IpAddr::V4(a) => xxh64(&a.octets(), 0),
            IpAddr::V6(a) => xxh64(&a.octets(), 0),
        }),
        HashKey::QueryParameter(name) => {
            let query = req.path.split_once('?')?.1;
            query.split('&').find_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (k == name).then(|| xxh64(v.as_bytes(), 0))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue, Method};

    fn view<'a>(h: &'a HeaderMap, path: &'a str) -> RequestView<'a> {
        RequestView {
            method: &Method::GET,
            path,
            authority: "svc",
            scheme: "http",
            headers: h,
        }
    }

    #[test]
    fn header_cookie_query_and_ip() {
        let mut h = HeaderMap::new();
        h.insert("x-user", HeaderValue::from_static("alice"));
        h.insert("cookie", HeaderValue::from_static("a=1; session=xyz"));
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let by = |key| {
            request_hash(
                &[HashPolicy {
                    key,
                    terminal: false,
                }],
                &view(&h, "/p?u=7"),
                ip,
            )
        };
        let user = by(HashKey::Header(HeaderKey::parse("x-user").expect("k")));
        assert_eq!(user, Some(xxh64(b"alice", 0)));
        assert_eq!(
            by(HashKey::Cookie("session".into())),
            Some(xxh64(b"xyz", 0))
        );
        assert_eq!(by(HashKey::Cookie("none".into())), None);
        assert_eq!(
            by(HashKey::QueryParameter("u".into())),
            Some(xxh64(b"7", 0))
        );
        assert!(by(HashKey::SourceIp).is_some());
        assert_eq!(
            by(HashKey::Header(HeaderKey::parse("x-missing").expect("k"))),
            None
        );
    }

    #[test]
    fn terminal_stops_and_combination_differs() {
        let mut h = HeaderMap::new();
        h.insert("x-a", HeaderValue::from_static("1"));
        h.insert("x-b", HeaderValue::from_static("2"));
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let p = |name: &str, terminal| HashPolicy {
            key: HashKey::Header(HeaderKey::parse(name).expect("k")),
            terminal,
        };
        let a_only = request_hash(&[p("x-a", true), p("x-b", false)], &view(&h, "/"), ip);
        assert_eq!(a_only, Some(xxh64(b"1", 0)));
        let both = request_hash(&[p("x-a", false), p("x-b", false)], &view(&h, "/"), ip);
        assert_ne!(both, a_only);
    }
}
