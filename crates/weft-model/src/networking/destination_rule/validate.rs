//! Istio's DestinationRule validation: host, subsets, traffic policies (load
//! balancing, pools, outlier detection, TLS, per-port settings, tunnels), exportTo and
//! the workload selector.

use super::*;
use crate::networking::common::check_subset_name;
use crate::rules;
use crate::validate::{Validate, Validator};
use std::collections::HashSet;

/// Maglev's table must be a prime below this (Envoy's limit).
const MAGLEV_MAX_TABLE: u64 = 5_000_011;

impl Validate for DestinationRule {
    fn validate(&self, v: &mut Validator<'_>) {
        if self.host.is_empty() {
            v.required("host");
        } else {
            v.check_at("host", rules::check_wildcard_domain(&self.host));
        }
        v.field("trafficPolicy", &self.traffic_policy);
        let mut names = HashSet::new();
        v.each("subsets", &self.subsets, |v, subset| {
            if !subset.name.is_empty() && !names.insert(subset.name.as_str()) {
                v.error_at("name", format!("duplicate subset name {:?}", subset.name));
            }
            subset.validate(v);
        });
        rules::check_export_to(v, &self.export_to, false);
        if let Some(selector) = &self.workload_selector {
            v.field("workloadSelector", selector);
            let ns = v.namespace.to_string();
            let beyond = self.export_to.iter().any(|e| e != "." && *e != ns);
            if beyond {
                v.error_at(
                    "exportTo",
                    "a destination rule with a workload selector cannot be exported beyond its namespace",
                );
            }
        }
    }
}

impl Validate for Subset {
    fn validate(&self, v: &mut Validator<'_>) {
        v.check_at("name", check_subset_name(&self.name));
        v.at("labels", |v| {
            for (key, value) in &self.labels {
                v.at(key, |v| {
                    v.check(rules::check_label_key(key));
                    v.check(rules::check_label_value(value));
                });
            }
        });
        v.field("trafficPolicy", &self.traffic_policy);
    }
}

impl Validate for TrafficPolicy {
    fn validate(&self, v: &mut Validator<'_>) {
        if self == &TrafficPolicy::default() {
            v.error("traffic policy must have at least one field");
            return;
        }
        if self.tunnel.is_some() && self.proxy_protocol.is_some() {
            v.error("tunnel and proxyProtocol must not be set together");
        }
        v.field("outlierDetection", &self.outlier_detection);
        v.field("connectionPool", &self.connection_pool);
        if let Some(lb) = &self.load_balancer {
            v.at("loadBalancer", |v| {
                lb.check(v, self.outlier_detection.is_some())
            });
        }
        v.field("tls", &self.tls);
        v.list("portLevelSettings", &self.port_level_settings);
        v.field("tunnel", &self.tunnel);
    }
}

impl Validate for PortTrafficPolicy {
    fn validate(&self, v: &mut Validator<'_>) {
        match &self.port {
            None => v.required("port"),
            Some(p) => v.field("port", p),
        }
        if self.load_balancer.is_none()
            && self.connection_pool.is_none()
            && self.outlier_detection.is_none()
            && self.tls.is_none()
        {
            v.error("port traffic policy must have at least one of loadBalancer, connectionPool, outlierDetection or tls");
        }
        v.field("outlierDetection", &self.outlier_detection);
        v.field("connectionPool", &self.connection_pool);
        if let Some(lb) = &self.load_balancer {
            v.at("loadBalancer", |v| {
                lb.check(v, self.outlier_detection.is_some())
            });
        }
        v.field("tls", &self.tls);
    }
}

impl LoadBalancerSettings {
    fn check(&self, v: &mut Validator<'_>, has_outlier: bool) {
        if self.simple.is_some() && self.consistent_hash.is_some() {
            v.error("only one of simple and consistentHash may be set");
        }
        if self.simple == Some(SimpleLb::LeastConn) {
            v.warn_at("simple", "LEAST_CONN is deprecated; use LEAST_REQUEST");
        }
        v.field("consistentHash", &self.consistent_hash);
        if let Some(l) = &self.locality_lb_setting {
            v.at("localityLbSetting", |v| l.check(v, has_outlier));
        }
    }
}

impl Validate for ConsistentHashLb {
    fn validate(&self, v: &mut Validator<'_>) {
        let keys = [
            self.http_header_name.is_some(),
            self.http_cookie.is_some(),
            self.use_source_ip.is_some(),
            self.http_query_parameter_name.is_some(),
        ];
        match keys.iter().filter(|k| **k).count() {
            0 => v.error("consistentHash needs one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName"),
            1 => {}
            _ => v.error("only one of httpHeaderName, httpCookie, useSourceIp and httpQueryParameterName may be set"),
        }
        if let Some(cookie) = &self.http_cookie {
            if cookie.name.is_empty() {
                v.at("httpCookie", |v| v.required("name"));
            }
        }
        if self.ring_hash.is_some() && self.maglev.is_some() {
            v.error("only one of ringHash and maglev may be set");
        }
        if self.minimum_ring_size.is_some() {
            v.warn_at(
                "minimumRingSize",
                "minimumRingSize is deprecated; use ringHash.minimumRingSize",
            );
            if self.ring_hash.is_some() || self.maglev.is_some() {
                v.error_at(
                    "minimumRingSize",
                    "only one of minimumRingSize and ringHash/maglev may be set",
                );
            }
        }
        if let Some(m) = &self.maglev {
            v.at("maglev", |v| match m.table_size {
                None | Some(0) => v.required("tableSize"),
                Some(size) if size >= MAGLEV_MAX_TABLE => v.error_at(
                    "tableSize",
                    format!("tableSize must be less than {MAGLEV_MAX_TABLE}"),
                ),
                Some(size) if !is_prime(size) => v.error_at(
                    "tableSize",
                    format!("tableSize {size} must be a prime number"),
                ),
                Some(_) => {}
            });
        }
    }
}

/// Envoy's primality test for Maglev table sizes.
fn is_prime(x: u64) -> bool {
    if x != 0 && x < 4 {
        return x > 1;
    }
    if x.is_multiple_of(2) {
        return false;
    }
    let mut f = 3;
    while f * f <= x {
        if x.is_multiple_of(f) {
            return false;
        }
        f += 2;
    }
    true
}

impl LocalityLbSetting {
    fn check(&self, v: &mut Validator<'_>, has_outlier: bool) {
        if !self.distribute.is_empty() && !self.failover.is_empty() {
            v.error("distribute and failover cannot both be set");
            return;
        }
        if !self.failover.is_empty() {
            for label in &self.failover_priority {
                if [
                    "topology.kubernetes.io/region",
                    "topology.kubernetes.io/zone",
                    "topology.istio.io/subzone",
                ]
                .contains(&label.as_str())
                {
                    v.error_at(
                        "failoverPriority",
                        format!("failover and the topology label {label:?} in failoverPriority cannot both be set"),
                    );
                }
            }
        }
        v.each("distribute", &self.distribute, |v, d| {
            v.check_at("from", check_locality(&d.from));
            let mut total: u64 = 0;
            v.at("to", |v| {
                for (locality, weight) in &d.to {
                    v.at(locality, |v| {
                        v.check(check_locality(locality));
                        if !(1..=100).contains(weight) {
                            v.error(format!(
                                "locality weight {weight} must be in the range 1..100"
                            ));
                        }
                    });
                    total += u64::from(*weight);
                }
                if total != 100 {
                    v.error(format!(
                        "locality weights must sum to 100 (they sum to {total})"
                    ));
                }
            });
        });
        if (!self.failover.is_empty() || !self.failover_priority.is_empty()) && !has_outlier {
            v.warn("failover needs an outlierDetection policy to take effect");
        }
        v.each("failover", &self.failover, |v, f| {
            if f.from == f.to {
                v.error("failover must name two different regions");
            }
            if f.from.contains('/') || f.to.contains('/') {
                v.error("failover names regions only (no '/')");
            }
            if f.from.contains('*') || f.to.contains('*') {
                v.error("failover regions cannot contain '*'");
            }
        });
    }
}

/// `region[/zone[/subzone]]`, with at most one `*`, at the end.
fn check_locality(locality: &str) -> Result<(), String> {
    let stars = locality.matches('*').count();
    if stars > 1 || (stars == 1 && !locality.ends_with('*')) {
        return Err(format!("locality {locality:?}: a '*' may only end it"));
    }
    if locality.split('/').any(str::is_empty) || locality.split('/').count() > 3 {
        return Err(format!(
            "locality {locality:?} must be region[/zone[/subzone]] with no empty part"
        ));
    }
    Ok(())
}

impl Validate for OutlierDetection {
    fn validate(&self, v: &mut Validator<'_>) {
        if self.consecutive_errors.is_some() {
            v.warn_at(
                "consecutiveErrors",
                "consecutiveErrors is deprecated; use consecutive5xxErrors or consecutiveGatewayErrors",
            );
        }
        if self.split_external_local_origin_errors != Some(true)
            && self
                .consecutive_local_origin_failures
                .is_some_and(|n| n > 0)
        {
            v.error_at(
                "consecutiveLocalOriginFailures",
                "consecutiveLocalOriginFailures needs splitExternalLocalOriginErrors: true",
            );
        }
        for (key, value) in [
            ("maxEjectionPercent", self.max_ejection_percent),
            ("minHealthPercent", self.min_health_percent),
        ] {
            if let Some(p) = value {
                v.check_at(key, rules::check_percent(i64::from(p)));
            }
        }
    }
}

impl Validate for ClientTlsSettings {
    fn validate(&self, v: &mut Validator<'_>) {
        let mode = self.mode.unwrap_or(ClientTlsMode::Disable);
        if self.insecure_skip_verify == Some(true) {
            if mode == ClientTlsMode::Simple
                && (self.ca_certificates.is_some()
                    || self.credential_name.is_some()
                    || !self.subject_alt_names.is_empty())
            {
                v.error("cannot set caCertificates, credentialName or subjectAltNames when insecureSkipVerify is true");
            }
            if mode == ClientTlsMode::Mutual
                && (self.ca_certificates.is_some() || !self.subject_alt_names.is_empty())
            {
                v.error(
                    "cannot set caCertificates or subjectAltNames when insecureSkipVerify is true",
                );
            }
        }
        let with_files = matches!(mode, ClientTlsMode::Simple | ClientTlsMode::Mutual);
        if with_files && self.credential_name.is_some() {
            if self.client_certificate.is_some()
                || self.private_key.is_some()
                || self.ca_certificates.is_some()
                || self.ca_crl.is_some()
            {
                v.error("cannot set certificate files or caCrl when credentialName is set");
            }
            return;
        }
        if mode == ClientTlsMode::Mutual {
            if self.client_certificate.is_none() {
                v.error_at(
                    "clientCertificate",
                    "MUTUAL TLS needs clientCertificate (or credentialName)",
                );
            }
            if self.private_key.is_none() {
                v.error_at(
                    "privateKey",
                    "MUTUAL TLS needs privateKey (or credentialName)",
                );
            }
        }
    }
}

impl Validate for TunnelSettings {
    fn validate(&self, v: &mut Validator<'_>) {
        if let Some(p) = &self.protocol {
            if p != "CONNECT" && p != "POST" {
                v.error_at(
                    "protocol",
                    "tunnel protocol must be \"CONNECT\" or \"POST\"",
                );
            }
        }
        if !rules::is_ip(&self.target_host) && rules::check_fqdn(&self.target_host).is_err() {
            v.error_at(
                "targetHost",
                "tunnel target host must be a valid FQDN or IP address",
            );
        }
        v.check_at("targetPort", rules::check_port(self.target_port));
    }
}
