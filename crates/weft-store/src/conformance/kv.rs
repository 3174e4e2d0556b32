//! Conformance checks of reads, writes, revisions, compare-and-swap, transactions and
//! concurrent writers.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::{assert_conflict, assert_lease_not_found, get, next_event, put, revision};
use crate::{Revision, Store, StoreError, Txn, Versioned};

/// Put, get, overwrite and delete one key; binary values; empty keys refused.
pub async fn put_get_delete(store: Arc<dyn Store>) {
    assert_eq!(get(&store, "/c/a").await, None);
    let first = put(&store, "/c/a", b"one").await;
    assert_eq!(
        get(&store, "/c/a").await,
        Some(Versioned {
            value: b"one".to_vec(),
            mod_revision: first
        })
    );
    let second = put(&store, "/c/a", &[0, 0xff, b'\n']).await;
    assert!(second > first, "overwrite takes a new revision");
    assert_eq!(
        get(&store, "/c/a").await,
        Some(Versioned {
            value: vec![0, 0xff, b'\n'],
            mod_revision: second
        })
    );
    put(&store, "/c/empty", b"").await;
    assert_eq!(
        get(&store, "/c/empty").await.map(|v| v.value),
        Some(Vec::new())
    );

    let deleted = store.delete("/c/a").await.expect("delete");
    assert!(
        deleted.is_some_and(|revision| revision > second),
        "{deleted:?}"
    );
    assert_eq!(get(&store, "/c/a").await, None);
    assert_eq!(store.delete("/c/a").await.expect("delete again"), None);

    assert!(matches!(
        store.get("").await,
        Err(StoreError::InvalidKey { .. })
    ));
    assert!(matches!(
        store.put("", b"x".to_vec()).await,
        Err(StoreError::InvalidKey { .. })
    ));
    assert!(matches!(
        store.delete("").await,
        Err(StoreError::InvalidKey { .. })
    ));
}

/// Listing returns exactly the keys under a prefix, sorted, with their revisions, as
/// of the store revision it reports — also past one page of results.
pub async fn list_by_prefix(store: Arc<dyn Store>) {
    let mut written = Vec::new();
    for key in ["/l/a/1", "/l/a/2", "/l/a/10", "/l/ab", "/l/b/1"] {
        written.push((key, put(&store, key, key.as_bytes()).await));
    }
    let listing = store.list("/l/a/").await.expect("list");
    let keys: Vec<&str> = listing.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/l/a/1", "/l/a/10", "/l/a/2"]);
    for item in &listing.items {
        assert_eq!(item.value, item.key.as_bytes());
        let (_, revision) = written
            .iter()
            .find(|(k, _)| *k == item.key)
            .expect("written");
        assert_eq!(item.mod_revision, *revision, "{}", item.key);
    }
    assert_eq!(listing.revision, revision(&store).await);
    assert_eq!(store.list("/l/").await.expect("list").items.len(), 5);
    assert_eq!(store.list("").await.expect("list all").items.len(), 5);
    let none = store.list("/nothing/").await.expect("list none");
    assert!(none.items.is_empty());
    assert_eq!(none.revision, listing.revision);

    // More keys than one etcd page (1000), written 100 per transaction.
    for batch in 0..12 {
        let mut txn = Txn::new();
        for i in 0..100 {
            txn = txn.put(format!("/l/many/{:05}", batch * 100 + i), vec![1]);
        }
        store.txn(txn).await.expect("txn");
    }
    let many = store.list("/l/many/").await.expect("list many");
    assert_eq!(many.items.len(), 1200);
    assert!(many.items.windows(2).all(|w| w[0].key < w[1].key), "sorted");
}

/// One store-wide counter: every change takes a higher revision, no-ops take none.
pub async fn revisions_increase(store: Arc<dyn Store>) {
    let start = revision(&store).await;
    let a = put(&store, "/r/a", b"1").await;
    let b = put(&store, "/r/b", b"1").await;
    assert!(start < a && a < b, "{start} < {a} < {b}");
    assert_eq!(revision(&store).await, b);
    assert_eq!(store.delete("/r/missing").await.expect("delete"), None);
    assert_eq!(
        revision(&store).await,
        b,
        "deleting nothing takes no revision"
    );
    let deleted = store
        .delete("/r/a")
        .await
        .expect("delete")
        .expect("existed");
    assert!(deleted > b);
    let again = put(&store, "/r/b", b"2").await;
    assert!(again > deleted);
    assert_eq!(
        get(&store, "/r/b").await.map(|v| v.mod_revision),
        Some(again)
    );
    assert_eq!(revision(&store).await, again);
}

/// `put_if` / `delete_if`: success on the expected revision, conflicts naming the
/// actual one otherwise; 0 means "must not exist".
pub async fn compare_and_swap(store: Arc<dyn Store>) {
    let key = "/cas/k";
    let created = store.put_if(key, b"1".to_vec(), 0).await.expect("create");
    assert_conflict(store.put_if(key, b"x".to_vec(), 0).await, key, 0, created);
    let updated = store
        .put_if(key, b"2".to_vec(), created)
        .await
        .expect("update");
    assert!(updated > created);
    assert_conflict(
        store.put_if(key, b"x".to_vec(), created).await,
        key,
        created,
        updated,
    );
    assert_eq!(get(&store, key).await.map(|v| v.value), Some(b"2".to_vec()));
    assert_conflict(store.delete_if(key, created).await, key, created, updated);
    let deleted = store.delete_if(key, updated).await.expect("delete_if");
    assert!(deleted > updated);
    assert_eq!(get(&store, key).await, None);
    store
        .delete_if(key, 0)
        .await
        .expect("absent key, expected absent");
    assert_eq!(
        revision(&store).await,
        deleted,
        "a no-op delete_if takes no revision"
    );
    assert_conflict(
        store.put_if(key, b"3".to_vec(), updated).await,
        key,
        updated,
        0,
    );
}

/// A transaction applies all its writes at one revision, or none of them.
pub async fn transactions_are_all_or_nothing(store: Arc<dyn Store>) {
    let base = put(&store, "/t/existing", b"old").await;
    let applied = store
        .txn(
            Txn::new()
                .check("/t/existing", base)
                .check("/t/new1", 0)
                .put("/t/new1", "a")
                .put("/t/new2", "b")
                .delete("/t/existing"),
        )
        .await
        .expect("txn");
    assert!(applied > base);
    assert_eq!(
        get(&store, "/t/new1").await.map(|v| v.mod_revision),
        Some(applied)
    );
    assert_eq!(
        get(&store, "/t/new2").await.map(|v| v.mod_revision),
        Some(applied)
    );
    assert_eq!(get(&store, "/t/existing").await, None);
    assert_eq!(
        revision(&store).await,
        applied,
        "one revision for the whole txn"
    );

    // A failed check: nothing is written, and the conflict names the key.
    let failed = Txn::new()
        .check("/t/new1", applied)
        .check("/t/new2", base)
        .put("/t/new3", "c")
        .delete("/t/new1");
    assert_conflict(store.txn(failed).await, "/t/new2", base, applied);
    assert_eq!(get(&store, "/t/new3").await, None);
    assert!(get(&store, "/t/new1").await.is_some());
    assert_eq!(revision(&store).await, applied);

    // A key written twice is refused before anything is written.
    let twice = Txn::new().put("/t/new4", "d").put("/t/new4", "e");
    assert!(matches!(
        store.txn(twice).await,
        Err(StoreError::InvalidKey { .. })
    ));
    assert_eq!(get(&store, "/t/new4").await, None);

    // A put bound to a lease that is gone fails the whole transaction.
    let lease = store
        .grant_lease(Duration::from_secs(30))
        .await
        .expect("grant");
    store.revoke(lease).await.expect("revoke");
    let dead_lease = Txn::new()
        .put("/t/new5", "f")
        .put_with_lease("/t/new6", "g", lease);
    assert_lease_not_found(store.txn(dead_lease).await, lease);
    assert_eq!(get(&store, "/t/new5").await, None);
    assert_eq!(revision(&store).await, applied);

    // Nothing to change: succeeds at the current revision.
    let noop = store
        .txn(Txn::new().delete("/t/missing"))
        .await
        .expect("noop");
    assert_eq!(noop, applied);
}

/// Many writers at once: every write gets its own revision, compare-and-swap
/// increments are never lost, and a watcher sees every change once, in order.
pub async fn concurrent_writers(store: Arc<dyn Store>) {
    const WRITERS: usize = 8;
    const PUTS: usize = 25;
    const INCREMENTS: usize = 5;
    let start = revision(&store).await;
    let mut watch = store.watch("/cw/", start).await.expect("watch");
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut revisions = Vec::new();
            for i in 0..PUTS {
                let key = format!("/cw/w{writer}/{i:02}");
                revisions.push(
                    store
                        .put(&key, key.clone().into_bytes())
                        .await
                        .expect("put"),
                );
                if i % (PUTS / INCREMENTS) == 0 {
                    revisions.push(increment(&store, "/cw/counter").await);
                }
            }
            revisions
        }));
    }
    let mut revisions = Vec::new();
    for task in tasks {
        revisions.extend(task.await.expect("writer task"));
    }
    let total = WRITERS * (PUTS + INCREMENTS);
    let unique: HashSet<Revision> = revisions.iter().copied().collect();
    assert_eq!(unique.len(), total, "every write has its own revision");
    let counter = get(&store, "/cw/counter").await.expect("counter");
    assert_eq!(
        counter.value,
        (WRITERS * INCREMENTS).to_string().into_bytes()
    );
    let listing = store.list("/cw/w").await.expect("list");
    assert_eq!(listing.items.len(), WRITERS * PUTS);

    let mut seen = Vec::with_capacity(total);
    for _ in 0..total {
        seen.push(next_event(&mut watch).await.revision());
    }
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "events in revision order"
    );
    assert_eq!(seen.iter().copied().collect::<HashSet<_>>(), unique);
    let sentinel = put(&store, "/cw/sentinel", b"end").await;
    assert_eq!(
        next_event(&mut watch).await.revision(),
        sentinel,
        "no extra events"
    );
}

/// Adds one to the decimal counter at `key` with compare-and-swap, retrying conflicts.
async fn increment(store: &Arc<dyn Store>, key: &str) -> Revision {
    loop {
        let current = store.get(key).await.expect("get counter");
        let (value, expected) = match current {
            Some(v) => (
                String::from_utf8_lossy(&v.value)
                    .parse::<u64>()
                    .expect("counter"),
                v.mod_revision,
            ),
            None => (0, 0),
        };
        match store
            .put_if(key, (value + 1).to_string().into_bytes(), expected)
            .await
        {
            Ok(revision) => return revision,
            Err(StoreError::Conflict { .. }) => continue,
            Err(error) => panic!("increment failed: {error}"),
        }
    }
}
