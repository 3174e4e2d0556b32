//! Header handling on the way through: configured additions and removals (with Envoy's
//! append actions and command operators), hop-by-hop headers, `X-Forwarded-For`,
//! `X-Forwarded-Proto` and `X-Request-Id`.

use crate::format::Template;
use crate::stream_info::StreamInfo;
use http::header::{CONNECTION, TE, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

/// `x-forwarded-for`
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `x-forwarded-proto`
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `x-request-id`
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `x-envoy-upstream-service-time`
pub static X_UPSTREAM_SERVICE_TIME: HeaderName =
    HeaderName::from_static("x-envoy-upstream-service-time");
/// `x-envoy-original-path`
pub static X_ORIGINAL_PATH: HeaderName = HeaderName::from_static("x-envoy-original-path");
/// `x-envoy-attempt-count`
pub static X_ATTEMPT_COUNT: HeaderName = HeaderName::from_static("x-envoy-attempt-count");
/// `x-envoy-original-dst-host`
pub static X_ORIGINAL_DST_HOST: HeaderName = HeaderName::from_static("x-envoy-original-dst-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Envoy's `HeaderValueOption.append_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendAction {
    /// Append if present, add if not.
    AppendIfExistsOrAdd,
    /// Add only if absent.
    AddIfAbsent,
    /// Replace if present, add if not.
    OverwriteIfExistsOrAdd,
    /// Replace only if present.
    OverwriteIfExists,
}

/// A header value: fixed, or rendered per request from command operators.
#[derive(Debug, Clone)]
pub enum HeaderTemplate {
    /// Fixed.
    Static(HeaderValue),
    /// Rendered per request.
    Format(Template),
}

/// One header to add.
#[derive(Debug, Clone)]
pub struct HeaderAdd {
    /// Name.
    pub name: HeaderName,
    /// Value.
    pub value: HeaderTemplate,
    /// How it combines with an existing header.
    pub action: AppendAction,
    /// Add even when the rendered value is empty.
    pub keep_empty: bool,
}

/// Headers to remove, then headers to add, at one level of the configuration.
#[derive(Debug, Clone, Default)]
pub struct HeaderMutation {
    /// Added (after removal).
    pub add: Vec<HeaderAdd>,
    /// Removed.
    pub remove: Vec<HeaderName>,
}

impl HeaderMutation {
    /// Whether it does nothing.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }

    /// Applies the removals, then the additions.
    pub fn apply(&self, headers: &mut HeaderMap, info: &StreamInfo) {
        for name in &self.remove {
            headers.remove(name);
        }
        for add in &self.add {
            let value = match &add.value {
                HeaderTemplate::Static(v) => v.clone(),
                HeaderTemplate::Format(t) => {
                    match HeaderValue::try_from(t.render_to_string(info)) {
                        Ok(v) => v,
                        Err(_) => continue,
                    }
                }
            };
            if value.is_empty() && !add.keep_empty {
                continue;
            }
            match add.action {
                AppendAction::AppendIfExistsOrAdd => {
                    headers.append(add.name.clone(), value);
                }
                AppendAction::AddIfAbsent => {
                    if !headers.contains_key(&add.name) {
                        headers.insert(add.name.clone(), value);
                    }
                }
                AppendAction::OverwriteIfExistsOrAdd => {
                    headers.insert(add.name.clone(), value);
                }
                AppendAction::OverwriteIfExists => {
                    if headers.contains_key(&add.name) {
                        headers.insert(add.name.clone(), value);
                    }
                }
            }
        }
    }
}

/// Removes the headers that belong to one connection (RFC 9110 §7.6.1), as Envoy does:
/// `Connection` and the headers it names, `Keep-Alive`, `Proxy-Connection`,
/// `Transfer-Encoding`, `TE` unless it is `trailers`, and `Upgrade` unless upgrading.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, upgrading: bool) {
    if let Some(conn) = headers.get(&CONNECTION) {
        let named: Vec<HeaderName> = conn
            .to_str()
            .unwrap_or("")
            .split(',')
            .filter_map(|t| {
                let t = t.trim();
                if upgrading && t.eq_ignore_ascii_case("upgrade") {
                    return None;
                }
                HeaderName::from_bytes(t.to_ascii_lowercase().as_bytes()).ok()
            })
            .collect();
        for name in named {
            if name != TE {
                headers.remove(&name);
            }
        }
        if !upgrading {
            headers.remove(&CONNECTION);
        }
    }
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(&TRANSFER_ENCODING);
    if !upgrading {
        headers.remove(&UPGRADE);
    }
    if let Some(te) = headers.get(&TE) {
        if !te.as_bytes().eq_ignore_ascii_case(b"trailers") {
            headers.remove(&TE);
        }
    }
}

/// The client address as Envoy's `use_remote_address` and `xff_num_trusted_hops` define
/// it: with `use_remote_address`, the peer (or the `trusted_hops`-th entry from the right
/// of XFF); without, the entry `trusted_hops` places left of the rightmost one.
pub fn client_address(
    headers: &HeaderMap,
    peer: IpAddr,
    use_remote: bool,
    trusted_hops: u32,
) -> IpAddr {
    if use_remote && trusted_hops == 0 {
        return peer;
    }
    let skip = if use_remote {
        trusted_hops - 1
    } else {
        trusted_hops
    } as usize;
    let mut entries: Vec<&str> = Vec::new();
    for v in headers.get_all(&X_FORWARDED_FOR) {
        if let Ok(s) = v.to_str() {
            entries.extend(s.split(',').map(str::trim).filter(|e| !e.is_empty()));
        }
    }
    entries
        .iter()
        .rev()
        .nth(skip)
        .and_then(|e| e.parse::<IpAddr>().ok())
        .unwrap_or(peer)
}

/// Appends `addr` to `X-Forwarded-For`.
pub fn append_xff(headers: &mut HeaderMap, addr: IpAddr) {
    let value = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(existing) if !existing.is_empty() => format!("{existing},{addr}"),
        _ => addr.to_string(),
    };
    if let Ok(v) = HeaderValue::try_from(value) {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
}

/// A random UUID (version 4), as Envoy puts in `x-request-id`.
pub fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = fastrand::u128(..).to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut out = [0u8; 36];
    let mut o = 0;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out[o] = b'-';
            o += 1;
        }
        out[o] = HEX[(b >> 4) as usize];
        out[o + 1] = HEX[(b & 0xf) as usize];
        o += 2;
    }
    HeaderValue::from_bytes(&out).expect("hex digits and dashes are a valid header value")
}

/// The value of cookie `name` in the request's `Cookie` headers (the first one).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get_all(http::header::COOKIE).iter().find_map(|v| {
        v.to_str().ok()?.split(';').find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then_some(v)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream_info::Downstream;
    use std::sync::Arc;

    fn info() -> StreamInfo {
        StreamInfo::new(Arc::new(Downstream {
            id: 1,
            remote: "10.1.2.3:4000".parse().expect("addr"),
            local: "127.0.0.1:80".parse().expect("addr"),
            server_name: None,
            listener: "l".into(),
            tls: None,
        }))
    }

    fn add(name: &'static str, value: &str, action: AppendAction) -> HeaderAdd {
        let t = Template::parse(value).expect("template");
        HeaderAdd {
            name: HeaderName::from_static(name),
            value: if t.is_static() {
                HeaderTemplate::Static(HeaderValue::from_str(value).expect("v"))
            } else {
                HeaderTemplate::Format(t)
            },
            action,
            keep_empty: false,
        }
    }

    #[test]
    fn append_actions() {
        let mut h = HeaderMap::new();
        h.insert("x-a", HeaderValue::from_static("1"));
        h.insert("x-gone", HeaderValue::from_static("1"));
        let m = HeaderMutation {
            add: vec![
                add("x-a", "2", AppendAction::AppendIfExistsOrAdd),
                add("x-b", "1", AppendAction::AddIfAbsent),
                add("x-b", "2", AppendAction::AddIfAbsent),
                add("x-c", "1", AppendAction::OverwriteIfExists),
                add("x-a", "3", AppendAction::AppendIfExistsOrAdd),
                add(
                    "x-d",
                    "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
                    AppendAction::OverwriteIfExistsOrAdd,
                ),
            ],
            remove: vec![HeaderName::from_static("x-gone")],
        };
        m.apply(&mut h, &info());
        let all: Vec<_> = h
            .get_all("x-a")
            .iter()
            .map(|v| v.to_str().expect("s"))
            .collect();
        assert_eq!(all, ["1", "2", "3"]);
        assert_eq!(h["x-b"], "1");
        assert!(!h.contains_key("x-c"));
        assert!(!h.contains_key("x-gone"));
        assert_eq!(h["x-d"], "10.1.2.3");
    }

    #[test]
    fn hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-private, upgrade"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        let mut up = h.clone();
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2, "{h:?}");
        assert!(h.contains_key("te") && h.contains_key("x-keep"));
        remove_hop_by_hop(&mut up, true);
        assert!(up.contains_key("upgrade") && up.contains_key("connection"));
        assert!(!up.contains_key("x-private"));
    }

    #[test]
    fn xff_trust() {
        let peer: IpAddr = "10.0.0.9".parse().expect("ip");
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("1.1.1.1, 2.2.2.2,3.3.3.3"),
        );
        assert_eq!(client_address(&h, peer, true, 0), peer);
        assert_eq!(client_address(&h, peer, true, 1).to_string(), "3.3.3.3");
        assert_eq!(client_address(&h, peer, true, 2).to_string(), "2.2.2.2");
        assert_eq!(client_address(&h, peer, false, 0).to_string(), "3.3.3.3");
        assert_eq!(client_address(&h, peer, false, 1).to_string(), "2.2.2.2");
        assert_eq!(client_address(&h, peer, false, 9), peer);
        append_xff(&mut h, peer);
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2,3.3.3.3,10.0.0.9");
    }

    #[test]
    fn request_ids_are_uuid_v4() {
        let a = new_request_id();
        let s = a.to_str().expect("ascii");
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(a, new_request_id());
    }
}
