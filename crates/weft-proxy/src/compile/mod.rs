//! Turning Envoy resources into the proxy's immutable runtime objects. Every problem is
//! collected with the path of the field at fault (`static_resources.clusters[2].lb_policy:
//! ...`), so that one run names them all; nothing is bound or started until the whole
//! configuration compiled.

pub mod access_log;
pub mod cluster;
pub mod jwt;
pub mod listener;
pub mod metadata;
pub mod rbac;
pub mod route;
pub mod support;
pub mod tls;
pub mod xds;

use crate::cluster::{Cluster, ClusterMap};
use crate::listener::Listener;
use crate::metrics::Metrics;
use arc_swap::ArcSwap;
use prost::Message;
use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use weft_xds::pb::envoy::config::bootstrap::v3::Bootstrap;
use weft_xds::pb::envoy::config::core::v3 as core;
use weft_xds::pb::google::protobuf;

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Field path, e.g. `static_resources.listeners[0].address`.
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl ConfigError {
    /// An error at `path`.
    pub fn new(path: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Where compiled objects register their metrics and find what they share.
pub struct Context<'a> {
    /// Metrics registry.
    pub metrics: &'a Metrics,
    /// Worker threads (connection pools are per worker).
    pub workers: usize,
    /// The cluster map routes look clusters up in.
    pub clusters: Arc<ArcSwap<ClusterMap>>,
    /// Cluster names known when validating routes.
    pub cluster_names: HashSet<String>,
    /// Where RDS route configurations go; `None` without an xDS server.
    pub rds: Option<RouteRegistry>,
    /// Whether routes must name existing clusters by default (Envoy: yes for inline
    /// route configurations, no for RDS).
    pub validate_clusters: bool,
    /// Whether resources may come from xDS (EDS clusters, RDS).
    pub dynamic: bool,
    /// Where secrets named by SDS are looked up at handshake time.
    pub secrets: crate::tls::SecretStore,
    /// Errors found so far.
    pub errors: Vec<ConfigError>,
}

/// Route configurations received over RDS, by name; every connection manager that names
/// one shares its slot, so an update reaches them all at once.
#[derive(Debug, Clone, Default)]
pub struct RouteRegistry {
    slots: Arc<
        std::sync::Mutex<
            std::collections::HashMap<String, Arc<ArcSwap<crate::http::route::RouteTable>>>,
        >,
    >,
}

impl RouteRegistry {
    /// The slot for `name`, empty (every request 404) until its configuration arrives.
    pub fn slot(&self, name: &str) -> Arc<ArcSwap<crate::http::route::RouteTable>> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(ArcSwap::from_pointee(
                    crate::http::route::RouteTable::empty(name),
                ))
            })
            .clone()
    }
}

impl Context<'_> {
    /// Records an error.
    pub fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, message));
    }
}

/// A compiled bootstrap.
#[derive(Debug)]
pub struct Compiled {
    /// Listeners to bind.
    pub listeners: Vec<Arc<Listener>>,
    /// Clusters by name.
    pub clusters: ClusterMap,
    /// Admin listener address.
    pub admin: Option<SocketAddr>,
    /// The bootstrap, for `/config_dump`.
    pub bootstrap: Bootstrap,
    /// The xDS server, when `dynamic_resources` names one.
    pub xds: Option<xds::XdsSettings>,
    /// Route configurations to come over RDS.
    pub routes: RouteRegistry,
}

/// Compiles a bootstrap parsed by `weft_xds::from_json_or_yaml`; TLS contexts look the
/// secrets they name up in `secrets`.
pub fn compile_bootstrap(
    bootstrap: &Bootstrap,
    reflected: &prost_reflect::DynamicMessage,
    metrics: &Metrics,
    workers: usize,
    clusters: Arc<ArcSwap<ClusterMap>>,
    secrets: &crate::tls::SecretStore,
) -> Result<Compiled, ConfigErrors> {
    let dynamic = bootstrap.dynamic_resources.is_some();
    let mut ctx = Context {
        metrics,
        workers,
        clusters,
        cluster_names: HashSet::new(),
        rds: dynamic.then(RouteRegistry::default),
        validate_clusters: true,
        dynamic,
        secrets: secrets.clone(),
        errors: Vec::new(),
    };
    support::check(reflected, "", &mut ctx.errors);
    let statics = bootstrap.static_resources.clone().unwrap_or_default();
    let mut cluster_map = ClusterMap::new();
    for (i, c) in statics.clusters.iter().enumerate() {
        let path = format!("static_resources.clusters[{i}]");
        if !ctx.cluster_names.insert(c.name.clone()) {
            ctx.error(
                &format!("{path}.name"),
                format!("duplicate cluster name {:?}", c.name),
            );
            continue;
        }
        if let Some(parts) = cluster::compile(c, &path, &mut ctx) {
            let stats = ctx.metrics.cluster(&c.name);
            cluster_map.insert(
                parts.name.clone(),
                Arc::new(Cluster::new(parts, workers, stats)),
            );
        }
    }
    let mut listeners = Vec::new();
    let mut names = HashSet::new();
    let mut addresses = HashSet::new();
    for (i, l) in statics.listeners.iter().enumerate() {
        let path = format!("static_resources.listeners[{i}]");
        if !names.insert(l.name.clone()) {
            ctx.error(
                &format!("{path}.name"),
                format!("duplicate listener name {:?}", l.name),
            );
            continue;
        }
        if let Some(listener) = listener::compile(l, &path, &mut ctx) {
            if listener.address.port() != 0 && !addresses.insert(listener.address) {
                ctx.error(
                    &format!("{path}.address"),
                    format!("{} is already used by another listener", listener.address),
                );
                continue;
            }
            listeners.push(Arc::new(listener));
        }
    }
    let admin = bootstrap.admin.as_ref().and_then(|a| {
        let addr = a.address.as_ref()?;
        socket_address(addr, "admin.address", &mut ctx)
    });
    let xds = bootstrap
        .dynamic_resources
        .as_ref()
        .and_then(|d| xds::compile(d, &statics.clusters, "dynamic_resources", &mut ctx));
    if ctx.errors.is_empty() {
        Ok(Compiled {
            listeners,
            clusters: cluster_map,
            admin,
            bootstrap: bootstrap.clone(),
            xds,
            routes: ctx.rds.clone().unwrap_or_default(),
        })
    } else {
        Err(ConfigErrors(ctx.errors))
    }
}

/// Checks one resource received over xDS as the proxy does when it applies it: decoded
/// by its type (CDS, EDS, LDS or RDS), every field set is one the proxy honours, and it
/// compiles. Nothing is bound or started. `clusters` are the cluster names the proxy
/// knows (TCP proxies must name one); routes, as over RDS, may name clusters yet to come.
/// For control planes and tests that must emit only what the proxy accepts.
pub fn check_resource(
    type_url: &str,
    resource: &protobuf::Any,
    clusters: &HashSet<String>,
) -> Result<(), ConfigErrors> {
    use weft_xds::pb::envoy::config::{cluster as c, endpoint as e, listener as l, route as r};
    use weft_xds::type_url as t;
    let metrics = Metrics::new();
    let mut ctx = Context {
        metrics: &metrics,
        workers: 1,
        clusters: Arc::new(ArcSwap::from_pointee(ClusterMap::new())),
        cluster_names: clusters.clone(),
        rds: Some(RouteRegistry::default()),
        validate_clusters: false,
        dynamic: true,
        secrets: crate::tls::SecretStore::new(),
        errors: Vec::new(),
    };
    let path = type_name(&resource.type_url).to_string();
    if resource.type_url != type_url {
        ctx.error(&path, format!("expected a {type_url}"));
        return Err(ConfigErrors(ctx.errors));
    }
    support::check_encoded(resource, &path, &mut ctx.errors);
    match type_url {
        t::CLUSTER => {
            if let Some(x) = decode_any::<c::v3::Cluster>(resource, &path, &mut ctx) {
                cluster::compile(&x, &path, &mut ctx);
            }
        }
        t::CLUSTER_LOAD_ASSIGNMENT => {
            if let Some(x) = decode_any::<e::v3::ClusterLoadAssignment>(resource, &path, &mut ctx) {
                cluster::assignment_endpoints(&x, &path, &mut ctx);
            }
        }
        t::LISTENER => {
            if let Some(x) = decode_any::<l::v3::Listener>(resource, &path, &mut ctx) {
                listener::compile(&x, &path, &mut ctx);
            }
        }
        t::ROUTE_CONFIGURATION => {
            if let Some(x) = decode_any::<r::v3::RouteConfiguration>(resource, &path, &mut ctx) {
                route::compile(&x, &path, &mut ctx);
            }
        }
        t::VIRTUAL_HOST => {
            if let Some(x) = decode_any::<r::v3::VirtualHost>(resource, &path, &mut ctx) {
                // As the route configuration it joins compiles it.
                let rc = r::v3::RouteConfiguration {
                    virtual_hosts: vec![x],
                    ..Default::default()
                };
                route::compile(&rc, &path, &mut ctx);
            }
        }
        other => ctx.error(&path, format!("weft does not take {other} over xDS")),
    }
    if ctx.errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(ctx.errors))
    }
}

/// A `google.protobuf.Duration` as a std duration; negative ones are errors.
pub fn duration(d: &protobuf::Duration, path: &str, ctx: &mut Context<'_>) -> Option<Duration> {
    if d.seconds < 0 || d.nanos < 0 {
        ctx.error(path, "must not be negative");
        return None;
    }
    Some(Duration::new(d.seconds as u64, d.nanos as u32))
}

/// An optional duration where zero means "disabled" (`None`) and absence means `default`.
pub fn timeout(
    d: Option<&protobuf::Duration>,
    default: Option<Duration>,
    path: &str,
    ctx: &mut Context<'_>,
) -> Option<Duration> {
    match d {
        None => default,
        Some(d) => duration(d, path, ctx).filter(|d| !d.is_zero()),
    }
}

/// An IP socket address (listeners and STATIC endpoints need literal IPs).
pub fn socket_address(
    addr: &core::Address,
    path: &str,
    ctx: &mut Context<'_>,
) -> Option<SocketAddr> {
    let (host, port) = host_port(addr, path, ctx)?;
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => Some(SocketAddr::new(ip, port)),
        Err(_) => {
            ctx.error(
                &format!("{path}.socket_address.address"),
                format!("{host:?} is not an IP address"),
            );
            None
        }
    }
}

/// Host and port of a socket address (the host may be a name, for DNS clusters).
pub fn host_port(addr: &core::Address, path: &str, ctx: &mut Context<'_>) -> Option<(String, u16)> {
    use core::address::Address as A;
    use core::socket_address::PortSpecifier;
    let Some(A::SocketAddress(sa)) = &addr.address else {
        ctx.error(path, "a socket_address is required");
        return None;
    };
    if sa.protocol != core::socket_address::Protocol::Tcp as i32 {
        ctx.error(
            &format!("{path}.socket_address.protocol"),
            "only TCP is supported",
        );
        return None;
    }
    let port = match &sa.port_specifier {
        Some(PortSpecifier::PortValue(p)) if *p <= 65535 => *p as u16,
        Some(PortSpecifier::PortValue(p)) => {
            ctx.error(
                &format!("{path}.socket_address.port_value"),
                format!("{p} is not a port"),
            );
            return None;
        }
        _ => {
            ctx.error(
                &format!("{path}.socket_address.port_value"),
                "a port is required",
            );
            return None;
        }
    };
    if sa.address.is_empty() {
        ctx.error(
            &format!("{path}.socket_address.address"),
            "an address is required",
        );
        return None;
    }
    Some((sa.address.clone(), port))
}

/// Refuses a field the support table lists as unsupported; it has usually said so at
/// the same path already, and once is enough.
pub fn unsupported(path: &str, ctx: &mut Context<'_>) {
    if !ctx.errors.iter().any(|e| e.path == path) {
        ctx.error(path, "this field is not supported by weft");
    }
}

/// Decodes an `Any` as `M`, checking its type URL.
pub fn decode_any<M: Message + Default + prost::Name>(
    any: &protobuf::Any,
    path: &str,
    ctx: &mut Context<'_>,
) -> Option<M> {
    if any.type_url != M::type_url() {
        ctx.error(
            path,
            format!("expected {}, got {}", M::type_url(), any.type_url),
        );
        return None;
    }
    match M::decode(any.value.as_slice()) {
        Ok(m) => Some(m),
        Err(e) => {
            ctx.error(path, format!("cannot decode {}: {e}", any.type_url));
            None
        }
    }
}

/// The message name in a type URL.
pub fn type_name(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or(type_url)
}
