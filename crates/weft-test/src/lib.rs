//! Test support for Weft: real servers to proxy to, and a harness that runs a proxy in
//! the test process on 127.0.0.1 ports. Nothing here is a mock: every server speaks its
//! protocol over real sockets.

pub mod grpc;
pub mod jwt;
pub mod proxy;
pub mod tcp;
pub mod upstream;
pub mod websocket;

pub use proxy::TestProxy;
pub use upstream::Upstream;

/// A runtime for a test's own clients and servers.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}
