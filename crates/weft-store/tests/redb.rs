//! The embedded (redb) store: the conformance suite, plus what only a file store has —
//! reopening, leases dropped at open, the history bound, the single-writer lock, and
//! durability across `kill -9`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use weft_store::conformance::{expect_compacted, next_event};
use weft_store::redb::{RedbConfig, RedbStore};
use weft_store::{Event, Store, StoreError};

async fn redb() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = RedbStore::open(dir.path().join("store.redb")).expect("open store");
    (Arc::new(store), dir)
}

weft_store::conformance_tests!(redb);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_keeps_data_and_revisions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let store = RedbStore::open(&path).expect("open");
    let first = store.put("/a", b"1".to_vec()).await.expect("put");
    let last = store.put("/b", b"2".to_vec()).await.expect("put");
    drop(store);

    let store = RedbStore::open(&path).expect("reopen");
    assert_eq!(store.revision().await.expect("revision"), last);
    let a = store.get("/a").await.expect("get").expect("kept");
    assert_eq!((a.value.as_slice(), a.mod_revision), (&b"1"[..], first));
    assert!(store.put("/c", b"3".to_vec()).await.expect("put") > last);
    // History survives too: a watch from before the restart replays it.
    let mut watch = store.watch("/", 0).await.expect("watch");
    assert_eq!(next_event(&mut watch).await.key(), "/a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_leases_from_a_previous_process_are_deleted_at_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let store = RedbStore::open(&path).expect("open");
    let lease = store
        .grant_lease(Duration::from_secs(600))
        .await
        .expect("grant");
    store
        .put_with_lease("/reg/proxy-1", b"up".to_vec(), lease)
        .await
        .expect("put");
    let before = store.put("/res/kept", b"1".to_vec()).await.expect("put");
    drop(store);

    let store = RedbStore::open(&path).expect("reopen");
    assert_eq!(store.get("/reg/proxy-1").await.expect("get"), None);
    assert!(store.get("/res/kept").await.expect("get").is_some());
    assert_lease_gone(store.keep_alive(lease).await);
    // The deletion is a revision of its own, visible to a watch resuming from before.
    let mut watch = store.watch("/reg/", before).await.expect("watch");
    match next_event(&mut watch).await {
        Event::Delete { key, revision } => {
            assert_eq!(key, "/reg/proxy-1");
            assert_eq!(revision, before + 1);
        }
        other => panic!("expected a delete, got {other:?}"),
    }
}

fn assert_lease_gone(result: Result<(), StoreError>) {
    assert!(
        matches!(result, Err(StoreError::LeaseNotFound { .. })),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_bounded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = RedbConfig {
        history: 5,
        ..RedbConfig::default()
    };
    let store: Arc<dyn Store> =
        Arc::new(RedbStore::open_with(dir.path().join("store.redb"), config).expect("open"));
    let mut revisions = Vec::new();
    for i in 0..20 {
        revisions.push(store.put("/h/k", vec![i]).await.expect("put"));
    }
    let last = revisions[19];
    expect_compacted(&store, "/h/", last - 6).await;
    let mut watch = store
        .watch("/h/", last - 5)
        .await
        .expect("watch within history");
    assert_eq!(next_event(&mut watch).await.revision(), last - 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_open_of_the_same_file_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let _first = RedbStore::open(&path).expect("open");
    match RedbStore::open(&path) {
        Err(error) => assert!(error.to_string().contains("store.redb"), "{error}"),
        Ok(_) => panic!("a second writer opened the file"),
    }
}

/// Set in the child process of `acknowledged_writes_survive_sigkill`: the file to write.
const CRASH_CHILD_ENV: &str = "WEFT_STORE_CRASH_CHILD";

/// Writes keys from several tasks, printing `ACK <key>` after each put returns, until
/// killed. Run only as the child of `acknowledged_writes_survive_sigkill`.
#[test]
#[ignore = "child process of acknowledged_writes_survive_sigkill"]
fn crash_child() {
    let Some(path) = std::env::var_os(CRASH_CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let store = Arc::new(RedbStore::open(path).expect("open"));
        let mut writers = Vec::new();
        for writer in 0..4 {
            let store = Arc::clone(&store);
            writers.push(tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("/crash/{writer}/{i}");
                    store
                        .put(&key, key.clone().into_bytes())
                        .await
                        .expect("put");
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {key}").expect("stdout");
                    out.flush().expect("stdout");
                }
            }));
        }
        for writer in writers {
            writer.await.expect("writer");
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut acked = Vec::new();
    // Kill it mid-stream, once it has acknowledged a few hundred writes.
    while acked.len() < 300 {
        let line = lines
            .next()
            .expect("child ended early")
            .expect("read child");
        if let Some(key) = line.strip_prefix("ACK ") {
            acked.push(key.to_owned());
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    // Acknowledgements printed before the kill are still in the pipe.
    for line in lines {
        if let Some(key) = line.expect("read child").strip_prefix("ACK ") {
            acked.push(key.to_owned());
        }
    }

    let store = RedbStore::open(&path).expect("reopen after SIGKILL");
    let listing = store.list("/crash/").await.expect("list");
    let stored: std::collections::HashMap<&str, &[u8]> = listing
        .items
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_slice()))
        .collect();
    for key in &acked {
        assert_eq!(
            stored.get(key.as_str()).copied(),
            Some(key.as_bytes()),
            "{key} lost"
        );
    }
    assert!(stored.len() >= acked.len());
}
