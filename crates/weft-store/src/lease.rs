//! [`LeaseKeeper`]: keeps a lease alive from a background task for as long as the
//! keeper is held — the control plane holds one per connected proxy (or one per
//! replica for all of its registry entries) and drops it on disconnect, letting the
//! lease expire and its keys disappear.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::{LeaseId, Store, StoreError};

/// Refreshes a lease every `interval` until dropped or until the lease is found gone.
#[derive(Debug)]
pub struct LeaseKeeper {
    lease: LeaseId,
    task: JoinHandle<()>,
}

impl LeaseKeeper {
    /// Starts refreshing `lease` on the current tokio runtime. Pick `interval` well
    /// under the lease's TTL (a third is customary). Transient errors are logged and
    /// retried at the next tick; a lease found expired ends the task.
    pub fn spawn(store: Arc<dyn Store>, lease: LeaseId, interval: Duration) -> Self {
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match store.keep_alive(lease).await {
                    Ok(()) => {}
                    Err(StoreError::LeaseNotFound { .. }) => {
                        tracing::warn!(%lease, "lease expired; its keys are gone");
                        return;
                    }
                    Err(error) => tracing::warn!(%lease, %error, "lease keep-alive failed"),
                }
            }
        });
        Self { lease, task }
    }

    /// The lease kept alive.
    pub fn lease(&self) -> LeaseId {
        self.lease
    }

    /// Whether the keeper has stopped because the lease expired.
    pub fn is_lost(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}
