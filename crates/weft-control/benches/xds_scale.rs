//! Control-plane scale benchmark (`bench/xds_scale.sh`; see `bench/README.md`).
//!
//! Starts the real `weft control` (release build) as a child process, fills it with
//! `SERVICES` services of `ENDPOINTS` endpoints each, connects `CLIENTS` simulated
//! sidecars over real gRPC (one tokio runtime in this process, one HTTP/2 connection
//! each), waits until all of them have ACKed the initial state, then applies changes of
//! three kinds and measures, for each, the time from the apply request's response to
//! the moment every affected client has accepted (and so ACKs) a response carrying the
//! change, the bytes and resources the control plane pushed for it (from its own
//! `/metrics`), and the control plane's CPU and memory (from `/proc`).
//!
//! The mesh: service `svc-NNNN` in namespace `ns-(N % NAMESPACES)`, one HTTP port 8080.
//! Client `c` is a sidecar of service `c % SERVICES` and registers itself, as a `weft
//! proxy` does (node metadata from its bootstrap; its health reported through the REST
//! API, as `weft run` does), so it is one of its service's endpoints; the rest of each
//! service's `ENDPOINTS` are `weft.dev/v1` Workloads (hosts without a sidecar).
//!
//! Changes, interleaved, `CHANGES` of each kind:
//! - `endpoint`: one Workload of one service gets a new address (even rounds) or a new
//!   weight (odd rounds);
//! - `route`: a VirtualService for one service is applied (a new path prefix);
//! - `service`: a new service with `ENDPOINTS` Workloads appears.
//!
//! Every sidecar sees every service (no `Sidecar` egress scoping exists yet), so every
//! client is affected by every change: a client counts as having the change once it
//! accepted an endpoint assignment with the new address or weight (`endpoint`), an
//! outbound route configuration with the new prefix (`route`), or the new service's
//! cluster, its endpoint assignment and its virtual host (`service`: all three). Delta
//! clients list the VHDS client feature, as `weft proxy` does, and so take their
//! outbound virtual hosts one by one over VHDS: there a virtual host carrying the
//! prefix or the new service's name counts as the route configuration would.
//!
//! Environment: `SERVICES` (1000), `ENDPOINTS` (10), `CLIENTS` (1000), `NAMESPACES`
//! (10), `CHANGES` (20 per kind), `MODES` (`sotw,delta`), `WEFT_BIN`
//! (`target/release/weft`), `CP_CPUS` (a `taskset` CPU list for the control plane),
//! `OUT` (a JSON file for the raw results), `TIMEOUT_SECS` (60, per wait).

use arc_swap::ArcSwapOption;
use hyper::Method;
use prost::Message;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{mpsc, Notify};
use weft_control::client::ApiClient;
use weft_xds::client::{ClientConfig, Handler, Protocol, Update};
use weft_xds::pb::envoy::config::cluster::v3::{cluster, Cluster};
use weft_xds::pb::envoy::config::core::v3::{address, Node};
use weft_xds::pb::envoy::config::endpoint::v3::{lb_endpoint, ClusterLoadAssignment};
use weft_xds::pb::envoy::config::listener::v3::{filter, Listener};
use weft_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, HttpConnectionManager,
};
use weft_xds::pb::google::protobuf::{value, Any, ListValue, Struct, Value};
use weft_xds::server::Subscription;
use weft_xds::type_url;

// ---------------------------------------------------------------------------------
// Parameters and the mesh's shape.

#[derive(Debug, Clone)]
struct Params {
    services: usize,
    endpoints: usize,
    clients: usize,
    namespaces: usize,
    changes: usize,
    modes: Vec<Protocol>,
    weft_bin: PathBuf,
    cp_cpus: Option<String>,
    out: Option<PathBuf>,
    timeout: Duration,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        _ => default,
    }
}

impl Params {
    fn from_env() -> Params {
        let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let modes = env_or("MODES", "sotw,delta".to_string())
            .split(',')
            .map(|m| match m.trim() {
                "sotw" => Protocol::Sotw,
                "delta" => Protocol::Delta,
                other => panic!("MODES: unknown mode {other:?} (sotw, delta)"),
            })
            .collect();
        let p = Params {
            services: env_or("SERVICES", 1000),
            endpoints: env_or("ENDPOINTS", 10),
            clients: env_or("CLIENTS", 1000),
            namespaces: env_or("NAMESPACES", 10),
            changes: env_or("CHANGES", 20),
            modes,
            weft_bin: std::env::var_os("WEFT_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace.join("target/release/weft")),
            cp_cpus: std::env::var("CP_CPUS").ok().filter(|s| !s.is_empty()),
            out: std::env::var_os("OUT").map(PathBuf::from),
            timeout: Duration::from_secs(env_or("TIMEOUT_SECS", 60)),
        };
        assert!(p.services > 0 && p.namespaces > 0 && p.endpoints > 0);
        assert!(p.changes <= 250, "CHANGES: at most 250 per kind");
        p
    }

    fn namespace(&self, service: usize) -> String {
        format!("ns-{}", service % self.namespaces)
    }

    /// Sidecars (clients) of service `s`: clients are dealt round-robin.
    fn sidecars_of(&self, s: usize) -> usize {
        self.clients / self.services + usize::from(s < self.clients % self.services)
    }
}

fn service_name(s: usize) -> String {
    format!("svc-{s:04}")
}

/// A unique IPv4 address: `base.x.y.z` from `n`.
fn ip(base: u8, n: usize) -> String {
    format!("{base}.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
}

/// The address of Workload `j` of service `s` (workloads: 10/8, sidecars: 11/8, the
/// addresses changes move endpoints to: 12/8).
fn workload_address(p: &Params, s: usize, j: usize) -> String {
    ip(10, s * p.endpoints + j)
}

fn workload_yaml(
    name: &str,
    namespace: &str,
    service: &str,
    address: &str,
    weight: Option<u32>,
) -> String {
    let weight = weight.map(|w| format!(", weight: {w}")).unwrap_or_default();
    format!(
        "---\napiVersion: weft.dev/v1\nkind: Workload\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec: {{service: {service}, address: {address}, ports: {{http: 8080}}, labels: {{version: v1}}{weight}}}\n"
    )
}

/// The Workloads of service `s` (its endpoints that are not sidecars).
fn service_workloads(p: &Params, s: usize, out: &mut String) {
    let ns = p.namespace(s);
    let name = service_name(s);
    for j in p.sidecars_of(s)..p.endpoints {
        out.push_str(&workload_yaml(
            &format!("{name}-w{j}"),
            &ns,
            &name,
            &workload_address(p, s, j),
            None,
        ));
    }
}

fn fqdn(name: &str, namespace: &str) -> String {
    format!("{name}.{namespace}.svc.cluster.local")
}

// ---------------------------------------------------------------------------------
// What the clients look for: markers of a change.

/// A sign, in one response, that a client has a change.
#[derive(Debug, Clone)]
struct Marker {
    type_url: &'static str,
    check: Check,
}

#[derive(Debug, Clone)]
enum Check {
    /// Some resource's bytes contain these.
    Contains(Vec<u8>),
    /// The endpoint at `address` has weight `weight` (in an assignment whose bytes
    /// contain the encoded address).
    Weight { needle: Vec<u8>, weight: u32 },
}

/// A protobuf string field as encoded (tag of field 2, length, bytes): a needle that
/// cannot match inside a longer string (`12.0.0.1` inside `12.0.0.10`).
fn encoded_socket_address(address: &str) -> Vec<u8> {
    let mut v = vec![0x12, address.len() as u8];
    v.extend_from_slice(address.as_bytes());
    v
}

impl Marker {
    fn matches(&self, any: &Any) -> bool {
        match &self.check {
            Check::Contains(needle) => memchr::memmem::find(&any.value, needle).is_some(),
            Check::Weight { needle, weight } => {
                if memchr::memmem::find(&any.value, needle).is_none() {
                    return false;
                }
                let Ok(cla) = ClusterLoadAssignment::decode(any.value.as_slice()) else {
                    return false;
                };
                let address = &needle[2..];
                cla.endpoints.iter().flat_map(|l| &l.lb_endpoints).any(|e| {
                    let at = match &e.host_identifier {
                        Some(lb_endpoint::HostIdentifier::Endpoint(ep)) => ep
                            .address
                            .as_ref()
                            .and_then(|a| a.address.as_ref())
                            .and_then(|a| match a {
                                address::Address::SocketAddress(s) => Some(s.address.as_bytes()),
                                _ => None,
                            }),
                        _ => None,
                    };
                    at == Some(address) && e.load_balancing_weight.map(|w| w.value) == Some(*weight)
                })
            }
        }
    }
}

/// One change being waited for.
struct Expectation {
    generation: u64,
    markers: Vec<Marker>,
    started: Instant,
    /// Per client: nanoseconds after `started` + 1 when it had every marker, 0 before.
    done: Vec<AtomicU64>,
    remaining: AtomicUsize,
    notify: Notify,
}

impl Expectation {
    fn new(generation: u64, markers: Vec<Marker>, clients: usize) -> Expectation {
        assert!(markers.len() < 64);
        Expectation {
            generation,
            markers,
            started: Instant::now(),
            done: (0..clients).map(|_| AtomicU64::new(0)).collect(),
            remaining: AtomicUsize::new(clients),
            notify: Notify::new(),
        }
    }

    fn finished(&self, client: usize) {
        let at = self.started.elapsed().as_nanos() as u64 + 1;
        if self.done[client]
            .compare_exchange(0, at, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            && self.remaining.fetch_sub(1, Ordering::AcqRel) == 1
        {
            self.notify.notify_one();
        }
    }
}

// ---------------------------------------------------------------------------------
// The simulated sidecars.

/// What all clients share with the driver.
struct Shared {
    epoch: Instant,
    expectation: ArcSwapOption<Expectation>,
    /// When any client last accepted a response (ns after `epoch`).
    last_apply: AtomicU64,
    /// Responses and resource bytes received, all clients.
    responses: AtomicU64,
    received_bytes: AtomicU64,
    /// Clients whose stream came up for the first time (to report health).
    up: mpsc::UnboundedSender<usize>,
    connected: AtomicUsize,
}

struct SimClient {
    index: usize,
    shared: Arc<Shared>,
    /// Cluster name → the EDS service name it reads endpoints from, if EDS.
    clusters: HashMap<String, Option<String>>,
    eds: BTreeSet<String>,
    /// Listener name → route configurations it names.
    listeners: HashMap<String, Vec<String>>,
    rds: BTreeSet<String>,
    /// Takes virtual hosts over VHDS (delta, as a `weft proxy` does).
    vhds: bool,
    was_up: bool,
    generation: u64,
    satisfied: u64,
}

fn eds_name(c: &Cluster) -> Option<String> {
    let eds = matches!(
        c.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(t)) if t == cluster::DiscoveryType::Eds as i32
    );
    eds.then(|| {
        c.eds_cluster_config
            .as_ref()
            .map(|e| e.service_name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| c.name.clone())
    })
}

fn rds_names(l: &Listener) -> Vec<String> {
    let mut names = Vec::new();
    for chain in l.filter_chains.iter().chain(l.default_filter_chain.iter()) {
        for f in &chain.filters {
            if let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type {
                if let Ok(hcm) = HttpConnectionManager::decode(any.value.as_slice()) {
                    if let Some(http_connection_manager::RouteSpecifier::Rds(rds)) =
                        hcm.route_specifier
                    {
                        names.push(rds.route_config_name);
                    }
                }
            }
        }
    }
    names
}

impl SimClient {
    fn new(index: usize, shared: Arc<Shared>, vhds: bool) -> SimClient {
        SimClient {
            index,
            shared,
            clusters: HashMap::new(),
            eds: BTreeSet::new(),
            listeners: HashMap::new(),
            rds: BTreeSet::new(),
            vhds,
            was_up: false,
            generation: 0,
            satisfied: 0,
        }
    }

    fn apply_clusters(&mut self, update: &Update) -> Result<(), String> {
        let decode =
            |a: &Any| Cluster::decode(a.value.as_slice()).map_err(|e| format!("cluster: {e}"));
        match update {
            Update::Full(all) => {
                self.clusters.clear();
                for a in all {
                    let c = decode(a)?;
                    let eds = eds_name(&c);
                    self.clusters.insert(c.name, eds);
                }
            }
            Update::Delta { changed, removed } => {
                for (name, a) in changed {
                    let c = decode(a)?;
                    self.clusters.insert(name.clone(), eds_name(&c));
                }
                for name in removed {
                    self.clusters.remove(name);
                }
            }
        }
        self.eds = self.clusters.values().flatten().cloned().collect();
        Ok(())
    }

    fn apply_listeners(&mut self, update: &Update) -> Result<(), String> {
        let decode =
            |a: &Any| Listener::decode(a.value.as_slice()).map_err(|e| format!("listener: {e}"));
        match update {
            Update::Full(all) => {
                self.listeners.clear();
                for a in all {
                    let l = decode(a)?;
                    let names = rds_names(&l);
                    self.listeners.insert(l.name, names);
                }
            }
            Update::Delta { changed, removed } => {
                for (name, a) in changed {
                    self.listeners.insert(name.clone(), rds_names(&decode(a)?));
                }
                for name in removed {
                    self.listeners.remove(name);
                }
            }
        }
        self.rds = self.listeners.values().flatten().cloned().collect();
        Ok(())
    }

    fn check_markers(&mut self, type_url: &str, update: &Update) {
        let guard = self.shared.expectation.load();
        let Some(exp) = guard.as_ref() else {
            return;
        };
        if exp.generation != self.generation {
            self.generation = exp.generation;
            self.satisfied = 0;
        }
        let all = (1u64 << exp.markers.len()) - 1;
        if self.satisfied == all {
            return;
        }
        for (i, m) in exp.markers.iter().enumerate() {
            // A route change reaches a VHDS client as a virtual host.
            let routes =
                m.type_url == type_url::ROUTE_CONFIGURATION && type_url == type_url::VIRTUAL_HOST;
            if self.satisfied & (1 << i) != 0 || (m.type_url != type_url && !routes) {
                continue;
            }
            let found = match update {
                Update::Full(all) => all.iter().any(|a| m.matches(a)),
                Update::Delta { changed, .. } => changed.iter().any(|(_, a)| m.matches(a)),
            };
            if found {
                self.satisfied |= 1 << i;
            }
        }
        if self.satisfied == all {
            exp.finished(self.index);
        }
    }
}

impl Handler for SimClient {
    fn apply(&mut self, type_url: &str, update: Update) -> Result<(), String> {
        let bytes: usize = match &update {
            Update::Full(all) => all.iter().map(|a| a.value.len()).sum(),
            Update::Delta { changed, .. } => changed.iter().map(|(_, a)| a.value.len()).sum(),
        };
        self.shared.responses.fetch_add(1, Ordering::Relaxed);
        self.shared
            .received_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        match type_url {
            type_url::CLUSTER => self.apply_clusters(&update)?,
            type_url::LISTENER => self.apply_listeners(&update)?,
            _ => {}
        }
        self.check_markers(type_url, &update);
        self.shared.last_apply.store(
            self.shared.epoch.elapsed().as_nanos() as u64,
            Ordering::Relaxed,
        );
        Ok(())
    }

    fn subscriptions(&self) -> Vec<(&'static str, Subscription)> {
        let mut subs = vec![
            (type_url::CLUSTER, Subscription::Wildcard),
            (
                type_url::CLUSTER_LOAD_ASSIGNMENT,
                Subscription::Names(self.eds.clone()),
            ),
            (type_url::LISTENER, Subscription::Wildcard),
            (
                type_url::ROUTE_CONFIGURATION,
                Subscription::Names(self.rds.clone()),
            ),
        ];
        if self.vhds {
            // Every virtual host of the route configurations it holds.
            subs.push((
                type_url::VIRTUAL_HOST,
                Subscription::Names(self.rds.clone()),
            ));
        }
        subs
    }

    fn connection(&mut self, up: bool) {
        if up {
            self.shared.connected.fetch_add(1, Ordering::Relaxed);
            if !self.was_up {
                self.was_up = true;
                let _ = self.shared.up.send(self.index);
            }
        } else if self.was_up {
            self.shared.connected.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn string_value(s: &str) -> Value {
    Value {
        kind: Some(value::Kind::StringValue(s.to_string())),
    }
}

fn number_value(n: u16) -> Value {
    Value {
        kind: Some(value::Kind::NumberValue(f64::from(n))),
    }
}

fn struct_value(fields: Vec<(&str, Value)>) -> Value {
    Value {
        kind: Some(value::Kind::StructValue(Struct {
            fields: fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        })),
    }
}

/// Client `c`'s node id.
fn node_id(p: &Params, c: usize) -> String {
    format!(
        "{}-sidecar-{}",
        service_name(c % p.services),
        c / p.services
    )
}

/// The node a `weft proxy` sidecar of client `c`'s service sends (what
/// `SidecarSpec::bootstrap_yaml` writes; a `weft proxy` adds the VHDS client feature).
fn sidecar_node(p: &Params, c: usize) -> Node {
    let s = c % p.services;
    let service = service_name(s);
    let metadata = Struct {
        fields: [
            ("WEFT_SERVICE", string_value(&service)),
            ("WEFT_NAMESPACE", string_value(&p.namespace(s))),
            ("WEFT_ROLE", string_value("sidecar")),
            ("WEFT_INBOUND_ADDRESS", string_value(&ip(11, c))),
            ("WEFT_OUTBOUND_PORT", number_value(15001)),
            (
                "WEFT_LABELS",
                struct_value(vec![("version", string_value("v1"))]),
            ),
            (
                "WEFT_PORTS",
                Value {
                    kind: Some(value::Kind::ListValue(ListValue {
                        values: vec![struct_value(vec![
                            ("name", string_value("http")),
                            ("service_port", number_value(8080)),
                            ("app_port", number_value(8081)),
                            ("inbound_port", number_value(15006)),
                            ("protocol", string_value("http")),
                        ])],
                    })),
                },
            ),
            (
                "WEFT_GATEWAY_PORTS",
                Value {
                    kind: Some(value::Kind::ListValue(ListValue::default())),
                },
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    };
    Node {
        id: node_id(p, c),
        cluster: service,
        metadata: Some(metadata),
        client_features: vec![weft_control::translate::listener::VHDS_CLIENT_FEATURE.to_string()],
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------
// The control plane process: start, metrics, /proc.

struct ControlProcess {
    child: tokio::process::Child,
    pid: u32,
    xds: String,
    api: ApiClient,
    /// The mesh's admin token: the simulated sidecars present it over xDS.
    token: String,
    _data: tempfile::TempDir,
}

impl ControlProcess {
    async fn start(p: &Params) -> ControlProcess {
        let data = tempfile::tempdir().expect("a temporary directory");
        let log = std::fs::File::create(data.path().join("control.log")).expect("a log file");
        let mut cmd = match &p.cp_cpus {
            Some(cpus) => {
                let mut c = tokio::process::Command::new("taskset");
                c.arg("-c").arg(cpus).arg(&p.weft_bin);
                c
            }
            None => tokio::process::Command::new(&p.weft_bin),
        };
        cmd.arg("control")
            .arg("--data-dir")
            .arg(data.path().join("data"))
            .arg("--xds-address")
            .arg("127.0.0.1:0")
            .arg("--api-address")
            .arg("127.0.0.1:0")
            .arg("--xds-tls-address")
            .arg("off")
            .env(
                "RUST_LOG",
                std::env::var("CP_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} (build it: cargo build --release -p weft): {e}",
                p.weft_bin.display()
            )
        });
        let pid = child.id().expect("the child's pid");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the control plane prints its addresses within 30 s")
            .expect("reading its stdout")
            .expect("a line on its stdout");
        // "weft control plane: xDS on ADDR, API on http://ADDR"
        let xds = line
            .split("xDS on ")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .expect("the xDS address")
            .to_string();
        let api = line
            .split("API on ")
            .nth(1)
            .expect("the API address")
            .trim()
            .to_string();
        // Keep draining stdout so the child never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let token = weft_control::control::read_admin_token(&data.path().join("data"))
            .expect("the admin token the control plane wrote");
        let api =
            ApiClient::new(&[api], Some(token.clone())).with_timeout(Duration::from_secs(300));
        let process = ControlProcess {
            child,
            pid,
            xds: format!("http://{xds}"),
            api,
            token,
            _data: data,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while process.api.call(Method::GET, "/ready", None).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "the control plane never got ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        process
    }

    async fn metrics(&self) -> Metrics {
        let text = self
            .api
            .call(Method::GET, "/metrics", None)
            .await
            .expect("GET /metrics");
        Metrics::parse(&String::from_utf8_lossy(&text))
    }

    async fn apply(&self, yaml: String) {
        let body = serde_json::json!({"documents": [{"source": "xds-scale.yaml", "text": yaml}]});
        self.api
            .call(
                Method::POST,
                "/api/v1/apply",
                Some(serde_json::to_vec(&body).expect("JSON")),
            )
            .await
            .expect("apply");
    }

    async fn stop(mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// `/proc/PID/status` and `/proc/PID/stat` figures.
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct ProcStats {
    rss_mib: f64,
    hwm_mib: f64,
    cpu_secs: f64,
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn proc_stats(pid: &str) -> ProcStats {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) end with ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    ProcStats {
        rss_mib: kib("VmRSS:") / 1024.0,
        hwm_mib: kib("VmHWM:") / 1024.0,
        // utime and stime are fields 14 and 15; after ')' they are the 12th and 13th.
        cpu_secs: (ticks(11) + ticks(12)) / clock_ticks(),
    }
}

/// Samples a process's RSS every 100 ms, keeping the largest value seen since the last
/// [`RssSampler::take_peak`].
struct RssSampler {
    peak_kib: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let peak = peak_kib.clone();
        let task = tokio::spawn(async move {
            let pid = pid.to_string();
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                let rss = (proc_stats(&pid).rss_mib * 1024.0) as u64;
                peak.fetch_max(rss, Ordering::Relaxed);
            }
        });
        RssSampler { peak_kib, task }
    }

    fn take_peak(&self) -> f64 {
        self.peak_kib.swap(0, Ordering::Relaxed) as f64 / 1024.0
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A parsed Prometheus text exposition: series (name with labels) → value.
#[derive(Debug, Clone, Default)]
struct Metrics(HashMap<String, f64>);

impl Metrics {
    fn parse(text: &str) -> Metrics {
        let mut m = HashMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            if let Some((series, value)) = line.rsplit_once(' ') {
                if let Ok(v) = value.parse::<f64>() {
                    m.insert(series.to_string(), v);
                }
            }
        }
        Metrics(m)
    }

    fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    /// `NAME{type="T"}` for each xDS type.
    fn by_type(&self, name: &str) -> BTreeMap<String, f64> {
        TYPES
            .into_iter()
            .map(|t| (t.to_string(), self.get(&format!("{name}{{type=\"{t}\"}}"))))
            .collect()
    }

    fn total(&self, name: &str) -> f64 {
        self.by_type(name).values().sum()
    }
}

fn diff(after: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .collect()
}

/// The xDS types' metric labels.
const TYPES: [&str; 5] = ["cds", "eds", "lds", "rds", "vhds"];
const PUSHES: &str = "weft_control_xds_pushes_total";
const BYTES: &str = "weft_control_xds_pushed_bytes_total";
const RESOURCES: &str = "weft_control_xds_pushed_resources_total";
const ACKS: &str = "weft_control_xds_acks_total";

// ---------------------------------------------------------------------------------
// Results.

#[derive(Debug, Clone, Serialize)]
struct ChangeResult {
    kind: &'static str,
    round: usize,
    /// From sending the apply request to its response.
    apply_ms: f64,
    /// From the apply response to the last affected client having the change.
    all_acked_ms: f64,
    /// Per-client latencies (from the apply response), sorted.
    #[serde(skip)]
    client_ms: Vec<f64>,
    clients_done: usize,
    /// Pushed by the control plane for this change, by type (all clients).
    responses: BTreeMap<String, f64>,
    bytes: BTreeMap<String, f64>,
    resources: BTreeMap<String, f64>,
    /// Control-plane CPU seconds for this change (apply to quiet).
    cpu_secs: f64,
}

#[derive(Debug, Clone, Serialize)]
struct ModeResult {
    mode: &'static str,
    populate_secs: f64,
    /// From the first client connecting to the last one accepting its initial state.
    initial_sync_secs: f64,
    initial_bytes: f64,
    initial_responses: f64,
    /// Control plane after populate, after the initial sync (settled), its largest
    /// value during the initial sync and during the changes, VmHWM at the end.
    rss_populated_mib: f64,
    rss_idle_mib: f64,
    rss_peak_initial_mib: f64,
    rss_peak_changes_mib: f64,
    rss_idle_end_mib: f64,
    hwm_mib: f64,
    cpu_populate_secs: f64,
    cpu_initial_secs: f64,
    cpu_changes_secs: f64,
    /// This process (the simulated clients and the driver).
    client_rss_mib: f64,
    client_cpu_secs: f64,
    snapshot_build_mean_ms: f64,
    changes: Vec<ChangeResult>,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank.
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

fn mode_name(m: Protocol) -> &'static str {
    match m {
        Protocol::Sotw => "sotw",
        Protocol::Delta => "delta",
    }
}

// ---------------------------------------------------------------------------------
// One run.

const KINDS: [&str; 3] = ["endpoint", "route", "service"];

/// The YAML and the markers of change `round` of `kind`.
fn change(p: &Params, kind: &str, round: usize) -> (String, Vec<Marker>) {
    // A different service for every change (7919 is prime).
    let pick = |salt: usize| (round * 7919 + salt) % p.services;
    match kind {
        "endpoint" => {
            let s = pick(13);
            // The last endpoint is always a Workload (ENDPOINTS > sidecars per service).
            let j = p.endpoints - 1;
            let name = format!("{}-w{j}", service_name(s));
            if round.is_multiple_of(2) {
                let address = ip(12, round);
                let yaml = workload_yaml(&name, &p.namespace(s), &service_name(s), &address, None);
                let marker = Marker {
                    type_url: type_url::CLUSTER_LOAD_ASSIGNMENT,
                    check: Check::Contains(encoded_socket_address(&address)),
                };
                (yaml, vec![marker])
            } else {
                let address = workload_address(p, s, j);
                let weight = 100 + round as u32;
                let yaml = workload_yaml(
                    &name,
                    &p.namespace(s),
                    &service_name(s),
                    &address,
                    Some(weight),
                );
                let marker = Marker {
                    type_url: type_url::CLUSTER_LOAD_ASSIGNMENT,
                    check: Check::Weight {
                        needle: encoded_socket_address(&address),
                        weight,
                    },
                };
                (yaml, vec![marker])
            }
        }
        "route" => {
            let s = pick(500);
            let name = service_name(s);
            let prefix = format!("/xds-scale-{round}/");
            let yaml = format!(
                "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  hosts: [{name}]\n  http:\n  - match: [{{uri: {{prefix: {prefix}}}}}]\n    route: [{{destination: {{host: {name}}}}}]\n    timeout: 3s\n  - route: [{{destination: {{host: {name}}}}}]\n",
                ns = p.namespace(s)
            );
            let marker = Marker {
                type_url: type_url::ROUTE_CONFIGURATION,
                check: Check::Contains(prefix.into_bytes()),
            };
            (yaml, vec![marker])
        }
        _ => {
            let name = format!("new-{round:03}");
            let ns = format!("ns-{}", round % p.namespaces);
            let mut yaml = String::new();
            for j in 0..p.endpoints {
                yaml.push_str(&workload_yaml(
                    &format!("{name}-w{j}"),
                    &ns,
                    &name,
                    &ip(13, round * p.endpoints + j),
                    None,
                ));
            }
            let host = fqdn(&name, &ns);
            let cluster = format!("outbound|8080||{host}");
            let markers = vec![
                Marker {
                    type_url: type_url::CLUSTER,
                    check: Check::Contains(cluster.clone().into_bytes()),
                },
                Marker {
                    type_url: type_url::CLUSTER_LOAD_ASSIGNMENT,
                    check: Check::Contains(cluster.into_bytes()),
                },
                Marker {
                    type_url: type_url::ROUTE_CONFIGURATION,
                    check: Check::Contains(format!("{host}:8080").into_bytes()),
                },
            ];
            (yaml, markers)
        }
    }
}

/// Waits until the control plane's pushes and ACKs stop moving (two polls apart).
async fn quiet(cp: &ControlProcess, every: Duration, timeout: Duration) -> Metrics {
    let deadline = Instant::now() + timeout;
    let mut last = cp.metrics().await;
    loop {
        tokio::time::sleep(every).await;
        let now = cp.metrics().await;
        let same = now.total(PUSHES) == last.total(PUSHES) && now.total(ACKS) == last.total(ACKS);
        if same || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// Reports each client's application healthy once its stream is up, as `weft run`
/// does, retrying while its registration is not written yet.
fn health_reporter(
    p: &Params,
    api: ApiClient,
    mut up: mpsc::UnboundedReceiver<usize>,
) -> tokio::task::JoinHandle<()> {
    let p = p.clone();
    tokio::spawn(async move {
        let limit = Arc::new(tokio::sync::Semaphore::new(16));
        while let Some(c) = up.recv().await {
            let permit = limit.clone().acquire_owned().await.expect("open semaphore");
            let api = api.clone();
            let s = c % p.services;
            let path = format!(
                "/api/v1/registry/{}/{}/{}/health",
                p.namespace(s),
                service_name(s),
                node_id(&p, c)
            );
            tokio::spawn(async move {
                let body = br#"{"healthy":true}"#.to_vec();
                for _ in 0..100 {
                    match api.call(Method::PUT, &path, Some(body.clone())).await {
                        Ok(_) => break,
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
                drop(permit);
            });
        }
    })
}

async fn run_mode(p: &Params, mode: Protocol) -> ModeResult {
    let name = mode_name(mode);
    eprintln!("== {name}: starting {}", p.weft_bin.display());
    let cp = ControlProcess::start(p).await;
    let pid = cp.pid.to_string();
    let sampler = RssSampler::start(cp.pid);
    let builds_before = cp.metrics().await;

    // Populate.
    let started = Instant::now();
    let batch = 100;
    for first in (0..p.services).step_by(batch) {
        let mut yaml = String::new();
        for s in first..(first + batch).min(p.services) {
            service_workloads(p, s, &mut yaml);
        }
        if !yaml.is_empty() {
            cp.apply(yaml).await;
        }
    }
    let workloads: usize = (0..p.services)
        .map(|s| p.endpoints.saturating_sub(p.sidecars_of(s)))
        .sum();
    let deadline = Instant::now() + p.timeout;
    while cp.metrics().await.get("weft_control_resources") < workloads as f64 {
        assert!(Instant::now() < deadline, "the populated mesh never showed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let populate_secs = started.elapsed().as_secs_f64();
    let populated = cp.metrics().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_populate = proc_stats(&pid);
    eprintln!(
        "   populated {} services, {workloads} workloads in {populate_secs:.1} s; RSS {:.0} MiB",
        p.services, after_populate.rss_mib
    );
    sampler.take_peak();

    // Connect the clients.
    let (up_tx, up_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        expectation: ArcSwapOption::empty(),
        last_apply: AtomicU64::new(0),
        responses: AtomicU64::new(0),
        received_bytes: AtomicU64::new(0),
        up: up_tx,
        connected: AtomicUsize::new(0),
    });
    let reporter = health_reporter(p, cp.api.clone(), up_rx);
    let self_before = proc_stats("self");
    let connect_started = shared.epoch;
    let mut clients = Vec::with_capacity(p.clients);
    for c in 0..p.clients {
        let config = ClientConfig {
            endpoints: vec![cp.xds.clone()],
            node: sidecar_node(p, c),
            protocol: mode,
            token: Some(cp.token.clone()),
            max_backoff: Duration::from_secs(2),
        };
        let handler = SimClient::new(c, shared.clone(), mode == Protocol::Delta);
        clients.push(tokio::spawn(weft_xds::client::run(config, handler)));
        // A 1,000-sidecar fleet connecting within about a second.
        if c % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Initial state: every client connected and healthy, every stream SYNCED, nothing
    // pushed for a while.
    let deadline = Instant::now() + p.timeout * 5;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            Instant::now() < deadline,
            "the initial state never settled (connected {})",
            shared.connected.load(Ordering::Relaxed)
        );
        let m = cp.metrics().await;
        if m.get("weft_control_proxies_connected") < p.clients as f64
            || m.get("weft_control_registry_instances_healthy") < p.clients as f64
        {
            continue;
        }
        let last = Duration::from_nanos(shared.last_apply.load(Ordering::Relaxed));
        if connect_started.elapsed() < last + Duration::from_secs(2) {
            continue;
        }
        let proxies: Vec<weft_control::proxies::ProxyStatus> = cp
            .api
            .json(Method::GET, "/api/v1/proxies", None::<&()>)
            .await
            .expect("GET /api/v1/proxies");
        let synced = proxies.len() == p.clients
            && proxies.iter().all(|x| {
                x.types.len() >= 4
                    && x.types
                        .values()
                        .all(|t| t.sent == t.acked && !t.sent.is_empty())
            });
        if synced {
            break;
        }
    }
    let initial_sync_secs =
        Duration::from_nanos(shared.last_apply.load(Ordering::Relaxed)).as_secs_f64();
    let synced = cp.metrics().await;
    let rss_peak_initial_mib = sampler.take_peak();
    let cpu_initial = proc_stats(&pid).cpu_secs - after_populate.cpu_secs;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = proc_stats(&pid);
    eprintln!(
        "   {} clients synced in {initial_sync_secs:.1} s ({:.0} MB pushed); RSS idle {:.0} MiB, peak {rss_peak_initial_mib:.0} MiB",
        p.clients,
        (synced.total(BYTES) - populated.total(BYTES)) / 1e6,
        idle.rss_mib
    );
    sampler.take_peak();

    // Changes.
    let mut changes = Vec::new();
    let mut generation = 0;
    let cpu_changes_start = proc_stats(&pid).cpu_secs;
    for round in 0..p.changes {
        for kind in KINDS {
            generation += 1;
            let (yaml, markers) = change(p, kind, round);
            let before = cp.metrics().await;
            let cpu_before = proc_stats(&pid).cpu_secs;
            let exp = Arc::new(Expectation::new(generation, markers, p.clients));
            shared.expectation.store(Some(exp.clone()));
            let sent = Instant::now();
            cp.apply(yaml).await;
            let answered = Instant::now();
            let waited = tokio::time::timeout(p.timeout, async {
                loop {
                    let notified = exp.notify.notified();
                    if exp.remaining.load(Ordering::Acquire) == 0 {
                        return;
                    }
                    notified.await;
                }
            })
            .await;
            let offset = answered.duration_since(exp.started).as_secs_f64() * 1e3;
            let client_ms = sorted(
                exp.done
                    .iter()
                    .map(|d| d.load(Ordering::Acquire))
                    .filter(|d| *d > 0)
                    .map(|d| (d - 1) as f64 / 1e6 - offset)
                    .collect(),
            );
            let clients_done = client_ms.len();
            if waited.is_err() {
                eprintln!(
                    "   {kind} #{round}: only {clients_done} of {} clients got the change within {:?}",
                    p.clients, p.timeout
                );
            }
            let after = quiet(&cp, Duration::from_millis(300), Duration::from_secs(10)).await;
            shared.expectation.store(None);
            let result = ChangeResult {
                kind,
                round,
                apply_ms: answered.duration_since(sent).as_secs_f64() * 1e3,
                all_acked_ms: client_ms.last().copied().unwrap_or(f64::NAN),
                clients_done,
                responses: diff(&after.by_type(PUSHES), &before.by_type(PUSHES)),
                bytes: diff(&after.by_type(BYTES), &before.by_type(BYTES)),
                resources: diff(&after.by_type(RESOURCES), &before.by_type(RESOURCES)),
                cpu_secs: proc_stats(&pid).cpu_secs - cpu_before,
                client_ms,
            };
            eprintln!(
                "   {kind:8} #{round:<3} all ACKed {:7.1} ms (apply {:5.1} ms)  pushed {:9.0} B, {:6.0} resources  CPU {:.2} s",
                result.all_acked_ms,
                result.apply_ms,
                result.bytes.values().sum::<f64>(),
                result.resources.values().sum::<f64>(),
                result.cpu_secs
            );
            changes.push(result);
        }
    }
    let cpu_changes_secs = proc_stats(&pid).cpu_secs - cpu_changes_start;
    let rss_peak_changes_mib = sampler.take_peak();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let end = proc_stats(&pid);
    let me = proc_stats("self");
    let last = cp.metrics().await;
    let builds = last.get("weft_control_snapshot_builds_total")
        - builds_before.get("weft_control_snapshot_builds_total");
    let build_secs = last.get("weft_control_snapshot_build_seconds_sum")
        - builds_before.get("weft_control_snapshot_build_seconds_sum");

    for c in &clients {
        c.abort();
    }
    reporter.abort();
    drop(sampler);
    cp.stop().await;
    for c in clients {
        let _ = c.await;
    }
    ModeResult {
        mode: name,
        populate_secs,
        initial_sync_secs,
        initial_bytes: synced.total(BYTES) - populated.total(BYTES),
        initial_responses: synced.total(PUSHES) - populated.total(PUSHES),
        rss_populated_mib: after_populate.rss_mib,
        rss_idle_mib: idle.rss_mib,
        rss_peak_initial_mib,
        rss_peak_changes_mib,
        rss_idle_end_mib: end.rss_mib,
        hwm_mib: end.hwm_mib,
        cpu_populate_secs: after_populate.cpu_secs,
        cpu_initial_secs: cpu_initial,
        cpu_changes_secs,
        client_rss_mib: me.rss_mib,
        client_cpu_secs: me.cpu_secs - self_before.cpu_secs,
        snapshot_build_mean_ms: if builds > 0.0 {
            build_secs / builds * 1e3
        } else {
            f64::NAN
        },
        changes,
    }
}

// ---------------------------------------------------------------------------------
// Report.

fn per_kind(r: &ModeResult, kind: &str) -> Vec<ChangeResult> {
    r.changes
        .iter()
        .filter(|c| c.kind == kind)
        .cloned()
        .collect()
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

fn fmt_bytes(b: f64) -> String {
    if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{b:.0} B")
    }
}

fn print_report(p: &Params, results: &[ModeResult]) {
    println!(
        "\n### {} services × {} endpoints, {} clients ({} namespaces), {} changes of each kind\n",
        p.services, p.endpoints, p.clients, p.namespaces, p.changes
    );
    println!("Apply → every affected client ACKed (ms; per change: the slowest client; per client: all clients of all changes)\n");
    println!("| mode | change | changes | p50 | p99 | max | per-client p50 | per-client p99 | clients with the change |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in results {
        for kind in KINDS {
            let cs = per_kind(r, kind);
            let all = sorted(cs.iter().map(|c| c.all_acked_ms).collect());
            let clients = sorted(
                cs.iter()
                    .flat_map(|c| c.client_ms.iter().copied())
                    .collect(),
            );
            let done: usize = cs.iter().map(|c| c.clients_done).sum();
            println!(
                "| {} | {kind} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {done} / {} |",
                r.mode,
                cs.len(),
                percentile(&all, 0.5),
                percentile(&all, 0.99),
                all.last().copied().unwrap_or(f64::NAN),
                percentile(&clients, 0.5),
                percentile(&clients, 0.99),
                cs.len() * p.clients
            );
        }
    }
    println!(
        "\nPushed per change (mean over the changes of a kind; all clients, and per client)\n"
    );
    println!("| mode | change | bytes | bytes per client | resources | resources per client | responses | by type (bytes) | CP CPU s |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in results {
        for kind in KINDS {
            let cs = per_kind(r, kind);
            let bytes = mean(cs.iter().map(|c| c.bytes.values().sum()));
            let resources = mean(cs.iter().map(|c| c.resources.values().sum()));
            let responses = mean(cs.iter().map(|c| c.responses.values().sum()));
            let by_type: Vec<String> = TYPES
                .iter()
                .map(|t| {
                    let b = mean(cs.iter().map(|c| c.bytes.get(*t).copied().unwrap_or(0.0)));
                    format!("{t} {}", fmt_bytes(b))
                })
                .collect();
            println!(
                "| {} | {kind} | {} | {} | {resources:.0} | {:.2} | {responses:.0} | {} | {:.2} |",
                r.mode,
                fmt_bytes(bytes),
                fmt_bytes(bytes / p.clients as f64),
                resources / p.clients as f64,
                by_type.join(", "),
                mean(cs.iter().map(|c| c.cpu_secs)),
            );
        }
    }
    println!("\nControl plane (`weft control`, one process) and the client process\n");
    println!("| mode | populate | initial sync | initial push | RSS populated | RSS idle after sync | RSS peak (sync) | RSS peak (changes) | RSS idle (end) | VmHWM | CPU s: populate / sync / changes | snapshot build | client process RSS / CPU s |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        println!(
            "| {} | {:.1} s | {:.1} s | {} | {:.0} MiB | {:.0} MiB | {:.0} MiB | {:.0} MiB | {:.0} MiB | {:.0} MiB | {:.1} / {:.1} / {:.1} | {:.0} ms | {:.0} MiB / {:.1} |",
            r.mode,
            r.populate_secs,
            r.initial_sync_secs,
            fmt_bytes(r.initial_bytes),
            r.rss_populated_mib,
            r.rss_idle_mib,
            r.rss_peak_initial_mib,
            r.rss_peak_changes_mib,
            r.rss_idle_end_mib,
            r.hwm_mib,
            r.cpu_populate_secs,
            r.cpu_initial_secs,
            r.cpu_changes_secs,
            r.snapshot_build_mean_ms,
            r.client_rss_mib,
            r.client_cpu_secs,
        );
    }
}

fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if let Some(max) = limit.maximum {
        limit.current = Some(max);
        let _ = setrlimit(Resource::Nofile, limit);
    }
    let now = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    // Each client holds one socket here and one in the control plane, plus a few spare.
    let need = 64;
    let clients: u64 = env_or("CLIENTS", 1000);
    assert!(
        now >= clients + need,
        "RLIMIT_NOFILE is {now}: raise it (ulimit -n) to at least {}",
        clients + need
    );
}

fn main() {
    let p = Params::from_env();
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let results: Vec<ModeResult> = runtime.block_on(async {
        let mut out = Vec::new();
        for mode in &p.modes {
            out.push(run_mode(&p, *mode).await);
        }
        out
    });
    print_report(&p, &results);
    if let Some(path) = &p.out {
        #[derive(Serialize)]
        struct Out<'a> {
            services: usize,
            endpoints: usize,
            clients: usize,
            namespaces: usize,
            changes_per_kind: usize,
            control_plane_cpus: Option<&'a str>,
            modes: &'a [ModeResult],
        }
        let json = serde_json::to_string_pretty(&Out {
            services: p.services,
            endpoints: p.endpoints,
            clients: p.clients,
            namespaces: p.namespaces,
            changes_per_kind: p.changes,
            control_plane_cpus: p.cp_cpus.as_deref(),
            modes: &results,
        })
        .expect("JSON");
        std::fs::write(path, json).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        eprintln!("raw results: {}", path.display());
    }
}
