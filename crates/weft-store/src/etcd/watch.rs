//! Watches on etcd: one `Watch` stream per watch, created with
//! `start_revision = from + 1` over the prefix's key range. etcd sends every revision's
//! events in one response (without `fragment`), so the last revision seen is a safe
//! resume point: when the stream breaks, the watch is created again (failing over
//! between endpoints, with a short backoff) from the revision after it. etcd's
//! cancellation for a compacted start becomes [`StoreError::Compacted`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream;
use tokio::sync::mpsc;
use tonic::Streaming;

use super::client::{Client, Retry, RPC_TIMEOUT};
use super::proto::{self, watch_request::RequestUnion};
use super::{prefix_range, to_etcd, utf8_key, EtcdError};
use crate::{Event, Revision, StoreError, WatchStream};

/// Attempts to re-create a broken watch before giving up, and the first backoff
/// (doubled after each attempt: about 3 s in all).
const REOPEN_ATTEMPTS: u32 = 5;
const REOPEN_BACKOFF: Duration = Duration::from_millis(100);

/// An open etcd watch.
struct Opened {
    responses: Streaming<proto::WatchResponse>,
    /// Keeps the request side open: etcd ends the watch when the client half-closes.
    _requests: mpsc::Sender<proto::WatchRequest>,
    endpoint: String,
}

/// A watch in progress.
struct State {
    client: Arc<Client>,
    prefix: String,
    /// Every revision up to this one has been queued (or was before the start).
    last: Revision,
    opened: Opened,
    pending: VecDeque<Event>,
}

/// Starts a watch of `prefix` from after `from` (compaction already checked).
pub(super) async fn watch(
    client: Arc<Client>,
    prefix: String,
    from: Revision,
) -> Result<WatchStream, StoreError> {
    let opened = open(&client, &prefix, from).await?;
    let state = State {
        client,
        prefix,
        last: from,
        opened,
        pending: VecDeque::new(),
    };
    Ok(Box::pin(stream::unfold(Some(state), next)))
}

/// Creates an etcd watch of `prefix` from revision `from + 1` and waits until etcd
/// confirms it.
async fn open(client: &Client, prefix: &str, from: Revision) -> Result<Opened, StoreError> {
    let (key, range_end) = prefix_range(prefix);
    let create = proto::WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(proto::WatchCreateRequest {
            key,
            range_end,
            start_revision: to_etcd(from.saturating_add(1)),
            ..Default::default()
        })),
    };
    let (mut responses, requests, endpoint): (Streaming<proto::WatchResponse>, _, _) = client
        .streaming(proto::WATCH, Retry::Always, || {
            let (sender, receiver) = mpsc::channel(1);
            // A fresh channel with room for one: this cannot fail.
            let _ = sender.try_send(create.clone());
            let requests = stream::unfold(receiver, |mut receiver| async move {
                receiver.recv().await.map(|request| (request, receiver))
            });
            (requests, sender)
        })
        .await?;
    let first = tokio::time::timeout(RPC_TIMEOUT, responses.message())
        .await
        .map_err(|_| EtcdError::Timeout {
            endpoint: endpoint.clone(),
            method: proto::WATCH,
            after: RPC_TIMEOUT,
        })?
        .map_err(|status| EtcdError::Rpc {
            endpoint: endpoint.clone(),
            method: proto::WATCH,
            status: Box::new(status),
        })?;
    match first {
        Some(response) if response.created && !response.canceled => Ok(Opened {
            responses,
            _requests: requests,
            endpoint,
        }),
        Some(response) => Err(canceled(&response, prefix, from, &endpoint)),
        None => Err(EtcdError::Protocol {
            endpoint,
            method: proto::WATCH,
            what: "watch stream ended before the watch was created".to_owned(),
        }
        .into()),
    }
}

/// The error for a canceled (or refused) watch.
fn canceled(
    response: &proto::WatchResponse,
    prefix: &str,
    from: Revision,
    endpoint: &str,
) -> StoreError {
    if response.compact_revision > 0 {
        StoreError::Compacted {
            prefix: prefix.to_owned(),
            revision: from,
        }
    } else {
        EtcdError::WatchCanceled {
            endpoint: endpoint.to_owned(),
            prefix: prefix.to_owned(),
            reason: if response.cancel_reason.is_empty() {
                "no reason given".to_owned()
            } else {
                response.cancel_reason.clone()
            },
        }
        .into()
    }
}

/// Yields the next event; ends after an error.
async fn next(state: Option<State>) -> Option<(Result<Event, StoreError>, Option<State>)> {
    let mut state = state?;
    loop {
        if let Some(event) = state.pending.pop_front() {
            return Some((Ok(event), Some(state)));
        }
        let error = match state.opened.responses.message().await {
            Ok(Some(response)) => {
                if response.canceled {
                    let error =
                        canceled(&response, &state.prefix, state.last, &state.opened.endpoint);
                    return Some((Err(error), None));
                }
                if let Err(error) = queue(&mut state, response.events) {
                    return Some((Err(error), None));
                }
                continue;
            }
            Ok(None) => "stream ended".to_owned(),
            Err(status) => status.message().to_owned(),
        };
        tracing::debug!(
            prefix = %state.prefix,
            endpoint = %state.opened.endpoint,
            %error,
            "etcd watch broke; re-creating it"
        );
        match reopen(&state).await {
            Ok(opened) => state.opened = opened,
            Err(error) => return Some((Err(error), None)),
        }
    }
}

/// Queues the events of revisions after `state.last`.
fn queue(state: &mut State, events: Vec<proto::Event>) -> Result<(), StoreError> {
    let floor = state.last;
    for event in events {
        let endpoint = &state.opened.endpoint;
        let Some(kv) = event.kv else {
            return Err(EtcdError::Protocol {
                endpoint: endpoint.clone(),
                method: proto::WATCH,
                what: "event without a key".to_owned(),
            }
            .into());
        };
        let revision = Revision::try_from(kv.mod_revision).unwrap_or(0);
        if revision <= floor {
            continue;
        }
        let key = utf8_key(kv.key, endpoint, proto::WATCH)?;
        let event = match proto::EventType::try_from(event.r#type) {
            Ok(proto::EventType::Put) => Event::Put {
                key,
                value: kv.value,
                revision,
            },
            Ok(proto::EventType::Delete) => Event::Delete { key, revision },
            Err(_) => {
                return Err(EtcdError::Protocol {
                    endpoint: endpoint.clone(),
                    method: proto::WATCH,
                    what: format!("unknown event type {}", event.r#type),
                }
                .into())
            }
        };
        state.last = state.last.max(revision);
        state.pending.push_back(event);
    }
    Ok(())
}

/// Re-creates the watch after `state.last`, retrying with backoff.
async fn reopen(state: &State) -> Result<Opened, StoreError> {
    let mut backoff = REOPEN_BACKOFF;
    let mut attempt = 1;
    loop {
        match open(&state.client, &state.prefix, state.last).await {
            Ok(opened) => return Ok(opened),
            Err(error @ StoreError::Compacted { .. }) => return Err(error),
            Err(error) if attempt >= REOPEN_ATTEMPTS => return Err(error),
            Err(error) => {
                tracing::debug!(prefix = %state.prefix, %error, attempt, "etcd watch not re-created yet");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff *= 2;
        attempt += 1;
    }
}
