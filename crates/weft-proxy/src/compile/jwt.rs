//! `envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication` → [`JwtAuthn`]:
//! providers (local keys read and parsed now, remote ones set up to be fetched through
//! their cluster), requirements resolved to their providers, rules with their route
//! matchers. Fields outside `support.rs`'s table (`filter_state_rules`,
//! `claim_to_headers`, `async_fetch`, ...) are refused there with their path; what is
//! left is checked here as Envoy validates it.

use super::route::route_match;
use super::{decode_any, duration, unsupported, Context};
use crate::jwt::extract::Location;
use crate::jwt::jwks::Jwks;
use crate::jwt::provider::{Keys, Provider, DEFAULT_CLOCK_SKEW_SECONDS};
use crate::jwt::remote::{RemoteJwks, DEFAULT_CACHE_DURATION};
use crate::jwt::requirement::{Allow, Requirement};
use crate::jwt::{JwtAuthn, Rule};
use http::{HeaderName, HeaderValue};
use prost::Name;
use std::collections::HashMap;
use std::sync::Arc;
use weft_xds::pb::envoy::config::core::v3::{http_uri, DataSource};
use weft_xds::pb::envoy::extensions::filters::http::jwt_authn::v3 as pb;
use weft_xds::pb::google::protobuf::Any;

/// Whether `type_url` is the JWT filter's configuration.
pub fn is_http_filter(type_url: &str) -> bool {
    type_url == pb::JwtAuthentication::type_url()
}

/// Compiles the JWT filter named `name` of the connection manager whose stat prefix is
/// `hcm_stat_prefix`.
pub fn http_filter(
    name: &str,
    any: &Any,
    hcm_stat_prefix: &str,
    path: &str,
    ctx: &mut Context<'_>,
) -> Option<JwtAuthn> {
    let f: pb::JwtAuthentication = decode_any(any, path, ctx)?;
    let errors_before = ctx.errors.len();
    let mut names: Vec<&String> = f.providers.keys().collect();
    names.sort();
    let mut providers = HashMap::new();
    for name in names {
        let ppath = format!("{path}.providers[{name:?}]");
        if let Some(p) = provider(name, &f.providers[name], &ppath, ctx) {
            providers.insert(name.clone(), Arc::new(p));
        }
    }
    let known = Providers {
        compiled: &providers,
        configured: &f.providers,
    };
    let mut map_names: Vec<&String> = f.requirement_map.keys().collect();
    map_names.sort();
    let mut requirement_map = HashMap::new();
    for name in map_names {
        let rpath = format!("{path}.requirement_map[{name:?}]");
        if let Some(r) = requirement(&f.requirement_map[name], &known, &rpath, ctx) {
            requirement_map.insert(name.clone(), Arc::new(r));
        }
    }
    let mut rules = Vec::new();
    for (i, r) in f.rules.iter().enumerate() {
        let rpath = format!("{path}.rules[{i}]");
        let Some(m) = &r.r#match else {
            ctx.error(&format!("{rpath}.match"), "a match is required");
            continue;
        };
        let matcher = route_match(m, &format!("{rpath}.match"), ctx);
        use pb::requirement_rule::RequirementType as T;
        let requirement = match &r.requirement_type {
            Some(T::Requires(req)) => {
                requirement(req, &known, &format!("{rpath}.requires"), ctx).map(Arc::new)
            }
            Some(T::RequirementName(n)) => {
                let found = requirement_map.get(n).cloned();
                if found.is_none() && !f.requirement_map.contains_key(n) {
                    ctx.error(
                        &format!("{rpath}.requirement_name"),
                        format!("requirement {n:?} is not in requirement_map"),
                    );
                }
                found
            }
            // A rule without a requirement lets what it matches through unchecked.
            None => None,
        };
        if let Some(matcher) = matcher {
            rules.push(Rule {
                matcher,
                requirement,
            });
        }
    }
    if ctx.errors.len() > errors_before {
        return None;
    }
    let stat_prefix = if f.stat_prefix.is_empty() {
        hcm_stat_prefix.to_string()
    } else {
        format!("{hcm_stat_prefix}.{}", f.stat_prefix)
    };
    let mut providers: Vec<(String, Arc<Provider>)> = providers.into_iter().collect();
    providers.sort_by(|a, b| a.0.cmp(&b.0));
    Some(JwtAuthn {
        name: name.into(),
        providers: providers.into_iter().map(|(_, p)| p).collect(),
        rules,
        requirement_map,
        bypass_cors_preflight: f.bypass_cors_preflight,
        strip_failure_response: f.strip_failure_response,
        stats: ctx.metrics.jwt_authn(&stat_prefix),
    })
}

/// The providers requirements may name: those that compiled, and all configured (a
/// requirement naming one that failed to compile adds no second error).
struct Providers<'a> {
    compiled: &'a HashMap<String, Arc<Provider>>,
    configured: &'a HashMap<String, pb::JwtProvider>,
}

impl Providers<'_> {
    fn get(&self, name: &str, path: &str, ctx: &mut Context<'_>) -> Option<Arc<Provider>> {
        let found = self.compiled.get(name).cloned();
        if found.is_none() && !self.configured.contains_key(name) {
            ctx.error(path, format!("provider {name:?} is not configured"));
        }
        found
    }
}

fn provider(
    name: &str,
    p: &pb::JwtProvider,
    path: &str,
    ctx: &mut Context<'_>,
) -> Option<Provider> {
    use pb::jwt_provider::JwksSourceSpecifier as J;
    let errors_before = ctx.errors.len();
    let keys = match &p.jwks_source_specifier {
        Some(J::LocalJwks(source)) => {
            local_jwks(source, &format!("{path}.local_jwks"), ctx).map(Keys::Local)
        }
        Some(J::RemoteJwks(r)) => {
            remote_jwks(r, &format!("{path}.remote_jwks"), ctx).map(Keys::Remote)
        }
        None => {
            ctx.error(path, "one of local_jwks or remote_jwks is required");
            None
        }
    };
    let mut locations = Vec::new();
    for (i, h) in p.from_headers.iter().enumerate() {
        match HeaderName::from_bytes(h.name.as_bytes()) {
            Ok(name) => locations.push(Location::Header {
                name,
                prefix: h.value_prefix.clone(),
            }),
            Err(_) => ctx.error(
                &format!("{path}.from_headers[{i}].name"),
                format!("{:?} is not a header name", h.name),
            ),
        }
    }
    for (field, names, location) in [
        (
            "from_params",
            &p.from_params,
            Location::Param as fn(String) -> Location,
        ),
        ("from_cookies", &p.from_cookies, Location::Cookie),
    ] {
        for (i, n) in names.iter().enumerate() {
            if n.is_empty() {
                ctx.error(&format!("{path}.{field}[{i}]"), "a name is required");
            }
            locations.push(location(n.clone()));
        }
    }
    if locations.is_empty() {
        locations = Location::defaults();
    }
    let forward_payload_header = match p.forward_payload_header.as_str() {
        "" => None,
        h => match HeaderName::from_bytes(h.as_bytes()) {
            Ok(name) => Some(name),
            Err(_) => {
                ctx.error(
                    &format!("{path}.forward_payload_header"),
                    format!("{h:?} is not a header name"),
                );
                None
            }
        },
    };
    if ctx.errors.len() > errors_before {
        return None;
    }
    Some(Provider {
        name: name.to_string(),
        issuer: p.issuer.clone(),
        audiences: p.audiences.clone(),
        require_expiration: p.require_expiration,
        // Zero is proto3's "unset".
        clock_skew: match p.clock_skew_seconds {
            0 => DEFAULT_CLOCK_SKEW_SECONDS,
            s => u64::from(s),
        },
        locations,
        forward: p.forward,
        forward_payload_header,
        pad_forward_payload_header: p.pad_forward_payload_header,
        payload_in_metadata: (!p.payload_in_metadata.is_empty())
            .then(|| p.payload_in_metadata.clone()),
        keys: keys?,
    })
}

fn local_jwks(source: &DataSource, path: &str, ctx: &mut Context<'_>) -> Option<Arc<Jwks>> {
    let bytes = match crate::tls::material::read(source) {
        Ok(b) => b,
        Err(e) => {
            let at = if e.field.is_empty() {
                path.to_string()
            } else {
                format!("{path}.{}", e.field)
            };
            ctx.error(&at, e.message);
            return None;
        }
    };
    match Jwks::parse(&bytes) {
        Ok(jwks) => Some(Arc::new(jwks)),
        Err(e) => {
            ctx.error(path, e.to_string());
            None
        }
    }
}

fn remote_jwks(r: &pb::RemoteJwks, path: &str, ctx: &mut Context<'_>) -> Option<RemoteJwks> {
    let errors_before = ctx.errors.len();
    let upath = format!("{path}.http_uri");
    let Some(h) = &r.http_uri else {
        ctx.error(&upath, "an http_uri is required");
        return None;
    };
    let uri = match h.uri.parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some() => {
            Some(u)
        }
        _ => {
            ctx.error(
                &format!("{upath}.uri"),
                format!("{:?} is not an http:// or https:// URI", h.uri),
            );
            None
        }
    };
    let cluster = match &h.http_upstream_type {
        Some(http_uri::HttpUpstreamType::Cluster(c)) if !c.is_empty() => {
            if !ctx.cluster_names.contains(c) {
                ctx.error(
                    &format!("{upath}.cluster"),
                    format!("cluster {c:?} does not exist"),
                );
            }
            c.clone()
        }
        _ => {
            ctx.error(&format!("{upath}.cluster"), "a cluster is required");
            String::new()
        }
    };
    let timeout = match &h.timeout {
        Some(d) => duration(d, &format!("{upath}.timeout"), ctx),
        None => None,
    };
    if timeout.is_none_or(|t| t.is_zero()) {
        ctx.error(
            &format!("{upath}.timeout"),
            "a timeout above zero is required",
        );
    }
    let cache_duration = match &r.cache_duration {
        Some(d) => duration(d, &format!("{path}.cache_duration"), ctx),
        None => Some(DEFAULT_CACHE_DURATION),
    };
    if cache_duration.is_some_and(|d| d.is_zero()) {
        ctx.error(&format!("{path}.cache_duration"), "must be above zero");
    }
    if ctx.errors.len() > errors_before {
        return None;
    }
    let uri = uri?;
    let authority = HeaderValue::from_str(uri.authority()?.as_str()).ok()?;
    let path_and_query = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    Some(RemoteJwks::new(
        h.uri.clone(),
        cluster.into(),
        authority,
        path_and_query,
        timeout?,
        cache_duration?,
        ctx.clusters.clone(),
    ))
}

fn requirement(
    r: &pb::JwtRequirement,
    providers: &Providers<'_>,
    path: &str,
    ctx: &mut Context<'_>,
) -> Option<Requirement> {
    use pb::jwt_requirement::RequiresType as T;
    let list = |items: &[pb::JwtRequirement], field: &str, ctx: &mut Context<'_>| {
        let lpath = format!("{path}.{field}.requirements");
        if items.len() < 2 {
            ctx.error(&lpath, "at least two requirements are required");
            return None;
        }
        let compiled: Vec<(Option<Requirement>, Option<Allow>)> = items
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let allow = match &r.requires_type {
                    Some(T::AllowMissing(_)) => Some(Allow::Missing),
                    Some(T::AllowMissingOrFailed(_)) => Some(Allow::MissingOrFailed),
                    _ => None,
                };
                (
                    requirement(r, providers, &format!("{lpath}[{i}]"), ctx),
                    allow,
                )
            })
            .collect();
        Some(compiled)
    };
    Some(match &r.requires_type {
        Some(T::ProviderName(name)) => Requirement::Provider {
            provider: providers.get(name, &format!("{path}.provider_name"), ctx)?,
            audiences: None,
        },
        Some(T::ProviderAndAudiences(pa)) => Requirement::Provider {
            provider: providers.get(
                &pa.provider_name,
                &format!("{path}.provider_and_audiences.provider_name"),
                ctx,
            )?,
            audiences: Some(pa.audiences.clone()),
        },
        Some(T::RequiresAny(any)) => {
            let children = list(&any.requirements, "requires_any", ctx)?;
            // The `allow_*` children are not tried like the others: the most lenient
            // decides what an overall failure lets through.
            let allow = children.iter().filter_map(|(_, a)| *a).max();
            let mut of: Vec<Requirement> = Vec::new();
            for (child, a) in children {
                if a.is_none() {
                    of.push(child?);
                }
            }
            if of.is_empty() {
                of.extend(allow.map(Requirement::Allow));
            }
            Requirement::Any { of, allow }
        }
        Some(T::RequiresAll(all)) => Requirement::All(
            list(&all.requirements, "requires_all", ctx)?
                .into_iter()
                .map(|(child, _)| child)
                .collect::<Option<Vec<_>>>()?,
        ),
        Some(T::AllowMissing(_)) => Requirement::Allow(Allow::Missing),
        Some(T::AllowMissingOrFailed(_)) => Requirement::Allow(Allow::MissingOrFailed),
        Some(T::ExtractOnlyWithoutValidation(_)) => {
            unsupported(&format!("{path}.extract_only_without_validation"), ctx);
            return None;
        }
        None => Requirement::Pass,
    })
}
