//! Verifying the peer: its chain against the named trusted roots (webpki, through
//! rustls), then its subject alternative names against the expected ones (Envoy's
//! `match_typed_subject_alt_names`). SPIFFE certificates carry their identity as a URI
//! SAN and no DNS name, so the server name the client dialled plays no part: a server is
//! who its URI SAN says, provided a trusted CA signed it.

use super::x509::CertSummary;
use crate::http::matcher::StringMatch;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, RootCertStore,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::Arc;

/// Which subject alternative names a matcher looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanType {
    /// URI (SPIFFE IDs).
    Uri,
    /// DNS names (a `*.` wildcard SAN matches one label of an exact matcher's name).
    Dns,
    /// E-mail addresses.
    Email,
    /// IP addresses, in their text form.
    IpAddress,
    /// Any of the above (the deprecated untyped `match_subject_alt_names`).
    Any,
}

/// One expected subject alternative name.
#[derive(Debug, Clone)]
pub struct SanMatcher {
    /// Which SANs.
    pub san_type: SanType,
    /// How they must read.
    pub matcher: StringMatch,
}

impl SanMatcher {
    /// Whether one of `cert`'s SANs of this matcher's type matches.
    pub fn matches(&self, cert: &CertSummary) -> bool {
        let each = |list: &[String]| list.iter().any(|v| self.matcher.matches(v));
        let dns = |list: &[String]| list.iter().any(|v| self.matches_dns(v));
        match self.san_type {
            SanType::Uri => each(&cert.uri_sans),
            SanType::Dns => dns(&cert.dns_sans),
            SanType::Email => each(&cert.email_sans),
            SanType::IpAddress => each(&cert.ip_sans),
            SanType::Any => {
                each(&cert.uri_sans)
                    || dns(&cert.dns_sans)
                    || each(&cert.email_sans)
                    || each(&cert.ip_sans)
            }
        }
    }

    fn matches_dns(&self, san: &str) -> bool {
        if self.matcher.matches(san) {
            return true;
        }
        match (&self.matcher, san.strip_prefix("*.")) {
            (StringMatch::Exact(name, _), Some(suffix)) => {
                name.split_once('.').is_some_and(|(label, rest)| {
                    !label.is_empty() && rest.eq_ignore_ascii_case(suffix)
                })
            }
            _ => false,
        }
    }
}

/// The peer's certificate is valid but names none of the expected identities.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the peer's certificate names none of the expected identities (it names {presented:?})")]
pub struct WrongIdentity {
    /// The URI SANs (or, without any, the DNS SANs) the peer presented.
    pub presented: Vec<String>,
}

/// Checks `end_entity` against `matchers` (none: anything passes).
pub fn check_sans(matchers: &[SanMatcher], end_entity: &CertificateDer<'_>) -> Result<(), Error> {
    if matchers.is_empty() {
        return Ok(());
    }
    let summary = CertSummary::parse(end_entity)
        .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
    if matchers.iter().any(|m| m.matches(&summary)) {
        return Ok(());
    }
    let presented = if summary.uri_sans.is_empty() {
        summary.dns_sans
    } else {
        summary.uri_sans
    };
    Err(Error::InvalidCertificate(CertificateError::Other(
        OtherError(Arc::new(WrongIdentity { presented })),
    )))
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    super::provider().signature_verification_algorithms
}

/// How a client checks the server: the chain against `roots` (absent: Envoy's
/// "no validation context", any certificate is taken), then the SAN matchers. The
/// handshake signature is always checked.
#[derive(Debug)]
pub struct ServerVerifier {
    roots: Option<Arc<RootCertStore>>,
    sans: Arc<[SanMatcher]>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerVerifier {
    /// A verifier against `roots` and `sans`.
    pub fn new(roots: Option<Arc<RootCertStore>>, sans: Arc<[SanMatcher]>) -> ServerVerifier {
        ServerVerifier {
            roots,
            sans,
            algorithms: algorithms(),
        }
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
        check_sans(&self.sans, end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// How a server checks clients: webpki's client verifier against the roots (client
/// certificates required or only requested), then the SAN matchers.
#[derive(Debug)]
pub struct ClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    sans: Arc<[SanMatcher]>,
}

impl ClientVerifier {
    /// A verifier against `roots` and `sans`; `required` refuses clients without a
    /// certificate.
    pub fn new(
        roots: Arc<RootCertStore>,
        sans: Arc<[SanMatcher]>,
        required: bool,
    ) -> Result<ClientVerifier, Error> {
        let mut builder =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots, super::provider());
        if !required {
            builder = builder.allow_unauthenticated();
        }
        let inner = builder
            .build()
            .map_err(|e| Error::General(format!("client certificate verifier: {e}")))?;
        Ok(ClientVerifier { inner, sans })
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        check_sans(&self.sans, end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn summary(uris: &[&str], dns: &[&str]) -> CertSummary {
        CertSummary {
            serial: "01".into(),
            subject: String::new(),
            uri_sans: uris.iter().map(|s| s.to_string()).collect(),
            dns_sans: dns.iter().map(|s| s.to_string()).collect(),
            email_sans: vec![],
            ip_sans: vec!["10.0.0.1".into()],
            not_before: SystemTime::UNIX_EPOCH,
            not_after: SystemTime::UNIX_EPOCH,
            is_ca: false,
        }
    }

    #[test]
    fn san_types_and_matchers() {
        let cert = summary(
            &["spiffe://weft.local/ns/default/sa/reviews"],
            &["*.example.com"],
        );
        let m = |t, s: StringMatch| SanMatcher {
            san_type: t,
            matcher: s,
        };
        let exact = |s: &str| StringMatch::Exact(s.into(), false);
        assert!(m(
            SanType::Uri,
            exact("spiffe://weft.local/ns/default/sa/reviews")
        )
        .matches(&cert));
        assert!(!m(
            SanType::Uri,
            exact("spiffe://weft.local/ns/default/sa/ratings")
        )
        .matches(&cert));
        assert!(m(
            SanType::Uri,
            StringMatch::Prefix("spiffe://weft.local/ns/default/".into(), false)
        )
        .matches(&cert));
        assert!(!m(
            SanType::Dns,
            exact("spiffe://weft.local/ns/default/sa/reviews")
        )
        .matches(&cert));
        assert!(m(SanType::Dns, exact("api.example.com")).matches(&cert));
        assert!(!m(SanType::Dns, exact("a.b.example.com")).matches(&cert));
        assert!(m(SanType::IpAddress, exact("10.0.0.1")).matches(&cert));
        assert!(m(SanType::Any, exact("10.0.0.1")).matches(&cert));
    }
}
