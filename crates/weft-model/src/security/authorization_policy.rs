//! AuthorizationPolicy: allow, deny, audit or delegate (CUSTOM) requests to workloads
//! by who sends them (`from`), what they ask for (`to`) and further conditions (`when`).

use crate::rules;
use crate::security::{check_targets, PolicyTargetReference, WorkloadSelector};
use crate::validate::{Validate, Validator};
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

/// `security.istio.io` AuthorizationPolicy. `spec: {}` (no rules, ALLOW) denies
/// everything in its scope.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationPolicy {
    /// The workloads this applies to; the namespace (or mesh) when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// Attach to a Service, ServiceEntry or Gateway instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    /// Attach to several targets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Rules; a request matching any rule gets the action.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// `ALLOW` (default), `DENY`, `AUDIT` or `CUSTOM`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// The external authorizer for `CUSTOM`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<ExtensionProvider>,
}

/// What happens to matching requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    /// Allow them (and deny what no ALLOW policy matches).
    Allow,
    /// Deny them.
    Deny,
    /// Audit them.
    Audit,
    /// Ask the external authorizer named in `provider`.
    Custom,
}

/// The external authorizer of a CUSTOM policy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtensionProvider {
    /// Its name in the mesh configuration.
    pub name: String,
}

/// One rule: all given parts must match; within a part, any entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Sources (any).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<RuleFrom>>,
    /// Operations (any).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<RuleTo>>,
    /// Conditions (all).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Condition>,
}

/// A `from` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleFrom {
    /// The source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// A `to` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleTo {
    /// The operation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
}

/// Who sends the request; all given fields must match.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    /// Peer identities (`cluster.local/ns/default/sa/productpage`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    /// Peer identities that must not match.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_principals: Vec<String>,
    /// JWT principals (`issuer/subject`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub request_principals: Vec<String>,
    /// JWT principals that must not match.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_request_principals: Vec<String>,
    /// Peer namespaces.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Peer namespaces that must not match.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<String>,
    /// Peer IPs or CIDRs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ip_blocks: Vec<String>,
    /// Peer IPs or CIDRs that must not match.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_ip_blocks: Vec<String>,
    /// Original client IPs (X-Forwarded-For, PROXY protocol).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remote_ip_blocks: Vec<String>,
    /// Original client IPs that must not match.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_remote_ip_blocks: Vec<String>,
    /// Peer service accounts (`namespace/name`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<String>,
    /// Peer service accounts that must not match.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_service_accounts: Vec<String>,
}

/// What the request asks for; all given fields must match.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Operation {
    /// Hosts (`Host` header).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Hosts that must not match.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_hosts: Vec<String>,
    /// Destination ports, as strings (`"8080"`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// Ports that must not match.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<String>,
    /// HTTP methods (or gRPC `POST`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Methods that must not match.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_methods: Vec<String>,
    /// Paths (`/api/*`, `*/info`, `/{*}/x`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Paths that must not match.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_paths: Vec<String>,
}

/// A condition on a request attribute.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// The attribute (`request.headers[x-user]`, `source.ip`, ...).
    pub key: String,
    /// Values that match.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Values that must not match.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_values: Vec<String>,
}

impl Validate for AuthorizationPolicy {
    fn validate(&self, v: &mut Validator<'_>) {
        check_targets(
            v,
            self.selector.as_ref(),
            self.target_ref.as_ref(),
            &self.target_refs,
        );
        let action = self.action.unwrap_or(Action::Allow);
        match action {
            Action::Custom => {
                if self.rules.is_empty() {
                    v.error_at("rules", "a CUSTOM action without rules is never triggered; add an empty rule `{}` to apply it to every request");
                } else if self.provider.as_ref().is_none_or(|p| p.name.is_empty()) {
                    v.error_at("provider", "a CUSTOM action needs provider.name");
                }
                v.each("rules", &self.rules, |v, rule| check_custom_rule(v, rule));
            }
            _ => {
                if self.provider.is_some() {
                    v.error_at(
                        "provider",
                        format!("provider is only allowed with action CUSTOM, not {action:?}"),
                    );
                }
            }
        }
        if action == Action::Deny && self.rules.is_empty() {
            v.error_at("rules", "a DENY action without rules is never triggered; add an empty rule `{}` to deny every request");
        }
        v.each("rules", &self.rules, |v, rule| rule.check(v, action));
    }
}

/// Attributes a CUSTOM action cannot use.
fn check_custom_rule(v: &mut Validator<'_>, rule: &Rule) {
    if let Some(from) = &rule.from {
        v.each("from", from, |v, f| {
            let Some(s) = &f.source else { return };
            v.at("source", |v| {
                for (key, set) in [
                    ("namespaces", &s.namespaces),
                    ("notNamespaces", &s.not_namespaces),
                    ("principals", &s.principals),
                    ("notPrincipals", &s.not_principals),
                    ("requestPrincipals", &s.request_principals),
                    ("notRequestPrincipals", &s.not_request_principals),
                ] {
                    if !set.is_empty() {
                        v.error_at(key, format!("{key} is not supported with action CUSTOM"));
                    }
                }
            });
        });
    }
    v.each("when", &rule.when, |v, c| {
        if c.key == "source.namespace"
            || c.key == "source.principal"
            || c.key.starts_with("request.auth.")
        {
            v.error_at(
                "key",
                format!("{} is not supported with action CUSTOM", c.key),
            );
        }
    });
}

impl Rule {
    fn check(&self, v: &mut Validator<'_>, action: Action) {
        let mut tcp_in_from = false;
        let mut tcp_in_to = false;
        if let Some(from) = &self.from {
            if from.is_empty() {
                v.error_at(
                    "from",
                    "from must not be empty (leave it out to match any source)",
                );
            }
            v.each("from", from, |v, f| match &f.source {
                None => v.required("source"),
                Some(s) => {
                    tcp_in_from |= !(s.principals.is_empty()
                        && s.not_principals.is_empty()
                        && s.namespaces.is_empty()
                        && s.not_namespaces.is_empty()
                        && s.ip_blocks.is_empty()
                        && s.not_ip_blocks.is_empty()
                        && s.remote_ip_blocks.is_empty()
                        && s.not_remote_ip_blocks.is_empty());
                    v.field("source", s);
                }
            });
        }
        if let Some(to) = &self.to {
            if to.is_empty() {
                v.error_at(
                    "to",
                    "to must not be empty (leave it out to match any operation)",
                );
            }
            v.each("to", to, |v, t| match &t.operation {
                None => v.required("operation"),
                Some(op) => {
                    tcp_in_to |= !op.ports.is_empty() || !op.not_ports.is_empty();
                    v.field("operation", op);
                }
            });
        }
        v.list("when", &self.when);
        let from_exists = self
            .from
            .as_ref()
            .is_some_and(|f| f.iter().any(|f| f.source.is_some()));
        let to_exists = self
            .to
            .as_ref()
            .is_some_and(|t| t.iter().any(|t| t.operation.is_some()));
        if action == Action::Deny
            && ((from_exists && !to_exists && !tcp_in_from) || (to_exists && !tcp_in_to))
        {
            v.warn("this DENY rule uses only HTTP attributes, so it denies all traffic to TCP ports in scope; name the ports explicitly");
        }
    }
}

impl Validate for Source {
    fn validate(&self, v: &mut Validator<'_>) {
        let lists: [(&str, &Vec<String>); 12] = [
            ("principals", &self.principals),
            ("notPrincipals", &self.not_principals),
            ("requestPrincipals", &self.request_principals),
            ("notRequestPrincipals", &self.not_request_principals),
            ("namespaces", &self.namespaces),
            ("notNamespaces", &self.not_namespaces),
            ("ipBlocks", &self.ip_blocks),
            ("notIpBlocks", &self.not_ip_blocks),
            ("remoteIpBlocks", &self.remote_ip_blocks),
            ("notRemoteIpBlocks", &self.not_remote_ip_blocks),
            ("serviceAccounts", &self.service_accounts),
            ("notServiceAccounts", &self.not_service_accounts),
        ];
        if lists.iter().all(|(_, l)| l.is_empty()) {
            v.error("source must not be empty");
        }
        for (key, list) in lists {
            v.each(key, list, |v, value| {
                if value.is_empty() {
                    v.error("empty values are not allowed");
                } else if key.ends_with("pBlocks") || key.ends_with("IpBlocks") {
                    v.check(rules::check_ip_or_cidr(value));
                }
            });
        }
    }
}

impl Validate for Operation {
    fn validate(&self, v: &mut Validator<'_>) {
        let lists: [(&str, &Vec<String>); 8] = [
            ("hosts", &self.hosts),
            ("notHosts", &self.not_hosts),
            ("ports", &self.ports),
            ("notPorts", &self.not_ports),
            ("methods", &self.methods),
            ("notMethods", &self.not_methods),
            ("paths", &self.paths),
            ("notPaths", &self.not_paths),
        ];
        if lists.iter().all(|(_, l)| l.is_empty()) {
            v.error("operation must not be empty");
        }
        for (key, list) in lists {
            v.each(key, list, |v, value| {
                if value.is_empty() {
                    v.error("empty values are not allowed");
                } else if key == "ports" || key == "notPorts" {
                    v.check(rules::check_port_string(value));
                } else if key == "paths" || key == "notPaths" {
                    v.check(check_path_template(value));
                }
            });
        }
    }
}

/// Path templates Istio does not support: named variables, `{}`, bare `*`/`**` segments.
static UNSUPPORTED_TEMPLATE: LazyLock<Option<regex::Regex>> =
    LazyLock::new(|| regex::Regex::new(r"/\{\w+=\*\*?\}|\{\w*\}|/\*\*?|\*\*?/").ok());

fn check_path_template(path: &str) -> Result<(), String> {
    let template = path.contains("{*}") || path.contains("{**}");
    let unsupported = UNSUPPORTED_TEMPLATE
        .as_ref()
        .is_some_and(|re| re.is_match(path));
    if template && unsupported {
        Err(format!(
            "invalid or unsupported path template {path:?}: use {{*}} and {{**}} only"
        ))
    } else {
        Ok(())
    }
}

impl Validate for Condition {
    fn validate(&self, v: &mut Validator<'_>) {
        if self.key.is_empty() {
            v.required("key");
            return;
        }
        if self.values.is_empty() && self.not_values.is_empty() {
            v.error(format!(
                "at least one of values and notValues must be set for key {:?}",
                self.key
            ));
            return;
        }
        for (field, list) in [("values", &self.values), ("notValues", &self.not_values)] {
            if let Err(e) = check_attribute(&self.key, list) {
                v.error_at(
                    field,
                    format!("invalid {field} for key {:?}: {e}", self.key),
                );
            }
        }
    }
}

/// Istio's condition attributes and what their values must look like.
fn check_attribute(key: &str, values: &[String]) -> Result<(), String> {
    if values.iter().any(String::is_empty) {
        return Err("empty values are not allowed".into());
    }
    let map_key = |prefix: &str| {
        let inner = key.strip_prefix(prefix);
        match inner
            .and_then(|r| r.strip_prefix('['))
            .and_then(|r| r.strip_suffix(']'))
        {
            Some(name) if !name.is_empty() => Ok(()),
            _ => Err(format!("bad key {key:?}: write {prefix}[name]")),
        }
    };
    let ips = || values.iter().try_for_each(|v| rules::check_ip_or_cidr(v));
    match key {
        "source.ip" | "remote.ip" | "destination.ip" => ips(),
        "destination.port" => values.iter().try_for_each(|v| rules::check_port_string(v)),
        "source.namespace"
        | "source.principal"
        | "source.serviceAccount"
        | "request.auth.principal"
        | "request.auth.audiences"
        | "request.auth.presenter"
        | "connection.sni" => Ok(()),
        "destination.namespace" => {
            Err("destination.namespace is replaced by metadata.namespace".into())
        }
        "destination.name" | "destination.user" => {
            Err(format!("{key} is deprecated (only supported in v1alpha1)"))
        }
        _ if key.starts_with("request.headers") => map_key("request.headers"),
        _ if key.starts_with("request.auth.claims") => map_key("request.auth.claims"),
        _ if key.starts_with("experimental.envoy.filters.") => {
            let rest = &key["experimental.envoy.filters.".len()..];
            if rest.contains('[') && rest.ends_with(']') {
                Ok(())
            } else {
                Err(format!("bad key {key:?}: should have format a[b]"))
            }
        }
        _ if key.starts_with("destination.labels") => {
            Err("destination.labels is replaced by the workload selector".into())
        }
        _ => Err(format!("unknown attribute {key:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{Kind, Spec};
    use crate::testing::{err, ok, warn};

    const K: Kind = Kind::AuthorizationPolicy;

    fn ap(spec: &str) -> AuthorizationPolicy {
        match ok(K, spec).spec {
            Spec::AuthorizationPolicy(p) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reads_sources_operations_and_conditions() {
        let p = ap(r#"
selector: {matchLabels: {app: httpbin}}
action: ALLOW
rules:
- from:
  - source:
      principals: [cluster.local/ns/default/sa/sleep]
      notNamespaces: [test]
      ipBlocks: [10.0.0.0/8, 1.2.3.4]
      remoteIpBlocks: ["001:db8::/32"]
  to:
  - operation:
      hosts: [httpbin.example.com]
      ports: ["8000", 9000]
      methods: [GET, HEAD]
      paths: [/info*, "/api/{*}/x"]
  when:
  - key: request.auth.claims[iss]
    values: ["https://accounts.google.com"]
  - key: destination.port
    notValues: ["8080"]
"#);
        let to = &p.rules[0].to.as_ref().expect("to")[0];
        assert_eq!(to.operation.as_ref().expect("op").ports, ["8000", "9000"]);
        assert_eq!(p.action, Some(Action::Allow));
    }

    #[test]
    fn custom_and_deny_need_rules() {
        ap("action: CUSTOM\nprovider: {name: ext-authz}\nrules: [{}]\n");
        err(K, "action: CUSTOM\nrules: [{}]\n", ".provider");
        err(K, "action: CUSTOM\nprovider: {name: ext-authz}\n", ".rules");
        err(K, "action: DENY\n", ".rules");
        err(K, "action: ALLOW\nprovider: {name: x}\n", ".provider");
        err(
            K,
            "action: CUSTOM\nprovider: {name: x}\nrules: [{from: [{source: {principals: [a]}}]}]\n",
            ".rules[0].from[0].source.principals",
        );
        err(K, "action: CUSTOM\nprovider: {name: x}\nrules: [{when: [{key: source.principal, values: [a]}]}]\n", ".rules[0].when[0].key");
    }

    #[test]
    fn rule_rules() {
        err(K, "rules: [{from: []}]\n", ".rules[0].from");
        err(K, "rules: [{from: [{}]}]\n", ".rules[0].from[0].source");
        err(
            K,
            "rules: [{from: [{source: {}}]}]\n",
            ".rules[0].from[0].source",
        );
        err(
            K,
            "rules: [{to: [{operation: {}}]}]\n",
            ".rules[0].to[0].operation",
        );
        err(
            K,
            "rules: [{to: [{operation: {methods: [\"\"]}}]}]\n",
            ".rules[0].to[0].operation.methods[0]",
        );
        err(
            K,
            "rules: [{from: [{source: {ipBlocks: [10.0.0.0/33]}}]}]\n",
            ".rules[0].from[0].source.ipBlocks[0]",
        );
        let e = err(
            K,
            "rules: [{to: [{operation: {ports: [http]}}]}]\n",
            ".rules[0].to[0].operation.ports[0]",
        );
        assert!(e.message.contains("not a port number"), "{e}");
        err(
            K,
            "rules: [{to: [{operation: {notPorts: [\"70000\"]}}]}]\n",
            ".rules[0].to[0].operation.notPorts[0]",
        );
        err(
            K,
            "rules: [{to: [{operation: {paths: [\"/{*}/{name}\"]}}]}]\n",
            ".rules[0].to[0].operation.paths[0]",
        );
        err(
            K,
            "rules: [{when: [{key: \"request.headers[x]\"}]}]\n",
            ".rules[0].when[0]",
        );
        err(
            K,
            "rules: [{when: [{values: [a]}]}]\n",
            ".rules[0].when[0].key",
        );
        err(
            K,
            "rules: [{when: [{key: request.headers, values: [a]}]}]\n",
            ".rules[0].when[0].values",
        );
        err(
            K,
            "rules: [{when: [{key: source.ip, values: [nope]}]}]\n",
            ".rules[0].when[0].values",
        );
        err(
            K,
            "rules: [{when: [{key: unknown.attr, values: [a]}]}]\n",
            ".rules[0].when[0].values",
        );
        err(K, "action: REJECT\n", ".action");
        err(
            K,
            "selector: {matchLabels: {app: a}}\ntargetRef: {kind: Service, name: a}\n",
            "",
        );
        err(
            K,
            "targetRef: {kind: Deployment, name: a}\n",
            ".targetRef.kind",
        );
        ap("targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]\n");
    }

    #[test]
    fn http_only_deny_rules_warn() {
        let w = warn(
            K,
            "action: DENY\nrules: [{to: [{operation: {methods: [POST]}}]}]\n",
            ".rules[0]",
        );
        assert!(w.message.contains("TCP"), "{w}");
    }
}
