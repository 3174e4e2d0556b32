//! TLS termination (Envoy's `DownstreamTlsContext` on a filter chain): the server
//! configuration, rebuilt when the secrets it names change, and the handshake, which
//! presents this proxy's certificate, asks for (or requires) the client's and verifies
//! it against the trusted roots and expected identities, and records what was agreed.

use super::context::{CertSource, ConfigCache, Validation, Versions};
use super::secrets::SecretStore;
use super::verify::ClientVerifier;
use super::{Outcome, TlsError, TlsInfo};
use crate::metrics::TlsStats;
use rustls::ServerConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;

/// A compiled `DownstreamTlsContext`.
#[derive(Debug)]
pub struct DownstreamTls {
    /// The certificate presented.
    pub cert: CertSource,
    /// How client certificates are verified; `None`: none is asked for.
    pub validation: Option<Validation>,
    /// Refuse clients without a valid certificate.
    pub require_client_certificate: bool,
    /// Application protocols offered (`alpn_protocols`), in preference order.
    pub alpn: Vec<Vec<u8>>,
    /// Allowed versions.
    pub versions: Versions,
    /// Time the handshake gets.
    pub handshake_timeout: Duration,
    store: SecretStore,
    cache: ConfigCache<ServerConfig>,
    stats: TlsStats,
}

impl DownstreamTls {
    /// A context; secrets named by SDS come from `store`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cert: CertSource,
        validation: Option<Validation>,
        require_client_certificate: bool,
        alpn: Vec<Vec<u8>>,
        versions: Versions,
        handshake_timeout: Duration,
        store: SecretStore,
        stats: TlsStats,
    ) -> DownstreamTls {
        DownstreamTls {
            cert,
            validation,
            require_client_certificate,
            alpn,
            versions,
            handshake_timeout,
            store,
            cache: ConfigCache::default(),
            stats,
        }
    }

    /// The server configuration for the secrets as they are now.
    pub fn config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        self.cache.get(self.store.generation(), || self.build())
    }

    fn build(&self) -> Result<ServerConfig, TlsError> {
        let cert = self.cert.resolve(&self.store)?;
        let builder = ServerConfig::builder_with_provider(super::provider())
            .with_protocol_versions(self.versions.list())
            .map_err(TlsError::Config)?;
        let builder = match &self.validation {
            Some(v) => {
                let roots = v.roots.resolve(&self.store)?.roots();
                let verifier =
                    ClientVerifier::new(roots, v.sans.clone(), self.require_client_certificate)
                        .map_err(TlsError::Config)?;
                builder.with_client_cert_verifier(Arc::new(verifier))
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(
            rustls::sign::SingleCertAndKey::from(cert.certified_key()),
        ));
        config.alpn_protocols = self.alpn.clone();
        Ok(config)
    }

    /// Runs the handshake over `io` (accepted from `peer` on `listener`) within the
    /// handshake timeout, and counts its outcome.
    pub async fn accept<IO>(
        &self,
        io: IO,
        peer: SocketAddr,
        listener: &str,
    ) -> Result<(TlsStream<IO>, Arc<TlsInfo>), TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let result = self.handshake(io).await;
        match super::count_handshake(&self.stats, &result) {
            Some((Outcome::MissingSecret, e)) => {
                tracing::warn!(listener, %peer, error = %e, "TLS termination impossible: the secret is not in the store; closing")
            }
            Some((outcome, e)) => {
                tracing::debug!(listener, %peer, error = %e, result = outcome.as_str(), "downstream TLS handshake failed")
            }
            None => {}
        }
        result
    }

    async fn handshake<IO>(&self, io: IO) -> Result<(TlsStream<IO>, Arc<TlsInfo>), TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let config = self.config()?;
        let accept = tokio_rustls::TlsAcceptor::from(config).accept(io);
        let stream = match tokio::time::timeout(self.handshake_timeout, accept).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(TlsError::Handshake(e)),
            Err(_) => return Err(TlsError::Timeout(self.handshake_timeout)),
        };
        let local = self.cert.resolve(&self.store).ok();
        let conn = stream.get_ref().1;
        let info = TlsInfo::from_session(conn, conn.server_name(), local.as_deref());
        Ok((stream, Arc::new(info)))
    }
}
