//! `networking.istio.io` kinds (v1alpha3, v1beta1 and v1 share one schema):
//! VirtualService, DestinationRule, ServiceEntry, Gateway, Sidecar and WorkloadEntry,
//! with the types they share.

pub mod common;
pub mod destination_rule;
pub mod gateway;
pub mod service_entry;
pub mod sidecar;
pub mod virtual_service;
pub mod workload_entry;

pub use common::{Destination, Percent, Port, PortSelector, StringMatch, WorkloadSelector};
pub use destination_rule::DestinationRule;
pub use gateway::Gateway;
pub use service_entry::ServiceEntry;
pub use sidecar::Sidecar;
pub use virtual_service::VirtualService;
pub use workload_entry::WorkloadEntry;
