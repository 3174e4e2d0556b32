//! WorkloadEntry: a workload outside Kubernetes (a VM, a bare-metal host) described
//! for the mesh; also the shape of a ServiceEntry's `endpoints`.

use crate::networking::common::check_port_name;
use crate::rules;
use crate::validate::{Validate, Validator};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Prefix of Unix domain socket addresses.
pub(crate) const UNIX_PREFIX: &str = "unix://";

/// `networking.istio.io` WorkloadEntry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEntry {
    /// IP, host name or `unix:///path`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// Port name to the port the workload listens on.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, u32>,
    /// Labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The network the workload is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// `region/zone/subzone`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    /// Load balancing weight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// The workload's service account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

impl WorkloadEntry {
    /// Istio's checks; `allow_hostnames` is false where only IPs make sense (STATIC
    /// ServiceEntry endpoints); `service_ports` lists the ServiceEntry's port names.
    pub(crate) fn check(
        &self,
        v: &mut Validator<'_>,
        allow_hostnames: bool,
        service_ports: Option<&[String]>,
    ) {
        let addr = self.address.as_str();
        if addr.is_empty() {
            if self.network.is_none() {
                v.required("address");
                return;
            }
            v.warn_at(
                "address",
                format!(
                    "address is unset with network {:?}",
                    self.network.as_deref().unwrap_or_default()
                ),
            );
        }
        if let Some(path) = addr.strip_prefix(UNIX_PREFIX) {
            v.check_at("address", check_unix_path(path));
            if !self.ports.is_empty() {
                v.error_at("ports", format!("unix endpoint {addr} must not list ports"));
            }
        } else if !addr.is_empty() && !rules::is_ip(addr) {
            if !allow_hostnames {
                v.error_at(
                    "address",
                    format!("endpoint address {addr:?} is not a valid IP address"),
                );
            } else if rules::check_fqdn(addr).is_err() {
                v.error_at(
                    "address",
                    format!("endpoint address {addr:?} is not a valid host name or IP address"),
                );
            }
        }
        v.at("ports", |v| {
            for (name, port) in &self.ports {
                v.at(name, |v| {
                    if let Some(known) = service_ports {
                        if !known.contains(name) {
                            v.error(format!("port {name:?} is not defined by the service entry"));
                        }
                    }
                    v.check(check_port_name(name));
                    v.check(rules::check_port(*port));
                });
            }
        });
        v.at("labels", |v| rules::check_labels(v, &self.labels));
    }
}

impl Validate for WorkloadEntry {
    fn validate(&self, v: &mut Validator<'_>) {
        self.check(v, true, None);
    }
}

/// A Unix socket path: absolute, not a directory, or abstract (`@name`).
pub(crate) fn check_unix_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("unix socket path must not be empty".into());
    }
    if path.starts_with('@') {
        return Ok(());
    }
    if !path.starts_with('/') || path.ends_with('/') {
        return Err(format!("{path:?} is not an absolute path to a file"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::resource::Kind;
    use crate::testing::{err, ok, warn};

    const K: Kind = Kind::WorkloadEntry;

    #[test]
    fn addresses_and_ports() {
        ok(K, "address: 10.0.0.5\nports: {http: 8080}\nlabels: {app: ratings}\nserviceAccount: ratings\nnetwork: vm\nlocality: us-west/zone1\nweight: 3\n");
        ok(K, "address: vm1.example.com\n");
        ok(K, "address: unix:///var/run/app.sock\n");
        err(K, "ports: {http: 8080}\n", ".address");
        warn(K, "network: remote\n", ".address");
        err(K, "address: \"not an address!\"\n", ".address");
        err(K, "address: unix://relative.sock\n", ".address");
        err(K, "address: unix:///a.sock\nports: {http: 1}\n", ".ports");
        err(
            K,
            "address: 10.0.0.5\nports: {http: 70000}\n",
            ".ports.http",
        );
        err(
            K,
            "address: 10.0.0.5\nports: {Bad_Name: 80}\n",
            ".ports.Bad_Name",
        );
    }
}
