//! Listeners and routes per proxy: a sidecar's inbound listeners (one per workload
//! port, in front of the local application) and its outbound listener (the HTTP proxy
//! the application reaches other services through, routed by the namespace's outbound
//! route configuration); and `api_listener`s for proxyless gRPC clients, named as they
//! dial. A gateway's listeners are `gateway.rs`'s.

use super::authorization::{self, AuthorizationPolicies, Target};
use super::envoy::{self, Routes};
use super::peer_authentication::{self, Decision, PeerAuthentications};
use super::request_authentication::{self, RequestAuthentications};
use super::route::{self, RouteContext, Scope};
use super::services::{is_http2_protocol, is_http_protocol, Service, ServicePort, Services};
use super::{mtls, Diagnostics, MeshSettings};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use weft_model::networking::VirtualService;
use weft_xds::pb::envoy::config::cluster::v3::Cluster;
use weft_xds::pb::envoy::config::core::v3::Node;
use weft_xds::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
use weft_xds::pb::envoy::config::route::v3 as r;
use weft_xds::pb::envoy::extensions::filters::network::tcp_proxy::v3 as tcp;

/// What a proxy's node metadata says about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyInfo {
    /// `sidecar`, `gateway`, or `proxyless` (no Weft metadata: a gRPC client).
    pub role: String,
    /// Service.
    pub service: String,
    /// Namespace.
    pub namespace: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Inbound address.
    pub inbound_address: Option<IpAddr>,
    /// Ports: (name, service port, app port, inbound port, protocol).
    pub ports: Vec<(String, u16, u16, u16, String)>,
    /// Outbound listener port.
    pub outbound_port: Option<u16>,
    /// Gateway ports: (Gateway server port, local port the listener binds). They differ
    /// when the gateway is reached through a port mapping, or in tests.
    pub gateway_ports: Vec<(u16, u16)>,
    /// Takes its outbound virtual hosts over VHDS ([`takes_vhds`]).
    pub vhds: bool,
}

pub use weft_xds::VHDS_CLIENT_FEATURE;

/// Whether a client gets its outbound virtual hosts over VHDS: a sidecar on delta ADS
/// (Envoy supports VHDS over delta only) that is Envoy or says it supports it. A route
/// change or a new service then sends one small virtual host, not the namespace's whole
/// route configuration (one virtual host per service of the mesh).
pub fn takes_vhds(node: &Node, role: &str, delta: bool) -> bool {
    delta
        && role == "sidecar"
        && (node.user_agent_name == "envoy"
            || node
                .client_features
                .iter()
                .any(|f| f == VHDS_CLIENT_FEATURE))
}

/// The VHDS resource name of virtual host `vhost` of route configuration `routes`.
pub fn vhds_name(routes: &str, vhost: &str) -> String {
    format!("{routes}/{vhost}")
}

/// The outbound route configuration of a VHDS client: no virtual hosts of its own,
/// they come over VHDS on the ADS stream.
pub fn outbound_routes_vhds(namespace: &str) -> r::RouteConfiguration {
    r::RouteConfiguration {
        name: outbound_routes_name(namespace),
        vhds: Some(r::Vhds {
            config_source: Some(envoy::ads()),
        }),
        validate_clusters: Some(weft_xds::pb::google::protobuf::BoolValue { value: false }),
        ..Default::default()
    }
}

/// The outbound route configuration name for a namespace.
pub fn outbound_routes_name(namespace: &str) -> String {
    format!("outbound|{namespace}")
}

/// VirtualServices by the FQDN of each host they name.
pub type VirtualServices = BTreeMap<String, Vec<(String, String, VirtualService)>>;

/// The outbound routes for clients in `namespace`: a virtual host per service port,
/// reachable by every alias (`reviews`, `reviews:9080`, `reviews.default`, the FQDN).
pub fn outbound_routes(
    ctx: &RouteContext<'_>,
    vss: &VirtualServices,
    namespace: &str,
    diagnostics: &mut Diagnostics,
) -> r::RouteConfiguration {
    let mut virtual_hosts = Vec::new();
    let mut used = BTreeSet::new();
    for svc in ctx.services.visible() {
        let first_http = svc.ports.values().find(|p| p.is_http()).map(|p| p.number);
        for port in svc.ports.values() {
            let mut vh = virtual_host(
                ctx,
                vss,
                svc,
                port,
                namespace,
                first_http == Some(port.number),
                diagnostics,
            );
            // The proxy refuses a route configuration where two virtual hosts share a
            // domain (a ServiceEntry host `a.b` and service `a` of namespace `b`).
            let vh_name = vh.name.clone();
            vh.domains.retain(|d| {
                let fresh = used.insert(d.clone());
                if !fresh {
                    diagnostics.warn(format!(
                        "{vh_name}: the name {d:?} already belongs to another service and was left out"
                    ));
                }
                fresh
            });
            if !vh.domains.is_empty() {
                virtual_hosts.push(vh);
            }
        }
    }
    r::RouteConfiguration {
        name: outbound_routes_name(namespace),
        virtual_hosts,
        validate_clusters: Some(weft_xds::pb::google::protobuf::BoolValue { value: false }),
        ..Default::default()
    }
}

fn virtual_host(
    ctx: &RouteContext<'_>,
    vss: &VirtualServices,
    svc: &Service,
    port: &ServicePort,
    client_namespace: &str,
    portless: bool,
    diagnostics: &mut Diagnostics,
) -> r::VirtualHost {
    let mut domains = Vec::new();
    for alias in svc
        .aliases(client_namespace)
        .into_iter()
        .map(|a| a.to_ascii_lowercase())
    {
        domains.push(format!("{alias}:{}", port.number));
        // Names without a port go to one port only (the first HTTP one), else the
        // domains would collide.
        if portless {
            domains.push(alias);
        }
    }
    let mut routes = Vec::new();
    if port.is_http() {
        for (ns, name, vs) in vss.get(&svc.hostname).into_iter().flatten() {
            routes.extend(route::virtual_service_routes(
                ctx,
                vs,
                name,
                ns,
                Scope::Mesh { port: port.number },
                diagnostics,
            ));
        }
        if routes.is_empty() {
            routes.push(route::default_route(ctx, svc, port.number));
        }
    }
    routes.push(route::connect_route(svc, port.number));
    r::VirtualHost {
        name: format!("{}:{}", svc.hostname, port.number),
        domains,
        routes,
        ..Default::default()
    }
}

/// Name of the per-sidecar cluster of the local application on `app_port`.
pub fn inbound_cluster_name(app_port: u16) -> String {
    format!("inbound|{app_port}||")
}

/// What decides how a sidecar's inbound ports take connections.
pub struct InboundSecurity<'a> {
    /// Every PeerAuthentication.
    pub peer_authentications: &'a PeerAuthentications,
    /// Every AuthorizationPolicy.
    pub authorization_policies: &'a AuthorizationPolicies,
    /// Every RequestAuthentication.
    pub request_authentications: &'a RequestAuthentications,
    /// The services, which `jwksUri`s may name.
    pub services: &'a Services,
    /// Trust domain and root namespace.
    pub settings: &'a MeshSettings,
}

impl InboundSecurity<'_> {
    fn target<'p>(&'p self, proxy: &'p ProxyInfo) -> Target<'p> {
        Target {
            namespace: &proxy.namespace,
            labels: &proxy.labels,
            root_namespace: &self.settings.root_namespace,
            trust_domain: &self.settings.trust_domain,
        }
    }

    /// The mTLS mode of one of `proxy`'s application ports.
    pub fn mode(
        &self,
        proxy: &ProxyInfo,
        app_port: u16,
        diagnostics: &mut Diagnostics,
    ) -> Decision {
        peer_authentication::resolve(
            self.peer_authentications,
            &self.settings.root_namespace,
            &proxy.namespace,
            &proxy.labels,
            app_port,
            diagnostics,
        )
    }
}

/// A sidecar's local clusters: its application, one per port.
pub fn local_clusters(proxy: &ProxyInfo) -> Vec<Cluster> {
    proxy
        .ports
        .iter()
        .map(|(_, _, app_port, _, protocol)| {
            let mut local = envoy::static_cluster(
                &inbound_cluster_name(*app_port),
                SocketAddr::new(IpAddr::from([127, 0, 0, 1]), *app_port),
                Duration::from_secs(10),
            );
            // A gRPC or HTTP/2 application speaks only HTTP/2.
            if is_http2_protocol(protocol) {
                envoy::set_http2(&mut local);
            }
            local
        })
        .collect()
}

/// A sidecar's listeners: inbound ones in front of [`local_clusters`], and the
/// outbound one.
pub fn sidecar(
    proxy: &ProxyInfo,
    security: &InboundSecurity<'_>,
    diagnostics: &mut Diagnostics,
) -> Vec<Listener> {
    let mut listeners = Vec::new();
    let inbound = proxy
        .inbound_address
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    for (name, _service_port, app_port, inbound_port, protocol) in &proxy.ports {
        let cluster = inbound_cluster_name(*app_port);
        let addr = SocketAddr::new(inbound, *inbound_port);
        let listener_name = format!("inbound|{inbound_port}");
        let mode = security.mode(proxy, *app_port, diagnostics).mode;
        if !is_http_protocol(protocol) {
            let mut l = tcp_listener(&listener_name, addr, &cluster);
            let rbac = authorization::network_filters(
                security.authorization_policies,
                &security.target(proxy),
                &listener_name.replace('|', "_"),
                diagnostics,
            );
            l.filter_chains[0].filters.splice(0..0, rbac);
            mtls::secure_inbound(&mut l, mode, &security.settings.trust_domain);
            listeners.push(l);
            continue;
        }
        let rc = r::RouteConfiguration {
            name: listener_name.clone(),
            virtual_hosts: vec![r::VirtualHost {
                name: format!("inbound|{name}"),
                domains: vec!["*".into()],
                routes: vec![r::Route {
                    r#match: Some(r::RouteMatch {
                        path_specifier: Some(r::route_match::PathSpecifier::Prefix("/".into())),
                        ..Default::default()
                    }),
                    action: Some(r::route::Action::Route(r::RouteAction {
                        cluster_specifier: Some(r::route_action::ClusterSpecifier::Cluster(
                            cluster.clone(),
                        )),
                        timeout: Some(envoy::duration(Duration::ZERO)),
                        upgrade_configs: vec![r::route_action::UpgradeConfig {
                            upgrade_type: "websocket".into(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut manager = envoy::http_manager(
            &format!("inbound_{inbound_port}"),
            Routes::Inline(Box::new(rc)),
            &["websocket"],
        );
        let target = security.target(proxy);
        // Istio's order: the token is verified before the policies read it.
        let mut filters: Vec<_> = request_authentication::http_filter(
            security.request_authentications,
            &target,
            security.services,
            diagnostics,
        )
        .into_iter()
        .collect();
        filters.extend(authorization::http_filters(
            security.authorization_policies,
            &target,
            diagnostics,
        ));
        manager.http_filters.splice(0..0, filters);
        let mut l = envoy::http_listener(&listener_name, addr, &manager);
        mtls::secure_inbound(&mut l, mode, &security.settings.trust_domain);
        listeners.push(l);
    }
    if let Some(port) = proxy.outbound_port {
        let manager = envoy::http_manager(
            "outbound",
            Routes::Rds(outbound_routes_name(&proxy.namespace)),
            &["websocket", "CONNECT"],
        );
        listeners.push(envoy::http_listener(
            "outbound",
            SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port),
            &manager,
        ));
    }
    listeners
}

fn tcp_listener(name: &str, addr: SocketAddr, cluster: &str) -> Listener {
    let proxy = tcp::TcpProxy {
        stat_prefix: name.replace('|', "_"),
        cluster_specifier: Some(tcp::tcp_proxy::ClusterSpecifier::Cluster(
            cluster.to_string(),
        )),
        ..Default::default()
    };
    Listener {
        name: name.to_string(),
        address: Some(envoy::address(&addr.ip().to_string(), addr.port())),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.tcp_proxy".into(),
                config_type: Some(filter::ConfigType::TypedConfig(envoy::any(&proxy))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// An `api_listener` for a proxyless gRPC client dialling `xds:///NAME` (`NAME` may
/// carry a port), or `None` when no service answers to the name.
pub fn api_listener(
    ctx: &RouteContext<'_>,
    vss: &VirtualServices,
    services: &Services,
    dialled: &str,
    diagnostics: &mut Diagnostics,
) -> Option<Listener> {
    let (host, port) = match dialled.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => (h, p.parse::<u16>().ok()),
        _ => (dialled, None),
    };
    let svc = services.resolve(host, "default")?;
    let port = port.or_else(|| svc.default_port())?;
    let port_info = svc.ports.get(&port)?;
    let mut vh = virtual_host(ctx, vss, svc, port_info, &svc.namespace, true, diagnostics);
    // gRPC matches the virtual host by the name as dialled.
    vh.domains = vec![dialled.to_string(), "*".into()];
    vh.routes.retain(|r| {
        !matches!(
            r.r#match.as_ref().and_then(|m| m.path_specifier.as_ref()),
            Some(r::route_match::PathSpecifier::ConnectMatcher(_))
        )
    });
    for route in &mut vh.routes {
        if let Some(r::route::Action::Route(a)) = &mut route.action {
            // gRPC clients reject what they do not implement: keep routing, drop extras.
            a.upgrade_configs.clear();
            a.retry_policy = None;
            // gRPC reads the route timeout from max_stream_duration only (gRFC A31).
            let timeout = a.timeout.take().filter(|t| t.seconds > 0 || t.nanos > 0);
            a.max_stream_duration = timeout.map(|t| r::route_action::MaxStreamDuration {
                max_stream_duration: Some(t),
                ..Default::default()
            });
        }
    }
    let rc = r::RouteConfiguration {
        name: dialled.to_string(),
        virtual_hosts: vec![vh],
        ..Default::default()
    };
    let manager = envoy::http_manager(dialled, Routes::Inline(Box::new(rc)), &[]);
    Some(envoy::api_listener(dialled, &manager))
}
