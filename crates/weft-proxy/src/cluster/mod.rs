//! Upstream clusters: how their endpoints are discovered (static, DNS, original
//! destination, EDS), how one is chosen, and how connections to them are kept.

pub mod endpoint;
pub mod hash;
pub mod lb;
pub mod maglev;
pub mod pool;
pub mod ring_hash;

use arc_swap::ArcSwap;
use endpoint::{Endpoint, EndpointSpec, Health, PoolLimits};
use lb::{LbPolicy, LoadBalancer, PrioritySet};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::metrics::ClusterStats;

/// Envoy's default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Envoy's default DNS refresh rate.
pub const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(5);
/// Idle HTTP/1.1 connections kept per endpoint and worker.
pub const DEFAULT_MAX_IDLE: usize = 256;

/// Which protocol the cluster speaks upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2 (prior knowledge on cleartext).
    Http2,
    /// Whatever the downstream request used.
    UseDownstream,
}

/// HTTP/2 settings for upstream connections.
#[derive(Debug, Clone, Default)]
pub struct Http2Settings {
    /// Initial stream window.
    pub initial_stream_window_size: Option<u32>,
    /// Initial connection window.
    pub initial_connection_window_size: Option<u32>,
    /// PING interval.
    pub keepalive_interval: Option<Duration>,
    /// PING timeout.
    pub keepalive_timeout: Option<Duration>,
}

/// Which address family DNS answers are taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsFamily {
    /// IPv4 only.
    V4Only,
    /// IPv6 only.
    V6Only,
    /// IPv4 if any, else IPv6 (Envoy's AUTO prefers IPv6; Weft prefers what loopback
    /// setups answer first).
    Auto,
    /// Every address.
    All,
}

/// One name to resolve.
#[derive(Debug, Clone)]
pub struct DnsTarget {
    /// Hostname.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Weight of the resolved endpoints.
    pub weight: u32,
    /// Priority of the resolved endpoints.
    pub priority: u32,
    /// Health of the resolved endpoints.
    pub health: Health,
}

/// How a cluster learns its endpoints.
#[derive(Debug, Clone)]
pub enum Discovery {
    /// Fixed in configuration.
    Static,
    /// Every address of each name, refreshed.
    StrictDns {
        /// Names.
        targets: Vec<DnsTarget>,
        /// Refresh interval.
        refresh: Duration,
        /// Family.
        family: DnsFamily,
    },
    /// The first address of one name, refreshed.
    LogicalDns {
        /// Name.
        target: DnsTarget,
        /// Refresh interval.
        refresh: Duration,
        /// Family.
        family: DnsFamily,
    },
    /// The connection's original destination (or a header naming one).
    OriginalDst {
        /// `x-envoy-original-dst-host` (or the configured header) when enabled.
        header: Option<http::HeaderName>,
    },
    /// Endpoints come from EDS.
    Eds {
        /// Resource name to subscribe to.
        service_name: String,
    },
}

/// A compiled upstream cluster.
#[derive(Debug)]
pub struct Cluster {
    /// Name.
    pub name: Arc<str>,
    /// Endpoint discovery.
    pub discovery: Discovery,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Balancer.
    pub lb: LoadBalancer,
    hosts: ArcSwap<PrioritySet>,
    /// Endpoints by address, kept so that their pools survive updates.
    by_address: Mutex<HashMap<SocketAddr, Arc<Endpoint>>>,
    /// Upstream protocol.
    pub protocol: UpstreamProtocol,
    /// HTTP/2 settings.
    pub http2: Http2Settings,
    /// Pool limits.
    pub limits: PoolLimits,
    /// Panic threshold, percent.
    pub panic_threshold: f64,
    /// Worker threads (pools per endpoint).
    pub workers: usize,
    /// Metrics.
    pub stats: ClusterStats,
    /// TLS origination (`transport_socket`); a cluster's connections are all TLS or all
    /// plaintext, and its pools belong to it, so the two never share a pool.
    pub tls: Option<Arc<crate::tls::UpstreamTls>>,
}

/// What a compiled cluster is made of (see `compile::cluster`).
#[derive(Debug)]
pub struct ClusterParts {
    /// Name.
    pub name: Arc<str>,
    /// Discovery.
    pub discovery: Discovery,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Policy.
    pub policy: LbPolicy,
    /// Protocol.
    pub protocol: UpstreamProtocol,
    /// HTTP/2 settings.
    pub http2: Http2Settings,
    /// Pool limits.
    pub limits: PoolLimits,
    /// Panic threshold, percent.
    pub panic_threshold: f64,
    /// Static endpoints.
    pub endpoints: Vec<EndpointSpec>,
    /// TLS origination.
    pub tls: Option<Arc<crate::tls::UpstreamTls>>,
}

impl Cluster {
    /// Builds the cluster with its static endpoints.
    pub fn new(parts: ClusterParts, workers: usize, stats: ClusterStats) -> Cluster {
        let cluster = Cluster {
            name: parts.name,
            discovery: parts.discovery,
            connect_timeout: parts.connect_timeout,
            lb: LoadBalancer::new(parts.policy),
            hosts: ArcSwap::from_pointee(PrioritySet::default()),
            by_address: Mutex::new(HashMap::new()),
            protocol: parts.protocol,
            http2: parts.http2,
            limits: parts.limits,
            panic_threshold: parts.panic_threshold,
            workers,
            stats,
            tls: parts.tls,
        };
        cluster.set_endpoints(&parts.endpoints);
        cluster
    }

    /// The current endpoints.
    pub fn hosts(&self) -> arc_swap::Guard<Arc<PrioritySet>> {
        self.hosts.load()
    }

    fn default_rtt(&self) -> Duration {
        match &self.lb.policy {
            LbPolicy::PeakEwma { default_rtt, .. } => *default_rtt,
            _ => Duration::from_millis(30),
        }
    }

    /// Replaces the endpoint set; endpoints whose address stays keep their pools and
    /// load statistics.
    pub fn set_endpoints(&self, specs: &[EndpointSpec]) {
        let mut known = self.by_address.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = HashMap::with_capacity(specs.len());
        let mut list = Vec::with_capacity(specs.len());
        for spec in specs {
            if next.contains_key(&spec.address) {
                continue;
            }
            let ep = match known.get(&spec.address) {
                Some(old) if old.priority == spec.priority && old.hostname == spec.hostname => {
                    old.set_weight(spec.weight);
                    old.set_health(spec.health);
                    old.clone()
                }
                _ => Arc::new(Endpoint::new(
                    spec,
                    self.limits,
                    self.workers,
                    self.default_rtt(),
                )),
            };
            next.insert(spec.address, ep.clone());
            list.push(ep);
        }
        *known = next;
        let set = PrioritySet::build(&list, &self.lb.policy, self.panic_threshold);
        self.stats.membership_total.set(list.len() as i64);
        self.stats.membership_healthy.set(set.healthy_count as i64);
        self.hosts.store(Arc::new(set));
    }

    /// The endpoint for an original destination, made on first use.
    pub fn original_dst_endpoint(&self, addr: SocketAddr) -> Arc<Endpoint> {
        let mut known = self.by_address.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ep) = known.get(&addr) {
            return ep.clone();
        }
        let spec = EndpointSpec {
            address: addr,
            hostname: None,
            weight: 1,
            health: Health::Healthy,
            priority: 0,
        };
        let ep = Arc::new(Endpoint::new(
            &spec,
            self.limits,
            self.workers,
            self.default_rtt(),
        ));
        known.insert(addr, ep.clone());
        self.stats.membership_total.set(known.len() as i64);
        self.stats.membership_healthy.set(known.len() as i64);
        ep
    }

    /// Resolves the cluster's DNS names once and applies the answer; a failed lookup
    /// keeps the previous endpoints (as Envoy does).
    pub async fn refresh_dns(&self) {
        let (targets, family, first_only) = match &self.discovery {
            Discovery::StrictDns {
                targets, family, ..
            } => (targets.as_slice(), *family, false),
            Discovery::LogicalDns { target, family, .. } => {
                (std::slice::from_ref(target), *family, true)
            }
            _ => return,
        };
        let mut specs = Vec::new();
        for t in targets {
            let answer = match tokio::net::lookup_host((t.host.as_str(), t.port)).await {
                Ok(a) => a.collect::<Vec<_>>(),
                Err(e) => {
                    tracing::warn!(cluster = %self.name, host = %t.host, error = %e, "DNS resolution failed; keeping previous endpoints");
                    return;
                }
            };
            let mut addrs = filter_family(answer, family);
            if first_only {
                addrs.truncate(1);
            }
            let hostname: Arc<str> = t.host.as_str().into();
            specs.extend(addrs.into_iter().map(|address| EndpointSpec {
                address,
                hostname: Some(hostname.clone()),
                weight: t.weight,
                health: t.health,
                priority: t.priority,
            }));
        }
        self.set_endpoints(&specs);
    }

    /// The DNS refresh interval, for clusters that resolve names.
    pub fn dns_refresh(&self) -> Option<Duration> {
        match &self.discovery {
            Discovery::StrictDns { refresh, .. } | Discovery::LogicalDns { refresh, .. } => {
                Some(*refresh)
            }
            _ => None,
        }
    }
}

fn filter_family(answer: Vec<SocketAddr>, family: DnsFamily) -> Vec<SocketAddr> {
    let v4: Vec<SocketAddr> = answer.iter().copied().filter(SocketAddr::is_ipv4).collect();
    let v6: Vec<SocketAddr> = answer.iter().copied().filter(SocketAddr::is_ipv6).collect();
    let mut out = match family {
        DnsFamily::V4Only => v4,
        DnsFamily::V6Only => v6,
        DnsFamily::Auto => {
            if v4.is_empty() {
                v6
            } else {
                v4
            }
        }
        DnsFamily::All => answer,
    };
    out.dedup();
    out
}

/// Every cluster by name.
pub type ClusterMap = HashMap<Arc<str>, Arc<Cluster>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn parts(endpoints: Vec<EndpointSpec>, discovery: Discovery) -> ClusterParts {
        ClusterParts {
            name: "c".into(),
            discovery,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            policy: LbPolicy::RoundRobin,
            protocol: UpstreamProtocol::Http1,
            http2: Http2Settings::default(),
            limits: PoolLimits {
                max_idle: 4,
                idle_timeout: None,
                max_requests_per_connection: None,
            },
            panic_threshold: lb::DEFAULT_PANIC_THRESHOLD,
            endpoints,
            tls: None,
        }
    }

    fn spec(port: u16) -> EndpointSpec {
        EndpointSpec {
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            hostname: None,
            weight: 1,
            health: Health::Healthy,
            priority: 0,
        }
    }

    #[test]
    fn updates_keep_surviving_endpoints() {
        let m = Metrics::new();
        let c = Cluster::new(
            parts(vec![spec(1), spec(2)], Discovery::Static),
            1,
            m.cluster("c"),
        );
        let before: Vec<_> = c.hosts().endpoints().cloned().collect();
        c.set_endpoints(&[spec(2), spec(3)]);
        let after: Vec<_> = c.hosts().endpoints().cloned().collect();
        assert_eq!(after.len(), 2);
        assert!(
            Arc::ptr_eq(&before[1], &after[0]),
            "endpoint :2 kept its state"
        );
        assert!(m
            .encode()
            .contains(r#"weft_cluster_membership_total{cluster="c"} 2"#));
    }

    #[tokio::test]
    async fn strict_dns_resolves_localhost() {
        let m = Metrics::new();
        let target = DnsTarget {
            host: "localhost".into(),
            port: 80,
            weight: 1,
            priority: 0,
            health: Health::Healthy,
        };
        let d = Discovery::StrictDns {
            targets: vec![target],
            refresh: DEFAULT_DNS_REFRESH,
            family: DnsFamily::V4Only,
        };
        let c = Cluster::new(parts(vec![], d), 1, m.cluster("c"));
        c.refresh_dns().await;
        let eps: Vec<_> = c.hosts().endpoints().map(|e| e.address).collect();
        assert_eq!(eps, vec![SocketAddr::from(([127, 0, 0, 1], 80))]);
    }

    #[test]
    fn family_filter() {
        let a: Vec<SocketAddr> = vec![
            "[::1]:80".parse().expect("a"),
            "127.0.0.1:80".parse().expect("a"),
        ];
        assert_eq!(filter_family(a.clone(), DnsFamily::Auto).len(), 1);
        assert!(filter_family(a.clone(), DnsFamily::Auto)[0].is_ipv4());
        assert_eq!(filter_family(a.clone(), DnsFamily::All).len(), 2);
        assert!(filter_family(a, DnsFamily::V6Only)[0].is_ipv6());
    }
}
