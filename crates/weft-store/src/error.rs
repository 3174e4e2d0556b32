//! [`StoreError`]: what any store call can fail with. The outcomes callers act on
//! (conflict, compaction, a lost lease) are the same variants for every backend; the
//! rest wraps the backend's own error, which names the file or endpoint at fault.

use crate::{LeaseId, Revision};

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A compare-and-swap or transaction check did not hold.
    #[error(
        "conflict on key {key:?}: expected mod revision {expected}, found {actual} (0 = absent)"
    )]
    Conflict {
        /// The key whose check failed.
        key: String,
        /// The mod revision the caller expected (0 = must not exist).
        expected: Revision,
        /// The key's actual mod revision (0 = absent).
        actual: Revision,
    },
    /// The history a watch asked for has been compacted away: list again, then watch
    /// from the listing's revision.
    #[error("cannot watch {prefix:?} from revision {revision}: that history has been compacted")]
    Compacted {
        /// The watched prefix.
        prefix: String,
        /// The revision the watch asked to start after.
        revision: Revision,
    },
    /// A revision beyond the store's current one was given.
    #[error("revision {revision} is in the future")]
    FutureRevision {
        /// The revision given.
        revision: Revision,
    },
    /// The lease has expired, was revoked, or never existed.
    #[error("lease {lease} not found (expired or revoked)")]
    LeaseNotFound {
        /// The lease asked for.
        lease: LeaseId,
    },
    /// The key cannot be stored.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The embedded store failed (boxed: redb's errors are large).
    #[error(transparent)]
    Redb(#[from] Box<crate::redb::RedbError>),
    /// The etcd store failed (boxed: gRPC statuses are large).
    #[error(transparent)]
    Etcd(#[from] Box<crate::etcd::EtcdError>),
}

impl From<crate::redb::RedbError> for StoreError {
    fn from(error: crate::redb::RedbError) -> Self {
        StoreError::Redb(Box::new(error))
    }
}

impl From<crate::etcd::EtcdError> for StoreError {
    fn from(error: crate::etcd::EtcdError) -> Self {
        StoreError::Etcd(Box::new(error))
    }
}
