//! Conformance checks of leases: binding, revocation, expiry, keep-alive.

use std::sync::Arc;
use std::time::Duration;

use super::{assert_lease_not_found, delete_event, get, next_event, put, revision};
use crate::{Event, LeaseId, LeaseKeeper, Store};

/// Keys put with a lease go when it is revoked (watchers see deletes); a later put
/// without the lease detaches a key; a gone lease is refused everywhere.
pub async fn leases_bind_keys(store: Arc<dyn Store>) {
    let lease = store
        .grant_lease(Duration::from_secs(30))
        .await
        .expect("grant");
    for key in ["/lease/a", "/lease/b", "/lease/c"] {
        store
            .put_with_lease(key, b"1".to_vec(), lease)
            .await
            .expect("put with lease");
    }
    put(&store, "/lease/c", b"detached").await;
    put(&store, "/lease/plain", b"1").await;
    store.keep_alive(lease).await.expect("keep alive");

    let mut watch = store
        .watch("/lease/", revision(&store).await)
        .await
        .expect("watch");
    store.revoke(lease).await.expect("revoke");
    let mut deleted = vec![next_event(&mut watch).await, next_event(&mut watch).await];
    deleted.sort_by(|a, b| a.key().cmp(b.key()));
    let at = deleted[0].revision();
    assert_eq!(
        deleted,
        [delete_event("/lease/a", at), delete_event("/lease/b", at)]
    );
    assert_eq!(get(&store, "/lease/a").await, None);
    assert_eq!(get(&store, "/lease/b").await, None);
    assert_eq!(
        get(&store, "/lease/c").await.map(|v| v.value),
        Some(b"detached".to_vec())
    );
    assert!(get(&store, "/lease/plain").await.is_some());

    assert_lease_not_found(store.keep_alive(lease).await, lease);
    assert_lease_not_found(store.revoke(lease).await, lease);
    assert_lease_not_found(
        store.put_with_lease("/lease/d", b"1".to_vec(), lease).await,
        lease,
    );
    assert_eq!(get(&store, "/lease/d").await, None);
    let never = LeaseId(0x5eed);
    assert_lease_not_found(store.keep_alive(never).await, never);
}

/// A lease not kept alive expires: its keys are deleted and watchers see it.
pub async fn lease_expiry_deletes_keys(store: Arc<dyn Store>) {
    let lease = store
        .grant_lease(Duration::from_secs(1))
        .await
        .expect("grant");
    let written = store
        .put_with_lease("/exp/a", b"1".to_vec(), lease)
        .await
        .expect("put with lease");
    let mut watch = store.watch("/exp/", written).await.expect("watch");
    match next_event(&mut watch).await {
        Event::Delete { key, revision } => {
            assert_eq!(key, "/exp/a");
            assert!(revision > written);
        }
        other => panic!("expected the lease's key deleted, got {other:?}"),
    }
    assert_eq!(get(&store, "/exp/a").await, None);
    assert_lease_not_found(store.keep_alive(lease).await, lease);
}

/// Keep-alives hold a lease past its TTL; when they stop, it expires.
pub async fn keep_alive_extends_lease(store: Arc<dyn Store>) {
    let lease = store
        .grant_lease(Duration::from_secs(1))
        .await
        .expect("grant");
    let written = store
        .put_with_lease("/ka/a", b"1".to_vec(), lease)
        .await
        .expect("put with lease");
    let keeper = LeaseKeeper::spawn(Arc::clone(&store), lease, Duration::from_millis(250));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!keeper.is_lost(), "lease lost while kept alive");
    assert_eq!(
        get(&store, "/ka/a").await.map(|v| v.mod_revision),
        Some(written)
    );
    drop(keeper);
    let mut watch = store.watch("/ka/", written).await.expect("watch");
    assert!(matches!(next_event(&mut watch).await, Event::Delete { key, .. } if key == "/ka/a"));
}
