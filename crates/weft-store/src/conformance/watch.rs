//! Conformance checks of watches: replay, live follow, transactions, compaction.

use std::sync::Arc;

use super::{delete_event, expect_compacted, get, next_event, put, put_event, revision};
use crate::{Store, StoreError, Txn};

/// A watch replays the history after its start revision, then follows live changes,
/// each exactly once and only under its prefix.
pub async fn watch_replays_history_then_follows(store: Arc<dyn Store>) {
    let start = revision(&store).await;
    let r1 = put(&store, "/w/a", b"1").await;
    put(&store, "/other/x", b"x").await;
    let r2 = put(&store, "/w/b", b"2").await;
    let r3 = store
        .delete("/w/a")
        .await
        .expect("delete")
        .expect("existed");

    let mut from_start = store.watch("/w/", start).await.expect("watch");
    assert_eq!(
        next_event(&mut from_start).await,
        put_event("/w/a", b"1", r1)
    );
    assert_eq!(
        next_event(&mut from_start).await,
        put_event("/w/b", b"2", r2)
    );
    assert_eq!(next_event(&mut from_start).await, delete_event("/w/a", r3));

    let r4 = put(&store, "/w/c", b"3").await;
    put(&store, "/other/y", b"y").await;
    let r5 = put(&store, "/w/b", b"4").await;
    assert_eq!(
        next_event(&mut from_start).await,
        put_event("/w/c", b"3", r4)
    );
    assert_eq!(
        next_event(&mut from_start).await,
        put_event("/w/b", b"4", r5)
    );

    let mut from_middle = store.watch("/w/", r2).await.expect("watch");
    assert_eq!(next_event(&mut from_middle).await, delete_event("/w/a", r3));
    assert_eq!(
        next_event(&mut from_middle).await,
        put_event("/w/c", b"3", r4)
    );
    assert_eq!(
        next_event(&mut from_middle).await,
        put_event("/w/b", b"4", r5)
    );

    let mut everything = store.watch("", r5).await.expect("watch all");
    // A sentinel: the next event of every watch is this one, so none saw extras.
    let r6 = put(&store, "/w/sentinel", b"end").await;
    for watch in [&mut from_start, &mut from_middle, &mut everything] {
        assert_eq!(
            next_event(watch).await,
            put_event("/w/sentinel", b"end", r6)
        );
    }
}

/// A transaction's changes arrive together, at one revision, in operation order.
pub async fn watch_delivers_transactions_at_one_revision(store: Arc<dyn Store>) {
    put(&store, "/wt/gone", b"0").await;
    let mut watch = store
        .watch("/wt/", revision(&store).await)
        .await
        .expect("watch");
    let txn = Txn::new()
        .put("/wt/a", "1")
        .delete("/wt/gone")
        .put("/wt/b", "2");
    let applied = store.txn(txn).await.expect("txn");
    assert_eq!(
        next_event(&mut watch).await,
        put_event("/wt/a", b"1", applied)
    );
    assert_eq!(
        next_event(&mut watch).await,
        delete_event("/wt/gone", applied)
    );
    assert_eq!(
        next_event(&mut watch).await,
        put_event("/wt/b", b"2", applied)
    );
}

/// After `compact(r)`, watching from below `r` fails with `Compacted`; from `r` on works.
pub async fn watch_from_compacted_revision_fails(store: Arc<dyn Store>) {
    let r1 = put(&store, "/k/a", b"1").await;
    let r2 = put(&store, "/k/a", b"2").await;
    let r3 = put(&store, "/k/a", b"3").await;
    store.compact(r2).await.expect("compact");
    store
        .compact(r2)
        .await
        .expect("compacting again is a no-op");
    store
        .compact(r1)
        .await
        .expect("compacting below is a no-op");
    let future = revision(&store).await + 100;
    assert!(matches!(
        store.compact(future).await,
        Err(StoreError::FutureRevision { revision }) if revision == future
    ));
    expect_compacted(&store, "/k/", r1).await;
    expect_compacted(&store, "/k/", 0).await;
    let mut watch = store
        .watch("/k/", r2)
        .await
        .expect("watch from the compaction point");
    assert_eq!(next_event(&mut watch).await, put_event("/k/a", b"3", r3));
    assert_eq!(
        get(&store, "/k/a").await.map(|v| v.value),
        Some(b"3".to_vec())
    );
}
