//! Weft's control plane: it holds the resources people apply and the registry of live
//! workloads, turns them into each proxy's Envoy configuration, and serves it over xDS.

pub mod registry;
pub mod translate;
