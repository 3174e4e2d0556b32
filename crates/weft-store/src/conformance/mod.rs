//! The conformance suite: the [`Store`] contract as executable checks, written once and
//! run against every backend (tikv's `engine_traits_tests` pattern). Each check takes a
//! fresh, empty store and panics with a message on the first deviation.
//!
//! A backend's test file names a fixture — an async fn returning the store and a guard
//! kept alive for the test (a temp dir, a server process) — and expands
//! [`conformance_tests!`](crate::conformance_tests) into one `#[tokio::test]` per check:
//!
//! ```ignore
//! async fn fixture() -> (Arc<dyn Store>, tempfile::TempDir) { ... }
//! weft_store::conformance_tests!(fixture);
//! ```

mod kv;
mod lease;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use crate::{Event, LeaseId, Revision, Store, StoreError, Versioned, WatchStream};

pub use kv::{
    compare_and_swap, concurrent_writers, list_by_prefix, put_get_delete, revisions_increase,
    transactions_are_all_or_nothing,
};
pub use lease::{keep_alive_extends_lease, lease_expiry_deletes_keys, leases_bind_keys};
pub use watch::{
    watch_delivers_transactions_at_one_revision, watch_from_compacted_revision_fails,
    watch_replays_history_then_follows,
};

/// How long a check waits for an expected watch event.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Expands to one `#[tokio::test]` per conformance check, each calling `$fixture().await`
/// for a fresh `(Arc<dyn Store>, guard)`.
#[macro_export]
macro_rules! conformance_tests {
    ($fixture:path) => {
        $crate::conformance_tests!(@each $fixture;
            put_get_delete,
            list_by_prefix,
            revisions_increase,
            compare_and_swap,
            transactions_are_all_or_nothing,
            watch_replays_history_then_follows,
            watch_delivers_transactions_at_one_revision,
            watch_from_compacted_revision_fails,
            leases_bind_keys,
            lease_expiry_deletes_keys,
            keep_alive_extends_lease,
            concurrent_writers,
        );
    };
    (@each $fixture:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (store, _guard) = $fixture().await;
                $crate::conformance::$check(store).await;
            }
        )*
    };
}

/// The next event of `watch`; panics if it fails, ends, or is silent for
/// [`EVENT_TIMEOUT`].
pub async fn next_event(watch: &mut WatchStream) -> Event {
    match tokio::time::timeout(EVENT_TIMEOUT, watch.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(error))) => panic!("watch failed: {error}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within {EVENT_TIMEOUT:?}"),
    }
}

pub(crate) fn put_event(key: &str, value: &[u8], revision: Revision) -> Event {
    Event::Put {
        key: key.to_owned(),
        value: value.to_vec(),
        revision,
    }
}

pub(crate) fn delete_event(key: &str, revision: Revision) -> Event {
    Event::Delete {
        key: key.to_owned(),
        revision,
    }
}

pub(crate) async fn get(store: &Arc<dyn Store>, key: &str) -> Option<Versioned> {
    store.get(key).await.expect("get")
}

pub(crate) async fn put(store: &Arc<dyn Store>, key: &str, value: &[u8]) -> Revision {
    store.put(key, value.to_vec()).await.expect("put")
}

pub(crate) async fn revision(store: &Arc<dyn Store>) -> Revision {
    store.revision().await.expect("revision")
}

#[track_caller]
pub(crate) fn assert_conflict<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    key: &str,
    expected: Revision,
    actual: Revision,
) {
    match result {
        Err(StoreError::Conflict {
            key: k,
            expected: e,
            actual: a,
        }) => assert_eq!(
            (k.as_str(), e, a),
            (key, expected, actual),
            "conflict fields"
        ),
        other => panic!("expected a conflict on {key}, got {other:?}"),
    }
}

#[track_caller]
pub(crate) fn assert_lease_not_found<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    lease: LeaseId,
) {
    match result {
        Err(StoreError::LeaseNotFound { lease: l }) => assert_eq!(l, lease),
        other => panic!("expected lease {lease} not found, got {other:?}"),
    }
}

/// Asserts that watching `prefix` from `from` reports [`StoreError::Compacted`]
/// (from `watch` itself, or as the stream's first item).
pub async fn expect_compacted(store: &Arc<dyn Store>, prefix: &str, from: Revision) {
    match store.watch(prefix, from).await {
        Err(StoreError::Compacted {
            prefix: p,
            revision,
        }) => assert_eq!((p.as_str(), revision), (prefix, from)),
        Err(other) => panic!("expected Compacted watching from {from}, got {other}"),
        Ok(mut watch) => match tokio::time::timeout(EVENT_TIMEOUT, watch.next()).await {
            Ok(Some(Err(StoreError::Compacted { .. }))) => {}
            other => panic!("expected Compacted watching from {from}, got {other:?}"),
        },
    }
}
