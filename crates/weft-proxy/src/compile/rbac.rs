//! RBAC configuration → [`Engine`]s: the policies (`envoy.config.rbac.v3`), the HTTP
//! filter (`envoy.extensions.filters.http.rbac.v3.RBAC`) and its per-route override
//! (`RBACPerRoute`), and the network filter (`...filters.network.rbac.v3.RBAC`).
//! Fields outside `support.rs`'s table (matchers, shadow rules, conditions, filter
//! state, custom principals, ...) are refused there with their path; what is left is
//! checked here as Envoy validates it.

// `source_ip` is deprecated in Envoy's API but still honoured (and still written).
#![allow(deprecated)]

use super::metadata::metadata_matcher;
use super::route::{header_matcher, string_matcher};
use super::{decode_any, unsupported, Context};
use crate::http::rbac::{HttpRbac, RbacOverrides};
use crate::rbac::matcher::{Cidr, Permission, Principal};
use crate::rbac::network::NetworkRbac;
use crate::rbac::{Action, Engine, Policy};
use prost::Name;
use std::collections::HashMap;
use std::sync::Arc;
use weft_xds::pb::envoy::config::core::v3::CidrRange;
use weft_xds::pb::envoy::config::rbac::v3 as rpb;
use weft_xds::pb::envoy::extensions::filters::http::rbac::v3 as http_rbac;
use weft_xds::pb::envoy::extensions::filters::network::rbac::v3 as net_rbac;
use weft_xds::pb::envoy::r#type::matcher::v3 as mpb;
use weft_xds::pb::google::protobuf::Any;

/// Whether `type_url` is the HTTP RBAC filter's configuration.
pub fn is_http_filter(type_url: &str) -> bool {
    type_url == http_rbac::Rbac::type_url()
}

/// Whether `type_url` is the network RBAC filter's configuration.
pub fn is_network_filter(type_url: &str) -> bool {
    type_url == net_rbac::Rbac::type_url()
}

/// Compiles the HTTP RBAC filter named `name` of the connection manager whose stat
/// prefix is `hcm_stat_prefix`.
pub fn http_filter(
    name: &str,
    any: &Any,
    hcm_stat_prefix: &str,
    path: &str,
    ctx: &mut Context<'_>,
) -> Option<HttpRbac> {
    let f: http_rbac::Rbac = decode_any(any, path, ctx)?;
    let engine = http_rules(&f, hcm_stat_prefix, path, ctx)?;
    Some(HttpRbac {
        name: name.into(),
        engine,
    })
}

/// The rules of an HTTP filter configuration, counted under `base` (and its
/// `rules_stat_prefix`); `Some(None)` when it has none.
fn http_rules(
    f: &http_rbac::Rbac,
    base: &str,
    path: &str,
    ctx: &mut Context<'_>,
) -> Option<Option<Arc<Engine>>> {
    let Some(rules) = &f.rules else {
        return Some(None);
    };
    let prefix = stat_prefix(base, &f.rules_stat_prefix);
    let engine = engine(rules, Scope::Http, &prefix, &format!("{path}.rules"), ctx)?;
    Some(Some(Arc::new(engine)))
}

/// `RBACPerRoute` overrides from a route's or virtual host's `typed_per_filter_config`
/// (at `path`), in the route configuration `route_config`. Other per-filter
/// configurations are refused: no other filter runs.
pub fn per_route(
    configs: &HashMap<String, Any>,
    route_config: &str,
    path: &str,
    ctx: &mut Context<'_>,
) -> RbacOverrides {
    let mut overrides = RbacOverrides::default();
    let mut keys: Vec<&String> = configs.keys().collect();
    keys.sort();
    for key in keys {
        let any = &configs[key];
        let kpath = format!("{path}[{key:?}]");
        if any.type_url != http_rbac::RbacPerRoute::type_url() {
            ctx.error(
                &kpath,
                format!(
                    "per-filter configuration {} is not supported (only {} is)",
                    any.type_url,
                    http_rbac::RbacPerRoute::type_url()
                ),
            );
            continue;
        }
        let Some(per_route) = decode_any::<http_rbac::RbacPerRoute>(any, &kpath, ctx) else {
            continue;
        };
        // No `rbac`, or one without rules, turns the filter off here.
        let engine = match &per_route.rbac {
            None => Some(None),
            Some(f) => http_rules(f, route_config, &format!("{kpath}.rbac"), ctx),
        };
        if let Some(engine) = engine {
            overrides.insert(key, engine);
        }
    }
    overrides
}

/// Compiles a network RBAC filter.
pub fn network_filter(any: &Any, path: &str, ctx: &mut Context<'_>) -> Option<NetworkRbac> {
    let f: net_rbac::Rbac = decode_any(any, path, ctx)?;
    if f.stat_prefix.is_empty() {
        ctx.error(&format!("{path}.stat_prefix"), "a stat_prefix is required");
        return None;
    }
    let engine = match &f.rules {
        None => None,
        Some(rules) => Some(engine(
            rules,
            Scope::Network,
            &f.stat_prefix,
            &format!("{path}.rules"),
            ctx,
        )?),
    };
    Some(NetworkRbac {
        stat_prefix: f.stat_prefix.clone(),
        engine,
    })
}

/// Where rules run: a network filter sees no request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Http,
    Network,
}

/// `base`, or `base.rules_stat_prefix` when the filter names one.
fn stat_prefix(base: &str, rules_stat_prefix: &str) -> String {
    if rules_stat_prefix.is_empty() {
        base.to_string()
    } else {
        format!("{base}.{rules_stat_prefix}")
    }
}

fn engine(
    r: &rpb::Rbac,
    scope: Scope,
    stat_prefix: &str,
    path: &str,
    ctx: &mut Context<'_>,
) -> Option<Engine> {
    let errors_before = ctx.errors.len();
    let action = match rpb::rbac::Action::try_from(r.action) {
        Ok(rpb::rbac::Action::Allow) => Action::Allow,
        Ok(rpb::rbac::Action::Deny) => Action::Deny,
        Ok(rpb::rbac::Action::Log) => Action::Log,
        Err(_) => {
            ctx.error(&format!("{path}.action"), "one of ALLOW, DENY or LOG");
            Action::Allow
        }
    };
    let mut names: Vec<&String> = r.policies.keys().collect();
    names.sort();
    let mut policies = Vec::new();
    for name in names {
        let ppath = format!("{path}.policies[{name:?}]");
        let p = &r.policies[name];
        if p.permissions.is_empty() {
            ctx.error(
                &format!("{ppath}.permissions"),
                "at least one permission is required (`any: true` matches every action)",
            );
        }
        if p.principals.is_empty() {
            ctx.error(
                &format!("{ppath}.principals"),
                "at least one principal is required (`any: true` matches every downstream)",
            );
        }
        let permissions = p
            .permissions
            .iter()
            .enumerate()
            .filter_map(|(i, x)| permission(x, scope, &format!("{ppath}.permissions[{i}]"), ctx))
            .collect();
        let principals = p
            .principals
            .iter()
            .enumerate()
            .filter_map(|(i, x)| principal(x, scope, &format!("{ppath}.principals[{i}]"), ctx))
            .collect();
        policies.push(Policy::new(name, permissions, principals));
    }
    if ctx.errors.len() > errors_before {
        return None;
    }
    Some(Engine::new(action, policies, stat_prefix, ctx.metrics))
}

fn permission(
    p: &rpb::Permission,
    scope: Scope,
    path: &str,
    ctx: &mut Context<'_>,
) -> Option<Permission> {
    use rpb::permission::Rule as R;
    let rules = |set: &rpb::permission::Set, field: &str, ctx: &mut Context<'_>| {
        let spath = format!("{path}.{field}.rules");
        if set.rules.is_empty() {
            ctx.error(&spath, "at least one rule is required");
            return None;
        }
        set.rules
            .iter()
            .enumerate()
            .map(|(i, r)| permission(r, scope, &format!("{spath}[{i}]"), ctx))
            .collect::<Option<Vec<_>>>()
    };
    Some(match &p.rule {
        Some(R::Any(true)) => Permission::Any,
        Some(R::Any(false)) => {
            ctx.error(&format!("{path}.any"), "must be true when set");
            return None;
        }
        Some(R::AndRules(set)) => Permission::And(rules(set, "and_rules", ctx)?),
        Some(R::OrRules(set)) => Permission::Or(rules(set, "or_rules", ctx)?),
        Some(R::NotRule(inner)) => Permission::Not(Box::new(permission(
            inner,
            scope,
            &format!("{path}.not_rule"),
            ctx,
        )?)),
        Some(R::Header(h)) => {
            http_only(scope, &format!("{path}.header"), ctx)?;
            Permission::Header(header_matcher(h, &format!("{path}.header"), ctx)?)
        }
        Some(R::UrlPath(m)) => {
            http_only(scope, &format!("{path}.url_path"), ctx)?;
            Permission::UrlPath(path_matcher(m, &format!("{path}.url_path"), ctx)?)
        }
        Some(R::DestinationIp(c)) => {
            Permission::DestinationIp(cidr(c, &format!("{path}.destination_ip"), ctx)?)
        }
        Some(R::DestinationPort(port)) => match u16::try_from(*port) {
            Ok(port) => Permission::DestinationPort(port),
            Err(_) => {
                ctx.error(
                    &format!("{path}.destination_port"),
                    format!("{port} is not a port"),
                );
                return None;
            }
        },
        Some(R::DestinationPortRange(r)) => {
            if r.start < 0 || r.end < r.start {
                ctx.error(
                    &format!("{path}.destination_port_range"),
                    format!("[{}, {}) is not a range of ports", r.start, r.end),
                );
                return None;
            }
            Permission::DestinationPortRange(r.start as u32, r.end as u32)
        }
        Some(R::RequestedServerName(m)) => Permission::RequestedServerName(string_matcher(
            m,
            &format!("{path}.requested_server_name"),
            ctx,
        )?),
        Some(R::Metadata(m)) => {
            http_only(scope, &format!("{path}.metadata"), ctx)?;
            Permission::Metadata(metadata_matcher(m, &format!("{path}.metadata"), ctx)?)
        }
        Some(other) => {
            let field = match other {
                R::Matcher(_) => "matcher",
                R::UriTemplate(_) => "uri_template",
                _ => "sourced_metadata",
            };
            unsupported(&format!("{path}.{field}"), ctx);
            return None;
        }
        None => {
            ctx.error(path, "a rule is required");
            return None;
        }
    })
}

fn principal(
    p: &rpb::Principal,
    scope: Scope,
    path: &str,
    ctx: &mut Context<'_>,
) -> Option<Principal> {
    use rpb::principal::Identifier as I;
    let ids = |set: &rpb::principal::Set, field: &str, ctx: &mut Context<'_>| {
        let spath = format!("{path}.{field}.ids");
        if set.ids.is_empty() {
            ctx.error(&spath, "at least one principal is required");
            return None;
        }
        set.ids
            .iter()
            .enumerate()
            .map(|(i, x)| principal(x, scope, &format!("{spath}[{i}]"), ctx))
            .collect::<Option<Vec<_>>>()
    };
    Some(match &p.identifier {
        Some(I::Any(true)) => Principal::Any,
        Some(I::Any(false)) => {
            ctx.error(&format!("{path}.any"), "must be true when set");
            return None;
        }
        Some(I::AndIds(set)) => Principal::And(ids(set, "and_ids", ctx)?),
        Some(I::OrIds(set)) => Principal::Or(ids(set, "or_ids", ctx)?),
        Some(I::NotId(inner)) => Principal::Not(Box::new(principal(
            inner,
            scope,
            &format!("{path}.not_id"),
            ctx,
        )?)),
        Some(I::Authenticated(a)) => Principal::Authenticated(match &a.principal_name {
            Some(m) => Some(string_matcher(
                m,
                &format!("{path}.authenticated.principal_name"),
                ctx,
            )?),
            None => None,
        }),
        Some(I::SourceIp(c)) => {
            Principal::DirectRemoteIp(cidr(c, &format!("{path}.source_ip"), ctx)?)
        }
        Some(I::DirectRemoteIp(c)) => {
            Principal::DirectRemoteIp(cidr(c, &format!("{path}.direct_remote_ip"), ctx)?)
        }
        Some(I::RemoteIp(c)) => Principal::RemoteIp(cidr(c, &format!("{path}.remote_ip"), ctx)?),
        Some(I::Header(h)) => {
            http_only(scope, &format!("{path}.header"), ctx)?;
            Principal::Header(header_matcher(h, &format!("{path}.header"), ctx)?)
        }
        Some(I::UrlPath(m)) => {
            http_only(scope, &format!("{path}.url_path"), ctx)?;
            Principal::UrlPath(path_matcher(m, &format!("{path}.url_path"), ctx)?)
        }
        Some(I::Metadata(m)) => {
            http_only(scope, &format!("{path}.metadata"), ctx)?;
            Principal::Metadata(metadata_matcher(m, &format!("{path}.metadata"), ctx)?)
        }
        Some(other) => {
            let field = match other {
                I::FilterState(_) => "filter_state",
                I::Custom(_) => "custom",
                _ => "sourced_metadata",
            };
            unsupported(&format!("{path}.{field}"), ctx);
            return None;
        }
        None => {
            ctx.error(path, "an identifier is required");
            return None;
        }
    })
}

/// Headers, paths and request metadata exist only for the HTTP filter; Envoy would
/// never match them in a network filter, which is refused rather than left to surprise.
fn http_only(scope: Scope, path: &str, ctx: &mut Context<'_>) -> Option<()> {
    if scope == Scope::Network {
        ctx.error(
            path,
            "a network RBAC filter sees no HTTP request; use the HTTP RBAC filter",
        );
        return None;
    }
    Some(())
}

fn path_matcher(
    m: &mpb::PathMatcher,
    path: &str,
    ctx: &mut Context<'_>,
) -> Option<crate::http::matcher::StringMatch> {
    match &m.rule {
        Some(mpb::path_matcher::Rule::Path(s)) => string_matcher(s, &format!("{path}.path"), ctx),
        None => {
            ctx.error(&format!("{path}.path"), "a string matcher is required");
            None
        }
    }
}

fn cidr(c: &CidrRange, path: &str, ctx: &mut Context<'_>) -> Option<Cidr> {
    let Ok(ip) = c.address_prefix.parse::<std::net::IpAddr>() else {
        ctx.error(
            &format!("{path}.address_prefix"),
            format!("{:?} is not an IP address", c.address_prefix),
        );
        return None;
    };
    // Envoy's default: an unset length is 0, the whole address family.
    let len = c.prefix_len.map_or(0, |v| v.value);
    match Cidr::new(ip, len) {
        Some(cidr) => Some(cidr),
        None => {
            ctx.error(
                &format!("{path}.prefix_len"),
                format!("{len} is longer than the address"),
            );
            None
        }
    }
}
