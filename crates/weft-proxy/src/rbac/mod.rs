//! Role-based access control (`envoy.config.rbac.v3.RBAC`): compiled policies and the
//! decision they make for one request or connection. The HTTP filter
//! (`http::rbac`) and the network filter ([`network`]) both run an [`Engine`].
//!
//! A policy matches when one of its permissions and one of its principals match; the
//! policies are tried in lexicographic order of their names and the first that matches
//! decides: ALLOW allows only then, DENY denies only then, LOG allows always and counts
//! the match. Every decision is counted in `weft_rbac_{allowed,denied,logged}_total`,
//! labelled by where the rules were configured (`stat_prefix`) and the policy that
//! decided (`policy`, `none` when none matched).

pub mod matcher;
pub mod network;

use crate::metrics::Metrics;
use matcher::{Input, Permission, Principal};
use prometheus_client::metrics::counter::Counter;
use std::sync::Arc;

/// Envoy's body for a request an RBAC filter denied.
pub const DENIED_BODY: &str = "RBAC: access denied";

/// The policy name reported when no policy matched.
pub const NO_POLICY: &str = "none";

/// What the policies do when one matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Allow only what a policy matches.
    Allow,
    /// Deny what a policy matches.
    Deny,
    /// Allow everything; count what a policy matches (Istio's AUDIT).
    Log,
}

/// One named policy.
#[derive(Debug)]
pub struct Policy {
    /// Its name, as configured.
    pub name: Arc<str>,
    /// One must match.
    pub permissions: Vec<Permission>,
    /// One must match.
    pub principals: Vec<Principal>,
    /// Counts the decisions it made.
    matched: Counter,
}

impl Policy {
    /// A policy; its counter is attached by [`Engine::new`].
    pub fn new(name: &str, permissions: Vec<Permission>, principals: Vec<Principal>) -> Policy {
        Policy {
            name: name.into(),
            permissions,
            principals,
            matched: Counter::default(),
        }
    }

    fn matches(&self, input: &Input<'_>) -> bool {
        self.permissions.iter().any(|p| p.matches(input))
            && self.principals.iter().any(|p| p.matches(input))
    }
}

/// The outcome of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// Let it pass.
    Allow,
    /// Refuse it; the policy that decided, or [`NO_POLICY`].
    Deny(&'a str),
}

/// A compiled `RBAC` message with its metric handles.
#[derive(Debug)]
pub struct Engine {
    action: Action,
    /// Sorted by name: Envoy evaluates in that order, so the first match is the same.
    policies: Vec<Policy>,
    /// Counts the decisions no policy made.
    unmatched: Counter,
}

impl Engine {
    /// An engine over `policies`, counting under `stat_prefix` in `metrics`.
    pub fn new(
        action: Action,
        mut policies: Vec<Policy>,
        stat_prefix: &str,
        metrics: &Metrics,
    ) -> Engine {
        policies.sort_by(|a, b| a.name.cmp(&b.name));
        let (on_match, on_none) = match action {
            Action::Allow => (Outcome::Allowed, Outcome::Denied),
            Action::Deny => (Outcome::Denied, Outcome::Allowed),
            Action::Log => (Outcome::Logged, Outcome::Allowed),
        };
        for p in &mut policies {
            p.matched = metrics.rbac(on_match, stat_prefix, &p.name);
        }
        Engine {
            action,
            policies,
            unmatched: metrics.rbac(on_none, stat_prefix, NO_POLICY),
        }
    }

    /// The action.
    pub fn action(&self) -> Action {
        self.action
    }

    /// Decides, and counts the decision.
    pub fn evaluate(&self, input: &Input<'_>) -> Verdict<'_> {
        let matched = self.policies.iter().find(|p| p.matches(input));
        match matched {
            Some(p) => p.matched.inc(),
            None => self.unmatched.inc(),
        };
        match (self.action, matched) {
            (Action::Allow, None) => Verdict::Deny(NO_POLICY),
            (Action::Deny, Some(p)) => Verdict::Deny(&p.name),
            _ => Verdict::Allow,
        }
    }
}

/// Which counter a decision goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `weft_rbac_allowed_total`.
    Allowed,
    /// `weft_rbac_denied_total`.
    Denied,
    /// `weft_rbac_logged_total`.
    Logged,
}

/// Envoy's `%RESPONSE_CODE_DETAILS%` (and connection termination details) for a denial.
pub fn denied_details(policy: &str) -> String {
    format!("rbac_access_denied_matched_policy[{policy}]")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream_info::Downstream;

    fn port_policy(name: &str, port: u16) -> Policy {
        Policy::new(
            name,
            vec![Permission::DestinationPort(port)],
            vec![Principal::Any],
        )
    }

    fn conn(port: u16) -> Downstream {
        Downstream {
            id: 1,
            remote: "127.0.0.1:1".parse().expect("peer"),
            local: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            server_name: None,
            listener: "l".into(),
            tls: None,
        }
    }

    #[test]
    fn actions_and_counts() {
        let m = Metrics::new();
        let allow = Engine::new(
            Action::Allow,
            vec![port_policy("b", 80), port_policy("a", 80)],
            "in",
            &m,
        );
        let (c80, c81) = (conn(80), conn(81));
        assert_eq!(allow.evaluate(&Input::connection(&c80)), Verdict::Allow);
        assert_eq!(
            allow.evaluate(&Input::connection(&c81)),
            Verdict::Deny(NO_POLICY)
        );
        let deny = Engine::new(Action::Deny, vec![port_policy("p", 80)], "in", &m);
        assert_eq!(deny.evaluate(&Input::connection(&c80)), Verdict::Deny("p"));
        assert_eq!(deny.evaluate(&Input::connection(&c81)), Verdict::Allow);
        let log = Engine::new(Action::Log, vec![port_policy("audit", 80)], "in", &m);
        assert_eq!(log.evaluate(&Input::connection(&c80)), Verdict::Allow);
        let empty = Engine::new(Action::Allow, vec![], "empty", &m);
        assert_eq!(
            empty.evaluate(&Input::connection(&c80)),
            Verdict::Deny(NO_POLICY)
        );
        let text = m.encode();
        for line in [
            r#"weft_rbac_allowed_total{stat_prefix="in",policy="a"} 1"#,
            r#"weft_rbac_allowed_total{stat_prefix="in",policy="b"} 0"#,
            r#"weft_rbac_denied_total{stat_prefix="in",policy="none"} 1"#,
            r#"weft_rbac_denied_total{stat_prefix="in",policy="p"} 1"#,
            r#"weft_rbac_allowed_total{stat_prefix="in",policy="none"} 1"#,
            r#"weft_rbac_logged_total{stat_prefix="in",policy="audit"} 1"#,
            r#"weft_rbac_denied_total{stat_prefix="empty",policy="none"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        assert_eq!(denied_details("p"), "rbac_access_denied_matched_policy[p]");
    }
}
