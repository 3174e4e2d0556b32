//! RequestAuthentication → Envoy's `jwt_authn` HTTP filter on inbound HTTP ports, in
//! the form Istio generates: one provider per JWT rule (`origins-N`), the verified
//! payload in metadata under the issuer, and one rule for every path requiring any
//! provider or no token at all (`allow_missing`). So an invalid token is refused (401)
//! and a request without one passes: only an AuthorizationPolicy with
//! `requestPrincipals` can require a token, as in Istio. The proxy's filter also fills
//! `istio_authn` metadata (`request.auth.principal` = `iss/sub`, claims) for those
//! policies.
//!
//! Keys: `jwks` inline; `jwksUri` on a service of the mesh (or a ServiceEntry host)
//! over `http://`, fetched by the sidecar through that service's outbound cluster (so
//! over mTLS when the service is meshed). Any other URI gets a key nobody holds, so
//! tokens of that issuer are refused rather than trusted, with a warning.

use super::authorization::Target;
use super::cluster::cluster_name;
use super::envoy;
use super::services::Services;
use super::Diagnostics;
use prost::Message;
use std::collections::{BTreeMap, HashMap};
use weft_model::security::request_authentication::{JwtRule, RequestAuthentication};
use weft_xds::pb::envoy::config::core::v3 as core;
use weft_xds::pb::envoy::config::route::v3::{route_match, RouteMatch};
use weft_xds::pb::envoy::extensions::filters::http::jwt_authn::v3 as jwt;
use weft_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_filter, HttpFilter,
};
use weft_xds::pb::google::protobuf::{Any, Empty};

/// Name of the filter.
pub const FILTER: &str = "envoy.filters.http.jwt_authn";

/// RequestAuthentications by (namespace, name).
pub type RequestAuthentications = BTreeMap<(String, String), RequestAuthentication>;

/// A JWKS whose only key nobody holds (its private half was thrown away when it was
/// made): an issuer whose keys cannot be had gets it, so its tokens are refused. An
/// empty key set would be refused by the proxy (and by Envoy), NACKing the listener.
const NO_USABLE_KEY: &str = concat!(
    r#"{"keys":[{"kty":"RSA","alg":"RS256","kid":"weft-no-key","e":"AQAB","n":""#,
    "vDUMDizfxlem6nlxZrGIQSBlMW91BSWIpse0ydSkXpdq6WDb9_VLBoDlyNSDfjPjK5CdfTuR5JXxtgsNwLeAk7zE",
    "X2k3SZMUPmpWUI36A8vpdRXvua4e1WXC7uhJRYSkM3Q1zBo-oexFhLAoQ3jlLn7vTI-WNawkWHFjUZvpHwhgAbpM",
    "_jvv4rNxMcE8hVUOY_c3M5904fTLiIbzsQetQpEqEPowALw_fnaBK7rKU9QDXLjCMjrZCkg51c4yFKo1fJqmKy3x",
    "BpZXJ2sdELwbl1DCm5K3icazC8P401NhwXmQazt_Ug8fjOQng1nzem2RcmFDG8Bn3CP04G3JDxY7Aw",
    r#""}]}"#
);

/// Default timeout of a key fetch (Istio's).
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long fetched keys are kept (Istio's refresh interval).
const KEYS_CACHED: std::time::Duration = std::time::Duration::from_secs(20 * 60);

/// The policies selecting `target`: by selector in its namespace, or without one in
/// its namespace or the root namespace, in name order.
pub fn selecting<'a>(
    all: &'a RequestAuthentications,
    target: &Target<'_>,
) -> Vec<(String, &'a str, &'a RequestAuthentication)> {
    all.iter()
        .filter(|((ns, _), p)| target.is_selected(ns, p.selector.as_ref()))
        .map(|((ns, name), p)| (ns.clone(), name.as_str(), p))
        .collect()
}

/// The `jwt_authn` filter for `target`'s inbound HTTP ports, if any policy selects it.
pub fn http_filter(
    all: &RequestAuthentications,
    target: &Target<'_>,
    services: &Services,
    diagnostics: &mut Diagnostics,
) -> Option<HttpFilter> {
    let mut providers = Vec::new();
    for (ns, name, policy) in selecting(all, target) {
        for rule in &policy.jwt_rules {
            let id = format!("origins-{}", providers.len());
            providers.push((id, provider(rule, &ns, name, services, diagnostics)));
        }
    }
    if providers.is_empty() {
        return None;
    }
    let mut any_of: Vec<jwt::JwtRequirement> = providers
        .iter()
        .map(|(id, _)| requirement(jwt::jwt_requirement::RequiresType::ProviderName(id.clone())))
        .collect();
    any_of.push(requirement(
        jwt::jwt_requirement::RequiresType::AllowMissing(Empty {}),
    ));
    let base = jwt::JwtAuthentication {
        rules: vec![jwt::RequirementRule {
            r#match: Some(RouteMatch {
                path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
                ..Default::default()
            }),
            requirement_type: Some(jwt::requirement_rule::RequirementType::Requires(
                requirement(jwt::jwt_requirement::RequiresType::RequiresAny(
                    jwt::JwtRequirementOrList {
                        requirements: any_of,
                    },
                )),
            )),
        }],
        bypass_cors_preflight: true,
        ..Default::default()
    };
    Some(HttpFilter {
        name: FILTER.into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(Any {
            type_url: <jwt::JwtAuthentication as prost::Name>::type_url(),
            value: encode_sorted(base, providers),
        })),
        ..Default::default()
    })
}

fn requirement(r: jwt::jwt_requirement::RequiresType) -> jwt::JwtRequirement {
    jwt::JwtRequirement {
        requires_type: Some(r),
    }
}

/// Encodes `base` with `providers`, map entries in name order: prost writes a
/// `HashMap` in its (random) iteration order, and the same configuration must give the
/// same bytes, or every snapshot would look like a change. Protobuf merges
/// concatenated messages, map entries included.
fn encode_sorted(
    base: jwt::JwtAuthentication,
    providers: Vec<(String, jwt::JwtProvider)>,
) -> Vec<u8> {
    let mut bytes = base.encode_to_vec();
    for (id, p) in providers {
        let one = jwt::JwtAuthentication {
            providers: HashMap::from([(id, p)]),
            ..Default::default()
        };
        one.encode(&mut bytes).expect("a Vec grows as needed");
    }
    bytes
}

fn provider(
    rule: &JwtRule,
    ns: &str,
    name: &str,
    services: &Services,
    diagnostics: &mut Diagnostics,
) -> jwt::JwtProvider {
    let mut warn = |what: String| {
        diagnostics.warn(format!(
            "RequestAuthentication {ns}/{name} (issuer {:?}): {what}",
            rule.issuer
        ))
    };
    if !rule.output_claim_to_headers.is_empty() {
        warn("outputClaimToHeaders is not supported yet and was left out".into());
    }
    let keys = match (&rule.jwks, &rule.jwks_uri) {
        (Some(inline), _) => local(core::data_source::Specifier::InlineString(inline.clone())),
        (None, Some(uri)) => match keys_from(uri, rule, ns, services) {
            Ok(source) => source,
            Err(why) => {
                warn(format!("{why}; its tokens are refused"));
                local(core::data_source::Specifier::InlineString(
                    NO_USABLE_KEY.into(),
                ))
            }
        },
        (None, None) => {
            warn("neither jwks nor jwksUri is given; its tokens are refused".into());
            local(core::data_source::Specifier::InlineString(
                NO_USABLE_KEY.into(),
            ))
        }
    };
    jwt::JwtProvider {
        issuer: rule.issuer.clone(),
        audiences: rule.audiences.clone(),
        forward: rule.forward_original_token.unwrap_or(false),
        from_headers: rule
            .from_headers
            .iter()
            .map(|h| jwt::JwtHeader {
                name: h.name.clone(),
                value_prefix: h.prefix.clone().unwrap_or_default(),
            })
            .collect(),
        from_params: rule.from_params.clone(),
        from_cookies: rule.from_cookies.clone(),
        forward_payload_header: rule.output_payload_to_header.clone().unwrap_or_default(),
        payload_in_metadata: rule.issuer.clone(),
        jwks_source_specifier: Some(keys),
        ..Default::default()
    }
}

fn local(s: core::data_source::Specifier) -> jwt::jwt_provider::JwksSourceSpecifier {
    jwt::jwt_provider::JwksSourceSpecifier::LocalJwks(core::DataSource {
        specifier: Some(s),
        ..Default::default()
    })
}

/// Where the sidecar gets the keys `uri` names.
fn keys_from(
    uri: &str,
    rule: &JwtRule,
    ns: &str,
    services: &Services,
) -> Result<jwt::jwt_provider::JwksSourceSpecifier, String> {
    let Some(rest) = uri.strip_prefix("http://") else {
        return Err(format!(
            "jwksUri {uri:?}: only http:// on a service of the mesh is supported yet"
        ));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("jwksUri {uri:?}: bad port"))?,
        ),
        None => (authority, 80),
    };
    let svc = services.resolve(host, ns).ok_or_else(|| {
        format!("jwksUri {uri:?}: {host:?} is not a service of the mesh (add a ServiceEntry)")
    })?;
    if !svc.ports.contains_key(&port) {
        return Err(format!(
            "jwksUri {uri:?}: {} has no port {port}",
            svc.hostname
        ));
    }
    let timeout = rule.timeout.map_or(FETCH_TIMEOUT, |t| t.as_std());
    Ok(jwt::jwt_provider::JwksSourceSpecifier::RemoteJwks(
        jwt::RemoteJwks {
            http_uri: Some(core::HttpUri {
                uri: uri.to_string(),
                timeout: Some(envoy::duration(timeout)),
                http_upstream_type: Some(core::http_uri::HttpUpstreamType::Cluster(cluster_name(
                    port,
                    "",
                    &svc.hostname,
                ))),
            }),
            cache_duration: Some(envoy::duration(KEYS_CACHED)),
            ..Default::default()
        },
    ))
}
