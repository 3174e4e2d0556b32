//! The TLS (SNI) and TCP routes of a VirtualService, and their validation.

use crate::networking::common::Destination;
use crate::rules;
use crate::validate::{Validate, Validator};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A route for TLS traffic, chosen by SNI.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsRoute {
    /// Conditions, any of which selects this route (at least one).
    #[serde(rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<TlsMatchAttributes>,
    /// Weighted destinations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<RouteDestination>,
}

/// Conditions on a TLS connection.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsMatchAttributes {
    /// SNI values (at least one); wildcards allowed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sni_hosts: Vec<String>,
    /// Destination addresses or CIDRs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub destination_subnets: Vec<String>,
    /// The port the connection arrived on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Labels of the calling workload.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub source_labels: BTreeMap<String, String>,
    /// Gateways this condition applies to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// Namespace of the calling workload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<String>,
}

/// A route for opaque TCP traffic.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpRoute {
    /// Conditions, any of which selects this route (none matches everything).
    #[serde(rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<L4MatchAttributes>,
    /// Weighted destinations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<RouteDestination>,
}

/// Conditions on a TCP connection.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct L4MatchAttributes {
    /// Destination addresses or CIDRs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub destination_subnets: Vec<String>,
    /// The port the connection arrived on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Labels of the calling workload.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub source_labels: BTreeMap<String, String>,
    /// Gateways this condition applies to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// Namespace of the calling workload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<String>,
}

/// A destination and its share of connections.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteDestination {
    /// Where connections go.
    pub destination: Destination,
    /// Relative weight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
}

/// Same weight rules for TLS and TCP routes.
fn check_l4_destinations(v: &mut Validator<'_>, route: &[RouteDestination]) {
    let mut total: i64 = 0;
    v.each("route", route, |v, d| {
        v.field("destination", &d.destination);
        if let Some(w) = d.weight {
            if w < 0 {
                v.error_at("weight", format!("weight {w} must not be negative"));
            }
            total += i64::from(w);
        }
    });
    if route.len() > 1 && total == 0 {
        v.error_at(
            "route",
            "total destination weight is 0: give at least one destination a weight",
        );
    }
}

impl TlsRoute {
    pub(super) fn check(&self, v: &mut Validator<'_>, hosts: &[String]) {
        if self.matches.is_empty() {
            v.error("a TLS route needs at least one match");
        }
        v.each("match", &self.matches, |v, m| {
            if m.sni_hosts.is_empty() {
                v.error("a TLS match needs at least one SNI host");
            }
            v.each("sniHosts", &m.sni_hosts, |v, sni| {
                check_sni_host(v, sni, hosts)
            });
            v.each("destinationSubnets", &m.destination_subnets, |v, s| {
                v.check(rules::check_ip_or_cidr(s))
            });
            if let Some(port) = m.port {
                v.check_at("port", rules::check_port(port));
            }
            v.at("sourceLabels", |v| rules::check_labels(v, &m.source_labels));
            v.each("gateways", &m.gateways, |v, g| {
                rules::check_gateway_name(v, g)
            });
        });
        if self.route.is_empty() {
            v.required("route");
        }
        check_l4_destinations(v, &self.route);
    }
}

fn check_sni_host(v: &mut Validator<'_>, sni: &str, hosts: &[String]) {
    if let Err(e) = rules::check_wildcard_domain(sni) {
        if rules::is_ip(sni) {
            v.warn(format!("using an IP address ({sni:?}) as SNI goes against the SNI spec; most clients do not send it"));
        } else {
            v.error(e);
        }
        return;
    }
    let covered = hosts.iter().any(|h| {
        h == "*"
            || h == sni
            || h.strip_prefix('*')
                .is_some_and(|suffix| sni.ends_with(suffix))
    });
    if !covered {
        v.error(format!(
            "SNI host {sni:?} is not covered by any of the virtual service's hosts: [{}]",
            hosts.join(", ")
        ));
    }
}

impl Validate for TcpRoute {
    fn validate(&self, v: &mut Validator<'_>) {
        v.each("match", &self.matches, |v, m| {
            v.each("destinationSubnets", &m.destination_subnets, |v, s| {
                v.check(rules::check_ip_or_cidr(s))
            });
            if let Some(port) = m.port {
                v.check_at("port", rules::check_port(port));
            }
            v.at("sourceLabels", |v| rules::check_labels(v, &m.source_labels));
            v.each("gateways", &m.gateways, |v, g| {
                rules::check_gateway_name(v, g)
            });
            if let Some(ns) = &m.source_namespace {
                if !rules::is_dns1123_label(ns) {
                    v.error_at(
                        "sourceNamespace",
                        format!("sourceNamespace {ns:?} is not a valid namespace"),
                    );
                }
            }
        });
        if self.route.is_empty() {
            v.required("route");
        }
        check_l4_destinations(v, &self.route);
    }
}
