//! [`Txn`]: checks plus writes applied all-or-nothing at one revision — how "apply this
//! file" lands every resource or none. A transaction may touch each key at most once
//! (etcd's rule, kept for both backends so behaviour does not depend on the backend).

use std::collections::HashSet;

use crate::{validate_key, LeaseId, Revision, StoreError};

/// A precondition: `key`'s mod revision must be `mod_revision` (0 = must not exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The key checked.
    pub key: String,
    /// Its required mod revision (0 = absent).
    pub mod_revision: Revision,
}

/// One write of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    /// Write `value` under `key`, bound to `lease` if given.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// The lease to bind the key to; `None` detaches any lease.
        lease: Option<LeaseId>,
    },
    /// Delete `key` (nothing happens if it does not exist).
    Delete {
        /// The key.
        key: String,
    },
}

impl TxnOp {
    /// The key the operation writes.
    pub fn key(&self) -> &str {
        match self {
            TxnOp::Put { key, .. } | TxnOp::Delete { key } => key,
        }
    }
}

/// Checks and writes applied together: all writes if every check holds, else none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    /// Preconditions, all of which must hold.
    pub checks: Vec<Check>,
    /// Writes, applied in order at one revision.
    pub ops: Vec<TxnOp>,
}

impl Txn {
    /// An empty transaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the precondition that `key`'s mod revision is `mod_revision` (0 = absent).
    pub fn check(mut self, key: impl Into<String>, mod_revision: Revision) -> Self {
        self.checks.push(Check {
            key: key.into(),
            mod_revision,
        });
        self
    }

    /// Adds a put.
    pub fn put(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.ops.push(TxnOp::Put {
            key: key.into(),
            value: value.into(),
            lease: None,
        });
        self
    }

    /// Adds a put bound to `lease`.
    pub fn put_with_lease(
        mut self,
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
        lease: LeaseId,
    ) -> Self {
        self.ops.push(TxnOp::Put {
            key: key.into(),
            value: value.into(),
            lease: Some(lease),
        });
        self
    }

    /// Adds a delete.
    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.ops.push(TxnOp::Delete { key: key.into() });
        self
    }

    /// Rejects empty keys and a key written twice.
    pub fn validate(&self) -> Result<(), StoreError> {
        for check in &self.checks {
            validate_key(&check.key)?;
        }
        let mut seen = HashSet::with_capacity(self.ops.len());
        for op in &self.ops {
            validate_key(op.key())?;
            if !seen.insert(op.key()) {
                return Err(StoreError::InvalidKey {
                    key: op.key().to_owned(),
                    reason: "a transaction may write each key only once",
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_collects_checks_and_ops_in_order() {
        let txn = Txn::new()
            .check("/a", 3)
            .put("/a", "1")
            .delete("/b")
            .put_with_lease("/c", "2", LeaseId(7));
        assert_eq!(txn.checks.len(), 1);
        assert_eq!(
            txn.ops.iter().map(TxnOp::key).collect::<Vec<_>>(),
            ["/a", "/b", "/c"]
        );
        assert!(txn.validate().is_ok());
    }

    #[test]
    fn a_key_written_twice_is_rejected() {
        let txn = Txn::new().put("/a", "1").delete("/a");
        match txn.validate() {
            Err(StoreError::InvalidKey { key, .. }) => assert_eq!(key, "/a"),
            other => panic!("expected InvalidKey, got {other:?}"),
        }
    }

    #[test]
    fn empty_keys_are_rejected_in_checks_and_ops() {
        assert!(Txn::new().check("", 0).validate().is_err());
        assert!(Txn::new().put("", "x").validate().is_err());
    }
}
