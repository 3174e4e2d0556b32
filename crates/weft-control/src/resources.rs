//! How applied resources live in the store: one key per resource,
//! `/weft/resources/{Kind}/{namespace}/{name}`, holding the resource as JSON in Istio's
//! spelling (what `weft get -o yaml` prints back).

use weft_model::{Kind, Resource, ResourceKey};

/// Where resources live in the store.
pub const PREFIX: &str = "/weft/resources/";

/// The store key of a resource.
pub fn key(k: &ResourceKey) -> String {
    format!("{PREFIX}{}/{}/{}", k.kind, k.namespace, k.name)
}

/// The store prefix of one kind, optionally within one namespace.
pub fn kind_prefix(kind: Kind, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("{PREFIX}{kind}/{ns}/"),
        None => format!("{PREFIX}{kind}/"),
    }
}

/// The stored form of a resource.
pub fn encode(resource: &Resource) -> Vec<u8> {
    // Serializing plain data to a Vec cannot fail.
    serde_json::to_vec(resource).unwrap_or_default()
}

/// A stored resource, validated again (a store written by another version, or by hand,
/// must not reach the translator unchecked).
pub fn decode(key: &str, value: &[u8]) -> Result<Resource, String> {
    let text = std::str::from_utf8(value).map_err(|e| format!("{key}: not UTF-8: {e}"))?;
    Resource::from_json(key, text).map_err(|e| e.to_string())
}

/// Resolves a kind as people type it: `VirtualService`, `virtualservice`,
/// `virtualservices`, `vs`, or the resource's full name
/// `virtualservices.networking.istio.io`.
pub fn parse_kind(name: &str) -> Option<Kind> {
    let lower = name.to_ascii_lowercase();
    let base = lower.split('.').next().unwrap_or("");
    let short = match base {
        "vs" => Some(Kind::VirtualService),
        "dr" => Some(Kind::DestinationRule),
        "se" => Some(Kind::ServiceEntry),
        "gw" => Some(Kind::Gateway),
        "we" => Some(Kind::WorkloadEntry),
        "pa" => Some(Kind::PeerAuthentication),
        "ap" => Some(Kind::AuthorizationPolicy),
        "ra" => Some(Kind::RequestAuthentication),
        _ => None,
    };
    short.or_else(|| {
        Kind::ALL.into_iter().find(|k| {
            let singular = k.as_str().to_ascii_lowercase();
            base == singular || base == plural(&singular)
        })
    })
}

fn plural(singular: &str) -> String {
    match singular.strip_suffix('y') {
        Some(stem) => format!("{stem}ies"),
        None => format!("{singular}s"),
    }
}

/// How a kind is spelled in messages, as kubectl spells it: `virtualservice.networking.istio.io`.
pub fn qualified(kind: Kind) -> String {
    format!("{}.{}", kind.as_str().to_ascii_lowercase(), kind.group())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_found_however_they_are_typed() {
        for name in [
            "VirtualService",
            "virtualservice",
            "virtualservices",
            "vs",
            "virtualservices.networking.istio.io",
        ] {
            assert_eq!(parse_kind(name), Some(Kind::VirtualService), "{name}");
        }
        assert_eq!(
            parse_kind("authorizationpolicies"),
            Some(Kind::AuthorizationPolicy)
        );
        assert_eq!(parse_kind("workloads"), Some(Kind::Workload));
        assert_eq!(parse_kind("pods"), None);
    }

    #[test]
    fn stored_form_round_trips() {
        let yaml = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: shop}\nspec:\n  host: reviews\n  subsets: [{name: v1, labels: {version: v1}}]\n";
        let (resources, _) = weft_model::parse_documents("dr.yaml", yaml)
            .into_result()
            .expect("valid");
        let r = &resources[0];
        assert_eq!(
            key(&r.key()),
            "/weft/resources/DestinationRule/shop/reviews"
        );
        let back = decode("k", &encode(r)).expect("decode");
        assert_eq!(encode(&back), encode(r));
    }
}
