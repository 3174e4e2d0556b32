//! `security.istio.io` kinds (v1beta1 and v1 share one schema): PeerAuthentication,
//! AuthorizationPolicy and RequestAuthentication, with the selector and target
//! reference types they share.

pub mod authorization_policy;
pub mod peer_authentication;
pub mod request_authentication;

pub use authorization_policy::AuthorizationPolicy;
pub use peer_authentication::PeerAuthentication;
pub use request_authentication::RequestAuthentication;

use crate::rules;
use crate::validate::{Validate, Validator};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Selects workloads by label (`matchLabels`, as in Istio's `type.v1beta1`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSelector {
    /// Labels a workload must carry, all of them.
    pub match_labels: BTreeMap<String, String>,
}

impl Validate for WorkloadSelector {
    fn validate(&self, v: &mut Validator<'_>) {
        v.at("matchLabels", |v| {
            rules::check_selector_labels(v, &self.match_labels)
        });
    }
}

/// Attaches a policy to a Service, ServiceEntry or Gateway instead of a selector.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyTargetReference {
    /// API group (`""` for core Services).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// `Service`, `ServiceEntry` or `Gateway`.
    pub kind: String,
    /// The target's name.
    pub name: String,
    /// Must be empty: cross-namespace references are not supported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// (group, kind) pairs a policy may target.
const TARGET_KINDS: &[(&str, &str)] = &[
    ("", "Service"),
    ("core", "Service"),
    ("networking.istio.io", "ServiceEntry"),
    ("gateway.networking.k8s.io", "Gateway"),
];

impl Validate for PolicyTargetReference {
    fn validate(&self, v: &mut Validator<'_>) {
        if self.name.is_empty() {
            v.required("name");
        }
        if self.namespace.as_deref().is_some_and(|n| !n.is_empty()) {
            v.error_at(
                "namespace",
                "targetRef namespace must not be set: cross-namespace references are not supported",
            );
        }
        if !TARGET_KINDS
            .iter()
            .any(|(g, k)| *g == self.group && *k == self.kind)
        {
            v.error_at(
                "kind",
                format!(
                    "targetRef must be a Service, a networking.istio.io ServiceEntry or a gateway.networking.k8s.io Gateway, not {}/{}",
                    self.group, self.kind
                ),
            );
        }
    }
}

/// At most one of `selector`, `targetRef` and `targetRefs`, each valid.
pub(crate) fn check_targets(
    v: &mut Validator<'_>,
    selector: Option<&WorkloadSelector>,
    target_ref: Option<&PolicyTargetReference>,
    target_refs: &[PolicyTargetReference],
) {
    let set = usize::from(selector.is_some())
        + usize::from(target_ref.is_some())
        + usize::from(!target_refs.is_empty());
    if set > 1 {
        v.error("only one of selector, targetRef and targetRefs may be set");
    }
    if let Some(s) = selector {
        v.field("selector", s);
    }
    if let Some(t) = target_ref {
        v.field("targetRef", t);
    }
    v.list("targetRefs", target_refs);
}
