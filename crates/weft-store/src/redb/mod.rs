//! The embedded store: one redb file, for a single control plane on one machine (the
//! default).
//!
//! - **Durability.** Every write is a redb transaction committed with
//!   `Durability::Immediate`: a call returns only after its commit is on disk, so
//!   nothing acknowledged is lost to `kill -9` or a power cut. One writer thread
//!   (`writer.rs`) applies queued writes in batches — each write still gets its own
//!   revision and its own all-or-nothing checks, but one fsync covers the batch (group
//!   commit), so many concurrent writers cost few fsyncs.
//! - **Revisions.** A store-wide counter kept in the file (`meta` table); every
//!   committed change takes the next one, all changes of one transaction share it.
//! - **History and watches.** Every revision's changes are also appended to an
//!   `events` table. A watch replays it from the asked revision, then follows the
//!   writer's in-process broadcast of committed revisions (`watch.rs`). The table keeps
//!   the last [`RedbConfig::history`] revisions; watching from before them is
//!   [`StoreError::Compacted`].
//! - **Leases** live in the writer's memory with their deadlines; the writer wakes at
//!   the next deadline and deletes the keys of expired leases in one revision (watchers
//!   see a `Delete`). Keys remember their lease in the file, so when the file is opened
//!   again — the previous process's leases being gone with it — every key bound to a
//!   lease is deleted (again as a revision watchers can replay).
//! - **Single writer.** One process owns the file: redb locks it, and a second open
//!   fails with [`RedbError::Open`]. Several control planes need the etcd store.
//!
//! Opening is blocking file I/O (call it at start-up, or in `spawn_blocking`); reads run
//! on tokio's blocking pool, so a tokio runtime must be running when the store is used.

mod watch;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use ::redb::{Database, ReadTransaction, ReadableTable, TableDefinition};
use tokio::sync::{broadcast, oneshot};

use crate::{
    ttl_seconds, validate_key, Event, KeyValue, LeaseId, Listing, Revision, Store, StoreError, Txn,
    Versioned, WatchStream,
};
use writer::{Command, Op, Outcome};

/// Revisions of history kept for watches, by default.
pub const DEFAULT_HISTORY: u64 = 10_000;

/// redb's page cache size, by default (redb's own default is 1 GiB).
pub const DEFAULT_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Committed revisions buffered per watcher before it must catch up from the file.
const WATCH_BUFFER: usize = 1024;

/// `key -> (mod revision, lease id or 0, value)`.
const KV: TableDefinition<'_, &str, (u64, i64, &[u8])> = TableDefinition::new("kv");
/// `(revision, index within the revision) -> (key, value or None for a delete)`.
const EVENTS: TableDefinition<'_, (u64, u32), EventValue<'static>> = TableDefinition::new("events");
/// A row of `events`: the key and its new value, `None` for a delete.
type EventValue<'a> = (&'a str, Option<&'a [u8]>);
/// Counters: [`META_REVISION`], [`META_COMPACTED`].
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
/// The store's current revision.
const META_REVISION: &str = "revision";
/// The highest revision whose events have been discarded.
const META_COMPACTED: &str = "compacted";

/// Settings of the embedded store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedbConfig {
    /// How many recent revisions of change history to keep for watches (at least 1).
    pub history: u64,
    /// redb's page cache, in bytes.
    pub cache_bytes: usize,
}

impl Default for RedbConfig {
    fn default() -> Self {
        Self {
            history: DEFAULT_HISTORY,
            cache_bytes: DEFAULT_CACHE_BYTES,
        }
    }
}

/// Why the embedded store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedbError {
    /// The file could not be opened (another process holds it, it is corrupt, ...).
    #[error("cannot open store file {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// redb's reason.
        #[source]
        source: ::redb::DatabaseError,
    },
    /// Reading or writing the file failed.
    #[error("store file {path}: {source}")]
    Storage {
        /// The file.
        path: PathBuf,
        /// redb's reason.
        #[source]
        source: ::redb::Error,
    },
    /// An earlier write failed; the store refuses further writes until reopened.
    #[error("store file {path} failed a write and must be reopened: {reason}")]
    Poisoned {
        /// The file.
        path: PathBuf,
        /// The failure that poisoned it.
        reason: String,
    },
    /// The store has been dropped.
    #[error("store file {path} is closed")]
    Closed {
        /// The file.
        path: PathBuf,
    },
    /// The writer thread could not be started.
    #[error("cannot start the writer thread for {path}: {source}")]
    Spawn {
        /// The file.
        path: PathBuf,
        /// The OS's reason.
        #[source]
        source: std::io::Error,
    },
    /// A blocking read task died.
    #[error("read of store file {path} did not complete: {reason}")]
    Task {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// A redb failure inside the store: boxed (redb's error is large) and convertible
/// with `?` from each of redb's error types.
#[derive(Debug)]
struct DbError(Box<::redb::Error>);

impl<E: Into<::redb::Error>> From<E> for DbError {
    fn from(error: E) -> Self {
        Self(Box::new(error.into()))
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The embedded store. Cheap to share as `Arc<dyn Store>`; dropping the last handle
/// stops the writer thread (waiting for its current commit) and closes the file.
pub struct RedbStore {
    shared: Arc<Shared>,
}

/// What the watchers see of the writer's progress, updated under one lock with the
/// broadcast so a new watcher gets a consistent starting point.
struct Published {
    /// Sends each committed revision's events, in revision order.
    sender: broadcast::Sender<Arc<Committed>>,
    /// The last revision sent.
    revision: Revision,
}

/// The events of one committed revision.
struct Committed {
    revision: Revision,
    events: Vec<Event>,
}

/// State shared by the store handle, its watchers and (for `published`) the writer.
struct Shared {
    path: PathBuf,
    db: Arc<Database>,
    commands: mpsc::Sender<Command>,
    published: Arc<Mutex<Published>>,
    writer: Option<JoinHandle<()>>,
}

impl RedbStore {
    /// Opens (or creates) the store at `path` with default settings.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, RedbConfig::default())
    }

    /// Opens (or creates) the store at `path`. Keys bound to leases of a previous
    /// process are deleted now, as one revision.
    pub fn open_with(path: impl AsRef<Path>, config: RedbConfig) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let db = Database::builder()
            .set_cache_size(config.cache_bytes)
            .create_with_file_format_v3(true)
            .create(&path)
            .map_err(|source| RedbError::Open {
                path: path.clone(),
                source,
            })?;
        let db = Arc::new(db);
        let recovered = writer::recover(&db).map_err(|error| RedbError::Storage {
            path: path.clone(),
            source: *error.0,
        })?;
        if recovered.removed > 0 {
            tracing::info!(
                path = %path.display(),
                keys = recovered.removed,
                "deleted keys bound to leases of the previous process"
            );
        }
        let (sender, _) = broadcast::channel(WATCH_BUFFER);
        let published = Arc::new(Mutex::new(Published {
            sender,
            revision: recovered.revision,
        }));
        let (commands, queue) = mpsc::channel();
        let writer = writer::Writer::new(
            Arc::clone(&db),
            path.clone(),
            config.history.max(1),
            &recovered,
            Arc::clone(&published),
        );
        let handle = std::thread::Builder::new()
            .name("weft-store-redb".to_owned())
            .spawn(move || writer.run(&queue))
            .map_err(|source| RedbError::Spawn {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            shared: Arc::new(Shared {
                path,
                db,
                commands,
                published,
                writer: Some(handle),
            }),
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }
}

impl Shared {
    /// Runs `read` in a read transaction on the blocking pool.
    async fn read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> Result<T, DbError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        let joined = tokio::task::spawn_blocking(move || {
            let txn = db.begin_read()?;
            read(&txn)
        })
        .await;
        match joined {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(RedbError::Storage {
                path: self.path.clone(),
                source: *error.0,
            }
            .into()),
            Err(join) => Err(RedbError::Task {
                path: self.path.clone(),
                reason: join.to_string(),
            }
            .into()),
        }
    }

    /// Queues `op` for the writer and waits for its committed outcome.
    async fn request(&self, op: Op) -> Result<Outcome, StoreError> {
        let (reply, outcome) = oneshot::channel();
        self.commands
            .send(Command::Op { op, reply })
            .map_err(|_| self.closed())?;
        outcome.await.map_err(|_| self.closed())?
    }

    /// A new broadcast receiver and the last revision sent before it subscribed.
    fn subscribe(&self) -> (broadcast::Receiver<Arc<Committed>>, Revision) {
        let published = self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (published.sender.subscribe(), published.revision)
    }

    fn closed(&self) -> StoreError {
        RedbError::Closed {
            path: self.path.clone(),
        }
        .into()
    }

    /// The writer answered with an outcome of the wrong kind; cannot happen.
    fn mismatch(&self, outcome: Outcome) -> StoreError {
        RedbError::Task {
            path: self.path.clone(),
            reason: format!("writer answered with an unexpected {outcome:?}"),
        }
        .into()
    }

    async fn apply(&self, txn: Txn) -> Result<(Revision, bool), StoreError> {
        txn.validate()?;
        match self.request(Op::Txn(txn)).await? {
            Outcome::Txn { revision, changed } => Ok((revision, changed)),
            other => Err(self.mismatch(other)),
        }
    }

    async fn done(&self, op: Op) -> Result<(), StoreError> {
        match self.request(op).await? {
            Outcome::Done => Ok(()),
            other => Err(self.mismatch(other)),
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The writer finishes the batch in hand (replying to it), then exits and
        // drops its handle on the database, which releases the file lock.
        let _ = self.commands.send(Command::Shutdown);
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!(path = %self.path.display(), "store writer thread panicked");
            }
        }
    }
}

/// A meta counter, 0 if unset.
fn meta_value(meta: &impl ReadableTable<&'static str, u64>, name: &str) -> Result<u64, DbError> {
    Ok(meta.get(name)?.map(|guard| guard.value()).unwrap_or(0))
}

#[async_trait::async_trait]
impl Store for RedbStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        validate_key(key)?;
        let key = key.to_owned();
        self.shared
            .read(move |txn| {
                let kv = txn.open_table(KV)?;
                let found = kv.get(key.as_str())?.map(|guard| {
                    let (mod_revision, _lease, value) = guard.value();
                    Versioned {
                        value: value.to_vec(),
                        mod_revision,
                    }
                });
                Ok(found)
            })
            .await
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        let prefix = prefix.to_owned();
        self.shared
            .read(move |txn| {
                let kv = txn.open_table(KV)?;
                let meta = txn.open_table(META)?;
                let revision = meta_value(&meta, META_REVISION)?;
                let mut items = Vec::new();
                for entry in kv.range(prefix.as_str()..)? {
                    let (key, value) = entry?;
                    let key = key.value();
                    if !key.starts_with(prefix.as_str()) {
                        break;
                    }
                    let (mod_revision, _lease, value) = value.value();
                    items.push(KeyValue {
                        key: key.to_owned(),
                        value: value.to_vec(),
                        mod_revision,
                    });
                }
                Ok(Listing { items, revision })
            })
            .await
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        Ok(self.shared.subscribe().1)
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        Ok(self.shared.apply(Txn::new().put(key, value)).await?.0)
    }

    async fn put_with_lease(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: LeaseId,
    ) -> Result<Revision, StoreError> {
        let txn = Txn::new().put_with_lease(key, value, lease);
        Ok(self.shared.apply(txn).await?.0)
    }

    async fn put_if(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
    ) -> Result<Revision, StoreError> {
        let txn = Txn::new().check(key, expected).put(key, value);
        Ok(self.shared.apply(txn).await?.0)
    }

    async fn delete(&self, key: &str) -> Result<Option<Revision>, StoreError> {
        let (revision, changed) = self.shared.apply(Txn::new().delete(key)).await?;
        Ok(changed.then_some(revision))
    }

    async fn delete_if(&self, key: &str, expected: Revision) -> Result<Revision, StoreError> {
        let txn = Txn::new().check(key, expected).delete(key);
        Ok(self.shared.apply(txn).await?.0)
    }

    async fn txn(&self, txn: Txn) -> Result<Revision, StoreError> {
        Ok(self.shared.apply(txn).await?.0)
    }

    async fn watch(
        &self,
        prefix: &str,
        from_revision: Revision,
    ) -> Result<WatchStream, StoreError> {
        watch::watch(&self.shared, prefix.to_owned(), from_revision).await
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.shared.done(Op::Compact(revision)).await
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let ttl = Duration::from_secs(ttl_seconds(ttl));
        match self.shared.request(Op::Grant(ttl)).await? {
            Outcome::Lease(lease) => Ok(lease),
            other => Err(self.shared.mismatch(other)),
        }
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.shared.done(Op::KeepAlive(lease)).await
    }

    async fn revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.shared.done(Op::Revoke(lease)).await
    }
}
