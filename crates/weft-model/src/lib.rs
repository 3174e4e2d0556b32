//! The resources Weft users write, as typed and validated values.
//!
//! Weft's API is Istio's: `weft apply` takes the YAML people write for Istio, and this
//! crate turns it into Rust values. It does no I/O: callers pass text and a source name.
//!
//! ```
//! let yaml = r#"
//! apiVersion: networking.istio.io/v1
//! kind: VirtualService
//! metadata:
//!   name: reviews
//! spec:
//!   hosts: [reviews]
//!   http:
//!   - route:
//!     - destination: {host: reviews, subset: v1}
//! "#;
//! let parsed = weft_model::parse_documents("reviews.yaml", yaml);
//! let (resources, warnings) = parsed.into_result().expect("valid");
//! assert_eq!(resources[0].key().to_string(), "VirtualService/default/reviews");
//! assert!(warnings.is_empty());
//! ```
//!
//! # Kinds
//!
//! - `networking.istio.io` (`v1alpha3`, `v1beta1`, `v1`): VirtualService,
//!   DestinationRule, ServiceEntry, Gateway, Sidecar, WorkloadEntry.
//! - `security.istio.io` (`v1beta1`, `v1`): PeerAuthentication, AuthorizationPolicy,
//!   RequestAuthentication.
//! - `weft.dev/v1`: Workload (below).
//!
//! Field names and enum values are Istio's. Validation follows Istio's own
//! (`pkg/config/validation`), so what Istio rejects is rejected here with the same
//! reasons; deprecated fields (`mirrorPercent`, `outlierDetection.consecutiveErrors`,
//! ...) are accepted with a warning.
//!
//! # The `weft.dev/v1` Workload
//!
//! A Workload registers one instance of a service running on a host without a sidecar
//! (a VM, a container, a process), so the mesh can route to it:
//!
//! ```yaml
//! apiVersion: weft.dev/v1
//! kind: Workload
//! metadata:
//!   name: reviews-v1-vm3
//!   namespace: default
//! spec:
//!   service: reviews           # required: the service (a DNS-1123 label)
//!   address: 10.0.3.7          # required: an IP address or a host name
//!   ports:                     # a map of name to number ...
//!     http: 9080
//!   # ... or a list:  ports: [{name: http, number: 9080, protocol: HTTP}]
//!   labels:
//!     version: v1              # what DestinationRule subsets select on
//!   weight: 1                  # relative to the service's other instances
//!   healthCheck:               # optional; exactly one of http and tcp
//!     http: {path: /health, port: 9080}   # or: tcp: {port: 9080}
//!     interval: 10s
//!     timeout: 1s
//! ```
//!
//! # YAML as users write it
//!
//! - Several documents per file; empty documents (a trailing `---`) are skipped but
//!   counted, so document numbers match what an editor shows.
//! - JSON is YAML too, including tab-indented JSON.
//! - Duplicate keys are errors (Go's YAML keeps the last one silently).
//! - `[1.2.3.4, 001:db8::]` is a list of two strings, as in Go's YAML.
//! - A string field takes any scalar as written (`version: 1.10` is `"1.10"`), a
//!   number field takes a quoted number (`"8080"`), as protobuf's JSON mapping does.
//! - Null reads as absent; an empty mapping or string is present, and rejected where
//!   Istio rejects it (`connectionPool: {}`, `prefix: ""`).
//! - Durations are Go's (`3m`, `30ms`, `0.5s`, `1h2m`), at least 1 ms, whole ms.
//! - Unknown fields are errors, with a "did you mean" when one is close.
//! - `kubectl get -o yaml` output works: server-written metadata and `status` are
//!   dropped, and `kind: List` is read item by item.
//!
//! Every [`Diagnostic`] names the source, the document (1-based), the line and column,
//! and the field path such as `spec.http[0].route[1].weight`.
//!
//! # Storing and printing
//!
//! Every type implements `Serialize` (Istio's spelling, absent fields left out, so
//! `weft get -o yaml` shows what the user applied) and [`Resource`] implements
//! `Deserialize` from that stored form, validating again.

pub mod diagnostic;
pub mod duration;
pub mod meta;
pub mod networking;
pub mod parse;
pub mod resource;
pub mod security;
pub mod weft;

mod de;
mod node;
mod rules;
#[cfg(test)]
mod testing;
mod validate;
mod yaml;

pub use diagnostic::{Diagnostic, Errors, Severity};
pub use duration::Duration;
pub use meta::{ObjectMeta, DEFAULT_NAMESPACE};
pub use parse::{parse_documents, Parsed};
pub use resource::{Kind, Resource, ResourceKey, Spec};
