//! `weft get services` and `weft describe service`: a service as the mesh sees it — its
//! instances and their health, its subsets, and the routes its callers follow, read
//! back from the translated Envoy routes so what is shown is what proxies do.

use crate::api::types::{PortInfo, RouteInfo, ServiceDescription, ServiceSummary, SubsetInfo};
use crate::mesh::MeshState;
use crate::translate::listener::outbound_routes_name;
use crate::translate::services::Service;
use prost::Message;
use std::collections::BTreeSet;
use weft_model::Spec;
use weft_xds::pb::envoy::config::route::v3 as r;
use weft_xds::pb::google::protobuf::Duration as PbDuration;
use weft_xds::type_url;

/// The summary line of a service.
pub fn summary(svc: &Service) -> ServiceSummary {
    ServiceSummary {
        name: svc.name.clone(),
        namespace: svc.namespace.clone(),
        hostname: svc.hostname.clone(),
        ports: svc
            .ports
            .values()
            .map(|p| PortInfo {
                name: p.name.clone(),
                number: p.number,
                protocol: p.protocol.clone(),
            })
            .collect(),
        instances: svc.instances.len(),
        healthy: svc.instances.iter().filter(|i| i.healthy).count(),
    }
}

/// Every service, optionally of one namespace.
pub fn list(state: &MeshState, namespace: Option<&str>) -> Vec<ServiceSummary> {
    state
        .snapshot
        .services
        .by_host
        .values()
        .filter(|s| namespace.is_none_or(|ns| s.namespace == ns))
        .map(|s| summary(s))
        .collect()
}

/// One service in detail, or `None` when no service answers to `name` in `namespace`.
pub fn describe(state: &MeshState, namespace: &str, name: &str) -> Option<ServiceDescription> {
    let snapshot = &state.snapshot;
    let svc = snapshot.services.resolve(name, namespace)?;
    let mut subsets = Vec::new();
    let mut virtual_services = BTreeSet::new();
    let mut destination_rules = BTreeSet::new();
    for resource in state.resources.values() {
        let id = format!("{}/{}", resource.namespace(), resource.name());
        match &resource.spec {
            Spec::DestinationRule(dr) => {
                let resolves = snapshot
                    .services
                    .resolve(&dr.host, resource.namespace())
                    .is_some_and(|s| s.hostname == svc.hostname);
                if !resolves {
                    continue;
                }
                destination_rules.insert(id);
                for subset in &dr.subsets {
                    let selected: Vec<_> = svc
                        .instances
                        .iter()
                        .filter(|i| {
                            subset
                                .labels
                                .iter()
                                .all(|(k, v)| i.labels.get(k) == Some(v))
                        })
                        .collect();
                    subsets.push(SubsetInfo {
                        name: subset.name.clone(),
                        labels: subset.labels.clone(),
                        instances: selected.len(),
                        healthy: selected.iter().filter(|i| i.healthy).count(),
                    });
                }
            }
            Spec::VirtualService(vs) => {
                let names_it = vs.hosts.iter().any(|h| {
                    snapshot
                        .services
                        .resolve(h, resource.namespace())
                        .is_some_and(|s| s.hostname == svc.hostname)
                });
                if names_it {
                    virtual_services.insert(id);
                }
            }
            _ => {}
        }
    }
    let routes = routes(state, svc);
    let policies = policies(state, svc);
    let security = snapshot.security_view(svc);
    let warnings = snapshot
        .diagnostics
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .warnings
        .iter()
        .filter(|w| {
            w.contains(&svc.hostname)
                || virtual_services
                    .iter()
                    .chain(destination_rules.iter())
                    .any(|id| w.contains(id.as_str()))
        })
        .cloned()
        .collect();
    Some(ServiceDescription {
        service: summary(svc),
        instances: svc.instances.iter().map(|i| (**i).clone()).collect(),
        subsets,
        virtual_services: virtual_services.into_iter().collect(),
        destination_rules: destination_rules.into_iter().collect(),
        routes,
        policies,
        security,
        warnings,
    })
}

/// Security policies in the service's namespace that select any of its instances (by
/// `selector` labels, or by a `targetRef` naming the service), or the whole namespace.
fn policies(state: &MeshState, svc: &Service) -> Vec<String> {
    use weft_model::security::{PolicyTargetReference, WorkloadSelector};
    let selects = |selector: &Option<WorkloadSelector>, refs: &[&PolicyTargetReference]| {
        if !refs.is_empty() {
            return refs
                .iter()
                .any(|r| r.kind == "Service" && r.name == svc.name);
        }
        match selector {
            None => true,
            Some(sel) => svc.instances.iter().any(|i| {
                sel.match_labels
                    .iter()
                    .all(|(k, v)| i.labels.get(k) == Some(v))
            }),
        }
    };
    state
        .resources
        .values()
        .filter(|r| r.namespace() == svc.namespace)
        .filter(|r| match &r.spec {
            Spec::AuthorizationPolicy(p) => {
                let refs: Vec<_> = p.target_ref.iter().chain(p.target_refs.iter()).collect();
                selects(&p.selector, &refs)
            }
            Spec::RequestAuthentication(p) => {
                let refs: Vec<_> = p.target_ref.iter().chain(p.target_refs.iter()).collect();
                selects(&p.selector, &refs)
            }
            Spec::PeerAuthentication(p) => selects(&p.selector, &[]),
            _ => false,
        })
        .map(|r| format!("{} {}/{}", r.kind(), r.namespace(), r.name()))
        .collect()
}

/// The routes of the service's virtual hosts in its own namespace's outbound routes.
fn routes(state: &MeshState, svc: &Service) -> Vec<RouteInfo> {
    let name = outbound_routes_name(&svc.namespace);
    let names = BTreeSet::from([name]);
    let proxy = Default::default();
    let found = state
        .snapshot
        .resources_for(&proxy, type_url::ROUTE_CONFIGURATION, Some(&names));
    let Some(config) = found
        .first()
        .and_then(|res| r::RouteConfiguration::decode(res.body.value.as_slice()).ok())
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for vh in &config.virtual_hosts {
        let Some(port) = vh
            .name
            .strip_prefix(&svc.hostname)
            .and_then(|rest| rest.strip_prefix(':'))
            .and_then(|p| p.parse::<u16>().ok())
        else {
            continue;
        };
        for route in &vh.routes {
            let matches = describe_match(route.r#match.as_ref());
            if matches == "CONNECT" {
                continue;
            }
            out.push(RouteInfo {
                port,
                source: route_source(route),
                matches,
                action: describe_action(route, &svc.hostname),
            });
        }
    }
    out
}

/// The route's name: the VirtualService http route's `name`, else
/// `namespace/virtualservice/index`; empty for the service's default route.
fn route_source(route: &r::Route) -> String {
    if route.name == "default" {
        String::new()
    } else {
        route.name.clone()
    }
}

fn describe_match(m: Option<&r::RouteMatch>) -> String {
    use r::route_match::PathSpecifier as P;
    let Some(m) = m else {
        return "any".into();
    };
    let mut parts = Vec::new();
    match &m.path_specifier {
        Some(P::Prefix(p)) => parts.push(format!("prefix {p}")),
        Some(P::Path(p)) => parts.push(format!("path {p}")),
        Some(P::SafeRegex(re)) => parts.push(format!("regex {}", re.regex)),
        Some(P::PathSeparatedPrefix(p)) => parts.push(format!("prefix {p}")),
        Some(P::ConnectMatcher(_)) => return "CONNECT".into(),
        _ => {}
    }
    for h in &m.headers {
        parts.push(format!("header {}", header_text(h)));
    }
    for q in &m.query_parameters {
        parts.push(format!("query {}", q.name));
    }
    if parts.is_empty() {
        "any".into()
    } else {
        parts.join(", ")
    }
}

fn header_text(h: &r::HeaderMatcher) -> String {
    use r::header_matcher::HeaderMatchSpecifier as H;
    use weft_xds::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern as S;
    let not = if h.invert_match { "!" } else { "" };
    match &h.header_match_specifier {
        Some(H::StringMatch(s)) => match &s.match_pattern {
            Some(S::Exact(v)) => format!("{not}{}={v}", h.name),
            Some(S::Prefix(v)) => format!("{not}{}={v}*", h.name),
            Some(S::Suffix(v)) => format!("{not}{}=*{v}", h.name),
            Some(S::Contains(v)) => format!("{not}{}=*{v}*", h.name),
            Some(S::SafeRegex(re)) => format!("{not}{}~{}", h.name, re.regex),
            _ => format!("{not}{}", h.name),
        },
        Some(H::PresentMatch(true)) => format!("{not}{} present", h.name),
        Some(H::PresentMatch(false)) => format!("{not}{} absent", h.name),
        _ => format!("{not}{}", h.name),
    }
}

/// `outbound|9080|v1|reviews.default.svc.cluster.local` → `v1` (or `all` without a subset).
fn subset_of(cluster: &str, hostname: &str) -> String {
    let mut parts = cluster.split('|');
    let (_, port, subset, host) = (parts.next(), parts.next(), parts.next(), parts.next());
    match (port, subset, host) {
        (Some(port), Some(""), Some(h)) if h == hostname => format!("port {port}"),
        (Some(_), Some(s), Some(h)) if h == hostname => s.to_string(),
        (Some(port), Some(""), Some(h)) => format!("{h}:{port}"),
        (Some(port), Some(s), Some(h)) => format!("{h}:{port} {s}"),
        _ => cluster.to_string(),
    }
}

fn seconds(d: &PbDuration) -> String {
    let ms = d.seconds * 1000 + i64::from(d.nanos) / 1_000_000;
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn describe_action(route: &r::Route, hostname: &str) -> String {
    use r::route::Action as A;
    use r::route_action::ClusterSpecifier as C;
    match &route.action {
        Some(A::Route(a)) => {
            let mut parts = Vec::new();
            match &a.cluster_specifier {
                Some(C::Cluster(c)) => parts.push(subset_of(c, hostname)),
                Some(C::WeightedClusters(w)) => {
                    let total: u32 = w
                        .clusters
                        .iter()
                        .map(|c| c.weight.as_ref().map_or(0, |v| v.value))
                        .sum();
                    let split: Vec<String> = w
                        .clusters
                        .iter()
                        .map(|c| {
                            let weight = c.weight.as_ref().map_or(0, |v| v.value);
                            let percent = (weight * 100).checked_div(total).unwrap_or(0);
                            format!("{} {percent}%", subset_of(&c.name, hostname))
                        })
                        .collect();
                    parts.push(split.join(", "));
                }
                _ => {}
            }
            if let Some(t) = a.timeout.as_ref().filter(|t| t.seconds > 0 || t.nanos > 0) {
                parts.push(format!("timeout {}", seconds(t)));
            }
            if let Some(retry) = &a.retry_policy {
                let n = retry.num_retries.as_ref().map_or(1, |v| v.value);
                if n > 0 {
                    parts.push(format!("{n} retries on {}", retry.retry_on));
                }
            }
            if !a.prefix_rewrite.is_empty() {
                parts.push(format!("rewrite {}", a.prefix_rewrite));
            }
            parts.join("; ")
        }
        Some(A::Redirect(rd)) => {
            use r::redirect_action::PathRewriteSpecifier as P;
            let path = match &rd.path_rewrite_specifier {
                Some(P::PathRedirect(p)) => p.clone(),
                Some(P::PrefixRewrite(p)) => format!("{p}..."),
                _ => String::new(),
            };
            format!("redirect {}{path}", rd.host_redirect)
        }
        Some(A::DirectResponse(d)) => format!("respond {}", d.status),
        _ => "none".into(),
    }
}
