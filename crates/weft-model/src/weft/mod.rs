//! Weft's own kinds, `weft.dev/v1`.

pub mod workload;

pub use workload::{HealthCheck, HttpHealthCheck, TcpHealthCheck, Workload, WorkloadPort};
