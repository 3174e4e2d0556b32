//! What an AuthorizationPolicy matches of a verified JWT: the `istio_authn` metadata
//! the proxy's `jwt_authn` filter writes (`request.auth.principal` = `iss/sub`,
//! `request.auth.audiences`, `request.auth.presenter`, `request.auth.claims`), matched
//! with RBAC `metadata` principals, as Istio generates them.

use weft_xds::pb::envoy::config::rbac::v3 as rbac;
use weft_xds::pb::envoy::r#type::matcher::v3::{
    list_matcher,
    metadata_matcher::{path_segment, PathSegment},
    value_matcher, ListMatcher, MetadataMatcher, OrMatcher, StringMatcher, ValueMatcher,
};

/// The metadata namespace the proxy fills after verifying a token.
pub const FILTER: &str = "istio_authn";

// `metadata` is deprecated in Envoy's API for `sourced_metadata`, but it is what Istio
// generates and what every proxy reads; Weft's reads it too.
#[allow(deprecated)]
fn metadata(path: &[&str], value: ValueMatcher) -> rbac::Principal {
    rbac::Principal {
        identifier: Some(rbac::principal::Identifier::Metadata(MetadataMatcher {
            filter: FILTER.into(),
            path: path
                .iter()
                .map(|k| PathSegment {
                    segment: Some(path_segment::Segment::Key(k.to_string())),
                })
                .collect(),
            value: Some(value),
            invert: false,
        })),
    }
}

fn string(m: StringMatcher) -> ValueMatcher {
    ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::StringMatch(m)),
    }
}

/// `requestPrincipals` and `request.auth.principal`: `iss/sub` by Istio's pattern.
pub fn principal(m: StringMatcher) -> rbac::Principal {
    metadata(&["request.auth.principal"], string(m))
}

/// A `when` key on the token, or `None` when `key` is not one. Claims match a string
/// claim or any element of a list claim; `[a][b]` reaches a nested claim.
pub fn condition(key: &str, m: StringMatcher) -> Option<Result<rbac::Principal, String>> {
    match key {
        "request.auth.principal" => return Some(Ok(principal(m))),
        "request.auth.audiences" | "request.auth.presenter" => {
            return Some(Ok(metadata(&[key], string(m))))
        }
        _ => {}
    }
    let claims = key.strip_prefix("request.auth.claims")?;
    let names: Vec<&str> = claims
        .strip_prefix('[')
        .and_then(|c| c.strip_suffix(']'))
        .map(|c| c.split("][").collect())
        .unwrap_or_default();
    if names.is_empty() || names.iter().any(|n| n.is_empty()) {
        return Some(Err(format!(
            "{key:?}: a claim is named as request.auth.claims[NAME]"
        )));
    }
    let mut path = vec!["request.auth.claims"];
    path.extend(names);
    let either = ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::OrMatch(OrMatcher {
            value_matchers: vec![
                ValueMatcher {
                    match_pattern: Some(value_matcher::MatchPattern::ListMatch(Box::new(
                        ListMatcher {
                            match_pattern: Some(list_matcher::MatchPattern::OneOf(Box::new(
                                string(m.clone()),
                            ))),
                        },
                    ))),
                },
                string(m),
            ],
        })),
    };
    Some(Ok(metadata(&path, either)))
}
