//! VirtualService HTTP routes → Envoy routes: matches, weighted destinations per
//! DestinationRule subset, rewrites, redirects, direct responses, timeouts, retries and
//! header edits, with Istio's defaults where the resource says nothing.

use super::cluster::cluster_name;
use super::services::{Service, Services};
use super::Diagnostics;
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

/// What routes need to know about the mesh.
pub struct RouteContext<'a> {
    /// Every service.
    pub services: &'a Services,
    /// DestinationRules by the FQDN of their host.
    pub rules: &'a std::collections::BTreeMap<String, (String, DestinationRule)>,
}

/// The default route of a service port: everything to its cluster.
pub fn default_route(svc: &Service, port: u16) -> r::Route {
    r::Route {
        name: "default".into(),
        r#match: Some(prefix_match("/")),
        action: Some(r::route::Action::Route(forward(
            cluster(&cluster_name(port, "", &svc.hostname)),
            None,
        ))),
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

/// Envoy routes for one VirtualService on one service port (of `vs_namespace`).
pub fn virtual_service_routes(
    ctx: &RouteContext<'_>,
    vs: &VirtualService,
    vs_name: &str,
    vs_namespace: &str,
    port: u16,
    diagnostics: &mut Diagnostics,
) -> Vec<r::Route> {
    let mut out = Vec::new();
    for (i, http) in vs.http.iter().enumerate() {
        let name = http
            .name
            .clone()
            .unwrap_or_else(|| format!("{vs_namespace}/{vs_name}/{i}"));
        let Some(action) = action(ctx, http, vs_namespace, port, &name, diagnostics) else {
            continue;
        };
        let matches: Vec<Option<&HttpMatchRequest>> = if http.matches.is_empty() {
            vec![None]
        } else {
            http.matches.iter().map(Some).collect()
        };
        for m in matches {
            if let Some(m) = m {
                if m.port.is_some_and(|p| p != u32::from(port)) {
                    continue;
                }
                if !m.source_labels.is_empty()
                    || m.source_namespace.is_some()
                    || !m.gateways.is_empty()
                {
                    diagnostics.warn(format!(
                        "{vs_namespace}/{vs_name}: route {name}: matching on the caller (sourceLabels, sourceNamespace, gateways) is not supported yet; the match is skipped"
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
                    let (add, remove) = header_ops(req);
                    route.request_headers_to_add = add;
                    route.request_headers_to_remove = remove;
                }
                if let Some(resp) = &h.response {
                    let (add, remove) = header_ops(resp);
                    route.response_headers_to_add = add;
                    route.response_headers_to_remove = remove;
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
    port: u16,
    name: &str,
    diagnostics: &mut Diagnostics,
) -> Option<r::route::Action> {
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
        let code = match rd.redirect_code.unwrap_or(301) {
            302 => RedirectResponseCode::Found,
            303 => RedirectResponseCode::SeeOther,
            307 => RedirectResponseCode::TemporaryRedirect,
            308 => RedirectResponseCode::PermanentRedirect,
            _ => RedirectResponseCode::MovedPermanently,
        };
        return Some(r::route::Action::Redirect(r::RedirectAction {
            host_redirect: rd.authority.clone().unwrap_or_default(),
            port_redirect: rd.port.unwrap_or(0),
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
            "route {name}: no destination (delegation is not supported yet)"
        ));
        return None;
    }
    let mut arms = Vec::new();
    let mut hash_policy = Vec::new();
    for d in &http.route {
        let Some(svc) = ctx.services.resolve(&d.destination.host, vs_namespace) else {
            diagnostics.warn(format!(
                "route {name}: destination host {:?} is not a known service",
                d.destination.host
            ));
            continue;
        };
        let dport = d
            .destination
            .port
            .map(|p| p.number as u16)
            .filter(|p| *p != 0)
            .or_else(|| {
                if svc.ports.contains_key(&port) {
                    Some(port)
                } else {
                    svc.default_port()
                }
            });
        let Some(dport) = dport else {
            diagnostics.warn(format!(
                "route {name}: service {} has no port",
                svc.hostname
            ));
            continue;
        };
        let subset = d.destination.subset.clone().unwrap_or_default();
        if !subset.is_empty() && !subset_exists(ctx, &svc.hostname, &subset) {
            diagnostics.warn(format!(
                "route {name}: subset {subset:?} of {} is not defined by a DestinationRule",
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
                (arm.request_headers_to_add, arm.request_headers_to_remove) = header_ops(req);
            }
            if let Some(resp) = &h.response {
                (arm.response_headers_to_add, arm.response_headers_to_remove) = header_ops(resp);
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
                        Err(_) => conditions.push(c.to_string()),
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

fn header_ops(ops: &HeaderOperations) -> (Vec<HeaderValueOption>, Vec<String>) {
    let option = |k: &String, v: &String, action: HeaderAppendAction| HeaderValueOption {
        header: Some(HeaderValue {
            key: k.clone(),
            value: v.clone(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    };
    let mut add: Vec<HeaderValueOption> = ops
        .set
        .iter()
        .map(|(k, v)| option(k, v, HeaderAppendAction::OverwriteIfExistsOrAdd))
        .collect();
    add.extend(
        ops.add
            .iter()
            .map(|(k, v)| option(k, v, HeaderAppendAction::AppendIfExistsOrAdd)),
    );
    (add, ops.remove.clone())
}
