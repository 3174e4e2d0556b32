//! `weft.dev/v1` Workload: one instance of a service on a host that runs no sidecar,
//! registered so the mesh can route to it (the universal-mode counterpart of a
//! Kubernetes endpoint). See the crate documentation for an example.

use crate::duration::Duration;
use crate::networking::common::check_port_name;
use crate::rules;
use crate::validate::{Validate, Validator};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// A registered instance of a service.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Workload {
    /// The service this instance belongs to (a DNS-1123 label, e.g. `reviews`).
    pub service: String,
    /// Where it is reached: an IP address or a host name.
    pub address: String,
    /// Its ports. Written either as a map of name to number (`{http: 9080}`) or as a
    /// list of `{name, number, protocol}`; always printed as the list.
    #[serde(
        deserialize_with = "ports_map_or_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ports: Vec<WorkloadPort>,
    /// Labels (`version: v1`), used by subsets and selectors.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Load balancing weight relative to the service's other instances (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// How the control plane checks that the instance is up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
}

/// One port of a workload.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadPort {
    /// The port's name (a DNS-1123 label, e.g. `http`).
    pub name: String,
    /// The port number.
    pub number: u32,
    /// Its protocol (`HTTP`, `HTTP2`, `GRPC`, `TCP`, ...); sniffed when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// An active health check: exactly one of `http` and `tcp`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheck {
    /// Healthy when `GET path` on `port` answers 2xx.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpHealthCheck>,
    /// Healthy when a TCP connection to `port` succeeds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpHealthCheck>,
    /// Time between checks (default 10s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Time a check may take (default 1s); at most `interval`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Passing checks before an unhealthy instance is healthy again (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy_threshold: Option<u32>,
    /// Failing checks before a healthy instance is unhealthy (default 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<u32>,
}

/// An HTTP health check.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpHealthCheck {
    /// The path to GET (starts with `/`).
    pub path: String,
    /// The port to check.
    pub port: u32,
}

/// A TCP connect health check.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpHealthCheck {
    /// The port to check.
    pub port: u32,
}

/// Reads `ports` as a map of name to number or as a list of ports.
fn ports_map_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<WorkloadPort>, D::Error> {
    struct PortsVisitor;
    impl<'de> Visitor<'de> for PortsVisitor {
        type Value = Vec<WorkloadPort>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of port names to numbers or a list of {name, number, protocol}")
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut ports = Vec::new();
            while let Some(name) = map.next_key::<String>()? {
                let number = map.next_value::<u32>()?;
                ports.push(WorkloadPort {
                    name,
                    number,
                    protocol: None,
                });
            }
            Ok(ports)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut ports = Vec::new();
            while let Some(port) = seq.next_element::<WorkloadPort>()? {
                ports.push(port);
            }
            Ok(ports)
        }
    }
    d.deserialize_any(PortsVisitor)
}

impl Validate for Workload {
    fn validate(&self, v: &mut Validator<'_>) {
        if self.service.is_empty() {
            v.required("service");
        } else if !rules::is_dns1123_label(&self.service) {
            v.error_at(
                "service",
                format!("invalid service name {:?}: use a DNS-1123 label (lower-case letters, digits and '-')", self.service),
            );
        }
        if self.address.is_empty() {
            v.required("address");
        } else if !rules::is_ip(&self.address) && rules::check_fqdn(&self.address).is_err() {
            v.error_at(
                "address",
                format!("{:?} is not an IP address or a host name", self.address),
            );
        }
        if self.ports.is_empty() {
            v.error_at("ports", "a workload needs at least one port");
        }
        let mut names = HashSet::new();
        let mut numbers = HashSet::new();
        v.each("ports", &self.ports, |v, p| {
            if p.name.is_empty() {
                v.required("name");
            } else {
                v.check_at("name", check_port_name(&p.name));
                if !names.insert(p.name.as_str()) {
                    v.error_at("name", format!("duplicate port name {:?}", p.name));
                }
            }
            v.check_at("number", rules::check_port(p.number));
            if !numbers.insert(p.number) {
                v.error_at("number", format!("duplicate port {}", p.number));
            }
            if let Some(proto) = &p.protocol {
                v.check_at("protocol", rules::check_protocol(proto));
            }
        });
        v.at("labels", |v| rules::check_labels(v, &self.labels));
        if self.weight == Some(0) {
            v.error_at(
                "weight",
                "weight must be at least 1 (remove the workload to stop sending it traffic)",
            );
        }
        v.field("healthCheck", &self.health_check);
    }
}

impl Validate for HealthCheck {
    fn validate(&self, v: &mut Validator<'_>) {
        match (&self.http, &self.tcp) {
            (None, None) => v.error("a health check needs http or tcp"),
            (Some(_), Some(_)) => v.error("only one of http and tcp may be set"),
            _ => {}
        }
        if let Some(http) = &self.http {
            v.at("http", |v| {
                if !http.path.starts_with('/') {
                    v.error_at("path", format!("path {:?} must start with '/'", http.path));
                }
                v.check_at("port", rules::check_port(http.port));
            });
        }
        if let Some(tcp) = &self.tcp {
            v.at("tcp", |v| v.check_at("port", rules::check_port(tcp.port)));
        }
        if let (Some(interval), Some(timeout)) = (self.interval, self.timeout) {
            if timeout > interval {
                v.error_at(
                    "timeout",
                    format!("timeout {timeout} must not exceed interval {interval}"),
                );
            }
        }
        for (key, n) in [
            ("healthyThreshold", self.healthy_threshold),
            ("unhealthyThreshold", self.unhealthy_threshold),
        ] {
            if n == Some(0) {
                v.error_at(key, format!("{key} must be at least 1"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{Kind, Spec};
    use crate::testing::{err, ok};

    const K: Kind = Kind::Workload;

    fn workload(spec: &str) -> Workload {
        match ok(K, spec).spec {
            Spec::Workload(w) => w,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ports_as_map_or_list() {
        let w = workload("service: reviews\naddress: 10.0.3.7\nports: {http: 9080, grpc: \"9090\"}\nlabels: {version: v1}\nweight: 2\n");
        let ports: Vec<(&str, u32)> = w
            .ports
            .iter()
            .map(|p| (p.name.as_str(), p.number))
            .collect();
        // The order written is kept.
        assert_eq!(ports, [("http", 9080), ("grpc", 9090)]);
        let w = workload("service: reviews\naddress: reviews-1.vms.example.com\nports:\n- {name: http, number: 9080, protocol: HTTP}\n");
        assert_eq!(w.ports[0].protocol.as_deref(), Some("HTTP"));
        assert_eq!(
            serde_json::to_value(&w.ports).expect("json"),
            serde_json::json!([{"name": "http", "number": 9080, "protocol": "HTTP"}])
        );
    }

    #[test]
    fn health_checks() {
        let w = workload("service: r\naddress: 10.0.0.1\nports: {http: 80}\nhealthCheck:\n  http: {path: /health, port: 80}\n  interval: 10s\n  timeout: 1s\n");
        let hc = w.health_check.expect("health check");
        assert_eq!(hc.http.map(|h| h.path), Some("/health".to_string()));
        workload(
            "service: r\naddress: 10.0.0.1\nports: {tcp: 5432}\nhealthCheck: {tcp: {port: 5432}}\n",
        );
        err(
            K,
            "service: r\naddress: 10.0.0.1\nports: {http: 80}\nhealthCheck: {interval: 5s}\n",
            ".healthCheck",
        );
        err(K, "service: r\naddress: 10.0.0.1\nports: {http: 80}\nhealthCheck: {tcp: {port: 1}, http: {path: /, port: 1}}\n", ".healthCheck");
        err(K, "service: r\naddress: 10.0.0.1\nports: {http: 80}\nhealthCheck: {http: {path: health, port: 80}}\n", ".healthCheck.http.path");
        err(K, "service: r\naddress: 10.0.0.1\nports: {http: 80}\nhealthCheck: {tcp: {port: 80}, interval: 1s, timeout: 2s}\n", ".healthCheck.timeout");
        err(K, "service: r\naddress: 10.0.0.1\nports: {http: 80}\nhealthCheck: {tcp: {port: 80}, unhealthyThreshold: 0}\n", ".healthCheck.unhealthyThreshold");
    }

    #[test]
    fn rules() {
        err(K, "address: 10.0.0.1\nports: {http: 80}\n", ".service");
        err(
            K,
            "service: Reviews\naddress: 10.0.0.1\nports: {http: 80}\n",
            ".service",
        );
        err(K, "service: r\nports: {http: 80}\n", ".address");
        err(
            K,
            "service: r\naddress: \"bad address\"\nports: {http: 80}\n",
            ".address",
        );
        err(K, "service: r\naddress: 10.0.0.1\n", ".ports");
        err(
            K,
            "service: r\naddress: 10.0.0.1\nports: {http: 0}\n",
            ".ports[0].number",
        );
        err(
            K,
            "service: r\naddress: 10.0.0.1\nports: [{number: 80}]\n",
            ".ports[0].name",
        );
        err(K, "service: r\naddress: 10.0.0.1\nports: [{name: a, number: 80}, {name: b, number: 80}]\n", ".ports[1].number");
        err(
            K,
            "service: r\naddress: 10.0.0.1\nports: [{name: a, number: 80, protocol: SMTP}]\n",
            ".ports[0].protocol",
        );
        err(
            K,
            "service: r\naddress: 10.0.0.1\nports: {http: abc}\n",
            ".ports.http",
        );
        err(K, "service: r\naddress: 10.0.0.1\nports: 80\n", ".ports");
        err(
            K,
            "service: r\naddress: 10.0.0.1\nports: {http: 80}\nweight: 0\n",
            ".weight",
        );
        err(
            K,
            "service: r\naddress: 10.0.0.1\nports: {http: 80}\nversion: v1\n",
            ".version",
        );
    }
}
