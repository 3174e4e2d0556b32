//! Permissions and principals (`envoy.config.rbac.v3.Permission` and `Principal`) as
//! trees of matchers, and what they are matched against: the connection, and the
//! request when an HTTP filter asks.

use crate::http::matcher::{HeaderMatcher, RequestView, StringMatch};
use crate::http::route::without_query;
use crate::metadata::{DynamicMetadata, MetadataMatcher};
use crate::stream_info::Downstream;
use std::net::IpAddr;

/// What one RBAC decision looks at.
pub struct Input<'a> {
    /// The downstream connection: peer, local address, SNI, TLS session.
    pub conn: &'a Downstream,
    /// The client address: after `X-Forwarded-For` processing on HTTP, else the peer.
    pub remote: IpAddr,
    /// The request, for HTTP filters; `None` for network filters.
    pub request: Option<&'a RequestView<'a>>,
    /// What the request's earlier filters recorded (the JWT filter: the verified
    /// token); `None` for network filters.
    pub metadata: Option<&'a DynamicMetadata>,
}

impl<'a> Input<'a> {
    /// The input of a network filter: the connection alone.
    pub fn connection(conn: &'a Downstream) -> Input<'a> {
        Input {
            conn,
            remote: conn.remote.ip(),
            request: None,
            metadata: None,
        }
    }
}

/// A CIDR block (`envoy.config.core.v3.CidrRange`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

impl Cidr {
    /// A block; `None` when the prefix is longer than the address.
    pub fn new(address: IpAddr, prefix_len: u32) -> Option<Cidr> {
        let bits = match address {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix_len > bits {
            return None;
        }
        let prefix_len = prefix_len as u8;
        Some(Cidr {
            network: mask(address, prefix_len),
            prefix_len,
        })
    }

    /// Whether `ip` is in the block. IPv4-mapped IPv6 addresses (a dual-stack socket's
    /// view of an IPv4 peer) count as the IPv4 address they carry.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match (self.network, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip, self.prefix_len) == self.network
            }
            _ => false,
        }
    }
}

fn mask(ip: IpAddr, prefix_len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = u32::MAX
                .checked_shl(32 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::from((u32::from(a) & m).to_be_bytes())
        }
        IpAddr::V6(a) => {
            let m = u128::MAX
                .checked_shl(128 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::from((u128::from(a) & m).to_be_bytes())
        }
    }
}

/// A compiled `Permission`: what the request or connection does.
#[derive(Debug, Clone)]
pub enum Permission {
    /// `any: true`.
    Any,
    /// `and_rules`: all must match.
    And(Vec<Permission>),
    /// `or_rules`: one must match.
    Or(Vec<Permission>),
    /// `not_rule`.
    Not(Box<Permission>),
    /// `header` (HTTP only).
    Header(HeaderMatcher),
    /// `url_path`: the path without query or fragment (HTTP only).
    UrlPath(StringMatch),
    /// `destination_ip`: the local address (or original destination).
    DestinationIp(Cidr),
    /// `destination_port`.
    DestinationPort(u16),
    /// `destination_port_range`: `[start, end)`.
    DestinationPortRange(u32, u32),
    /// `requested_server_name`: the TLS SNI, empty without one.
    RequestedServerName(StringMatch),
    /// `metadata`: the request's dynamic metadata (HTTP only).
    Metadata(MetadataMatcher),
}

impl Permission {
    /// Whether the permission matches.
    pub fn matches(&self, input: &Input<'_>) -> bool {
        match self {
            Permission::Any => true,
            Permission::And(rules) => rules.iter().all(|r| r.matches(input)),
            Permission::Or(rules) => rules.iter().any(|r| r.matches(input)),
            Permission::Not(rule) => !rule.matches(input),
            Permission::Header(h) => input.request.is_some_and(|r| h.matches(r)),
            Permission::UrlPath(m) => input
                .request
                .is_some_and(|r| m.matches(without_query(r.path))),
            Permission::DestinationIp(c) => c.contains(input.conn.local.ip()),
            Permission::DestinationPort(p) => input.conn.local.port() == *p,
            Permission::DestinationPortRange(start, end) => {
                (*start..*end).contains(&u32::from(input.conn.local.port()))
            }
            Permission::RequestedServerName(m) => {
                m.matches(input.conn.server_name.as_deref().unwrap_or(""))
            }
            Permission::Metadata(m) => input.metadata.is_some_and(|md| m.matches(md)),
        }
    }
}

/// A compiled `Principal`: who the downstream is.
#[derive(Debug, Clone)]
pub enum Principal {
    /// `any: true`.
    Any,
    /// `and_ids`: all must match.
    And(Vec<Principal>),
    /// `or_ids`: one must match.
    Or(Vec<Principal>),
    /// `not_id`.
    Not(Box<Principal>),
    /// `authenticated`: a verified peer certificate, whose name matches when one is given.
    Authenticated(Option<StringMatch>),
    /// `direct_remote_ip` and the deprecated `source_ip`: the socket's peer.
    DirectRemoteIp(Cidr),
    /// `remote_ip`: the client address, `X-Forwarded-For` considered.
    RemoteIp(Cidr),
    /// `header` (HTTP only).
    Header(HeaderMatcher),
    /// `url_path` (HTTP only).
    UrlPath(StringMatch),
    /// `metadata`: the request's dynamic metadata (HTTP only), e.g. Istio's
    /// `request.auth.principal` for `requestPrincipals`.
    Metadata(MetadataMatcher),
}

impl Principal {
    /// Whether the principal matches.
    pub fn matches(&self, input: &Input<'_>) -> bool {
        match self {
            Principal::Any => true,
            Principal::And(ids) => ids.iter().all(|p| p.matches(input)),
            Principal::Or(ids) => ids.iter().any(|p| p.matches(input)),
            Principal::Not(id) => !id.matches(input),
            Principal::Authenticated(name) => authenticated(input.conn, name.as_ref()),
            Principal::DirectRemoteIp(c) => c.contains(input.conn.remote.ip()),
            Principal::RemoteIp(c) => c.contains(input.remote),
            Principal::Header(h) => input.request.is_some_and(|r| h.matches(r)),
            Principal::UrlPath(m) => input
                .request
                .is_some_and(|r| m.matches(without_query(r.path))),
            Principal::Metadata(m) => input.metadata.is_some_and(|md| m.matches(md)),
        }
    }
}

/// Envoy's order: every URI SAN, then every DNS SAN, then the subject. Unlike Envoy,
/// a TLS connection without a client certificate is never authenticated, even when the
/// listener does not require one: "authenticated" should mean a verified peer.
fn authenticated(conn: &Downstream, name: Option<&StringMatch>) -> bool {
    let Some(tls) = conn.tls.as_deref() else {
        return false;
    };
    let Some(subject) = tls.peer_subject.as_deref() else {
        return false;
    };
    let Some(m) = name else {
        return true;
    };
    tls.peer_uri_sans.iter().any(|s| m.matches(s))
        || tls.peer_dns_sans.iter().any(|s| m.matches(s))
        || m.matches(subject)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::TlsInfo;
    use std::sync::Arc;

    fn conn(peer: &str, local: &str, tls: Option<TlsInfo>) -> Downstream {
        Downstream {
            id: 1,
            remote: peer.parse().expect("peer"),
            local: local.parse().expect("local"),
            server_name: Some("api.example.com".into()),
            listener: "l".into(),
            tls: tls.map(Arc::new),
        }
    }

    fn cidr(a: &str, len: u32) -> Cidr {
        Cidr::new(a.parse().expect("ip"), len).expect("cidr")
    }

    #[test]
    fn cidr_blocks() {
        let c = cidr("10.1.2.3", 16);
        assert!(c.contains("10.1.200.1".parse().expect("ip")));
        assert!(!c.contains("10.2.0.1".parse().expect("ip")));
        assert!(
            c.contains("::ffff:10.1.0.9".parse().expect("ip")),
            "v4-mapped"
        );
        assert!(cidr("0.0.0.0", 0).contains("192.0.2.1".parse().expect("ip")));
        assert!(!cidr("0.0.0.0", 0).contains("::1".parse().expect("ip")));
        assert!(cidr("2001:db8::", 32).contains("2001:db8:1::5".parse().expect("ip")));
        assert!(cidr("127.0.0.1", 32).contains("127.0.0.1".parse().expect("ip")));
        assert!(Cidr::new("10.0.0.0".parse().expect("ip"), 33).is_none());
    }

    #[test]
    fn connection_permissions() {
        let c = conn("192.0.2.7:5000", "10.0.0.1:8443", None);
        let input = Input::connection(&c);
        assert!(Permission::DestinationPort(8443).matches(&input));
        assert!(Permission::DestinationPortRange(8000, 9000).matches(&input));
        assert!(!Permission::DestinationPortRange(8000, 8443).matches(&input));
        assert!(Permission::DestinationIp(cidr("10.0.0.0", 8)).matches(&input));
        assert!(
            Permission::RequestedServerName(StringMatch::Suffix(".example.com".into(), false))
                .matches(&input)
        );
        let not_port = Permission::Not(Box::new(Permission::DestinationPort(80)));
        assert!(Permission::And(vec![Permission::Any, not_port]).matches(&input));
        assert!(!Permission::Or(vec![Permission::DestinationPort(80)]).matches(&input));
        // HTTP-only rules never match a bare connection.
        assert!(!Permission::UrlPath(StringMatch::Prefix("/".into(), false)).matches(&input));
    }

    #[test]
    fn authenticated_reads_uri_then_dns_then_subject() {
        let exact = |s: &str| Some(StringMatch::Exact(s.into(), false));
        let tls = TlsInfo {
            peer_uri_sans: vec!["spiffe://td/ns/a/sa/b".into()],
            peer_dns_sans: vec!["b.a.svc".into()],
            peer_subject: Some("CN=b,O=weft".into()),
            ..Default::default()
        };
        let c = conn("127.0.0.1:1", "127.0.0.1:2", Some(tls));
        let input = Input::connection(&c);
        for name in ["spiffe://td/ns/a/sa/b", "b.a.svc", "CN=b,O=weft"] {
            assert!(
                Principal::Authenticated(exact(name)).matches(&input),
                "{name}"
            );
        }
        assert!(!Principal::Authenticated(exact("spiffe://td/ns/a/sa/c")).matches(&input));
        assert!(Principal::Authenticated(None).matches(&input));
        // TLS without a client certificate, and plaintext, are not authenticated.
        let anonymous = conn("127.0.0.1:1", "127.0.0.1:2", Some(TlsInfo::default()));
        assert!(!Principal::Authenticated(None).matches(&Input::connection(&anonymous)));
        let plain = conn("127.0.0.1:1", "127.0.0.1:2", None);
        assert!(!Principal::Authenticated(None).matches(&Input::connection(&plain)));
    }

    #[test]
    fn remote_and_direct_remote() {
        let c = conn("10.0.0.9:1", "127.0.0.1:2", None);
        let input = Input {
            conn: &c,
            remote: "203.0.113.5".parse().expect("ip"),
            request: None,
            metadata: None,
        };
        assert!(Principal::DirectRemoteIp(cidr("10.0.0.0", 8)).matches(&input));
        assert!(!Principal::RemoteIp(cidr("10.0.0.0", 8)).matches(&input));
        assert!(Principal::RemoteIp(cidr("203.0.113.0", 24)).matches(&input));
    }

    #[test]
    fn metadata_principal_reads_the_request_metadata_only() {
        use crate::metadata::ValueMatch;
        let principal = Principal::Metadata(MetadataMatcher {
            filter: "istio_authn".into(),
            path: vec!["request.auth.principal".into()],
            value: ValueMatch::String(StringMatch::Exact("iss/alice".into(), false)),
            invert: false,
        });
        let c = conn("127.0.0.1:1", "127.0.0.1:2", None);
        let mut md = DynamicMetadata::default();
        md.set("istio_authn", "request.auth.principal", "iss/alice".into());
        let with = |metadata| Input {
            conn: &c,
            remote: c.remote.ip(),
            request: None,
            metadata,
        };
        assert!(principal.matches(&with(Some(&md))));
        assert!(!principal.matches(&with(Some(&DynamicMetadata::default()))));
        // A network filter has no request metadata.
        assert!(!principal.matches(&Input::connection(&c)));
    }
}
