//! PeerAuthentication: whether workloads accept plain text, mTLS or both, mesh-wide,
//! per namespace, per workload and per port.

use crate::rules;
use crate::security::WorkloadSelector;
use crate::validate::{Validate, Validator};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `security.istio.io` PeerAuthentication.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerAuthentication {
    /// The workloads this applies to; the whole namespace (or mesh, in the root
    /// namespace) when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// The mode for all ports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtls: Option<MutualTls>,
    /// Modes for single ports (the workload's port numbers); needs a selector. Keys may
    /// be written quoted or not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_level_mtls: Option<BTreeMap<u32, MutualTls>>,
}

/// An mTLS setting.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct MutualTls {
    /// The mode; `UNSET` inherits from the parent scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<MtlsMode>,
}

/// mTLS modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    /// Inherit from the parent scope (PERMISSIVE at the top).
    Unset,
    /// Plain text only.
    Disable,
    /// Plain text and mTLS.
    Permissive,
    /// mTLS only.
    Strict,
}

impl Validate for PeerAuthentication {
    fn validate(&self, v: &mut Validator<'_>) {
        let no_selector = self
            .selector
            .as_ref()
            .is_none_or(|s| s.match_labels.is_empty());
        if let Some(ports) = &self.port_level_mtls {
            v.at("portLevelMtls", |v| {
                if ports.is_empty() {
                    v.error("portLevelMtls, if given, must have at least one port");
                }
                if no_selector && !ports.is_empty() {
                    v.error("a mesh- or namespace-wide peer authentication (no selector) cannot have portLevelMtls");
                }
                for port in ports.keys() {
                    v.at(&port.to_string(), |v| v.check(rules::check_port(*port)));
                }
            });
        }
        v.field("selector", &self.selector);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{Kind, Spec};
    use crate::testing::{err, ok, warn};

    const K: Kind = Kind::PeerAuthentication;

    #[test]
    fn port_keys_come_quoted_and_unquoted() {
        let p = match ok(
            K,
            "selector: {matchLabels: {app: a}}\nmtls: {mode: STRICT}\nportLevelMtls:\n  80: {mode: DISABLE}\n  \"8080\": {mode: PERMISSIVE}\n",
        )
        .spec
        {
            Spec::PeerAuthentication(p) => p,
            other => panic!("{other:?}"),
        };
        let ports = p.port_level_mtls.expect("ports");
        assert_eq!(ports[&80].mode, Some(MtlsMode::Disable));
        assert_eq!(ports[&8080].mode, Some(MtlsMode::Permissive));
    }

    #[test]
    fn rules() {
        err(
            K,
            "portLevelMtls: {80: {mode: DISABLE}}\n",
            ".portLevelMtls",
        );
        err(
            K,
            "selector: {matchLabels: {app: a}}\nportLevelMtls: {}\n",
            ".portLevelMtls",
        );
        err(
            K,
            "selector: {matchLabels: {app: a}}\nportLevelMtls: {0: {mode: DISABLE}}\n",
            ".portLevelMtls.0",
        );
        err(
            K,
            "selector: {matchLabels: {app: a}}\nportLevelMtls: {http: {mode: DISABLE}}\n",
            ".portLevelMtls.http",
        );
        err(K, "mtls: {mode: STRICTT}\n", ".mtls.mode");
        err(
            K,
            "selector: {matchLabels: {app: \"a*\"}}\n",
            ".selector.matchLabels.app",
        );
        warn(K, "selector: {}\n", ".selector.matchLabels");
        ok(K, "mtls: {mode: UNSET}\n");
    }
}
