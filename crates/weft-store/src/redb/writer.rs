//! The embedded store's single writer: a thread that owns the revision counter and the
//! leases, applies queued writes in batches inside one redb write transaction, commits
//! it durably, publishes the committed revisions to watchers, and only then answers
//! the callers. It also wakes at the next lease deadline to expire leases, and trims
//! the change history to its bound.
//!
//! A failed commit leaves the in-memory state (revision, leases) ahead of the file, so
//! the writer then refuses all further work ([`RedbError::Poisoned`]); reopening the
//! file recovers, dropping lease-bound keys as after any restart.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ::redb::{Database, Durability, ReadableTable, Table};
use tokio::sync::oneshot;

use super::{
    meta_value, Committed, DbError, EventValue, Published, RedbError, EVENTS, KV, META,
    META_COMPACTED, META_REVISION,
};
use crate::{Event, LeaseId, Revision, StoreError, Txn, TxnOp};

/// Writes taken from the queue for one commit, at most.
const MAX_BATCH: usize = 256;

/// A message to the writer thread.
pub(super) enum Command {
    /// Apply `op` and answer on `reply` once committed.
    Op {
        op: Op,
        reply: oneshot::Sender<Result<Outcome, StoreError>>,
    },
    /// Finish the batch in hand and exit.
    Shutdown,
}

/// A change the writer applies.
#[derive(Debug)]
pub(super) enum Op {
    Txn(Txn),
    Compact(Revision),
    Grant(Duration),
    KeepAlive(LeaseId),
    Revoke(LeaseId),
}

/// What an applied [`Op`] produced.
#[derive(Debug)]
pub(super) enum Outcome {
    /// The store revision after the transaction, and whether it changed anything.
    Txn { revision: Revision, changed: bool },
    /// A new lease.
    Lease(LeaseId),
    /// Done, nothing to report.
    Done,
}

/// The file's state after [`recover`].
pub(super) struct Recovered {
    pub(super) revision: Revision,
    pub(super) compacted: Revision,
    /// Keys deleted because they were bound to a lease of the previous process.
    pub(super) removed: usize,
}

/// Creates the tables if needed, reads the counters, and deletes keys bound to leases
/// (which died with the process that granted them) as one revision.
pub(super) fn recover(db: &Database) -> Result<Recovered, DbError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate);
    let recovered = {
        let mut kv = txn.open_table(KV)?;
        let mut events = txn.open_table(EVENTS)?;
        let mut meta = txn.open_table(META)?;
        let mut revision = meta_value(&meta, META_REVISION)?;
        let compacted = meta_value(&meta, META_COMPACTED)?;
        let mut leased = Vec::new();
        for entry in kv.iter()? {
            let (key, value) = entry?;
            if value.value().1 != 0 {
                leased.push(key.value().to_owned());
            }
        }
        if !leased.is_empty() {
            revision += 1;
            for (index, key) in leased.iter().enumerate() {
                kv.remove(key.as_str())?;
                events.insert((revision, index as u32), (key.as_str(), None::<&[u8]>))?;
            }
            meta.insert(META_REVISION, revision)?;
        }
        Recovered {
            revision,
            compacted,
            removed: leased.len(),
        }
    };
    txn.commit()?;
    Ok(recovered)
}

/// A live lease.
struct Lease {
    ttl: Duration,
    deadline: Instant,
    /// Keys currently bound to it.
    keys: HashSet<String>,
}

/// The `kv` table in a write transaction.
type KvTable<'txn> = Table<'txn, &'static str, (u64, i64, &'static [u8])>;
/// The `events` table in a write transaction.
type EventsTable<'txn> = Table<'txn, (u64, u32), EventValue<'static>>;

/// The tables of one write transaction.
struct Tables<'txn> {
    kv: KvTable<'txn>,
    events: EventsTable<'txn>,
}

/// The writer thread's state.
pub(super) struct Writer {
    db: Arc<Database>,
    path: PathBuf,
    history: u64,
    revision: Revision,
    compacted: Revision,
    leases: HashMap<LeaseId, Lease>,
    /// `(deadline, lease)` for every live lease, soonest first.
    deadlines: BTreeSet<(Instant, LeaseId)>,
    published: Arc<Mutex<Published>>,
    poisoned: Option<String>,
}

impl Writer {
    pub(super) fn new(
        db: Arc<Database>,
        path: PathBuf,
        history: u64,
        recovered: &Recovered,
        published: Arc<Mutex<Published>>,
    ) -> Self {
        Self {
            db,
            path,
            history,
            revision: recovered.revision,
            compacted: recovered.compacted,
            leases: HashMap::new(),
            deadlines: BTreeSet::new(),
            published,
            poisoned: None,
        }
    }

    /// Serves `queue` until shut down or every sender is gone.
    pub(super) fn run(mut self, queue: &mpsc::Receiver<Command>) {
        loop {
            let first = match self.deadlines.first() {
                Some(&(deadline, _)) => {
                    match queue.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                        Ok(command) => Some(command),
                        Err(mpsc::RecvTimeoutError::Timeout) => None,
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
                None => match queue.recv() {
                    Ok(command) => Some(command),
                    Err(mpsc::RecvError) => return,
                },
            };
            let mut batch = Vec::new();
            let mut shutdown = false;
            let mut next = first;
            while let Some(command) = next.take() {
                match command {
                    Command::Shutdown => {
                        shutdown = true;
                        break;
                    }
                    Command::Op { op, reply } => batch.push((op, reply)),
                }
                if batch.len() < MAX_BATCH {
                    next = queue.try_recv().ok();
                }
            }
            self.process(batch);
            if shutdown {
                return;
            }
        }
    }

    /// Applies a batch (and any lease expiry) in one durable commit, then answers.
    fn process(&mut self, batch: Vec<(Op, oneshot::Sender<Result<Outcome, StoreError>>)>) {
        let now = Instant::now();
        let has_expired = self.deadlines.first().is_some_and(|&(d, _)| d <= now);
        if batch.is_empty() && !has_expired {
            return;
        }
        if let Some(reason) = &self.poisoned {
            for (_, reply) in batch {
                let _ = reply.send(Err(self.poison_error(reason)));
            }
            return;
        }
        let (ops, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let mut committed = Vec::new();
        match self.apply_batch(ops, now, &mut committed) {
            Ok(outcomes) => {
                self.publish(committed);
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(error) => {
                tracing::error!(path = %self.path.display(), %error, "store write failed");
                let reason = error.to_string();
                for reply in replies {
                    let _ = reply.send(Err(self.poison_error(&reason)));
                }
                // Nothing more will be applied: forget the leases (and their wake-ups).
                self.leases.clear();
                self.deadlines.clear();
                self.poisoned = Some(reason);
            }
        }
    }

    fn poison_error(&self, reason: &str) -> StoreError {
        RedbError::Poisoned {
            path: self.path.clone(),
            reason: reason.to_owned(),
        }
        .into()
    }

    /// Applies expiry and `ops` in one write transaction; commits if anything changed.
    fn apply_batch(
        &mut self,
        ops: Vec<Op>,
        now: Instant,
        committed: &mut Vec<Committed>,
    ) -> Result<Vec<Result<Outcome, StoreError>>, DbError> {
        let before = (self.revision, self.compacted);
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        let mut outcomes = Vec::with_capacity(ops.len());
        {
            let mut tables = Tables {
                kv: txn.open_table(KV)?,
                events: txn.open_table(EVENTS)?,
            };
            while let Some(&(deadline, lease)) = self.deadlines.first() {
                if deadline > now {
                    break;
                }
                tracing::debug!(%lease, "lease expired");
                self.end_lease(&mut tables, lease, committed)?;
            }
            for op in ops {
                let outcome = match op {
                    Op::Txn(txn) => self.apply_txn(&mut tables, txn, committed)?,
                    Op::Compact(revision) => self.compact(&mut tables, revision)?,
                    Op::Grant(ttl) => Ok(self.grant(ttl)),
                    Op::KeepAlive(lease) => self.keep_alive(lease),
                    Op::Revoke(lease) => {
                        if self.end_lease(&mut tables, lease, committed)? {
                            Ok(Outcome::Done)
                        } else {
                            Err(StoreError::LeaseNotFound { lease })
                        }
                    }
                };
                outcomes.push(outcome);
            }
            if self.revision > self.compacted.saturating_add(self.history) {
                self.compact_to(&mut tables, self.revision - self.history)?;
            }
        }
        if (self.revision, self.compacted) == before {
            txn.abort()?;
            return Ok(outcomes);
        }
        {
            let mut meta = txn.open_table(META)?;
            meta.insert(META_REVISION, self.revision)?;
            meta.insert(META_COMPACTED, self.compacted)?;
        }
        txn.commit()?;
        Ok(outcomes)
    }

    /// Sends committed revisions to watchers, in order.
    fn publish(&self, committed: Vec<Committed>) {
        let mut published = self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for revision in committed {
            published.revision = revision.revision;
            // No receivers is fine: nobody is watching.
            let _ = published.sender.send(Arc::new(revision));
        }
    }

    fn apply_txn(
        &mut self,
        tables: &mut Tables<'_>,
        txn: Txn,
        committed: &mut Vec<Committed>,
    ) -> Result<Result<Outcome, StoreError>, DbError> {
        for check in &txn.checks {
            let actual = tables
                .kv
                .get(check.key.as_str())?
                .map_or(0, |guard| guard.value().0);
            if actual != check.mod_revision {
                return Ok(Err(StoreError::Conflict {
                    key: check.key.clone(),
                    expected: check.mod_revision,
                    actual,
                }));
            }
        }
        for op in &txn.ops {
            if let TxnOp::Put {
                lease: Some(lease), ..
            } = op
            {
                if !self.leases.contains_key(lease) {
                    return Ok(Err(StoreError::LeaseNotFound { lease: *lease }));
                }
            }
        }
        let revision = self.revision + 1;
        let mut events = Vec::with_capacity(txn.ops.len());
        for op in txn.ops {
            match op {
                TxnOp::Put { key, value, lease } => {
                    let lease = lease.map_or(0, |lease| lease.0);
                    let old = tables
                        .kv
                        .insert(key.as_str(), (revision, lease, value.as_slice()))?
                        .map_or(0, |guard| guard.value().1);
                    self.rebind(&key, old, lease);
                    events.push(Event::Put {
                        key,
                        value,
                        revision,
                    });
                }
                TxnOp::Delete { key } => {
                    let old = tables.kv.remove(key.as_str())?.map(|guard| guard.value().1);
                    if let Some(old) = old {
                        self.rebind(&key, old, 0);
                        events.push(Event::Delete { key, revision });
                    }
                }
            }
        }
        let changed = !events.is_empty();
        if changed {
            self.record(tables, events, committed)?;
        }
        Ok(Ok(Outcome::Txn {
            revision: self.revision,
            changed,
        }))
    }

    /// Moves `key` from lease `old` to lease `new` (0 = none) in the lease index.
    fn rebind(&mut self, key: &str, old: i64, new: i64) {
        if old != 0 && old != new {
            if let Some(lease) = self.leases.get_mut(&LeaseId(old)) {
                lease.keys.remove(key);
            }
        }
        if new != 0 {
            if let Some(lease) = self.leases.get_mut(&LeaseId(new)) {
                lease.keys.insert(key.to_owned());
            }
        }
    }

    /// Logs `events` as the next revision.
    fn record(
        &mut self,
        tables: &mut Tables<'_>,
        events: Vec<Event>,
        committed: &mut Vec<Committed>,
    ) -> Result<(), DbError> {
        let revision = self.revision + 1;
        for (index, event) in events.iter().enumerate() {
            let value = match event {
                Event::Put { value, .. } => Some(value.as_slice()),
                Event::Delete { .. } => None,
            };
            tables
                .events
                .insert((revision, index as u32), (event.key(), value))?;
        }
        self.revision = revision;
        committed.push(Committed { revision, events });
        Ok(())
    }

    fn compact(
        &mut self,
        tables: &mut Tables<'_>,
        revision: Revision,
    ) -> Result<Result<Outcome, StoreError>, DbError> {
        if revision > self.revision {
            return Ok(Err(StoreError::FutureRevision { revision }));
        }
        if revision > self.compacted {
            self.compact_to(tables, revision)?;
        }
        Ok(Ok(Outcome::Done))
    }

    /// Discards the events of every revision up to and including `revision`.
    fn compact_to(&mut self, tables: &mut Tables<'_>, revision: Revision) -> Result<(), DbError> {
        tables
            .events
            .retain_in(..(revision + 1, 0u32), |_, _| false)?;
        self.compacted = revision;
        Ok(())
    }

    fn grant(&mut self, ttl: Duration) -> Outcome {
        let id = loop {
            let id = LeaseId(fastrand::i64(1..i64::MAX));
            if !self.leases.contains_key(&id) {
                break id;
            }
        };
        let deadline = Instant::now() + ttl;
        self.leases.insert(
            id,
            Lease {
                ttl,
                deadline,
                keys: HashSet::new(),
            },
        );
        self.deadlines.insert((deadline, id));
        Outcome::Lease(id)
    }

    fn keep_alive(&mut self, id: LeaseId) -> Result<Outcome, StoreError> {
        let lease = self
            .leases
            .get_mut(&id)
            .ok_or(StoreError::LeaseNotFound { lease: id })?;
        self.deadlines.remove(&(lease.deadline, id));
        lease.deadline = Instant::now() + lease.ttl;
        self.deadlines.insert((lease.deadline, id));
        Ok(Outcome::Done)
    }

    /// Removes lease `id` and deletes its keys as one revision; false if no such lease.
    fn end_lease(
        &mut self,
        tables: &mut Tables<'_>,
        id: LeaseId,
        committed: &mut Vec<Committed>,
    ) -> Result<bool, DbError> {
        let Some(lease) = self.leases.remove(&id) else {
            return Ok(false);
        };
        self.deadlines.remove(&(lease.deadline, id));
        let revision = self.revision + 1;
        let mut keys: Vec<String> = lease.keys.into_iter().collect();
        keys.sort();
        let mut events = Vec::with_capacity(keys.len());
        for key in keys {
            let bound = tables
                .kv
                .get(key.as_str())?
                .is_some_and(|guard| guard.value().1 == id.0);
            if bound {
                tables.kv.remove(key.as_str())?;
                events.push(Event::Delete { key, revision });
            }
        }
        if !events.is_empty() {
            self.record(tables, events, committed)?;
        }
        Ok(true)
    }
}
