//! The services of the mesh: what the registry knows (sidecars, `Workload` resources)
//! and what ServiceEntries declare, with their ports, instances and host names, and how
//! a host as people write it (`reviews`, `reviews.default`, an FQDN) resolves to one.

use crate::registry::{Instance, InstancePort};
use std::collections::BTreeMap;
use std::sync::Arc;
use weft_model::networking::service_entry::{Resolution, ServiceEntry};
use weft_model::networking::WorkloadEntry;
use weft_model::weft::workload::Workload;
use weft_model::{Resource, Spec};

/// The cluster-local DNS suffix, as Istio on Kubernetes spells it.
pub const DOMAIN_SUFFIX: &str = "svc.cluster.local";

/// A port of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// Name.
    pub name: String,
    /// Number callers use.
    pub number: u16,
    /// `http`, `http2`, `grpc` or `tcp`.
    pub protocol: String,
}

impl ServicePort {
    /// Whether the port carries HTTP (of any version).
    pub fn is_http(&self) -> bool {
        is_http_protocol(&self.protocol)
    }

    /// Whether upstream connections should speak HTTP/2.
    pub fn is_http2(&self) -> bool {
        is_http2_protocol(&self.protocol)
    }
}

/// Whether a (lower-case) protocol is HTTP of some version; everything else (`tcp`,
/// `tls`, `https`, `mongo`, ...) is forwarded as opaque bytes.
pub fn is_http_protocol(protocol: &str) -> bool {
    matches!(protocol, "http" | "http2" | "grpc" | "grpc-web" | "h2c")
}

/// Whether a (lower-case) protocol needs HTTP/2 connections.
pub fn is_http2_protocol(protocol: &str) -> bool {
    matches!(protocol, "http2" | "grpc" | "grpc-web" | "h2c")
}

/// How a service's endpoints are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Discovery {
    /// The instances' addresses, sent over EDS.
    #[default]
    Endpoints,
    /// The instances' addresses are names the proxy resolves, all addresses used
    /// (ServiceEntry `DNS`, or an instance registered by host name).
    Dns,
    /// One name the proxy resolves, the first address used (`DNS_ROUND_ROBIN`).
    DnsRoundRobin,
}

/// A service.
#[derive(Debug, Clone)]
pub struct Service {
    /// Namespace.
    pub namespace: String,
    /// Short name (for ServiceEntries: the host).
    pub name: String,
    /// Fully qualified host name.
    pub hostname: String,
    /// Ports by number.
    pub ports: BTreeMap<u16, ServicePort>,
    /// Instances.
    pub instances: Vec<Arc<Instance>>,
    /// Declared by a ServiceEntry (an external or registered host).
    pub entry: bool,
    /// How its endpoints are found.
    pub discovery: Discovery,
}

impl Service {
    /// Host names callers in `client_namespace` may use, most specific first; short
    /// names only within the service's own namespace.
    pub fn aliases(&self, client_namespace: &str) -> Vec<String> {
        if self.entry {
            return vec![self.hostname.clone()];
        }
        let mut names = vec![
            self.hostname.clone(),
            format!("{}.{}.svc", self.name, self.namespace),
            format!("{}.{}", self.name, self.namespace),
        ];
        if client_namespace == self.namespace {
            names.push(self.name.clone());
        }
        names
    }

    /// The port to use when a destination names none: the only one, or the lowest.
    pub fn default_port(&self) -> Option<u16> {
        self.ports.keys().next().copied()
    }
}

/// Every service, by host name.
#[derive(Debug, Default, Clone)]
pub struct Services {
    /// By fully qualified host name.
    pub by_host: BTreeMap<String, Arc<Service>>,
}

/// The fully qualified name of `name` in `namespace`.
pub fn fqdn(name: &str, namespace: &str) -> String {
    format!("{name}.{namespace}.{DOMAIN_SUFFIX}")
}

impl Services {
    /// Builds the index from registered instances and resources (Workloads with a
    /// health check count as unhealthy: nothing has probed them).
    pub fn build(instances: &[Arc<Instance>], resources: &[Resource]) -> Services {
        Services::build_probed(instances, resources, &Probed::new())
    }

    /// Builds the index, with the control plane's probe results for Workloads that
    /// have a health check.
    pub fn build_probed(
        instances: &[Arc<Instance>],
        resources: &[Resource],
        probed: &Probed,
    ) -> Services {
        let mut by_host: BTreeMap<String, Service> = BTreeMap::new();
        let mut all: Vec<Arc<Instance>> = instances.to_vec();
        for r in resources {
            if let Spec::Workload(w) = &r.spec {
                all.push(Arc::new(workload_instance(r, w, probed)));
            }
        }
        for i in all {
            let host = fqdn(&i.service, &i.namespace);
            let svc = by_host.entry(host.clone()).or_insert_with(|| Service {
                namespace: i.namespace.clone(),
                name: i.service.clone(),
                hostname: host,
                ports: BTreeMap::new(),
                instances: Vec::new(),
                entry: false,
                discovery: Discovery::Endpoints,
            });
            for p in &i.ports {
                svc.ports
                    .entry(p.service_port)
                    .or_insert_with(|| ServicePort {
                        name: p.name.clone(),
                        number: p.service_port,
                        protocol: p.protocol.to_ascii_lowercase(),
                    });
            }
            svc.instances.push(i);
        }
        // Instances registered by host name are resolved by the proxy.
        for svc in by_host.values_mut() {
            if svc
                .instances
                .iter()
                .any(|i| i.address.parse::<std::net::IpAddr>().is_err())
            {
                svc.discovery = Discovery::Dns;
            }
        }
        for r in resources {
            if let Spec::ServiceEntry(se) = &r.spec {
                add_service_entry(&mut by_host, r, se);
            }
        }
        Services {
            by_host: by_host.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
        }
    }

    /// Resolves a host as written in a resource of `namespace`: an FQDN or ServiceEntry
    /// host as is, `name.ns` and `name.ns.svc` to their FQDN, a short name within
    /// `namespace`.
    pub fn resolve(&self, host: &str, namespace: &str) -> Option<&Arc<Service>> {
        if let Some(s) = self.by_host.get(host) {
            return Some(s);
        }
        let parts: Vec<&str> = host.split('.').collect();
        let candidate = match parts.as_slice() {
            [name] => fqdn(name, namespace),
            [name, ns] | [name, ns, "svc"] => fqdn(name, ns),
            _ => return None,
        };
        self.by_host.get(&candidate)
    }

    /// Services and ports a client in `namespace` sees, for its outbound routes.
    pub fn visible(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.by_host.values()
    }
}

/// Health of Workloads the control plane probes, by instance id
/// ([`workload_id`]).
pub type Probed = BTreeMap<String, bool>;

/// The instance id of a `weft.dev/v1` Workload.
pub fn workload_id(namespace: &str, name: &str) -> String {
    format!("workload/{namespace}/{name}")
}

/// A `weft.dev/v1` Workload as a registry instance (no sidecar).
fn workload_instance(r: &Resource, w: &Workload, probed: &Probed) -> Instance {
    let id = workload_id(r.namespace(), r.name());
    // Without a health check a registered host is trusted to be up; with one, it is
    // down until a probe passes.
    let healthy = w.health_check.is_none() || probed.get(&id).copied().unwrap_or(false);
    Instance {
        id,
        service: w.service.clone(),
        namespace: r.namespace().to_string(),
        labels: w.labels.clone(),
        address: w.address.clone(),
        ports: w
            .ports
            .iter()
            .map(|p| InstancePort {
                name: p.name.clone(),
                service_port: p.number as u16,
                endpoint_port: p.number as u16,
                app_port: None,
                protocol: p
                    .protocol
                    .clone()
                    .unwrap_or_else(|| protocol_of(&p.name))
                    .to_ascii_lowercase(),
            })
            .collect(),
        healthy,
        sidecar: false,
        weight: w.weight.unwrap_or(1),
        owner: String::new(),
    }
}

/// Istio's protocol selection by port name prefix (`http-web`, `grpc`, `tcp-db`).
pub fn protocol_of(port_name: &str) -> String {
    let prefix = port_name
        .split('-')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    match prefix.as_str() {
        "http" | "http2" | "grpc" | "grpc-web" | "tcp" | "tls" | "mongo" | "redis" | "mysql" => {
            prefix
        }
        "https" => "tls".into(),
        _ => "http".into(),
    }
}

fn add_service_entry(by_host: &mut BTreeMap<String, Service>, r: &Resource, se: &ServiceEntry) {
    // (port, where endpoints listen when their entry does not say).
    let ports: Vec<(ServicePort, u16)> = se
        .ports
        .iter()
        .map(|p| {
            let protocol = if p.protocol.is_empty() {
                protocol_of(&p.name)
            } else {
                p.protocol.to_ascii_lowercase()
            };
            let number = p.number as u16;
            let target = p.target_port.map_or(number, |t| t as u16);
            (
                ServicePort {
                    name: p.name.clone(),
                    number,
                    protocol,
                },
                target,
            )
        })
        .collect();
    let resolution = se.resolution.unwrap_or(Resolution::None);
    let discovery = match resolution {
        Resolution::Static => Discovery::Endpoints,
        Resolution::DnsRoundRobin => Discovery::DnsRoundRobin,
        // NONE forwards to the address the caller resolved; a caller that names the host
        // to Weft's HTTP proxy leaves the resolving to the proxy.
        Resolution::Dns | Resolution::None => Discovery::Dns,
    };
    for host in &se.hosts {
        if host.starts_with('*') {
            continue;
        }
        let instance = |n: usize, address: &str, ep: Option<&WorkloadEntry>| Instance {
            id: format!("serviceentry/{}/{}/{n}", r.namespace(), r.name()),
            service: host.clone(),
            namespace: r.namespace().to_string(),
            labels: ep.map(|e| e.labels.clone()).unwrap_or_default(),
            address: address.to_string(),
            ports: ports
                .iter()
                .map(|(p, target)| InstancePort {
                    name: p.name.clone(),
                    service_port: p.number,
                    endpoint_port: ep
                        .and_then(|e| e.ports.get(&p.name))
                        .map_or(*target, |n| *n as u16),
                    app_port: None,
                    protocol: p.protocol.clone(),
                })
                .collect(),
            healthy: true,
            sidecar: false,
            weight: ep.and_then(|e| e.weight).unwrap_or(1).max(1),
            owner: String::new(),
        };
        let mut instances: Vec<Arc<Instance>> = se
            .endpoints
            .iter()
            .enumerate()
            .map(|(n, ep)| Arc::new(instance(n, &ep.address, Some(ep))))
            .collect();
        // DNS without endpoints resolves the host itself.
        if instances.is_empty() && discovery != Discovery::Endpoints {
            instances.push(Arc::new(instance(0, host, None)));
        }
        by_host.insert(
            host.clone(),
            Service {
                namespace: r.namespace().to_string(),
                name: host.clone(),
                hostname: host.clone(),
                ports: ports.iter().map(|(p, _)| (p.number, p.clone())).collect(),
                instances,
                entry: true,
                discovery,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(service: &str, ns: &str, version: &str) -> Arc<Instance> {
        Arc::new(Instance {
            id: format!("{service}-{version}"),
            service: service.into(),
            namespace: ns.into(),
            labels: [("version".to_string(), version.to_string())].into(),
            address: "127.0.0.1".into(),
            ports: vec![InstancePort {
                name: "http".into(),
                service_port: 9080,
                endpoint_port: 15006,
                app_port: Some(9081),
                protocol: "http".into(),
            }],
            healthy: true,
            sidecar: true,
            weight: 1,
            owner: String::new(),
        })
    }

    #[test]
    fn resolves_short_and_qualified_names() {
        let s = Services::build(
            &[
                instance("reviews", "default", "v1"),
                instance("reviews", "default", "v2"),
                instance("ratings", "prod", "v1"),
            ],
            &[],
        );
        let r = s.resolve("reviews", "default").expect("short name");
        assert_eq!(r.hostname, "reviews.default.svc.cluster.local");
        assert_eq!(r.instances.len(), 2);
        assert!(
            s.resolve("reviews", "prod").is_none(),
            "short names are namespace-relative"
        );
        assert!(s.resolve("ratings.prod", "default").is_some());
        assert!(s.resolve("ratings.prod.svc", "default").is_some());
        assert!(s.resolve("ratings.prod.svc.cluster.local", "x").is_some());
        assert_eq!(
            r.aliases("default").last().map(String::as_str),
            Some("reviews")
        );
        assert!(!r.aliases("prod").contains(&"reviews".to_string()));
    }

    #[test]
    fn protocols_from_port_names() {
        assert_eq!(protocol_of("grpc-api"), "grpc");
        assert_eq!(protocol_of("http"), "http");
        assert_eq!(protocol_of("tcp-db"), "tcp");
        assert_eq!(protocol_of("web"), "http");
    }
}
