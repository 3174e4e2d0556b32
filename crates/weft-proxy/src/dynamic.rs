//! Configuration over xDS: the proxy's [`weft_xds::client::Handler`]. Each response is
//! checked and compiled whole before anything changes; a rejected one is NACKed and the
//! last good configuration keeps serving. Listeners are added, replaced (new
//! connections take the new configuration; open ones finish on the old) and removed
//! without dropping traffic; clusters whose configuration did not change keep their
//! endpoints, pools and statistics; route configurations swap in place. A route
//! configuration with `vhds` gets its virtual hosts as VHDS resources named
//! `ROUTE_CONFIGURATION/VIRTUAL_HOST` (delta ADS); they are merged into it before it
//! compiles, and a virtual host update recompiles the route configurations it belongs to.

use crate::cluster::{Cluster, ClusterMap, Discovery};
use crate::compile::{self, ConfigError, Context, RouteRegistry};
use crate::listener::ListenerHandle;
use crate::metrics::Metrics;
use crate::runtime::Workers;
use arc_swap::ArcSwap;
use prost::Message;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use weft_xds::client::{Handler, Update};
use weft_xds::pb::envoy::config::cluster::v3::Cluster as ClusterProto;
use weft_xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use weft_xds::pb::envoy::config::listener::v3::Listener as ListenerProto;
use weft_xds::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
use weft_xds::pb::google::protobuf::Any;
use weft_xds::server::Subscription;
use weft_xds::type_url;

/// A route configuration compiled, with VHDS virtual hosts merged in.
struct CompiledRoutes {
    name: String,
    /// The merged configuration, when it takes virtual hosts over VHDS.
    merged: Option<Any>,
    table: crate::http::route::RouteTable,
}

/// What the admin pages show of the dynamic configuration.
#[derive(Debug, Default)]
pub struct Dump {
    /// Last accepted resources by type, then name.
    pub resources: BTreeMap<String, BTreeMap<String, Any>>,
    /// Last NACK per type: (message, when).
    pub rejected: BTreeMap<String, String>,
}

/// Listeners that are bound, by name, and where.
pub type BoundListeners = Arc<Mutex<Vec<(String, SocketAddr)>>>;

/// The proxy's side of the ADS stream.
pub struct Dynamic {
    metrics: Arc<Metrics>,
    workers: Arc<Workers>,
    clusters: Arc<ArcSwap<ClusterMap>>,
    statics: ClusterMap,
    routes: RouteRegistry,
    listeners: HashMap<String, (Arc<ListenerHandle>, SocketAddr)>,
    bound: BoundListeners,
    current: HashMap<&'static str, BTreeMap<String, Any>>,
    endpoints: HashMap<String, ClusterLoadAssignment>,
    received: HashSet<&'static str>,
    routes_received: BTreeSet<String>,
    /// Received route configurations whose virtual hosts come over VHDS.
    vhds_routes: BTreeSet<String>,
    /// Those route configurations with their virtual hosts merged in, for the dump.
    merged_routes: BTreeMap<String, Any>,
    dump: Arc<Mutex<Dump>>,
    ready: Arc<AtomicBool>,
    lds: bool,
    cds: bool,
    secrets: crate::tls::SecretStore,
}

/// The parts a [`Dynamic`] is built from.
pub struct DynamicParts {
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The workers, to bind new listeners on.
    pub workers: Arc<Workers>,
    /// The cluster map the request path reads.
    pub clusters: Arc<ArcSwap<ClusterMap>>,
    /// RDS slots shared with static listeners.
    pub routes: RouteRegistry,
    /// Listener addresses, for the admin page.
    pub bound: BoundListeners,
    /// The dump the admin page renders.
    pub dump: Arc<Mutex<Dump>>,
    /// Set once the first complete configuration arrived.
    pub ready: Arc<AtomicBool>,
    /// Listeners come over ADS.
    pub lds: bool,
    /// Clusters come over ADS.
    pub cds: bool,
    /// TLS secrets that SDS names resolve from.
    pub secrets: crate::tls::SecretStore,
}

impl Dynamic {
    /// The handler; static clusters (from the bootstrap) stay whatever CDS says.
    pub fn new(parts: DynamicParts) -> Dynamic {
        let statics = (**parts.clusters.load()).clone();
        Dynamic {
            metrics: parts.metrics,
            workers: parts.workers,
            clusters: parts.clusters,
            statics,
            routes: parts.routes,
            listeners: HashMap::new(),
            bound: parts.bound,
            current: HashMap::new(),
            endpoints: HashMap::new(),
            received: HashSet::new(),
            routes_received: BTreeSet::new(),
            vhds_routes: BTreeSet::new(),
            merged_routes: BTreeMap::new(),
            dump: parts.dump,
            ready: parts.ready,
            lds: parts.lds,
            cds: parts.cds,
            secrets: parts.secrets,
        }
    }

    /// Set once the first complete configuration arrived.
    pub fn ready_flag(&self) -> Arc<AtomicBool> {
        self.ready.clone()
    }

    fn context(&self) -> Context<'_> {
        Context {
            metrics: &self.metrics,
            workers: self.workers.count(),
            clusters: self.clusters.clone(),
            cluster_names: self.clusters.load().keys().map(|k| k.to_string()).collect(),
            rds: Some(self.routes.clone()),
            validate_clusters: false,
            dynamic: true,
            secrets: self.secrets.clone(),
            errors: Vec::new(),
        }
    }

    /// What is held of `type_url` among `names`.
    fn kept(&self, type_url: &str, names: BTreeSet<String>) -> BTreeMap<String, Any> {
        let mut set = self.current.get(type_url).cloned().unwrap_or_default();
        set.retain(|name, _| names.contains(name));
        set
    }

    /// The resource set after `update`, by name.
    fn next_set(
        &self,
        type_url: &'static str,
        update: Update,
    ) -> Result<BTreeMap<String, Any>, String> {
        match update {
            Update::Full(list) => {
                // Listeners and clusters come whole; a state-of-the-world response of
                // endpoints or routes may carry only what changed, and what it leaves
                // out stays while it is still referenced (xDS protocol, "Grouping
                // resources into responses").
                let mut set = match type_url {
                    type_url::CLUSTER_LOAD_ASSIGNMENT => {
                        self.kept(type_url, self.referenced_endpoints())
                    }
                    type_url::ROUTE_CONFIGURATION => self.kept(type_url, self.referenced_routes()),
                    _ => BTreeMap::new(),
                };
                for any in list {
                    let name = resource_name(type_url, &any)?;
                    set.insert(name, any);
                }
                Ok(set)
            }
            Update::Delta { changed, removed } => {
                let mut set = self.current.get(type_url).cloned().unwrap_or_default();
                for name in removed {
                    set.remove(&name);
                }
                for (name, any) in changed {
                    set.insert(name, any);
                }
                Ok(set)
            }
        }
    }

    fn apply_clusters(&mut self, set: &BTreeMap<String, Any>) -> Result<(), String> {
        let previous = self
            .current
            .get(type_url::CLUSTER)
            .cloned()
            .unwrap_or_default();
        let mut ctx = self.context();
        let mut compiled = Vec::new();
        for (name, any) in set {
            let path = format!("cluster {name:?}");
            let Some(proto) = decode::<ClusterProto>(any, &path, &mut ctx) else {
                continue;
            };
            check_support(any, &path, &mut ctx.errors);
            if let Some(parts) = compile::cluster::compile(&proto, &path, &mut ctx) {
                compiled.push((name.clone(), parts));
            }
        }
        if !ctx.errors.is_empty() {
            return Err(join(ctx.errors));
        }
        let old = self.clusters.load_full();
        let mut next = self.statics.clone();
        for (name, parts) in compiled {
            let unchanged = previous.get(&name) == set.get(&name);
            let cluster = match old.get(name.as_str()) {
                Some(c) if unchanged => c.clone(),
                _ => {
                    tracing::debug!(cluster = name, "cluster (re)built");
                    let c = Arc::new(Cluster::new(
                        parts,
                        self.workers.count(),
                        self.metrics.cluster(&name),
                    ));
                    if let Discovery::Eds { service_name } = &c.discovery {
                        if let Some(cla) = self.endpoints.get(service_name) {
                            let mut scratch = self.context();
                            c.set_endpoints(&compile::cluster::assignment_endpoints(
                                cla,
                                "",
                                &mut scratch,
                            ));
                        }
                    }
                    if c.dns_refresh().is_some() {
                        spawn_dns(c.clone());
                    }
                    c
                }
            };
            next.insert(cluster.name.clone(), cluster);
        }
        self.clusters.store(Arc::new(next));
        Ok(())
    }

    fn apply_endpoints(&mut self, set: &BTreeMap<String, Any>) -> Result<(), String> {
        let mut ctx = self.context();
        let mut next = HashMap::new();
        let mut specs = HashMap::new();
        for (name, any) in set {
            let path = format!("cluster load assignment {name:?}");
            if let Some(cla) = decode::<ClusterLoadAssignment>(any, &path, &mut ctx) {
                check_support(any, &path, &mut ctx.errors);
                specs.insert(
                    cla.cluster_name.clone(),
                    compile::cluster::assignment_endpoints(&cla, &path, &mut ctx),
                );
                next.insert(cla.cluster_name.clone(), cla);
            }
        }
        if !ctx.errors.is_empty() {
            return Err(join(ctx.errors));
        }
        let clusters = self.clusters.load();
        for cluster in clusters.values() {
            if let Discovery::Eds { service_name } = &cluster.discovery {
                match (next.get(service_name), specs.get(service_name)) {
                    (Some(cla), Some(eps)) if self.endpoints.get(service_name) != Some(cla) => {
                        cluster.set_endpoints(eps)
                    }
                    (None, _) if self.endpoints.contains_key(service_name) => {
                        cluster.set_endpoints(&[])
                    }
                    _ => {}
                }
            }
        }
        self.endpoints = next;
        Ok(())
    }

    fn apply_listeners(&mut self, set: &BTreeMap<String, Any>) -> Result<(), String> {
        let mut ctx = self.context();
        let mut compiled = Vec::new();
        for (name, any) in set {
            let path = format!("listener {name:?}");
            let Some(proto) = decode::<ListenerProto>(any, &path, &mut ctx) else {
                continue;
            };
            check_support(any, &path, &mut ctx.errors);
            if let Some(l) = compile::listener::compile(&proto, &path, &mut ctx) {
                compiled.push(Arc::new(l));
            }
        }
        if !ctx.errors.is_empty() {
            return Err(join(ctx.errors));
        }
        // Bind what is new first, so that a bind failure rejects the whole update.
        let mut added = Vec::new();
        for l in &compiled {
            let keep = matches!(self.listeners.get(&*l.name), Some((h, _)) if h.config.load().address == l.address);
            if !keep {
                let handle = ListenerHandle::new(l.clone());
                match self.workers.listen(&handle) {
                    Ok(addr) => added.push((l.name.to_string(), handle, addr)),
                    Err(e) => {
                        for (_, h, _) in added {
                            h.stop();
                        }
                        return Err(e.to_string());
                    }
                }
            }
        }
        let names: HashSet<String> = compiled.iter().map(|l| l.name.to_string()).collect();
        for l in compiled {
            if let Some((handle, _)) = self.listeners.get(&*l.name) {
                if handle.config.load().address == l.address {
                    handle.update(l);
                }
            }
        }
        for (name, handle, addr) in added {
            if let Some((old, _)) = self.listeners.insert(name, (handle, addr)) {
                old.stop();
            }
        }
        self.listeners.retain(|name, (handle, _)| {
            let keep = names.contains(name);
            if !keep {
                handle.stop();
            }
            keep
        });
        let mut bound: Vec<(String, SocketAddr)> = self
            .listeners
            .iter()
            .map(|(n, (_, a))| (n.clone(), *a))
            .collect();
        bound.sort();
        *self.bound.lock().unwrap_or_else(|e| e.into_inner()) = bound;
        Ok(())
    }

    fn apply_routes(&mut self, set: &BTreeMap<String, Any>) -> Result<(), String> {
        let vhosts = self
            .current
            .get(type_url::VIRTUAL_HOST)
            .cloned()
            .unwrap_or_default();
        let compiled = self.compile_routes(set, &vhosts, |_| true)?;
        self.vhds_routes = compiled
            .iter()
            .filter(|c| c.merged.is_some())
            .map(|c| c.name.clone())
            .collect();
        self.store_routes(compiled);
        Ok(())
    }

    /// A new set of VHDS virtual hosts: the route configurations that take them are
    /// compiled again with them.
    fn apply_virtual_hosts(&mut self, set: &BTreeMap<String, Any>) -> Result<(), String> {
        let routes = self
            .current
            .get(type_url::ROUTE_CONFIGURATION)
            .cloned()
            .unwrap_or_default();
        let compiled = self.compile_routes(&routes, set, |name| self.vhds_routes.contains(name))?;
        self.store_routes(compiled);
        Ok(())
    }

    /// Swaps compiled route configurations in; the dump shows those with VHDS virtual
    /// hosts merged, as Envoy's does.
    fn store_routes(&mut self, compiled: Vec<CompiledRoutes>) {
        for c in compiled {
            self.routes.slot(&c.name).store(Arc::new(c.table));
            match c.merged {
                Some(any) => self.merged_routes.insert(c.name.clone(), any),
                None => self.merged_routes.remove(&c.name),
            };
            self.routes_received.insert(c.name);
        }
    }

    /// Compiles the route configurations of `set` that `which` selects, each with its
    /// VHDS virtual hosts from `vhosts` when it takes them: (name, takes VHDS, table).
    fn compile_routes(
        &self,
        set: &BTreeMap<String, Any>,
        vhosts: &BTreeMap<String, Any>,
        which: impl Fn(&str) -> bool,
    ) -> Result<Vec<CompiledRoutes>, String> {
        let mut ctx = self.context();
        let mut compiled = Vec::new();
        for (name, any) in set {
            if !which(name) {
                continue;
            }
            let path = format!("route configuration {name:?}");
            let Some(mut proto) = decode::<RouteConfiguration>(any, &path, &mut ctx) else {
                continue;
            };
            check_support(any, &path, &mut ctx.errors);
            let vhds = proto.vhds.is_some();
            if vhds {
                let prefix = format!("{name}/");
                for (vh_name, vh_any) in vhosts.range(prefix.clone()..) {
                    if !vh_name.starts_with(&prefix) {
                        break;
                    }
                    let vh_path = format!("virtual host {vh_name:?}");
                    check_support(vh_any, &vh_path, &mut ctx.errors);
                    if let Some(vh) = decode::<VirtualHost>(vh_any, &vh_path, &mut ctx) {
                        proto.virtual_hosts.push(vh);
                    }
                }
            }
            if let Some(table) = compile::route::compile(&proto, &path, &mut ctx) {
                compiled.push(CompiledRoutes {
                    name: name.clone(),
                    merged: vhds.then(|| Any {
                        type_url: type_url::ROUTE_CONFIGURATION.to_string(),
                        value: proto.encode_to_vec(),
                    }),
                    table,
                });
            }
        }
        if !ctx.errors.is_empty() {
            return Err(join(ctx.errors));
        }
        Ok(compiled)
    }

    /// Route configurations the current listeners name.
    fn referenced_routes(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for (handle, _) in self.listeners.values() {
            let l = handle.config.load();
            for chain in l.chains.iter().chain(l.default_chain.iter()) {
                if let crate::listener::Network::Http(m) = &chain.network {
                    if let Some(n) = &m.rds_name {
                        names.insert(n.clone());
                    }
                }
            }
        }
        names
    }

    /// Endpoint assignments the current clusters name.
    fn referenced_endpoints(&self) -> BTreeSet<String> {
        self.clusters
            .load()
            .values()
            .filter_map(|c| match &c.discovery {
                Discovery::Eds { service_name } => Some(service_name.clone()),
                _ => None,
            })
            .collect()
    }

    fn update_readiness(&self) {
        if self.ready.load(Ordering::Acquire) {
            return;
        }
        let have = |t| self.received.contains(t);
        let listeners = !self.lds || have(type_url::LISTENER);
        let clusters = !self.cds || have(type_url::CLUSTER);
        let routes = self
            .referenced_routes()
            .iter()
            .all(|r| self.routes_received.contains(r))
            && (self.vhds_routes.is_empty() || have(type_url::VIRTUAL_HOST));
        let endpoints = self
            .referenced_endpoints()
            .iter()
            .all(|e| self.endpoints.contains_key(e));
        if listeners && clusters && routes && endpoints {
            tracing::info!("initial configuration received");
            self.ready.store(true, Ordering::Release);
        }
    }
}

impl Handler for Dynamic {
    fn apply(&mut self, type_url: &str, update: Update) -> Result<(), String> {
        let Some(kind) = [
            type_url::CLUSTER,
            type_url::CLUSTER_LOAD_ASSIGNMENT,
            type_url::LISTENER,
            type_url::ROUTE_CONFIGURATION,
            type_url::VIRTUAL_HOST,
        ]
        .into_iter()
        .find(|t| *t == type_url) else {
            return Err(format!("weft does not take {type_url} over xDS"));
        };
        // Held across the response so that checking every resource decodes it once.
        let _pool = weft_xds::descriptor_pool();
        let result = self.next_set(kind, update).and_then(|set| {
            match kind {
                type_url::CLUSTER => self.apply_clusters(&set),
                type_url::CLUSTER_LOAD_ASSIGNMENT => self.apply_endpoints(&set),
                type_url::LISTENER => self.apply_listeners(&set),
                type_url::VIRTUAL_HOST => self.apply_virtual_hosts(&set),
                _ => self.apply_routes(&set),
            }?;
            Ok(set)
        });
        let mut dump = self.dump.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(set) => {
                tracing::debug!(
                    type_url = kind,
                    resources = set.len(),
                    "configuration applied"
                );
                dump.resources.insert(kind.to_string(), set.clone());
                dump.rejected.remove(kind);
                self.current.insert(kind, set);
                if kind == type_url::ROUTE_CONFIGURATION || kind == type_url::VIRTUAL_HOST {
                    let mut routes = self
                        .current
                        .get(type_url::ROUTE_CONFIGURATION)
                        .cloned()
                        .unwrap_or_default();
                    for (name, any) in &self.merged_routes {
                        if let Some(r) = routes.get_mut(name) {
                            *r = any.clone();
                        }
                    }
                    dump.resources
                        .insert(type_url::ROUTE_CONFIGURATION.to_string(), routes);
                }
                self.received.insert(kind);
                self.metrics.config_applied();
                drop(dump);
                self.update_readiness();
                Ok(())
            }
            Err(e) => {
                dump.rejected.insert(kind.to_string(), e.clone());
                self.metrics.config_rejected();
                Err(e)
            }
        }
    }

    fn subscriptions(&self) -> Vec<(&'static str, Subscription)> {
        let mut subs = Vec::new();
        if self.cds {
            subs.push((type_url::CLUSTER, Subscription::Wildcard));
        }
        subs.push((
            type_url::CLUSTER_LOAD_ASSIGNMENT,
            Subscription::Names(self.referenced_endpoints()),
        ));
        if self.lds {
            subs.push((type_url::LISTENER, Subscription::Wildcard));
        }
        subs.push((
            type_url::ROUTE_CONFIGURATION,
            Subscription::Names(self.referenced_routes()),
        ));
        // VHDS: by route configuration name, for every virtual host under it.
        if !self.vhds_routes.is_empty() || self.current.contains_key(type_url::VIRTUAL_HOST) {
            subs.push((
                type_url::VIRTUAL_HOST,
                Subscription::Names(self.vhds_routes.clone()),
            ));
        }
        subs
    }

    fn connection(&mut self, up: bool) {
        if up {
            tracing::info!("connected to the control plane");
        }
    }
}

fn resource_name(type_url: &str, any: &Any) -> Result<String, String> {
    let name = match type_url {
        type_url::CLUSTER => ClusterProto::decode(any.value.as_slice()).map(|c| c.name),
        type_url::LISTENER => ListenerProto::decode(any.value.as_slice()).map(|l| l.name),
        type_url::ROUTE_CONFIGURATION => {
            RouteConfiguration::decode(any.value.as_slice()).map(|r| r.name)
        }
        type_url::VIRTUAL_HOST => VirtualHost::decode(any.value.as_slice()).map(|v| v.name),
        _ => ClusterLoadAssignment::decode(any.value.as_slice()).map(|c| c.cluster_name),
    };
    name.map_err(|e| format!("cannot decode a {type_url}: {e}"))
}

fn decode<M: Message + Default + prost::Name>(
    any: &Any,
    path: &str,
    ctx: &mut Context<'_>,
) -> Option<M> {
    compile::decode_any(any, path, ctx)
}

/// The unsupported-field check of `compile::support`, on a resource's bytes.
fn check_support(any: &Any, path: &str, errors: &mut Vec<ConfigError>) {
    compile::support::check_encoded(any, path, errors);
}

fn join(errors: Vec<ConfigError>) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

fn spawn_dns(cluster: Arc<Cluster>) {
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    tokio::spawn(async move {
        let Some(every) = cluster.dns_refresh() else {
            return;
        };
        loop {
            cluster.refresh_dns().await;
            tokio::time::sleep(every).await;
            // A cluster replaced by a later update is no longer worth resolving.
            if Arc::strong_count(&cluster) == 1 {
                return;
            }
        }
    });
}
