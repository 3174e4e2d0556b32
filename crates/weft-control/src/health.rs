//! Health checks: an HTTP GET (2xx or 3xx is healthy), a TCP connect, or a command
//! (exit status 0 is healthy). A sidecar runs them against its application (`weft
//! run`), the control plane against hosts registered by a Workload with a
//! `healthCheck`. An instance enters its service's endpoints only once its check passes.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How to check the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// `GET path` on the application's port.
    Http {
        /// Application address.
        addr: SocketAddr,
        /// Path.
        path: String,
    },
    /// A TCP connection to the application's port.
    Tcp(SocketAddr),
    /// A command run through `sh -c`.
    Exec(String),
}

/// Runs one check with a timeout.
pub async fn probe(check: &Check, timeout: Duration) -> bool {
    tokio::time::timeout(timeout, probe_once(check))
        .await
        .unwrap_or(false)
}

async fn probe_once(check: &Check) -> bool {
    match check {
        Check::Tcp(addr) => tokio::net::TcpStream::connect(addr).await.is_ok(),
        Check::Http { addr, path } => http_ok(*addr, path).await,
        Check::Exec(cmd) => tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .map(|s| s.success())
            .unwrap_or(false),
    }
}

/// A minimal HTTP/1.1 GET: the status line is all a health check needs.
async fn http_ok(addr: SocketAddr, path: &str) -> bool {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: weft-health\r\nConnection: close\r\n\r\n");
    if s.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    if s.read_exact(&mut head).await.is_err() {
        return false;
    }
    // "HTTP/1.1 200"
    matches!(head.get(9), Some(b'2' | b'3')) && head.starts_with(b"HTTP/1.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tcp_http_and_exec() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let ok = String::from_utf8_lossy(&buf[..n]).starts_with("GET /healthz ");
                    let status = if ok {
                        "200 OK"
                    } else {
                        "503 Service Unavailable"
                    };
                    let _ = s
                        .write_all(
                            format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes(),
                        )
                        .await;
                });
            }
        });
        let t = Duration::from_secs(2);
        assert!(probe(&Check::Tcp(addr), t).await);
        assert!(
            probe(
                &Check::Http {
                    addr,
                    path: "/healthz".into()
                },
                t
            )
            .await
        );
        assert!(
            !probe(
                &Check::Http {
                    addr,
                    path: "/other".into()
                },
                t
            )
            .await
        );
        assert!(probe(&Check::Exec("true".into()), t).await);
        assert!(!probe(&Check::Exec("exit 3".into()), t).await);
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr");
        assert!(!probe(&Check::Tcp(closed), t).await);
    }
}
