//! Root rotation in three steps, each refused while it could fail a request:
//!
//! 1. **prepare**: a new root (made here, or the operator's) joins the trust bundle;
//!    the current signer keeps signing. Sidecars fetch the bundle every
//!    `bundle_refresh`.
//! 2. **activate**: once every sidecar has had two refresh periods to fetch the new
//!    bundle, the new root signs. A sidecar whose certificate another root signed
//!    renews at its next refresh, so peers on both sides trust both roots meanwhile.
//! 3. **finish**: once every certificate the old signer issued has expired (one
//!    workload lifetime after activation), the bundle keeps the signing root alone.
//!
//! `force` skips the waits: for an operator who knows every workload is done.

use super::{new_root, supplied, Authority, CaError, CaPem, Pending, Stored};
use crate::proxies::unix_now;
use std::time::Duration;

/// A rotation step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// Add a new root to the bundle.
    Prepare,
    /// Let the new root sign.
    Activate,
    /// Drop every root but the signing one.
    Finish,
}

/// Why a step was refused.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// The step does not follow the last one.
    #[error("{0}")]
    OutOfOrder(&'static str),
    /// Too early: a request could fail.
    #[error("{why}; allowed from {at} (Unix seconds), or pass --force")]
    TooEarly {
        /// What is being waited for.
        why: &'static str,
        /// When the step becomes safe.
        at: u64,
    },
    /// The CA failed.
    #[error(transparent)]
    Ca(#[from] CaError),
}

impl Authority {
    /// When a prepared root (prepared at `prepared_at`) may sign: once every sidecar
    /// has had two refresh periods to fetch the bundle that holds it.
    pub(super) fn activate_from(&self, prepared_at: u64) -> u64 {
        prepared_at + 2 * self.bundle_refresh.as_secs()
    }

    /// When the roots but the signing one may go: once every certificate signed before
    /// `signing_since` has expired.
    pub(super) fn finish_from(&self, signing_since: u64) -> u64 {
        signing_since + self.workload_ttl.as_secs() + SKEW.as_secs()
    }
}

fn not_before(at: u64, why: &'static str, force: bool) -> Result<(), RotationError> {
    if !force && unix_now() < at {
        return Err(RotationError::TooEarly { why, at });
    }
    Ok(())
}

impl Authority {
    /// Runs one rotation step; `ca` supplies the new root for `prepare` (else one is
    /// made).
    pub async fn rotate(
        &self,
        step: Step,
        force: bool,
        ca: Option<&CaPem>,
    ) -> Result<(), RotationError> {
        let signer = self.current().await?;
        let mut next: Stored = signer.stored.clone();
        match step {
            Step::Prepare => {
                if next.pending.is_some() {
                    return Err(RotationError::OutOfOrder(
                        "a new root is already prepared: activate it first",
                    ));
                }
                let new = match ca {
                    Some(ca) => supplied(ca)?,
                    None => new_root(&self.trust_domain),
                };
                let root = new.root().to_string();
                if next.roots.contains(&root) {
                    return Err(RotationError::OutOfOrder(
                        "that root is already in the trust bundle",
                    ));
                }
                next.roots.push(root);
                next.pending = Some(Pending {
                    cert: new.cert,
                    key: new.key,
                    chain: new.chain,
                    prepared_at: unix_now(),
                });
            }
            Step::Activate => {
                let Some(pending) = next.pending.take() else {
                    return Err(RotationError::OutOfOrder(
                        "no new root is prepared: prepare one first",
                    ));
                };
                not_before(
                    self.activate_from(pending.prepared_at),
                    "sidecars may not have fetched the new trust bundle yet",
                    force,
                )?;
                next.cert = pending.cert;
                next.key = pending.key;
                next.chain = pending.chain;
                next.signing_since = unix_now();
            }
            Step::Finish => {
                if next.pending.is_some() {
                    return Err(RotationError::OutOfOrder(
                        "a new root is prepared but not signing: activate it first",
                    ));
                }
                not_before(
                    self.finish_from(next.signing_since),
                    "certificates the previous root signed may still be in use",
                    force,
                )?;
                let root = next.root().to_string();
                next.roots.retain(|r| *r == root);
            }
        }
        self.save(&next, Some(signer.revision)).await?;
        tracing::info!(?step, force, "CA rotation step done");
        Ok(())
    }
}

/// Slack for a signing in flight at activation.
const SKEW: Duration = Duration::from_secs(5);
