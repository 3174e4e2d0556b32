//! One upstream endpoint: its address, weight and health, the load it carries (for
//! least-request and peak-EWMA), its statistics, and its per-worker connection pools.

use super::pool::WorkerPool;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Health as the load balancer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Takes traffic.
    Healthy,
    /// Takes traffic only when no healthy endpoint is left in its priority.
    Degraded,
    /// Takes no traffic (except in panic mode).
    Unhealthy,
}

impl Health {
    fn to_u8(self) -> u8 {
        match self {
            Health::Healthy => 0,
            Health::Degraded => 1,
            Health::Unhealthy => 2,
        }
    }

    fn from_u8(v: u8) -> Health {
        match v {
            0 => Health::Healthy,
            1 => Health::Degraded,
            _ => Health::Unhealthy,
        }
    }

    /// Envoy's spelling in `/clusters`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Unhealthy => "/failed_eds_health",
        }
    }
}

/// Counters shown by the admin `/clusters` page.
#[derive(Debug, Default)]
pub struct EndpointStats {
    /// Requests sent.
    pub rq_total: AtomicU64,
    /// Responses below 500.
    pub rq_success: AtomicU64,
    /// 5xx responses and failures.
    pub rq_error: AtomicU64,
    /// Requests that timed out.
    pub rq_timeout: AtomicU64,
    /// Connections opened.
    pub cx_total: AtomicU64,
    /// Connection failures.
    pub cx_connect_fail: AtomicU64,
}

/// An exponentially weighted moving average of response time that jumps to a new peak
/// at once and decays towards recent values (Linkerd's peak-EWMA).
#[derive(Debug)]
pub struct Ewma {
    state: Mutex<(f64, Instant)>,
}

impl Ewma {
    fn new(default_rtt: Duration) -> Ewma {
        Ewma {
            state: Mutex::new((default_rtt.as_nanos() as f64, Instant::now())),
        }
    }

    /// Records one observed response time: a slower one is taken at once (the peak),
    /// a faster one blended in by how long ago the last observation was.
    pub fn observe(&self, rtt: Duration, decay: Duration) {
        let now = Instant::now();
        let rtt = rtt.as_nanos() as f64;
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let w = decay_weight(now.saturating_duration_since(s.1), decay);
        let current = s.0 * w;
        s.0 = if rtt > current {
            rtt
        } else {
            current + rtt * (1.0 - w)
        };
        s.1 = now;
    }

    /// The current estimate, in nanoseconds. Time without observations counts as fast
    /// ones (the estimate decays toward zero, as in tower's Peak-EWMA), so an endpoint
    /// that was slow once, or never tried, is tried again rather than starved.
    pub fn estimate(&self, decay: Duration) -> f64 {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0 * decay_weight(Instant::now().saturating_duration_since(s.1), decay)
    }
}

/// How much of an estimate `elapsed` ago still counts.
fn decay_weight(elapsed: Duration, decay: Duration) -> f64 {
    (-(elapsed.as_nanos() as f64) / decay.as_nanos().max(1) as f64).exp()
}

/// Limits of the connection pools of one endpoint, copied from its cluster.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    /// Idle HTTP/1 connections kept per worker.
    pub max_idle: usize,
    /// How long an idle connection is kept.
    pub idle_timeout: Option<Duration>,
    /// Requests after which a connection is retired.
    pub max_requests_per_connection: Option<u32>,
}

/// What configuration says of an endpoint (from `load_assignment`, DNS or EDS).
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointSpec {
    /// Where to connect.
    pub address: SocketAddr,
    /// The hostname it was resolved from.
    pub hostname: Option<Arc<str>>,
    /// Load-balancing weight.
    pub weight: u32,
    /// Health.
    pub health: Health,
    /// Priority level.
    pub priority: u32,
}

/// One upstream endpoint.
#[derive(Debug)]
pub struct Endpoint {
    /// Where to connect.
    pub address: SocketAddr,
    /// The hostname it was resolved from, for `auto_host_rewrite`.
    pub hostname: Option<Arc<str>>,
    weight: AtomicU32,
    health: AtomicU8,
    /// Priority level.
    pub priority: u32,
    /// Requests in flight.
    pub active: AtomicU32,
    /// Response time estimate.
    pub ewma: Ewma,
    /// Counters for `/clusters`.
    pub stats: EndpointStats,
    /// Pool limits.
    pub limits: PoolLimits,
    /// Connection pools, one per worker thread (plus one for other threads).
    pools: Box<[Mutex<WorkerPool>]>,
}

impl Endpoint {
    /// A new endpoint with empty pools for `workers` worker threads.
    pub fn new(
        spec: &EndpointSpec,
        limits: PoolLimits,
        workers: usize,
        default_rtt: Duration,
    ) -> Endpoint {
        Endpoint {
            address: spec.address,
            hostname: spec.hostname.clone(),
            weight: AtomicU32::new(spec.weight.max(1)),
            health: AtomicU8::new(spec.health.to_u8()),
            priority: spec.priority,
            active: AtomicU32::new(0),
            ewma: Ewma::new(default_rtt),
            stats: EndpointStats::default(),
            limits,
            pools: (0..=workers)
                .map(|_| Mutex::new(WorkerPool::default()))
                .collect(),
        }
    }

    /// Load-balancing weight (at least 1).
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// Sets the weight (an update of the endpoint set).
    pub fn set_weight(&self, w: u32) {
        self.weight.store(w.max(1), Ordering::Relaxed)
    }

    /// Current health.
    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Relaxed))
    }

    /// Sets the health.
    pub fn set_health(&self, h: Health) {
        self.health.store(h.to_u8(), Ordering::Relaxed)
    }

    /// This thread's connection pool.
    pub fn pool(&self) -> &Mutex<WorkerPool> {
        let i = crate::runtime::worker_index().min(self.pools.len() - 1);
        &self.pools[i]
    }

    /// Idle connections across all workers (for `/clusters`).
    pub fn idle_connections(&self) -> usize {
        self.pools
            .iter()
            .map(|p| p.lock().map(|p| p.idle_len()).unwrap_or(0))
            .sum()
    }
}

/// Counts a request in flight on an endpoint until dropped, and feeds its response
/// time to the endpoint's EWMA when told.
#[derive(Debug)]
pub struct InFlight {
    endpoint: Arc<Endpoint>,
    sent: Instant,
}

impl InFlight {
    /// Starts counting.
    pub fn start(endpoint: Arc<Endpoint>) -> InFlight {
        endpoint.active.fetch_add(1, Ordering::Relaxed);
        endpoint.stats.rq_total.fetch_add(1, Ordering::Relaxed);
        InFlight {
            endpoint,
            sent: Instant::now(),
        }
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    /// Records the response time (at response headers) and outcome.
    pub fn responded(&self, status: u16, decay: Option<Duration>) {
        if let Some(decay) = decay {
            self.endpoint.ewma.observe(self.sent.elapsed(), decay);
        }
        let counter = if status >= 500 {
            &self.endpoint.stats.rq_error
        } else {
            &self.endpoint.stats.rq_success
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a failure before any response (it counts as slow for the EWMA).
    pub fn failed(&self, decay: Option<Duration>, timeout: bool) {
        if let Some(decay) = decay {
            self.endpoint
                .ewma
                .observe(self.sent.elapsed().max(Duration::from_secs(1)), decay);
        }
        self.endpoint.stats.rq_error.fetch_add(1, Ordering::Relaxed);
        if timeout {
            self.endpoint
                .stats
                .rq_timeout
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.endpoint.active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ewma_jumps_to_peaks_and_decays() {
        let e = Ewma::new(Duration::from_millis(10));
        e.observe(Duration::from_millis(100), Duration::from_secs(10));
        let fresh = e.estimate(Duration::from_secs(10));
        assert!((99e6..=100e6).contains(&fresh), "peak: {fresh}");
        std::thread::sleep(Duration::from_millis(20));
        e.observe(Duration::from_millis(1), Duration::from_millis(10));
        let blended = e.estimate(Duration::from_secs(10));
        assert!(blended < 50e6, "decayed: {blended}");
        // Idle time decays the estimate toward zero.
        std::thread::sleep(Duration::from_millis(30));
        assert!(e.estimate(Duration::from_millis(10)) < blended * 0.1);
    }

    #[test]
    fn in_flight_counts() {
        let spec = EndpointSpec {
            address: "127.0.0.1:1".parse().expect("a"),
            hostname: None,
            weight: 0,
            health: Health::Healthy,
            priority: 0,
        };
        let ep = Arc::new(Endpoint::new(
            &spec,
            PoolLimits {
                max_idle: 1,
                idle_timeout: None,
                max_requests_per_connection: None,
            },
            1,
            Duration::from_millis(1),
        ));
        assert_eq!(ep.weight(), 1, "weight 0 is read as 1");
        let a = InFlight::start(ep.clone());
        let b = InFlight::start(ep.clone());
        assert_eq!(ep.active.load(Ordering::Relaxed), 2);
        drop(a);
        drop(b);
        assert_eq!(ep.active.load(Ordering::Relaxed), 0);
    }
}
