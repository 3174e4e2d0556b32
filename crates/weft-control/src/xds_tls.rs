//! xDS over TLS (Istio's port 15012): the same ADS service behind a TLS listener whose
//! certificate the mesh's CA signs, so that clients that send credentials only over a
//! secure channel (gRPC's JWT call credentials) can present a join token, and nobody
//! on the path reads the configuration. The certificate is renewed at half-life
//! without a restart.

use crate::ca::{Authority, CaError};
use crate::identity::Identity;
use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Lifetime of the serving certificate.
const SERVING_TTL: Duration = Duration::from_secs(24 * 3600);

/// The identity the control plane's serving certificate names.
pub fn control_plane_identity() -> Identity {
    Identity::new("weft-system", "weft-control")
}

/// The current serving certificate, swapped on renewal.
#[derive(Debug)]
struct ServingCert(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

async fn certified_key(authority: &Authority, names: &[String]) -> Result<CertifiedKey, CaError> {
    let (chain, key) = authority
        .issue_server(&control_plane_identity(), names, SERVING_TTL)
        .await?;
    let damaged = |e: String| CaError::Damaged(e);
    let certs = chain
        .iter()
        .map(|pem| {
            CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| damaged(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| damaged(e.to_string()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    CertifiedKey::from_der(certs, key, &provider).map_err(|e| damaged(e.to_string()))
}

/// The TLS configuration of the xDS listener, and a task that renews its certificate.
pub async fn server_config(
    authority: Arc<Authority>,
    names: Vec<String>,
    mut stop: watch::Receiver<bool>,
) -> Result<Arc<rustls::ServerConfig>, CaError> {
    let cert = Arc::new(ServingCert(ArcSwap::from_pointee(
        certified_key(&authority, &names).await?,
    )));
    let renewed = cert.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(SERVING_TTL / 2) => {}
                _ = stop.changed() => return,
            }
            match certified_key(&authority, &names).await {
                Ok(k) => renewed.0.store(Arc::new(k)),
                Err(e) => tracing::error!(error = %e, "cannot renew the xDS serving certificate"),
            }
        }
    });
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| CaError::Damaged(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// One accepted TLS connection, as tonic's server takes it.
pub struct TlsConn {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    info: TcpConnectInfo,
}

impl Connected for TlsConn {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> TcpConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Accepts on `listener` and completes handshakes concurrently (a slow client does not
/// hold up the others); connections that fail their handshake are dropped.
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> tokio_stream::wrappers::ReceiverStream<Result<TlsConn, io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "xDS/TLS accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let info = TcpConnectInfo {
                local_addr: tcp.local_addr().ok(),
                remote_addr: Some(remote),
            };
            let (acceptor, conns) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let handshake =
                    tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await;
                match handshake {
                    Ok(Ok(inner)) => {
                        let _ = conns.send(Ok(TlsConn { inner, info })).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%remote, error = %e, "xDS/TLS handshake failed"),
                    Err(_) => tracing::debug!(%remote, "xDS/TLS handshake timed out"),
                }
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
