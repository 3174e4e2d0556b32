//! `RouteConfiguration` → [`RouteTable`]: virtual hosts, matchers, actions, retries,
//! hash policies and header mutations, with every cluster a route names checked to
//! exist.

// Deprecated Envoy fields are still read: configurations written for older Envoy
// versions use them, and Envoy itself still honours them.
#![allow(deprecated)]

use super::{duration, timeout, Context};
use crate::cluster::hash::{HashKey, HashPolicy};
use crate::format::Template;
use crate::http::headers::{AppendAction, HeaderAdd, HeaderMutation, HeaderTemplate};
use crate::http::matcher::{
    full_match_regex, HeaderKey, HeaderMatcher, HeaderTest, QueryMatcher, StringMatch,
};
use crate::http::retry::{RetryOn, RetryPolicy, DEFAULT_BACKOFF_BASE};
use crate::http::route::{
    ClusterChoice, DirectResponse, Forward, GrpcTimeout, HostRewrite, PathMatch, Redirect,
    RedirectPath, Route, RouteAction, RouteMatch, RouteTable, VirtualHost, WeightedCluster,
};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use std::sync::Arc;
use std::time::Duration;
use weft_xds::pb::envoy::config::core::v3::{self as core, data_source};
use weft_xds::pb::envoy::config::route::v3 as rpb;
use weft_xds::pb::envoy::r#type::matcher::v3 as mpb;

/// Envoy's default route timeout.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);

/// Compiles a route configuration.
pub fn compile(
    rc: &rpb::RouteConfiguration,
    path: &str,
    ctx: &mut Context<'_>,
) -> Option<RouteTable> {
    let errors_before = ctx.errors.len();
    let name: Arc<str> = rc.name.as_str().into();
    let validate = rc
        .validate_clusters
        .as_ref()
        .map_or(ctx.validate_clusters, |v| v.value);
    let mut vhosts = Vec::new();
    let mut domains = Vec::new();
    for (i, vh) in rc.virtual_hosts.iter().enumerate() {
        let vpath = format!("{path}.virtual_hosts[{i}]");
        if vh.domains.is_empty() {
            ctx.error(
                &format!("{vpath}.domains"),
                "at least one domain is required",
            );
        }
        for (j, d) in vh.domains.iter().enumerate() {
            if d.is_empty()
                || (d.contains('*') && d != "*" && !d.starts_with('*') && !d.ends_with('*'))
            {
                ctx.error(
                    &format!("{vpath}.domains[{j}]"),
                    format!("{d:?}: a wildcard may only start or end a domain"),
                );
            }
        }
        if vh.require_tls != 0 {
            ctx.error(
                &format!("{vpath}.require_tls"),
                "require_tls is not supported yet",
            );
        }
        domains.push(vh.domains.clone());
        vhosts.push(virtual_host(&name, vh, &vpath, validate, ctx));
    }
    let request_headers = mutation(
        &rc.request_headers_to_add,
        &rc.request_headers_to_remove,
        &format!("{path}.request_headers_to_add"),
        ctx,
    );
    let response_headers = mutation(
        &rc.response_headers_to_add,
        &rc.response_headers_to_remove,
        &format!("{path}.response_headers_to_add"),
        ctx,
    );
    if ctx.errors.len() > errors_before {
        return None;
    }
    match RouteTable::new(name, vhosts, &domains, request_headers, response_headers) {
        Ok(t) => Some(t),
        Err(d) => {
            ctx.error(
                &format!("{path}.virtual_hosts"),
                format!("domain {:?} is used by more than one virtual host", d.0),
            );
            None
        }
    }
}

fn virtual_host(
    table: &str,
    vh: &rpb::VirtualHost,
    path: &str,
    validate: bool,
    ctx: &mut Context<'_>,
) -> VirtualHost {
    let vh_name: Arc<str> = vh.name.as_str().into();
    let vh_retry = vh
        .retry_policy
        .as_ref()
        .and_then(|r| retry_policy(r, &format!("{path}.retry_policy"), ctx))
        .map(Arc::new);
    let routes = vh
        .routes
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let rpath = format!("{path}.routes[{i}]");
            route(
                table,
                &vh_name,
                i,
                r,
                &rpath,
                validate,
                vh_retry.clone(),
                vh.include_request_attempt_count,
                ctx,
            )
        })
        .collect();
    VirtualHost {
        name: vh_name,
        routes,
        request_headers: mutation(
            &vh.request_headers_to_add,
            &vh.request_headers_to_remove,
            &format!("{path}.request_headers_to_add"),
            ctx,
        ),
        response_headers: mutation(
            &vh.response_headers_to_add,
            &vh.response_headers_to_remove,
            &format!("{path}.response_headers_to_add"),
            ctx,
        ),
        rbac: super::rbac::per_route(
            &vh.typed_per_filter_config,
            table,
            &format!("{path}.typed_per_filter_config"),
            ctx,
        ),
    }
}

#[allow(clippy::too_many_arguments)]
fn route(
    table: &str,
    vh: &str,
    index: usize,
    r: &rpb::Route,
    path: &str,
    validate: bool,
    vh_retry: Option<Arc<RetryPolicy>>,
    attempt_count: bool,
    ctx: &mut Context<'_>,
) -> Option<Route> {
    let name: Arc<str> = if r.name.is_empty() {
        format!("{vh}/{index}").into()
    } else {
        r.name.as_str().into()
    };
    let Some(m) = &r.r#match else {
        ctx.error(&format!("{path}.match"), "a match is required");
        return None;
    };
    let matcher = route_match(m, &format!("{path}.match"), ctx)?;
    let action = match &r.action {
        Some(rpb::route::Action::Route(a)) => RouteAction::Forward(Box::new(forward(
            a,
            &format!("{path}.route"),
            validate,
            vh_retry,
            attempt_count,
            ctx,
        )?)),
        Some(rpb::route::Action::Redirect(a)) => {
            RouteAction::Redirect(redirect(a, &format!("{path}.redirect"), ctx)?)
        }
        Some(rpb::route::Action::DirectResponse(a)) => {
            RouteAction::Direct(direct_response(a, &format!("{path}.direct_response"), ctx)?)
        }
        _ => {
            ctx.error(
                path,
                "one of route, redirect or direct_response is required",
            );
            return None;
        }
    };
    Some(Route {
        stats: Arc::new(ctx.metrics.route(table, vh, &name)),
        name,
        matcher,
        action,
        request_headers: mutation(
            &r.request_headers_to_add,
            &r.request_headers_to_remove,
            &format!("{path}.request_headers_to_add"),
            ctx,
        ),
        response_headers: mutation(
            &r.response_headers_to_add,
            &r.response_headers_to_remove,
            &format!("{path}.response_headers_to_add"),
            ctx,
        ),
        rbac: super::rbac::per_route(
            &r.typed_per_filter_config,
            table,
            &format!("{path}.typed_per_filter_config"),
            ctx,
        ),
    })
}

/// Compiles a `RouteMatch` (routes, and the JWT filter's rules).
pub fn route_match(m: &rpb::RouteMatch, path: &str, ctx: &mut Context<'_>) -> Option<RouteMatch> {
    use rpb::route_match::PathSpecifier as P;
    let case_sensitive = m.case_sensitive.is_none_or(|v| v.value);
    let path_match = match &m.path_specifier {
        Some(P::Prefix(p)) => PathMatch::Prefix(p.clone()),
        Some(P::Path(p)) => PathMatch::Exact(p.clone()),
        Some(P::SafeRegex(r)) => PathMatch::Regex(regex(r, &format!("{path}.safe_regex"), ctx)?),
        Some(P::PathSeparatedPrefix(p)) => {
            if p.contains(['?', '#']) || p.ends_with('/') {
                ctx.error(
                    &format!("{path}.path_separated_prefix"),
                    "must not end in '/' nor contain '?' or '#'",
                );
                return None;
            }
            PathMatch::SeparatedPrefix(p.clone())
        }
        Some(P::ConnectMatcher(_)) => PathMatch::Connect,
        Some(P::PathMatchPolicy(_)) => {
            ctx.error(
                &format!("{path}.path_match_policy"),
                "path_match_policy is not supported",
            );
            return None;
        }
        None => {
            ctx.error(path, "one of prefix, path, safe_regex, path_separated_prefix or connect_matcher is required");
            return None;
        }
    };
    let headers = m
        .headers
        .iter()
        .enumerate()
        .map(|(i, h)| header_matcher(h, &format!("{path}.headers[{i}]"), ctx))
        .collect::<Option<Vec<_>>>()?;
    let query = m
        .query_parameters
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let qpath = format!("{path}.query_parameters[{i}]");
            use rpb::query_parameter_matcher::QueryParameterMatchSpecifier as Q;
            let value = match &q.query_parameter_match_specifier {
                Some(Q::StringMatch(s)) => {
                    Some(string_matcher(s, &format!("{qpath}.string_match"), ctx)?)
                }
                Some(Q::PresentMatch(_)) | None => None,
            };
            Some(QueryMatcher {
                name: q.name.clone(),
                value,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let fraction = m
        .runtime_fraction
        .as_ref()
        .and_then(|f| f.default_value.as_ref())
        .map(|p| {
            let den = match p.denominator {
                1 => 10_000,
                2 => 1_000_000,
                _ => 100,
            };
            (u64::from(p.numerator), den)
        });
    Some(RouteMatch {
        path: path_match,
        case_sensitive,
        headers,
        query,
        grpc: m.grpc.is_some(),
        fraction,
    })
}

fn regex(r: &mpb::RegexMatcher, path: &str, ctx: &mut Context<'_>) -> Option<regex::Regex> {
    match full_match_regex(&r.regex) {
        Ok(re) => Some(re),
        Err(e) => {
            ctx.error(
                &format!("{path}.regex"),
                format!("invalid regex {:?}: {e}", r.regex),
            );
            None
        }
    }
}

/// Compiles a `StringMatcher`.
pub fn string_matcher(
    s: &mpb::StringMatcher,
    path: &str,
    ctx: &mut Context<'_>,
) -> Option<StringMatch> {
    use mpb::string_matcher::MatchPattern as M;
    let ic = s.ignore_case;
    Some(match &s.match_pattern {
        Some(M::Exact(v)) => StringMatch::Exact(v.clone(), ic),
        Some(M::Prefix(v)) => StringMatch::Prefix(v.clone(), ic),
        Some(M::Suffix(v)) => StringMatch::Suffix(v.clone(), ic),
        Some(M::Contains(v)) => StringMatch::Contains(v.clone(), ic),
        Some(M::SafeRegex(r)) => StringMatch::Regex(regex(r, &format!("{path}.safe_regex"), ctx)?),
        _ => {
            ctx.error(
                path,
                "one of exact, prefix, suffix, contains or safe_regex is required",
            );
            return None;
        }
    })
}

/// Compiles a `HeaderMatcher`.
pub fn header_matcher(
    h: &rpb::HeaderMatcher,
    path: &str,
    ctx: &mut Context<'_>,
) -> Option<HeaderMatcher> {
    use rpb::header_matcher::HeaderMatchSpecifier as H;
    let key = match HeaderKey::parse(&h.name) {
        Ok(k) => k,
        Err(e) => {
            ctx.error(&format!("{path}.name"), e);
            return None;
        }
    };
    let test = match &h.header_match_specifier {
        Some(H::ExactMatch(v)) => HeaderTest::String(StringMatch::Exact(v.clone(), false)),
        Some(H::PrefixMatch(v)) => HeaderTest::String(StringMatch::Prefix(v.clone(), false)),
        Some(H::SuffixMatch(v)) => HeaderTest::String(StringMatch::Suffix(v.clone(), false)),
        Some(H::ContainsMatch(v)) => HeaderTest::String(StringMatch::Contains(v.clone(), false)),
        Some(H::SafeRegexMatch(r)) => HeaderTest::String(StringMatch::Regex(regex(
            r,
            &format!("{path}.safe_regex_match"),
            ctx,
        )?)),
        Some(H::StringMatch(s)) => {
            HeaderTest::String(string_matcher(s, &format!("{path}.string_match"), ctx)?)
        }
        Some(H::RangeMatch(r)) => HeaderTest::Range(r.start, r.end),
        Some(H::PresentMatch(p)) => HeaderTest::Present(*p),
        None => HeaderTest::Present(true),
    };
    Some(HeaderMatcher {
        key,
        test,
        invert: h.invert_match,
        missing_as_empty: h.treat_missing_header_as_empty,
    })
}

fn forward(
    a: &rpb::RouteAction,
    path: &str,
    validate: bool,
    vh_retry: Option<Arc<RetryPolicy>>,
    attempt_count: bool,
    ctx: &mut Context<'_>,
) -> Option<Forward> {
    use rpb::route_action::ClusterSpecifier as C;
    let check_cluster = |name: &str, p: &str, ctx: &mut Context<'_>| {
        if validate && !ctx.cluster_names.contains(name) {
            ctx.error(p, format!("cluster {name:?} does not exist"));
        }
    };
    let cluster = match &a.cluster_specifier {
        Some(C::Cluster(name)) => {
            check_cluster(name, &format!("{path}.cluster"), ctx);
            ClusterChoice::Named(name.as_str().into())
        }
        Some(C::ClusterHeader(h)) => {
            match HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()) {
                Ok(h) => ClusterChoice::Header(h),
                Err(_) => {
                    ctx.error(&format!("{path}.cluster_header"), "invalid header name");
                    return None;
                }
            }
        }
        Some(C::WeightedClusters(w)) => {
            let wpath = format!("{path}.weighted_clusters");
            let mut arms = Vec::new();
            for (i, c) in w.clusters.iter().enumerate() {
                let cpath = format!("{wpath}.clusters[{i}]");
                if !c.cluster_header.is_empty() {
                    ctx.error(&format!("{cpath}.cluster_header"), "not supported");
                }
                check_cluster(&c.name, &format!("{cpath}.name"), ctx);
                arms.push(WeightedCluster {
                    name: c.name.as_str().into(),
                    weight: u64::from(c.weight.map_or(0, |w| w.value)),
                    request_headers: mutation(
                        &c.request_headers_to_add,
                        &c.request_headers_to_remove,
                        &format!("{cpath}.request_headers_to_add"),
                        ctx,
                    ),
                    response_headers: mutation(
                        &c.response_headers_to_add,
                        &c.response_headers_to_remove,
                        &format!("{cpath}.response_headers_to_add"),
                        ctx,
                    ),
                });
            }
            let total: u64 = arms.iter().map(|a| a.weight).sum();
            if total == 0 {
                ctx.error(&wpath, "the weights must not all be zero");
            }
            ClusterChoice::Weighted(arms, total)
        }
        _ => {
            ctx.error(
                path,
                "one of cluster, cluster_header or weighted_clusters is required",
            );
            return None;
        }
    };
    let cluster_not_found = match a.cluster_not_found_response_code {
        1 => StatusCode::NOT_FOUND,
        2 => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let regex_rewrite = match &a.regex_rewrite {
        Some(r) => {
            let Some(pattern) = &r.pattern else {
                ctx.error(
                    &format!("{path}.regex_rewrite.pattern"),
                    "a pattern is required",
                );
                return None;
            };
            match regex::Regex::new(&pattern.regex) {
                Ok(re) => Some((re, envoy_substitution(&r.substitution))),
                Err(e) => {
                    ctx.error(
                        &format!("{path}.regex_rewrite.pattern.regex"),
                        format!("invalid regex: {e}"),
                    );
                    return None;
                }
            }
        }
        None => None,
    };
    use rpb::route_action::HostRewriteSpecifier as Hr;
    let host_rewrite = match &a.host_rewrite_specifier {
        None => HostRewrite::None,
        Some(Hr::HostRewriteLiteral(h)) => match HeaderValue::from_str(h) {
            Ok(v) => HostRewrite::Literal(v),
            Err(_) => {
                ctx.error(&format!("{path}.host_rewrite_literal"), "invalid host");
                return None;
            }
        },
        Some(Hr::AutoHostRewrite(b)) if b.value => HostRewrite::Auto,
        Some(Hr::AutoHostRewrite(_)) => HostRewrite::None,
        Some(Hr::HostRewriteHeader(h)) => {
            match HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()) {
                Ok(h) => HostRewrite::Header(h),
                Err(_) => {
                    ctx.error(
                        &format!("{path}.host_rewrite_header"),
                        "invalid header name",
                    );
                    return None;
                }
            }
        }
        Some(_) => {
            ctx.error(path, "this host rewrite is not supported");
            return None;
        }
    };
    if !a.prefix_rewrite.is_empty() && regex_rewrite.is_some() {
        ctx.error(
            &format!("{path}.prefix_rewrite"),
            "prefix_rewrite and regex_rewrite exclude each other",
        );
    }
    let route_timeout = timeout(
        a.timeout.as_ref(),
        Some(DEFAULT_ROUTE_TIMEOUT),
        &format!("{path}.timeout"),
        ctx,
    );
    let idle_timeout = a
        .idle_timeout
        .as_ref()
        .and_then(|d| duration(d, &format!("{path}.idle_timeout"), ctx))
        .filter(|d| !d.is_zero());
    let retry = match &a.retry_policy {
        Some(r) => retry_policy(r, &format!("{path}.retry_policy"), ctx).map(Arc::new),
        None => vh_retry,
    };
    let hash_policy = a
        .hash_policy
        .iter()
        .enumerate()
        .map(|(i, h)| hash_policy(h, &format!("{path}.hash_policy[{i}]"), ctx))
        .collect::<Option<Vec<_>>>()?;
    let mut connect_terminate = false;
    let upgrades = a
        .upgrade_configs
        .iter()
        .map(|u| {
            if u.connect_config.is_some() {
                connect_terminate = true;
            }
            (
                u.upgrade_type.to_ascii_lowercase(),
                u.enabled.is_none_or(|e| e.value),
            )
        })
        .collect();
    let msd = a.max_stream_duration.as_ref();
    let grpc_timeout = GrpcTimeout {
        max: msd
            .and_then(|m| m.grpc_timeout_header_max.as_ref())
            .or(a.max_grpc_timeout.as_ref())
            .and_then(|d| {
                duration(
                    d,
                    &format!("{path}.max_stream_duration.grpc_timeout_header_max"),
                    ctx,
                )
            })
            .filter(|d| !d.is_zero()),
        offset: msd
            .and_then(|m| m.grpc_timeout_header_offset.as_ref())
            .or(a.grpc_timeout_offset.as_ref())
            .and_then(|d| {
                duration(
                    d,
                    &format!("{path}.max_stream_duration.grpc_timeout_header_offset"),
                    ctx,
                )
            })
            .unwrap_or_default(),
    };
    let max_stream_duration = msd
        .and_then(|m| m.max_stream_duration.as_ref())
        .and_then(|d| {
            duration(
                d,
                &format!("{path}.max_stream_duration.max_stream_duration"),
                ctx,
            )
        })
        .filter(|d| !d.is_zero());
    if a.priority != 0 {
        ctx.error(
            &format!("{path}.priority"),
            "only the DEFAULT routing priority is supported",
        );
    }
    Some(Forward {
        cluster,
        cluster_not_found,
        prefix_rewrite: (!a.prefix_rewrite.is_empty()).then(|| a.prefix_rewrite.clone()),
        regex_rewrite,
        host_rewrite,
        timeout: route_timeout,
        idle_timeout,
        retry,
        hash_policy,
        upgrades,
        connect_terminate,
        grpc_timeout,
        max_stream_duration,
        include_attempt_count: attempt_count,
    })
}

/// RE2 substitutions write groups as `\1`; the regex crate wants `${1}`.
fn envoy_substitution(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek().is_some_and(char::is_ascii_digit) => {
                let d = chars.next().unwrap_or('0');
                out.push_str(&format!("${{{d}}}"));
            }
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

fn retry_policy(r: &rpb::RetryPolicy, path: &str, ctx: &mut Context<'_>) -> Option<RetryPolicy> {
    let on = match RetryOn::parse(&r.retry_on) {
        Ok(on) => on,
        Err(e) => {
            ctx.error(&format!("{path}.retry_on"), e);
            return None;
        }
    };
    if !r.retry_host_predicate.is_empty() || r.retry_priority.is_some() {
        ctx.error(
            path,
            "retry host predicates and retry priorities are not supported",
        );
    }
    let base = r
        .retry_back_off
        .as_ref()
        .and_then(|b| b.base_interval.as_ref())
        .and_then(|d| duration(d, &format!("{path}.retry_back_off.base_interval"), ctx))
        .unwrap_or(DEFAULT_BACKOFF_BASE)
        .max(Duration::from_millis(1));
    let max = r
        .retry_back_off
        .as_ref()
        .and_then(|b| b.max_interval.as_ref())
        .and_then(|d| duration(d, &format!("{path}.retry_back_off.max_interval"), ctx))
        .unwrap_or(base * 10);
    if max < base {
        ctx.error(
            &format!("{path}.retry_back_off.max_interval"),
            "must not be below base_interval",
        );
    }
    let headers = |list: &[rpb::HeaderMatcher], p: &str, ctx: &mut Context<'_>| {
        list.iter()
            .enumerate()
            .filter_map(|(i, h)| header_matcher(h, &format!("{p}[{i}]"), ctx))
            .collect::<Vec<_>>()
    };
    Some(RetryPolicy {
        on,
        num_retries: r.num_retries.map_or(1, |n| n.value),
        per_try_timeout: r
            .per_try_timeout
            .as_ref()
            .and_then(|d| duration(d, &format!("{path}.per_try_timeout"), ctx))
            .filter(|d| !d.is_zero()),
        backoff_base: base,
        backoff_max: max,
        retriable_status_codes: r.retriable_status_codes.iter().map(|c| *c as u16).collect(),
        retriable_headers: headers(
            &r.retriable_headers,
            &format!("{path}.retriable_headers"),
            ctx,
        ),
        retriable_request_headers: headers(
            &r.retriable_request_headers,
            &format!("{path}.retriable_request_headers"),
            ctx,
        ),
    })
}

fn hash_policy(
    h: &rpb::route_action::HashPolicy,
    path: &str,
    ctx: &mut Context<'_>,
) -> Option<HashPolicy> {
    use rpb::route_action::hash_policy::PolicySpecifier as P;
    let key = match &h.policy_specifier {
        Some(P::Header(hd)) => match HeaderKey::parse(&hd.header_name) {
            Ok(k) => HashKey::Header(k),
            Err(e) => {
                ctx.error(&format!("{path}.header.header_name"), e);
                return None;
            }
        },
        Some(P::Cookie(c)) => {
            if c.ttl.is_some() {
                ctx.error(
                    &format!("{path}.cookie.ttl"),
                    "generated cookies are not supported yet",
                );
                return None;
            }
            HashKey::Cookie(c.name.clone())
        }
        Some(P::ConnectionProperties(c)) if c.source_ip => HashKey::SourceIp,
        Some(P::QueryParameter(q)) => HashKey::QueryParameter(q.name.clone()),
        _ => {
            ctx.error(path, "one of header, cookie, connection_properties.source_ip or query_parameter is required");
            return None;
        }
    };
    Some(HashPolicy {
        key,
        terminal: h.terminal,
    })
}

fn redirect(r: &rpb::RedirectAction, path: &str, ctx: &mut Context<'_>) -> Option<Redirect> {
    use rpb::redirect_action::{
        PathRewriteSpecifier as Pr, RedirectResponseCode as Code, SchemeRewriteSpecifier as S,
    };
    let scheme = match &r.scheme_rewrite_specifier {
        Some(S::HttpsRedirect(true)) => Some("https".to_string()),
        Some(S::SchemeRedirect(s)) if !s.is_empty() => Some(s.to_ascii_lowercase()),
        _ => None,
    };
    let path_rw = match &r.path_rewrite_specifier {
        None => RedirectPath::Keep,
        Some(Pr::PathRedirect(p)) => RedirectPath::Path(p.clone()),
        Some(Pr::PrefixRewrite(p)) => RedirectPath::Prefix(p.clone()),
        Some(Pr::RegexRewrite(rr)) => {
            let Some(pattern) = &rr.pattern else {
                ctx.error(
                    &format!("{path}.regex_rewrite.pattern"),
                    "a pattern is required",
                );
                return None;
            };
            match regex::Regex::new(&pattern.regex) {
                Ok(re) => RedirectPath::Regex(re, envoy_substitution(&rr.substitution)),
                Err(e) => {
                    ctx.error(
                        &format!("{path}.regex_rewrite.pattern.regex"),
                        format!("invalid regex: {e}"),
                    );
                    return None;
                }
            }
        }
        Some(_) => {
            ctx.error(path, "this path rewrite is not supported");
            return None;
        }
    };
    let status = match Code::try_from(r.response_code) {
        Ok(Code::Found) => StatusCode::FOUND,
        Ok(Code::SeeOther) => StatusCode::SEE_OTHER,
        Ok(Code::TemporaryRedirect) => StatusCode::TEMPORARY_REDIRECT,
        Ok(Code::PermanentRedirect) => StatusCode::PERMANENT_REDIRECT,
        _ => StatusCode::MOVED_PERMANENTLY,
    };
    let port = match r.port_redirect {
        0 => None,
        p if p <= 65535 => Some(p as u16),
        p => {
            ctx.error(
                &format!("{path}.port_redirect"),
                format!("{p} is not a port"),
            );
            return None;
        }
    };
    Some(Redirect {
        scheme,
        host: (!r.host_redirect.is_empty()).then(|| r.host_redirect.clone()),
        port,
        path: path_rw,
        status,
        strip_query: r.strip_query,
    })
}

fn direct_response(
    d: &rpb::DirectResponseAction,
    path: &str,
    ctx: &mut Context<'_>,
) -> Option<DirectResponse> {
    let status = match StatusCode::from_u16(d.status as u16) {
        Ok(s) if (200..600).contains(&d.status) => s,
        _ => {
            ctx.error(
                &format!("{path}.status"),
                format!("{} is not a status between 200 and 599", d.status),
            );
            return None;
        }
    };
    let body = match d.body.as_ref().and_then(|b| b.specifier.as_ref()) {
        None => None,
        Some(data_source::Specifier::InlineString(s)) => Some(Bytes::from(s.clone())),
        Some(data_source::Specifier::InlineBytes(b)) => Some(Bytes::from(b.clone())),
        Some(data_source::Specifier::Filename(f)) => match std::fs::read(f) {
            Ok(b) => Some(Bytes::from(b)),
            Err(e) => {
                ctx.error(
                    &format!("{path}.body.filename"),
                    format!("cannot read {f}: {e}"),
                );
                return None;
            }
        },
        Some(_) => {
            ctx.error(
                &format!("{path}.body"),
                "environment variables are not supported",
            );
            return None;
        }
    };
    Some(DirectResponse { status, body })
}

/// Compiles header additions and removals.
pub fn mutation(
    add: &[core::HeaderValueOption],
    remove: &[String],
    path: &str,
    ctx: &mut Context<'_>,
) -> HeaderMutation {
    let mut m = HeaderMutation::default();
    for (i, opt) in add.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let Some(h) = &opt.header else {
            ctx.error(&format!("{p}.header"), "a header is required");
            continue;
        };
        let name = match HeaderName::from_bytes(h.key.to_ascii_lowercase().as_bytes()) {
            Ok(n) if !h.key.starts_with(':') && !h.key.eq_ignore_ascii_case("host") => n,
            _ => {
                ctx.error(
                    &format!("{p}.header.key"),
                    format!("{:?} cannot be set", h.key),
                );
                continue;
            }
        };
        let raw = if h.raw_value.is_empty() {
            h.value.clone()
        } else {
            String::from_utf8_lossy(&h.raw_value).into_owned()
        };
        let value = match Template::parse(&raw) {
            Ok(t) if t.is_static() => match HeaderValue::from_str(&raw.replace("%%", "%")) {
                Ok(v) => HeaderTemplate::Static(v),
                Err(_) => {
                    ctx.error(&format!("{p}.header.value"), "invalid header value");
                    continue;
                }
            },
            Ok(t) => HeaderTemplate::Format(t),
            Err(e) => {
                ctx.error(&format!("{p}.header.value"), e.to_string());
                continue;
            }
        };
        use core::header_value_option::HeaderAppendAction as A;
        let action = match (opt.append, A::try_from(opt.append_action)) {
            (Some(append), _) => {
                if append.value {
                    AppendAction::AppendIfExistsOrAdd
                } else {
                    AppendAction::OverwriteIfExistsOrAdd
                }
            }
            (None, Ok(A::AddIfAbsent)) => AppendAction::AddIfAbsent,
            (None, Ok(A::OverwriteIfExistsOrAdd)) => AppendAction::OverwriteIfExistsOrAdd,
            (None, Ok(A::OverwriteIfExists)) => AppendAction::OverwriteIfExists,
            _ => AppendAction::AppendIfExistsOrAdd,
        };
        m.add.push(HeaderAdd {
            name,
            value,
            action,
            keep_empty: opt.keep_empty_value,
        });
    }
    for (i, r) in remove.iter().enumerate() {
        match HeaderName::from_bytes(r.to_ascii_lowercase().as_bytes()) {
            Ok(n) if !r.starts_with(':') && !r.eq_ignore_ascii_case("host") => m.remove.push(n),
            _ => ctx.error(
                &format!("{}[{i}]", path.replace("_to_add", "_to_remove")),
                format!("{r:?} cannot be removed"),
            ),
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutions() {
        assert_eq!(envoy_substitution(r"/v2/\1/x"), "/v2/${1}/x");
        assert_eq!(envoy_substitution("a$b"), "a$$b");
    }
}
