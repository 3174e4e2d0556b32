//! The control plane's own metrics, served at `/metrics` in Prometheus text format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Label: an xDS type, short (`cds`, `eds`, `lds`, `rds`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    /// The type.
    pub r#type: String,
}

/// Labels of a store operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    /// `get`, `list`, `put`, `txn`, `delete`, `watch`.
    pub op: String,
    /// `ok` or `error`.
    pub result: String,
}

/// Every metric of the control plane.
pub struct Metrics {
    registry: Registry,
    /// Connected xDS streams.
    pub proxies_connected: Gauge,
    /// Responses sent, by type.
    pub pushes: Family<TypeLabel, Counter>,
    /// Resources sent, by type.
    pub pushed_resources: Family<TypeLabel, Counter>,
    /// Bytes sent, by type.
    pub pushed_bytes: Family<TypeLabel, Counter>,
    /// From a change seen in the store to the push that carries it.
    pub push_latency: Histogram,
    /// ACKs received, by type.
    pub acks: Family<TypeLabel, Counter>,
    /// NACKs received, by type.
    pub nacks: Family<TypeLabel, Counter>,
    /// Snapshots built.
    pub snapshot_builds: Counter,
    /// Time to build a snapshot.
    pub snapshot_build_seconds: Histogram,
    /// Store operations by kind and result.
    pub store_ops: Family<StoreLabels, Counter>,
    /// Registered instances.
    pub instances: Gauge,
    /// Registered instances whose health check passes.
    pub instances_healthy: Gauge,
    /// Applied resources.
    pub resources: Gauge,
    /// Requests and streams refused for want of a valid credential.
    pub auth_failures: Counter,
    /// Workload certificates signed.
    pub certificates_signed: Counter,
    /// CSRs refused (invalid, or for another identity than the credential's).
    pub csr_refused: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("weft_control");
        let m = Metrics {
            proxies_connected: Gauge::default(),
            pushes: Family::default(),
            pushed_resources: Family::default(),
            pushed_bytes: Family::default(),
            push_latency: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            acks: Family::default(),
            nacks: Family::default(),
            snapshot_builds: Counter::default(),
            snapshot_build_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            store_ops: Family::default(),
            instances: Gauge::default(),
            instances_healthy: Gauge::default(),
            resources: Gauge::default(),
            auth_failures: Counter::default(),
            certificates_signed: Counter::default(),
            csr_refused: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "proxies_connected",
            "Connected xDS streams",
            m.proxies_connected.clone(),
        );
        registry.register("xds_pushes", "xDS responses sent", m.pushes.clone());
        registry.register(
            "xds_pushed_resources",
            "Resources sent in xDS responses",
            m.pushed_resources.clone(),
        );
        registry.register(
            "xds_pushed_bytes",
            "Bytes of xDS responses sent",
            m.pushed_bytes.clone(),
        );
        registry.register(
            "xds_push_latency_seconds",
            "From a change seen in the store to the xDS response that carries it",
            m.push_latency.clone(),
        );
        registry.register("xds_acks", "xDS ACKs received", m.acks.clone());
        registry.register("xds_nacks", "xDS NACKs received", m.nacks.clone());
        registry.register(
            "snapshot_builds",
            "Translations of the mesh to Envoy resources",
            m.snapshot_builds.clone(),
        );
        registry.register(
            "snapshot_build_seconds",
            "Time to translate the mesh to Envoy resources",
            m.snapshot_build_seconds.clone(),
        );
        registry.register(
            "store_operations",
            "Store operations by kind and result",
            m.store_ops.clone(),
        );
        registry.register(
            "registry_instances",
            "Registered workload instances",
            m.instances.clone(),
        );
        registry.register(
            "registry_instances_healthy",
            "Registered workload instances whose health check passes",
            m.instances_healthy.clone(),
        );
        registry.register("resources", "Applied resources", m.resources.clone());
        registry.register(
            "auth_failures",
            "API requests and xDS streams refused for want of a valid credential",
            m.auth_failures.clone(),
        );
        registry.register(
            "certificates_signed",
            "Workload certificates signed",
            m.certificates_signed.clone(),
        );
        registry.register(
            "csr_refused",
            "Certificate signing requests refused",
            m.csr_refused.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts a store operation.
    pub fn store_op<T, E>(&self, op: &str, result: &Result<T, E>) {
        self.store_ops
            .get_or_create(&StoreLabels {
                op: op.to_string(),
                result: if result.is_ok() { "ok" } else { "error" }.to_string(),
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The short name of an xDS type URL for labels.
pub fn short_type(type_url: &str) -> &'static str {
    match type_url {
        weft_xds::type_url::CLUSTER => "cds",
        weft_xds::type_url::CLUSTER_LOAD_ASSIGNMENT => "eds",
        weft_xds::type_url::LISTENER => "lds",
        weft_xds::type_url::ROUTE_CONFIGURATION => "rds",
        weft_xds::type_url::VIRTUAL_HOST => "vhds",
        weft_xds::type_url::SECRET => "sds",
        _ => "other",
    }
}

/// The label for a type URL.
pub fn type_label(type_url: &str) -> TypeLabel {
    TypeLabel {
        r#type: short_type(type_url).to_string(),
    }
}
