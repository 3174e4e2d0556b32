//! `metadata`: the name, namespace, labels and annotations of a resource. The fields
//! that `kubectl get -o yaml` adds (`uid`, `resourceVersion`, `managedFields`, ...)
//! are accepted and dropped.

use crate::node::Node;
use crate::rules;
use crate::validate::{Validate, Validator};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The namespace a resource without one lives in.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Fields the Kubernetes API server writes into `metadata`; read and ignored.
pub(crate) const SERVER_FIELDS: &[&str] = &[
    "creationTimestamp",
    "deletionGracePeriodSeconds",
    "deletionTimestamp",
    "finalizers",
    "generation",
    "managedFields",
    "ownerReferences",
    "resourceVersion",
    "selfLink",
    "uid",
];

/// A resource's identity and labels.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObjectMeta {
    /// The name: a DNS-1123 subdomain, unique per kind and namespace.
    pub name: String,
    /// The namespace; [`DEFAULT_NAMESPACE`] when the document gives none.
    pub namespace: String,
    /// Labels, `key: value`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations, `key: value`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ObjectMeta {
    /// Drops the server-written fields from a `metadata` node before it is read.
    pub(crate) fn strip_server_fields(node: &mut Node) {
        for field in SERVER_FIELDS {
            node.remove(field);
        }
    }

    /// Fills in the default namespace.
    pub(crate) fn apply_defaults(&mut self) {
        if self.namespace.is_empty() {
            self.namespace = DEFAULT_NAMESPACE.to_string();
        }
    }
}

impl Validate for ObjectMeta {
    fn validate(&self, v: &mut Validator<'_>) {
        if self.name.is_empty() {
            v.required("name");
        } else {
            v.check_at("name", rules::check_name(&self.name));
        }
        v.check_at("namespace", rules::check_namespace(&self.namespace));
        v.at("labels", |v| rules::check_labels(v, &self.labels));
        v.at("annotations", |v| {
            for key in self.annotations.keys() {
                v.at(key, |v| v.check(rules::check_label_key(key)));
            }
        });
    }
}
