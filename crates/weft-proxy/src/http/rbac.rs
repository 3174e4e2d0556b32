//! The HTTP RBAC filter (`envoy.filters.http.rbac`): runs after the route is chosen and
//! before the router acts, in the order the filters are configured (Istio: the JWT
//! filter, then DENY, then ALLOW); the first denial answers 403 `RBAC: access denied`.
//!
//! A route or virtual host may override a filter with an `RBACPerRoute` under the
//! filter's name in `typed_per_filter_config`: the route's wins over the virtual
//! host's, and one without rules turns the filter off there. Overrides live in the
//! route table, which the request loaded when it started, so a route update (RDS swaps
//! tables in place) governs the very next request, on a new connection or an old one.

use super::route::{Route, VirtualHost};
use crate::error::ProxyError;
use crate::rbac::matcher::Input;
use crate::rbac::{Engine, Verdict};
use std::sync::Arc;

/// One RBAC filter of an HTTP connection manager.
#[derive(Debug)]
pub struct HttpRbac {
    /// The filter's name, which per-route overrides are keyed by.
    pub name: Arc<str>,
    /// Its rules; `None`: none configured, every request passes.
    pub engine: Option<Arc<Engine>>,
}

/// `RBACPerRoute` overrides of one route or virtual host, by filter name; an override
/// without an engine turns the filter off.
#[derive(Debug, Default)]
pub struct RbacOverrides(Vec<(Arc<str>, Option<Arc<Engine>>)>);

impl RbacOverrides {
    /// Adds the override for the filter named `filter`.
    pub fn insert(&mut self, filter: &str, engine: Option<Arc<Engine>>) {
        self.0.push((filter.into(), engine));
    }

    /// The override for the filter named `filter`, if there is one.
    pub fn get(&self, filter: &str) -> Option<Option<&Engine>> {
        self.0
            .iter()
            .find(|(name, _)| &**name == filter)
            .map(|(_, e)| e.as_deref())
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl HttpRbac {
    /// Judges a request that took `route` (if one matched; without a route no override
    /// applies, as in Envoy).
    pub fn check(
        &self,
        route: Option<(&VirtualHost, &Route)>,
        input: &Input<'_>,
    ) -> Result<(), ProxyError> {
        let engine = route
            .and_then(|(vh, r)| r.rbac.get(&self.name).or_else(|| vh.rbac.get(&self.name)))
            .unwrap_or(self.engine.as_deref());
        let Some(engine) = engine else {
            return Ok(());
        };
        match engine.evaluate(input) {
            Verdict::Allow => Ok(()),
            Verdict::Deny(policy) => {
                tracing::debug!(filter = %self.name, policy, "RBAC denied the request");
                Err(ProxyError::AccessDenied(crate::rbac::denied_details(
                    policy,
                )))
            }
        }
    }
}
