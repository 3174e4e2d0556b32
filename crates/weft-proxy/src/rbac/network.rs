//! The network RBAC filter (`envoy.filters.network.rbac`): judged once per connection,
//! after TLS and before the terminal filter (TCP proxy or HTTP connection manager). A
//! denied connection is closed without a byte forwarded.
//!
//! Envoy judges on the first byte from the client; Weft judges as soon as the
//! connection is accepted (everything a network rule reads is known by then), so a
//! denied connection never opens an upstream one. A connection's inputs do not change,
//! so `CONTINUOUS` enforcement decides the same as `ONE_TIME_ON_FIRST_BYTE`.

use super::matcher::Input;
use super::{Engine, Verdict};
use crate::stream_info::Downstream;

/// A compiled network RBAC filter.
#[derive(Debug)]
pub struct NetworkRbac {
    /// Its `stat_prefix`.
    pub stat_prefix: String,
    /// The rules; `None`: no rules, every connection passes.
    pub engine: Option<Engine>,
}

impl NetworkRbac {
    /// The policy that denies `conn`, if one does (or `none` for an ALLOW filter
    /// nothing matched).
    pub fn denies<'a>(&'a self, conn: &Downstream) -> Option<&'a str> {
        match self.engine.as_ref()?.evaluate(&Input::connection(conn)) {
            Verdict::Allow => None,
            Verdict::Deny(policy) => Some(policy),
        }
    }
}

/// The first filter of `filters` that denies `conn`, with Envoy's termination details
/// (`rbac_access_denied_matched_policy[NAME]`); the filters after it are not run.
pub fn check(filters: &[NetworkRbac], conn: &Downstream) -> Result<(), String> {
    for f in filters {
        if let Some(policy) = f.denies(conn) {
            tracing::debug!(
                stat_prefix = f.stat_prefix,
                policy,
                peer = %conn.remote,
                "RBAC denied the connection; closing"
            );
            return Err(super::denied_details(policy));
        }
    }
    Ok(())
}
