//! `Cluster` → [`ClusterParts`]: discovery type, endpoints, load-balancing policy
//! (classic `lb_policy` or `load_balancing_policy`, taking the first policy Weft knows),
//! upstream protocol and pool settings.

// Deprecated Envoy fields are still read: configurations written for older Envoy
// versions use them, and Envoy itself still honours them.
#![allow(deprecated)]

use super::{decode_any, duration, host_port, socket_address, timeout, type_name, Context};
use crate::cluster::endpoint::{EndpointSpec, Health, PoolLimits};
use crate::cluster::lb::{LbPolicy, DEFAULT_PANIC_THRESHOLD};
use crate::cluster::maglev::{is_prime, DEFAULT_TABLE_SIZE};
use crate::cluster::ring_hash::{DEFAULT_MAX_RING, DEFAULT_MIN_RING};
use crate::cluster::{
    ClusterParts, Discovery, DnsFamily, DnsTarget, Http2Settings, UpstreamProtocol,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_DNS_REFRESH, DEFAULT_MAX_IDLE,
};
use std::sync::Arc;
use std::time::Duration;
use weft_xds::pb::envoy::config::cluster::v3::{cluster, Cluster};
use weft_xds::pb::envoy::config::core::v3 as core;
use weft_xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use weft_xds::pb::envoy::extensions::load_balancing_policies as lbp;
use weft_xds::pb::envoy::extensions::upstreams::http::v3::{
    http_protocol_options, HttpProtocolOptions,
};
use weft_xds::type_url;

/// Compiles one cluster.
pub fn compile(c: &Cluster, path: &str, ctx: &mut Context<'_>) -> Option<ClusterParts> {
    let errors_before = ctx.errors.len();
    if c.name.is_empty() {
        ctx.error(&format!("{path}.name"), "a cluster needs a name");
    }
    let kind = match &c.cluster_discovery_type {
        None => cluster::DiscoveryType::Static,
        Some(cluster::ClusterDiscoveryType::Type(t)) => {
            cluster::DiscoveryType::try_from(*t).unwrap_or(cluster::DiscoveryType::Static)
        }
        Some(cluster::ClusterDiscoveryType::ClusterType(_)) => {
            ctx.error(
                &format!("{path}.cluster_type"),
                "custom cluster types are not supported",
            );
            return None;
        }
    };
    let connect_timeout = c
        .connect_timeout
        .as_ref()
        .and_then(|d| duration(d, &format!("{path}.connect_timeout"), ctx))
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let policy = lb_policy(c, path, ctx)?;
    let (protocol, http2, max_requests, idle) = protocol(c, path, ctx);
    let family = match cluster::DnsLookupFamily::try_from(c.dns_lookup_family) {
        Ok(cluster::DnsLookupFamily::V4Only) => DnsFamily::V4Only,
        Ok(cluster::DnsLookupFamily::V6Only) => DnsFamily::V6Only,
        Ok(cluster::DnsLookupFamily::All) => DnsFamily::All,
        _ => DnsFamily::Auto,
    };
    let refresh = c
        .dns_refresh_rate
        .as_ref()
        .and_then(|d| duration(d, &format!("{path}.dns_refresh_rate"), ctx))
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_DNS_REFRESH);
    let assignment_path = format!("{path}.load_assignment");
    let (discovery, endpoints) = match kind {
        cluster::DiscoveryType::Static => (
            Discovery::Static,
            static_endpoints(c.load_assignment.as_ref(), &assignment_path, ctx),
        ),
        cluster::DiscoveryType::StrictDns => {
            let targets = dns_targets(c.load_assignment.as_ref(), &assignment_path, ctx);
            (
                Discovery::StrictDns {
                    targets,
                    refresh,
                    family,
                },
                Vec::new(),
            )
        }
        cluster::DiscoveryType::LogicalDns => {
            let mut targets = dns_targets(c.load_assignment.as_ref(), &assignment_path, ctx);
            if targets.len() != 1 {
                ctx.error(
                    &assignment_path,
                    "LOGICAL_DNS clusters need exactly one endpoint",
                );
                return None;
            }
            (
                Discovery::LogicalDns {
                    target: targets.remove(0),
                    refresh,
                    family,
                },
                Vec::new(),
            )
        }
        cluster::DiscoveryType::OriginalDst => {
            if c.load_assignment
                .as_ref()
                .is_some_and(|a| !a.endpoints.is_empty())
            {
                ctx.error(&assignment_path, "ORIGINAL_DST clusters take no endpoints");
            }
            let header = match &c.lb_config {
                Some(cluster::LbConfig::OriginalDstLbConfig(o)) if o.use_http_header => {
                    let name = if o.http_header_name.is_empty() {
                        "x-envoy-original-dst-host"
                    } else {
                        o.http_header_name.as_str()
                    };
                    match http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
                        Ok(h) => Some(h),
                        Err(_) => {
                            ctx.error(
                                &format!("{path}.original_dst_lb_config.http_header_name"),
                                "invalid header name",
                            );
                            None
                        }
                    }
                }
                _ => None,
            };
            (Discovery::OriginalDst { header }, Vec::new())
        }
        cluster::DiscoveryType::Eds => {
            let service_name = c
                .eds_cluster_config
                .as_ref()
                .map(|e| e.service_name.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| c.name.clone());
            if !ctx.dynamic {
                ctx.error(
                    &format!("{path}.type"),
                    "EDS clusters need an xDS server (dynamic_resources), which this configuration does not have",
                );
            }
            (Discovery::Eds { service_name }, Vec::new())
        }
    };
    let panic_threshold = c
        .common_lb_config
        .as_ref()
        .and_then(|l| l.healthy_panic_threshold.as_ref())
        .map(|p| p.value)
        .unwrap_or(DEFAULT_PANIC_THRESHOLD);
    let tls = c
        .transport_socket
        .as_ref()
        .and_then(|ts| super::tls::upstream(ts, &format!("{path}.transport_socket"), ctx))
        .flatten();
    if ctx.errors.len() > errors_before {
        return None;
    }
    Some(ClusterParts {
        name: c.name.as_str().into(),
        discovery,
        connect_timeout,
        policy,
        protocol,
        http2,
        limits: PoolLimits {
            max_idle: DEFAULT_MAX_IDLE,
            idle_timeout: idle,
            max_requests_per_connection: max_requests,
        },
        panic_threshold,
        endpoints,
        tls,
    })
}

/// The policy: `load_balancing_policy` (first known entry wins) or `lb_policy`.
fn lb_policy(c: &Cluster, path: &str, ctx: &mut Context<'_>) -> Option<LbPolicy> {
    if let Some(lbp) = &c.load_balancing_policy {
        let lpath = format!("{path}.load_balancing_policy");
        for (i, p) in lbp.policies.iter().enumerate() {
            let ppath = format!("{lpath}.policies[{i}].typed_extension_config.typed_config");
            let Some(any) = p
                .typed_extension_config
                .as_ref()
                .and_then(|t| t.typed_config.as_ref())
            else {
                continue;
            };
            if let Some(policy) = extension_policy(any, &ppath, ctx) {
                return Some(policy);
            }
        }
        ctx.error(&lpath, "none of the policies is one weft supports (round_robin, least_request, random, ring_hash, maglev, weft peak_ewma)");
        return None;
    }
    use cluster::LbPolicy as L;
    Some(match L::try_from(c.lb_policy) {
        Ok(L::RoundRobin) => LbPolicy::RoundRobin,
        Ok(L::LeastRequest) => LbPolicy::LeastRequest {
            choices: match &c.lb_config {
                Some(cluster::LbConfig::LeastRequestLbConfig(l)) => {
                    l.choice_count.as_ref().map_or(2, |v| v.value)
                }
                _ => 2,
            },
        },
        Ok(L::Random) => LbPolicy::Random,
        Ok(L::RingHash) => {
            let (min, max) = match &c.lb_config {
                Some(cluster::LbConfig::RingHashLbConfig(r)) => {
                    if r.hash_function != cluster::ring_hash_lb_config::HashFunction::XxHash as i32
                    {
                        ctx.error(
                            &format!("{path}.ring_hash_lb_config.hash_function"),
                            "only XX_HASH is supported",
                        );
                    }
                    (
                        r.minimum_ring_size
                            .as_ref()
                            .map_or(DEFAULT_MIN_RING, |v| v.value),
                        r.maximum_ring_size
                            .as_ref()
                            .map_or(DEFAULT_MAX_RING, |v| v.value),
                    )
                }
                _ => (DEFAULT_MIN_RING, DEFAULT_MAX_RING),
            };
            ring_bounds(min, max, &format!("{path}.ring_hash_lb_config"), ctx)?
        }
        Ok(L::Maglev) => {
            let size = match &c.lb_config {
                Some(cluster::LbConfig::MaglevLbConfig(m)) => m
                    .table_size
                    .as_ref()
                    .map_or(DEFAULT_TABLE_SIZE, |v| v.value),
                _ => DEFAULT_TABLE_SIZE,
            };
            maglev_size(size, &format!("{path}.maglev_lb_config.table_size"), ctx)?
        }
        Ok(other) => {
            ctx.error(
                &format!("{path}.lb_policy"),
                format!("{} is not supported", other.as_str_name()),
            );
            return None;
        }
        Err(_) => {
            ctx.error(&format!("{path}.lb_policy"), "unknown policy");
            return None;
        }
    })
}

fn ring_bounds(min: u64, max: u64, path: &str, ctx: &mut Context<'_>) -> Option<LbPolicy> {
    if min == 0 || min > max || max > DEFAULT_MAX_RING {
        ctx.error(path, format!("ring size bounds must satisfy 0 < minimum ({min}) <= maximum ({max}) <= {DEFAULT_MAX_RING}"));
        return None;
    }
    Some(LbPolicy::RingHash { min, max })
}

fn maglev_size(size: u64, path: &str, ctx: &mut Context<'_>) -> Option<LbPolicy> {
    if !is_prime(size) || size > 5_000_011 {
        ctx.error(
            path,
            format!("{size} must be a prime no larger than 5000011"),
        );
        return None;
    }
    Some(LbPolicy::Maglev { table_size: size })
}

/// A policy from `load_balancing_policy`; `None` for one Weft does not know (skipped).
fn extension_policy(
    any: &weft_xds::pb::google::protobuf::Any,
    path: &str,
    ctx: &mut Context<'_>,
) -> Option<LbPolicy> {
    match any.type_url.as_str() {
        type_url::LB_ROUND_ROBIN => Some(LbPolicy::RoundRobin),
        type_url::LB_RANDOM => Some(LbPolicy::Random),
        type_url::LB_LEAST_REQUEST => {
            let l: lbp::least_request::v3::LeastRequest = decode_any(any, path, ctx)?;
            Some(LbPolicy::LeastRequest {
                choices: l.choice_count.map_or(2, |v| v.value),
            })
        }
        type_url::LB_RING_HASH => {
            let r: lbp::ring_hash::v3::RingHash = decode_any(any, path, ctx)?;
            let min = r.minimum_ring_size.map_or(DEFAULT_MIN_RING, |v| v.value);
            let max = r.maximum_ring_size.map_or(DEFAULT_MAX_RING, |v| v.value);
            ring_bounds(min, max, path, ctx)
        }
        type_url::LB_MAGLEV => {
            let m: lbp::maglev::v3::Maglev = decode_any(any, path, ctx)?;
            maglev_size(
                m.table_size.map_or(DEFAULT_TABLE_SIZE, |v| v.value),
                path,
                ctx,
            )
        }
        type_url::LB_PEAK_EWMA => {
            let p: weft_xds::ext::PeakEwma = decode_any(any, path, ctx)?;
            let decay = p
                .decay
                .as_ref()
                .and_then(|d| duration(d, path, ctx))
                .unwrap_or(Duration::from_secs(10));
            let default_rtt = p
                .default_rtt
                .as_ref()
                .and_then(|d| duration(d, path, ctx))
                .unwrap_or(Duration::from_millis(30));
            Some(LbPolicy::PeakEwma {
                decay: decay.max(Duration::from_millis(1)),
                default_rtt,
            })
        }
        other => {
            tracing::debug!(
                policy = type_name(other),
                "skipping unknown load-balancing policy"
            );
            None
        }
    }
}

/// Protocol, HTTP/2 settings, requests per connection and idle timeout upstream.
fn protocol(
    c: &Cluster,
    path: &str,
    ctx: &mut Context<'_>,
) -> (
    UpstreamProtocol,
    Http2Settings,
    Option<u32>,
    Option<Duration>,
) {
    let mut protocol = UpstreamProtocol::Http1;
    let mut h2: Option<&core::Http2ProtocolOptions> = c.http2_protocol_options.as_ref();
    let mut h2_path = format!("{path}.http2_protocol_options");
    if h2.is_some() {
        protocol = UpstreamProtocol::Http2;
    }
    let mut common: Option<&core::HttpProtocolOptions> = None;
    let mut options_path = String::new();
    let options: Option<HttpProtocolOptions> =
        c.typed_extension_protocol_options
            .iter()
            .find_map(|(key, any)| {
                let opath = format!("{path}.typed_extension_protocol_options[{key}]");
                if any.type_url != type_url::HTTP_PROTOCOL_OPTIONS {
                    ctx.error(&opath, format!("{} is not supported", any.type_url));
                    return None;
                }
                options_path = opath.clone();
                decode_any::<HttpProtocolOptions>(any, &opath, ctx)
            });
    if let Some(o) = &options {
        use http_protocol_options::UpstreamProtocolOptions as U;
        match &o.upstream_protocol_options {
            Some(U::ExplicitHttpConfig(e)) => {
                use http_protocol_options::explicit_http_config::ProtocolConfig as P;
                match &e.protocol_config {
                    Some(P::Http2ProtocolOptions(o)) => {
                        protocol = UpstreamProtocol::Http2;
                        h2 = Some(o);
                        h2_path =
                            format!("{options_path}.explicit_http_config.http2_protocol_options");
                    }
                    Some(P::HttpProtocolOptions(_)) | None => protocol = UpstreamProtocol::Http1,
                    Some(_) => ctx.error(path, "HTTP/3 upstreams are not supported"),
                }
            }
            Some(U::UseDownstreamProtocolConfig(d)) => {
                protocol = UpstreamProtocol::UseDownstream;
                h2 = d.http2_protocol_options.as_ref();
                h2_path =
                    format!("{options_path}.use_downstream_protocol_config.http2_protocol_options");
            }
            Some(_) => ctx.error(
                path,
                "auto_config (the protocol chosen by ALPN) is not supported; use explicit_http_config or use_downstream_protocol_config",
            ),
            None => {}
        }
        common = o.common_http_protocol_options.as_ref();
    }
    let mut settings = Http2Settings::default();
    if let Some(h2) = h2 {
        // Honoured on listeners; upstream, the server's own SETTINGS limit applies.
        if h2.max_concurrent_streams.is_some() {
            ctx.error(
                &format!("{h2_path}.max_concurrent_streams"),
                "not supported on clusters (the upstream's SETTINGS_MAX_CONCURRENT_STREAMS applies)",
            );
        }
        settings.initial_stream_window_size = h2.initial_stream_window_size.map(|v| v.value);
        settings.initial_connection_window_size =
            h2.initial_connection_window_size.map(|v| v.value);
        if let Some(k) = &h2.connection_keepalive {
            settings.keepalive_interval = k.interval.as_ref().and_then(|d| duration(d, path, ctx));
            settings.keepalive_timeout = k.timeout.as_ref().and_then(|d| duration(d, path, ctx));
        }
    }
    let max_requests = common
        .and_then(|c| c.max_requests_per_connection.map(|v| v.value))
        .filter(|v| *v > 0);
    let idle = timeout(
        common.and_then(|c| c.idle_timeout.as_ref()),
        Some(Duration::from_secs(3600)),
        &format!("{path}.common_http_protocol_options.idle_timeout"),
        ctx,
    );
    (protocol, settings, max_requests, idle)
}

fn health(status: i32) -> Health {
    use core::HealthStatus as H;
    match H::try_from(status) {
        Ok(H::Unhealthy) | Ok(H::Draining) | Ok(H::Timeout) => Health::Unhealthy,
        Ok(H::Degraded) => Health::Degraded,
        _ => Health::Healthy,
    }
}

/// The endpoints of an assignment received over EDS (addresses must be IPs).
pub fn assignment_endpoints(
    a: &ClusterLoadAssignment,
    path: &str,
    ctx: &mut Context<'_>,
) -> Vec<EndpointSpec> {
    static_endpoints(Some(a), path, ctx)
}

fn static_endpoints(
    a: Option<&ClusterLoadAssignment>,
    path: &str,
    ctx: &mut Context<'_>,
) -> Vec<EndpointSpec> {
    let mut out = Vec::new();
    for_each_endpoint(
        a,
        path,
        ctx,
        |ctx, epath, addr, weight, health, priority, hostname| {
            if let Some(address) = socket_address(addr, &format!("{epath}.address"), ctx) {
                out.push(EndpointSpec {
                    address,
                    hostname,
                    weight,
                    health,
                    priority,
                });
            }
        },
    );
    out
}

fn dns_targets(
    a: Option<&ClusterLoadAssignment>,
    path: &str,
    ctx: &mut Context<'_>,
) -> Vec<DnsTarget> {
    let mut out = Vec::new();
    for_each_endpoint(
        a,
        path,
        ctx,
        |ctx, epath, addr, weight, health, priority, _| {
            if let Some((host, port)) = host_port(addr, &format!("{epath}.address"), ctx) {
                out.push(DnsTarget {
                    host,
                    port,
                    weight,
                    priority,
                    health,
                });
            }
        },
    );
    out
}

fn for_each_endpoint(
    a: Option<&ClusterLoadAssignment>,
    path: &str,
    ctx: &mut Context<'_>,
    mut visit: impl FnMut(&mut Context<'_>, &str, &core::Address, u32, Health, u32, Option<Arc<str>>),
) {
    let Some(a) = a else { return };
    for (i, locality) in a.endpoints.iter().enumerate() {
        for (j, lb) in locality.lb_endpoints.iter().enumerate() {
            let epath = format!("{path}.endpoints[{i}].lb_endpoints[{j}]");
            use weft_xds::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
            let Some(HostIdentifier::Endpoint(ep)) = &lb.host_identifier else {
                ctx.error(
                    &format!("{epath}.endpoint"),
                    "an endpoint with an address is required",
                );
                continue;
            };
            let Some(addr) = &ep.address else {
                ctx.error(
                    &format!("{epath}.endpoint.address"),
                    "an address is required",
                );
                continue;
            };
            let weight = lb.load_balancing_weight.map_or(1, |w| w.value);
            if weight == 0 {
                ctx.error(
                    &format!("{epath}.load_balancing_weight"),
                    "must be at least 1",
                );
                continue;
            }
            let hostname = (!ep.hostname.is_empty()).then(|| Arc::from(ep.hostname.as_str()));
            visit(
                ctx,
                &format!("{epath}.endpoint"),
                addr,
                weight,
                health(lb.health_status),
                locality.priority,
                hostname,
            );
        }
    }
}
