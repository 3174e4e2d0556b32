//! The proxy's Prometheus metrics. Families are registered once; each listener, HTTP
//! connection manager, route and cluster resolves its label set when it is compiled and
//! keeps plain metric handles, so the request path never hashes a label set.
//! Names follow Envoy's stats under a `weft_` prefix; counters end in `_total`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Envoy's latency buckets, in milliseconds.
const LATENCY_BUCKETS_MS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_MS)
}

/// Response code classes, in label order.
const CODE_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Index of a status code's class (`1xx` = 0 ... `5xx` = 4).
pub fn code_class(status: u16) -> usize {
    (status / 100).clamp(1, 5) as usize - 1
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PrefixLabels {
    stat_prefix: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PrefixCodeLabels {
    stat_prefix: String,
    response_code_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route_config: String,
    virtual_host: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteCodeLabels {
    route_config: String,
    virtual_host: String,
    route: String,
    response_code_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterCodeLabels {
    cluster: String,
    response_code_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RbacLabels {
    stat_prefix: String,
    policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JwtDeniedLabels {
    stat_prefix: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TlsLabels {
    side: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TlsNegotiatedLabels {
    side: &'static str,
    version: &'static str,
    group: &'static str,
}

type Counters<L> = Family<L, Counter>;
type Gauges<L> = Family<L, Gauge>;
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn histograms<L: Clone + std::hash::Hash + Eq>() -> Histograms<L> {
    Family::new_with_constructor(latency_histogram as fn() -> Histogram)
}

/// Every metric family of one proxy, and its registry.
pub struct Metrics {
    registry: Registry,
    listener_cx_total: Counters<ListenerLabels>,
    listener_cx_active: Gauges<ListenerLabels>,
    listener_cx_destroy_no_chain: Counters<ListenerLabels>,
    listener_rx_bytes: Counters<ListenerLabels>,
    listener_tx_bytes: Counters<ListenerLabels>,
    http_rq: Counters<PrefixCodeLabels>,
    http_rq_active: Gauges<PrefixLabels>,
    http_rq_time: Histograms<PrefixLabels>,
    http_rq_malformed: Counters<PrefixLabels>,
    http_no_route: Counters<PrefixLabels>,
    route_rq: Counters<RouteCodeLabels>,
    route_rq_time: Histograms<RouteLabels>,
    cluster_rq: Counters<ClusterCodeLabels>,
    cluster_rq_time: Histograms<ClusterLabels>,
    cluster_rq_active: Gauges<ClusterLabels>,
    cluster_rq_retry: Counters<ClusterLabels>,
    cluster_rq_retry_limit_exceeded: Counters<ClusterLabels>,
    cluster_rq_timeout: Counters<ClusterLabels>,
    cluster_rq_per_try_timeout: Counters<ClusterLabels>,
    cluster_rq_overflow: Counters<ClusterLabels>,
    cluster_cx_total: Counters<ClusterLabels>,
    cluster_cx_active: Gauges<ClusterLabels>,
    cluster_cx_connect_fail: Counters<ClusterLabels>,
    cluster_cx_connect_timeout: Counters<ClusterLabels>,
    cluster_rx_bytes: Counters<ClusterLabels>,
    cluster_tx_bytes: Counters<ClusterLabels>,
    cluster_membership_healthy: Gauges<ClusterLabels>,
    cluster_membership_total: Gauges<ClusterLabels>,
    tcp_cx_total: Counters<PrefixLabels>,
    tcp_cx_active: Gauges<PrefixLabels>,
    tcp_idle_timeout: Counters<PrefixLabels>,
    tcp_no_route: Counters<PrefixLabels>,
    tls_handshakes: Counters<TlsLabels>,
    tls_negotiated: Counters<TlsNegotiatedLabels>,
    rbac_allowed: Counters<RbacLabels>,
    rbac_denied: Counters<RbacLabels>,
    rbac_logged: Counters<RbacLabels>,
    jwt_authn_allowed: Counters<PrefixLabels>,
    jwt_authn_denied: Counters<JwtDeniedLabels>,
    config_reloads: Counter,
    config_rejections: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family under the `weft` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            listener_cx_total: Family::default(),
            listener_cx_active: Family::default(),
            listener_cx_destroy_no_chain: Family::default(),
            listener_rx_bytes: Family::default(),
            listener_tx_bytes: Family::default(),
            http_rq: Family::default(),
            http_rq_active: Family::default(),
            http_rq_time: histograms(),
            http_rq_malformed: Family::default(),
            http_no_route: Family::default(),
            route_rq: Family::default(),
            route_rq_time: histograms(),
            cluster_rq: Family::default(),
            cluster_rq_time: histograms(),
            cluster_rq_active: Family::default(),
            cluster_rq_retry: Family::default(),
            cluster_rq_retry_limit_exceeded: Family::default(),
            cluster_rq_timeout: Family::default(),
            cluster_rq_per_try_timeout: Family::default(),
            cluster_rq_overflow: Family::default(),
            cluster_cx_total: Family::default(),
            cluster_cx_active: Family::default(),
            cluster_cx_connect_fail: Family::default(),
            cluster_cx_connect_timeout: Family::default(),
            cluster_rx_bytes: Family::default(),
            cluster_tx_bytes: Family::default(),
            cluster_membership_healthy: Family::default(),
            cluster_membership_total: Family::default(),
            tcp_cx_total: Family::default(),
            tcp_cx_active: Family::default(),
            tcp_idle_timeout: Family::default(),
            tcp_no_route: Family::default(),
            tls_handshakes: Family::default(),
            tls_negotiated: Family::default(),
            rbac_allowed: Family::default(),
            rbac_denied: Family::default(),
            rbac_logged: Family::default(),
            jwt_authn_allowed: Family::default(),
            jwt_authn_denied: Family::default(),
            config_reloads: Counter::default(),
            config_rejections: Counter::default(),
            registry: Registry::default(),
        };
        let r = registry.sub_registry_with_prefix("weft");
        r.register(
            "listener_downstream_cx",
            "Downstream connections accepted",
            m.listener_cx_total.clone(),
        );
        r.register(
            "listener_downstream_cx_active",
            "Downstream connections open",
            m.listener_cx_active.clone(),
        );
        r.register(
            "listener_no_filter_chain_match",
            "Connections closed because no filter chain matched",
            m.listener_cx_destroy_no_chain.clone(),
        );
        r.register(
            "listener_downstream_cx_rx_bytes",
            "Bytes received from downstream",
            m.listener_rx_bytes.clone(),
        );
        r.register(
            "listener_downstream_cx_tx_bytes",
            "Bytes sent to downstream",
            m.listener_tx_bytes.clone(),
        );
        r.register(
            "http_downstream_rq",
            "Downstream HTTP requests completed, by response code class",
            m.http_rq.clone(),
        );
        r.register(
            "http_downstream_rq_active",
            "Downstream HTTP requests in flight",
            m.http_rq_active.clone(),
        );
        r.register(
            "http_downstream_rq_time_milliseconds",
            "Downstream request duration",
            m.http_rq_time.clone(),
        );
        r.register(
            "http_downstream_rq_rejected",
            "Downstream requests rejected as malformed",
            m.http_rq_malformed.clone(),
        );
        r.register(
            "http_no_route",
            "Requests that matched no route",
            m.http_no_route.clone(),
        );
        r.register(
            "route_rq",
            "Requests per route, by response code class",
            m.route_rq.clone(),
        );
        r.register(
            "route_rq_time_milliseconds",
            "Request duration per route",
            m.route_rq_time.clone(),
        );
        r.register(
            "cluster_upstream_rq",
            "Upstream requests completed, by response code class",
            m.cluster_rq.clone(),
        );
        r.register(
            "cluster_upstream_rq_time_milliseconds",
            "Upstream request duration",
            m.cluster_rq_time.clone(),
        );
        r.register(
            "cluster_upstream_rq_active",
            "Upstream requests in flight",
            m.cluster_rq_active.clone(),
        );
        r.register(
            "cluster_upstream_rq_retry",
            "Upstream request retries",
            m.cluster_rq_retry.clone(),
        );
        r.register(
            "cluster_upstream_rq_retry_limit_exceeded",
            "Requests that ran out of retries",
            m.cluster_rq_retry_limit_exceeded.clone(),
        );
        r.register(
            "cluster_upstream_rq_timeout",
            "Upstream requests that timed out",
            m.cluster_rq_timeout.clone(),
        );
        r.register(
            "cluster_upstream_rq_per_try_timeout",
            "Upstream attempts that hit the per-try timeout",
            m.cluster_rq_per_try_timeout.clone(),
        );
        r.register(
            "cluster_upstream_rq_overflow",
            "Requests refused by a circuit breaker",
            m.cluster_rq_overflow.clone(),
        );
        r.register(
            "cluster_upstream_cx",
            "Upstream connections opened",
            m.cluster_cx_total.clone(),
        );
        r.register(
            "cluster_upstream_cx_active",
            "Upstream connections open",
            m.cluster_cx_active.clone(),
        );
        r.register(
            "cluster_upstream_cx_connect_fail",
            "Upstream connection failures",
            m.cluster_cx_connect_fail.clone(),
        );
        r.register(
            "cluster_upstream_cx_connect_timeout",
            "Upstream connection timeouts",
            m.cluster_cx_connect_timeout.clone(),
        );
        r.register(
            "cluster_upstream_cx_rx_bytes",
            "Bytes received from upstream",
            m.cluster_rx_bytes.clone(),
        );
        r.register(
            "cluster_upstream_cx_tx_bytes",
            "Bytes sent to upstream",
            m.cluster_tx_bytes.clone(),
        );
        r.register(
            "cluster_membership_healthy",
            "Healthy endpoints",
            m.cluster_membership_healthy.clone(),
        );
        r.register(
            "cluster_membership_total",
            "Endpoints",
            m.cluster_membership_total.clone(),
        );
        r.register(
            "tcp_downstream_cx",
            "Connections handled by a TCP proxy",
            m.tcp_cx_total.clone(),
        );
        r.register(
            "tcp_downstream_cx_active",
            "Connections open through a TCP proxy",
            m.tcp_cx_active.clone(),
        );
        r.register(
            "tcp_idle_timeout",
            "TCP proxy connections closed for idleness",
            m.tcp_idle_timeout.clone(),
        );
        r.register(
            "tcp_no_route",
            "TCP proxy connections with no upstream",
            m.tcp_no_route.clone(),
        );
        r.register(
            "tls_handshakes",
            "TLS handshakes by side (downstream: terminated, upstream: originated) and result",
            m.tls_handshakes.clone(),
        );
        r.register(
            "tls_handshake_negotiated",
            "Completed TLS handshakes by side, protocol version and key exchange group",
            m.tls_negotiated.clone(),
        );
        r.register(
            "rbac_allowed",
            "Requests and connections an RBAC filter allowed, by the policy that decided (none: no policy matched)",
            m.rbac_allowed.clone(),
        );
        r.register(
            "rbac_denied",
            "Requests and connections an RBAC filter denied, by the policy that decided (none: no policy matched)",
            m.rbac_denied.clone(),
        );
        r.register(
            "rbac_logged",
            "Requests and connections a LOG (audit) RBAC filter matched, by policy; they were allowed",
            m.rbac_logged.clone(),
        );
        r.register(
            "jwt_authn_allowed",
            "Requests a JWT filter let through (verified, or needing no token)",
            m.jwt_authn_allowed.clone(),
        );
        r.register(
            "jwt_authn_denied",
            "Requests a JWT filter refused, by reason",
            m.jwt_authn_denied.clone(),
        );
        r.register(
            "config_reloads",
            "Configurations applied",
            m.config_reloads.clone(),
        );
        r.register(
            "config_rejections",
            "Configurations rejected (the last good one kept serving)",
            m.config_rejections.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Adds metrics computed at each scrape.
    pub fn register_collector(&mut self, collector: impl prometheus_client::collector::Collector) {
        self.registry.register_collector(Box::new(collector));
    }

    /// Renders every metric in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts an applied configuration.
    pub fn config_applied(&self) {
        self.config_reloads.inc();
    }

    /// Counts a rejected configuration.
    pub fn config_rejected(&self) {
        self.config_rejections.inc();
    }

    /// Handles for one listener.
    pub fn listener(&self, name: &str) -> ListenerStats {
        let l = ListenerLabels {
            listener: name.to_string(),
        };
        ListenerStats {
            cx_total: self.listener_cx_total.get_or_create(&l).clone(),
            cx_active: self.listener_cx_active.get_or_create(&l).clone(),
            no_filter_chain: self.listener_cx_destroy_no_chain.get_or_create(&l).clone(),
            rx_bytes: self.listener_rx_bytes.get_or_create(&l).clone(),
            tx_bytes: self.listener_tx_bytes.get_or_create(&l).clone(),
        }
    }

    /// Handles for one HTTP connection manager.
    pub fn http(&self, stat_prefix: &str) -> HttpStats {
        let p = PrefixLabels {
            stat_prefix: stat_prefix.to_string(),
        };
        HttpStats {
            rq_by_class: CODE_CLASSES.map(|class| {
                self.http_rq
                    .get_or_create(&PrefixCodeLabels {
                        stat_prefix: stat_prefix.to_string(),
                        response_code_class: class,
                    })
                    .clone()
            }),
            rq_active: self.http_rq_active.get_or_create(&p).clone(),
            rq_time: self.http_rq_time.get_or_create(&p).clone(),
            rq_rejected: self.http_rq_malformed.get_or_create(&p).clone(),
            no_route: self.http_no_route.get_or_create(&p).clone(),
        }
    }

    /// Handles for one route.
    pub fn route(&self, route_config: &str, virtual_host: &str, route: &str) -> RouteStats {
        let l = RouteLabels {
            route_config: route_config.to_string(),
            virtual_host: virtual_host.to_string(),
            route: route.to_string(),
        };
        RouteStats {
            rq_by_class: CODE_CLASSES.map(|class| {
                self.route_rq
                    .get_or_create(&RouteCodeLabels {
                        route_config: l.route_config.clone(),
                        virtual_host: l.virtual_host.clone(),
                        route: l.route.clone(),
                        response_code_class: class,
                    })
                    .clone()
            }),
            rq_time: self.route_rq_time.get_or_create(&l).clone(),
        }
    }

    /// Handles for one cluster.
    pub fn cluster(&self, name: &str) -> ClusterStats {
        let c = ClusterLabels {
            cluster: name.to_string(),
        };
        ClusterStats {
            rq_by_class: CODE_CLASSES.map(|class| {
                self.cluster_rq
                    .get_or_create(&ClusterCodeLabels {
                        cluster: name.to_string(),
                        response_code_class: class,
                    })
                    .clone()
            }),
            rq_time: self.cluster_rq_time.get_or_create(&c).clone(),
            rq_active: self.cluster_rq_active.get_or_create(&c).clone(),
            rq_retry: self.cluster_rq_retry.get_or_create(&c).clone(),
            rq_retry_limit_exceeded: self
                .cluster_rq_retry_limit_exceeded
                .get_or_create(&c)
                .clone(),
            rq_timeout: self.cluster_rq_timeout.get_or_create(&c).clone(),
            rq_per_try_timeout: self.cluster_rq_per_try_timeout.get_or_create(&c).clone(),
            rq_overflow: self.cluster_rq_overflow.get_or_create(&c).clone(),
            cx_total: self.cluster_cx_total.get_or_create(&c).clone(),
            cx_active: self.cluster_cx_active.get_or_create(&c).clone(),
            cx_connect_fail: self.cluster_cx_connect_fail.get_or_create(&c).clone(),
            cx_connect_timeout: self.cluster_cx_connect_timeout.get_or_create(&c).clone(),
            rx_bytes: self.cluster_rx_bytes.get_or_create(&c).clone(),
            tx_bytes: self.cluster_tx_bytes.get_or_create(&c).clone(),
            membership_healthy: self.cluster_membership_healthy.get_or_create(&c).clone(),
            membership_total: self.cluster_membership_total.get_or_create(&c).clone(),
        }
    }

    /// Handles for one TCP proxy.
    pub fn tcp(&self, stat_prefix: &str) -> TcpStats {
        let p = PrefixLabels {
            stat_prefix: stat_prefix.to_string(),
        };
        TcpStats {
            cx_total: self.tcp_cx_total.get_or_create(&p).clone(),
            cx_active: self.tcp_cx_active.get_or_create(&p).clone(),
            idle_timeout: self.tcp_idle_timeout.get_or_create(&p).clone(),
            no_route: self.tcp_no_route.get_or_create(&p).clone(),
        }
    }
}

impl Metrics {
    /// The counter of RBAC decisions with `outcome` made by `policy` of the rules
    /// configured under `stat_prefix`. Policy names come from configuration, so the
    /// label set stays as bounded as the configuration.
    pub fn rbac(&self, outcome: crate::rbac::Outcome, stat_prefix: &str, policy: &str) -> Counter {
        let family = match outcome {
            crate::rbac::Outcome::Allowed => &self.rbac_allowed,
            crate::rbac::Outcome::Denied => &self.rbac_denied,
            crate::rbac::Outcome::Logged => &self.rbac_logged,
        };
        family
            .get_or_create(&RbacLabels {
                stat_prefix: stat_prefix.to_string(),
                policy: policy.to_string(),
            })
            .clone()
    }

    /// Handles for the JWT filter counted under `stat_prefix`.
    pub fn jwt_authn(&self, stat_prefix: &str) -> JwtStats {
        let p = PrefixLabels {
            stat_prefix: stat_prefix.to_string(),
        };
        JwtStats {
            allowed: self.jwt_authn_allowed.get_or_create(&p).clone(),
            denied: crate::jwt::status::JwtError::ALL.map(|e| {
                self.jwt_authn_denied
                    .get_or_create(&JwtDeniedLabels {
                        stat_prefix: stat_prefix.to_string(),
                        reason: e.reason(),
                    })
                    .clone()
            }),
        }
    }

    /// Handles for the TLS handshakes of one side.
    pub fn tls(&self, side: crate::tls::Side) -> TlsStats {
        let side = side.as_str();
        TlsStats {
            side,
            handshakes: crate::tls::Outcome::ALL.map(|o| {
                self.tls_handshakes
                    .get_or_create(&TlsLabels {
                        side,
                        result: o.as_str(),
                    })
                    .clone()
            }),
            negotiated: self.tls_negotiated.clone(),
        }
    }
}

/// Metric handles of the TLS handshakes of one side.
#[derive(Clone, Debug)]
pub struct TlsStats {
    side: &'static str,
    handshakes: [Counter; 7],
    negotiated: Counters<TlsNegotiatedLabels>,
}

impl TlsStats {
    /// Counts a handshake that ended with `outcome`.
    pub fn handshake(&self, outcome: crate::tls::Outcome) {
        self.handshakes[outcome.index()].inc();
    }

    /// Counts a completed handshake's version and key exchange group.
    pub fn negotiated(&self, version: &'static str, group: Option<&'static str>) {
        self.negotiated
            .get_or_create(&TlsNegotiatedLabels {
                side: self.side,
                version,
                group: group.unwrap_or("none"),
            })
            .inc();
    }
}

/// Metric handles of one JWT filter.
#[derive(Clone, Debug)]
pub struct JwtStats {
    /// Requests let through.
    pub allowed: Counter,
    /// Requests refused, by [`crate::jwt::status::JwtError::index`] (several errors
    /// share a reason, and so a counter).
    pub denied: [Counter; crate::jwt::status::JwtError::ALL.len()],
}

/// Metric handles of one listener.
#[derive(Clone, Debug, Default)]
pub struct ListenerStats {
    /// Connections accepted.
    pub cx_total: Counter,
    /// Connections open.
    pub cx_active: Gauge,
    /// Connections closed because no filter chain matched.
    pub no_filter_chain: Counter,
    /// Bytes received.
    pub rx_bytes: Counter,
    /// Bytes sent.
    pub tx_bytes: Counter,
}

/// Metric handles of one HTTP connection manager.
#[derive(Clone, Debug)]
pub struct HttpStats {
    /// Completed requests by response code class.
    pub rq_by_class: [Counter; 5],
    /// Requests in flight.
    pub rq_active: Gauge,
    /// Request duration.
    pub rq_time: Histogram,
    /// Requests rejected as malformed.
    pub rq_rejected: Counter,
    /// Requests that matched no route.
    pub no_route: Counter,
}

/// Metric handles of one route.
#[derive(Clone, Debug)]
pub struct RouteStats {
    /// Completed requests by response code class.
    pub rq_by_class: [Counter; 5],
    /// Request duration.
    pub rq_time: Histogram,
}

/// Metric handles of one cluster.
#[derive(Clone, Debug)]
pub struct ClusterStats {
    /// Completed upstream requests by response code class.
    pub rq_by_class: [Counter; 5],
    /// Upstream request duration.
    pub rq_time: Histogram,
    /// Upstream requests in flight.
    pub rq_active: Gauge,
    /// Retries.
    pub rq_retry: Counter,
    /// Requests that used up their retries.
    pub rq_retry_limit_exceeded: Counter,
    /// Requests that timed out.
    pub rq_timeout: Counter,
    /// Attempts that hit the per-try timeout.
    pub rq_per_try_timeout: Counter,
    /// Requests refused by a circuit breaker.
    pub rq_overflow: Counter,
    /// Connections opened.
    pub cx_total: Counter,
    /// Connections open.
    pub cx_active: Gauge,
    /// Connection failures.
    pub cx_connect_fail: Counter,
    /// Connection timeouts.
    pub cx_connect_timeout: Counter,
    /// Bytes received from upstream.
    pub rx_bytes: Counter,
    /// Bytes sent to upstream.
    pub tx_bytes: Counter,
    /// Healthy endpoints.
    pub membership_healthy: Gauge,
    /// All endpoints.
    pub membership_total: Gauge,
}

/// Metric handles of one TCP proxy.
#[derive(Clone, Debug)]
pub struct TcpStats {
    /// Connections handled.
    pub cx_total: Counter,
    /// Connections open.
    pub cx_active: Gauge,
    /// Connections closed for idleness.
    pub idle_timeout: Counter,
    /// Connections with no upstream to go to.
    pub no_route: Counter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_handles_show_up_in_the_exposition() {
        let m = Metrics::new();
        let c = m.cluster("backend");
        c.rq_by_class[code_class(503)].inc();
        c.rq_time.observe(3.0);
        let text = m.encode();
        assert!(
            text.contains(
                r#"weft_cluster_upstream_rq_total{cluster="backend",response_code_class="5xx"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("weft_cluster_upstream_rq_time_milliseconds_bucket"),
            "{text}"
        );
    }

    #[test]
    fn code_classes() {
        assert_eq!(CODE_CLASSES[code_class(200)], "2xx");
        assert_eq!(CODE_CLASSES[code_class(101)], "1xx");
        assert_eq!(CODE_CLASSES[code_class(599)], "5xx");
        assert_eq!(CODE_CLASSES[code_class(0)], "1xx");
    }
}
