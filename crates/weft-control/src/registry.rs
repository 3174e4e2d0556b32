//! The registry of workload instances: sidecars register themselves (from their node
//! metadata when they connect), hosts without a sidecar are registered by resources.
//! An instance takes traffic only once its health check passes.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Node metadata keys a Weft sidecar sends.
pub mod meta {
    /// Service name.
    pub const SERVICE: &str = "WEFT_SERVICE";
    /// Namespace.
    pub const NAMESPACE: &str = "WEFT_NAMESPACE";
    /// Labels (a struct of strings).
    pub const LABELS: &str = "WEFT_LABELS";
    /// Role: `sidecar` (default), `gateway` or `proxyless`.
    pub const ROLE: &str = "WEFT_ROLE";
    /// Address peers reach the inbound listeners on.
    pub const INBOUND_ADDRESS: &str = "WEFT_INBOUND_ADDRESS";
    /// Inbound ports: a list of `{name, service_port, inbound_port, app_port, protocol}`.
    pub const PORTS: &str = "WEFT_PORTS";
    /// Port of the outbound (HTTP proxy) listener.
    pub const OUTBOUND_PORT: &str = "WEFT_OUTBOUND_PORT";
    /// Gateway ports: a list of `{port, bind}` (Gateway server port, local port bound),
    /// or plain numbers when they are the same.
    pub const GATEWAY_PORTS: &str = "WEFT_GATEWAY_PORTS";
}

/// One port of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstancePort {
    /// Port name (`http`, `grpc`, ...).
    pub name: String,
    /// The port callers use (`reviews:9080`).
    pub service_port: u16,
    /// Where peers connect: the sidecar's inbound listener, or the host's own port.
    pub endpoint_port: u16,
    /// Where the application listens behind the sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_port: Option<u16>,
    /// `http`, `http2`, `grpc` or `tcp`.
    pub protocol: String,
}

/// One running instance of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// Unique id: the node id of its sidecar, or `namespace/resource` for registered hosts.
    pub id: String,
    /// Service name.
    pub service: String,
    /// Namespace.
    pub namespace: String,
    /// Labels (`version: v1`), which subsets select on.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Address peers connect to.
    pub address: String,
    /// Ports.
    pub ports: Vec<InstancePort>,
    /// Whether its health check passes (instances start unhealthy).
    pub healthy: bool,
    /// Whether a Weft sidecar fronts it (mTLS, telemetry).
    pub sidecar: bool,
    /// Load-balancing weight.
    #[serde(default = "one")]
    pub weight: u32,
    /// Who keeps the registration: `{replica}#{stream}` of the control-plane replica
    /// holding the sidecar's xDS stream.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owner: String,
}

fn one() -> u32 {
    1
}

impl Instance {
    /// The store key of this instance.
    pub fn key(&self) -> String {
        instance_key(&self.namespace, &self.service, &self.id)
    }
}

/// Where instances live in the store.
pub const PREFIX: &str = "/weft/registry/";

/// Where live control-plane replicas announce themselves (keys bound to their lease).
pub const REPLICAS: &str = "/weft/replicas/";

impl Instance {
    /// The replica that keeps this registration, if any.
    pub fn owner_replica(&self) -> Option<&str> {
        self.owner.split_once('#').map(|(replica, _)| replica)
    }
}

/// The store key of an instance.
pub fn instance_key(namespace: &str, service: &str, id: &str) -> String {
    format!("{PREFIX}{namespace}/{service}/{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_json() {
        let i = Instance {
            id: "reviews-1".into(),
            service: "reviews".into(),
            namespace: "default".into(),
            labels: [("version".to_string(), "v1".to_string())].into(),
            address: "127.0.0.1".into(),
            ports: vec![InstancePort {
                name: "http".into(),
                service_port: 9080,
                endpoint_port: 15006,
                app_port: Some(9081),
                protocol: "http".into(),
            }],
            healthy: false,
            sidecar: true,
            weight: 1,
            owner: "replica-a#7".into(),
        };
        let json = serde_json::to_string(&i).expect("json");
        assert_eq!(serde_json::from_str::<Instance>(&json).expect("parse"), i);
        assert_eq!(i.key(), "/weft/registry/default/reviews/reviews-1");
    }
}
