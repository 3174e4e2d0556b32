//! Ingress gateways (`WEFT_ROLE=gateway`): which Gateway resources select a gateway
//! proxy (their `selector` labels all among its labels, Gateways of any namespace, as
//! Istio does by default), one listener per gateway port that some selected Gateway
//! serves HTTP on, and the route configuration of each such port: the VirtualServices
//! bound to those Gateways, one virtual host per host that both the VirtualService and
//! a server name.
//!
//! A listener's route configuration is named `gateway|PORT|ns/name,...` after the port
//! and the Gateways serving it, so that the name alone says what it holds and every
//! gateway proxy with the same Gateways shares it.

use super::envoy::{self, Routes};
use super::listener::ProxyInfo;
use super::route::{self, gateway_ref, RouteContext, Scope};
use super::services::{fqdn, Services};
use super::Diagnostics;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use weft_model::networking::gateway::Server;
use weft_model::networking::{Gateway, VirtualService};
use weft_xds::pb::envoy::config::listener::v3::Listener;
use weft_xds::pb::envoy::config::route::v3 as r;
use weft_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use weft_xds::pb::google::protobuf::BoolValue;

/// Gateway resources: (namespace, name, spec).
pub type Gateways = Vec<(String, String, Gateway)>;

/// VirtualServices bound to at least one gateway other than `mesh`: (namespace, name,
/// spec), in the order they were applied.
pub type GatewayVirtualServices = Vec<(String, String, VirtualService)>;

/// The prefix of gateway route configuration names.
pub const ROUTES_PREFIX: &str = "gateway|";

/// The route configuration name for a server port and the Gateways serving it.
pub fn routes_name(port: u16, gateways: &BTreeSet<(String, String)>) -> String {
    let list: Vec<String> = gateways
        .iter()
        .map(|(ns, name)| format!("{ns}/{name}"))
        .collect();
    format!("{ROUTES_PREFIX}{port}|{}", list.join(","))
}

/// The port and Gateways a [`routes_name`] names.
pub fn parse_routes_name(name: &str) -> Option<(u16, BTreeSet<(String, String)>)> {
    let rest = name.strip_prefix(ROUTES_PREFIX)?;
    let (port, list) = rest.split_once('|')?;
    let port = port.parse().ok()?;
    let gateways = list
        .split(',')
        .filter(|g| !g.is_empty())
        .map(|g| {
            let (ns, name) = g.split_once('/')?;
            Some((ns.to_string(), name.to_string()))
        })
        .collect::<Option<BTreeSet<_>>>()?;
    Some((port, gateways))
}

/// Whether a Gateway's selector picks a proxy with these labels (an empty selector
/// picks every gateway proxy).
pub fn selects(gateway: &Gateway, labels: &BTreeMap<String, String>) -> bool {
    gateway
        .selector
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
}

/// What a server is, for the translation.
enum ServerKind {
    /// Plain HTTP, HTTP/2 or gRPC; `https_redirect` answers every request with a redirect
    /// to HTTPS.
    Http { https_redirect: bool },
    /// Not served yet (TLS, TCP, ...), and why.
    Unsupported(&'static str),
}

fn kind(server: &Server) -> ServerKind {
    let protocol = server
        .port
        .as_ref()
        .map(|p| p.protocol.to_ascii_uppercase())
        .unwrap_or_default();
    match protocol.as_str() {
        "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB" => ServerKind::Http {
            https_redirect: server.tls.as_ref().and_then(|t| t.https_redirect) == Some(true),
        },
        "HTTPS" | "TLS" => ServerKind::Unsupported("TLS servers are not supported yet"),
        _ => ServerKind::Unsupported("only HTTP, HTTP2 and GRPC servers are supported yet"),
    }
}

fn server_port(server: &Server) -> Option<u16> {
    server
        .port
        .as_ref()
        .and_then(|p| u16::try_from(p.number).ok())
}

/// The Gateways that select `proxy` and serve HTTP on `port`.
fn serving(
    proxy: &ProxyInfo,
    gateways: &Gateways,
    port: u16,
    diagnostics: &mut Diagnostics,
) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (ns, name, gw) in gateways {
        if !selects(gw, &proxy.labels) {
            continue;
        }
        for server in gw.servers.iter().filter(|s| server_port(s) == Some(port)) {
            match kind(server) {
                ServerKind::Http { .. } => {
                    if server.bind.is_some() || server.default_endpoint.is_some() {
                        diagnostics.warn(format!(
                            "Gateway {ns}/{name}: server on port {port}: bind and defaultEndpoint are not supported; the gateway listens on its inbound address"
                        ));
                    }
                    out.insert((ns.clone(), name.clone()));
                }
                ServerKind::Unsupported(why) => diagnostics.warn(format!(
                    "Gateway {ns}/{name}: server on port {port} was left out: {why}"
                )),
            }
        }
    }
    out
}

/// The name of the listener for a server port.
pub fn listener_name(port: u16) -> String {
    format!("gateway|{port}")
}

/// A gateway proxy's listeners: one per gateway port some selected Gateway serves HTTP
/// on, bound to (inbound address, bind port).
pub fn listeners(
    proxy: &ProxyInfo,
    gateways: &Gateways,
    diagnostics: &mut Diagnostics,
) -> Vec<Listener> {
    let address = proxy
        .inbound_address
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let mut out = Vec::new();
    let mut done = BTreeSet::new();
    for &(port, bind) in &proxy.gateway_ports {
        if !done.insert(port) {
            diagnostics.warn(format!(
                "gateway {}/{}: port {port} is listed twice in its gateway ports; the first is used",
                proxy.namespace, proxy.service
            ));
            continue;
        }
        let names = serving(proxy, gateways, port, diagnostics);
        if names.is_empty() {
            continue;
        }
        let mut manager = envoy::http_manager(
            &format!("gateway_{port}"),
            Routes::Rds(routes_name(port, &names)),
            &["websocket"],
        );
        // At the edge: the peer's address is the client's, and `Host: name:port` finds
        // the virtual host of `name` (Envoy does not strip the port on its own).
        manager.use_remote_address = Some(BoolValue { value: true });
        manager.strip_port_mode =
            Some(hcm::http_connection_manager::StripPortMode::StripAnyHostPort(true));
        out.push(envoy::http_listener(
            &listener_name(port),
            SocketAddr::new(address, bind),
            &manager,
        ));
    }
    // Servers the proxy has no port for are worth a word: nothing listens for them.
    for (ns, name, gw) in gateways {
        if !selects(gw, &proxy.labels) {
            continue;
        }
        for port in gw.servers.iter().filter_map(server_port) {
            if !done.contains(&port) {
                diagnostics.warn(format!(
                    "Gateway {ns}/{name}: gateway {}/{} has no port for server port {port} (WEFT_GATEWAY_PORTS)",
                    proxy.namespace, proxy.service
                ));
            }
        }
    }
    out
}

/// The route configuration names a gateway proxy's listeners use.
pub fn route_names(
    proxy: &ProxyInfo,
    gateways: &Gateways,
    diagnostics: &mut Diagnostics,
) -> Vec<String> {
    let mut out = Vec::new();
    for &(port, _) in &proxy.gateway_ports {
        let names = serving(proxy, gateways, port, diagnostics);
        if !names.is_empty() {
            out.push(routes_name(port, &names));
        }
    }
    out.dedup();
    out
}

/// Whether host pattern `wide` covers every name `narrow` covers (Istio's host
/// matching: `*` covers all, `*.example.com` covers `a.example.com` and
/// `*.a.example.com`, not `example.com`).
pub fn covers(wide: &str, narrow: &str) -> bool {
    if wide == narrow || wide == "*" {
        return true;
    }
    match wide.strip_prefix('*') {
        Some(suffix) => narrow != "*" && narrow.len() > suffix.len() && narrow.ends_with(suffix),
        None => false,
    }
}

/// The hosts both patterns cover, when one covers the other: the narrower one.
pub fn intersect(server_host: &str, vs_host: &str) -> Option<String> {
    if covers(server_host, vs_host) {
        Some(vs_host.to_string())
    } else if covers(vs_host, server_host) {
        Some(server_host.to_string())
    } else {
        None
    }
}

/// A VirtualService host as a gateway matches it: a service's full name for a name
/// that resolves (`productpage` in its namespace), other names as written.
fn vs_host(services: &Services, host: &str, namespace: &str) -> String {
    if let Some(svc) = services.resolve(host, namespace) {
        return svc.hostname.clone();
    }
    if host != "*" && !host.contains('.') && host.parse::<IpAddr>().is_err() {
        return fqdn(host, namespace);
    }
    host.to_ascii_lowercase()
}

/// Whether a server host (`[namespace/]host`) of a Gateway in `gateway_namespace`
/// admits a VirtualService of `vs_namespace`, and its host part.
fn server_host<'a>(host: &'a str, gateway_namespace: &str, vs_namespace: &str) -> Option<&'a str> {
    match host.split_once('/') {
        None | Some(("*", _)) => Some(host.rsplit('/').next().unwrap_or(host)),
        Some((".", h)) if vs_namespace == gateway_namespace => Some(h),
        Some((ns, h)) if ns == vs_namespace => Some(h),
        Some(_) => None,
    }
}

/// The route configuration for a server port of the given Gateways.
pub fn gateway_routes(
    ctx: &RouteContext<'_>,
    gateways: &Gateways,
    vss: &GatewayVirtualServices,
    port: u16,
    names: &BTreeSet<(String, String)>,
    diagnostics: &mut Diagnostics,
) -> r::RouteConfiguration {
    // Virtual hosts by domain: routes in the order VirtualServices were applied, as
    // Istio merges VirtualServices for one host.
    let mut hosts: BTreeMap<String, Vec<r::Route>> = BTreeMap::new();
    let mut redirects: BTreeSet<String> = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for (gns, gname, gw) in gateways {
        let key = (gns.clone(), gname.clone());
        if !names.contains(&key) {
            continue;
        }
        let only_this = BTreeSet::from([key.clone()]);
        for server in gw.servers.iter().filter(|s| server_port(s) == Some(port)) {
            let ServerKind::Http { https_redirect } = kind(server) else {
                continue;
            };
            for (vns, vname, vs) in vss {
                let bound = vs
                    .gateways
                    .iter()
                    .filter_map(|g| gateway_ref(g, vns))
                    .any(|g| g == key);
                if !bound {
                    continue;
                }
                let mut domains = BTreeSet::new();
                for h in &server.hosts {
                    let Some(shost) = server_host(h, gns, vns) else {
                        continue;
                    };
                    let shost = shost.to_ascii_lowercase();
                    for vh in &vs.hosts {
                        if let Some(d) = intersect(&shost, &vs_host(ctx.services, vh, vns)) {
                            domains.insert(d);
                        }
                    }
                }
                for domain in domains {
                    if !seen.insert((vns.clone(), vname.clone(), domain.clone())) {
                        continue;
                    }
                    if https_redirect {
                        redirects.insert(domain.clone());
                        hosts.entry(domain).or_default();
                        continue;
                    }
                    let routes = route::virtual_service_routes(
                        ctx,
                        vs,
                        vname,
                        vns,
                        Scope::Gateways {
                            port,
                            gateways: &only_this,
                        },
                        diagnostics,
                    );
                    hosts.entry(domain).or_default().extend(routes);
                }
            }
        }
    }
    let virtual_hosts = hosts
        .into_iter()
        .filter_map(|(domain, routes)| {
            let routes = if redirects.contains(&domain) {
                vec![https_redirect()]
            } else {
                routes
            };
            (!routes.is_empty()).then(|| r::VirtualHost {
                name: format!("{domain}:{port}"),
                domains: vec![domain],
                routes,
                ..Default::default()
            })
        })
        .collect();
    r::RouteConfiguration {
        name: routes_name(port, names),
        virtual_hosts,
        validate_clusters: Some(BoolValue { value: false }),
        ..Default::default()
    }
}

/// `tls.httpsRedirect`: every request is sent to the same URL over HTTPS.
fn https_redirect() -> r::Route {
    r::Route {
        name: "https-redirect".into(),
        r#match: Some(r::RouteMatch {
            path_specifier: Some(r::route_match::PathSpecifier::Prefix("/".into())),
            ..Default::default()
        }),
        action: Some(r::route::Action::Redirect(r::RedirectAction {
            scheme_rewrite_specifier: Some(
                r::redirect_action::SchemeRewriteSpecifier::HttpsRedirect(true),
            ),
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns_follow_istio() {
        assert!(covers("*", "a.example.com"));
        assert!(covers("*", "*"));
        assert!(covers("*.example.com", "a.example.com"));
        assert!(covers("*.example.com", "*.a.example.com"));
        assert!(covers("*.com", "*.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(!covers("*.example.com", "*"));
        assert!(!covers("a.example.com", "b.example.com"));
        assert_eq!(intersect("*", "*").as_deref(), Some("*"));
        assert_eq!(
            intersect("*.example.com", "*").as_deref(),
            Some("*.example.com")
        );
        assert_eq!(
            intersect("*", "bookinfo.example.com").as_deref(),
            Some("bookinfo.example.com")
        );
        assert_eq!(intersect("a.example.com", "b.example.com"), None);
    }

    #[test]
    fn server_hosts_limit_namespaces() {
        assert_eq!(server_host("*", "gw", "app"), Some("*"));
        assert_eq!(server_host("*/a.com", "gw", "app"), Some("a.com"));
        assert_eq!(server_host("./a.com", "gw", "app"), None);
        assert_eq!(server_host("./a.com", "app", "app"), Some("a.com"));
        assert_eq!(server_host("app/a.com", "gw", "app"), Some("a.com"));
        assert_eq!(server_host("other/a.com", "gw", "app"), None);
    }

    #[test]
    fn route_names_round_trip() {
        let names = BTreeSet::from([
            ("istio-system".to_string(), "gw".to_string()),
            ("default".to_string(), "bookinfo-gateway".to_string()),
        ]);
        let n = routes_name(8080, &names);
        assert_eq!(n, "gateway|8080|default/bookinfo-gateway,istio-system/gw");
        assert_eq!(parse_routes_name(&n), Some((8080, names)));
        assert_eq!(parse_routes_name("gateway|x|a/b"), None);
        assert_eq!(parse_routes_name("outbound|default"), None);
    }
}
