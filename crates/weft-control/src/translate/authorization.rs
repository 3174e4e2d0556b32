//! AuthorizationPolicy → Envoy RBAC filters on a workload's inbound listeners, as Istio
//! translates them: the policies that select the workload (mesh-wide in the root
//! namespace, namespace-wide, or by `selector`) become one RBAC filter per action, in
//! the order Istio evaluates them — AUDIT (LOG, never denies), then DENY (any match
//! denies), then ALLOW (when any ALLOW policy selects the workload, a request must
//! match one of their rules; an ALLOW policy without rules therefore denies all).
//!
//! Each rule is one RBAC policy named `ns[NS]-policy[NAME]-rule[N]`: its `to`
//! operations and request-side `when` conditions become permissions, its `from`
//! sources and source-side conditions principals. Within a field, values are OR'ed;
//! fields, and the `not` forms, are AND'ed. Istio's string patterns (`*`, `prefix*`,
//! `*suffix`, exact) map to prefix, suffix and exact matchers; principals and
//! namespaces match the peer certificate's SPIFFE ID. On TCP ports, HTTP-only fields
//! cannot be checked: an ALLOW rule that has any is dropped (it can match nothing), a
//! DENY rule keeps the rest (stricter), as Istio does.

use super::envoy;
use super::request_principal;
use super::Diagnostics;
use std::collections::BTreeMap;
use weft_model::security::authorization_policy::{
    Action, AuthorizationPolicy, Condition, Operation, Rule, Source,
};
use weft_model::security::WorkloadSelector;
use weft_xds::pb::envoy::config::core::v3::CidrRange;
use weft_xds::pb::envoy::config::listener::v3::{filter, Filter};
use weft_xds::pb::envoy::config::rbac::v3 as rbac;
use weft_xds::pb::envoy::config::route::v3::{header_matcher, HeaderMatcher};
use weft_xds::pb::envoy::extensions::filters::http::rbac::v3 as http_rbac;
use weft_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_filter, HttpFilter,
};
use weft_xds::pb::envoy::extensions::filters::network::rbac::v3 as network_rbac;
use weft_xds::pb::envoy::r#type::matcher::v3::{
    path_matcher, string_matcher::MatchPattern, PathMatcher, StringMatcher,
};
use weft_xds::pb::google::protobuf::UInt32Value;

/// AuthorizationPolicies by (namespace, name).
pub type AuthorizationPolicies = BTreeMap<(String, String), AuthorizationPolicy>;

/// Name of the HTTP RBAC filter.
pub const HTTP_FILTER: &str = "envoy.filters.http.rbac";
/// Name of the network RBAC filter.
pub const NETWORK_FILTER: &str = "envoy.filters.network.rbac";

/// The workload a policy may select, and what the translation needs of the mesh.
pub struct Target<'a> {
    /// Namespace.
    pub namespace: &'a str,
    /// Labels.
    pub labels: &'a BTreeMap<String, String>,
    /// The root namespace.
    pub root_namespace: &'a str,
    /// The trust domain of SPIFFE IDs.
    pub trust_domain: &'a str,
}

/// The policies selecting `target`, with their names, in name order.
pub fn selecting<'a>(
    all: &'a AuthorizationPolicies,
    target: &Target<'_>,
) -> Vec<(String, &'a str, &'a AuthorizationPolicy)> {
    all.iter()
        .filter(|((ns, _), p)| target.is_selected(ns, p.selector.as_ref()))
        .map(|((ns, name), p)| (ns.clone(), name.as_str(), p))
        .collect()
}

impl Target<'_> {
    /// Whether a security policy of namespace `ns` with `selector` applies: a selector
    /// picks workloads of its own namespace by labels; without one, the policy covers
    /// its namespace, or the whole mesh from the root namespace.
    pub fn is_selected(&self, ns: &str, selector: Option<&WorkloadSelector>) -> bool {
        match selector.map(|s| &s.match_labels).filter(|l| !l.is_empty()) {
            Some(l) => ns == self.namespace && l.iter().all(|(k, v)| self.labels.get(k) == Some(v)),
            None => ns == self.namespace || ns == self.root_namespace,
        }
    }
}

/// The RBAC rule sets for `target`, in evaluation order; `http` says whether
/// request-level fields can be checked.
fn rule_sets(
    all: &AuthorizationPolicies,
    target: &Target<'_>,
    http: bool,
    diagnostics: &mut Diagnostics,
) -> Vec<rbac::Rbac> {
    let mut by_action: BTreeMap<u8, rbac::Rbac> = BTreeMap::new();
    for (ns, name, policy) in selecting(all, target) {
        let (order, action) = match policy.action.unwrap_or(Action::Allow) {
            Action::Audit => (0, rbac::rbac::Action::Log),
            Action::Deny => (1, rbac::rbac::Action::Deny),
            Action::Allow => (2, rbac::rbac::Action::Allow),
            Action::Custom => {
                diagnostics.warn(format!(
                    "AuthorizationPolicy {ns}/{name}: action CUSTOM (an external authorizer) is not supported; it was left out"
                ));
                continue;
            }
        };
        let set = by_action.entry(order).or_insert_with(|| rbac::Rbac {
            action: action as i32,
            ..Default::default()
        });
        for (i, rule) in policy.rules.iter().enumerate() {
            let key = format!("ns[{ns}]-policy[{name}]-rule[{i}]");
            let deny_like = action != rbac::rbac::Action::Allow;
            match translate_rule(rule, target.trust_domain, http, deny_like) {
                Ok(p) => {
                    set.policies.insert(key, p);
                }
                Err(why) => diagnostics.warn(format!(
                    "AuthorizationPolicy {ns}/{name} rule {i}: {why}; the rule matches nothing"
                )),
            }
        }
    }
    by_action.into_values().collect()
}

/// The HTTP filters (before the router) for an inbound HTTP port.
pub fn http_filters(
    all: &AuthorizationPolicies,
    target: &Target<'_>,
    diagnostics: &mut Diagnostics,
) -> Vec<HttpFilter> {
    rule_sets(all, target, true, diagnostics)
        .into_iter()
        .map(|rules| HttpFilter {
            name: HTTP_FILTER.into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(envoy::any(
                &http_rbac::Rbac {
                    rules: Some(rules),
                    ..Default::default()
                },
            ))),
            ..Default::default()
        })
        .collect()
}

/// The network filters (before the TCP proxy) for an inbound TCP port.
pub fn network_filters(
    all: &AuthorizationPolicies,
    target: &Target<'_>,
    stat_prefix: &str,
    diagnostics: &mut Diagnostics,
) -> Vec<Filter> {
    rule_sets(all, target, false, diagnostics)
        .into_iter()
        .map(|rules| Filter {
            name: NETWORK_FILTER.into(),
            config_type: Some(filter::ConfigType::TypedConfig(envoy::any(
                &network_rbac::Rbac {
                    rules: Some(rules),
                    stat_prefix: stat_prefix.to_string(),
                    ..Default::default()
                },
            ))),
        })
        .collect()
}

// ---- one rule ----

fn any_permission() -> rbac::Permission {
    rbac::Permission {
        rule: Some(rbac::permission::Rule::Any(true)),
    }
}

fn any_principal() -> rbac::Principal {
    rbac::Principal {
        identifier: Some(rbac::principal::Identifier::Any(true)),
    }
}

fn and_permissions(rules: Vec<rbac::Permission>) -> rbac::Permission {
    if rules.is_empty() {
        return any_permission();
    }
    rbac::Permission {
        rule: Some(rbac::permission::Rule::AndRules(rbac::permission::Set {
            rules,
        })),
    }
}

fn or_permissions(rules: Vec<rbac::Permission>) -> rbac::Permission {
    rbac::Permission {
        rule: Some(rbac::permission::Rule::OrRules(rbac::permission::Set {
            rules,
        })),
    }
}

fn not_permission(p: rbac::Permission) -> rbac::Permission {
    rbac::Permission {
        rule: Some(rbac::permission::Rule::NotRule(Box::new(p))),
    }
}

fn and_principals(ids: Vec<rbac::Principal>) -> rbac::Principal {
    if ids.is_empty() {
        return any_principal();
    }
    rbac::Principal {
        identifier: Some(rbac::principal::Identifier::AndIds(rbac::principal::Set {
            ids,
        })),
    }
}

fn or_principals(ids: Vec<rbac::Principal>) -> rbac::Principal {
    rbac::Principal {
        identifier: Some(rbac::principal::Identifier::OrIds(rbac::principal::Set {
            ids,
        })),
    }
}

fn not_principal(p: rbac::Principal) -> rbac::Principal {
    rbac::Principal {
        identifier: Some(rbac::principal::Identifier::NotId(Box::new(p))),
    }
}

/// Istio's pattern: `*` (anything present), `prefix*`, `*suffix`, or exact.
fn pattern(value: &str, prepend: &str) -> StringMatcher {
    let p = if value == "*" {
        MatchPattern::Prefix(prepend.to_string())
    } else if let Some(prefix) = value.strip_suffix('*') {
        MatchPattern::Prefix(format!("{prepend}{prefix}"))
    } else if let Some(suffix) = value.strip_prefix('*') {
        MatchPattern::Suffix(suffix.to_string())
    } else {
        MatchPattern::Exact(format!("{prepend}{value}"))
    };
    StringMatcher {
        match_pattern: Some(p),
        ..Default::default()
    }
}

fn header(name: &str, value: &str) -> HeaderMatcher {
    HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(pattern(
            value, "",
        ))),
        ..Default::default()
    }
}

fn authenticated(m: StringMatcher) -> rbac::Principal {
    rbac::Principal {
        identifier: Some(rbac::principal::Identifier::Authenticated(
            rbac::principal::Authenticated {
                principal_name: Some(m),
            },
        )),
    }
}

fn principal_id(value: &str) -> rbac::Principal {
    authenticated(pattern(value, "spiffe://"))
}

fn namespace_id(trust_domain: &str, value: &str) -> rbac::Principal {
    let m = if value == "*" {
        pattern("*", "spiffe://")
    } else {
        // Namespaces match the `/ns/NS/` segment of the SPIFFE ID.
        StringMatcher {
            match_pattern: Some(MatchPattern::Prefix(format!(
                "spiffe://{trust_domain}/ns/{}/",
                value.trim_end_matches('*')
            ))),
            ..Default::default()
        }
    };
    authenticated(m)
}

fn cidr(value: &str) -> Result<CidrRange, String> {
    let (ip, len) = match value.split_once('/') {
        Some((ip, len)) => (ip, Some(len)),
        None => (value, None),
    };
    let addr: std::net::IpAddr = ip
        .parse()
        .map_err(|_| format!("{value:?} is not an IP address or CIDR block"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("{value:?}: bad prefix length"))?,
        None => max,
    };
    Ok(CidrRange {
        address_prefix: addr.to_string(),
        prefix_len: Some(UInt32Value { value: len }),
    })
}

fn ip_id(value: &str, remote: bool) -> Result<rbac::Principal, String> {
    let c = cidr(value)?;
    Ok(rbac::Principal {
        identifier: Some(if remote {
            rbac::principal::Identifier::RemoteIp(c)
        } else {
            rbac::principal::Identifier::DirectRemoteIp(c)
        }),
    })
}

fn port_permission(value: &str) -> Result<rbac::Permission, String> {
    let port: u32 = value
        .parse()
        .ok()
        .filter(|p| (1..=65535).contains(p))
        .ok_or_else(|| format!("{value:?} is not a port"))?;
    Ok(rbac::Permission {
        rule: Some(rbac::permission::Rule::DestinationPort(port)),
    })
}

fn path_permission(value: &str) -> rbac::Permission {
    rbac::Permission {
        rule: Some(rbac::permission::Rule::UrlPath(PathMatcher {
            rule: Some(path_matcher::Rule::Path(pattern(value, ""))),
        })),
    }
}

fn header_permission(name: &str, value: &str) -> rbac::Permission {
    rbac::Permission {
        rule: Some(rbac::permission::Rule::Header(header(name, value))),
    }
}

/// One field's values OR'ed (and negated for its `not` form), or nothing when empty.
fn field<T>(
    values: &[String],
    make: impl Fn(&str) -> Result<T, String>,
    or: impl Fn(Vec<T>) -> T,
) -> Result<Option<T>, String> {
    if values.is_empty() {
        return Ok(None);
    }
    let items = values
        .iter()
        .map(|v| make(v))
        .collect::<Result<Vec<T>, String>>()?;
    Ok(Some(or(items)))
}

/// A source's principal; `deny_like` on a TCP port drops what only HTTP can check.
fn source_principal(
    s: &Source,
    trust_domain: &str,
    http: bool,
    deny_like: bool,
) -> Result<rbac::Principal, String> {
    let has_tokens = !s.request_principals.is_empty() || !s.not_request_principals.is_empty();
    if has_tokens && !http && !deny_like {
        return Err("requestPrincipals cannot be checked on a TCP port".into());
    }
    let ok = |p: rbac::Principal| Ok::<_, String>(p);
    let principals = s
        .principals
        .iter()
        .chain(&s.service_accounts)
        .cloned()
        .collect::<Vec<_>>();
    let not_principals = s
        .not_principals
        .iter()
        .chain(&s.not_service_accounts)
        .cloned()
        .collect::<Vec<_>>();
    let mut ids = Vec::new();
    let mut push = |positive: Option<rbac::Principal>, negative: Option<rbac::Principal>| {
        ids.extend(positive);
        ids.extend(negative.map(not_principal));
    };
    push(
        field(&principals, |v| ok(principal_id(v)), or_principals)?,
        field(&not_principals, |v| ok(principal_id(v)), or_principals)?,
    );
    push(
        field(
            &s.namespaces,
            |v| ok(namespace_id(trust_domain, v)),
            or_principals,
        )?,
        field(
            &s.not_namespaces,
            |v| ok(namespace_id(trust_domain, v)),
            or_principals,
        )?,
    );
    push(
        field(&s.ip_blocks, |v| ip_id(v, false), or_principals)?,
        field(&s.not_ip_blocks, |v| ip_id(v, false), or_principals)?,
    );
    push(
        field(&s.remote_ip_blocks, |v| ip_id(v, true), or_principals)?,
        field(&s.not_remote_ip_blocks, |v| ip_id(v, true), or_principals)?,
    );
    if http {
        let token = |v: &str| ok(request_principal::principal(pattern(v, "")));
        push(
            field(&s.request_principals, token, or_principals)?,
            field(&s.not_request_principals, token, or_principals)?,
        );
    }
    Ok(and_principals(ids))
}

/// An operation's permission; `Err` names an HTTP-only field on a TCP port.
fn operation_permission(o: &Operation, http: bool) -> Result<rbac::Permission, String> {
    let http_fields = [
        ("hosts", &o.hosts, &o.not_hosts),
        ("methods", &o.methods, &o.not_methods),
        ("paths", &o.paths, &o.not_paths),
    ];
    let mut rules = Vec::new();
    for (what, values, not_values) in http_fields {
        if values.is_empty() && not_values.is_empty() {
            continue;
        }
        if !http {
            return Err(format!("{what} cannot be checked on a TCP port"));
        }
        let make = |v: &str| {
            Ok(match what {
                "hosts" => header_permission(":authority", v),
                "methods" => header_permission(":method", v),
                _ => path_permission(v),
            })
        };
        rules.extend(field(values, make, or_permissions)?);
        rules.extend(field(not_values, make, or_permissions)?.map(not_permission));
    }
    rules.extend(field(&o.ports, port_permission, or_permissions)?);
    rules.extend(field(&o.not_ports, port_permission, or_permissions)?.map(not_permission));
    Ok(and_permissions(rules))
}

/// A `when` condition: a permission or a principal, or why it cannot be checked.
enum Checked {
    Permission(rbac::Permission),
    Principal(rbac::Principal),
}

/// A condition checked on the request side: its values OR'ed, AND not its notValues.
fn on_request(
    c: &Condition,
    make: impl Fn(&str) -> Result<rbac::Permission, String>,
) -> Result<Checked, String> {
    let mut rules = Vec::new();
    rules.extend(field(&c.values, &make, or_permissions)?);
    rules.extend(field(&c.not_values, &make, or_permissions)?.map(not_permission));
    Ok(Checked::Permission(and_permissions(rules)))
}

/// A condition checked on the source side, likewise.
fn on_source(
    c: &Condition,
    make: impl Fn(&str) -> Result<rbac::Principal, String>,
) -> Result<Checked, String> {
    let mut ids = Vec::new();
    ids.extend(field(&c.values, &make, or_principals)?);
    ids.extend(field(&c.not_values, &make, or_principals)?.map(not_principal));
    Ok(Checked::Principal(and_principals(ids)))
}

fn condition(c: &Condition, trust_domain: &str, http: bool) -> Result<Checked, String> {
    let key = c.key.as_str();
    if let Some(name) = key
        .strip_prefix("request.headers[")
        .and_then(|k| k.strip_suffix(']'))
    {
        if !http {
            return Err(format!("{key} cannot be checked on a TCP port"));
        }
        let name = name.to_ascii_lowercase();
        return on_request(c, |v| Ok(header_permission(&name, v)));
    }
    if key.starts_with("request.auth.") {
        if !http {
            return Err(format!("{key} cannot be checked on a TCP port"));
        }
        let field = request_principal::TokenField::of(key)
            .ok_or_else(|| format!("condition {key:?} is not supported yet"))??;
        return on_source(c, |v| Ok(field.principal(pattern(v, ""))));
    }
    match key {
        "source.principal" => on_source(c, |v| Ok(principal_id(v))),
        "source.namespace" => on_source(c, |v| Ok(namespace_id(trust_domain, v))),
        "source.ip" => on_source(c, |v| ip_id(v, false)),
        "remote.ip" => on_source(c, |v| ip_id(v, true)),
        "destination.port" => on_request(c, port_permission),
        other => Err(format!("condition {other:?} is not supported yet")),
    }
}

fn translate_rule(
    rule: &Rule,
    trust_domain: &str,
    http: bool,
    deny_like: bool,
) -> Result<rbac::Policy, String> {
    let mut permissions = Vec::new();
    if let Some(to) = &rule.to {
        let mut ops = Vec::new();
        for t in to {
            let Some(o) = &t.operation else { continue };
            match operation_permission(o, http) {
                Ok(p) => ops.push(p),
                // A DENY rule keeps what can be checked: stricter, as Istio does.
                Err(_) if deny_like && !http => {
                    let stripped = Operation {
                        ports: o.ports.clone(),
                        not_ports: o.not_ports.clone(),
                        ..Default::default()
                    };
                    ops.push(operation_permission(&stripped, false)?);
                }
                Err(e) => return Err(e),
            }
        }
        if !ops.is_empty() {
            permissions.push(or_permissions(ops));
        }
    }
    let mut principals = Vec::new();
    if let Some(from) = &rule.from {
        let sources = from
            .iter()
            .filter_map(|f| f.source.as_ref())
            .map(|s| source_principal(s, trust_domain, http, deny_like))
            .collect::<Result<Vec<_>, String>>()?;
        if !sources.is_empty() {
            principals.push(or_principals(sources));
        }
    }
    for c in &rule.when {
        match condition(c, trust_domain, http) {
            Ok(Checked::Permission(p)) => permissions.push(p),
            Ok(Checked::Principal(p)) => principals.push(p),
            Err(_) if deny_like && !http => {}
            Err(e) => return Err(e),
        }
    }
    Ok(rbac::Policy {
        permissions: vec![and_permissions(permissions)],
        principals: vec![and_principals(principals)],
        ..Default::default()
    })
}
