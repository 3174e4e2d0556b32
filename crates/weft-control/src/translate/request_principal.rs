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

/// A `when` key on the token, read once: where its value is, and whether it is a
/// claim (a string, or a list any element of which may match).
pub struct TokenField {
    path: Vec<String>,
    claim: bool,
}

impl TokenField {
    /// The field `key` names (`request.auth.principal`, `.audiences`, `.presenter`,
    /// `.claims[NAME]`, `[a][b]` for a nested claim), or `None` when it names none;
    /// `Err` for a malformed claim key.
    pub fn of(key: &str) -> Option<Result<TokenField, String>> {
        let field = |path: Vec<&str>, claim| {
            Some(Ok(TokenField {
                path: path.into_iter().map(String::from).collect(),
                claim,
            }))
        };
        match key {
            "request.auth.principal" | "request.auth.audiences" | "request.auth.presenter" => {
                return field(vec![key], false)
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
        field(path, true)
    }

    /// The principal matching the field with `m`.
    pub fn principal(&self, m: StringMatcher) -> rbac::Principal {
        let path: Vec<&str> = self.path.iter().map(String::as_str).collect();
        if !self.claim {
            return metadata(&path, string(m));
        }
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
        metadata(&path, either)
    }
}
