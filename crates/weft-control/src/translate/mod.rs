//! Translation of the mesh (resources and registry) into Envoy resources. A
//! [`Snapshot`] is built once per change and shared by every proxy: the clusters,
//! endpoint assignments and route configurations all proxies see alike; what differs
//! per proxy (its listeners and local clusters) is derived from its node metadata when
//! its stream asks.
//!
//! Everything emitted stays within what `weft-proxy` honours (its
//! `compile/support.rs`): the proxy refuses a whole update over one field it cannot
//! honour, so what the mesh asks for and the proxy cannot do is left out here, with a
//! warning in [`Diagnostics`].

pub mod authorization;
pub mod cluster;
pub mod envoy;
pub mod gateway;
pub mod listener;
pub mod mtls;
pub mod peer_authentication;
pub mod request_authentication;
pub mod request_principal;
pub mod route;
pub mod security_view;
pub mod services;

use crate::registry::{meta, Instance};
use gateway::{GatewayVirtualServices, Gateways};
use listener::{ProxyInfo, VirtualServices};
use peer_authentication::PeerAuthentications;
use route::RouteContext;
use services::Services;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use weft_model::networking::destination_rule::DestinationRule;
use weft_model::{Resource as ModelResource, Spec};
use weft_xds::pb::envoy::config::core::v3::Node;
use weft_xds::pb::google::protobuf::{value, Struct, Value};
use weft_xds::server::NameSet;
use weft_xds::{type_url, Resource};

/// A route configuration's VHDS virtual hosts, and a hash of their names and versions.
type VirtualHosts = (Arc<[Arc<Resource>]>, u64);

/// A hash of resources' names and versions.
fn generation<'a>(resources: impl Iterator<Item = &'a Arc<Resource>>) -> u64 {
    let mut h = xxhash_rust::xxh64::Xxh64::new(0);
    for r in resources {
        h.update(r.name.as_bytes());
        h.update(&[0]);
        h.update(r.version.as_bytes());
        h.update(&[0]);
    }
    h.digest()
}

/// What one proxy's xDS stream keeps from snapshot to snapshot: the resources made
/// from its own node (listeners, local clusters), built and encoded again only when
/// what they are made from changes, not for every proxy on every change of the mesh.
#[derive(Default)]
pub struct ProxyCache {
    /// Listeners, with the [`Snapshot`]'s `listener_inputs` they were built from and
    /// the warnings building them gave.
    listeners: Mutex<Option<CachedListeners>>,
    local_clusters: std::sync::OnceLock<Arc<[Arc<Resource>]>>,
}

type CachedListeners = (u64, Arc<[Arc<Resource>]>, Diagnostics);

impl ProxyCache {
    fn listeners(
        &self,
        inputs: u64,
        build: impl FnOnce() -> (Arc<[Arc<Resource>]>, Diagnostics),
    ) -> (Arc<[Arc<Resource>]>, Diagnostics) {
        let mut cached = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        match &*cached {
            Some((at, all, d)) if *at == inputs => (all.clone(), d.clone()),
            _ => {
                let (all, d) = build();
                *cached = Some((inputs, all.clone(), d.clone()));
                (all, d)
            }
        }
    }
}

/// Problems found while translating: the configuration still goes out, without the
/// parts named here.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics {
    /// What was left out, and why.
    pub warnings: Vec<String>,
}

impl Diagnostics {
    /// Records a warning (once).
    pub fn warn(&mut self, message: String) {
        if !self.warnings.contains(&message) {
            self.warnings.push(message);
        }
    }
}

/// What the translation takes from the control plane's own configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshSettings {
    /// The SPIFFE trust domain of workload identities.
    pub trust_domain: String,
    /// The namespace whose selector-less policies apply mesh-wide.
    pub root_namespace: String,
}

impl Default for MeshSettings {
    fn default() -> Self {
        MeshSettings {
            trust_domain: crate::identity::DEFAULT_TRUST_DOMAIN.to_string(),
            root_namespace: peer_authentication::DEFAULT_ROOT_NAMESPACE.to_string(),
        }
    }
}

/// The translated mesh at one version.
pub struct Snapshot {
    /// Version, increasing.
    pub version: u64,
    /// Services.
    pub services: Services,
    /// Outbound clusters, by name.
    pub clusters: BTreeMap<String, Arc<Resource>>,
    /// Endpoint assignments, by cluster name.
    pub endpoints: BTreeMap<String, Arc<Resource>>,
    /// The clusters above that originate mTLS, without it: what proxyless gRPC clients
    /// get, as they hold no workload certificate.
    plaintext_clusters: BTreeMap<String, Arc<Resource>>,
    /// Settings it was built with.
    pub settings: MeshSettings,
    peer_authentications: PeerAuthentications,
    authorization_policies: authorization::AuthorizationPolicies,
    request_authentications: request_authentication::RequestAuthentications,
    rules: BTreeMap<String, (String, DestinationRule)>,
    vss: VirtualServices,
    gateways: Gateways,
    gateway_vss: GatewayVirtualServices,
    routes: Mutex<BTreeMap<String, Arc<Resource>>>,
    /// A hash of what a sidecar's listeners are made from besides its own node (the
    /// security policies and settings): equal in two snapshots, the listeners are too.
    listener_inputs: u64,
    /// The outbound route configurations' virtual hosts as VHDS resources, by route
    /// configuration name, built on first use.
    vhosts: Mutex<BTreeMap<String, VirtualHosts>>,
    /// Hashes of the names and versions of all clusters, and of all endpoint
    /// assignments: [`Snapshot::generation`].
    cluster_generation: u64,
    endpoint_generation: u64,
    /// The endpoint assignments by name, for lookups by a subscription's names.
    endpoint_index: std::collections::HashMap<String, Arc<Resource>>,
    /// What was left out.
    pub diagnostics: Mutex<Diagnostics>,
}

impl Snapshot {
    /// Translates resources and registered instances.
    pub fn build(
        version: u64,
        resources: &[ModelResource],
        instances: &[Arc<Instance>],
    ) -> Snapshot {
        Snapshot::build_probed(
            version,
            resources,
            instances,
            &services::Probed::new(),
            &MeshSettings::default(),
        )
    }

    /// Translates, with the health of the Workloads the control plane probes.
    pub fn build_probed(
        version: u64,
        resources: &[ModelResource],
        instances: &[Arc<Instance>],
        probed: &services::Probed,
        settings: &MeshSettings,
    ) -> Snapshot {
        let services = Services::build_probed(instances, resources, probed);
        let mut diagnostics = Diagnostics::default();
        let mut rules = BTreeMap::new();
        let mut vss: VirtualServices = BTreeMap::new();
        let mut gateways: Gateways = Vec::new();
        let mut gateway_vss: GatewayVirtualServices = Vec::new();
        let mut peer_authentications = PeerAuthentications::new();
        let mut authorization_policies = authorization::AuthorizationPolicies::new();
        let mut request_authentications = request_authentication::RequestAuthentications::new();
        // Resources listed under each host, so that two hosts naming one service
        // (`reviews` and its FQDN) list a VirtualService once.
        let mut listed: BTreeSet<(String, usize)> = BTreeSet::new();
        for (index, r) in resources.iter().enumerate() {
            match &r.spec {
                Spec::DestinationRule(dr) => match services.resolve(&dr.host, r.namespace()) {
                    Some(svc) => {
                        rules.insert(
                            svc.hostname.clone(),
                            (r.namespace().to_string(), dr.clone()),
                        );
                    }
                    None => diagnostics.warn(format!(
                        "DestinationRule {}/{}: host {:?} is not a known service (yet)",
                        r.namespace(),
                        r.name(),
                        dr.host
                    )),
                },
                Spec::VirtualService(vs) => {
                    if !vs.tcp.is_empty() || !vs.tls.is_empty() {
                        diagnostics.warn(format!(
                            "VirtualService {}/{}: tcp and tls routes are not supported yet and were left out",
                            r.namespace(),
                            r.name()
                        ));
                    }
                    let entry = (r.namespace().to_string(), r.name().to_string(), vs.clone());
                    if vs.gateways.iter().any(|g| g != route::MESH) {
                        gateway_vss.push(entry.clone());
                    }
                    if !vs.gateways.is_empty() && !vs.gateways.iter().any(|g| g == route::MESH) {
                        continue;
                    }
                    for host in &vs.hosts {
                        if let Some(svc) = services.resolve(host, r.namespace()) {
                            if listed.insert((svc.hostname.clone(), index)) {
                                vss.entry(svc.hostname.clone())
                                    .or_default()
                                    .push(entry.clone());
                            }
                        }
                    }
                }
                Spec::Gateway(g) => {
                    gateways.push((r.namespace().to_string(), r.name().to_string(), g.clone()))
                }
                Spec::PeerAuthentication(p) => {
                    peer_authentications
                        .insert((r.namespace().to_string(), r.name().to_string()), p.clone());
                }
                Spec::AuthorizationPolicy(p) => {
                    authorization_policies
                        .insert((r.namespace().to_string(), r.name().to_string()), p.clone());
                }
                Spec::RequestAuthentication(p) => {
                    request_authentications
                        .insert((r.namespace().to_string(), r.name().to_string()), p.clone());
                }
                // Said out loud rather than ignored in silence.
                Spec::Sidecar(_) => diagnostics.warn(format!(
                    "Sidecar {}/{}: egress and ingress scoping are not enforced yet; every proxy still gets every service",
                    r.namespace(),
                    r.name()
                )),
                _ => {}
            }
        }
        let mut clusters = BTreeMap::new();
        let mut endpoints = BTreeMap::new();
        let mut plaintext_clusters = BTreeMap::new();
        for svc in services.by_host.values() {
            let dr = rules.get(&svc.hostname).map(|(_, d)| d);
            let clusters_of =
                cluster::service_clusters(svc, dr, &settings.trust_domain, &mut diagnostics);
            for (c, cla) in clusters_of {
                if let Some(cla) = cla {
                    endpoints.insert(
                        cla.cluster_name.clone(),
                        Arc::new(Resource::new(cla.cluster_name.clone(), &cla)),
                    );
                }
                if c.transport_socket.is_some() {
                    let plain = weft_xds::pb::envoy::config::cluster::v3::Cluster {
                        transport_socket: None,
                        ..c.clone()
                    };
                    plaintext_clusters.insert(
                        c.name.clone(),
                        Arc::new(Resource::new(c.name.clone(), &plain)),
                    );
                }
                clusters.insert(c.name.clone(), Arc::new(Resource::new(c.name.clone(), &c)));
            }
        }
        let listener_inputs = {
            use std::hash::{Hash, Hasher};
            let mut h = std::hash::DefaultHasher::new();
            format!("{peer_authentications:?}{authorization_policies:?}{request_authentications:?}{settings:?}").hash(&mut h);
            // A jwksUri names a service: whether it resolves shapes the JWT filter.
            let names_services = request_authentications
                .values()
                .flat_map(|r| &r.jwt_rules)
                .any(|j| j.jwks_uri.is_some());
            if names_services {
                for svc in services.by_host.values() {
                    (&svc.hostname, svc.ports.keys().collect::<Vec<_>>()).hash(&mut h);
                }
            }
            h.finish()
        };
        let cluster_generation = generation(clusters.values().chain(plaintext_clusters.values()));
        let endpoint_generation = generation(endpoints.values());
        let endpoint_index = endpoints
            .iter()
            .map(|(n, r)| (n.clone(), r.clone()))
            .collect();
        Snapshot {
            version,
            listener_inputs,
            cluster_generation,
            endpoint_generation,
            endpoint_index,
            services,
            clusters,
            endpoints,
            plaintext_clusters,
            settings: settings.clone(),
            peer_authentications,
            authorization_policies,
            request_authentications,
            rules,
            vss,
            gateways,
            gateway_vss,
            routes: Mutex::new(BTreeMap::new()),
            vhosts: Mutex::new(BTreeMap::new()),
            diagnostics: Mutex::new(diagnostics),
        }
    }

    fn inbound_security(&self) -> listener::InboundSecurity<'_> {
        listener::InboundSecurity {
            peer_authentications: &self.peer_authentications,
            authorization_policies: &self.authorization_policies,
            request_authentications: &self.request_authentications,
            services: &self.services,
            settings: &self.settings,
        }
    }

    fn route_context(&self) -> RouteContext<'_> {
        RouteContext {
            services: &self.services,
            rules: &self.rules,
        }
    }

    /// Keeps warnings found while answering a proxy.
    fn keep(&self, diagnostics: Diagnostics) {
        let mut d = self.diagnostics.lock().unwrap_or_else(|e| e.into_inner());
        for w in diagnostics.warnings {
            d.warn(w);
        }
    }

    /// A route configuration by name (`outbound|NAMESPACE`, or a gateway's
    /// `gateway|PORT|GATEWAYS`), built on first use.
    fn route(&self, name: &str) -> Option<Arc<Resource>> {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = routes.get(name) {
            return Some(r.clone());
        }
        let mut diagnostics = Diagnostics::default();
        let rc = if let Some(namespace) = name.strip_prefix("outbound|") {
            listener::outbound_routes(
                &self.route_context(),
                &self.vss,
                namespace,
                &mut diagnostics,
            )
        } else {
            let (port, names) = gateway::parse_routes_name(name)?;
            gateway::gateway_routes(
                &self.route_context(),
                &self.gateways,
                &self.gateway_vss,
                port,
                &names,
                &mut diagnostics,
            )
        };
        let resource = Arc::new(Resource::new(name, &rc));
        routes.insert(name.to_string(), resource.clone());
        drop(routes);
        self.keep(diagnostics);
        Some(resource)
    }

    /// The virtual hosts of the outbound route configuration `name` (`outbound|NS`) as
    /// VHDS resources, each named `outbound|NS/HOST:PORT` (Envoy's naming: the route
    /// configuration, a slash, the virtual host), built on first use.
    fn outbound_vhosts(&self, name: &str) -> Option<VirtualHosts> {
        let namespace = name.strip_prefix("outbound|")?;
        let mut vhosts = self.vhosts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = vhosts.get(name) {
            return Some(v.clone());
        }
        let mut diagnostics = Diagnostics::default();
        let rc = listener::outbound_routes(
            &self.route_context(),
            &self.vss,
            namespace,
            &mut diagnostics,
        );
        let list: Arc<[Arc<Resource>]> = rc
            .virtual_hosts
            .into_iter()
            .map(|mut vh| {
                vh.name = listener::vhds_name(name, &vh.name);
                Arc::new(Resource::new(vh.name.clone(), &vh))
            })
            .collect();
        let hash = generation(list.iter());
        vhosts.insert(name.to_string(), (list.clone(), hash));
        drop(vhosts);
        self.keep(diagnostics);
        Some((list, hash))
    }

    /// A number that changes whenever what [`Snapshot::select`] returns for a proxy,
    /// type and names may have changed, where that is cheap to know (`None`
    /// elsewhere): clusters and endpoints from hashes of all of them, a sidecar's
    /// listeners from what they are made from, VHDS virtual hosts from hashes of each
    /// route configuration's.
    pub fn generation(
        &self,
        proxy: &ProxyInfo,
        type_url: &str,
        names: Option<&dyn NameSet>,
    ) -> Option<u64> {
        match type_url {
            type_url::CLUSTER => Some(self.cluster_generation),
            type_url::CLUSTER_LOAD_ASSIGNMENT => Some(self.endpoint_generation),
            type_url::LISTENER if proxy.role == "sidecar" => Some(self.listener_inputs),
            type_url::VIRTUAL_HOST if proxy.vhds => {
                let own = listener::outbound_routes_name(&proxy.namespace);
                let names: Vec<&str> = match names {
                    Some(names) => names.each().collect(),
                    None => vec![own.as_str()],
                };
                let mut h = xxhash_rust::xxh64::Xxh64::new(1);
                for n in names {
                    h.update(n.as_bytes());
                    if let Some((_, hash)) = self.outbound_vhosts(n) {
                        h.update(&hash.to_le_bytes());
                    }
                }
                Some(h.digest())
            }
            _ => None,
        }
    }

    /// A route configuration for a proxy: the outbound ones without their virtual hosts
    /// for a proxy that takes them over VHDS.
    fn route_for(&self, proxy: &ProxyInfo, name: &str) -> Option<Arc<Resource>> {
        if proxy.vhds {
            if let Some(namespace) = name.strip_prefix("outbound|") {
                let rc = listener::outbound_routes_vhds(namespace);
                return Some(Arc::new(Resource::new(name, &rc)));
            }
        }
        self.route(name)
    }

    /// The resources of `type_url` a proxy sees, limited to `names` when given.
    pub fn resources_for(
        &self,
        proxy: &ProxyInfo,
        type_url: &str,
        names: Option<&BTreeSet<String>>,
    ) -> Vec<Arc<Resource>> {
        self.select(proxy, type_url, names.map(|n| n as &dyn NameSet), None)
    }

    /// [`Snapshot::resources_for`], with the names as any set (an xDS stream's
    /// subscription), and what the proxy's stream kept from earlier snapshots.
    pub fn select(
        &self,
        proxy: &ProxyInfo,
        type_url: &str,
        names: Option<&dyn NameSet>,
        cache: Option<&ProxyCache>,
    ) -> Vec<Arc<Resource>> {
        let wanted = |n: &str| names.is_none_or(|set| set.has(n));
        match type_url {
            type_url::LISTENER if proxy.role == "proxyless" => {
                let Some(names) = names else {
                    return Vec::new();
                };
                let mut d = Diagnostics::default();
                let out = names
                    .each()
                    .filter_map(|n| {
                        listener::api_listener(
                            &self.route_context(),
                            &self.vss,
                            &self.services,
                            n,
                            &mut d,
                        )
                    })
                    .map(|l| Arc::new(Resource::new(l.name.clone(), &l)))
                    .collect();
                self.keep(d);
                out
            }
            type_url::LISTENER if proxy.role == "gateway" => {
                let mut d = Diagnostics::default();
                let out = gateway::listeners(proxy, &self.gateways, &mut d)
                    .into_iter()
                    .filter(|l| wanted(&l.name))
                    .map(|l| Arc::new(Resource::new(l.name.clone(), &l)))
                    .collect();
                self.keep(d);
                out
            }
            type_url::LISTENER => {
                let build = || {
                    let mut d = Diagnostics::default();
                    let all: Arc<[Arc<Resource>]> =
                        listener::sidecar(proxy, &self.inbound_security(), &mut d)
                            .into_iter()
                            .map(|l| Arc::new(Resource::new(l.name.clone(), &l)))
                            .collect();
                    (all, d)
                };
                let (all, d) = match cache {
                    Some(cache) => cache.listeners(self.listener_inputs, build),
                    None => build(),
                };
                self.keep(d);
                all.iter().filter(|l| wanted(&l.name)).cloned().collect()
            }
            type_url::CLUSTER => {
                let proxyless = proxy.role == "proxyless";
                let mut out: Vec<Arc<Resource>> = self
                    .clusters
                    .iter()
                    .filter(|(n, _)| wanted(n))
                    .map(|(n, r)| match self.plaintext_clusters.get(n) {
                        Some(plain) if proxyless => plain.clone(),
                        _ => r.clone(),
                    })
                    .collect();
                if proxy.role == "sidecar" {
                    let build = || -> Arc<[Arc<Resource>]> {
                        listener::local_clusters(proxy)
                            .into_iter()
                            .map(|c| Arc::new(Resource::new(c.name.clone(), &c)))
                            .collect()
                    };
                    let local = match cache {
                        Some(cache) => cache.local_clusters.get_or_init(build).clone(),
                        None => build(),
                    };
                    out.extend(local.iter().filter(|c| wanted(&c.name)).cloned());
                }
                out
            }
            type_url::CLUSTER_LOAD_ASSIGNMENT => match names {
                Some(names) => names
                    .each()
                    .filter_map(|n| self.endpoint_index.get(n).cloned())
                    .collect(),
                None => self.endpoints.values().cloned().collect(),
            },
            type_url::ROUTE_CONFIGURATION => match names {
                Some(names) => names
                    .each()
                    .filter_map(|n| self.route_for(proxy, n))
                    .collect(),
                None if proxy.role == "gateway" => {
                    let mut d = Diagnostics::default();
                    let out = gateway::route_names(proxy, &self.gateways, &mut d)
                        .iter()
                        .filter_map(|n| self.route(n))
                        .collect();
                    self.keep(d);
                    out
                }
                None => self
                    .route_for(proxy, &listener::outbound_routes_name(&proxy.namespace))
                    .into_iter()
                    .collect(),
            },
            // VHDS: a subscription names route configurations (Envoy subscribes to the
            // route configuration's name and expects every virtual host under it).
            // Names of single virtual hosts (`ROUTE_CONFIGURATION/HOST`, Envoy's on-demand
            // lookups) find nothing: every virtual host is sent up front.
            type_url::VIRTUAL_HOST if proxy.vhds => {
                let own = listener::outbound_routes_name(&proxy.namespace);
                let names: Vec<&str> = match names {
                    Some(names) => names.each().collect(),
                    None => vec![own.as_str()],
                };
                let mut out = Vec::new();
                for (list, _) in names.into_iter().filter_map(|n| self.outbound_vhosts(n)) {
                    out.extend(list.iter().cloned());
                }
                out
            }
            _ => Vec::new(),
        }
    }
}

fn string(s: &Struct, key: &str) -> Option<String> {
    match s.fields.get(key)?.kind.as_ref()? {
        value::Kind::StringValue(v) => Some(v.clone()),
        value::Kind::NumberValue(n) => Some(n.to_string()),
        _ => None,
    }
}

fn number(v: &Value) -> Option<u16> {
    match v.kind.as_ref()? {
        value::Kind::NumberValue(n) if n.fract() == 0.0 && (0.0..=65535.0).contains(n) => {
            Some(*n as u16)
        }
        value::Kind::StringValue(s) => s.parse().ok(),
        _ => None,
    }
}

/// A gateway port: `N` (server port N on local port N) or `{port: N, bind: M}`
/// (server port N on local port M).
fn gateway_port(v: &Value) -> Option<(u16, u16)> {
    match v.kind.as_ref()? {
        value::Kind::StructValue(s) => {
            let port = number(s.fields.get("port")?)?;
            let bind = s.fields.get("bind").map_or(Some(port), number)?;
            Some((port, bind))
        }
        _ => number(v).map(|n| (n, n)),
    }
}

impl ProxyInfo {
    /// Reads a proxy's description from its node; a node without Weft metadata is a
    /// proxyless gRPC client.
    pub fn from_node(node: &Node) -> ProxyInfo {
        let empty = Struct::default();
        let m = node.metadata.as_ref().unwrap_or(&empty);
        let Some(service) = string(m, meta::SERVICE) else {
            return ProxyInfo {
                role: "proxyless".into(),
                namespace: "default".into(),
                ..Default::default()
            };
        };
        let labels = match m.fields.get(meta::LABELS).and_then(|v| v.kind.as_ref()) {
            Some(value::Kind::StructValue(s)) => s
                .fields
                .keys()
                .filter_map(|k| Some((k.clone(), string(s, k)?)))
                .collect(),
            _ => BTreeMap::new(),
        };
        let list = |key: &str| match m.fields.get(key).and_then(|v| v.kind.as_ref()) {
            Some(value::Kind::ListValue(l)) => l.values.clone(),
            _ => Vec::new(),
        };
        let ports = list(meta::PORTS)
            .iter()
            .filter_map(|v| match v.kind.as_ref()? {
                value::Kind::StructValue(p) => Some((
                    string(p, "name").unwrap_or_else(|| "http".into()),
                    number(p.fields.get("service_port")?)?,
                    number(p.fields.get("app_port")?)?,
                    number(p.fields.get("inbound_port")?)?,
                    string(p, "protocol")
                        .unwrap_or_else(|| "http".into())
                        .to_ascii_lowercase(),
                )),
                _ => None,
            })
            .collect();
        ProxyInfo {
            role: string(m, meta::ROLE).unwrap_or_else(|| "sidecar".into()),
            service,
            namespace: string(m, meta::NAMESPACE).unwrap_or_else(|| "default".into()),
            labels,
            inbound_address: string(m, meta::INBOUND_ADDRESS).and_then(|a| a.parse().ok()),
            ports,
            outbound_port: m.fields.get(meta::OUTBOUND_PORT).and_then(number),
            gateway_ports: list(meta::GATEWAY_PORTS)
                .iter()
                .filter_map(gateway_port)
                .collect(),
            vhds: false,
        }
    }
}
