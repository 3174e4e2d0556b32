//! The etcd store against a real etcd server process (Debian's `etcd-server`): the
//! conformance suite, plus failover between endpoints and watches that survive an etcd
//! crash and restart.

use std::sync::Arc;

use weft_store::conformance::next_event;
use weft_store::etcd::EtcdStore;
use weft_store::etcd_server::{EtcdServer, EtcdServerError};
use weft_store::{Event, Store};

async fn start_etcd() -> EtcdServer {
    match EtcdServer::start().await {
        Ok(server) => server,
        Err(error) => panic!("cannot run the etcd store tests: {error}"),
    }
}

async fn etcd() -> (Arc<dyn Store>, EtcdServer) {
    let server = start_etcd().await;
    let store = EtcdStore::connect(&server.url()).await.expect("connect");
    (Arc::new(store), server)
}

weft_store::conformance_tests!(etcd);

#[tokio::test]
async fn a_missing_etcd_binary_is_a_clear_error() {
    let missing = std::path::Path::new("/nonexistent/etcd");
    match EtcdServer::start_with(missing).await {
        Err(error @ EtcdServerError::Missing { .. }) => {
            let message = error.to_string();
            assert!(message.contains("/nonexistent/etcd") && message.contains("etcd-server"));
        }
        other => panic!("expected Missing, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_past_a_dead_endpoint() {
    let server = start_etcd().await;
    // A port nobody listens on, first in the list.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_port = dead.local_addr().expect("addr").port();
    drop(dead);
    let url = format!("etcd://127.0.0.1:{dead_port},{}", server.endpoint());
    let store = EtcdStore::connect(&url)
        .await
        .expect("connect past the dead endpoint");
    assert_eq!(store.endpoints().len(), 2);
    let revision = store.put("/f/a", b"1".to_vec()).await.expect("put");
    assert_eq!(
        store
            .get("/f/a")
            .await
            .expect("get")
            .map(|v| v.mod_revision),
        Some(revision)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_etcd_names_the_endpoint() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = dead.local_addr().expect("addr").to_string();
    drop(dead);
    let error = EtcdStore::connect(&format!("etcd://{endpoint}"))
        .await
        .expect_err("nothing listens there");
    assert!(error.to_string().contains(&endpoint), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_after_etcd_restarts() {
    let mut server = start_etcd().await;
    let store = EtcdStore::connect(&server.url()).await.expect("connect");
    let before = store.put("/rs/a", b"1".to_vec()).await.expect("put");
    let mut watch = store.watch("/rs/", before).await.expect("watch");

    server.restart().await.expect("restart etcd");
    let after = store
        .put("/rs/b", b"2".to_vec())
        .await
        .expect("put after restart");
    assert!(after > before);
    assert_eq!(
        next_event(&mut watch).await,
        Event::Put {
            key: "/rs/b".to_owned(),
            value: b"2".to_vec(),
            revision: after
        }
    );
    let next = store.put("/rs/c", b"3".to_vec()).await.expect("put");
    assert_eq!(
        next_event(&mut watch).await.revision(),
        next,
        "no duplicates after resuming"
    );
}
