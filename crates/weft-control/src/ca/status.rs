//! What the authority shows of itself: the trust bundle with each root's name,
//! fingerprint and expiry, which root signs, and where a rotation stands. Nothing in it
//! is secret; sidecars poll it for the bundle.

use super::{Authority, CaError};
use serde::{Deserialize, Serialize};
use x509_parser::prelude::{FromDer, X509Certificate};

/// One root of the trust bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RootInfo {
    /// The certificate (PEM).
    pub pem: String,
    /// Its subject.
    pub subject: String,
    /// SHA-256 of its DER, hex.
    pub sha256: String,
    /// When it expires (Unix seconds).
    pub not_after: i64,
    /// Whether workload certificates chain to it now.
    pub signing: bool,
    /// Whether it is prepared by a rotation, not signing yet.
    pub pending: bool,
}

/// The authority's state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CaStatus {
    /// The SPIFFE trust domain.
    pub trust_domain: String,
    /// The trust bundle.
    pub roots: Vec<RootInfo>,
    /// When the signer began signing (Unix seconds; 0: since the CA was made).
    pub signing_since: u64,
    /// When a prepared root joined the bundle, if a rotation is under way.
    pub pending_since: Option<u64>,
    /// With a prepared root: when `activate` is allowed (Unix seconds).
    #[serde(default)]
    pub activate_from: Option<u64>,
    /// With old roots still trusted after activation: when `finish` is allowed.
    #[serde(default)]
    pub finish_from: Option<u64>,
    /// How often sidecars fetch this (seconds).
    pub bundle_refresh_seconds: u64,
    /// Lifetime of workload certificates (seconds).
    pub workload_ttl_seconds: u64,
}

impl CaStatus {
    /// The PEM roots of the bundle.
    pub fn bundle(&self) -> Vec<String> {
        self.roots.iter().map(|r| r.pem.clone()).collect()
    }

    /// The root that signs now.
    pub fn signing_root(&self) -> Option<&str> {
        self.roots
            .iter()
            .find(|r| r.signing)
            .map(|r| r.pem.as_str())
    }
}

fn describe(pem: &str, signing: bool, pending: bool) -> Result<RootInfo, CaError> {
    let damaged = |e: String| CaError::Damaged(format!("a root of the bundle: {e}"));
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
        .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
        .map_err(|e| damaged(e.to_string()))?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| damaged(e.to_string()))?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
    Ok(RootInfo {
        pem: pem.to_string(),
        subject: cert.subject().to_string(),
        sha256: digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
        not_after: cert.validity().not_after.timestamp(),
        signing,
        pending,
    })
}

impl Authority {
    /// The trust bundle and rotation state.
    pub async fn status(&self) -> Result<CaStatus, CaError> {
        let signer = self.current().await?;
        let stored = &signer.stored;
        let signing_root = stored.root();
        let pending_root = stored
            .pending
            .as_ref()
            .map(|p| p.chain.last().unwrap_or(&p.cert));
        let roots = stored
            .roots
            .iter()
            .map(|pem| {
                describe(
                    pem,
                    pem == signing_root,
                    pending_root.is_some_and(|p| p == pem),
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(CaStatus {
            trust_domain: self.trust_domain.clone(),
            roots,
            signing_since: stored.signing_since,
            pending_since: stored.pending.as_ref().map(|p| p.prepared_at),
            activate_from: stored
                .pending
                .as_ref()
                .map(|p| self.activate_from(p.prepared_at)),
            finish_from: (stored.pending.is_none() && stored.roots.len() > 1)
                .then(|| self.finish_from(stored.signing_since)),
            bundle_refresh_seconds: self.bundle_refresh.as_secs(),
            workload_ttl_seconds: self.workload_ttl.as_secs(),
        })
    }
}
