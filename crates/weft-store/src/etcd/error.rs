//! [`EtcdError`]: how the etcd store fails — each variant names the endpoint (or URL)
//! at fault — and the etcd error messages the store turns into its own outcomes
//! (etcd's `api/v3rpc/rpctypes/error.go`).

use std::time::Duration;

/// Why the etcd store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdError {
    /// The store URL is not `etcd://host:port[,host:port...]`.
    #[error("invalid etcd URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No endpoint accepted a connection.
    #[error("cannot reach any etcd endpoint of {url} (last tried {endpoint}): {source}")]
    Unreachable {
        /// The store URL.
        url: String,
        /// The last endpoint tried.
        endpoint: String,
        /// Its connection error.
        #[source]
        source: tonic::transport::Error,
    },
    /// etcd answered a call with an error.
    #[error("etcd {endpoint}: {method} failed: {}: {}", status.code(), status.message())]
    Rpc {
        /// The endpoint, `host:port`.
        endpoint: String,
        /// The gRPC method.
        method: &'static str,
        /// etcd's status.
        #[source]
        status: Box<tonic::Status>,
    },
    /// A call got no answer in time.
    #[error("etcd {endpoint}: {method} got no answer within {after:?}")]
    Timeout {
        /// The endpoint, `host:port`.
        endpoint: String,
        /// The gRPC method.
        method: &'static str,
        /// The time allowed.
        after: Duration,
    },
    /// etcd answered with something the store cannot use.
    #[error("etcd {endpoint}: {method}: {what}")]
    Protocol {
        /// The endpoint, `host:port`.
        endpoint: String,
        /// The gRPC method.
        method: &'static str,
        /// What was wrong.
        what: String,
    },
    /// etcd canceled a watch for a reason other than compaction.
    #[error("etcd {endpoint}: watch of {prefix:?} canceled: {reason}")]
    WatchCanceled {
        /// The endpoint, `host:port`.
        endpoint: String,
        /// The watched prefix.
        prefix: String,
        /// etcd's reason.
        reason: String,
    },
}

impl EtcdError {
    /// The status message etcd sent, if this is an etcd answer.
    pub(super) fn etcd_message(&self) -> Option<&str> {
        match self {
            EtcdError::Rpc { status, .. } => Some(status.message()),
            _ => None,
        }
    }
}

/// etcd's messages for the errors the store maps to its own outcomes.
pub(super) const ERR_COMPACTED: &str = "required revision has been compacted";
pub(super) const ERR_FUTURE_REV: &str = "required revision is a future revision";
pub(super) const ERR_LEASE_NOT_FOUND: &str = "requested lease not found";
