//! HTTP: the connection manager, routing, forwarding, and the bodies in between.

pub mod body;
pub mod forward;
pub mod headers;
pub mod local_reply;
pub mod manager;
pub mod matcher;
pub mod proxy;
pub mod rbac;
pub mod retry;
pub mod route;
pub mod server;
pub mod smuggle;
pub mod upgrade;
