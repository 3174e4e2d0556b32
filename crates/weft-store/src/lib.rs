//! Weft's control-plane storage: one [`Store`] trait — a key-value store with a single
//! store-wide revision counter, compare-and-swap, all-or-nothing transactions, watches
//! that replay history from a revision, and leases for ephemeral keys — and two
//! backends that pass one conformance suite (`conformance`, behind the `testing`
//! feature):
//!
//! - [`redb::RedbStore`], the default: an embedded, crash-safe file for one control
//!   plane on one machine.
//! - [`etcd::EtcdStore`]: etcd v3 over gRPC, for several control-plane replicas sharing
//!   one etcd cluster.
//!
//! Keys are UTF-8 paths such as `/weft/resources/VirtualService/default/reviews`; values
//! are bytes. The model is etcd's (`server/storage/mvcc/kv.go`): every change gets the
//! next store-wide revision (all changes of one transaction share one), a key remembers
//! the revision that last modified it (its *mod revision*), and a watch from revision
//! `r` delivers every change after `r` exactly once, in revision order, or reports
//! [`StoreError::Compacted`] when that history is gone.
//!
//! Dependencies: redb 2.6 (3.x and 4.x need a newer rustc than the workspace's
//! `rust-version`; 2.6 already writes redb's v3 file format) and, for etcd, the
//! workspace's own tonic 0.14 + prost with hand-written etcd messages rather than the
//! `etcd-client` crate, which needs `protoc` at build time and tonic 0.13 (see
//! [`etcd`]).
//!
//! The usual reader lists a prefix, then watches it from the listing's revision:
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn weft_store::Store>) -> Result<(), weft_store::StoreError> {
//! use futures_util::StreamExt;
//! let listing = store.list("/weft/resources/").await?;
//! let mut changes = store.watch("/weft/resources/", listing.revision).await?;
//! while let Some(event) = changes.next().await {
//!     let event = event?; // Compacted: list again and re-watch.
//!     println!("{} at {}", event.key(), event.revision());
//! }
//! # Ok(()) }
//! ```

pub mod error;
pub mod etcd;
pub mod lease;
pub mod redb;
pub mod txn;

#[cfg(feature = "testing")]
pub mod conformance;
#[cfg(feature = "testing")]
pub mod etcd_server;

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;

pub use error::StoreError;
pub use lease::LeaseKeeper;
pub use txn::{Check, Txn, TxnOp};

/// A store-wide revision. Every committed change takes the next one; `0` is "before
/// anything" and, as an expected mod revision, "the key must not exist".
pub type Revision = u64;

/// A lease: keys put with it are deleted when it expires or is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub i64);

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// A value and the revision that last modified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The stored bytes.
    pub value: Vec<u8>,
    /// The revision of the put that wrote them.
    pub mod_revision: Revision,
}

/// One key of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The stored bytes.
    pub value: Vec<u8>,
    /// The revision of the put that wrote them.
    pub mod_revision: Revision,
}

/// The keys under a prefix, in key order, as of one store revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The keys and values, sorted by key.
    pub items: Vec<KeyValue>,
    /// The store revision the listing reflects; watch from it to follow on.
    pub revision: Revision,
}

/// One change delivered by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `key` now holds `value`, written at `revision`.
    Put {
        /// The key written.
        key: String,
        /// Its new value.
        value: Vec<u8>,
        /// The revision of the write.
        revision: Revision,
    },
    /// `key` was deleted at `revision` (explicitly, or because its lease ended).
    Delete {
        /// The key deleted.
        key: String,
        /// The revision of the deletion.
        revision: Revision,
    },
}

impl Event {
    /// The key the event is about.
    pub fn key(&self) -> &str {
        match self {
            Event::Put { key, .. } | Event::Delete { key, .. } => key,
        }
    }

    /// The revision of the change.
    pub fn revision(&self) -> Revision {
        match self {
            Event::Put { revision, .. } | Event::Delete { revision, .. } => *revision,
        }
    }
}

/// The changes a watch delivers. It ends after yielding an error (the store closed, the
/// backend became unreachable, or — etcd only, when a compaction races the watch's
/// creation — [`StoreError::Compacted`]); the reader then lists and watches again.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event, StoreError>> + Send>>;

/// The control plane's storage.
///
/// The trait uses `async-trait` (boxed `Send` futures) rather than native `async fn` in
/// traits: the control plane holds its store as `Arc<dyn Store>` chosen at start-up
/// from configuration, and native async trait methods are not dyn-compatible. One
/// allocation per call is noise next to an fsync or a network round trip.
///
/// Semantics shared by every backend (checked by the `conformance` suite):
/// - Revisions are one store-wide counter that only grows. A change that changes
///   nothing (deleting a missing key) takes no revision.
/// - Keys must be non-empty ([`StoreError::InvalidKey`]).
/// - Lease TTLs are whole seconds, rounded up, at least one (etcd's granularity).
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// The value of `key` and its mod revision, if it exists.
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError>;

    /// Every key starting with `prefix` (`""` = all), in key order, with the store
    /// revision the listing reflects.
    async fn list(&self, prefix: &str) -> Result<Listing, StoreError>;

    /// The store's current revision.
    async fn revision(&self) -> Result<Revision, StoreError>;

    /// Writes `value` under `key` (detaching any lease); returns the write's revision.
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError>;

    /// Writes `value` under `key` bound to `lease`: the key is deleted when the lease
    /// expires or is revoked. [`StoreError::LeaseNotFound`] if the lease is gone.
    async fn put_with_lease(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: LeaseId,
    ) -> Result<Revision, StoreError>;

    /// Writes `value` only if `key`'s mod revision is `expected` (`0`: only if the key
    /// does not exist); otherwise [`StoreError::Conflict`] with the actual revision.
    async fn put_if(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
    ) -> Result<Revision, StoreError>;

    /// Deletes `key`; the deletion's revision, or `None` if there was no such key.
    async fn delete(&self, key: &str) -> Result<Option<Revision>, StoreError>;

    /// Deletes `key` only if its mod revision is `expected`, otherwise
    /// [`StoreError::Conflict`]. With `expected == 0` it succeeds, changing nothing,
    /// exactly when the key does not exist. Returns the store revision after it.
    async fn delete_if(&self, key: &str, expected: Revision) -> Result<Revision, StoreError>;

    /// Applies `txn` atomically: if every check holds, all its operations take effect
    /// at one revision (returned); otherwise none does and the first failed check is
    /// reported as [`StoreError::Conflict`].
    async fn txn(&self, txn: Txn) -> Result<Revision, StoreError>;

    /// Follows changes to keys starting with `prefix`: every change after
    /// `from_revision`, exactly once, in revision order, then live changes as they
    /// commit. [`StoreError::Compacted`] if that history has been discarded.
    async fn watch(&self, prefix: &str, from_revision: Revision)
        -> Result<WatchStream, StoreError>;

    /// Discards the change history up to and including `revision`: afterwards watches
    /// from a revision below it fail with [`StoreError::Compacted`]. Compacting an
    /// already compacted revision is a no-op; a future one is
    /// [`StoreError::FutureRevision`].
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;

    /// Creates a lease that lives `ttl` (see the TTL rounding above) unless kept alive.
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError>;

    /// Restarts `lease`'s TTL. [`StoreError::LeaseNotFound`] once it has expired.
    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError>;

    /// Ends `lease` now, deleting its keys. [`StoreError::LeaseNotFound`] if it is gone.
    async fn revoke(&self, lease: LeaseId) -> Result<(), StoreError>;
}

/// Checks that `key` is usable as a store key.
pub(crate) fn validate_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::InvalidKey {
            key: key.to_owned(),
            reason: "keys must not be empty",
        });
    }
    Ok(())
}

/// A lease TTL in whole seconds: rounded up, at least one.
pub(crate) fn ttl_seconds(ttl: Duration) -> u64 {
    let whole = ttl.as_secs();
    let rounded = if ttl.subsec_nanos() > 0 {
        whole.saturating_add(1)
    } else {
        whole
    };
    rounded.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        assert_eq!(ttl_seconds(Duration::ZERO), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(1)), 1);
        assert_eq!(ttl_seconds(Duration::from_secs(1)), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(ttl_seconds(Duration::from_secs(30)), 30);
    }

    #[test]
    fn empty_key_is_invalid() {
        assert!(validate_key("/a").is_ok());
        assert!(matches!(
            validate_key(""),
            Err(StoreError::InvalidKey { .. })
        ));
    }
}
