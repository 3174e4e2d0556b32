//! Weft's control plane: it holds the resources people apply and the registry of live
//! workloads, turns them into each proxy's Envoy configuration, and serves it over xDS.
//!
//! ```text
//! store (redb | etcd) ──watch──▶ mesh.rs ──translate──▶ Snapshot ──▶ source.rs ──ADS──▶ proxies
//!        ▲                                                              │
//!        └── api/ (apply, delete)      registrar.rs (registrations) ◀──┘ (stream opens/ends)
//! ```

pub mod api;
pub mod auth;
pub mod ca;
pub mod client;
pub mod control;
pub mod describe;
pub mod diff;
pub mod health;
pub mod identity;
pub mod mesh;
pub mod metrics;
pub mod prober;
pub mod proxies;
pub mod registrar;
pub mod registry;
pub mod resources;
pub mod sealing;
pub mod source;
pub mod translate;
pub mod xds_tls;

pub use control::{Config, ControlPlane, StartError};
