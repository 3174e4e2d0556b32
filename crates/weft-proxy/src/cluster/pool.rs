//! Upstream connections: opened with the cluster's connect timeout, kept per endpoint
//! and per worker thread (so a worker never waits on another's lock or wakes another
//! core), reused with keep-alive for HTTP/1.1 and multiplexed for HTTP/2.

use super::endpoint::Endpoint;
use super::Cluster;
use crate::error::ProxyError;
use crate::http::body::RequestBody;
use crate::io::{ByteCounters, CountingIo};
use crate::tls::{Alpn, MaybeTls, TlsInfo};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpStream;

/// What one upstream connection's TLS session established (`None`: plaintext).
pub type Session = Option<Arc<TlsInfo>>;

/// An idle HTTP/1.1 connection.
#[derive(Debug)]
struct Idle {
    sender: http1::SendRequest<RequestBody>,
    since: Instant,
    uses: u32,
    tls: Session,
}

/// One worker's connections to one endpoint (they are all of the endpoint's cluster,
/// so all TLS or all plaintext).
#[derive(Debug, Default)]
pub struct WorkerPool {
    idle: Vec<Idle>,
    h2: Option<(http2::SendRequest<RequestBody>, Session)>,
}

impl WorkerPool {
    /// Idle connections held.
    pub fn idle_len(&self) -> usize {
        self.idle.len() + usize::from(self.h2.is_some())
    }
}

/// A connection ready for one request.
#[derive(Debug)]
pub enum Sender {
    /// HTTP/1.1: exclusive until the response ends, then back to the pool.
    Http1 {
        /// The connection.
        sender: http1::SendRequest<RequestBody>,
        /// Requests it carried before this one.
        uses: u32,
        /// Its TLS session.
        tls: Session,
    },
    /// HTTP/2: shared.
    Http2(http2::SendRequest<RequestBody>, Session),
}

/// Takes an idle connection to `ep` from this worker's pool, or opens one.
pub async fn checkout(
    ep: &Arc<Endpoint>,
    cluster: &Cluster,
    http2: bool,
) -> Result<Sender, ProxyError> {
    if http2 {
        let existing = {
            let pool = ep.pool().lock().unwrap_or_else(|e| e.into_inner());
            pool.h2
                .as_ref()
                .filter(|(s, _)| !s.is_closed() && s.is_ready())
                .cloned()
        };
        if let Some((s, tls)) = existing {
            return Ok(Sender::Http2(s, tls));
        }
        // Boxed: connecting is rare and its future is large; the request future stays small.
        let (sender, tls) = Box::pin(connect_http2(ep, cluster)).await?;
        ep.pool().lock().unwrap_or_else(|e| e.into_inner()).h2 =
            Some((sender.clone(), tls.clone()));
        return Ok(Sender::Http2(sender, tls));
    }
    if let Some((sender, uses, tls)) = take_idle(ep) {
        return Ok(Sender::Http1 { sender, uses, tls });
    }
    let (sender, tls) = Box::pin(connect_http1(ep, cluster, false)).await?;
    Ok(Sender::Http1 {
        sender,
        uses: 0,
        tls,
    })
}

/// The most recently used idle connection that is ready, dropping dead and expired ones.
fn take_idle(ep: &Endpoint) -> Option<(http1::SendRequest<RequestBody>, u32, Session)> {
    let mut pool = ep.pool().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(timeout) = ep.limits.idle_timeout {
        let now = Instant::now();
        pool.idle.retain(|c| now.duration_since(c.since) < timeout);
    }
    let mut not_ready = Vec::new();
    let mut found = None;
    while let Some(mut c) = pool.idle.pop() {
        if c.sender.is_closed() {
            continue;
        }
        // Ready unless its previous exchange is still finishing (e.g. a request body
        // still being sent); such a connection stays pooled for later.
        use futures_util::FutureExt;
        match c.sender.ready().now_or_never() {
            Some(Ok(())) => {
                found = Some((c.sender, c.uses, c.tls));
                break;
            }
            Some(Err(_)) => continue,
            None => not_ready.push(c),
        }
    }
    pool.idle.extend(not_ready);
    found
}

/// Returns an HTTP/1.1 connection whose response has ended.
pub fn release(ep: &Endpoint, sender: http1::SendRequest<RequestBody>, uses: u32, tls: Session) {
    if sender.is_closed() {
        return;
    }
    if let Some(max) = ep.limits.max_requests_per_connection {
        if uses + 1 >= max {
            return;
        }
    }
    let mut pool = ep.pool().lock().unwrap_or_else(|e| e.into_inner());
    if pool.idle.len() >= ep.limits.max_idle {
        // Drop the oldest: the newest is warmest.
        pool.idle.remove(0);
    }
    pool.idle.push(Idle {
        sender,
        since: Instant::now(),
        uses: uses + 1,
        tls,
    });
}

/// Opens a TCP connection to `ep` within the cluster's connect timeout.
pub async fn connect_tcp(ep: &Endpoint, cluster: &Cluster) -> Result<TcpStream, ProxyError> {
    let stats = &cluster.stats;
    let result =
        tokio::time::timeout(cluster.connect_timeout, TcpStream::connect(ep.address)).await;
    let stream = match result {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => {
            stats.cx_connect_fail.inc();
            ep.stats.cx_connect_fail.fetch_add(1, Ordering::Relaxed);
            return Err(ProxyError::ConnectFailure {
                addr: ep.address,
                source,
            });
        }
        Err(_) => {
            stats.cx_connect_fail.inc();
            stats.cx_connect_timeout.inc();
            ep.stats.cx_connect_fail.fetch_add(1, Ordering::Relaxed);
            return Err(ProxyError::ConnectTimeout(ep.address));
        }
    };
    let _ = stream.set_nodelay(true);
    stats.cx_total.inc();
    ep.stats.cx_total.fetch_add(1, Ordering::Relaxed);
    Ok(stream)
}

/// An upstream connection's transport: the socket (its bytes counted for the cluster),
/// in TLS when the cluster originates it.
pub type UpstreamIo = MaybeTls<CountingIo<TcpStream>>;

/// A connection opened to an endpoint.
#[derive(Debug)]
pub struct Transport {
    /// The connection.
    pub io: UpstreamIo,
    /// Its TLS session.
    pub tls: Session,
    /// Its local address.
    pub local: Option<SocketAddr>,
}

/// Opens a connection to `ep`: TCP within the cluster's connect timeout, then, when the
/// cluster has a TLS context, the handshake (offering `alpn`) within it again.
pub async fn connect_transport(
    ep: &Endpoint,
    cluster: &Cluster,
    alpn: Alpn,
) -> Result<Transport, ProxyError> {
    let stream = connect_tcp(ep, cluster).await?;
    let local = stream.local_addr().ok();
    let counters = ByteCounters {
        rx: Some(cluster.stats.rx_bytes.clone()),
        tx: Some(cluster.stats.tx_bytes.clone()),
    };
    let io = CountingIo::new(stream, counters);
    let Some(tls) = &cluster.tls else {
        return Ok(Transport {
            io: MaybeTls::Plain(io),
            tls: None,
            local,
        });
    };
    // Boxed: a handshake's state is large; plaintext connections do not carry it.
    match Box::pin(tls.connect(io, ep.address, alpn, cluster.connect_timeout)).await {
        Ok((stream, info)) => Ok(Transport {
            io: MaybeTls::Client(Box::new(stream)),
            tls: Some(info),
            local,
        }),
        Err(source) => {
            cluster.stats.cx_connect_fail.inc();
            ep.stats.cx_connect_fail.fetch_add(1, Ordering::Relaxed);
            Err(ProxyError::TlsHandshake {
                addr: ep.address,
                source,
            })
        }
    }
}

/// Opens an HTTP/1.1 connection; `upgrades` keeps it able to become a tunnel (it is
/// then never pooled).
pub async fn connect_http1(
    ep: &Endpoint,
    cluster: &Cluster,
    upgrades: bool,
) -> Result<(http1::SendRequest<RequestBody>, Session), ProxyError> {
    let t = connect_transport(ep, cluster, Alpn::Http1).await?;
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(t.io))
        .await
        .map_err(ProxyError::UpstreamProtocol)?;
    let active = cluster.stats.cx_active.clone();
    active.inc();
    tokio::spawn(async move {
        let _ = if upgrades {
            conn.with_upgrades().await
        } else {
            conn.await
        };
        active.dec();
    });
    Ok((sender, t.tls))
}

async fn connect_http2(
    ep: &Endpoint,
    cluster: &Cluster,
) -> Result<(http2::SendRequest<RequestBody>, Session), ProxyError> {
    let t = connect_transport(ep, cluster, Alpn::Http2).await?;
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder.timer(TokioTimer::new());
    let h2 = &cluster.http2;
    if let Some(w) = h2.initial_stream_window_size {
        builder.initial_stream_window_size(w);
    }
    if let Some(w) = h2.initial_connection_window_size {
        builder.initial_connection_window_size(w);
    }
    if let Some(interval) = h2.keepalive_interval {
        builder
            .keep_alive_interval(interval)
            .keep_alive_while_idle(true);
        if let Some(t) = h2.keepalive_timeout {
            builder.keep_alive_timeout(t);
        }
    }
    let (sender, conn) = builder
        .handshake(TokioIo::new(t.io))
        .await
        .map_err(ProxyError::UpstreamProtocol)?;
    let active = cluster.stats.cx_active.clone();
    active.inc();
    tokio::spawn(async move {
        let _ = conn.await;
        active.dec();
    });
    Ok((sender, t.tls))
}
