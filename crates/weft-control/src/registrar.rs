//! Keeps the registry in the store: a sidecar's instance is written when its xDS stream
//! opens, its health set by what its sidecar reports, and it is removed when the
//! sidecar goes away.
//!
//! Registrations are plain keys, not leased ones, so that a control-plane restart does
//! not empty every service: each names its owner (`{replica}#{stream}`), every replica
//! announces itself under [`REPLICAS`] with a lease, and a registration whose owner is
//! no longer announced is an orphan. Orphans keep serving for a grace period, long
//! enough for their sidecars to reconnect (to this or another replica) and claim them
//! again, health included; after it they are removed. A sidecar that disconnects from a
//! live replica is removed after a shorter grace, unless it came back meanwhile.

use crate::metrics::Metrics;
use crate::registry::{Instance, PREFIX, REPLICAS};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use weft_store::{LeaseKeeper, Store, StoreError};

/// Timings of the registry.
#[derive(Debug, Clone, Copy)]
pub struct Graces {
    /// A disconnected sidecar's registration lives this long.
    pub disconnect: Duration,
    /// An orphan (its replica is gone) lives this long.
    pub orphan: Duration,
    /// TTL of the replica's announcement.
    pub replica_ttl: Duration,
}

impl Default for Graces {
    fn default() -> Self {
        Graces {
            disconnect: Duration::from_secs(5),
            orphan: Duration::from_secs(30),
            replica_ttl: Duration::from_secs(10),
        }
    }
}

/// Why a health report was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// No such instance is registered.
    #[error("no instance {0} is registered")]
    NotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Writes registrations for one control-plane replica.
pub struct Registrar {
    store: Arc<dyn Store>,
    replica: String,
    graces: Graces,
    metrics: Arc<Metrics>,
    /// Set at shutdown: streams that end then leave their registrations to the orphan
    /// grace, so their sidecars can move to another replica without dropping out.
    stopping: AtomicBool,
}

impl Registrar {
    /// A registrar for replica `replica`.
    pub fn new(
        store: Arc<dyn Store>,
        replica: String,
        graces: Graces,
        metrics: Arc<Metrics>,
    ) -> Arc<Registrar> {
        Arc::new(Registrar {
            store,
            replica,
            graces,
            metrics,
            stopping: AtomicBool::new(false),
        })
    }

    /// The replica is shutting down.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// This replica's id.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// The owner string for one of this replica's streams.
    pub fn owner(&self, stream_id: u64) -> String {
        format!("{}#{stream_id}", self.replica)
    }

    /// Writes `instance` (owned by one of this replica's streams). A registration of the
    /// same workload at the same address and ports keeps its health: a sidecar that
    /// reconnects, here or to another replica, does not drop out of its service.
    pub async fn register(&self, mut instance: Instance) -> Result<(), StoreError> {
        let key = instance.key();
        for _ in 0..5 {
            let existing = self.store.get(&key).await;
            self.metrics.store_op("get", &existing);
            let existing = existing?;
            let expected = existing.as_ref().map_or(0, |v| v.mod_revision);
            if let Some(old) = existing
                .as_ref()
                .and_then(|v| serde_json::from_slice::<Instance>(&v.value).ok())
            {
                if old.address == instance.address && old.ports == instance.ports {
                    instance.healthy = old.healthy;
                }
            }
            let value = serde_json::to_vec(&instance).unwrap_or_default();
            let put = self.store.put_if(&key, value, expected).await;
            self.metrics.store_op("put", &put);
            match put {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict {
            key,
            expected: 0,
            actual: 0,
        })
    }

    /// The stream owning `key` ended: remove the registration after the disconnect
    /// grace unless another stream has claimed it since.
    pub fn disconnected(self: &Arc<Self>, key: String, owner: String) {
        if self.stopping.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let this = self.clone();
        runtime.spawn(async move {
            tokio::time::sleep(this.graces.disconnect).await;
            if let Err(e) = this.remove_if_owned(&key, |i| i.owner == owner).await {
                tracing::warn!(key, error = %e, "cannot remove a disconnected instance");
            }
        });
    }

    async fn remove_if_owned(
        &self,
        key: &str,
        owned: impl Fn(&Instance) -> bool,
    ) -> Result<bool, StoreError> {
        let current = self.store.get(key).await;
        self.metrics.store_op("get", &current);
        let Some(current) = current? else {
            return Ok(false);
        };
        match serde_json::from_slice::<Instance>(&current.value) {
            Ok(i) if !owned(&i) => return Ok(false),
            _ => {}
        }
        let deleted = self.store.delete_if(key, current.mod_revision).await;
        self.metrics.store_op("delete", &deleted);
        match deleted {
            Ok(_) => {
                tracing::info!(key, "instance removed");
                Ok(true)
            }
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Records what an instance's sidecar reports about its application's health.
    pub async fn set_health(
        &self,
        namespace: &str,
        service: &str,
        id: &str,
        healthy: bool,
    ) -> Result<(), HealthError> {
        let key = crate::registry::instance_key(namespace, service, id);
        loop {
            let current = self.store.get(&key).await;
            self.metrics.store_op("get", &current);
            let Some(current) = current? else {
                return Err(HealthError::NotFound(format!("{namespace}/{service}/{id}")));
            };
            let mut instance: Instance = serde_json::from_slice(&current.value)
                .map_err(|_| HealthError::NotFound(format!("{namespace}/{service}/{id}")))?;
            if instance.healthy == healthy {
                return Ok(());
            }
            instance.healthy = healthy;
            let value = serde_json::to_vec(&instance).unwrap_or_default();
            let put = self.store.put_if(&key, value, current.mod_revision).await;
            self.metrics.store_op("put", &put);
            match put {
                Ok(_) => {
                    tracing::info!(key, healthy, "instance health changed");
                    return Ok(());
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Announces this replica (a key bound to a lease kept alive) until `stop` fires,
    /// then revokes the lease so other replicas start the orphans' grace at once.
    pub async fn announce(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let key = format!("{REPLICAS}{}", self.replica);
        loop {
            let keeper = match self.announce_once(&key).await {
                Ok(k) => k,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot announce this replica; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = stop.changed() => return,
                    }
                }
            };
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stop.changed() => {
                        let lease = keeper.lease();
                        drop(keeper);
                        let _ = self.store.revoke(lease).await;
                        return;
                    }
                }
                if keeper.is_lost() {
                    tracing::warn!("this replica's lease was lost; announcing again");
                    break;
                }
            }
        }
    }

    async fn announce_once(&self, key: &str) -> Result<LeaseKeeper, StoreError> {
        let lease = self.store.grant_lease(self.graces.replica_ttl).await?;
        let put = self
            .store
            .put_with_lease(key, self.replica.as_bytes().to_vec(), lease)
            .await;
        self.metrics.store_op("put", &put);
        put?;
        Ok(LeaseKeeper::spawn(
            self.store.clone(),
            lease,
            self.graces.replica_ttl / 3,
        ))
    }

    /// Removes orphans whose grace has run out, checking every `interval` until `stop`.
    pub async fn sweep_orphans(
        self: Arc<Self>,
        interval: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        // When each orphan was first seen as one (by this replica).
        let mut orphaned_since: BTreeMap<String, Instant> = BTreeMap::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.changed() => return,
            }
            if let Err(e) = self.sweep_once(&mut orphaned_since).await {
                tracing::warn!(error = %e, "orphan sweep failed");
            }
        }
    }

    async fn sweep_once(
        &self,
        orphaned_since: &mut BTreeMap<String, Instant>,
    ) -> Result<(), StoreError> {
        let replicas = self.store.list(REPLICAS).await;
        self.metrics.store_op("list", &replicas);
        let live: BTreeSet<String> = replicas?
            .items
            .into_iter()
            .filter_map(|kv| kv.key.strip_prefix(REPLICAS).map(str::to_string))
            .collect();
        let registry = self.store.list(PREFIX).await;
        self.metrics.store_op("list", &registry);
        let now = Instant::now();
        let mut still = BTreeSet::new();
        for kv in registry?.items {
            let Ok(instance) = serde_json::from_slice::<Instance>(&kv.value) else {
                continue;
            };
            let Some(owner) = instance.owner_replica() else {
                continue;
            };
            if live.contains(owner) {
                continue;
            }
            still.insert(kv.key.clone());
            let since = *orphaned_since.entry(kv.key.clone()).or_insert(now);
            if now.duration_since(since) >= self.graces.orphan {
                let owner = instance.owner.clone();
                if self.remove_if_owned(&kv.key, |i| i.owner == owner).await? {
                    tracing::info!(key = kv.key, "orphaned instance removed");
                }
            }
        }
        orphaned_since.retain(|k, _| still.contains(k));
        Ok(())
    }
}
