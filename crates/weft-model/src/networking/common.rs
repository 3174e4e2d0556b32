//! Types several networking kinds share: string matches, destinations, port
//! selectors, percentages, ports and workload selectors.

use crate::rules;
use crate::validate::{Validate, Validator};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;

/// How a string is matched: exactly one of `exact`, `prefix` or `regex` (RE2 syntax).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StringMatch {
    /// The whole string equals this.
    Exact(String),
    /// The string starts with this (never empty).
    Prefix(String),
    /// The whole string matches this RE2 regular expression.
    Regex(String),
}

impl StringMatch {
    /// The field name and value, as written.
    pub fn as_pair(&self) -> (&'static str, &str) {
        match self {
            StringMatch::Exact(s) => ("exact", s),
            StringMatch::Prefix(s) => ("prefix", s),
            StringMatch::Regex(s) => ("regex", s),
        }
    }
}

// A one-entry map in every format (serde's default would tag the variant in YAML).
impl Serialize for StringMatch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (key, value) = self.as_pair();
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(key, value)?;
        map.end()
    }
}

impl Validate for StringMatch {
    fn validate(&self, v: &mut Validator<'_>) {
        match self {
            StringMatch::Exact(_) => {}
            StringMatch::Prefix(p) => {
                if p.is_empty() {
                    v.error_at(
                        "prefix",
                        "prefix must not be empty (leave the match out to match everything)",
                    );
                }
            }
            StringMatch::Regex(re) => v.check_at("regex", rules::check_regex(re)),
        }
    }
}

/// A service (and optionally subset and port) traffic goes to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    /// The service's host name; short names resolve in the rule's namespace.
    pub host: String,
    /// A subset defined in the host's DestinationRule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// The service port, needed when the service has several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
}

impl Validate for Destination {
    fn validate(&self, v: &mut Validator<'_>) {
        if self.host.is_empty() {
            v.required("host");
        } else if self.host == "*" {
            v.error_at("host", "a destination host cannot be \"*\"");
        } else {
            v.check_at("host", rules::check_wildcard_domain(&self.host));
        }
        if let Some(subset) = &self.subset {
            v.check_at("subset", check_subset_name(subset));
        }
        v.field("port", &self.port);
    }
}

/// A subset name: a DNS-1123 label.
pub(crate) fn check_subset_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err("subset name cannot be empty".into())
    } else if rules::is_dns1123_label(name) {
        Ok(())
    } else {
        Err(format!("invalid subset name {name:?}: use a DNS-1123 label (lower-case letters, digits and '-')"))
    }
}

/// Selects a port by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct PortSelector {
    /// The port number.
    pub number: u32,
}

impl Validate for PortSelector {
    fn validate(&self, v: &mut Validator<'_>) {
        v.check_at("number", rules::check_port(self.number));
    }
}

/// A percentage, 0–100 with fractions.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Percent {
    /// The percentage.
    pub value: f64,
}

impl Validate for Percent {
    fn validate(&self, v: &mut Validator<'_>) {
        v.check_at("value", rules::check_percentage(self.value));
    }
}

/// A port a server, service or listener exposes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Port {
    /// The port number.
    pub number: u32,
    /// `HTTP`, `HTTPS`, `GRPC`, `GRPC-WEB`, `HTTP2`, `MONGO`, `MYSQL`, `REDIS`, `TCP`,
    /// `TLS` or `UDP`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// The port's name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The port the workload listens on, when it differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u32>,
}

/// A port name: a DNS-1123 label.
pub(crate) fn check_port_name(name: &str) -> Result<(), String> {
    if rules::is_dns1123_label(name) {
        Ok(())
    } else {
        Err(format!("invalid port name {name:?}: use a DNS-1123 label"))
    }
}

/// Selects workloads by label (networking kinds call it `labels`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSelector {
    /// Labels a workload must carry, all of them.
    pub labels: BTreeMap<String, String>,
}

impl Validate for WorkloadSelector {
    fn validate(&self, v: &mut Validator<'_>) {
        v.at("labels", |v| rules::check_selector_labels(v, &self.labels));
    }
}
