//! One control-plane replica: the store it opens, the mesh it follows, the xDS server
//! and the REST API it serves, and an orderly shutdown.

use crate::api::{self, Api};
use crate::auth::Tokens;
use crate::ca::{Authority, CaSettings, SuppliedCa, DEFAULT_BUNDLE_REFRESH, DEFAULT_WORKLOAD_TTL};
use crate::identity::{valid_trust_domain, DEFAULT_TRUST_DOMAIN};
use crate::mesh::{Debounce, Mesh};
use crate::metrics::Metrics;
use crate::proxies::Proxies;
use crate::registrar::{Graces, Registrar};
use crate::sealing::Sealer;
use crate::source::MeshSource;
use crate::translate::peer_authentication::DEFAULT_ROOT_NAMESPACE;
use crate::translate::MeshSettings;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use weft_store::etcd::EtcdStore;
use weft_store::redb::RedbStore;
use weft_store::{Store, StoreError};
use weft_xds::server::AdsServer;

/// Istio's port for plaintext xDS.
pub const DEFAULT_XDS_PORT: u16 = 15010;
/// Istio's port for xDS over TLS.
pub const DEFAULT_XDS_TLS_PORT: u16 = 15012;
/// Istio's port for the control plane's HTTP monitoring; Weft's REST API lives there.
pub const DEFAULT_API_PORT: u16 = 15014;

/// How to run a replica.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the embedded store lives (unused with etcd).
    pub data_dir: PathBuf,
    /// `etcd://host:port,...`; `None` for the embedded store.
    pub store: Option<String>,
    /// xDS (gRPC) listen address.
    pub xds_address: SocketAddr,
    /// xDS over TLS listen address (`None`: not served).
    pub xds_tls_address: Option<SocketAddr>,
    /// Names (DNS or IP) the xDS/TLS certificate is valid for, besides the listen IP
    /// and `localhost`.
    pub xds_tls_names: Vec<String>,
    /// REST API listen address.
    pub api_address: SocketAddr,
    /// Debouncing of changes.
    pub debounce: Debounce,
    /// Registry timings.
    pub graces: Graces,
    /// The SPIFFE trust domain of workload identities.
    pub trust_domain: String,
    /// The namespace whose selector-less policies apply to the whole mesh.
    pub root_namespace: String,
    /// The key that seals secrets in the store (required with etcd).
    pub seal_key: Option<PathBuf>,
    /// A CA the operator supplies instead of the one Weft makes.
    pub ca: Option<SuppliedCa>,
    /// Lifetime of workload certificates.
    pub workload_cert_ttl: Duration,
    /// How often sidecars fetch the trust bundle.
    pub bundle_refresh: Duration,
}

impl Config {
    /// Whether the store is etcd (shared by replicas, read by many).
    pub fn uses_etcd(&self) -> bool {
        self.store
            .as_deref()
            .is_some_and(|s| s.starts_with("etcd://"))
    }

    /// Defaults on 127.0.0.1 with Istio's port numbers.
    pub fn new(data_dir: PathBuf) -> Config {
        Config {
            data_dir,
            store: None,
            xds_address: SocketAddr::from(([127, 0, 0, 1], DEFAULT_XDS_PORT)),
            xds_tls_address: Some(SocketAddr::from(([127, 0, 0, 1], DEFAULT_XDS_TLS_PORT))),
            xds_tls_names: Vec::new(),
            api_address: SocketAddr::from(([127, 0, 0, 1], DEFAULT_API_PORT)),
            debounce: Debounce::default(),
            graces: Graces::default(),
            trust_domain: DEFAULT_TRUST_DOMAIN.to_string(),
            root_namespace: DEFAULT_ROOT_NAMESPACE.to_string(),
            seal_key: None,
            ca: None,
            workload_cert_ttl: DEFAULT_WORKLOAD_TTL,
            bundle_refresh: DEFAULT_BUNDLE_REFRESH,
        }
    }
}

/// Why a replica could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error("cannot open the store {what}: {source}")]
    Store {
        /// Which store.
        what: String,
        /// Why.
        source: StoreError,
    },
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Secrets are unusable: the seal key, the CA, the token key.
    #[error("{0}")]
    Security(String),
    /// A listen address could not be bound.
    #[error("cannot listen for {what} on {address}: {source}")]
    Bind {
        /// xDS or API.
        what: &'static str,
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Creates `dir` if needed, readable by this user alone (it holds the store, and with
/// it the CA's key, and the admin token).
pub fn private_dir(dir: &std::path::Path) -> Result<(), StartError> {
    make_private(dir).map_err(|source| StartError::DataDir {
        path: dir.to_path_buf(),
        source,
    })
}

fn make_private(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// The file in the data directory that holds the admin token.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// Writes the admin token to `<data_dir>/admin-token`, readable by this user alone;
/// returns the file's path.
pub fn save_admin_token(data_dir: &std::path::Path, token: &str) -> std::io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    make_private(data_dir)?;
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    writeln!(file, "{token}")?;
    Ok(path)
}

/// The admin token saved in `data_dir` by the replica that made it.
pub fn read_admin_token(data_dir: &std::path::Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(data_dir.join(ADMIN_TOKEN_FILE))?
        .trim()
        .to_string())
}

/// Opens the store a configuration names.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    match &config.store {
        Some(url) if config.uses_etcd() => {
            let store = EtcdStore::connect(url)
                .await
                .map_err(|source| StartError::Store {
                    what: url.clone(),
                    source,
                })?;
            Ok(Arc::new(store))
        }
        other => {
            let path = match other {
                Some(path) => PathBuf::from(path.strip_prefix("redb://").unwrap_or(path)),
                None => {
                    private_dir(&config.data_dir)?;
                    config.data_dir.join("store.redb")
                }
            };
            let store = RedbStore::open(&path).map_err(|source| StartError::Store {
                what: path.display().to_string(),
                source,
            })?;
            Ok(Arc::new(store))
        }
    }
}

/// The gRPC server settings of both xDS listeners: keepalives find dead proxies.
fn xds_server() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
}

/// Opens the token key and the CA (creating both at the mesh's first start).
async fn security(
    config: &Config,
    store: &Arc<dyn Store>,
) -> Result<(Arc<Tokens>, Arc<Authority>, Option<String>), StartError> {
    if !valid_trust_domain(&config.trust_domain) {
        return Err(StartError::Security(format!(
            "trust domain {:?}: lowercase letters, digits, '.', '-' and '_' only",
            config.trust_domain
        )));
    }
    let sealer = match &config.seal_key {
        Some(path) => Sealer::from_file(path).map_err(|e| StartError::Security(e.to_string()))?,
        None if config.uses_etcd() => {
            return Err(StartError::Security(
                "with an etcd store, --seal-key FILE is required: the CA key and the token key \
                 are kept in etcd sealed with it (make one with `openssl rand -hex 32`)"
                    .into(),
            ))
        }
        None => Sealer::none(),
    };
    let sealer = Arc::new(sealer);
    let (tokens, admin) = Tokens::open(store.clone(), &sealer, &config.trust_domain)
        .await
        .map_err(|e| StartError::Security(format!("tokens: {e}")))?;
    let settings = CaSettings {
        trust_domain: config.trust_domain.clone(),
        workload_ttl: config.workload_cert_ttl,
        bundle_refresh: config.bundle_refresh,
    };
    let authority = Authority::open(store.clone(), sealer, settings, config.ca.as_ref())
        .await
        .map_err(|e| StartError::Security(format!("certificate authority: {e}")))?;
    Ok((Arc::new(tokens), Arc::new(authority), admin))
}

/// A running replica.
pub struct ControlPlane {
    /// Where xDS is served.
    pub xds_address: SocketAddr,
    /// Where xDS over TLS is served.
    pub xds_tls_address: Option<SocketAddr>,
    /// The trust bundle, written for clients at `<data-dir>/ca-roots.pem`.
    pub roots_file: PathBuf,
    /// Where the REST API is served.
    pub api_address: SocketAddr,
    /// This replica's id.
    pub replica: String,
    /// The admin token, when this start created it (the mesh's first start).
    pub admin_token: Option<String>,
    mesh: Arc<Mesh>,
    registrar: Arc<Registrar>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

fn replica_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}-{:08x}", std::process::id(), nanos ^ 0x5eed_f00d)
}

impl ControlPlane {
    /// Opens the store, starts following it, and serves xDS and the API.
    pub async fn start(config: Config) -> Result<ControlPlane, StartError> {
        let store = open_store(&config).await?;
        Self::start_with_store(config, store).await
    }

    /// Like [`ControlPlane::start`] with an already opened store.
    pub async fn start_with_store(
        config: Config,
        store: Arc<dyn Store>,
    ) -> Result<ControlPlane, StartError> {
        let bind = |what, address| async move {
            TcpListener::bind(address)
                .await
                .map_err(|source| StartError::Bind {
                    what,
                    address,
                    source,
                })
        };
        let xds_listener = bind("xDS", config.xds_address).await?;
        let xds_tls_listener = match config.xds_tls_address {
            Some(address) => Some(bind("xDS over TLS", address).await?),
            None => None,
        };
        let xds_tls_address = xds_tls_listener.as_ref().and_then(|l| l.local_addr().ok());
        let api_listener = bind("the API", config.api_address).await?;
        let xds_address = xds_listener.local_addr().unwrap_or(config.xds_address);
        let api_address = api_listener.local_addr().unwrap_or(config.api_address);

        let (tokens, authority, admin_token) = security(&config, &store).await?;
        let metrics = Arc::new(Metrics::new());
        let replica = replica_id();
        let settings = MeshSettings {
            trust_domain: config.trust_domain.clone(),
            root_namespace: config.root_namespace.clone(),
        };
        let mesh = Mesh::new(store.clone(), metrics.clone(), config.debounce, settings);
        let registrar = Registrar::new(
            store.clone(),
            replica.clone(),
            config.graces,
            metrics.clone(),
        );
        let proxies = Arc::new(Proxies::default());
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();

        tasks.spawn(mesh.clone().follow(stopped.clone()));
        tasks.spawn(crate::prober::run(mesh.clone(), stopped.clone()));
        tasks.spawn(registrar.clone().announce(stopped.clone()));
        tasks.spawn(
            registrar
                .clone()
                .sweep_orphans(Duration::from_secs(1), stopped.clone()),
        );

        let source = Arc::new(MeshSource::new(
            mesh.clone(),
            proxies.clone(),
            registrar.clone(),
            metrics.clone(),
            tokens.clone(),
        ));
        let ads = AdsServer::new(source).into_service();
        private_dir(&config.data_dir)?;
        let roots_file = config.data_dir.join("ca-roots.pem");
        let roots = authority
            .roots()
            .await
            .map_err(|e| StartError::Security(format!("certificate authority: {e}")))?;
        std::fs::write(&roots_file, roots.concat()).map_err(|source| StartError::DataDir {
            path: roots_file.clone(),
            source,
        })?;
        if let (Some(listener), Some(address)) = (xds_tls_listener, xds_tls_address) {
            let mut names = vec!["localhost".to_string(), address.ip().to_string()];
            names.extend(config.xds_tls_names.iter().cloned());
            let tls = crate::xds_tls::server_config(authority.clone(), names, stopped.clone())
                .await
                .map_err(|e| StartError::Security(format!("xDS/TLS certificate: {e}")))?;
            let ads = ads.clone();
            let mut tls_stop = stopped.clone();
            tasks.spawn(async move {
                let served = xds_server()
                    .add_service(ads)
                    .serve_with_incoming_shutdown(
                        crate::xds_tls::incoming(listener, tls),
                        async move {
                            let _ = tls_stop.changed().await;
                        },
                    )
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "xDS/TLS server failed");
                }
            });
        }
        let mut xds_stop = stopped.clone();
        tasks.spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(xds_listener);
            let served = xds_server()
                .tcp_nodelay(true)
                .add_service(ads)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = xds_stop.changed().await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "xDS server failed");
            }
        });

        let router = api::router(Api {
            mesh: mesh.clone(),
            store,
            registrar: registrar.clone(),
            proxies,
            metrics,
            tokens,
            authority: authority.clone(),
        });
        let mut api_stop = stopped.clone();
        tasks.spawn(async move {
            let served = axum::serve(api_listener, router)
                .with_graceful_shutdown(async move {
                    let _ = api_stop.changed().await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "API server failed");
            }
        });
        tracing::info!(%xds_address, %api_address, replica, "control plane started");
        Ok(ControlPlane {
            xds_address,
            xds_tls_address,
            roots_file,
            api_address,
            replica,
            admin_token,
            mesh,
            registrar,
            stop,
            tasks,
        })
    }

    /// Whether the first translation is done.
    pub fn is_ready(&self) -> bool {
        self.mesh.is_ready()
    }

    /// The followed mesh.
    pub fn mesh(&self) -> &Arc<Mesh> {
        &self.mesh
    }

    /// Stops serving: xDS streams end (their proxies keep their configuration and
    /// reconnect, to another replica if there is one), registrations are left for
    /// their sidecars to claim elsewhere, the replica's announcement is withdrawn.
    pub async fn shutdown(mut self) {
        self.registrar.stop();
        self.mesh.close();
        let _ = self.stop.send(true);
        let drained = tokio::time::timeout(Duration::from_secs(5), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("shutdown timed out; aborting the remaining tasks");
            self.tasks.abort_all();
        }
        tracing::info!("control plane stopped");
    }
}
