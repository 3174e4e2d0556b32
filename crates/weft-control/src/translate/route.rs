//! VirtualService HTTP routes → Envoy routes: matches, weighted destinations per
//! DestinationRule subset, rewrites, redirects, direct responses, timeouts, retries and
//! header edits, with Istio's defaults where the resource says nothing.

use super::cluster::cluster_name;
use super::services::{Service, Services};
use super::Diagnostics;
use std::collections::BTreeSet;
use weft_model::networking::destination_rule::DestinationRule;
use weft_model::networking::virtual_service::{
    HeaderOperations, HttpMatchRequest, HttpRoute, VirtualService,
};
use weft_model::networking::StringMatch;
use weft_xds::pb::envoy::config::core::v3::{
    header_value_option::HeaderAppendAction, HeaderValue, HeaderValueOption,
};
use weft_xds::pb::envoy::config::route::v3 as r;
use weft_xds::pb::envoy::r#type::matcher::v3::{
    string_matcher, RegexMatchAndSubstitute, RegexMatcher, StringMatcher,
};
use weft_xds::pb::google::protobuf::{BoolValue, UInt32Value};

/// Istio's default retry policy for HTTP routes.
pub const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
/// Istio's default retry attempts.
pub const DEFAULT_ATTEMPTS: u32 = 2;

/// Retry conditions the proxy implements (Envoy's `x-envoy-retry-on` and
/// `x-envoy-retry-grpc-on` names).
const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "connect-failure",
    "refused-stream",
    "reset",
    "reset-before-request",
    "retriable-4xx",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// What routes need to know about the mesh.
pub struct RouteContext<'a> {
    /// Every service.
    pub services: &'a Services,
    /// DestinationRules by the FQDN of their host.
    pub rules: &'a std::collections::BTreeMap<String, (String, DestinationRule)>,
}

/// The default route of a service port: everything to its cluster, hashed as its
/// DestinationRule asks (consistent hashing needs no VirtualService).
pub fn default_route(ctx: &RouteContext<'_>, svc: &Service, port: u16) -> r::Route {
    let mut action = forward(cluster(&cluster_name(port, "", &svc.hostname)), None);
    action.hash_policy =
        super::cluster::hash_policy(ctx.rules.get(&svc.hostname).map(|(_, dr)| dr), port, "");
    r::Route {
        name: "default".into(),
        r#match: Some(prefix_match("/")),
        action: Some(r::route::Action::Route(action)),
        ..Default::default()
    }
}

/// A route that tunnels CONNECT requests to the service port's cluster over TCP.
pub fn connect_route(svc: &Service, port: u16) -> r::Route {
    let mut action = forward(cluster(&cluster_name(port, "", &svc.hostname)), None);
    action.upgrade_configs = vec![r::route_action::UpgradeConfig {
        upgrade_type: "CONNECT".into(),
        connect_config: Some(Default::default()),
        ..Default::default()
    }];
    r::Route {
        name: "connect".into(),
        r#match: Some(r::RouteMatch {
            path_specifier: Some(r::route_match::PathSpecifier::ConnectMatcher(
                Default::default(),
            )),
            ..Default::default()
        }),
        action: Some(r::route::Action::Route(action)),
        ..Default::default()
    }
}

fn prefix_match(p: &str) -> r::RouteMatch {
    r::RouteMatch {
        path_specifier: Some(r::route_match::PathSpecifier::Prefix(p.into())),
        ..Default::default()
    }
}

fn cluster(name: &str) -> r::route_action::ClusterSpecifier {
    r::route_action::ClusterSpecifier::Cluster(name.to_string())
}

/// A route action with Istio's defaults: no timeout, retries on connection failures.
fn forward(
    target: r::route_action::ClusterSpecifier,
    timeout: Option<std::time::Duration>,
) -> r::RouteAction {
    r::RouteAction {
        cluster_specifier: Some(target),
        timeout: Some(super::envoy::duration(timeout.unwrap_or_default())),
        retry_policy: Some(r::RetryPolicy {
            retry_on: DEFAULT_RETRY_ON.into(),
            num_retries: Some(UInt32Value {
                value: DEFAULT_ATTEMPTS,
            }),
            retriable_status_codes: vec![503],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Where routes are built for: the sidecars of the mesh, or some gateways.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Sidecars' outbound routes (the `mesh` gateway) on a service port.
    Mesh {
        /// The service port.
        port: u16,
    },
    /// A gateway server port, for these gateways (`namespace`, `name`).
    Gateways {
        /// The server port.
        port: u16,
        /// The gateways.
        gateways: &'a BTreeSet<(String, String)>,
    },
}

impl Scope<'_> {
    /// The port requests arrive on, which `match.port` compares with.
    pub fn port(&self) -> u16 {
        match self {
            Scope::Mesh { port } | Scope::Gateways { port, .. } => *port,
        }
    }

    /// Whether a match block's `gateways` (written in `vs_namespace`) include this
    /// scope; an empty list inherits the VirtualService's, already checked.
    fn admits(&self, gateways: &[String], vs_namespace: &str) -> bool {
        if gateways.is_empty() {
            return true;
        }
        match self {
            Scope::Mesh { .. } => gateways.iter().any(|g| g == MESH),
            Scope::Gateways { gateways: ours, .. } => gateways
                .iter()
                .filter_map(|g| gateway_ref(g, vs_namespace))
                .any(|g| ours.contains(&g)),
        }
    }
}

/// The reserved gateway name for the sidecars of the mesh.
pub const MESH: &str = "mesh";

/// A gateway as a VirtualService names it, resolved: `name` in the VirtualService's
/// namespace, `namespace/name` as written; `None` for `mesh`.
pub fn gateway_ref(entry: &str, vs_namespace: &str) -> Option<(String, String)> {
    if entry == MESH {
        return None;
    }
    Some(match entry.split_once('/') {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => (vs_namespace.to_string(), entry.to_string()),
    })
}

/// Envoy routes for one VirtualService (of `vs_namespace`) in `scope`.
pub fn virtual_service_routes(
    ctx: &RouteContext<'_>,
    vs: &VirtualService,
    vs_name: &str,
    vs_namespace: &str,
    scope: Scope<'_>,
    diagnostics: &mut Diagnostics,
) -> Vec<r::Route> {
    let port = scope.port();
    let mut out = Vec::new();
    for (i, http) in vs.http.iter().enumerate() {
        let name = http
            .name
            .clone()
            .unwrap_or_else(|| format!("{vs_namespace}/{vs_name}/{i}"));
        let matches: Vec<Option<&HttpMatchRequest>> = if http.matches.is_empty() {
            vec![None]
        } else {
            http.matches
                .iter()
                .filter(|m| m.port.is_none_or(|p| p == u32::from(port)))
                .filter(|m| scope.admits(&m.gateways, vs_namespace))
                .map(Some)
                .collect()
        };
        if matches.is_empty() {
            continue;
        }
        let label = format!("{vs_namespace}/{vs_name}: route {name}");
        let Some(action) = action(ctx, http, vs_namespace, scope, &label, diagnostics) else {
            continue;
        };
        for m in matches {
            if let Some(m) = m {
                if !m.source_labels.is_empty() || m.source_namespace.is_some() {
                    diagnostics.warn(format!(
                        "{vs_namespace}/{vs_name}: route {name}: matching on the caller (sourceLabels, sourceNamespace) is not supported yet; the match is skipped"
                    ));
                    continue;
                }
            }
            let route_match = match m {
                Some(m) => match_request(m),
                None => prefix_match("/"),
            };
            let mut route = r::Route {
                name: name.clone(),
                r#match: Some(route_match),
                action: Some(action.clone()),
                ..Default::default()
            };
            if let Some(h) = &http.headers {
                if let Some(req) = &h.request {
                    let ops = header_ops(req);
                    route.request_headers_to_add = ops.add;
                    route.request_headers_to_remove = ops.remove;
                    // The authority is not a header to the proxy: it is rewritten.
                    if let (Some(authority), Some(r::route::Action::Route(a))) =
                        (ops.authority, &mut route.action)
                    {
                        a.host_rewrite_specifier = Some(
                            r::route_action::HostRewriteSpecifier::HostRewriteLiteral(authority),
                        );
                    }
                }
                if let Some(resp) = &h.response {
                    let ops = header_ops(resp);
                    route.response_headers_to_add = ops.add;
                    route.response_headers_to_remove = ops.remove;
                }
            }
            // A rewrite of the matched prefix needs the match to know what it replaces.
            if let (Some(rw), Some(r::route::Action::Route(a))) = (&http.rewrite, &mut route.action)
            {
                if let Some(uri) = &rw.uri {
                    match m.and_then(|m| m.uri.as_ref()) {
                        Some(StringMatch::Prefix(_)) | None => a.prefix_rewrite = uri.clone(),
                        Some(StringMatch::Exact(_)) | Some(StringMatch::Regex(_)) => {
                            a.regex_rewrite = Some(RegexMatchAndSubstitute {
                                pattern: Some(regex("^.*$")),
                                substitution: uri.clone(),
                            })
                        }
                    }
                }
            }
            out.push(route);
        }
        if http.fault.is_some()
            || http.mirror.is_some()
            || !http.mirrors.is_empty()
            || http.cors_policy.is_some()
        {
            diagnostics.warn(format!(
                "{vs_namespace}/{vs_name}: route {name}: fault injection, mirroring and CORS are not supported yet and were left out"
            ));
        }
    }
    out
}

fn action(
    ctx: &RouteContext<'_>,
    http: &HttpRoute,
    vs_namespace: &str,
    scope: Scope<'_>,
    // Names the route in warnings.
    name: &str,
    diagnostics: &mut Diagnostics,
) -> Option<r::route::Action> {
    let port = scope.port();
    if let Some(d) = &http.direct_response {
        use weft_model::networking::virtual_service::HttpBody;
        let body = d
            .body
            .as_ref()
            .map(|b| weft_xds::pb::envoy::config::core::v3::DataSource {
                specifier: Some(match b {
                    HttpBody::String(s) => {
                        weft_xds::pb::envoy::config::core::v3::data_source::Specifier::InlineString(
                            s.clone(),
                        )
                    }
                    HttpBody::Bytes(b) => {
                        weft_xds::pb::envoy::config::core::v3::data_source::Specifier::InlineBytes(
                            {
                                use base64::Engine;
                                base64::engine::general_purpose::STANDARD
                                    .decode(b)
                                    .unwrap_or_default()
                            },
                        )
                    }
                }),
                ..Default::default()
            });
        return Some(r::route::Action::DirectResponse(r::DirectResponseAction {
            status: d.status,
            body,
            ..Default::default()
        }));
    }
    if let Some(rd) = &http.redirect {
        use r::redirect_action::{
            PathRewriteSpecifier, RedirectResponseCode, SchemeRewriteSpecifier,
        };
        use weft_model::networking::virtual_service::RedirectPortSelection;
        let code = match rd.redirect_code.unwrap_or(301) {
            302 => RedirectResponseCode::Found,
            303 => RedirectResponseCode::SeeOther,
            307 => RedirectResponseCode::TemporaryRedirect,
            308 => RedirectResponseCode::PermanentRedirect,
            _ => RedirectResponseCode::MovedPermanently,
        };
        // The proxy cannot read the request's port back, but routes are built per port.
        let derived = match rd.derive_port {
            Some(RedirectPortSelection::FromRequestPort) => u32::from(port),
            _ => 0,
        };
        return Some(r::route::Action::Redirect(r::RedirectAction {
            host_redirect: rd.authority.clone().unwrap_or_default(),
            port_redirect: rd.port.unwrap_or(derived),
            response_code: code as i32,
            scheme_rewrite_specifier: rd
                .scheme
                .clone()
                .map(SchemeRewriteSpecifier::SchemeRedirect),
            path_rewrite_specifier: rd.uri.clone().map(PathRewriteSpecifier::PathRedirect),
            ..Default::default()
        }));
    }
    if http.route.is_empty() {
        diagnostics.warn(format!(
            "{name}: no destination (delegation is not supported yet)"
        ));
        return None;
    }
    let mut arms = Vec::new();
    let mut hash_policy = Vec::new();
    for d in &http.route {
        let Some(svc) = ctx.services.resolve(&d.destination.host, vs_namespace) else {
            diagnostics.warn(format!(
                "{name}: destination host {:?} is not a known service",
                d.destination.host
            ));
            continue;
        };
        let dport = d
            .destination
            .port
            .map(|p| p.number as u16)
            .filter(|p| *p != 0)
            .or_else(|| match scope {
                // A sidecar keeps the port the caller used when the destination has it.
                Scope::Mesh { port } if svc.ports.contains_key(&port) => Some(port),
                _ => svc.default_port(),
            });
        let Some(dport) = dport else {
            diagnostics.warn(format!("{name}: service {} has no port", svc.hostname));
            continue;
        };
        let subset = d.destination.subset.clone().unwrap_or_default();
        if !subset.is_empty() && !subset_exists(ctx, &svc.hostname, &subset) {
            diagnostics.warn(format!(
                "{name}: subset {subset:?} of {} is not defined by a DestinationRule",
                svc.hostname
            ));
        }
        if hash_policy.is_empty() {
            hash_policy = super::cluster::hash_policy(
                ctx.rules.get(&svc.hostname).map(|(_, dr)| dr),
                dport,
                &subset,
            );
        }
        let mut arm = r::weighted_cluster::ClusterWeight {
            name: cluster_name(dport, &subset, &svc.hostname),
            weight: Some(UInt32Value {
                value: d
                    .weight
                    .unwrap_or(if http.route.len() == 1 { 100 } else { 0 })
                    .max(0) as u32,
            }),
            ..Default::default()
        };
        if let Some(h) = &d.headers {
            if let Some(req) = &h.request {
                let ops = header_ops(req);
                (arm.request_headers_to_add, arm.request_headers_to_remove) = (ops.add, ops.remove);
                if ops.authority.is_some() {
                    diagnostics.warn(format!(
                        "{name}: setting the authority per destination is not supported yet and was left out (set it for the route)"
                    ));
                }
            }
            if let Some(resp) = &h.response {
                let ops = header_ops(resp);
                (arm.response_headers_to_add, arm.response_headers_to_remove) =
                    (ops.add, ops.remove);
            }
        }
        arms.push(arm);
    }
    if arms.is_empty() {
        return None;
    }
    let target = if arms.len() == 1
        && arms[0].request_headers_to_add.is_empty()
        && arms[0].response_headers_to_add.is_empty()
    {
        cluster(&arms[0].name)
    } else {
        if arms
            .iter()
            .all(|a| a.weight.as_ref().is_none_or(|w| w.value == 0))
        {
            for a in &mut arms {
                a.weight = Some(UInt32Value { value: 1 });
            }
        }
        r::route_action::ClusterSpecifier::WeightedClusters(r::WeightedCluster {
            clusters: arms,
            ..Default::default()
        })
    };
    let mut a = forward(target, http.timeout.map(|t| t.as_std()));
    a.hash_policy = hash_policy;
    if let Some(retries) = &http.retries {
        if retries.attempts <= 0 {
            a.retry_policy = None;
        } else if let Some(p) = &mut a.retry_policy {
            p.num_retries = Some(UInt32Value {
                value: retries.attempts as u32,
            });
            if let Some(on) = &retries.retry_on {
                // Istio lets bare status codes sit among the conditions.
                let mut conditions = Vec::new();
                let mut codes = Vec::new();
                for c in on.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                    match c.parse::<u32>() {
                        Ok(code) => codes.push(code),
                        Err(_) if RETRY_ON.contains(&c) => conditions.push(c.to_string()),
                        Err(_) => diagnostics.warn(format!(
                            "{name}: retry condition {c:?} is not supported and was left out"
                        )),
                    }
                }
                if !codes.is_empty() && !conditions.iter().any(|c| c == "retriable-status-codes") {
                    conditions.push("retriable-status-codes".into());
                }
                p.retry_on = conditions.join(",");
                p.retriable_status_codes = codes;
            }
            p.per_try_timeout = retries
                .per_try_timeout
                .map(|d| super::envoy::duration(d.as_std()));
        }
    }
    if let Some(rw) = &http.rewrite {
        if let Some(auth) = &rw.authority {
            a.host_rewrite_specifier = Some(
                r::route_action::HostRewriteSpecifier::HostRewriteLiteral(auth.clone()),
            );
        }
        if let Some(re) = &rw.uri_regex_rewrite {
            a.regex_rewrite = Some(RegexMatchAndSubstitute {
                pattern: Some(regex(&re.pattern)),
                substitution: re.rewrite.clone(),
            });
        }
    }
    a.upgrade_configs = vec![r::route_action::UpgradeConfig {
        upgrade_type: "websocket".into(),
        ..Default::default()
    }];
    Some(r::route::Action::Route(a))
}

fn subset_exists(ctx: &RouteContext<'_>, host: &str, subset: &str) -> bool {
    ctx.rules
        .get(host)
        .is_some_and(|(_, dr)| dr.subsets.iter().any(|s| s.name == subset))
}

fn regex(re: &str) -> RegexMatcher {
    RegexMatcher {
        regex: re.to_string(),
        ..Default::default()
    }
}

fn string_match(m: &StringMatch, ignore_case: bool) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(match m {
            StringMatch::Exact(s) => string_matcher::MatchPattern::Exact(s.clone()),
            StringMatch::Prefix(s) => string_matcher::MatchPattern::Prefix(s.clone()),
            StringMatch::Regex(s) => string_matcher::MatchPattern::SafeRegex(regex(s)),
        }),
        ignore_case,
    }
}

fn header(name: &str, m: &StringMatch, invert: bool) -> r::HeaderMatcher {
    r::HeaderMatcher {
        name: name.to_string(),
        invert_match: invert,
        header_match_specifier: Some(r::header_matcher::HeaderMatchSpecifier::StringMatch(
            string_match(m, false),
        )),
        ..Default::default()
    }
}

fn match_request(m: &HttpMatchRequest) -> r::RouteMatch {
    use r::route_match::PathSpecifier as P;
    let path = match &m.uri {
        None => P::Prefix("/".into()),
        Some(StringMatch::Exact(p)) => P::Path(p.clone()),
        Some(StringMatch::Prefix(p)) => P::Prefix(p.clone()),
        Some(StringMatch::Regex(re)) => P::SafeRegex(regex(re)),
    };
    let mut headers = Vec::new();
    for (name, value) in [
        (":method", &m.method),
        (":authority", &m.authority),
        (":scheme", &m.scheme),
    ] {
        if let Some(v) = value {
            headers.push(header(name, v, false));
        }
    }
    for (name, v) in &m.headers {
        headers.push(header(name, v, false));
    }
    for (name, v) in &m.without_headers {
        headers.push(header(name, v, true));
    }
    let query_parameters = m
        .query_params
        .iter()
        .map(|(name, v)| r::QueryParameterMatcher {
            name: name.clone(),
            query_parameter_match_specifier: Some(
                r::query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(
                    string_match(v, false),
                ),
            ),
        })
        .collect();
    r::RouteMatch {
        path_specifier: Some(path),
        case_sensitive: m
            .ignore_uri_case
            .filter(|i| *i)
            .map(|_| BoolValue { value: false }),
        headers,
        query_parameters,
        ..Default::default()
    }
}

/// Header edits as Envoy takes them.
struct HeaderOps {
    add: Vec<HeaderValueOption>,
    remove: Vec<String>,
    /// A new authority (`host` or `:authority` set or added), a rewrite to the proxy.
    authority: Option<String>,
}

fn header_ops(ops: &HeaderOperations) -> HeaderOps {
    let option = |k: &String, v: &String, action: HeaderAppendAction| HeaderValueOption {
        header: Some(HeaderValue {
            key: k.clone(),
            value: v.clone(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    };
    let is_authority = |k: &str| k.eq_ignore_ascii_case("host") || k == ":authority";
    let mut authority = None;
    let mut add = Vec::new();
    for (k, v) in &ops.set {
        if is_authority(k) {
            authority = Some(v.clone());
        } else {
            add.push(option(k, v, HeaderAppendAction::OverwriteIfExistsOrAdd));
        }
    }
    for (k, v) in &ops.add {
        if is_authority(k) {
            authority.get_or_insert_with(|| v.clone());
        } else {
            add.push(option(k, v, HeaderAppendAction::AppendIfExistsOrAdd));
        }
    }
    HeaderOps {
        add,
        remove: ops.remove.clone(),
        authority,
    }
}
