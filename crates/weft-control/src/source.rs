//! The xDS [`Source`]: admits each stream, registers a sidecar's workload, and gives
//! every proxy its view of the current snapshot.

use crate::auth::{AuthError, Principal, Tokens};
use crate::identity::Identity;
use crate::mesh::Mesh;
use crate::metrics::{type_label, Metrics};
use crate::proxies::{unix_now, Proxies, ProxyStatus};
use crate::registrar::Registrar;
use crate::registry::{Instance, InstancePort};
use crate::translate::listener::{takes_vhds, ProxyInfo};
use crate::translate::ProxyCache;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tonic::Status;
use weft_xds::server::{Authenticating, ClientInfo, NameSet, Names, Pushed, Source, View};
use weft_xds::Resource;

/// Serves the mesh to xDS clients.
pub struct MeshSource {
    mesh: Arc<Mesh>,
    proxies: Arc<Proxies>,
    registrar: Arc<Registrar>,
    metrics: Arc<Metrics>,
    tokens: Arc<Tokens>,
}

impl MeshSource {
    /// A source over `mesh`.
    pub fn new(
        mesh: Arc<Mesh>,
        proxies: Arc<Proxies>,
        registrar: Arc<Registrar>,
        metrics: Arc<Metrics>,
        tokens: Arc<Tokens>,
    ) -> Self {
        MeshSource {
            mesh,
            proxies,
            registrar,
            metrics,
            tokens,
        }
    }
}

/// The instance a sidecar's node describes.
fn instance_of(node_id: &str, proxy: &ProxyInfo, owner: String) -> Instance {
    Instance {
        id: node_id.to_string(),
        service: proxy.service.clone(),
        namespace: proxy.namespace.clone(),
        labels: proxy.labels.clone(),
        address: proxy
            .inbound_address
            .map_or_else(|| "127.0.0.1".to_string(), |a| a.to_string()),
        ports: proxy
            .ports
            .iter()
            .map(
                |(name, service_port, app_port, inbound_port, protocol)| InstancePort {
                    name: name.clone(),
                    service_port: *service_port,
                    endpoint_port: *inbound_port,
                    app_port: Some(*app_port),
                    protocol: protocol.clone(),
                },
            )
            .collect(),
        healthy: false,
        sidecar: true,
        weight: 1,
        owner,
    }
}

/// The principal field of [`ClientInfo`] for an admin.
const ADMIN: &str = "admin";

impl Source for MeshSource {
    fn authenticate<'a>(
        &'a self,
        metadata: &'a tonic::metadata::MetadataMap,
        peer: Option<std::net::SocketAddr>,
    ) -> Authenticating<'a> {
        Box::pin(async move {
            let header = metadata.get("authorization").and_then(|v| v.to_str().ok());
            match self.tokens.verify_bearer(header).await {
                Ok(Principal::Admin) => Ok(Some(ADMIN.to_string())),
                Ok(Principal::Workload(identity)) => {
                    Ok(Some(identity.spiffe_id(self.tokens.trust_domain())))
                }
                Err(AuthError::Unauthenticated(why)) => {
                    self.metrics.auth_failures.inc();
                    tracing::warn!(?peer, reason = why, "xDS stream refused");
                    Err(Status::unauthenticated(why))
                }
                Err(e) => Err(Status::unavailable(e.to_string())),
            }
        })
    }

    fn connect(
        &self,
        client: &ClientInfo,
        _metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Arc<dyn View>, Status> {
        let mut proxy = ProxyInfo::from_node(&client.node);
        proxy.vhds = takes_vhds(&client.node, &proxy.role, client.delta);
        let id = client.node.id.clone();
        // A workload's token lets it be that workload and no other.
        if let Some(principal) = client.principal.as_deref().filter(|p| *p != ADMIN) {
            let namespace = if proxy.namespace.is_empty() {
                weft_model::DEFAULT_NAMESPACE
            } else {
                proxy.namespace.as_str()
            };
            let claimed = Identity::new(namespace, proxy.service.as_str())
                .spiffe_id(self.tokens.trust_domain());
            if !proxy.service.is_empty() && claimed != principal {
                self.metrics.auth_failures.inc();
                return Err(Status::permission_denied(format!(
                    "the node says it is {claimed}, but the credential is for {principal}"
                )));
            }
        }
        let registers = proxy.role == "sidecar" && !proxy.ports.is_empty();
        if registers && id.is_empty() {
            return Err(Status::invalid_argument(
                "a sidecar must send a node id (node.id in its bootstrap)",
            ));
        }
        let owner = self.registrar.owner(client.stream_id);
        let alive = Arc::new(AtomicBool::new(true));
        let registration = registers.then(|| {
            let instance = instance_of(&id, &proxy, owner.clone());
            let key = instance.key();
            let registrar = self.registrar.clone();
            let (logged, alive) = (key.clone(), alive.clone());
            tokio::spawn(async move {
                // A store that is briefly away must not leave a workload unregistered
                // for as long as its stream lasts: retry while the stream is open.
                let mut backoff = Duration::from_millis(200);
                while alive.load(Ordering::Relaxed) {
                    match registrar.register(instance.clone()).await {
                        Ok(()) => return,
                        Err(e) => tracing::warn!(key = logged, error = %e, retry_in = ?backoff, "cannot register a sidecar's workload"),
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            });
            key
        });
        tracing::info!(
            node = id,
            role = proxy.role,
            service = proxy.service,
            namespace = proxy.namespace,
            peer = ?client.peer,
            delta = client.delta,
            "proxy connected"
        );
        self.proxies.connected(
            client.stream_id,
            ProxyStatus {
                id: id.clone(),
                role: proxy.role.clone(),
                service: proxy.service.clone(),
                namespace: proxy.namespace.clone(),
                peer: client.peer,
                protocol: if client.delta { "delta" } else { "sotw" }.to_string(),
                connected_since: unix_now(),
                replica: self.registrar.replica().to_string(),
                types: Default::default(),
                last_nack: None,
            },
        );
        self.metrics.proxies_connected.inc();
        Ok(Arc::new(ProxyView {
            stream: client.stream_id,
            node: id,
            proxy,
            cache: ProxyCache::default(),
            mesh: self.mesh.clone(),
            proxies: self.proxies.clone(),
            registrar: self.registrar.clone(),
            metrics: self.metrics.clone(),
            registration: registration.map(|key| (key, owner)),
            connected_at: Instant::now(),
            alive,
            last_revision: AtomicU64::new(self.mesh.state().revision),
        }))
    }
}

/// One proxy's view.
struct ProxyView {
    stream: u64,
    node: String,
    proxy: ProxyInfo,
    /// Its own resources, kept across snapshots.
    cache: ProxyCache,
    mesh: Arc<Mesh>,
    proxies: Arc<Proxies>,
    registrar: Arc<Registrar>,
    metrics: Arc<Metrics>,
    /// The registry key and owner of the workload this stream registered.
    registration: Option<(String, String)>,
    connected_at: Instant,
    /// Cleared when the stream ends (stops registration retries).
    alive: Arc<AtomicBool>,
    /// The snapshot revision of the last push, to time pushes caused by changes.
    last_revision: AtomicU64,
}

impl View for ProxyView {
    fn resources(&self, type_url: &str, names: Option<&Names>) -> Vec<Arc<Resource>> {
        self.mesh.state().snapshot.select(
            &self.proxy,
            type_url,
            names.map(|n| n as &dyn NameSet),
            Some(&self.cache),
        )
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.mesh.changes()
    }

    fn generation(&self, type_url: &str, names: Option<&Names>) -> Option<u64> {
        self.mesh.state().snapshot.generation(
            &self.proxy,
            type_url,
            names.map(|n| n as &dyn NameSet),
        )
    }

    fn acked(&self, type_url: &str, version: &str) {
        self.metrics.acks.get_or_create(&type_label(type_url)).inc();
        self.proxies.acked(self.stream, type_url, version);
    }

    fn nacked(&self, type_url: &str, version: &str, message: &str) {
        self.metrics
            .nacks
            .get_or_create(&type_label(type_url))
            .inc();
        tracing::warn!(
            node = self.node,
            type_url,
            version,
            message,
            "proxy rejected a configuration"
        );
        self.proxies.nacked(self.stream, type_url, version, message);
    }

    fn pushed(&self, push: &Pushed<'_>) {
        let label = type_label(push.type_url);
        self.metrics.pushes.get_or_create(&label).inc();
        self.metrics
            .pushed_resources
            .get_or_create(&label)
            .inc_by(push.resources as u64);
        self.metrics
            .pushed_bytes
            .get_or_create(&label)
            .inc_by(push.bytes as u64);
        self.proxies
            .pushed(self.stream, push.type_url, push.version);
        let state = self.mesh.state();
        let previous = self.last_revision.swap(state.revision, Ordering::Relaxed);
        if previous != state.revision && state.changed_at > self.connected_at {
            self.metrics
                .push_latency
                .observe(state.changed_at.elapsed().as_secs_f64());
        }
    }
}

impl Drop for ProxyView {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Relaxed);
        tracing::info!(node = self.node, "proxy disconnected");
        self.proxies.disconnected(self.stream);
        self.metrics.proxies_connected.dec();
        if let Some((key, owner)) = self.registration.take() {
            self.registrar.disconnected(key, owner);
        }
    }
}
