//! Workload identities: a service in a namespace, named on the wire by its SPIFFE ID
//! `spiffe://<trust-domain>/ns/<namespace>/sa/<service>` (Istio's form, with the
//! service standing for the service account).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Istio's default trust domain.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// One workload identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Identity {
    /// Its namespace.
    pub namespace: String,
    /// Its service (Istio's service account).
    pub service: String,
}

impl Identity {
    /// An identity.
    pub fn new(namespace: impl Into<String>, service: impl Into<String>) -> Identity {
        Identity {
            namespace: namespace.into(),
            service: service.into(),
        }
    }

    /// Its SPIFFE ID in `trust_domain`.
    pub fn spiffe_id(&self, trust_domain: &str) -> String {
        format!(
            "spiffe://{trust_domain}/ns/{}/sa/{}",
            self.namespace, self.service
        )
    }

    /// Parses a SPIFFE ID of `trust_domain`.
    pub fn from_spiffe_id(id: &str, trust_domain: &str) -> Option<Identity> {
        let rest = id.strip_prefix("spiffe://")?.strip_prefix(trust_domain)?;
        let rest = rest.strip_prefix("/ns/")?;
        let (namespace, service) = rest.split_once("/sa/")?;
        (valid_segment(namespace) && valid_segment(service))
            .then(|| Identity::new(namespace, service))
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.service)
    }
}

/// A DNS-label-like name: what namespaces and services are (so that no SPIFFE path can
/// be smuggled through one).
pub fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !s.starts_with(['-', '.'])
}

/// A trust domain as SPIFFE allows it: lowercase letters, digits, `.`, `-`, `_`.
pub fn valid_trust_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.' || b == b'_'
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids_round_trip_and_odd_ones_are_refused() {
        let id = Identity::new("shop", "reviews");
        let s = id.spiffe_id("cluster.local");
        assert_eq!(s, "spiffe://cluster.local/ns/shop/sa/reviews");
        assert_eq!(Identity::from_spiffe_id(&s, "cluster.local"), Some(id));
        assert_eq!(Identity::from_spiffe_id(&s, "other.local"), None);
        for bad in [
            "spiffe://cluster.local/ns/shop/sa/",
            "spiffe://cluster.local/ns/a/b/sa/c",
            "spiffe://cluster.local/ns/Shop/sa/c",
            "http://cluster.local/ns/a/sa/c",
        ] {
            assert_eq!(
                Identity::from_spiffe_id(bad, "cluster.local"),
                None,
                "{bad}"
            );
        }
        assert!(valid_trust_domain("example.org") && !valid_trust_domain("Ex/ample"));
    }
}
