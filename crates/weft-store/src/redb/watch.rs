//! Watches on the embedded store: subscribe to the writer's broadcast first, then
//! replay the `events` table up to the revision published at that moment, then follow
//! the broadcast — so no revision is missed or delivered twice. A watcher that falls
//! more than the broadcast buffer behind re-subscribes and catches up from the file
//! (or reports [`StoreError::Compacted`] if that history has been trimmed meanwhile).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Weak};

use tokio::sync::broadcast::{self, error::RecvError};

use super::{meta_value, Committed, RedbError, Shared, EVENTS, META, META_COMPACTED};
use crate::{Event, Revision, StoreError, WatchStream};

/// A watch in progress.
struct State {
    shared: Weak<Shared>,
    path: PathBuf,
    prefix: String,
    receiver: broadcast::Receiver<Arc<Committed>>,
    /// Every revision up to this one has been queued (or skipped as before the start).
    last: Revision,
    /// Events queued for delivery.
    pending: VecDeque<Event>,
}

/// Starts a watch of `prefix` from after `from`.
pub(super) async fn watch(
    shared: &Arc<Shared>,
    prefix: String,
    from: Revision,
) -> Result<WatchStream, StoreError> {
    let (receiver, upto) = shared.subscribe();
    let backlog = replay(shared, &prefix, from, upto).await?;
    let state = State {
        shared: Arc::downgrade(shared),
        path: shared.path.clone(),
        prefix,
        receiver,
        last: from.max(upto),
        pending: backlog.into(),
    };
    Ok(Box::pin(futures_util::stream::unfold(Some(state), next)))
}

/// The events of revisions `from + 1 ..= upto` under `prefix`, from the file.
async fn replay(
    shared: &Shared,
    prefix: &str,
    from: Revision,
    upto: Revision,
) -> Result<Vec<Event>, StoreError> {
    if from >= upto {
        return Ok(Vec::new());
    }
    let wanted = prefix.to_owned();
    let replayed = shared
        .read(move |txn| {
            let meta = txn.open_table(META)?;
            if from < meta_value(&meta, META_COMPACTED)? {
                return Ok(None);
            }
            let table = txn.open_table(EVENTS)?;
            let mut events = Vec::new();
            for entry in table.range((from + 1, 0u32)..=(upto, u32::MAX))? {
                let (position, change) = entry?;
                let (revision, _) = position.value();
                let (key, value) = change.value();
                if !key.starts_with(wanted.as_str()) {
                    continue;
                }
                let key = key.to_owned();
                events.push(match value {
                    Some(value) => Event::Put {
                        key,
                        value: value.to_vec(),
                        revision,
                    },
                    None => Event::Delete { key, revision },
                });
            }
            Ok(Some(events))
        })
        .await?;
    replayed.ok_or_else(|| StoreError::Compacted {
        prefix: prefix.to_owned(),
        revision: from,
    })
}

/// Yields the next event; ends after an error.
async fn next(state: Option<State>) -> Option<(Result<Event, StoreError>, Option<State>)> {
    let mut state = state?;
    loop {
        if let Some(event) = state.pending.pop_front() {
            return Some((Ok(event), Some(state)));
        }
        match state.receiver.recv().await {
            Ok(committed) => {
                if committed.revision > state.last {
                    state.last = committed.revision;
                    let prefix = state.prefix.as_str();
                    state.pending.extend(
                        committed
                            .events
                            .iter()
                            .filter(|event| event.key().starts_with(prefix))
                            .cloned(),
                    );
                }
            }
            Err(RecvError::Lagged(skipped)) => {
                tracing::debug!(prefix = %state.prefix, skipped, "watcher lagged; catching up from the file");
                let Some(shared) = state.shared.upgrade() else {
                    return Some((Err(closed(&state.path)), None));
                };
                let (receiver, upto) = shared.subscribe();
                state.receiver = receiver;
                match replay(&shared, &state.prefix, state.last, upto).await {
                    Ok(events) => {
                        state.pending.extend(events);
                        state.last = state.last.max(upto);
                    }
                    Err(error) => return Some((Err(error), None)),
                }
            }
            Err(RecvError::Closed) => return Some((Err(closed(&state.path)), None)),
        }
    }
}

fn closed(path: &std::path::Path) -> StoreError {
    RedbError::Closed {
        path: path.to_path_buf(),
    }
    .into()
}
