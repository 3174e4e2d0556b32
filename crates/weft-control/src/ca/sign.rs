//! Signing one workload certificate from a CSR.

use super::{CaError, Stored};
use rcgen::{
    CertificateSigningRequestParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A signed certificate and what a workload needs with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Signed {
    /// The certificate, then the chain above it up to (not including) the root (PEM).
    pub chain: Vec<String>,
    /// The trust bundle (PEM roots).
    pub roots: Vec<String>,
    /// The certificate's SPIFFE ID.
    pub spiffe_id: String,
    /// When it expires (seconds since the Unix epoch).
    pub expires: u64,
    /// The root it chains to (PEM): a sidecar renews early when another one signs.
    #[serde(default)]
    pub root: String,
}

/// Why a CSR was not signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The CSR is not one (or its signature does not verify).
    #[error("the CSR is invalid: {0}")]
    Invalid(String),
    /// The CSR asks for another identity than the caller's.
    #[error("the CSR asks for {asked}, but the credential is for {allowed}")]
    Identity {
        /// What it asked for.
        asked: String,
        /// What the caller may have.
        allowed: String,
    },
    /// The CA is unavailable.
    #[error(transparent)]
    Ca(CaError),
}

/// A random positive 128-bit serial (RFC 5280 asks for at most 20 octets).
pub fn random_serial() -> SerialNumber {
    let mut bytes = crate::sealing::random_bytes(16);
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

pub(super) fn sign(
    csr_pem: &str,
    spiffe_id: &str,
    ttl: Duration,
    issuer: &Issuer<'static, KeyPair>,
    stored: &Stored,
) -> Result<Signed, SignError> {
    let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| SignError::Invalid(e.to_string()))?;
    for san in &csr.params.subject_alt_names {
        let asked = match san {
            SanType::URI(uri) => uri.as_str().to_string(),
            other => format!("{other:?}"),
        };
        if asked != spiffe_id {
            return Err(SignError::Identity {
                asked,
                allowed: spiffe_id.to_string(),
            });
        }
    }
    // What the certificate says is the CA's choice, not the CSR's.
    let params = &mut csr.params;
    params.subject_alt_names =
        vec![SanType::URI(spiffe_id.try_into().map_err(|_| {
            SignError::Invalid(format!("{spiffe_id} is not an IA5 string"))
        })?)];
    params.distinguished_name = DistinguishedName::new();
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = time::OffsetDateTime::now_utc();
    // A little slack for clocks behind ours.
    params.not_before = now - time::Duration::minutes(1);
    params.not_after = now + ttl;
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = true;
    let expires = u64::try_from(params.not_after.unix_timestamp()).unwrap_or(0);
    let cert = csr
        .signed_by(issuer)
        .map_err(|e| SignError::Invalid(e.to_string()))?;
    Ok(Signed {
        chain: stored.chain_for(cert.pem()),
        roots: stored.roots.clone(),
        spiffe_id: spiffe_id.to_string(),
        expires,
        root: stored.root().to_string(),
    })
}
