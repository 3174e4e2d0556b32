//! One xDS resource as the server sends it: its name, a version derived from its bytes,
//! and the resource packed in an `Any`.

use crate::pb::google::protobuf::Any;
use prost::{Message, Name};
use std::fmt::Write;
use xxhash_rust::xxh64::xxh64;

/// A resource ready to be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// Resource name (the listener, route configuration, cluster or cluster name of a
    /// load assignment).
    pub name: String,
    /// Content version: a hash of the encoded resource, so equal content means equal
    /// version on every control-plane replica.
    pub version: String,
    /// The resource.
    pub body: Any,
}

impl Resource {
    /// Packs `message` as a resource named `name`.
    pub fn new<M: Message + Name>(name: impl Into<String>, message: &M) -> Resource {
        let value = message.encode_to_vec();
        let mut version = String::with_capacity(16);
        let _ = write!(version, "{:016x}", xxh64(&value, 0));
        Resource {
            name: name.into(),
            version,
            body: Any {
                type_url: M::type_url(),
                value,
            },
        }
    }

    /// The type URL.
    pub fn type_url(&self) -> &str {
        &self.body.type_url
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::envoy::config::cluster::v3::Cluster;

    #[test]
    fn version_follows_content() {
        let a = Cluster {
            name: "a".into(),
            ..Default::default()
        };
        let b = Cluster {
            name: "b".into(),
            ..Default::default()
        };
        assert_eq!(
            Resource::new("a", &a).version,
            Resource::new("a", &a).version
        );
        assert_ne!(
            Resource::new("a", &a).version,
            Resource::new("b", &b).version
        );
        assert_eq!(Resource::new("a", &a).type_url(), crate::type_url::CLUSTER);
    }
}
