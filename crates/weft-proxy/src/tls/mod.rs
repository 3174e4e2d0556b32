//! TLS in the data plane: mutual TLS with SPIFFE identities, configured as Envoy
//! configures it (`UpstreamTlsContext` on clusters, `DownstreamTlsContext` on filter
//! chains), with rustls and its default aws-lc-rs provider.
//!
//! - [`secrets`]: the [`SecretStore`] of named certificates and trust roots, which SDS
//!   secret names resolve from and which the sidecar's identity manager feeds.
//! - [`material`]: certificates and keys from PEM files or inline data.
//! - [`x509`]: what a certificate says (URI SANs, serial, validity).
//! - [`verify`]: peer verification: the chain against the named roots, then the
//!   expected subject alternative names.
//! - [`context`]: what upstream and downstream contexts share: where their material
//!   comes from, protocol versions, and configurations rebuilt when secrets change.
//! - [`upstream`] and [`downstream`]: the handshakes, each side's.
//! - [`stream`]: a connection that is TLS or not, as one type.
//! - [`redact`]: private keys taken out of configuration dumps.
//!
//! Rotation: every secret change bumps the store's generation; the next handshake of a
//! context sees it and builds its rustls configuration anew, while connections already
//! established keep the configuration they were made with.

pub mod context;
pub mod downstream;
pub mod expiry;
pub mod material;
pub mod redact;
pub mod secrets;
pub mod stream;
pub mod upstream;
pub mod verify;
pub mod x509;

pub use context::{CertSource, RootsSource, Validation, Versions};
pub use downstream::DownstreamTls;
pub use secrets::{SecretError, SecretStore};
pub use stream::MaybeTls;
pub use upstream::{Alpn, UpstreamTls};

use rustls::crypto::CryptoProvider;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Time a downstream TLS handshake gets when the filter chain sets no
/// `transport_socket_connect_timeout`.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The crypto provider every TLS configuration uses: rustls' default (aws-lc-rs), whose
/// key exchange groups put the post-quantum hybrid X25519MLKEM768 first.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

/// Which end of a connection the proxy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The proxy accepted the connection (TLS termination).
    Downstream,
    /// The proxy opened the connection (TLS origination).
    Upstream,
}

impl Side {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Downstream => "downstream",
            Side::Upstream => "upstream",
        }
    }
}

/// How a handshake ended, as the metric labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Completed.
    Success,
    /// The peer presented no certificate where one is required.
    NoCertificate,
    /// A certificate was refused: unknown issuer, expired, bad signature, or the peer
    /// refused ours.
    BadCertificate,
    /// The peer's certificate is valid but names none of the expected identities.
    WrongIdentity,
    /// The certificate or trust roots this side needs are not in the secret store yet.
    MissingSecret,
    /// The handshake did not finish in time.
    Timeout,
    /// Anything else: not TLS, no common version or ALPN, the connection closed.
    Protocol,
}

impl Outcome {
    /// Every outcome, in label order.
    pub const ALL: [Outcome; 7] = [
        Outcome::Success,
        Outcome::NoCertificate,
        Outcome::BadCertificate,
        Outcome::WrongIdentity,
        Outcome::MissingSecret,
        Outcome::Timeout,
        Outcome::Protocol,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::NoCertificate => "no_certificate",
            Outcome::BadCertificate => "bad_certificate",
            Outcome::WrongIdentity => "wrong_identity",
            Outcome::MissingSecret => "missing_secret",
            Outcome::Timeout => "timeout",
            Outcome::Protocol => "protocol",
        }
    }

    /// Position in [`Outcome::ALL`].
    pub fn index(self) -> usize {
        Outcome::ALL
            .iter()
            .position(|o| *o == self)
            .unwrap_or(Outcome::ALL.len() - 1)
    }
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A secret the context names is not in the store.
    #[error("TLS secret {0:?} is not available yet")]
    MissingSecret(Arc<str>),
    /// The handshake took longer than allowed.
    #[error("TLS handshake timed out after {0:?}")]
    Timeout(Duration),
    /// The handshake failed.
    #[error("TLS handshake failed: {}", describe(.0))]
    Handshake(#[source] std::io::Error),
    /// The material in the store could not make a configuration.
    #[error("cannot build the TLS configuration: {0}")]
    Config(#[source] rustls::Error),
}

impl TlsError {
    /// The outcome class for metrics.
    pub fn outcome(&self) -> Outcome {
        match self {
            TlsError::MissingSecret(_) => Outcome::MissingSecret,
            TlsError::Config(_) => Outcome::Protocol,
            TlsError::Timeout(_) => Outcome::Timeout,
            TlsError::Handshake(e) => match rustls_error(e) {
                Some(e) => classify(e),
                None => Outcome::Protocol,
            },
        }
    }

    /// Envoy's `%UPSTREAM_TRANSPORT_FAILURE_REASON%` spelling.
    pub fn transport_failure_reason(&self) -> String {
        format!("TLS_error: {self}")
    }
}

/// A handshake failure in words (rustls shows application verifier errors by `Debug`).
fn describe(e: &std::io::Error) -> String {
    match rustls_error(e) {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) => {
            format!("invalid peer certificate: {}", other.0)
        }
        Some(other) => other.to_string(),
        None => e.to_string(),
    }
}

/// Counts a handshake's result in `stats` (the outcome; the version and group when it
/// completed) and returns the failure to report, if it failed.
pub fn count_handshake<'r, S>(
    stats: &crate::metrics::TlsStats,
    result: &'r Result<(S, Arc<TlsInfo>), TlsError>,
) -> Option<(Outcome, &'r TlsError)> {
    match result {
        Ok((_, info)) => {
            stats.handshake(Outcome::Success);
            stats.negotiated(info.version, info.group);
            None
        }
        Err(e) => {
            let outcome = e.outcome();
            stats.handshake(outcome);
            Some((outcome, e))
        }
    }
}

/// The rustls error inside an I/O error from tokio-rustls, if that is what it is.
pub fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

/// The outcome class of a rustls error.
pub fn classify(e: &rustls::Error) -> Outcome {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    match e {
        E::NoCertificatesPresented | E::AlertReceived(A::CertificateRequired) => {
            Outcome::NoCertificate
        }
        E::InvalidCertificate(C::Other(other))
            if other.0.downcast_ref::<verify::WrongIdentity>().is_some() =>
        {
            Outcome::WrongIdentity
        }
        E::InvalidCertificate(_)
        | E::AlertReceived(
            A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::AccessDenied,
        ) => Outcome::BadCertificate,
        _ => Outcome::Protocol,
    }
}

/// What one TLS session established: read by access logs, and by authorization through
/// the stream info.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: &'static str,
    /// The cipher suite, IANA name.
    pub cipher: &'static str,
    /// The key exchange group, e.g. `X25519MLKEM768`.
    pub group: Option<&'static str>,
    /// The negotiated application protocol.
    pub alpn: Option<Box<str>>,
    /// The server name the client asked for.
    pub server_name: Option<Box<str>>,
    /// URI SANs of the peer's leaf certificate (its SPIFFE ID first).
    pub peer_uri_sans: Vec<Box<str>>,
    /// DNS SANs of the peer's leaf certificate.
    pub peer_dns_sans: Vec<Box<str>>,
    /// Serial number of the peer's leaf certificate (hex).
    pub peer_serial: Option<Box<str>>,
    /// Subject of the peer's leaf certificate (RFC 4514); `None`: the peer presented no
    /// certificate.
    pub peer_subject: Option<Box<str>>,
    /// URI SANs of the certificate this side presented.
    pub local_uri_sans: Vec<Box<str>>,
}

impl TlsInfo {
    /// Reads what the finished handshake agreed on.
    pub fn from_session(
        state: &rustls::CommonState,
        server_name: Option<&str>,
        local: Option<&secrets::CertificateSecret>,
    ) -> TlsInfo {
        let version = match state.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "",
        };
        let cipher = state
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .unwrap_or("");
        let group = state
            .negotiated_key_exchange_group()
            .map(|g| group_name(g.name()));
        let peer = state
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|leaf| x509::CertSummary::parse(leaf).ok());
        let (peer_uri_sans, peer_dns_sans, peer_serial, peer_subject) = match peer {
            Some(p) => (
                p.uri_sans.into_iter().map(String::into_boxed_str).collect(),
                p.dns_sans.into_iter().map(String::into_boxed_str).collect(),
                Some(p.serial.into_boxed_str()),
                Some(p.subject.into_boxed_str()),
            ),
            None => (Vec::new(), Vec::new(), None, None),
        };
        TlsInfo {
            version,
            cipher,
            group,
            alpn: state
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned().into_boxed_str()),
            server_name: server_name.map(Box::from),
            peer_uri_sans,
            peer_dns_sans,
            peer_serial,
            peer_subject,
            local_uri_sans: local
                .map(|c| {
                    c.leaf()
                        .uri_sans
                        .iter()
                        .map(|s| s.as_str().into())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The peer's identity: the first URI SAN of its certificate.
    pub fn peer_identity(&self) -> Option<&str> {
        self.peer_uri_sans.first().map(|s| &**s)
    }
}

/// The conventional (OpenSSL) name of a key exchange group.
pub fn group_name(g: rustls::NamedGroup) -> &'static str {
    use rustls::NamedGroup as G;
    match g {
        G::secp256r1 => "P-256",
        G::secp384r1 => "P-384",
        G::secp521r1 => "P-521",
        G::secp256r1MLKEM768 => "SecP256r1MLKEM768",
        other => other.as_str().unwrap_or("unknown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_quantum_hybrid_is_preferred() {
        let p = provider();
        assert_eq!(
            p.kx_groups.first().map(|g| g.name()),
            Some(rustls::NamedGroup::X25519MLKEM768),
            "X25519MLKEM768 must be offered first"
        );
        assert_eq!(
            group_name(rustls::NamedGroup::X25519MLKEM768),
            "X25519MLKEM768"
        );
        assert_eq!(group_name(rustls::NamedGroup::secp256r1), "P-256");
    }

    #[test]
    fn errors_are_classed() {
        use rustls::{AlertDescription as A, CertificateError as C, Error as E};
        assert_eq!(
            classify(&E::NoCertificatesPresented),
            Outcome::NoCertificate
        );
        assert_eq!(
            classify(&E::InvalidCertificate(C::UnknownIssuer)),
            Outcome::BadCertificate
        );
        assert_eq!(
            classify(&E::InvalidCertificate(C::Expired)),
            Outcome::BadCertificate
        );
        assert_eq!(
            classify(&E::AlertReceived(A::UnknownCA)),
            Outcome::BadCertificate
        );
        let wrong = verify::WrongIdentity {
            presented: vec!["spiffe://a/ns/x/sa/y".into()],
        };
        assert_eq!(
            classify(&E::InvalidCertificate(C::Other(rustls::OtherError(
                Arc::new(wrong)
            )))),
            Outcome::WrongIdentity
        );
        assert_eq!(
            classify(&E::AlertReceived(A::ProtocolVersion)),
            Outcome::Protocol
        );
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i);
        }
    }
}
