//! Clusters and their endpoints: one cluster per service port, and one per
//! DestinationRule subset (the healthy instances whose labels match), with the rule's
//! traffic policy (balancing, connection settings); peak-EWMA balancing is the mesh
//! default. What a policy asks for that the proxy cannot do yet is left out with a
//! warning, never sent (the proxy would refuse the whole update).

use super::envoy::{self, Balance, EndpointSpec};
use super::mtls;
use super::services::{Discovery, Service};
use super::Diagnostics;
use crate::identity::Identity;
use std::collections::BTreeMap;
use std::time::Duration;
use weft_model::networking::destination_rule::{
    ClientTlsMode, DestinationRule, H2UpgradePolicy, LoadBalancerSettings, SimpleLb, TrafficPolicy,
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

/// The traffic policy for a port and subset, as Istio merges them: the subset's fields
/// over the rule's; a port-level setting replaces load balancing, connection pool,
/// outlier detection and TLS whole (fields it leaves out take their defaults, not the
/// level above's).
pub fn policy_for(dr: Option<&DestinationRule>, port: u16, subset: &str) -> TrafficPolicy {
    let mut merged = TrafficPolicy::default();
    let Some(dr) = dr else { return merged };
    let layers = [
        dr.traffic_policy.as_ref(),
        dr.subsets
            .iter()
            .find(|s| s.name == subset && !subset.is_empty())
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
        if p.tls.is_some() {
            merged.tls = p.tls.clone();
        }
        if p.tunnel.is_some() {
            merged.tunnel = p.tunnel.clone();
        }
        if p.proxy_protocol.is_some() {
            merged.proxy_protocol = p.proxy_protocol.clone();
        }
        if let Some(pl) = p
            .port_level_settings
            .iter()
            .find(|pl| pl.port.is_some_and(|x| x.number == u32::from(port)))
        {
            merged.load_balancer = pl.load_balancer.clone();
            merged.connection_pool = pl.connection_pool.clone();
            merged.outlier_detection = pl.outlier_detection.clone();
            merged.tls = pl.tls.clone();
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
                .or(ch.minimum_ring_size)
                // Zero means the default, as in Istio; the proxy caps rings at 8M entries.
                .filter(|m| *m > 0)
                .map(|m| m.min(MAX_RING_SIZE)),
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

/// The largest ring Envoy (and Weft) builds.
pub const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;

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
        // A `ttl` asks the proxy to set the cookie when absent, which Weft does not do
        // yet (a warning says so): requests without the cookie are spread at random.
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

/// What a traffic policy asks for that the translation leaves out.
fn unsupported(policy: &TrafficPolicy) -> Vec<&'static str> {
    let mut out = Vec::new();
    if policy.outlier_detection.is_some() {
        out.push("outlierDetection");
    }
    if let Some(lb) = &policy.load_balancer {
        if lb.locality_lb_setting.is_some() {
            out.push("loadBalancer.localityLbSetting");
        }
        if lb.warmup_duration_secs.is_some() {
            out.push("loadBalancer.warmupDurationSecs");
        }
        if lb.simple == Some(SimpleLb::Passthrough) && lb.consistent_hash.is_none() {
            out.push("loadBalancer.simple PASSTHROUGH");
        }
        if lb
            .consistent_hash
            .as_ref()
            .and_then(|c| c.http_cookie.as_ref())
            .is_some_and(|c| c.ttl.is_some())
        {
            out.push("consistentHash.httpCookie.ttl (generated cookies)");
        }
    }
    if let Some(pool) = &policy.connection_pool {
        if let Some(tcp) = &pool.tcp {
            if tcp.max_connections.is_some() {
                out.push("connectionPool.tcp.maxConnections");
            }
            if tcp.tcp_keepalive.is_some() {
                out.push("connectionPool.tcp.tcpKeepalive");
            }
            if tcp.max_connection_duration.is_some() {
                out.push("connectionPool.tcp.maxConnectionDuration");
            }
            if tcp.idle_timeout.is_some() {
                out.push("connectionPool.tcp.idleTimeout");
            }
        }
        if let Some(http) = &pool.http {
            if http.http1_max_pending_requests.is_some() {
                out.push("connectionPool.http.http1MaxPendingRequests");
            }
            if http.http2_max_requests.is_some() {
                out.push("connectionPool.http.http2MaxRequests");
            }
            if http.max_retries.is_some() {
                out.push("connectionPool.http.maxRetries");
            }
            if http.max_concurrent_streams.is_some() {
                out.push("connectionPool.http.maxConcurrentStreams");
            }
        }
    }
    if policy.tls.as_ref().is_some_and(|t| {
        t.mode
            .is_some_and(|m| !matches!(m, ClientTlsMode::Disable | ClientTlsMode::IstioMutual))
    }) {
        out.push("tls SIMPLE/MUTUAL (upstream TLS with your own certificates)");
    }
    if policy.tunnel.is_some() {
        out.push("tunnel");
    }
    if policy.proxy_protocol.is_some() {
        out.push("proxyProtocol");
    }
    out
}

/// The clusters of one service, every port and every subset, each with its endpoint
/// assignment when it takes them over EDS (DNS clusters carry theirs inline). Only
/// instances whose health check passes are endpoints: an instance takes traffic once it
/// is healthy, and a proxy in panic mode would otherwise send it requests.
pub fn service_clusters(
    svc: &Service,
    dr: Option<&DestinationRule>,
    trust_domain: &str,
    diagnostics: &mut Diagnostics,
) -> Vec<(Cluster, Option<ClusterLoadAssignment>)> {
    let meshed = is_meshed(svc);
    let peer = Identity::new(svc.namespace.clone(), svc.name.clone()).spiffe_id(trust_domain);
    let mut out = Vec::new();
    let mut subsets: Vec<(&str, Option<&BTreeMap<String, String>>)> = vec![("", None)];
    if let Some(dr) = dr {
        subsets.extend(
            dr.subsets
                .iter()
                .map(|s| (s.name.as_str(), Some(&s.labels))),
        );
    }
    for port in svc.ports.values() {
        for (subset, labels) in &subsets {
            let name = cluster_name(port.number, subset, &svc.hostname);
            let policy = policy_for(dr, port.number, subset);
            for what in unsupported(&policy) {
                diagnostics.warn(format!(
                    "DestinationRule for {}: {what} is not supported yet and was left out",
                    svc.hostname
                ));
            }
            let endpoints: Vec<EndpointSpec> = svc
                .instances
                .iter()
                .filter(|i| i.healthy)
                .filter(|i| {
                    labels.is_none_or(|l| l.iter().all(|(k, v)| i.labels.get(k) == Some(v)))
                })
                .filter_map(|i| {
                    let p = i.ports.iter().find(|p| p.service_port == port.number)?;
                    Some(EndpointSpec {
                        host: i.address.clone(),
                        port: p.endpoint_port,
                        weight: i.weight,
                        healthy: true,
                    })
                })
                .collect();
            let lb = balance(policy.load_balancer.as_ref());
            let mut alpn: &[&str] = if port.is_http2() {
                &["h2"]
            } else {
                &["http/1.1"]
            };
            let connect_timeout = policy
                .connection_pool
                .as_ref()
                .and_then(|p| p.tcp.as_ref())
                .and_then(|t| t.connect_timeout)
                .map_or(DEFAULT_CONNECT_TIMEOUT, |t| t.as_std());
            let (mut c, cla) = match svc.discovery {
                Discovery::Endpoints => (
                    envoy::eds_cluster(&name, &lb, port.is_http2(), connect_timeout),
                    Some(envoy::assignment(&name, &endpoints)),
                ),
                Discovery::Dns => (
                    envoy::dns_cluster(
                        &name,
                        &lb,
                        port.is_http2(),
                        connect_timeout,
                        false,
                        &endpoints,
                    ),
                    None,
                ),
                Discovery::DnsRoundRobin => {
                    let first = &endpoints[..endpoints.len().min(1)];
                    if first.is_empty() {
                        diagnostics.warn(format!(
                            "{name}: no endpoint to resolve (DNS_ROUND_ROBIN); the cluster was left out"
                        ));
                        continue;
                    }
                    (
                        envoy::dns_cluster(
                            &name,
                            &lb,
                            port.is_http2(),
                            connect_timeout,
                            true,
                            first,
                        ),
                        None,
                    )
                }
            };
            if let Some(h) = policy
                .connection_pool
                .as_ref()
                .and_then(|p| p.http.as_ref())
            {
                if h.idle_timeout.is_some() || h.max_requests_per_connection.is_some_and(|n| n > 0)
                {
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
                if port.is_http() {
                    if h.use_client_protocol == Some(true) {
                        envoy::set_downstream_protocol(&mut c);
                        alpn = &mtls::INBOUND_ALPN;
                    } else if h.h2_upgrade_policy == Some(H2UpgradePolicy::Upgrade) {
                        envoy::set_http2(&mut c);
                        alpn = &["h2"];
                    }
                }
            }
            let tls_mode = policy.tls.as_ref().and_then(|t| t.mode);
            let mutual = match tls_mode {
                Some(ClientTlsMode::IstioMutual) => true,
                Some(ClientTlsMode::Disable) => false,
                _ => meshed,
            };
            if mutual {
                let alpn: &[&str] = if port.is_http() { alpn } else { &[] };
                c.transport_socket = Some(mtls::upstream(&peer, alpn));
            }
            out.push((c, cla));
        }
    }
    out
}

/// Istio's auto mTLS: a service whose instances are all Weft sidecars is reached over
/// mTLS. An instance without a sidecar (a `Workload`, a ServiceEntry endpoint) cannot
/// answer it, so a service with any is reached in plain text, unless a DestinationRule
/// says `ISTIO_MUTUAL`.
fn is_meshed(svc: &Service) -> bool {
    !svc.entry && !svc.instances.is_empty() && svc.instances.iter().all(|i| i.sidecar)
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
