//! TLS origination (Envoy's `UpstreamTlsContext` on a cluster): the client
//! configuration, rebuilt when the secrets it names change, and the handshake, which
//! presents this proxy's certificate, verifies the server's chain and identity, offers
//! the application protocols the connection will speak, and records what was agreed.

use super::context::{CertSource, ConfigCache, Validation, Versions};
use super::secrets::SecretStore;
use super::verify::ServerVerifier;
use super::{Outcome, TlsError, TlsInfo};
use crate::metrics::TlsStats;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;

/// Which application protocols a connection offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// The configured `alpn_protocols` as they are (TCP proxying).
    Configured,
    /// An HTTP/1.1 connection: the configured list without `h2`, and `http/1.1`.
    Http1,
    /// An HTTP/2 connection: the configured list without HTTP/1, and `h2`.
    Http2,
}

/// A compiled `UpstreamTlsContext`.
#[derive(Debug)]
pub struct UpstreamTls {
    /// SNI to send (`sni`); without it none is sent.
    pub sni: Option<ServerName<'static>>,
    /// `common_tls_context.alpn_protocols`.
    pub alpn: Vec<Vec<u8>>,
    /// The client certificate, if one is presented.
    pub cert: Option<CertSource>,
    /// How the server is verified; `None` takes any certificate (Envoy's behaviour
    /// without a validation context).
    pub validation: Option<Validation>,
    /// Allowed versions.
    pub versions: Versions,
    store: SecretStore,
    cache: ConfigCache<ClientConfig>,
    stats: TlsStats,
}

impl UpstreamTls {
    /// A context; secrets named by SDS come from `store`.
    pub fn new(
        sni: Option<ServerName<'static>>,
        alpn: Vec<Vec<u8>>,
        cert: Option<CertSource>,
        validation: Option<Validation>,
        versions: Versions,
        store: SecretStore,
        stats: TlsStats,
    ) -> UpstreamTls {
        UpstreamTls {
            sni,
            alpn,
            cert,
            validation,
            versions,
            store,
            cache: ConfigCache::default(),
            stats,
        }
    }

    /// The secret names this context needs.
    pub fn secret_names(&self) -> Vec<Arc<str>> {
        let mut names = Vec::new();
        if let Some(CertSource::Sds(n)) = &self.cert {
            names.push(n.clone());
        }
        if let Some(Validation {
            roots: super::RootsSource::Sds(n),
            ..
        }) = &self.validation
        {
            names.push(n.clone());
        }
        names
    }

    /// The client configuration for the secrets as they are now.
    pub fn config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        self.cache.get(self.store.generation(), || self.build())
    }

    fn build(&self) -> Result<ClientConfig, TlsError> {
        let roots = match &self.validation {
            Some(v) => Some(v.roots.resolve(&self.store)?.roots()),
            None => None,
        };
        let sans = self
            .validation
            .as_ref()
            .map(|v| v.sans.clone())
            .unwrap_or_else(|| Arc::from(Vec::new()));
        let cert = self
            .cert
            .as_ref()
            .map(|c| c.resolve(&self.store))
            .transpose()?;
        let builder = ClientConfig::builder_with_provider(super::provider())
            .with_protocol_versions(self.versions.list())
            .map_err(TlsError::Config)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ServerVerifier::new(roots, sans)));
        Ok(match cert {
            Some(c) => builder.with_client_cert_resolver(Arc::new(
                rustls::sign::SingleCertAndKey::from(c.certified_key()),
            )),
            None => builder.with_no_client_auth(),
        })
    }

    /// The protocols to offer for `alpn`.
    pub fn offer(&self, alpn: Alpn) -> Vec<Vec<u8>> {
        let (ours, other): (&[u8], &[&[u8]]) = match alpn {
            Alpn::Configured => return self.alpn.clone(),
            Alpn::Http1 => (b"http/1.1", &[b"h2"]),
            Alpn::Http2 => (b"h2", &[b"http/1.1", b"http/1.0"]),
        };
        let mut list: Vec<Vec<u8>> = self
            .alpn
            .iter()
            .filter(|p| !other.contains(&p.as_slice()))
            .cloned()
            .collect();
        if !list.iter().any(|p| p == ours) {
            list.push(ours.to_vec());
        }
        list
    }

    /// Runs the handshake over `io` (connected to `addr`) within `timeout`, and counts
    /// its outcome.
    pub async fn connect<IO>(
        &self,
        io: IO,
        addr: SocketAddr,
        alpn: Alpn,
        timeout: Duration,
    ) -> Result<(TlsStream<IO>, Arc<TlsInfo>), TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let result = self.handshake(io, addr, alpn, timeout).await;
        match super::count_handshake(&self.stats, &result) {
            Some((Outcome::MissingSecret, e)) => {
                tracing::warn!(upstream = %addr, error = %e, "TLS origination impossible: the secret is not in the store")
            }
            Some((outcome, e)) => {
                tracing::debug!(upstream = %addr, error = %e, result = outcome.as_str(), "upstream TLS handshake failed")
            }
            None => {}
        }
        result
    }

    async fn handshake<IO>(
        &self,
        io: IO,
        addr: SocketAddr,
        alpn: Alpn,
        timeout: Duration,
    ) -> Result<(TlsStream<IO>, Arc<TlsInfo>), TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let config = self.config()?;
        // An IP address as the name sends no SNI, as Envoy does without `sni`.
        let name = self
            .sni
            .clone()
            .unwrap_or(ServerName::IpAddress(addr.ip().into()));
        let connector = tokio_rustls::TlsConnector::from(config);
        let connect = connector.with_alpn(self.offer(alpn)).connect(name, io);
        let stream = match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(TlsError::Handshake(e)),
            Err(_) => return Err(TlsError::Timeout(timeout)),
        };
        let local = self.cert.as_ref().and_then(|c| c.resolve(&self.store).ok());
        let sni = self.sni.as_ref().and_then(|n| match n {
            ServerName::DnsName(d) => Some(d.as_ref().to_string()),
            _ => None,
        });
        let info = TlsInfo::from_session(stream.get_ref().1, sni.as_deref(), local.as_deref());
        Ok((stream, Arc::new(info)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::tls::Side;

    fn ctx(alpn: &[&str]) -> UpstreamTls {
        UpstreamTls::new(
            None,
            alpn.iter().map(|p| p.as_bytes().to_vec()).collect(),
            None,
            None,
            Versions::Tls13,
            SecretStore::new(),
            Metrics::new().tls(Side::Upstream),
        )
    }

    fn strings(v: Vec<Vec<u8>>) -> Vec<String> {
        v.into_iter()
            .map(|p| String::from_utf8(p).expect("utf8"))
            .collect()
    }

    #[test]
    fn alpn_follows_the_protocol_spoken() {
        let c = ctx(&["h2", "http/1.1"]);
        assert_eq!(strings(c.offer(Alpn::Http2)), vec!["h2"]);
        assert_eq!(strings(c.offer(Alpn::Http1)), vec!["http/1.1"]);
        assert_eq!(strings(c.offer(Alpn::Configured)), vec!["h2", "http/1.1"]);
        let none = ctx(&[]);
        assert_eq!(strings(none.offer(Alpn::Http1)), vec!["http/1.1"]);
        assert!(none.offer(Alpn::Configured).is_empty());
        let istio = ctx(&["istio", "h2"]);
        assert_eq!(strings(istio.offer(Alpn::Http1)), vec!["istio", "http/1.1"]);
    }
}
