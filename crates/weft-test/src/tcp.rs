//! A TCP server that reads until the client half-closes, then answers with what it read
//! (prefixed) and closes: it shows that a half-close crossed the proxy.

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Starts the server; returns its address.
pub async fn start_echo() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut got = Vec::new();
                if s.read_to_end(&mut got).await.is_ok() {
                    let _ = s.write_all(b"echo:").await;
                    let _ = s.write_all(&got).await;
                }
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, task)
}
