//! Listeners: the accept loop, a task per connection, listener filters, and the choice
//! of filter chain by Envoy's `filter_chain_match` precedence (destination port, then
//! server name, transport protocol and application protocols).

use crate::detect::{self, Detected};
use crate::drain::Drain;
use crate::follow::{Following, Origin};
use crate::http::manager::{Codec, HttpManager};
use crate::http::proxy::Connection;
use crate::http::smuggle::{Guarded, Verdicts};
use crate::io::{ByteCounters, CountingIo};
use crate::metrics::ListenerStats;
use crate::stream_info::Downstream;
use crate::tcp::TcpProxy;
use crate::tls::MaybeTls;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Envoy's default `listener_filters_timeout`.
pub const DEFAULT_LISTENER_FILTERS_TIMEOUT: Duration = Duration::from_secs(15);

/// What a filter chain does with its connections.
#[derive(Debug, Clone)]
pub enum Network {
    /// HTTP connection manager.
    Http(Arc<HttpManager>),
    /// TCP proxy.
    Tcp(Arc<TcpProxy>),
}

/// A compiled `FilterChainMatch`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainMatch {
    /// Local (or original) destination port.
    pub destination_port: Option<u16>,
    /// TLS server names, exact or `*.suffix`.
    pub server_names: Vec<String>,
    /// `tls` or `raw_buffer`.
    pub transport_protocol: Option<String>,
    /// ALPN values or detected HTTP versions.
    pub application_protocols: Vec<String>,
}

/// A compiled filter chain.
#[derive(Debug, Clone)]
pub struct FilterChain {
    /// Name.
    pub name: Arc<str>,
    /// When it applies.
    pub matcher: ChainMatch,
    /// What it runs.
    pub network: Network,
    /// TLS termination (`transport_socket`), before the network filters.
    pub tls: Option<Arc<crate::tls::DownstreamTls>>,
    /// Network RBAC filters, in order, before the terminal filter.
    pub rbac: Arc<[crate::rbac::network::NetworkRbac]>,
}

/// A compiled listener.
#[derive(Debug)]
pub struct Listener {
    /// Name.
    pub name: Arc<str>,
    /// Bind address.
    pub address: SocketAddr,
    /// Filter chains.
    pub chains: Vec<FilterChain>,
    /// Chain for connections no other matches.
    pub default_chain: Option<FilterChain>,
    /// Run the TLS inspector.
    pub inspect_tls: bool,
    /// Run the HTTP inspector.
    pub inspect_http: bool,
    /// Restore the original destination (`SO_ORIGINAL_DST`).
    pub original_dst: bool,
    /// Time the listener filters get.
    pub filters_timeout: Duration,
    /// Accept queue length.
    pub backlog: u32,
    /// Metrics.
    pub stats: ListenerStats,
}

impl Listener {
    /// Picks the filter chain for a connection.
    pub fn select(&self, port: u16, detected: &Detected) -> Option<&FilterChain> {
        let mut candidates: Vec<&FilterChain> = self.chains.iter().collect();
        narrow(&mut candidates, |c| match c.matcher.destination_port {
            Some(p) if p == port => Some(1),
            Some(_) => None,
            None => Some(0),
        });
        narrow(&mut candidates, |c| {
            server_name_rank(&c.matcher.server_names, detected.server_name.as_deref())
        });
        narrow(&mut candidates, |c| match &c.matcher.transport_protocol {
            Some(t) if t == detected.transport => Some(1),
            Some(_) => None,
            None => Some(0),
        });
        narrow(&mut candidates, |c| {
            if c.matcher.application_protocols.is_empty() {
                Some(0)
            } else if c
                .matcher
                .application_protocols
                .iter()
                .any(|p| detected.application_protocols.contains(p))
            {
                Some(1)
            } else {
                None
            }
        });
        candidates.first().copied().or(self.default_chain.as_ref())
    }
}

/// Keeps the candidates with the best rank (`None`: excluded).
fn narrow<F: Fn(&FilterChain) -> Option<usize>>(candidates: &mut Vec<&FilterChain>, rank: F) {
    let best = candidates.iter().filter_map(|c| rank(c)).max();
    match best {
        Some(best) => candidates.retain(|c| rank(c) == Some(best)),
        None => candidates.clear(),
    }
}

/// Exact names rank above longer wildcards above shorter ones above "any name".
fn server_name_rank(names: &[String], sni: Option<&str>) -> Option<usize> {
    if names.is_empty() {
        return Some(0);
    }
    let sni = sni?;
    names
        .iter()
        .filter_map(|n| {
            if n == sni {
                Some(usize::MAX)
            } else if let Some(suffix) = n.strip_prefix('*') {
                (sni.len() > suffix.len() && sni.ends_with(suffix)).then_some(suffix.len() + 1)
            } else {
                None
            }
        })
        .max()
}

static CONNECTION_IDS: AtomicU64 = AtomicU64::new(1);

/// A bound listener as the workers see it: its configuration, which a listener update
/// replaces without rebinding (open connections follow it: `follow.rs`), and a signal
/// that removes it.
#[derive(Debug)]
pub struct ListenerHandle {
    /// Current configuration.
    pub config: arc_swap::ArcSwap<Listener>,
    updates: tokio::sync::watch::Sender<u64>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl ListenerHandle {
    /// A handle for `listener`.
    pub fn new(listener: Arc<Listener>) -> Arc<ListenerHandle> {
        Arc::new(ListenerHandle {
            config: arc_swap::ArcSwap::new(listener),
            updates: tokio::sync::watch::Sender::new(0),
            stop: tokio::sync::watch::Sender::new(false),
        })
    }

    /// Replaces the configuration in place and tells the open connections.
    pub fn update(&self, listener: Arc<Listener>) {
        self.config.store(listener);
        self.updates.send_modify(|n| *n += 1);
    }

    /// A receiver that sees each update.
    pub fn updates(&self) -> tokio::sync::watch::Receiver<u64> {
        self.updates.subscribe()
    }

    /// Stops accepting on every worker (connections already open go on).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    async fn stopped(&self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// Accepts connections until the listener is removed or draining starts, then closes
/// the socket.
pub async fn accept_loop(socket: TcpListener, handle: Arc<ListenerHandle>, drain: Drain) {
    loop {
        tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok((stream, peer)) => {
                    let guard = drain.track();
                    let (h, d) = (handle.clone(), drain.clone());
                    tokio::spawn(async move {
                        handle_connection(stream, peer, h, d).await;
                        drop(guard);
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(listener = %handle.config.load().name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = drain.signaled() => break,
            _ = handle.stopped() => break,
        }
    }
}

async fn handle_connection(
    stream: TcpStream,
    peer: SocketAddr,
    handle: Arc<ListenerHandle>,
    drain: Drain,
) {
    let listener = handle.config.load_full();
    let stats = &listener.stats;
    stats.cx_total.inc();
    stats.cx_active.inc();
    let _active = scopeguard(stats.cx_active.clone());
    let _ = stream.set_nodelay(true);
    let local = if listener.original_dst {
        original_dst(&stream).or_else(|| stream.local_addr().ok())
    } else {
        stream.local_addr().ok()
    };
    let Some(local) = local else { return };
    let detected = if listener.inspect_tls || listener.inspect_http {
        match detect::inspect(
            &stream,
            listener.inspect_tls,
            listener.inspect_http,
            listener.filters_timeout,
        )
        .await
        {
            Ok(d) => d,
            Err(_) => return,
        }
    } else {
        Detected {
            transport: "raw_buffer",
            ..Detected::default()
        }
    };
    let Some(chain) = listener.select(local.port(), &detected) else {
        stats.no_filter_chain.inc();
        tracing::debug!(listener = %listener.name, %peer, "no filter chain matched; closing");
        return;
    };
    let counters = ByteCounters {
        rx: Some(stats.rx_bytes.clone()),
        tx: Some(stats.tx_bytes.clone()),
    };
    // The inspector only peeked: the handshake reads the ClientHello from the socket.
    let io = CountingIo::new(stream, counters);
    let (io, tls) = match &chain.tls {
        None => (MaybeTls::Plain(io), None),
        // Boxed: a handshake's state is large; plaintext connections do not carry it.
        Some(tls) => match Box::pin(tls.accept(io, peer, &listener.name)).await {
            Ok((stream, info)) => (MaybeTls::Server(Box::new(stream)), Some(info)),
            Err(_) => return,
        },
    };
    let server_name = detected
        .server_name
        .as_deref()
        .map(Box::from)
        .or_else(|| tls.as_ref().and_then(|t| t.server_name.clone()));
    let alpn = tls.as_ref().and_then(|t| t.alpn.clone());
    let downstream = Arc::new(Downstream {
        id: CONNECTION_IDS.fetch_add(1, Ordering::Relaxed),
        remote: peer,
        local,
        server_name,
        listener: listener.name.clone(),
        tls,
    });
    if let Err(details) = crate::rbac::network::check(&chain.rbac, &downstream) {
        if let Network::Tcp(proxy) = &chain.network {
            crate::tcp::log_denied(proxy, downstream, details);
        }
        return;
    }
    let origin = Origin::new(handle, local.port(), detected, chain.tls.is_some());
    match &chain.network {
        Network::Http(manager) => {
            let manager = manager.clone();
            // ALPN decides the protocol on TLS; on cleartext, the client's preface does.
            let codec = match (manager.codec, alpn.as_deref()) {
                (Codec::Auto, Some("h2")) => Codec::Http2,
                (Codec::Auto, Some("http/1.1" | "http/1.0")) => Codec::Http1,
                (codec, _) => codec,
            };
            let verdicts = (codec != Codec::Http2).then(|| Arc::new(Verdicts::default()));
            let conn = Connection {
                downstream,
                manager,
                verdicts: verdicts.clone(),
                denied: None,
            };
            let followed = Following::new(conn, listener.clone(), origin);
            match verdicts {
                None => crate::http::server::serve(io, followed, codec, drain).await,
                Some(v) => {
                    let io = Guarded::new(io, v);
                    crate::http::server::serve(io, followed, codec, drain).await
                }
            }
        }
        Network::Tcp(proxy) => {
            let revoked = origin.revoked(&downstream, &listener);
            crate::tcp::proxy(io, proxy.clone(), downstream.clone(), revoked).await;
        }
    }
}

/// Decrements a gauge when dropped.
struct GaugeGuard(prometheus_client::metrics::gauge::Gauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn scopeguard(g: prometheus_client::metrics::gauge::Gauge) -> GaugeGuard {
    GaugeGuard(g)
}

/// The destination before an iptables REDIRECT, if there was one.
fn original_dst(stream: &TcpStream) -> Option<SocketAddr> {
    let sock = socket2::SockRef::from(stream);
    let addr = match stream.local_addr().ok()? {
        SocketAddr::V4(_) => sock.original_dst_v4().ok()?,
        SocketAddr::V6(_) => sock.original_dst_v6().ok()?,
    };
    addr.as_socket()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::tcp::{TcpCluster, TcpProxy};

    fn chain(name: &str, m: ChainMatch) -> FilterChain {
        let m2 = Metrics::new();
        FilterChain {
            name: name.into(),
            matcher: m,
            network: Network::Tcp(Arc::new(TcpProxy {
                stat_prefix: "t".into(),
                cluster: TcpCluster::Named("c".into()),
                idle_timeout: None,
                max_connect_attempts: 1,
                access_logs: vec![],
                clusters: Default::default(),
                stats: m2.tcp("t"),
            })),
            tls: None,
            rbac: Arc::from(Vec::new()),
        }
    }

    fn listener(chains: Vec<FilterChain>) -> Listener {
        Listener {
            name: "l".into(),
            address: "127.0.0.1:0".parse().expect("a"),
            chains,
            default_chain: None,
            inspect_tls: true,
            inspect_http: true,
            original_dst: false,
            filters_timeout: DEFAULT_LISTENER_FILTERS_TIMEOUT,
            backlog: 128,
            stats: ListenerStats::default(),
        }
    }

    fn tls(sni: &str, alpn: &[&str]) -> Detected {
        Detected {
            transport: "tls",
            server_name: Some(sni.into()),
            application_protocols: alpn.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn precedence() {
        let l = listener(vec![
            chain("any", ChainMatch::default()),
            chain(
                "port",
                ChainMatch {
                    destination_port: Some(8443),
                    ..Default::default()
                },
            ),
            chain(
                "port-wild",
                ChainMatch {
                    destination_port: Some(8443),
                    server_names: vec!["*.example.com".into()],
                    ..Default::default()
                },
            ),
            chain(
                "port-exact",
                ChainMatch {
                    destination_port: Some(8443),
                    server_names: vec!["api.example.com".into()],
                    ..Default::default()
                },
            ),
            chain(
                "h2",
                ChainMatch {
                    destination_port: Some(9000),
                    application_protocols: vec!["h2".into()],
                    ..Default::default()
                },
            ),
            chain(
                "plain",
                ChainMatch {
                    destination_port: Some(9000),
                    transport_protocol: Some("raw_buffer".into()),
                    ..Default::default()
                },
            ),
        ]);
        let pick = |port, d: &Detected| l.select(port, d).map(|c| c.name.to_string());
        assert_eq!(pick(80, &tls("x", &[])).as_deref(), Some("any"));
        assert_eq!(
            pick(8443, &tls("api.example.com", &[])).as_deref(),
            Some("port-exact")
        );
        assert_eq!(
            pick(8443, &tls("www.example.com", &[])).as_deref(),
            Some("port-wild")
        );
        assert_eq!(pick(8443, &tls("other.org", &[])).as_deref(), Some("port"));
        assert_eq!(pick(9000, &tls("x", &["h2"])).as_deref(), Some("h2"));
        let raw = Detected {
            transport: "raw_buffer",
            ..Default::default()
        };
        assert_eq!(pick(9000, &raw).as_deref(), Some("plain"));
        assert_eq!(pick(9000, &tls("x", &["http/1.1"])), None);
    }
}
