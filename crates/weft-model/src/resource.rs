//! [`Resource`]: one typed, validated object (apiVersion, kind, metadata, spec), its
//! [`Kind`] and its stable [`ResourceKey`]. Serializes back to the shape the user wrote
//! (Istio's spelling, absent fields left out) and deserializes from that stored form,
//! validating again.

use crate::meta::ObjectMeta;
use crate::networking::{
    DestinationRule, Gateway, ServiceEntry, Sidecar, VirtualService, WorkloadEntry,
};
use crate::node::Node;
use crate::security::{AuthorizationPolicy, PeerAuthentication, RequestAuthentication};
use crate::validate::{Validate, Validator};
use crate::weft::Workload;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Istio's networking API group.
pub const NETWORKING_GROUP: &str = "networking.istio.io";
/// Istio's security API group.
pub const SECURITY_GROUP: &str = "security.istio.io";
/// Weft's own API group.
pub const WEFT_GROUP: &str = "weft.dev";

const NETWORKING_VERSIONS: &[&str] = &["v1alpha3", "v1beta1", "v1"];
const SECURITY_VERSIONS: &[&str] = &["v1beta1", "v1"];
const WEFT_VERSIONS: &[&str] = &["v1"];

/// The kinds Weft accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `networking.istio.io` VirtualService.
    VirtualService,
    /// `networking.istio.io` DestinationRule.
    DestinationRule,
    /// `networking.istio.io` ServiceEntry.
    ServiceEntry,
    /// `networking.istio.io` Gateway.
    Gateway,
    /// `networking.istio.io` Sidecar.
    Sidecar,
    /// `networking.istio.io` WorkloadEntry.
    WorkloadEntry,
    /// `security.istio.io` PeerAuthentication.
    PeerAuthentication,
    /// `security.istio.io` AuthorizationPolicy.
    AuthorizationPolicy,
    /// `security.istio.io` RequestAuthentication.
    RequestAuthentication,
    /// `weft.dev` Workload: an instance of a service on a host without a sidecar.
    Workload,
}

impl Kind {
    /// Every kind, in a stable order.
    pub const ALL: [Kind; 10] = [
        Kind::VirtualService,
        Kind::DestinationRule,
        Kind::ServiceEntry,
        Kind::Gateway,
        Kind::Sidecar,
        Kind::WorkloadEntry,
        Kind::PeerAuthentication,
        Kind::AuthorizationPolicy,
        Kind::RequestAuthentication,
        Kind::Workload,
    ];

    /// The name as written in `kind:`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::VirtualService => "VirtualService",
            Kind::DestinationRule => "DestinationRule",
            Kind::ServiceEntry => "ServiceEntry",
            Kind::Gateway => "Gateway",
            Kind::Sidecar => "Sidecar",
            Kind::WorkloadEntry => "WorkloadEntry",
            Kind::PeerAuthentication => "PeerAuthentication",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::RequestAuthentication => "RequestAuthentication",
            Kind::Workload => "Workload",
        }
    }

    /// The API group.
    pub fn group(&self) -> &'static str {
        match self {
            Kind::VirtualService
            | Kind::DestinationRule
            | Kind::ServiceEntry
            | Kind::Gateway
            | Kind::Sidecar
            | Kind::WorkloadEntry => NETWORKING_GROUP,
            Kind::PeerAuthentication | Kind::AuthorizationPolicy | Kind::RequestAuthentication => {
                SECURITY_GROUP
            }
            Kind::Workload => WEFT_GROUP,
        }
    }

    /// The versions accepted (they share one schema).
    pub fn versions(&self) -> &'static [&'static str] {
        match self.group() {
            NETWORKING_GROUP => NETWORKING_VERSIONS,
            SECURITY_GROUP => SECURITY_VERSIONS,
            _ => WEFT_VERSIONS,
        }
    }

    /// The newest `apiVersion` for this kind, e.g. `networking.istio.io/v1`.
    pub fn api_version(&self) -> String {
        let newest = self.versions().last().copied().unwrap_or("v1");
        format!("{}/{newest}", self.group())
    }

    /// Whether `api_version` (`group/version`) is accepted for this kind.
    pub fn accepts(&self, api_version: &str) -> bool {
        api_version
            .split_once('/')
            .is_some_and(|(g, v)| g == self.group() && self.versions().contains(&v))
    }

    /// The kind named `name` (exact spelling).
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Kind::from_name(s).ok_or_else(|| format!("unknown kind {s:?}"))
    }
}

/// Identifies a resource: kind, namespace and name. Ordered by kind, then namespace,
/// then name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    /// The kind.
    pub kind: Kind,
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// The typed body of a resource, one variant per [`Kind`].
// Resources are few and long-lived; boxing the large variants would only make matching
// on them clumsier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    /// A VirtualService.
    VirtualService(VirtualService),
    /// A DestinationRule.
    DestinationRule(DestinationRule),
    /// A ServiceEntry.
    ServiceEntry(ServiceEntry),
    /// A Gateway.
    Gateway(Gateway),
    /// A Sidecar.
    Sidecar(Sidecar),
    /// A WorkloadEntry.
    WorkloadEntry(WorkloadEntry),
    /// A PeerAuthentication.
    PeerAuthentication(PeerAuthentication),
    /// An AuthorizationPolicy.
    AuthorizationPolicy(AuthorizationPolicy),
    /// A RequestAuthentication.
    RequestAuthentication(RequestAuthentication),
    /// A Weft Workload.
    Workload(Workload),
}

impl Spec {
    /// The kind of this spec.
    pub fn kind(&self) -> Kind {
        match self {
            Spec::VirtualService(_) => Kind::VirtualService,
            Spec::DestinationRule(_) => Kind::DestinationRule,
            Spec::ServiceEntry(_) => Kind::ServiceEntry,
            Spec::Gateway(_) => Kind::Gateway,
            Spec::Sidecar(_) => Kind::Sidecar,
            Spec::WorkloadEntry(_) => Kind::WorkloadEntry,
            Spec::PeerAuthentication(_) => Kind::PeerAuthentication,
            Spec::AuthorizationPolicy(_) => Kind::AuthorizationPolicy,
            Spec::RequestAuthentication(_) => Kind::RequestAuthentication,
            Spec::Workload(_) => Kind::Workload,
        }
    }

    /// Reads the spec of `kind` from its node.
    pub(crate) fn read(kind: Kind, node: &Node) -> Result<Spec, crate::de::DeError> {
        use crate::de::from_node;
        Ok(match kind {
            Kind::VirtualService => Spec::VirtualService(from_node(node, "spec")?),
            Kind::DestinationRule => Spec::DestinationRule(from_node(node, "spec")?),
            Kind::ServiceEntry => Spec::ServiceEntry(from_node(node, "spec")?),
            Kind::Gateway => Spec::Gateway(from_node(node, "spec")?),
            Kind::Sidecar => Spec::Sidecar(from_node(node, "spec")?),
            Kind::WorkloadEntry => Spec::WorkloadEntry(from_node(node, "spec")?),
            Kind::PeerAuthentication => Spec::PeerAuthentication(from_node(node, "spec")?),
            Kind::AuthorizationPolicy => Spec::AuthorizationPolicy(from_node(node, "spec")?),
            Kind::RequestAuthentication => Spec::RequestAuthentication(from_node(node, "spec")?),
            Kind::Workload => Spec::Workload(from_node(node, "spec")?),
        })
    }
}

impl Validate for Spec {
    fn validate(&self, v: &mut Validator<'_>) {
        match self {
            Spec::VirtualService(s) => s.validate(v),
            Spec::DestinationRule(s) => s.validate(v),
            Spec::ServiceEntry(s) => s.validate(v),
            Spec::Gateway(s) => s.validate(v),
            Spec::Sidecar(s) => s.validate(v),
            Spec::WorkloadEntry(s) => s.validate(v),
            Spec::PeerAuthentication(s) => s.validate(v),
            Spec::AuthorizationPolicy(s) => s.validate(v),
            Spec::RequestAuthentication(s) => s.validate(v),
            Spec::Workload(s) => s.validate(v),
        }
    }
}

impl Serialize for Spec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Spec::VirtualService(s) => s.serialize(serializer),
            Spec::DestinationRule(s) => s.serialize(serializer),
            Spec::ServiceEntry(s) => s.serialize(serializer),
            Spec::Gateway(s) => s.serialize(serializer),
            Spec::Sidecar(s) => s.serialize(serializer),
            Spec::WorkloadEntry(s) => s.serialize(serializer),
            Spec::PeerAuthentication(s) => s.serialize(serializer),
            Spec::AuthorizationPolicy(s) => s.serialize(serializer),
            Spec::RequestAuthentication(s) => s.serialize(serializer),
            Spec::Workload(s) => s.serialize(serializer),
        }
    }
}

/// One validated resource as the user applied it.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// The `apiVersion` as written (e.g. `networking.istio.io/v1alpha3`).
    pub api_version: String,
    /// Name, namespace (defaulted), labels and annotations.
    pub metadata: ObjectMeta,
    /// The typed spec; its variant is the kind.
    pub spec: Spec,
}

impl Resource {
    /// The kind.
    pub fn kind(&self) -> Kind {
        self.spec.kind()
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.metadata.namespace
    }

    /// The stable key: kind, namespace, name.
    pub fn key(&self) -> ResourceKey {
        ResourceKey {
            kind: self.kind(),
            namespace: self.metadata.namespace.clone(),
            name: self.metadata.name.clone(),
        }
    }

    /// Reads one resource from its stored JSON (as [`Serialize`] wrote it), validating it
    /// again; `source` names it in errors.
    pub fn from_json(source: &str, json: &str) -> Result<Resource, crate::Errors> {
        let node: Node = serde_json::from_str(json).map_err(|e| {
            crate::Errors(vec![crate::Diagnostic {
                severity: crate::Severity::Error,
                source: source.to_string(),
                document: 1,
                line: e.line(),
                column: e.column(),
                path: String::new(),
                message: format!("invalid JSON: {e}"),
            }])
        })?;
        crate::parse::parse_node(source, node)
    }
}

impl Serialize for Resource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Resource", 4)?;
        s.serialize_field("apiVersion", &self.api_version)?;
        s.serialize_field("kind", self.kind().as_str())?;
        s.serialize_field("metadata", &self.metadata)?;
        s.serialize_field("spec", &self.spec)?;
        s.end()
    }
}

/// Reads and validates a resource from any serde format (the control plane's store).
impl<'de> Deserialize<'de> for Resource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let node = Node::deserialize(deserializer)?;
        crate::parse::parse_node("stored resource", node).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_know_their_groups_and_versions() {
        assert!(Kind::VirtualService.accepts("networking.istio.io/v1alpha3"));
        assert!(Kind::VirtualService.accepts("networking.istio.io/v1beta1"));
        assert!(Kind::VirtualService.accepts("networking.istio.io/v1"));
        assert!(!Kind::VirtualService.accepts("security.istio.io/v1"));
        assert!(Kind::AuthorizationPolicy.accepts("security.istio.io/v1beta1"));
        assert!(!Kind::AuthorizationPolicy.accepts("security.istio.io/v1alpha1"));
        assert_eq!(Kind::Workload.api_version(), "weft.dev/v1");
        assert_eq!("Gateway".parse::<Kind>(), Ok(Kind::Gateway));
    }

    #[test]
    fn keys_order_and_print() {
        let a = ResourceKey {
            kind: Kind::VirtualService,
            namespace: "default".into(),
            name: "b".into(),
        };
        let b = ResourceKey {
            kind: Kind::DestinationRule,
            namespace: "default".into(),
            name: "a".into(),
        };
        assert!(a < b);
        assert_eq!(a.to_string(), "VirtualService/default/b");
    }
}
