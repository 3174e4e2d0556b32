//! What the REST API sends and receives, shared with the CLI.

use crate::registry::Instance;
use serde::{Deserialize, Serialize};

/// One file (or standard input) as the user gave it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Document {
    /// Its name in messages (a path, or `-`).
    pub source: String,
    /// Its text: YAML or JSON, one or more documents.
    pub text: String,
}

/// `POST /api/v1/apply` and `POST /api/v1/delete`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DocumentsRequest {
    /// The files.
    pub documents: Vec<Document>,
}

/// Query of apply and delete.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeOptions {
    /// Report what would change, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Apply the valid resources even when others are invalid (the default is all or
    /// nothing).
    #[serde(default)]
    pub partial: bool,
}

/// What happened (or would happen) to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// It did not exist.
    Created,
    /// It existed with other content.
    Configured,
    /// It existed with this content.
    Unchanged,
    /// It was deleted.
    Deleted,
    /// It was to be deleted but did not exist.
    NotFound,
}

impl Action {
    /// How kubectl words it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Configured => "configured",
            Action::Unchanged => "unchanged",
            Action::Deleted => "deleted",
            Action::NotFound => "not found",
        }
    }
}

/// One resource's change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Change {
    /// Kind.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// What happened.
    pub action: Action,
    /// For a configured resource: the YAML lines that change.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub diff: String,
}

/// The answer to apply and delete.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeResponse {
    /// One entry per resource, in input order.
    pub results: Vec<Change>,
    /// Accepted with a warning (deprecated fields, ...).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Documents refused (only with `partial`; otherwise the request fails).
    #[serde(default)]
    pub errors: Vec<String>,
    /// The store revision of the change (0 for a dry run or no change).
    pub revision: u64,
    /// Nothing was changed.
    pub dry_run: bool,
}

/// An error, as every endpoint reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
    /// Each problem, for a request with several (one per line of output).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

/// `GET /api/v1/resources/{kind}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceList {
    /// The resources, in Istio's spelling.
    pub items: Vec<serde_json::Value>,
}

/// `PUT /api/v1/registry/{namespace}/{service}/{id}/health`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct HealthReport {
    /// Whether the application passes its health check.
    pub healthy: bool,
}

/// A port of a service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortInfo {
    /// Name.
    pub name: String,
    /// Number.
    pub number: u16,
    /// Protocol.
    pub protocol: String,
}

/// One line of `weft get services`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceSummary {
    /// Short name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Fully qualified host name.
    pub hostname: String,
    /// Ports.
    pub ports: Vec<PortInfo>,
    /// Instances registered.
    pub instances: usize,
    /// Instances whose health check passes.
    pub healthy: usize,
}

/// A DestinationRule subset of a service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubsetInfo {
    /// Subset name.
    pub name: String,
    /// Its labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Instances it selects.
    pub instances: usize,
    /// Of which healthy.
    pub healthy: usize,
}

/// One route callers of the service follow.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouteInfo {
    /// Port.
    pub port: u16,
    /// The route's name (the http route's `name`, else `namespace/virtualservice/index`);
    /// empty for the service's default route.
    pub source: String,
    /// What it matches, e.g. `prefix /`, `header end-user=jason`.
    pub matches: String,
    /// What it does, e.g. `v1 90%, v2 10%; timeout 5s; 2 retries`.
    pub action: String,
}

/// `weft describe service NAME`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceDescription {
    /// The summary line.
    pub service: ServiceSummary,
    /// Instances.
    pub instances: Vec<Instance>,
    /// Subsets from DestinationRules.
    pub subsets: Vec<SubsetInfo>,
    /// VirtualServices naming the service (`namespace/name`).
    pub virtual_services: Vec<String>,
    /// DestinationRules for the service (`namespace/name`).
    pub destination_rules: Vec<String>,
    /// Routes, as callers in the service's namespace see them.
    pub routes: Vec<RouteInfo>,
    /// Security policies that select the service's workloads (`Kind namespace/name`).
    #[serde(default)]
    pub policies: Vec<String>,
    /// Identity, mTLS per port and instance, authorization.
    #[serde(default)]
    pub security: SecurityView,
    /// Translation warnings that name the service or its resources.
    pub warnings: Vec<String>,
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRequest {
    /// The service the token is for.
    pub service: String,
    /// Its namespace (`default` when absent).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Lifetime in seconds (a year when absent).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// A new token: shown once, never stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenCreated {
    /// The token.
    pub token: String,
    /// The identity it proves.
    pub spiffe_id: String,
    /// Its record.
    pub record: crate::auth::TokenRecord,
}

/// `POST /api/v1/certificates`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertificateRequest {
    /// The CSR (PEM).
    pub csr: String,
    /// Lifetime in seconds (the control plane's default, and at most that, when absent).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    /// For admin callers: the service the certificate is for.
    #[serde(default)]
    pub service: Option<String>,
    /// For admin callers: its namespace.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `POST /api/v1/ca/rotation`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotationRequest {
    /// Which step.
    pub step: crate::ca::Step,
    /// Skip the waits that keep requests from failing.
    #[serde(default)]
    pub force: bool,
    /// The new signer for `prepare` (else the control plane makes a root).
    #[serde(default)]
    pub ca: Option<crate::ca::CaPem>,
}

/// How one service is secured, as `weft describe service` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SecurityView {
    /// The SPIFFE ID its instances hold and callers expect.
    pub identity: String,
    /// How sidecars call each port: mTLS or plain text, and why.
    pub callers: Vec<CallerTls>,
    /// Each instance port: its PeerAuthentication mode and what each kind of caller gets.
    pub inbound: Vec<InboundSecurity>,
    /// The AuthorizationPolicies that decide each instance's requests.
    pub authorization: Vec<InstanceAuthorization>,
}

/// What a sidecar sends to one port of the service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CallerTls {
    /// The service port.
    pub port: u16,
    /// Whether sidecars originate mTLS to it.
    pub mtls: bool,
    /// Why.
    pub reason: String,
}

/// One instance port and its callers' fate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InboundSecurity {
    /// The instance id.
    pub instance: String,
    /// The service port.
    pub port: u16,
    /// STRICT, PERMISSIVE, DISABLE; `none` for an instance without a sidecar.
    pub mode: String,
    /// The PeerAuthentications that decided it, most specific first.
    pub policies: Vec<String>,
    /// What a call from a sidecar gets (`mTLS`, `plaintext`, `refused: ...`).
    pub from_sidecars: String,
    /// What a plaintext caller outside the mesh (or proxyless gRPC) gets.
    pub from_outside: String,
}

/// The AuthorizationPolicies of one instance, by action, in evaluation order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InstanceAuthorization {
    /// The instance id.
    pub instance: String,
    /// AUDIT policies (`namespace/name`).
    pub audit: Vec<String>,
    /// DENY policies: any match denies.
    pub deny: Vec<String>,
    /// ALLOW policies: with any, a request must match one.
    pub allow: Vec<String>,
    /// CUSTOM policies, which Weft does not enforce.
    pub unsupported: Vec<String>,
}
