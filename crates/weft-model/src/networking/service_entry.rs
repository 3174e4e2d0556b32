//! ServiceEntry: services the mesh does not discover itself (external APIs,
//! databases, VMs), with their hosts, ports, resolution and endpoints.

use crate::networking::common::{check_port_name, Port, WorkloadSelector};
use crate::networking::workload_entry::WorkloadEntry;
use crate::rules;
use crate::validate::{Validate, Validator};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// `networking.istio.io` ServiceEntry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceEntry {
    /// Host names (wildcards allowed, `*` alone not).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Virtual IPs or CIDRs of the service.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// The service's ports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    /// Inside or outside the mesh.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// How endpoints are found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    /// Endpoints, when listed here.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<WorkloadEntry>,
    /// Endpoints by WorkloadEntry labels, instead of `endpoints`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
    /// Namespaces that see this (`.`, `*`, `~` or names).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    /// Accepted server identities.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
}

/// Where a ServiceEntry's service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Location {
    /// Outside the mesh (no mTLS).
    MeshExternal,
    /// Part of the mesh.
    MeshInternal,
}

/// How a ServiceEntry's endpoints are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Resolution {
    /// Forward to the address the caller asked for.
    None,
    /// The listed endpoint IPs.
    Static,
    /// Resolve hosts (or endpoint names) with DNS, all addresses.
    Dns,
    /// Resolve with DNS, first address only.
    DnsRoundRobin,
}

impl Validate for ServiceEntry {
    fn validate(&self, v: &mut Validator<'_>) {
        if let Some(sel) = &self.workload_selector {
            v.at("workloadSelector", |v| {
                for (key, value) in &sel.labels {
                    if key.is_empty() || key.contains('*') || value.contains('*') {
                        v.error_at("labels", format!("invalid selector label {key}={value}: no empty keys or wildcards"));
                    }
                }
                if sel.labels.is_empty() {
                    v.warn("workload selector without labels: it selects every workload in the namespace");
                }
            });
            if !self.endpoints.is_empty() {
                v.error_at(
                    "workloadSelector",
                    "only one of workloadSelector and endpoints may be set",
                );
            }
        }
        if self.hosts.is_empty() {
            v.error_at("hosts", "a service entry must have at least one host");
        }
        v.each("hosts", &self.hosts, |v, host| {
            if host == "*" {
                v.error("host \"*\" is not allowed in a service entry");
            } else {
                v.check(rules::check_wildcard_domain(host));
                if host.contains('*') && !host.starts_with("*.") {
                    v.warn(format!("partial wildcard {host:?} is not supported"));
                }
            }
        });
        let resolution = self.resolution.unwrap_or(Resolution::None);
        let mut cidr = false;
        v.each("addresses", &self.addresses, |v, a| {
            cidr |= a.contains('/');
            v.check(rules::check_ip_or_cidr(a));
        });
        if cidr && !matches!(resolution, Resolution::None | Resolution::Static) {
            v.error_at(
                "addresses",
                "CIDR addresses are allowed only with resolution NONE or STATIC",
            );
        }

        let mut names = HashSet::new();
        let mut numbers = HashSet::new();
        v.each("ports", &self.ports, |v, port| {
            if !names.insert(port.name.as_str()) {
                v.error_at(
                    "name",
                    format!("port name {:?} is already defined", port.name),
                );
            }
            if !numbers.insert(port.number) {
                v.error_at("number", format!("port {} is already defined", port.number));
            }
            if let Some(target) = port.target_port {
                v.check_at("targetPort", rules::check_port(target));
                if resolution == Resolution::None {
                    v.warn_at(
                        "targetPort",
                        "targetPort has no effect when resolution is NONE",
                    );
                }
            }
            v.check_at("name", check_port_name(&port.name));
            v.check_at("protocol", rules::check_protocol(&port.protocol));
            v.check_at("number", rules::check_port(port.number));
        });
        let port_names: Vec<String> = self.ports.iter().map(|p| p.name.clone()).collect();

        match resolution {
            Resolution::None => {
                if !self.endpoints.is_empty() {
                    v.error_at(
                        "endpoints",
                        "no endpoints may be given with resolution NONE",
                    );
                }
                if self.workload_selector.is_some() {
                    v.warn_at(
                        "workloadSelector",
                        "workloadSelector has no effect with resolution NONE",
                    );
                }
            }
            Resolution::Static => {
                v.each("endpoints", &self.endpoints, |v, e| {
                    e.check(v, false, Some(&port_names))
                });
            }
            Resolution::Dns | Resolution::DnsRoundRobin => {
                if self.endpoints.is_empty() {
                    for (i, host) in self.hosts.iter().enumerate() {
                        if rules::check_fqdn(host).is_err() {
                            v.at("hosts", |v| {
                                v.index(i, |v| {
                                    v.error("hosts must be fully qualified names when DNS resolution has no endpoints")
                                })
                            });
                        }
                    }
                }
                if resolution == Resolution::DnsRoundRobin && self.endpoints.len() > 1 {
                    v.error_at("endpoints", "DNS_ROUND_ROBIN takes at most one endpoint");
                }
                v.each("endpoints", &self.endpoints, |v, e| {
                    e.check(v, true, Some(&port_names))
                });
                if self.workload_selector.is_some() {
                    v.warn_at(
                        "workloadSelector",
                        "workloadSelector has no effect with DNS resolution",
                    );
                }
            }
        }

        if resolution != Resolution::None && self.hosts.len() > 1 {
            let opaque = self.ports.iter().any(|p| {
                !rules::is_http_protocol(&p.protocol) && !rules::is_tls_protocol(&p.protocol)
            });
            if opaque {
                v.error_at(
                    "ports",
                    "several hosts need HTTP or TLS ports (plain TCP cannot tell the hosts apart) unless resolution is NONE",
                );
            }
        }
        rules::check_export_to(v, &self.export_to, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{Kind, Spec};
    use crate::testing::{err, ok, warn};

    const K: Kind = Kind::ServiceEntry;

    fn se(spec: &str) -> ServiceEntry {
        match ok(K, spec).spec {
            Spec::ServiceEntry(se) => se,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn external_api_with_dns() {
        let s = se(r#"
hosts: [api.example.com]
location: MESH_EXTERNAL
ports:
- {number: 443, name: https, protocol: TLS}
resolution: DNS
exportTo: ["~"]
"#);
        assert_eq!(s.resolution, Some(Resolution::Dns));
        assert_eq!(s.location, Some(Location::MeshExternal));
        assert_eq!(s.export_to, ["~"]);
    }

    #[test]
    fn static_endpoints_and_addresses() {
        let s = se(r#"
hosts: [mongo.internal]
addresses: [1.2.3.4, 001:db8::]
ports: [{number: 27017, name: mongo, protocol: MONGO, targetPort: 27018}]
resolution: STATIC
endpoints:
- address: 10.0.0.1
  ports: {mongo: 27018}
  labels: {version: v1}
  weight: 2
"#);
        assert_eq!(s.addresses, ["1.2.3.4", "001:db8::"]);
        assert_eq!(s.endpoints[0].ports["mongo"], 27018);
        err(
            K,
            "hosts: [m.internal]\nports: [{number: 1, name: tcp, protocol: TCP}]\nresolution: STATIC\nendpoints: [{address: db.internal}]\n",
            ".endpoints[0].address",
        );
        err(
            K,
            "hosts: [m.internal]\nports: [{number: 1, name: tcp, protocol: TCP}]\nresolution: STATIC\nendpoints: [{address: 10.0.0.1, ports: {other: 5}}]\n",
            ".endpoints[0].ports.other",
        );
    }

    #[test]
    fn rules() {
        err(
            K,
            "ports: [{number: 80, name: http, protocol: HTTP}]\n",
            ".hosts",
        );
        err(K, "hosts: [\"*\"]\n", ".hosts[0]");
        err(
            K,
            "hosts: [a.com]\nports: [{number: 80, name: http, protocol: HTPP}]\n",
            ".ports[0].protocol",
        );
        err(
            K,
            "hosts: [a.com]\nports: [{number: 80, name: http, protocol: HTTP}, {number: 80, name: web, protocol: HTTP}]\n",
            ".ports[1].number",
        );
        err(
            K,
            "hosts: [a.com]\nports: [{number: 80, protocol: HTTP}]\n",
            ".ports[0].name",
        );
        err(
            K,
            "hosts: [a.com]\naddresses: [10.0.0.0/8]\nresolution: DNS\n",
            ".addresses",
        );
        err(
            K,
            "hosts: [a.com]\nresolution: NONE\nendpoints: [{address: 1.1.1.1}]\n",
            ".endpoints",
        );
        err(K, "hosts: [\"*.a.com\"]\nresolution: DNS\n", ".hosts[0]");
        err(
            K,
            "hosts: [a.com, b.com]\nports: [{number: 5432, name: pg, protocol: TCP}]\nresolution: DNS\n",
            ".ports",
        );
        err(K, "hosts: [a.com]\nexportTo: [\"~\", other]\n", ".exportTo");
        warn(
            K,
            "hosts: [a.com]\nworkloadSelector: {labels: {}}\nresolution: STATIC\n",
            ".workloadSelector",
        );
        err(
            K,
            "hosts: [a.com]\nworkloadSelector: {labels: {app: a}}\nendpoints: [{address: 1.1.1.1}]\nresolution: STATIC\n",
            ".workloadSelector",
        );
    }
}
