//! The mesh as this replica sees it: every applied resource and registered instance,
//! followed from the store (list, then watch from the listing's revision), and the
//! [`Snapshot`] translated from them. Bursts of changes are debounced into one
//! translation; each new snapshot wakes every xDS stream, which sends only what changed
//! for its proxy.

use crate::metrics::Metrics;
use crate::registry::{self, Instance};
use crate::resources;
use crate::translate::services::Probed;
use crate::translate::{MeshSettings, Snapshot};
use arc_swap::ArcSwap;
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use weft_model::{Resource, ResourceKey};
use weft_store::{Event, Revision, Store};

/// Everything under this prefix is the control plane's.
pub const ROOT: &str = "/weft/";

/// One consistent view: what the store held at `revision`, and its translation.
pub struct MeshState {
    /// The store revision this state reflects.
    pub revision: Revision,
    /// Applied resources, by key.
    pub resources: BTreeMap<ResourceKey, Arc<Resource>>,
    /// Registered instances, by store key.
    pub instances: BTreeMap<String, Arc<Instance>>,
    /// The translation.
    pub snapshot: Arc<Snapshot>,
    /// When the first change this state carries was seen (for push latency).
    pub changed_at: Instant,
}

/// How long to wait for a burst of changes to settle, and for how long at most.
#[derive(Debug, Clone, Copy)]
pub struct Debounce {
    /// Quiet time that ends a burst.
    pub quiet: Duration,
    /// A burst never delays a translation longer than this.
    pub max: Duration,
}

impl Default for Debounce {
    fn default() -> Self {
        Debounce {
            quiet: Duration::from_millis(100),
            max: Duration::from_secs(1),
        }
    }
}

/// The followed mesh.
pub struct Mesh {
    store: Arc<dyn Store>,
    state: ArcSwap<MeshState>,
    changes: Mutex<Option<watch::Sender<u64>>>,
    receiver: watch::Receiver<u64>,
    ready: AtomicBool,
    metrics: Arc<Metrics>,
    debounce: Debounce,
    settings: MeshSettings,
    /// Health of the Workloads the control plane probes.
    probed: Mutex<Probed>,
    /// Asks the follower to translate again (probe results changed).
    retranslate: Notify,
}

/// What the follower accumulates between translations.
#[derive(Default, Clone)]
struct Contents {
    resources: BTreeMap<ResourceKey, Arc<Resource>>,
    instances: BTreeMap<String, Arc<Instance>>,
    /// Stored keys that could not be read, so a later delete can forget them.
    unreadable: BTreeMap<String, String>,
}

impl Contents {
    fn apply(&mut self, event: &Event) {
        match event {
            Event::Put { key, value, .. } => self.put(key, value),
            Event::Delete { key, .. } => self.delete(key),
        }
    }

    fn put(&mut self, key: &str, value: &[u8]) {
        self.unreadable.remove(key);
        if key.starts_with(resources::PREFIX) {
            match resources::decode(key, value) {
                Ok(r) => {
                    self.resources.insert(r.key(), Arc::new(r));
                }
                Err(e) => {
                    tracing::warn!(key, error = %e, "stored resource ignored");
                    self.unreadable.insert(key.to_string(), e);
                }
            }
        } else if key.starts_with(registry::PREFIX) {
            match serde_json::from_slice::<Instance>(value) {
                Ok(i) => {
                    self.instances.insert(key.to_string(), Arc::new(i));
                }
                Err(e) => {
                    tracing::warn!(key, error = %e, "stored instance ignored");
                    self.unreadable.insert(key.to_string(), e.to_string());
                }
            }
        }
    }

    fn delete(&mut self, key: &str) {
        self.unreadable.remove(key);
        if let Some(rest) = key.strip_prefix(resources::PREFIX) {
            let mut parts = rest.splitn(3, '/');
            if let (Some(kind), Some(namespace), Some(name)) =
                (parts.next(), parts.next(), parts.next())
            {
                if let Some(kind) = weft_model::Kind::from_name(kind) {
                    self.resources.remove(&ResourceKey {
                        kind,
                        namespace: namespace.to_string(),
                        name: name.to_string(),
                    });
                }
            }
        } else {
            self.instances.remove(key);
        }
    }
}

impl Mesh {
    /// A mesh with nothing in it yet; [`Mesh::follow`] fills it.
    pub fn new(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        debounce: Debounce,
        settings: MeshSettings,
    ) -> Arc<Mesh> {
        let (tx, rx) = watch::channel(0);
        Arc::new(Mesh {
            store,
            state: ArcSwap::from_pointee(MeshState {
                revision: 0,
                resources: BTreeMap::new(),
                instances: BTreeMap::new(),
                snapshot: Arc::new(Snapshot::build(0, &[], &[])),
                changed_at: Instant::now(),
            }),
            changes: Mutex::new(Some(tx)),
            receiver: rx,
            ready: AtomicBool::new(false),
            metrics,
            debounce,
            settings,
            probed: Mutex::new(Probed::new()),
            retranslate: Notify::new(),
        })
    }

    /// The current state.
    pub fn state(&self) -> Arc<MeshState> {
        self.state.load_full()
    }

    /// Whether the first translation is done.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Changes whenever a new snapshot is published; ends when the mesh closes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.receiver.clone()
    }

    /// Ends every subscriber's change stream (xDS streams end with it).
    pub fn close(&self) {
        self.changes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    /// Records the Workloads' probe results and translates again if they changed.
    pub fn set_probed(&self, probed: Probed) {
        let mut current = self.probed.lock().unwrap_or_else(|e| e.into_inner());
        if *current != probed {
            *current = probed;
            self.retranslate.notify_one();
        }
    }

    /// Waits until the mesh reflects at least store revision `revision`.
    pub async fn wait_for(&self, revision: Revision, timeout: Duration) -> bool {
        let mut rx = self.changes();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.state.load().revision >= revision {
                return true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return self.state.load().revision >= revision,
            }
        }
    }

    /// Follows the store until `stop` fires: list, translate, then watch and translate
    /// each settled burst. A watch that fails (compaction, store restart) lists again.
    pub async fn follow(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let listing = tokio::select! {
                l = self.store.list(ROOT) => l,
                _ = stop.changed() => return,
            };
            self.metrics.store_op("list", &listing);
            let listing = match listing {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list the store; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            let mut contents = Contents::default();
            for kv in &listing.items {
                contents.put(&kv.key, &kv.value);
            }
            let mut revision = listing.revision;
            self.publish(&contents, revision, Instant::now()).await;
            let watch = self.store.watch(ROOT, revision).await;
            self.metrics.store_op("watch", &watch);
            let mut events = match watch {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch the store; listing again");
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            // One burst per iteration: the first event, then whatever follows it
            // until the burst settles.
            'watch: loop {
                let first = tokio::select! {
                    e = events.next() => e,
                    _ = self.retranslate.notified() => {
                        self.publish(&contents, revision, Instant::now()).await;
                        continue 'watch;
                    }
                    _ = stop.changed() => return,
                };
                let first_seen = Instant::now();
                let mut next = first;
                loop {
                    match next {
                        Some(Ok(event)) => {
                            revision = revision.max(event.revision());
                            contents.apply(&event);
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "store watch ended; listing again");
                            break 'watch;
                        }
                        None => {
                            tracing::warn!("store watch ended; listing again");
                            break 'watch;
                        }
                    }
                    let budget = self.debounce.max.saturating_sub(first_seen.elapsed());
                    let wait = self.debounce.quiet.min(budget);
                    match tokio::time::timeout(wait, events.next()).await {
                        Ok(e) => next = e,
                        Err(_) => break,
                    }
                }
                self.publish(&contents, revision, first_seen).await;
            }
        }
    }

    async fn publish(&self, contents: &Contents, revision: Revision, changed_at: Instant) {
        let resources: Vec<Resource> = contents
            .resources
            .values()
            .map(|r| Resource::clone(r))
            .collect();
        let instances: Vec<Arc<Instance>> = contents.instances.values().cloned().collect();
        let probed = self
            .probed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let settings = self.settings.clone();
        let started = Instant::now();
        let built = tokio::task::spawn_blocking(move || {
            Snapshot::build_probed(revision, &resources, &instances, &probed, &settings)
        })
        .await;
        let snapshot = match built {
            Ok(s) => s,
            Err(e) => {
                // A translation bug must not take the control plane down: keep serving
                // the last good snapshot.
                tracing::error!(error = %e, revision, "translation failed; keeping the last snapshot");
                return;
            }
        };
        self.metrics.snapshot_builds.inc();
        self.metrics
            .snapshot_build_seconds
            .observe(started.elapsed().as_secs_f64());
        for warning in &snapshot
            .diagnostics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .warnings
        {
            tracing::debug!(revision, "{warning}");
        }
        self.metrics.resources.set(contents.resources.len() as i64);
        self.metrics.instances.set(contents.instances.len() as i64);
        self.metrics
            .instances_healthy
            .set(contents.instances.values().filter(|i| i.healthy).count() as i64);
        self.state.store(Arc::new(MeshState {
            revision,
            resources: contents.resources.clone(),
            instances: contents.instances.clone(),
            snapshot: Arc::new(snapshot),
            changed_at,
        }));
        self.ready.store(true, Ordering::Release);
        if let Some(tx) = &*self.changes.lock().unwrap_or_else(|e| e.into_inner()) {
            tx.send_replace(revision);
        }
        tracing::debug!(
            revision,
            took_ms = started.elapsed().as_millis() as u64,
            "snapshot published"
        );
    }
}
