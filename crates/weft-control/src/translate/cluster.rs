//! Clusters and their endpoints: one cluster per service port, and one per
//! DestinationRule subset (the instances whose labels match), with the rule's traffic
//! policy (balancing, connection settings); peak-EWMA balancing is the mesh default.

use super::envoy::{self, Balance, EndpointSpec};
use super::services::Service;
use super::Diagnostics;
use std::time::Duration;
use weft_model::networking::destination_rule::{
    DestinationRule, LoadBalancerSettings, SimpleLb, TrafficPolicy,
};
use weft_xds::pb::envoy::config::cluster::v3::{cluster, Cluster};
use weft_xds::pb::envoy::config::core::v3::HttpProtocolOptions;
use weft_xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use weft_xds::pb::envoy::config::route::v3::route_action::{hash_policy, HashPolicy};
use weft_xds::pb::google::protobuf::UInt32Value;

/// Istio's default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Istio's cluster naming: `outbound|PORT|SUBSET|HOST`.
pub fn cluster_name(port: u16, subset: &str, host: &str) -> String {
    format!("outbound|{port}|{subset}|{host}")
}

/// The traffic policy for a port and subset: the subset's over the rule's, and a
/// port-level setting over either.
fn policy_for(dr: Option<&DestinationRule>, port: u16, subset: &str) -> TrafficPolicy {
    let mut merged = TrafficPolicy::default();
    let Some(dr) = dr else { return merged };
    let layers = [
        dr.traffic_policy.as_ref(),
        dr.subsets
            .iter()
            .find(|s| s.name == subset)
            .and_then(|s| s.traffic_policy.as_ref()),
    ];
    for p in layers.into_iter().flatten() {
        if p.load_balancer.is_some() {
            merged.load_balancer = p.load_balancer.clone();
        }
        if p.connection_pool.is_some() {
            merged.connection_pool = p.connection_pool.clone();
        }
        if p.outlier_detection.is_some() {
            merged.outlier_detection = p.outlier_detection.clone();
        }
        if let Some(pl) = p
            .port_level_settings
            .iter()
            .find(|pl| pl.port.is_some_and(|x| x.number == u32::from(port)))
        {
            if pl.load_balancer.is_some() {
                merged.load_balancer = pl.load_balancer.clone();
            }
            if pl.connection_pool.is_some() {
                merged.connection_pool = pl.connection_pool.clone();
            }
            if pl.outlier_detection.is_some() {
                merged.outlier_detection = pl.outlier_detection.clone();
            }
        }
    }
    merged
}

fn balance(lb: Option<&LoadBalancerSettings>) -> Balance {
    let Some(lb) = lb else {
        return Balance::PeakEwma;
    };
    if let Some(ch) = &lb.consistent_hash {
        if let Some(m) = &ch.maglev {
            return Balance::Maglev {
                table_size: m.table_size,
            };
        }
        return Balance::RingHash {
            minimum: ch
                .ring_hash
                .as_ref()
                .and_then(|r| r.minimum_ring_size)
                .or(ch.minimum_ring_size),
        };
    }
    match lb.simple {
        Some(SimpleLb::RoundRobin) => Balance::Classic(cluster::LbPolicy::RoundRobin),
        Some(SimpleLb::LeastRequest) | Some(SimpleLb::LeastConn) => {
            Balance::Classic(cluster::LbPolicy::LeastRequest)
        }
        Some(SimpleLb::Random) => Balance::Classic(cluster::LbPolicy::Random),
        _ => Balance::PeakEwma,
    }
}

/// The route hash policy a consistent-hash DestinationRule asks for.
pub fn hash_policy(dr: Option<&DestinationRule>, port: u16, subset: &str) -> Vec<HashPolicy> {
    let policy = policy_for(dr, port, subset);
    let Some(ch) = policy.load_balancer.and_then(|lb| lb.consistent_hash) else {
        return Vec::new();
    };
    let specifier = if let Some(h) = ch.http_header_name {
        hash_policy::PolicySpecifier::Header(hash_policy::Header {
            header_name: h,
            ..Default::default()
        })
    } else if let Some(c) = ch.http_cookie {
        hash_policy::PolicySpecifier::Cookie(hash_policy::Cookie {
            name: c.name,
            path: c.path.unwrap_or_default(),
            ..Default::default()
        })
    } else if ch.use_source_ip == Some(true) {
        hash_policy::PolicySpecifier::ConnectionProperties(hash_policy::ConnectionProperties {
            source_ip: true,
        })
    } else if let Some(q) = ch.http_query_parameter_name {
        hash_policy::PolicySpecifier::QueryParameter(hash_policy::QueryParameter { name: q })
    } else {
        return Vec::new();
    };
    vec![HashPolicy {
        policy_specifier: Some(specifier),
        ..Default::default()
    }]
}

/// The clusters and endpoint assignments of one service: every port, every subset.
pub fn service_clusters(
    svc: &Service,
    dr: Option<&DestinationRule>,
    diagnostics: &mut Diagnostics,
) -> Vec<(Cluster, ClusterLoadAssignment)> {
    let mut out = Vec::new();
    let mut subsets: Vec<(&str, Option<&std::collections::BTreeMap<String, String>>)> =
        vec![("", None)];
    if let Some(dr) = dr {
        subsets.extend(
            dr.subsets
                .iter()
                .map(|s| (s.name.as_str(), Some(&s.labels))),
        );
        if dr
            .traffic_policy
            .as_ref()
            .and_then(|p| p.outlier_detection.as_ref())
            .is_some()
        {
            diagnostics.warn(format!(
                "DestinationRule for {}: outlierDetection is not supported yet and was left out",
                svc.hostname
            ));
        }
    }
    for port in svc.ports.values() {
        for (subset, labels) in &subsets {
            let name = cluster_name(port.number, subset, &svc.hostname);
            let policy = policy_for(dr, port.number, subset);
            let mut c = envoy::eds_cluster(
                &name,
                &balance(policy.load_balancer.as_ref()),
                port.is_http2(),
                DEFAULT_CONNECT_TIMEOUT,
            );
            if let Some(pool) = &policy.connection_pool {
                if let Some(t) = pool.tcp.as_ref().and_then(|t| t.connect_timeout) {
                    c.connect_timeout = Some(envoy::duration(t.as_std()));
                }
                if let Some(h) = &pool.http {
                    let common = HttpProtocolOptions {
                        idle_timeout: h.idle_timeout.map(|d| envoy::duration(d.as_std())),
                        max_requests_per_connection: h
                            .max_requests_per_connection
                            .filter(|n| *n > 0)
                            .map(|n| UInt32Value { value: n as u32 }),
                        ..Default::default()
                    };
                    envoy::set_common_http_options(&mut c, common);
                }
            }
            let endpoints: Vec<EndpointSpec> = svc
                .instances
                .iter()
                .filter(|i| {
                    labels.is_none_or(|l| l.iter().all(|(k, v)| i.labels.get(k) == Some(v)))
                })
                .filter_map(|i| {
                    let p = i.ports.iter().find(|p| p.service_port == port.number)?;
                    Some(EndpointSpec {
                        host: i.address.clone(),
                        port: p.endpoint_port,
                        weight: i.weight,
                        healthy: i.healthy,
                    })
                })
                .collect();
            let cla = envoy::assignment(&name, &endpoints);
            out.push((c, cla));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_istio() {
        assert_eq!(
            cluster_name(9080, "v1", "reviews.default.svc.cluster.local"),
            "outbound|9080|v1|reviews.default.svc.cluster.local"
        );
        assert_eq!(cluster_name(9080, "", "r"), "outbound|9080||r");
    }
}
