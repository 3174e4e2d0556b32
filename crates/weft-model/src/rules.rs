//! Checks shared by many kinds, following Istio's validation (and Kubernetes' name and
//! label grammar): DNS names and hosts, IPs and CIDRs, ports, labels, `exportTo`,
//! header names, regular expressions, protocols and percentages. Each returns the
//! message to show when the value is wrong.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

/// Kubernetes' DNS-1123 label: lower-case alphanumerics and `-`, at most 63.
pub(crate) fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Kubernetes' DNS-1123 subdomain: labels joined by `.`, at most 253.
pub(crate) fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// A resource name (`metadata.name`): a DNS-1123 subdomain.
pub(crate) fn check_name(s: &str) -> Result<(), String> {
    if is_dns1123_subdomain(s) {
        Ok(())
    } else {
        Err(format!(
            "invalid name {s:?}: use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters"
        ))
    }
}

/// A namespace name: a DNS-1123 label.
pub(crate) fn check_namespace(s: &str) -> Result<(), String> {
    if is_dns1123_label(s) {
        Ok(())
    } else {
        Err(format!(
            "invalid namespace {s:?}: use lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters"
        ))
    }
}

/// Istio's wildcard label: `*`, or a label optionally prefixed by `*` or `*-`.
fn is_wildcard_label(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    let rest = s
        .strip_prefix("*-")
        .or_else(|| s.strip_prefix('*'))
        .unwrap_or(s);
    s.len() <= 63 && is_dns1123_label(rest)
}

fn check_domain_labels(domain: &str, whole: &str) -> Result<(), String> {
    let parts: Vec<&str> = domain.split('.').collect();
    if let Some(tld) = parts.last() {
        if !tld.is_empty() && tld.bytes().all(|c| c.is_ascii_digit()) {
            return Err(format!(
                "invalid host {whole:?}: the top-level domain {tld:?} cannot be all digits"
            ));
        }
    }
    for (i, label) in parts.iter().enumerate() {
        // A trailing dot (`istio.io.`) is allowed.
        if i == parts.len() - 1 && label.is_empty() {
            return Ok(());
        }
        if !is_dns1123_label(label) {
            return Err(format!(
                "invalid host {whole:?}: label {label:?} is not a valid DNS label"
            ));
        }
    }
    Ok(())
}

fn check_length(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("host must not be empty".into());
    }
    if domain.len() > 255 {
        return Err(format!("host {domain:?} is longer than 255 characters"));
    }
    Ok(())
}

/// A host that may start with a wildcard label (`*.example.com`, `*`, `reviews`).
pub(crate) fn check_wildcard_domain(domain: &str) -> Result<(), String> {
    check_length(domain)?;
    let (first, rest) = match domain.split_once('.') {
        Some((f, r)) => (f, Some(r)),
        None => (domain, None),
    };
    if !is_wildcard_label(first) {
        return Err(format!(
            "invalid host {domain:?}: {first:?} is not a valid DNS label (a '*' may only start the first label)"
        ));
    }
    match rest {
        Some(rest) => check_domain_labels(rest, domain),
        None => Ok(()),
    }
}

/// A fully qualified (or short) DNS name without wildcards.
pub(crate) fn check_fqdn(domain: &str) -> Result<(), String> {
    check_length(domain)?;
    check_domain_labels(domain, domain)
}

/// An IPv4 or IPv6 address.
pub(crate) fn is_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

/// An address or a CIDR block (`10.0.0.0/8`, `2001:db8::/32`).
pub(crate) fn check_ip_or_cidr(s: &str) -> Result<(), String> {
    match s.split_once('/') {
        Some((ip, bits)) => {
            let ok = match ip.parse::<IpAddr>() {
                Ok(IpAddr::V4(_)) => bits.parse::<u8>().is_ok_and(|b| b <= 32),
                Ok(IpAddr::V6(_)) => bits.parse::<u8>().is_ok_and(|b| b <= 128),
                Err(_) => false,
            };
            if ok && !bits.starts_with('+') {
                Ok(())
            } else {
                Err(format!("{s:?} is not a valid CIDR block"))
            }
        }
        None if is_ip(s) => Ok(()),
        None => Err(format!("{s:?} is not a valid IP address or CIDR block")),
    }
}

/// A port number, 1–65535.
pub(crate) fn check_port(port: u32) -> Result<(), String> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(format!("port {port} must be in the range 1..65535"))
    }
}

/// A port given as a string (AuthorizationPolicy `ports`).
pub(crate) fn check_port_string(port: &str) -> Result<(), String> {
    match port.parse::<u32>() {
        Ok(p) if !port.starts_with('+') && (1..=65535).contains(&p) => Ok(()),
        _ => Err(format!("{port:?} is not a port number (1..65535)")),
    }
}

/// Kubernetes' qualified name (a label key's name part).
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A label (or annotation) key: `[prefix/]name`, the prefix a DNS subdomain.
pub(crate) fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| !p.is_empty() && is_dns1123_subdomain(p));
    if prefix_ok && is_qualified_name_part(name) {
        Ok(())
    } else {
        Err(format!(
            "invalid label key {key:?}: an optional DNS prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ))
    }
}

/// A label value: empty, or like a qualified name.
pub(crate) fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_qualified_name_part(value) {
        Ok(())
    } else {
        Err(format!(
            "invalid label value {value:?}: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ))
    }
}

/// Checks every key and value of a label map, at the current path.
pub(crate) fn check_labels(
    v: &mut crate::validate::Validator<'_>,
    labels: &BTreeMap<String, String>,
) {
    for (key, value) in labels {
        v.at(key, |v| {
            v.check(check_label_key(key));
            v.check(check_label_value(value));
        });
    }
}

/// Checks a workload selector's labels: no empty keys, no wildcards; an empty selector
/// is a warning (it selects every workload in the namespace).
pub(crate) fn check_selector_labels(
    v: &mut crate::validate::Validator<'_>,
    labels: &BTreeMap<String, String>,
) {
    if labels.is_empty() {
        v.warn("workload selector specified without labels: it selects every workload in the namespace");
    }
    for (key, value) in labels {
        v.at(key, |v| {
            if key.contains('*') || value.contains('*') {
                v.error(format!(
                    "wildcard is not supported in selector: {key}={value}"
                ));
            } else {
                v.check(check_label_key(key));
                v.check(check_label_value(value));
            }
        });
    }
}

/// `exportTo`: `.`, `*`, `~` (ServiceEntry only) or namespace names, no duplicates, and
/// `*` or `~` alone.
pub(crate) fn check_export_to(
    v: &mut crate::validate::Validator<'_>,
    export_to: &[String],
    service_entry: bool,
) {
    let namespace = v.namespace.to_string();
    let mut seen = HashSet::new();
    v.each("exportTo", export_to, |v, e| {
        let key = if e == "." { namespace.as_str() } else { e.as_str() };
        if !seen.insert(key.to_string()) {
            if key != e {
                v.error(format!(
                    "duplicate entries in exportTo: \".\" and the current namespace {namespace:?}"
                ));
            } else {
                v.error(format!("duplicate entry {e:?} in exportTo"));
            }
            return;
        }
        match e.as_str() {
            "." | "*" => {}
            "~" if service_entry => {}
            "~" => v.error("\"~\" (export to no one) is only allowed in a ServiceEntry"),
            ns => {
                if !is_dns1123_label(ns) {
                    v.error(format!(
                        "{ns:?} is not a valid exportTo value: use \".\", \"*\"{} or a namespace name",
                        if service_entry { ", \"~\"" } else { "" }
                    ));
                }
            }
        }
    });
    if export_to.len() > 1 {
        if export_to.iter().any(|e| e == "*") {
            v.error_at(
                "exportTo",
                "cannot have both public (*) and non-public exportTo values",
            );
        }
        if export_to.iter().any(|e| e == "~") {
            v.error_at("exportTo", "cannot export to no one (~) and to someone");
        }
    }
}

/// A header name Istio accepts in matches: letters, digits, `-` and `_`.
pub(crate) fn check_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    if name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid header name"))
    }
}

/// A header value Envoy accepts: no control characters, `%` only as `%%` or around a
/// variable (`%HOSTNAME%`).
pub(crate) fn check_header_value(value: &str) -> Result<(), String> {
    if value
        .chars()
        .any(|c| (c.is_control() && c != '\t') || c == '\u{7f}')
    {
        return Err(format!(
            "header value {value:?} contains control characters"
        ));
    }
    let mut rest = value;
    while let Some(at) = rest.find('%') {
        let after = &rest[at + 1..];
        if let Some(stripped) = after.strip_prefix('%') {
            rest = stripped;
            continue;
        }
        match after.find('%') {
            Some(end) if end > 0 => rest = &after[end + 1..],
            _ => {
                return Err(format!(
                    "header value {value:?} has an unmatched '%' (write '%%' for a literal percent)"
                ))
            }
        }
    }
    Ok(())
}

/// Longest regular expression Istio accepts (Envoy limits RE2 program size).
const MAX_REGEX_LEN: usize = 1024;

/// An RE2-syntax regular expression that compiles.
pub(crate) fn check_regex(re: &str) -> Result<(), String> {
    if re.is_empty() {
        return Err("regex must not be empty".into());
    }
    if re.len() > MAX_REGEX_LEN {
        return Err(format!("regex is longer than {MAX_REGEX_LEN} characters"));
    }
    regex::RegexBuilder::new(re)
        .size_limit(1 << 20)
        .build()
        .map(|_| ())
        .map_err(|e| {
            let detail = e.to_string();
            let last = detail.lines().last().unwrap_or_default().trim().to_string();
            format!("invalid regex {re:?} (RE2 syntax): {last}")
        })
}

/// Port protocols Istio knows (case-insensitive).
pub(crate) const PROTOCOLS: &[&str] = &[
    "HTTP",
    "HTTPS",
    "GRPC",
    "GRPC-WEB",
    "HTTP2",
    "HTTP_PROXY",
    "MONGO",
    "MYSQL",
    "REDIS",
    "TCP",
    "TLS",
    "UDP",
];

/// A port protocol Istio knows; empty means "sniff".
pub(crate) fn check_protocol(p: &str) -> Result<(), String> {
    if p.is_empty() || PROTOCOLS.iter().any(|k| k.eq_ignore_ascii_case(p)) {
        Ok(())
    } else {
        Err(format!(
            "unsupported protocol {p:?}{}",
            crate::de::hint(p, PROTOCOLS, "protocols")
        ))
    }
}

/// Whether a protocol carries HTTP.
pub(crate) fn is_http_protocol(p: &str) -> bool {
    ["HTTP", "HTTP2", "GRPC", "GRPC-WEB", "HTTP_PROXY"]
        .iter()
        .any(|k| k.eq_ignore_ascii_case(p))
}

/// Whether a protocol is TLS-wrapped.
pub(crate) fn is_tls_protocol(p: &str) -> bool {
    p.eq_ignore_ascii_case("HTTPS") || p.eq_ignore_ascii_case("TLS")
}

/// A percentage: 0, or between 0.0001 and 100.
pub(crate) fn check_percentage(value: f64) -> Result<(), String> {
    if (0.0..=100.0).contains(&value) && !(value > 0.0 && value < 0.0001) {
        Ok(())
    } else {
        Err(format!(
            "percentage {value} is neither 0 nor in the range 0.0001..100"
        ))
    }
}

/// An integer percentage, 0–100.
pub(crate) fn check_percent(value: i64) -> Result<(), String> {
    if (0..=100).contains(&value) {
        Ok(())
    } else {
        Err(format!("percentage {value} is not in the range 0..100"))
    }
}

/// Gateway references in VirtualServices: `mesh`, `name`, or `namespace/name`.
pub(crate) fn check_gateway_name(v: &mut crate::validate::Validator<'_>, name: &str) {
    match name.split_once('/') {
        Some((ns, gw)) => {
            if ns.is_empty() || gw.is_empty() {
                v.error("namespace and gateway name cannot be empty");
            } else {
                if !is_dns1123_label(ns) {
                    v.error(format!("invalid namespace {ns:?} in gateway reference"));
                }
                if !is_dns1123_label(gw) {
                    v.error(format!("invalid gateway name {gw:?}"));
                }
            }
        }
        None => {
            if name.contains('.') {
                let mut parts = name.split('.');
                let (gw, ns) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                v.warn(format!(
                    "using legacy gateway name format {name:?}; prefer <namespace>/<name>: \"{ns}/{gw}\""
                ));
            }
            v.check(check_fqdn(name));
        }
    }
}

/// Whether two hosts overlap (`*.foo.com` covers `bar.foo.com`; `*` covers all).
pub(crate) fn hosts_overlap(a: &str, b: &str) -> bool {
    fn covers(wild: &str, other: &str) -> bool {
        match wild.strip_prefix('*') {
            Some(suffix) => other.ends_with(suffix) || other.strip_prefix('*') == Some(suffix),
            None => wild == other,
        }
    }
    covers(a, b) || covers(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::Validator;

    #[test]
    fn names_follow_kubernetes() {
        assert!(check_name("reviews").is_ok());
        assert!(check_name("reviews.v1-route").is_ok());
        assert!(check_name("Reviews").is_err());
        assert!(check_name("-x").is_err());
        assert!(check_name("").is_err());
        assert!(check_namespace("a.b").is_err());
    }

    #[test]
    fn hosts_follow_istio() {
        for ok in [
            "reviews",
            "reviews.default.svc.cluster.local",
            "*.example.com",
            "*",
            "istio.io.",
        ] {
            assert!(check_wildcard_domain(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a.*.com", "foo.123", "bad_host", "a..b", "-a.com"] {
            assert!(check_wildcard_domain(bad).is_err(), "{bad}");
        }
        assert!(check_fqdn("*.example.com").is_err());
    }

    #[test]
    fn ips_and_cidrs() {
        for ok in ["1.2.3.4", "001:db8::", "10.0.0.0/8", "2001:db8::/32"] {
            assert!(check_ip_or_cidr(ok).is_ok(), "{ok}");
        }
        for bad in ["1.2.3", "10.0.0.0/33", "x/8", "2001:db8::/129"] {
            assert!(check_ip_or_cidr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports_and_labels() {
        assert!(check_port(0).is_err());
        assert!(check_port(65536).is_err());
        assert!(check_port_string("8080").is_ok());
        assert!(check_port_string("http").is_err());
        assert!(check_port_string("0").is_err());
        assert!(check_label_key("app.kubernetes.io/name").is_ok());
        assert!(check_label_key("").is_err());
        assert!(check_label_key("/x").is_err());
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("v1.2_a").is_ok());
        assert!(check_label_value("-v").is_err());
    }

    #[test]
    fn export_to_rules() {
        let run = |values: &[&str], se: bool| {
            let mut v = Validator::new("default", "x", vec![]);
            let values: Vec<String> = values.iter().map(|s| s.to_string()).collect();
            check_export_to(&mut v, &values, se);
            v.has_errors()
        };
        assert!(!run(&["."], false));
        assert!(!run(&["*"], false));
        assert!(!run(&["~"], true));
        assert!(run(&["~"], false));
        assert!(run(&[".", "default"], false));
        assert!(run(&["a", "a"], false));
        assert!(run(&["*", "a"], false));
        assert!(run(&["Bad_ns"], false));
        assert!(!run(&[".", "other"], false));
    }

    #[test]
    fn regexes_compile_as_re2() {
        assert!(check_regex("^/api/v[0-9]+/.*").is_ok());
        assert!(check_regex("(unclosed").is_err());
        assert!(check_regex("").is_err());
        assert!(check_regex(&"a".repeat(2000)).is_err());
    }

    #[test]
    fn header_values_and_percentages() {
        assert!(check_header_value("%HOSTNAME% 100%%").is_ok());
        assert!(check_header_value("abc%123").is_err());
        assert!(check_percentage(50.5).is_ok());
        assert!(check_percentage(0.0).is_ok());
        assert!(check_percentage(100.1).is_err());
        assert!(check_percentage(0.00001).is_err());
        assert!(check_protocol("http").is_ok());
        assert!(check_protocol("HTPP")
            .expect_err("typo")
            .contains("did you mean"));
    }

    #[test]
    fn overlap() {
        assert!(hosts_overlap("*.foo.com", "bar.foo.com"));
        assert!(hosts_overlap("*", "x"));
        assert!(!hosts_overlap("a.com", "b.com"));
    }
}
