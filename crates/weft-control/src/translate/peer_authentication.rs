//! Which mTLS mode a workload's port accepts, by Istio's PeerAuthentication rules: a
//! policy selecting the workload (in its namespace) over its namespace's policy (no
//! selector) over the mesh's (no selector, in the root namespace); `UNSET` inherits
//! from the level above, and PERMISSIVE is the mode when nothing says otherwise. A
//! workload policy's `portLevelMtls` sets single ports (the application's port
//! numbers). Where several policies compete at one level, the oldest wins in Istio;
//! the store keeps no creation time, so here the first by name wins, and a warning
//! says so.

use super::Diagnostics;
use std::collections::BTreeMap;
use weft_model::security::peer_authentication::{MtlsMode, MutualTls, PeerAuthentication};

/// Istio's root namespace: policies here without a selector apply to the whole mesh.
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";

/// The mode a port ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plain text only.
    Disable,
    /// Plain text and mTLS, told apart per connection.
    Permissive,
    /// mTLS only.
    Strict,
}

impl Mode {
    /// Istio's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Disable => "DISABLE",
            Mode::Permissive => "PERMISSIVE",
            Mode::Strict => "STRICT",
        }
    }
}

/// PeerAuthentications by (namespace, name).
pub type PeerAuthentications = BTreeMap<(String, String), PeerAuthentication>;

/// The policies that decided a port's mode, most specific first, as `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The mode.
    pub mode: Mode,
    /// Policies that set or inherited it, most specific first.
    pub policies: Vec<String>,
}

fn set(m: Option<&MutualTls>) -> Option<MtlsMode> {
    m.and_then(|m| m.mode).filter(|m| *m != MtlsMode::Unset)
}

fn mode(m: MtlsMode) -> Mode {
    match m {
        MtlsMode::Disable => Mode::Disable,
        MtlsMode::Strict => Mode::Strict,
        MtlsMode::Permissive | MtlsMode::Unset => Mode::Permissive,
    }
}

/// The first policy (by name) of `namespace` that `pick` accepts; a warning when more
/// than one would.
fn first<'a>(
    all: &'a PeerAuthentications,
    namespace: &str,
    level: &str,
    pick: impl Fn(&PeerAuthentication) -> bool,
    diagnostics: &mut Diagnostics,
) -> Option<(String, &'a PeerAuthentication)> {
    let mut found = all
        .iter()
        .filter(|((ns, _), p)| ns == namespace && pick(p))
        .map(|((ns, name), p)| (format!("{ns}/{name}"), p));
    let winner = found.next()?;
    let others: Vec<String> = found.map(|(n, _)| n).collect();
    if !others.is_empty() {
        diagnostics.warn(format!(
            "PeerAuthentication: {level} policies {} and {} compete; {} applies",
            winner.0,
            others.join(", "),
            winner.0
        ));
    }
    Some(winner)
}

/// The mode of the workload (`namespace`, `labels`) on application port `port`.
pub fn resolve(
    all: &PeerAuthentications,
    root_namespace: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    port: u16,
    diagnostics: &mut Diagnostics,
) -> Decision {
    let selects = |p: &PeerAuthentication| {
        p.selector.as_ref().is_some_and(|s| {
            !s.match_labels.is_empty()
                && s.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
    };
    let wide = |p: &PeerAuthentication| {
        p.selector
            .as_ref()
            .is_none_or(|s| s.match_labels.is_empty())
    };
    let workload = first(all, namespace, "workload", selects, diagnostics);
    let namespace_wide = first(all, namespace, "namespace", wide, diagnostics);
    let mesh_wide = if namespace == root_namespace {
        None
    } else {
        first(all, root_namespace, "mesh", wide, diagnostics)
    };
    let mut policies = Vec::new();
    if let Some((name, p)) = &workload {
        policies.push(name.clone());
        let port_level = p
            .port_level_mtls
            .as_ref()
            .and_then(|ports| set(ports.get(&u32::from(port))));
        if let Some(m) = port_level.or(set(p.mtls.as_ref())) {
            return Decision {
                mode: mode(m),
                policies,
            };
        }
    }
    for (name, p) in namespace_wide.iter().chain(mesh_wide.iter()) {
        policies.push(name.clone());
        if let Some(m) = set(p.mtls.as_ref()) {
            return Decision {
                mode: mode(m),
                policies,
            };
        }
    }
    Decision {
        mode: Mode::Permissive,
        policies,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_model::security::WorkloadSelector;

    fn pa(
        selector: &[(&str, &str)],
        m: Option<MtlsMode>,
        ports: &[(u32, MtlsMode)],
    ) -> PeerAuthentication {
        PeerAuthentication {
            selector: (!selector.is_empty()).then(|| WorkloadSelector {
                match_labels: selector
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }),
            mtls: m.map(|mode| MutualTls { mode: Some(mode) }),
            port_level_mtls: (!ports.is_empty()).then(|| {
                ports
                    .iter()
                    .map(|(p, mode)| (*p, MutualTls { mode: Some(*mode) }))
                    .collect()
            }),
        }
    }

    fn decide(all: &PeerAuthentications, ns: &str, app: &str, port: u16) -> Decision {
        let labels = BTreeMap::from([("app".to_string(), app.to_string())]);
        resolve(
            all,
            DEFAULT_ROOT_NAMESPACE,
            ns,
            &labels,
            port,
            &mut Diagnostics::default(),
        )
    }

    fn key(ns: &str, name: &str) -> (String, String) {
        (ns.to_string(), name.to_string())
    }

    #[test]
    fn permissive_when_nothing_says_otherwise() {
        let d = decide(&PeerAuthentications::new(), "default", "a", 80);
        assert_eq!(d.mode, Mode::Permissive);
        assert!(d.policies.is_empty());
    }

    #[test]
    fn workload_over_namespace_over_mesh() {
        let mut all = PeerAuthentications::new();
        all.insert(
            key("istio-system", "default"),
            pa(&[], Some(MtlsMode::Strict), &[]),
        );
        assert_eq!(decide(&all, "default", "a", 80).mode, Mode::Strict);
        all.insert(
            key("default", "ns"),
            pa(&[], Some(MtlsMode::Permissive), &[]),
        );
        assert_eq!(decide(&all, "default", "a", 80).mode, Mode::Permissive);
        assert_eq!(decide(&all, "other", "a", 80).mode, Mode::Strict);
        all.insert(
            key("default", "wl"),
            pa(&[("app", "a")], Some(MtlsMode::Disable), &[]),
        );
        let d = decide(&all, "default", "a", 80);
        assert_eq!(d.mode, Mode::Disable);
        assert_eq!(d.policies, ["default/wl"]);
        assert_eq!(decide(&all, "default", "b", 80).mode, Mode::Permissive);
    }

    #[test]
    fn unset_inherits_and_port_level_wins() {
        let mut all = PeerAuthentications::new();
        all.insert(
            key("istio-system", "default"),
            pa(&[], Some(MtlsMode::Strict), &[]),
        );
        all.insert(key("default", "ns"), pa(&[], Some(MtlsMode::Unset), &[]));
        all.insert(
            key("default", "wl"),
            pa(&[("app", "a")], None, &[(8080, MtlsMode::Disable)]),
        );
        let d = decide(&all, "default", "a", 80);
        assert_eq!(d.mode, Mode::Strict);
        assert_eq!(
            d.policies,
            ["default/wl", "default/ns", "istio-system/default"]
        );
        assert_eq!(decide(&all, "default", "a", 8080).mode, Mode::Disable);
    }
}
