//! `envoy.type.matcher.v3.MetadataMatcher` and `ValueMatcher` → [`MetadataMatcher`],
//! checked as Envoy validates them.

use super::route::string_matcher;
use super::Context;
use crate::metadata::{DoubleMatch, MetadataMatcher, ValueMatch};
use weft_xds::pb::envoy::r#type::matcher::v3 as mpb;

/// Compiles a `MetadataMatcher`.
pub fn metadata_matcher(
    m: &mpb::MetadataMatcher,
    path: &str,
    ctx: &mut Context<'_>,
) -> Option<MetadataMatcher> {
    use mpb::metadata_matcher::path_segment::Segment;
    let errors_before = ctx.errors.len();
    if m.filter.is_empty() {
        ctx.error(&format!("{path}.filter"), "a filter name is required");
    }
    if m.path.is_empty() {
        ctx.error(&format!("{path}.path"), "at least one key is required");
    }
    let keys: Vec<String> = m
        .path
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match &s.segment {
            Some(Segment::Key(k)) if !k.is_empty() => Some(k.clone()),
            _ => {
                ctx.error(&format!("{path}.path[{i}].key"), "a key is required");
                None
            }
        })
        .collect();
    let value = match &m.value {
        Some(v) => value_matcher(v, &format!("{path}.value"), ctx),
        None => {
            ctx.error(&format!("{path}.value"), "a value matcher is required");
            None
        }
    };
    if ctx.errors.len() > errors_before {
        return None;
    }
    Some(MetadataMatcher {
        filter: m.filter.clone(),
        path: keys,
        value: value?,
        invert: m.invert,
    })
}

fn value_matcher(v: &mpb::ValueMatcher, path: &str, ctx: &mut Context<'_>) -> Option<ValueMatch> {
    use mpb::value_matcher::MatchPattern as P;
    Some(match &v.match_pattern {
        Some(P::NullMatch(_)) => ValueMatch::Null,
        Some(P::DoubleMatch(d)) => {
            ValueMatch::Double(double_matcher(d, &format!("{path}.double_match"), ctx)?)
        }
        Some(P::StringMatch(s)) => {
            ValueMatch::String(string_matcher(s, &format!("{path}.string_match"), ctx)?)
        }
        Some(P::BoolMatch(b)) => ValueMatch::Bool(*b),
        Some(P::PresentMatch(p)) => ValueMatch::Present(*p),
        Some(P::ListMatch(list)) => {
            let lpath = format!("{path}.list_match.one_of");
            match &list.match_pattern {
                Some(mpb::list_matcher::MatchPattern::OneOf(inner)) => {
                    ValueMatch::ListOneOf(Box::new(value_matcher(inner, &lpath, ctx)?))
                }
                None => {
                    ctx.error(&lpath, "a value matcher is required");
                    return None;
                }
            }
        }
        Some(P::OrMatch(or)) => {
            let opath = format!("{path}.or_match.value_matchers");
            if or.value_matchers.len() < 2 {
                ctx.error(&opath, "at least two value matchers are required");
                return None;
            }
            ValueMatch::Or(
                or.value_matchers
                    .iter()
                    .enumerate()
                    .map(|(i, m)| value_matcher(m, &format!("{opath}[{i}]"), ctx))
                    .collect::<Option<Vec<_>>>()?,
            )
        }
        None => {
            ctx.error(
                path,
                "one of null_match, double_match, string_match, bool_match, present_match, list_match or or_match is required",
            );
            return None;
        }
    })
}

fn double_matcher(
    d: &mpb::DoubleMatcher,
    path: &str,
    ctx: &mut Context<'_>,
) -> Option<DoubleMatch> {
    use mpb::double_matcher::MatchPattern as P;
    match &d.match_pattern {
        Some(P::Exact(x)) => Some(DoubleMatch::Exact(*x)),
        Some(P::Range(r)) if r.start <= r.end => Some(DoubleMatch::Range(r.start, r.end)),
        Some(P::Range(r)) => {
            ctx.error(
                &format!("{path}.range"),
                format!("[{}, {}) is not a range", r.start, r.end),
            );
            None
        }
        None => {
            ctx.error(path, "one of exact or range is required");
            None
        }
    }
}
