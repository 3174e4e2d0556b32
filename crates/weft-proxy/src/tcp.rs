//! Opaque TCP proxying (`envoy.filters.network.tcp_proxy`): pick a cluster and an
//! endpoint, connect (with several attempts if configured), then copy both ways with
//! half-close and an idle timeout.

use crate::access_log::AccessLog;
use crate::cluster::{pool, ClusterMap, Discovery};
use crate::error::{ProxyError, ResponseFlags};
use crate::io::copy_bidirectional;
use crate::metrics::TcpStats;
use crate::stream_info::{Downstream, StreamInfo};
use crate::tls::Alpn;
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// Envoy's default TCP proxy idle timeout.
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Which cluster the connection goes to.
#[derive(Debug, Clone)]
pub enum TcpCluster {
    /// One cluster.
    Named(Arc<str>),
    /// A weighted split: (cluster, weight), total weight.
    Weighted(Vec<(Arc<str>, u64)>, u64),
}

/// A compiled TCP proxy.
#[derive(Debug)]
pub struct TcpProxy {
    /// Stat prefix.
    pub stat_prefix: String,
    /// Cluster choice.
    pub cluster: TcpCluster,
    /// Idle timeout (`None`: disabled).
    pub idle_timeout: Option<Duration>,
    /// Connection attempts before giving up.
    pub max_connect_attempts: u32,
    /// Access logs.
    pub access_logs: Vec<Arc<AccessLog>>,
    /// Every cluster.
    pub clusters: Arc<ArcSwap<ClusterMap>>,
    /// Metrics.
    pub stats: TcpStats,
}

impl TcpProxy {
    fn pick_cluster(&self) -> Option<&Arc<str>> {
        match &self.cluster {
            TcpCluster::Named(n) => Some(n),
            TcpCluster::Weighted(arms, total) => {
                if *total == 0 {
                    return None;
                }
                let mut point = fastrand::u64(0..*total);
                arms.iter().find_map(|(name, w)| {
                    if point < *w {
                        Some(name)
                    } else {
                        point -= w;
                        None
                    }
                })
            }
        }
    }
}

/// Proxies one downstream connection until either side closes, or until `revoked`
/// resolves with the reason (a listener update that no longer takes it).
pub async fn proxy<S>(
    mut downstream: S,
    proxy: Arc<TcpProxy>,
    conn: Arc<Downstream>,
    revoked: impl std::future::Future<Output = String>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let stats = &proxy.stats;
    stats.cx_total.inc();
    stats.cx_active.inc();
    let mut info = StreamInfo::new(conn.clone());
    let upstream = connect(&proxy, &mut info, conn.local).await;
    if let Some(mut upstream) = upstream {
        let copy = copy_bidirectional(&mut downstream, &mut upstream, proxy.idle_timeout);
        tokio::select! {
            outcome = copy => {
                info.bytes_received = outcome.a_to_b;
                info.bytes_sent = outcome.b_to_a;
                if outcome.idle_timeout {
                    stats.idle_timeout.inc();
                    info.termination_details = Some("idle_timeout".into());
                }
            }
            details = revoked => {
                // Byte counts stay with the listener's counters: the copy was cut short.
                tracing::debug!(%details, "listener update closed a TCP connection");
                info.termination_details = Some(details.into());
            }
        }
    } else {
        stats.no_route.inc();
    }
    info.duration = Some(info.start.elapsed());
    for log in &proxy.access_logs {
        log.log(&info);
    }
    stats.cx_active.dec();
}

/// Records a connection that a network RBAC filter closed before the TCP proxy saw it,
/// with Envoy's termination details (`rbac_access_denied_matched_policy[NAME]`).
pub fn log_denied(proxy: &TcpProxy, conn: Arc<Downstream>, details: String) {
    let mut info = StreamInfo::new(conn);
    info.termination_details = Some(details.into());
    info.duration = Some(info.start.elapsed());
    for log in &proxy.access_logs {
        log.log(&info);
    }
}

async fn connect(
    proxy: &TcpProxy,
    info: &mut StreamInfo,
    original_dst: std::net::SocketAddr,
) -> Option<pool::UpstreamIo> {
    let Some(name) = proxy.pick_cluster() else {
        info.flags.insert(ResponseFlags::NO_CLUSTER_FOUND);
        return None;
    };
    let Some(cluster) = proxy.clusters.load().get(name).cloned() else {
        info.flags.insert(ResponseFlags::NO_CLUSTER_FOUND);
        return None;
    };
    info.cluster = Some(cluster.name.clone());
    let mut avoid = None;
    for attempt in 1..=proxy.max_connect_attempts.max(1) {
        let endpoint = match &cluster.discovery {
            Discovery::OriginalDst { .. } => Some(cluster.original_dst_endpoint(original_dst)),
            _ => cluster.lb.pick(&cluster.hosts(), None, avoid),
        };
        let Some(endpoint) = endpoint else {
            info.flags.insert(ResponseFlags::NO_HEALTHY_UPSTREAM);
            return None;
        };
        info.attempts = attempt;
        info.upstream_host = Some(endpoint.address);
        match pool::connect_transport(&endpoint, &cluster, Alpn::Configured).await {
            Ok(t) => {
                info.upstream_local = t.local;
                info.upstream_tls = t.tls;
                return Some(t.io);
            }
            Err(e) => {
                info.upstream_failure = Some(match &e {
                    ProxyError::TlsHandshake { source, .. } => source.transport_failure_reason(),
                    other => other.to_string(),
                });
                avoid = Some(endpoint.address);
            }
        }
    }
    info.flags
        .insert(ResponseFlags::UPSTREAM_CONNECTION_FAILURE);
    None
}
