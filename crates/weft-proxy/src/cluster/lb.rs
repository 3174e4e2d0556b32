//! Load balancing: choosing a priority level by health (Envoy's priority load with
//! over-provisioning and panic mode), then an endpoint in it by the cluster's policy.

use super::endpoint::{Endpoint, Health};
use super::maglev::Maglev;
use super::ring_hash::Ring;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Envoy's over-provisioning factor, in percent.
pub const DEFAULT_OVERPROVISIONING: u32 = 140;
/// Envoy's default panic threshold, in percent.
pub const DEFAULT_PANIC_THRESHOLD: f64 = 50.0;

/// The balancing algorithm of a cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum LbPolicy {
    /// Weighted round robin.
    RoundRobin,
    /// Power of `choices` random choices, fewest requests in flight wins.
    LeastRequest {
        /// How many endpoints are compared.
        choices: u32,
    },
    /// Weighted random.
    Random,
    /// Consistent hashing on a ring.
    RingHash {
        /// Minimum ring size.
        min: u64,
        /// Maximum ring size.
        max: u64,
    },
    /// Maglev consistent hashing.
    Maglev {
        /// Lookup table size (prime).
        table_size: u64,
    },
    /// Peak-EWMA power of two choices.
    PeakEwma {
        /// EWMA decay.
        decay: Duration,
        /// Estimate before the first response.
        default_rtt: Duration,
    },
}

impl LbPolicy {
    /// The name shown in config dumps and `/clusters`.
    pub fn name(&self) -> &'static str {
        match self {
            LbPolicy::RoundRobin => "round_robin",
            LbPolicy::LeastRequest { .. } => "least_request",
            LbPolicy::Random => "random",
            LbPolicy::RingHash { .. } => "ring_hash",
            LbPolicy::Maglev { .. } => "maglev",
            LbPolicy::PeakEwma { .. } => "peak_ewma",
        }
    }

    /// Decay used to feed response times to endpoints; `None` when the policy does not
    /// use them (the estimate then costs nothing per request).
    pub fn ewma_decay(&self) -> Option<Duration> {
        match self {
            LbPolicy::PeakEwma { decay, .. } => Some(*decay),
            _ => None,
        }
    }
}

/// A list of candidate endpoints with the tables its policy needs.
#[derive(Debug, Default)]
pub struct HostSet {
    /// The endpoints.
    pub hosts: Vec<Arc<Endpoint>>,
    uniform: bool,
    /// Smooth weighted round-robin sequence of indices (when weights differ).
    wrr: Vec<u32>,
    /// Cumulative weights (when weights differ), for weighted random.
    cumulative: Vec<u64>,
    ring: Option<Ring>,
    maglev: Option<Maglev>,
}

impl HostSet {
    fn build(hosts: Vec<Arc<Endpoint>>, policy: &LbPolicy) -> HostSet {
        let weights: Vec<u32> = hosts.iter().map(|h| h.weight()).collect();
        let uniform = weights.windows(2).all(|w| w[0] == w[1]);
        let mut set = HostSet {
            hosts,
            uniform,
            ..HostSet::default()
        };
        if set.hosts.is_empty() {
            return set;
        }
        let keys = || {
            set.hosts
                .iter()
                .map(|h| h.address.to_string())
                .collect::<Vec<_>>()
        };
        match policy {
            LbPolicy::RoundRobin if !uniform => set.wrr = smooth_wrr(&weights),
            LbPolicy::Random | LbPolicy::LeastRequest { .. } | LbPolicy::PeakEwma { .. }
                if !uniform =>
            {
                let mut acc = 0u64;
                set.cumulative = weights
                    .iter()
                    .map(|w| {
                        acc += u64::from(*w);
                        acc
                    })
                    .collect();
            }
            LbPolicy::RingHash { min, max } => {
                set.ring = Some(Ring::build(&keys(), &weights, *min, *max))
            }
            LbPolicy::Maglev { table_size } => {
                set.maglev = Some(Maglev::build(&keys(), &weights, *table_size))
            }
            _ => {}
        }
        set
    }

    fn random_index(&self) -> usize {
        if self.uniform || self.cumulative.is_empty() {
            return fastrand::usize(0..self.hosts.len());
        }
        let total = *self.cumulative.last().unwrap_or(&1);
        let point = fastrand::u64(0..total);
        self.cumulative.partition_point(|c| *c <= point)
    }
}

/// A smooth weighted round-robin sequence (nginx's algorithm, run once at build time),
/// at most a few thousand entries long.
fn smooth_wrr(weights: &[u32]) -> Vec<u32> {
    const MAX_LEN: u64 = 4096;
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    let scaled: Vec<i64> = if total > MAX_LEN {
        weights
            .iter()
            .map(|w| ((u64::from(*w) * MAX_LEN / total).max(1)) as i64)
            .collect()
    } else {
        weights.iter().map(|w| i64::from(*w)).collect()
    };
    let total: i64 = scaled.iter().sum();
    let mut current = vec![0i64; scaled.len()];
    (0..total)
        .map(|_| {
            let mut best = 0;
            for i in 0..scaled.len() {
                current[i] += scaled[i];
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            best as u32
        })
        .collect()
}

/// One priority level.
#[derive(Debug, Default)]
pub struct Level {
    /// Healthy endpoints (or degraded ones when none is healthy).
    pub healthy: HostSet,
    /// Every endpoint, for panic mode.
    pub all: HostSet,
}

/// Every endpoint of a cluster by priority, with the share of traffic each level gets.
#[derive(Debug, Default)]
pub struct PrioritySet {
    /// Levels by priority.
    pub levels: Vec<Level>,
    /// Percent of traffic per level (sums to 100 when any endpoint exists).
    pub load: Vec<u32>,
    /// Whether too few endpoints are healthy, so that health is ignored.
    pub panic: bool,
    /// Healthy endpoint count.
    pub healthy_count: usize,
}

impl PrioritySet {
    /// Groups endpoints by priority and computes the load per level.
    pub fn build(
        endpoints: &[Arc<Endpoint>],
        policy: &LbPolicy,
        panic_threshold: f64,
    ) -> PrioritySet {
        let max_priority = endpoints.iter().map(|e| e.priority).max();
        let Some(max_priority) = max_priority else {
            return PrioritySet::default();
        };
        let mut levels = Vec::new();
        let mut health = Vec::new();
        let mut healthy_count = 0;
        for p in 0..=max_priority {
            let all: Vec<Arc<Endpoint>> = endpoints
                .iter()
                .filter(|e| e.priority == p)
                .cloned()
                .collect();
            let healthy: Vec<Arc<Endpoint>> = all
                .iter()
                .filter(|e| e.health() == Health::Healthy)
                .cloned()
                .collect();
            let usable = if healthy.is_empty() {
                all.iter()
                    .filter(|e| e.health() == Health::Degraded)
                    .cloned()
                    .collect()
            } else {
                healthy
            };
            healthy_count += usable.len();
            let h = if all.is_empty() {
                0
            } else {
                ((DEFAULT_OVERPROVISIONING as usize * 100 * usable.len() / all.len()) / 100)
                    .min(100) as u32
            };
            health.push(h);
            levels.push(Level {
                healthy: HostSet::build(usable, policy),
                all: HostSet::build(all, policy),
            });
        }
        let total_health: u32 = health.iter().sum::<u32>().min(100);
        let panic = f64::from(total_health) < panic_threshold;
        let load = if panic || total_health == 0 {
            // Health is ignored: traffic goes to the first level that has endpoints.
            let first = levels
                .iter()
                .position(|l| !l.all.hosts.is_empty())
                .unwrap_or(0);
            (0..levels.len())
                .map(|i| if i == first { 100 } else { 0 })
                .collect()
        } else {
            let mut remaining = 100u32;
            let mut load: Vec<u32> = health
                .iter()
                .map(|h| {
                    let share = (h * 100 / total_health).min(remaining);
                    remaining -= share;
                    share
                })
                .collect();
            if remaining > 0 {
                if let Some(i) = health.iter().position(|h| *h > 0) {
                    load[i] += remaining;
                }
            }
            load
        };
        PrioritySet {
            levels,
            load,
            panic: panic || total_health == 0,
            healthy_count,
        }
    }

    /// Every endpoint, all levels.
    pub fn endpoints(&self) -> impl Iterator<Item = &Arc<Endpoint>> {
        self.levels.iter().flat_map(|l| l.all.hosts.iter())
    }
}

/// A cluster's balancer: its policy and the little state it keeps.
#[derive(Debug)]
pub struct LoadBalancer {
    /// The policy.
    pub policy: LbPolicy,
    next: AtomicUsize,
}

impl LoadBalancer {
    /// A balancer for `policy`.
    pub fn new(policy: LbPolicy) -> LoadBalancer {
        LoadBalancer {
            policy,
            next: AtomicUsize::new(fastrand::usize(..)),
        }
    }

    /// Picks an endpoint, preferring one other than `avoid` (the endpoint a retry
    /// failed on) when there is a choice.
    pub fn pick(
        &self,
        set: &PrioritySet,
        hash: Option<u64>,
        avoid: Option<SocketAddr>,
    ) -> Option<Arc<Endpoint>> {
        let level = self.pick_level(set, hash)?;
        let hosts = if set.panic {
            &level.all
        } else {
            &level.healthy
        };
        if hosts.hosts.is_empty() {
            return None;
        }
        let index = self.pick_in(hosts, hash)?;
        let n = hosts.hosts.len();
        let index = match avoid {
            // A retry goes elsewhere when it can (consistent hashing keeps its choice).
            Some(a) if hash.is_none() && n > 1 && hosts.hosts[index].address == a => {
                (index + 1 + fastrand::usize(0..n - 1)) % n
            }
            _ => index,
        };
        hosts.hosts.get(index).cloned()
    }

    fn pick_level<'a>(&self, set: &'a PrioritySet, hash: Option<u64>) -> Option<&'a Level> {
        if set.levels.len() == 1 {
            return set
                .levels
                .first()
                .filter(|_| set.load.first() == Some(&100));
        }
        let point = match hash {
            Some(h) => (h % 100) as u32,
            None => fastrand::u32(0..100),
        };
        let mut acc = 0;
        for (i, share) in set.load.iter().enumerate() {
            acc += share;
            if point < acc {
                return set.levels.get(i);
            }
        }
        None
    }

    fn pick_in(&self, set: &HostSet, hash: Option<u64>) -> Option<usize> {
        let n = set.hosts.len();
        let index = match &self.policy {
            LbPolicy::RoundRobin => {
                let i = self.next.fetch_add(1, Ordering::Relaxed);
                if set.wrr.is_empty() {
                    i % n
                } else {
                    set.wrr[i % set.wrr.len()] as usize
                }
            }
            LbPolicy::Random => set.random_index(),
            LbPolicy::LeastRequest { choices } => {
                let mut best = set.random_index();
                for _ in 1..(*choices).max(2) {
                    let other = set.random_index();
                    if load_cost(&set.hosts[other], set.uniform)
                        < load_cost(&set.hosts[best], set.uniform)
                    {
                        best = other;
                    }
                }
                best
            }
            LbPolicy::PeakEwma { decay, .. } => {
                let a = set.random_index();
                let mut b = set.random_index();
                if n > 1 && a == b {
                    b = (a + 1 + fastrand::usize(0..n - 1)) % n;
                }
                if ewma_cost(&set.hosts[b], *decay) < ewma_cost(&set.hosts[a], *decay) {
                    b
                } else {
                    a
                }
            }
            LbPolicy::RingHash { .. } => {
                let h = hash.unwrap_or_else(|| fastrand::u64(..));
                set.ring.as_ref()?.pick(h)?
            }
            LbPolicy::Maglev { .. } => {
                let h = hash.unwrap_or_else(|| fastrand::u64(..));
                set.maglev.as_ref()?.pick(h)?
            }
        };
        Some(index)
    }
}

/// Least-request cost: requests in flight, divided by weight when weights differ.
fn load_cost(e: &Endpoint, uniform: bool) -> f64 {
    let active = f64::from(e.active.load(Ordering::Relaxed));
    if uniform {
        active
    } else {
        (active + 1.0) / f64::from(e.weight())
    }
}

/// Peak-EWMA cost: latency estimate times (requests in flight + 1), over weight.
fn ewma_cost(e: &Endpoint, decay: Duration) -> f64 {
    let active = f64::from(e.active.load(Ordering::Relaxed));
    e.ewma.estimate(decay) * (active + 1.0) / f64::from(e.weight())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::endpoint::{EndpointSpec, InFlight, PoolLimits};
    use std::collections::HashMap;

    fn ep(i: u8, weight: u32, health: Health, priority: u32) -> Arc<Endpoint> {
        let spec = EndpointSpec {
            address: SocketAddr::from(([10, 0, 0, i], 80)),
            hostname: None,
            weight,
            health,
            priority,
        };
        let limits = PoolLimits {
            max_idle: 1,
            idle_timeout: None,
            max_requests_per_connection: None,
        };
        Arc::new(Endpoint::new(&spec, limits, 1, Duration::from_millis(10)))
    }

    fn spread(policy: LbPolicy, eps: &[Arc<Endpoint>], n: usize) -> HashMap<u8, usize> {
        let set = PrioritySet::build(eps, &policy, DEFAULT_PANIC_THRESHOLD);
        let lb = LoadBalancer::new(policy);
        let mut counts = HashMap::new();
        for _ in 0..n {
            let e = lb.pick(&set, None, None).expect("pick");
            let SocketAddr::V4(a) = e.address else {
                panic!()
            };
            *counts.entry(a.ip().octets()[3]).or_insert(0) += 1;
        }
        counts
    }

    #[test]
    fn round_robin_is_even_and_weighted() {
        let eps = [ep(1, 1, Health::Healthy, 0), ep(2, 1, Health::Healthy, 0)];
        let c = spread(LbPolicy::RoundRobin, &eps, 100);
        assert_eq!((c[&1], c[&2]), (50, 50));
        let eps = [ep(1, 1, Health::Healthy, 0), ep(2, 3, Health::Healthy, 0)];
        let c = spread(LbPolicy::RoundRobin, &eps, 400);
        assert_eq!((c[&1], c[&2]), (100, 300));
    }

    #[test]
    fn smooth_wrr_interleaves() {
        assert_eq!(smooth_wrr(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
        assert!(smooth_wrr(&[1_000_000, 1]).len() <= 4097);
    }

    #[test]
    fn random_respects_weights() {
        let eps = [ep(1, 1, Health::Healthy, 0), ep(2, 9, Health::Healthy, 0)];
        let c = spread(LbPolicy::Random, &eps, 10_000);
        assert!((8_500..9_500).contains(&c[&2]), "{c:?}");
    }

    #[test]
    fn unhealthy_endpoints_get_nothing() {
        let eps = [
            ep(1, 1, Health::Healthy, 0),
            ep(2, 1, Health::Healthy, 0),
            ep(3, 1, Health::Unhealthy, 0),
        ];
        let c = spread(LbPolicy::RoundRobin, &eps, 100);
        assert!(!c.contains_key(&3));
    }

    #[test]
    fn least_request_avoids_busy_endpoint() {
        let eps = [ep(1, 1, Health::Healthy, 0), ep(2, 1, Health::Healthy, 0)];
        let _busy: Vec<_> = (0..10).map(|_| InFlight::start(eps[0].clone())).collect();
        let c = spread(LbPolicy::LeastRequest { choices: 2 }, &eps, 1000);
        assert!(c[&2] > 700, "{c:?}");
    }

    #[test]
    fn peak_ewma_prefers_fast_endpoint() {
        let eps = [ep(1, 1, Health::Healthy, 0), ep(2, 1, Health::Healthy, 0)];
        eps[0]
            .ewma
            .observe(Duration::from_millis(200), Duration::from_secs(10));
        eps[1]
            .ewma
            .observe(Duration::from_millis(2), Duration::from_secs(10));
        let policy = LbPolicy::PeakEwma {
            decay: Duration::from_secs(10),
            default_rtt: Duration::from_millis(30),
        };
        let c = spread(policy, &eps, 1000);
        assert_eq!(c.get(&1), None, "{c:?}");
    }

    #[test]
    fn priorities_fail_over_with_overprovisioning() {
        // P0: 1 healthy of 2 → 70% health; P1 takes the other 30%.
        let eps = [
            ep(1, 1, Health::Healthy, 0),
            ep(2, 1, Health::Unhealthy, 0),
            ep(3, 1, Health::Healthy, 1),
        ];
        let set = PrioritySet::build(&eps, &LbPolicy::RoundRobin, DEFAULT_PANIC_THRESHOLD);
        assert_eq!(set.load, vec![70, 30]);
        // All of P0 healthy → P1 gets nothing.
        let eps = [ep(1, 1, Health::Healthy, 0), ep(3, 1, Health::Healthy, 1)];
        let set = PrioritySet::build(&eps, &LbPolicy::RoundRobin, DEFAULT_PANIC_THRESHOLD);
        assert_eq!(set.load, vec![100, 0]);
    }

    #[test]
    fn panic_mode_uses_every_endpoint() {
        let eps = [
            ep(1, 1, Health::Healthy, 0),
            ep(2, 1, Health::Unhealthy, 0),
            ep(3, 1, Health::Unhealthy, 0),
        ];
        let set = PrioritySet::build(&eps, &LbPolicy::RoundRobin, DEFAULT_PANIC_THRESHOLD);
        assert!(set.panic);
        let c = spread(LbPolicy::RoundRobin, &eps, 300);
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn hashing_policies_are_sticky() {
        let eps: Vec<_> = (1..=5).map(|i| ep(i, 1, Health::Healthy, 0)).collect();
        for policy in [
            LbPolicy::RingHash {
                min: 1024,
                max: 8192,
            },
            LbPolicy::Maglev { table_size: 65537 },
        ] {
            let set = PrioritySet::build(&eps, &policy, DEFAULT_PANIC_THRESHOLD);
            let lb = LoadBalancer::new(policy);
            let a = lb.pick(&set, Some(777), None).expect("pick").address;
            for _ in 0..10 {
                assert_eq!(lb.pick(&set, Some(777), None).expect("pick").address, a);
            }
        }
    }

    #[test]
    fn retry_avoids_the_failed_endpoint() {
        let eps = [ep(1, 1, Health::Healthy, 0), ep(2, 1, Health::Healthy, 0)];
        let set = PrioritySet::build(&eps, &LbPolicy::Random, DEFAULT_PANIC_THRESHOLD);
        let lb = LoadBalancer::new(LbPolicy::Random);
        let avoid = eps[0].address;
        let other = (0..50)
            .filter(|_| lb.pick(&set, None, Some(avoid)).expect("p").address != avoid)
            .count();
        assert_eq!(
            other, 50,
            "a retry goes to another endpoint when there is one"
        );
    }

    #[test]
    fn empty_cluster_picks_nothing() {
        let set = PrioritySet::build(&[], &LbPolicy::RoundRobin, DEFAULT_PANIC_THRESHOLD);
        assert!(LoadBalancer::new(LbPolicy::RoundRobin)
            .pick(&set, None, None)
            .is_none());
    }
}
