//! Weft's data plane: the sidecar proxy. It reads Envoy v3 resources (a bootstrap file
//! now, xDS next), compiles them into immutable listeners, routes and clusters, and
//! carries HTTP/1.1, HTTP/2, gRPC, WebSocket and TCP traffic with them.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let options = weft_proxy::ProxyOptions::new("bootstrap.yaml");
//! let proxy = weft_proxy::Proxy::load(&options)?;
//! let running = proxy.start()?;
//! running.shutdown();
//! # Ok(()) }
//! ```

pub mod access_log;
pub mod admin;
pub mod cluster;
pub mod compile;
pub mod detect;
pub mod drain;
pub mod dynamic;
pub mod error;
pub mod follow;
pub mod format;
pub mod http;
pub mod io;
pub mod jwt;
pub mod listener;
pub mod memory;
pub mod metadata;
pub mod metrics;
pub mod rbac;
pub mod runtime;
pub mod sidecar;
pub mod stream_info;
pub mod tcp;
pub mod tls;

use arc_swap::ArcSwap;
use cluster::ClusterMap;
use compile::{Compiled, ConfigErrors};
use drain::Drain;
use metrics::Metrics;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default time given to in-flight requests when shutting down.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How to run one proxy.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Bootstrap file (YAML or JSON).
    pub config_path: PathBuf,
    /// Worker threads.
    pub concurrency: usize,
    /// Time in-flight requests get when shutting down.
    pub drain_timeout: Duration,
    /// The TLS secrets that SDS secret names in the configuration resolve from. A
    /// sidecar's identity manager keeps a clone and sets its certificate and trust roots
    /// there; by default the proxy has a store of its own, empty.
    pub secrets: tls::SecretStore,
    /// The credential presented to the control plane over xDS (default: `WEFT_TOKEN`
    /// from the environment).
    pub xds_token: Option<String>,
}

impl ProxyOptions {
    /// Options for `config_path`, with one worker per core.
    pub fn new(config_path: impl Into<PathBuf>) -> Self {
        ProxyOptions {
            config_path: config_path.into(),
            concurrency: std::thread::available_parallelism().map_or(1, |n| n.get()),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            secrets: tls::SecretStore::new(),
            xds_token: std::env::var("WEFT_TOKEN").ok().filter(|t| !t.is_empty()),
        }
    }

    /// These options with `secrets` as the proxy's secret store.
    pub fn with_secrets(mut self, secrets: tls::SecretStore) -> Self {
        self.secrets = secrets;
        self
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid Envoy bootstrap.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and why.
        #[source]
        source: weft_xds::ParseError,
    },
    /// The bootstrap uses something the proxy cannot honour, or is inconsistent.
    #[error("{path}: invalid configuration:\n{errors}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem.
        errors: ConfigErrors,
    },
}

/// A compiled proxy, not yet bound to any port.
pub struct Proxy {
    options: ProxyOptions,
    compiled: Compiled,
    metrics: Arc<Metrics>,
    clusters: Arc<ArcSwap<ClusterMap>>,
}

impl Proxy {
    /// Reads, parses and compiles the bootstrap; binds nothing.
    pub fn load(options: &ProxyOptions) -> Result<Proxy, LoadError> {
        let text =
            std::fs::read_to_string(&options.config_path).map_err(|source| LoadError::Read {
                path: options.config_path.clone(),
                source,
            })?;
        Proxy::from_text(options, &text)
    }

    /// Parses and compiles a bootstrap given as text.
    pub fn from_text(options: &ProxyOptions, text: &str) -> Result<Proxy, LoadError> {
        let path = options.config_path.clone();
        // Held for the whole load so that parsing and checking share one decode.
        let pool = weft_xds::descriptor_pool();
        let (bootstrap, dynamic) =
            weft_xds::from_json_or_yaml(text).map_err(|source| LoadError::Parse {
                path: path.clone(),
                source,
            })?;
        let mut metrics = Metrics::new();
        metrics.register_collector(tls::expiry::CertificateExpiry(options.secrets.clone()));
        let metrics = Arc::new(metrics);
        let clusters = Arc::new(ArcSwap::from_pointee(ClusterMap::new()));
        let workers = options.concurrency.max(1);
        let compiled = compile::compile_bootstrap(
            &bootstrap,
            &dynamic,
            &metrics,
            workers,
            clusters.clone(),
            &options.secrets,
        )
        .map_err(|errors| LoadError::Invalid { path, errors })?;
        clusters.store(Arc::new(compiled.clusters.clone()));
        metrics.config_applied();
        drop((dynamic, pool));
        memory::release_free_memory();
        memory::page_out_startup_code();
        Ok(Proxy {
            options: options.clone(),
            compiled,
            metrics,
            clusters,
        })
    }

    /// The compiled configuration.
    pub fn compiled(&self) -> &Compiled {
        &self.compiled
    }

    /// The secret store TLS contexts resolve SDS secret names from.
    pub fn secrets(&self) -> &tls::SecretStore {
        &self.options.secrets
    }

    /// Binds every listener and the admin port, starts the workers, and returns.
    pub fn start(self) -> std::io::Result<RunningProxy> {
        let drain = Drain::new();
        let workers = Arc::new(runtime::Workers::start(
            self.options.concurrency.max(1),
            drain.clone(),
        )?);
        let bound: dynamic::BoundListeners = Default::default();
        let mut static_handles = Vec::new();
        for l in &self.compiled.listeners {
            let handle = listener::ListenerHandle::new(l.clone());
            let addr = match workers.listen(&handle) {
                Ok(a) => a,
                Err(e) => {
                    workers.stop();
                    return Err(e);
                }
            };
            bound
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((l.name.to_string(), addr));
            static_handles.push(handle);
        }
        let admin_socket = match self.compiled.admin {
            Some(addr) => Some(std::net::TcpListener::bind(addr).map_err(|e| {
                std::io::Error::new(e.kind(), format!("admin listener cannot bind {addr}: {e}"))
            })?),
            None => None,
        };
        let admin_addr = admin_socket.as_ref().map(|s| s.local_addr()).transpose()?;
        if let Some(s) = &admin_socket {
            s.set_nonblocking(true)?;
        }
        let dump: Arc<std::sync::Mutex<dynamic::Dump>> = Default::default();
        let state = Arc::new(admin::AdminState {
            metrics: self.metrics.clone(),
            clusters: self.clusters.clone(),
            bootstrap: self.compiled.bootstrap.clone(),
            listeners: bound.clone(),
            dynamic: dump.clone(),
            drain: drain.clone(),
            ready: Default::default(),
            shutdown: tokio::sync::Notify::new(),
            started: Instant::now(),
            loaded_at: std::time::SystemTime::now(),
            secrets: self.options.secrets.clone(),
        });
        let xds = self.compiled.xds.clone().map(|settings| {
            let handler = dynamic::Dynamic::new(dynamic::DynamicParts {
                metrics: self.metrics.clone(),
                workers: workers.clone(),
                clusters: self.clusters.clone(),
                routes: self.compiled.routes.clone(),
                bound: bound.clone(),
                dump,
                ready: Arc::new(std::sync::atomic::AtomicBool::new(false)),
                lds: settings.lds,
                cds: settings.cds,
                secrets: self.options.secrets.clone(),
            });
            (settings, handler)
        });
        let node = self.compiled.bootstrap.node.clone().unwrap_or_default();
        let main_runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let main_state = state.clone();
        let drain_timeout = self.options.drain_timeout;
        let xds_token = self.options.xds_token.clone();
        let clusters = self.clusters.clone();
        let thread = std::thread::Builder::new().name("weft-main".into()).spawn(move || {
            main_runtime.block_on(async move {
                if let Some(s) = admin_socket {
                    if let Ok(s) = tokio::net::TcpListener::from_std(s) {
                        tokio::spawn(admin::serve(s, main_state.clone()));
                    }
                }
                start_dns(&clusters).await;
                match xds {
                    Some((settings, handler)) => {
                        let ready = handler.ready_flag();
                        let config = weft_xds::client::ClientConfig {
                            endpoints: settings.endpoints,
                            node: xds_node(node),
                            protocol: settings.protocol,
                            token: xds_token,
                            max_backoff: Duration::from_secs(10),
                        };
                        tokio::spawn(weft_xds::client::run(config, handler));
                        let s = main_state.clone();
                        tokio::spawn(async move {
                            // Like Envoy's initial fetch timeout: serve what there is
                            // rather than never become ready.
                            let deadline = Instant::now() + INITIAL_FETCH_TIMEOUT;
                            while !ready.load(Ordering::Acquire) && Instant::now() < deadline {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            if !ready.load(Ordering::Acquire) {
                                tracing::warn!("no complete configuration from the control plane yet; serving what there is");
                            }
                            s.ready.store(true, Ordering::Release);
                        });
                    }
                    None => main_state.ready.store(true, Ordering::Release),
                }
                main_state.shutdown.notified().await;
                main_state.drain.start();
                main_state.drain.wait_idle(drain_timeout).await;
            });
            drop(static_handles);
            workers.stop();
            access_log::flush_all();
            let _ = done_tx.send(());
        })?;
        Ok(RunningProxy {
            state,
            admin: admin_addr,
            thread: Some(thread),
            done: done_rx,
        })
    }
}

/// How long the proxy waits for a first complete configuration over xDS before it says
/// it is ready anyway (Envoy's `initial_fetch_timeout` default).
pub const INITIAL_FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// The node as sent to the control plane, with Weft's user agent and client features.
fn xds_node(
    mut node: weft_xds::pb::envoy::config::core::v3::Node,
) -> weft_xds::pb::envoy::config::core::v3::Node {
    use weft_xds::pb::envoy::config::core::v3::node::UserAgentVersionType;
    node.user_agent_name = "weft".into();
    node.user_agent_version_type = Some(UserAgentVersionType::UserAgentVersion(
        env!("CARGO_PKG_VERSION").into(),
    ));
    // It takes virtual hosts over VHDS (`dynamic.rs`).
    if !node
        .client_features
        .iter()
        .any(|f| f == weft_xds::VHDS_CLIENT_FEATURE)
    {
        node.client_features
            .push(weft_xds::VHDS_CLIENT_FEATURE.to_string());
    }
    node
}

/// Resolves every DNS cluster once (so the first requests find endpoints), then keeps
/// them refreshed in the background.
async fn start_dns(clusters: &ArcSwap<ClusterMap>) {
    let map = clusters.load_full();
    let first: Vec<_> = map
        .values()
        .filter(|c| c.dns_refresh().is_some())
        .cloned()
        .collect();
    let initial = futures_util::future::join_all(first.iter().map(|c| async move {
        let _ = tokio::time::timeout(Duration::from_secs(5), c.refresh_dns()).await;
    }));
    initial.await;
    for c in first {
        let Some(every) = c.dns_refresh() else {
            continue;
        };
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                c.refresh_dns().await;
            }
        });
    }
}

/// A running proxy.
pub struct RunningProxy {
    state: Arc<admin::AdminState>,
    admin: Option<SocketAddr>,
    thread: Option<std::thread::JoinHandle<()>>,
    done: std::sync::mpsc::Receiver<()>,
}

impl RunningProxy {
    /// Where the admin listener is bound.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// Where each listener is bound, by name.
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a)
    }

    /// Every listener and its address (static and from xDS).
    pub fn listeners(&self) -> Vec<(String, SocketAddr)> {
        self.state
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The secret store TLS contexts resolve SDS secret names from (set certificates and
    /// trust roots here; handshakes use them at once).
    pub fn secrets(&self) -> &tls::SecretStore {
        &self.state.secrets
    }

    /// Whether listeners are bound and the initial configuration is in place.
    pub fn is_ready(&self) -> bool {
        self.state.ready.load(Ordering::Acquire)
    }

    /// Stops accepting and asks connections to finish; the proxy keeps running.
    pub fn drain(&self) {
        self.state.drain.start();
    }

    /// Drains (in-flight requests get the drain timeout) and stops.
    pub fn shutdown(mut self) {
        self.state.shutdown.notify_one();
        self.join();
    }

    /// Waits until the proxy stops (after `POST /quitquitquit` or [`Self::shutdown`]).
    pub fn wait(mut self) {
        self.join();
    }

    /// A handle that asks the proxy to shut down from elsewhere (e.g. a signal handler).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            state: self.state.clone(),
        }
    }

    fn join(&mut self) {
        let _ = self.done.recv();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.state.shutdown.notify_one();
            self.join();
        }
    }
}

/// Asks a running proxy to shut down.
#[derive(Clone)]
pub struct ShutdownHandle {
    state: Arc<admin::AdminState>,
}

impl ShutdownHandle {
    /// Starts the graceful shutdown.
    pub fn shutdown(&self) {
        self.state.shutdown.notify_one();
    }
}

/// Checks a configuration file without starting anything; `Ok` holds a summary.
pub fn validate(path: &Path) -> Result<String, LoadError> {
    let options = ProxyOptions {
        concurrency: 1,
        ..ProxyOptions::new(path)
    };
    let proxy = Proxy::load(&options)?;
    let c = proxy.compiled();
    Ok(format!(
        "configuration '{}' OK: {} listener(s), {} cluster(s)",
        path.display(),
        c.listeners.len(),
        c.clusters.len()
    ))
}
