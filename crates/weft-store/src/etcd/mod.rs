//! The etcd store: etcd v3's gRPC API, for several control-plane replicas sharing one
//! etcd cluster (`etcd://host:port,host:port`).
//!
//! It speaks gRPC through `tonic::client::Grpc` with `tonic-prost`'s codec and the
//! message structs in `proto.rs`, written by hand from etcd's `rpc.proto` and `kv.proto`.
//! It does not use the `etcd-client` crate: that crate runs `protoc` at build time and
//! pulls in tonic 0.13 beside the workspace's tonic 0.14 — a second HTTP/2 and gRPC
//! stack in the binary. Nine RPCs' worth of messages is the cheaper dependency.
//!
//! How the [`Store`] contract maps onto etcd (3.4 and later):
//! - **Revisions** are etcd's own store revisions (an empty cluster is at revision 1).
//! - **CAS and transactions** are etcd `Txn`s comparing `mod_revision` (0 for "must not
//!   exist"); on failure the transaction reads the checked keys in the same revision so
//!   the [`StoreError::Conflict`] can name the key and its actual revision. etcd limits a
//!   transaction to `--max-txn-ops` operations (128 by default).
//! - **Watches** are etcd watches with `start_revision = from + 1`. Whether `from` is
//!   still in etcd's history is checked first with a read at that revision, so a
//!   compacted start fails the `watch` call itself; should a compaction race that
//!   check, etcd cancels the watch and the stream yields [`StoreError::Compacted`]. A
//!   watch whose connection breaks reconnects (failing over between endpoints) and
//!   resumes after the last revision it delivered. etcd does not compact by itself
//!   unless started with `--auto-compaction-*`; [`Store::compact`] is etcd's `Compact`.
//! - **Leases** are etcd leases; `keep_alive` is one round trip on etcd's
//!   `LeaseKeepAlive` stream. etcd raises a TTL below its minimum (1.5 × the election
//!   timeout, rounded up to a second) to that minimum.

mod client;
mod error;
mod proto;
mod watch;

use std::time::Duration;

use std::sync::Arc;

use client::{Client, Retry};
use proto::{request_op, response_op};

pub use client::DEFAULT_PORT;
pub use error::EtcdError;
use error::{ERR_COMPACTED, ERR_FUTURE_REV, ERR_LEASE_NOT_FOUND};

use crate::{
    ttl_seconds, validate_key, KeyValue, LeaseId, Listing, Revision, Store, StoreError, Txn, TxnOp,
    Versioned, WatchStream,
};

/// Keys fetched per page when listing.
const LIST_PAGE: i64 = 1000;
/// Listings restarted when a compaction overtakes the paging, at most.
const LIST_ATTEMPTS: usize = 3;

/// The etcd store. Cheap to share as `Arc<dyn Store>`.
#[derive(Debug)]
pub struct EtcdStore {
    client: Arc<Client>,
}

impl EtcdStore {
    /// Connects to `url` (`etcd://host:port[,host:port...]`, port 2379 if omitted),
    /// failing over between the endpoints in order. Plain-text gRPC only, for now.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Ok(Self {
            client: Arc::new(Client::connect(url).await?),
        })
    }

    /// The endpoints, `host:port`, in failover order.
    pub fn endpoints(&self) -> &[String] {
        self.client.endpoints()
    }

    /// Lists `prefix` page by page, every page at the first page's revision.
    async fn list_pages(&self, prefix: &str) -> Result<Listing, StoreError> {
        let (mut key, range_end) = prefix_range(prefix);
        let mut items = Vec::new();
        let mut revision = 0;
        loop {
            // Later pages read at the first page's revision: one consistent listing.
            let (response, endpoint) = self
                .range(proto::RangeRequest {
                    key: key.clone(),
                    range_end: range_end.clone(),
                    limit: LIST_PAGE,
                    revision: to_etcd(revision),
                    ..Default::default()
                })
                .await?;
            if revision == 0 {
                revision = header_revision(response.header.as_ref(), &endpoint, proto::KV_RANGE)?;
            }
            let more = response.more;
            for kv in response.kvs {
                key = kv.key.clone();
                key.push(0);
                items.push(KeyValue {
                    key: utf8_key(kv.key, &endpoint, proto::KV_RANGE)?,
                    value: kv.value,
                    mod_revision: Revision::try_from(kv.mod_revision).unwrap_or(0),
                });
            }
            if !more {
                return Ok(Listing { items, revision });
            }
        }
    }

    /// A `Range` call (safe to repeat on another endpoint).
    async fn range(
        &self,
        request: proto::RangeRequest,
    ) -> Result<(proto::RangeResponse, String), StoreError> {
        Ok(self
            .client
            .unary(proto::KV_RANGE, request, Retry::Always)
            .await?)
    }

    /// Runs a transaction of `checks` and `ops` (already validated).
    async fn run_txn(&self, txn: Txn) -> Result<(Revision, bool), StoreError> {
        let compare = txn
            .checks
            .iter()
            .map(|check| proto::Compare {
                result: proto::CompareResult::Equal as i32,
                target: proto::CompareTarget::Mod as i32,
                key: check.key.as_bytes().to_vec(),
                target_union: Some(proto::compare::TargetUnion::ModRevision(to_etcd(
                    check.mod_revision,
                ))),
            })
            .collect();
        // On failure, read the checked keys at the same revision to name the conflict.
        let failure = txn
            .checks
            .iter()
            .map(|check| proto::RequestOp {
                request: Some(request_op::Request::RequestRange(proto::RangeRequest {
                    key: check.key.as_bytes().to_vec(),
                    keys_only: true,
                    ..Default::default()
                })),
            })
            .collect();
        let leases: Vec<LeaseId> = txn
            .ops
            .iter()
            .filter_map(|op| match op {
                TxnOp::Put { lease, .. } => *lease,
                TxnOp::Delete { .. } => None,
            })
            .collect();
        if let Some(&lease) = leases.iter().find(|lease| lease.0 == 0) {
            return Err(StoreError::LeaseNotFound { lease });
        }
        let success = txn
            .ops
            .iter()
            .map(|op| proto::RequestOp {
                request: Some(match op {
                    TxnOp::Put { key, value, lease } => {
                        request_op::Request::RequestPut(proto::PutRequest {
                            key: key.as_bytes().to_vec(),
                            value: value.clone(),
                            lease: lease.map_or(0, |lease| lease.0),
                        })
                    }
                    TxnOp::Delete { key } => {
                        request_op::Request::RequestDeleteRange(proto::DeleteRangeRequest {
                            key: key.as_bytes().to_vec(),
                            range_end: Vec::new(),
                        })
                    }
                }),
            })
            .collect();
        let request = proto::TxnRequest {
            compare,
            success,
            failure,
        };
        let (response, endpoint): (proto::TxnResponse, _) = self
            .client
            .unary(proto::KV_TXN, request, Retry::IfNotSent)
            .await
            .map_err(|error| match error.etcd_message() {
                Some(message) if message.contains(ERR_LEASE_NOT_FOUND) => {
                    StoreError::LeaseNotFound {
                        lease: leases.first().copied().unwrap_or(LeaseId(0)),
                    }
                }
                _ => error.into(),
            })?;
        let revision = header_revision(response.header.as_ref(), &endpoint, proto::KV_TXN)?;
        if response.succeeded {
            let changed = response.responses.iter().any(|op| match &op.response {
                Some(response_op::Response::ResponsePut(_)) => true,
                Some(response_op::Response::ResponseDeleteRange(delete)) => delete.deleted > 0,
                _ => false,
            });
            return Ok((revision, changed));
        }
        let actuals = response.responses.iter().map(|op| match &op.response {
            Some(response_op::Response::ResponseRange(range)) => range
                .kvs
                .first()
                .map_or(0, |kv| Revision::try_from(kv.mod_revision).unwrap_or(0)),
            _ => 0,
        });
        let conflict = txn
            .checks
            .iter()
            .zip(actuals)
            .find(|(check, actual)| check.mod_revision != *actual)
            .or_else(|| txn.checks.first().map(|check| (check, 0)));
        match conflict {
            Some((check, actual)) => Err(StoreError::Conflict {
                key: check.key.clone(),
                expected: check.mod_revision,
                actual,
            }),
            None => Err(EtcdError::Protocol {
                endpoint,
                method: proto::KV_TXN,
                what: "transaction without checks failed".to_owned(),
            }
            .into()),
        }
    }
}

/// A store revision as etcd's signed revision.
fn to_etcd(revision: Revision) -> i64 {
    i64::try_from(revision).unwrap_or(i64::MAX)
}

/// The end of the key range holding every key that starts with `prefix`: `prefix`
/// with its last byte below 0xff incremented (trailing 0xff bytes dropped); `"\0"`
/// (= no end) for the empty prefix or an all-0xff one.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The key range for `prefix`: `(key, range_end)`. All keys for `""`.
pub(crate) fn prefix_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() {
        (vec![0], vec![0])
    } else {
        (prefix.as_bytes().to_vec(), prefix_end(prefix.as_bytes()))
    }
}

/// The revision an answer's header reports.
fn header_revision(
    header: Option<&proto::ResponseHeader>,
    endpoint: &str,
    method: &'static str,
) -> Result<Revision, StoreError> {
    header
        .and_then(|header| Revision::try_from(header.revision).ok())
        .ok_or_else(|| {
            EtcdError::Protocol {
                endpoint: endpoint.to_owned(),
                method,
                what: "answer without a revision header".to_owned(),
            }
            .into()
        })
}

/// A key from etcd as UTF-8.
pub(crate) fn utf8_key(
    key: Vec<u8>,
    endpoint: &str,
    method: &'static str,
) -> Result<String, StoreError> {
    String::from_utf8(key).map_err(|error| {
        EtcdError::Protocol {
            endpoint: endpoint.to_owned(),
            method,
            what: format!(
                "key {:?} is not UTF-8",
                String::from_utf8_lossy(error.as_bytes())
            ),
        }
        .into()
    })
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        validate_key(key)?;
        let (response, _) = self
            .range(proto::RangeRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            })
            .await?;
        Ok(response.kvs.into_iter().next().map(|kv| Versioned {
            value: kv.value,
            mod_revision: Revision::try_from(kv.mod_revision).unwrap_or(0),
        }))
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        let mut attempt = 1;
        loop {
            match self.list_pages(prefix).await {
                // A compaction overtook the paging: list again at the new revision.
                Err(StoreError::Etcd(error))
                    if attempt < LIST_ATTEMPTS
                        && error
                            .etcd_message()
                            .is_some_and(|m| m.contains(ERR_COMPACTED)) =>
                {
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        let (response, endpoint) = self
            .range(proto::RangeRequest {
                key: vec![0],
                count_only: true,
                ..Default::default()
            })
            .await?;
        header_revision(response.header.as_ref(), &endpoint, proto::KV_RANGE)
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        validate_key(key)?;
        let (response, endpoint): (proto::PutResponse, _) = self
            .client
            .unary(
                proto::KV_PUT,
                proto::PutRequest {
                    key: key.as_bytes().to_vec(),
                    value,
                    lease: 0,
                },
                Retry::IfNotSent,
            )
            .await?;
        header_revision(response.header.as_ref(), &endpoint, proto::KV_PUT)
    }

    async fn put_with_lease(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: LeaseId,
    ) -> Result<Revision, StoreError> {
        let txn = Txn::new().put_with_lease(key, value, lease);
        txn.validate()?;
        Ok(self.run_txn(txn).await?.0)
    }

    async fn put_if(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
    ) -> Result<Revision, StoreError> {
        let txn = Txn::new().check(key, expected).put(key, value);
        txn.validate()?;
        Ok(self.run_txn(txn).await?.0)
    }

    async fn delete(&self, key: &str) -> Result<Option<Revision>, StoreError> {
        validate_key(key)?;
        let (response, endpoint): (proto::DeleteRangeResponse, _) = self
            .client
            .unary(
                proto::KV_DELETE_RANGE,
                proto::DeleteRangeRequest {
                    key: key.as_bytes().to_vec(),
                    range_end: Vec::new(),
                },
                Retry::IfNotSent,
            )
            .await?;
        let revision =
            header_revision(response.header.as_ref(), &endpoint, proto::KV_DELETE_RANGE)?;
        Ok((response.deleted > 0).then_some(revision))
    }

    async fn delete_if(&self, key: &str, expected: Revision) -> Result<Revision, StoreError> {
        let txn = Txn::new().check(key, expected).delete(key);
        txn.validate()?;
        Ok(self.run_txn(txn).await?.0)
    }

    async fn txn(&self, txn: Txn) -> Result<Revision, StoreError> {
        txn.validate()?;
        Ok(self.run_txn(txn).await?.0)
    }

    async fn watch(
        &self,
        prefix: &str,
        from_revision: Revision,
    ) -> Result<WatchStream, StoreError> {
        // Is `from_revision` still in etcd's history? A read at that revision says so
        // exactly: etcd refuses reads below its compaction revision.
        let check = self
            .range(proto::RangeRequest {
                key: vec![0],
                count_only: true,
                revision: to_etcd(from_revision.max(1)),
                ..Default::default()
            })
            .await;
        match check {
            Ok(_) => {}
            Err(StoreError::Etcd(error)) => match error.etcd_message() {
                Some(message) if message.contains(ERR_COMPACTED) => {
                    return Err(StoreError::Compacted {
                        prefix: prefix.to_owned(),
                        revision: from_revision,
                    })
                }
                Some(message) if message.contains(ERR_FUTURE_REV) => {}
                _ => return Err(StoreError::Etcd(error)),
            },
            Err(other) => return Err(other),
        }
        watch::watch(Arc::clone(&self.client), prefix.to_owned(), from_revision).await
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let result: Result<(proto::CompactionResponse, _), EtcdError> = self
            .client
            .unary(
                proto::KV_COMPACT,
                proto::CompactionRequest {
                    revision: to_etcd(revision),
                    physical: true,
                },
                Retry::Always,
            )
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) => match error.etcd_message() {
                Some(message) if message.contains(ERR_COMPACTED) => Ok(()),
                Some(message) if message.contains(ERR_FUTURE_REV) => {
                    Err(StoreError::FutureRevision { revision })
                }
                _ => Err(error.into()),
            },
        }
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let (response, endpoint): (proto::LeaseGrantResponse, _) = self
            .client
            .unary(
                proto::LEASE_GRANT,
                proto::LeaseGrantRequest {
                    ttl: i64::try_from(ttl_seconds(ttl)).unwrap_or(i64::MAX),
                    id: 0,
                },
                Retry::IfNotSent,
            )
            .await?;
        if !response.error.is_empty() || response.id == 0 {
            return Err(EtcdError::Protocol {
                endpoint,
                method: proto::LEASE_GRANT,
                what: format!("lease not granted: {:?}", response.error),
            }
            .into());
        }
        Ok(LeaseId(response.id))
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        let request = proto::LeaseKeepAliveRequest { id: lease.0 };
        let (mut responses, (), endpoint) = self
            .client
            .streaming(proto::LEASE_KEEP_ALIVE, Retry::Always, || {
                (futures_util::stream::iter([request.clone()]), ())
            })
            .await?;
        let response: Option<proto::LeaseKeepAliveResponse> =
            tokio::time::timeout(client::RPC_TIMEOUT, responses.message())
                .await
                .map_err(|_| EtcdError::Timeout {
                    endpoint: endpoint.clone(),
                    method: proto::LEASE_KEEP_ALIVE,
                    after: client::RPC_TIMEOUT,
                })?
                .map_err(|status| EtcdError::Rpc {
                    endpoint: endpoint.clone(),
                    method: proto::LEASE_KEEP_ALIVE,
                    status: Box::new(status),
                })?;
        match response {
            // etcd answers TTL 0 for a lease it does not know.
            Some(response) if response.ttl > 0 => Ok(()),
            Some(_) => Err(StoreError::LeaseNotFound { lease }),
            None => Err(EtcdError::Protocol {
                endpoint,
                method: proto::LEASE_KEEP_ALIVE,
                what: "stream ended without an answer".to_owned(),
            }
            .into()),
        }
    }

    async fn revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        let result: Result<(proto::LeaseRevokeResponse, _), EtcdError> = self
            .client
            .unary(
                proto::LEASE_REVOKE,
                proto::LeaseRevokeRequest { id: lease.0 },
                Retry::IfNotSent,
            )
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) => match error.etcd_message() {
                Some(message) if message.contains(ERR_LEASE_NOT_FOUND) => {
                    Err(StoreError::LeaseNotFound { lease })
                }
                _ => Err(error.into()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), [0]);
        assert_eq!(prefix_range(""), (vec![0], vec![0]));
    }
}
