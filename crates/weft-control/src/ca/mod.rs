//! The mesh's certificate authority. At the first start it makes a root (ECDSA P-256)
//! or takes the one the operator supplies (`--ca-cert`, `--ca-key`, `--ca-chain`, like
//! Istio's `cacerts`), and keeps it in the store, its key sealed (see
//! [`crate::sealing`]). It signs workload certificates from CSRs: the identity comes
//! from the caller's credential, never from the CSR, which may only ask for that same
//! identity.
//!
//! The store holds the signing certificate and key, the chain above it, and the trust
//! bundle — the roots a workload trusts. Keeping the bundle apart from the signer is
//! what lets a root rotate without a failed request: add the new root to the bundle,
//! let every workload pick it up, switch the signer, and drop the old root once every
//! certificate it signed has expired.

mod rotation;
mod sign;
mod status;

pub use rotation::{RotationError, Step};
pub use sign::{SignError, Signed};
pub use status::{CaStatus, RootInfo};

use crate::identity::Identity;
use crate::sealing::{SealError, Sealer};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft_store::{Revision, Store, StoreError};

/// The store key of the authority.
pub const AUTHORITY: &str = "/weft/ca/authority";

/// Default lifetime of workload certificates.
pub const DEFAULT_WORKLOAD_TTL: Duration = Duration::from_secs(24 * 3600);

/// Default period at which sidecars fetch the trust bundle.
pub const DEFAULT_BUNDLE_REFRESH: Duration = Duration::from_secs(30);

/// Lifetime of a root Weft makes itself.
const ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A CA the operator supplies (PEM files).
#[derive(Debug, Clone)]
pub struct SuppliedCa {
    /// The signing certificate (a root, or an intermediate).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The certificates above it up to and including the root (absent for a root).
    pub chain: Option<PathBuf>,
}

/// The authority as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    /// The signing certificate (PEM).
    cert: String,
    /// Its key (PEM; sealed with the whole value).
    key: String,
    /// Certificates above the signer, nearest first (PEM).
    chain: Vec<String>,
    /// The trust bundle (PEM roots).
    roots: Vec<String>,
    /// A prepared signer under a new root, not signing yet (root rotation).
    #[serde(default)]
    pending: Option<Pending>,
    /// When the signer began signing (Unix seconds; 0: since the CA was made).
    #[serde(default)]
    signing_since: u64,
}

/// A signer prepared by a root rotation: its root is in the bundle already.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    cert: String,
    key: String,
    chain: Vec<String>,
    /// When it joined the bundle (Unix seconds).
    prepared_at: u64,
}

impl Stored {
    /// The root the signer's certificates chain to.
    fn root(&self) -> &str {
        self.chain.last().unwrap_or(&self.cert)
    }

    /// What a certificate this authority signed is presented with: the certificate,
    /// then, under an intermediate signer, the signer and the chain above it without
    /// the root (which the peer already trusts).
    fn chain_for(&self, leaf: String) -> Vec<String> {
        let mut chain = vec![leaf];
        if let Some((_root, above)) = self.chain.split_last() {
            chain.push(self.cert.clone());
            chain.extend(above.iter().cloned());
        }
        chain
    }
}

/// Why the authority could not start or sign.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored authority could not be unsealed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// A supplied file could not be read or used.
    #[error("CA {what} {path}: {reason}")]
    Supplied {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The stored authority is damaged.
    #[error("the stored CA is unusable: {0}")]
    Damaged(String),
}

/// A loaded signer.
struct Signer {
    revision: Revision,
    issuer: Issuer<'static, KeyPair>,
    stored: Stored,
}

/// The mesh's CA, shared by the API handlers of one replica.
pub struct Authority {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
    trust_domain: String,
    workload_ttl: Duration,
    bundle_refresh: Duration,
    signer: Mutex<Option<Arc<Signer>>>,
}

/// How the authority works: its trust domain and lifetimes.
#[derive(Debug, Clone)]
pub struct CaSettings {
    /// The SPIFFE trust domain.
    pub trust_domain: String,
    /// Lifetime of workload certificates (the longest a CSR gets).
    pub workload_ttl: Duration,
    /// How often sidecars fetch the trust bundle.
    pub bundle_refresh: Duration,
}

fn read_pem(what: &'static str, path: &PathBuf) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(|e| CaError::Supplied {
        what,
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Splits a PEM bundle into its certificates.
fn split_pem(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if line.starts_with("-----BEGIN ") {
            current.clear();
        }
        current.push_str(line);
        current.push('\n');
        if line.starts_with("-----END ") {
            out.push(std::mem::take(&mut current));
        }
    }
    out
}

/// A new self-signed root for `trust_domain`.
fn new_root(trust_domain: &str) -> Stored {
    let key = KeyPair::generate().expect("ECDSA P-256 key generation works");
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, trust_domain);
    // Dated, so that the roots of a rotation tell apart by name too.
    let made = time::OffsetDateTime::now_utc().date();
    name.push(DnType::CommonName, format!("Weft root CA {made}"));
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + ROOT_TTL;
    params.serial_number = Some(sign::random_serial());
    let cert = params.self_signed(&key).expect("signing a root works");
    Stored {
        cert: cert.pem(),
        key: key.serialize_pem(),
        chain: Vec::new(),
        roots: vec![cert.pem()],
        pending: None,
        signing_since: 0,
    }
}

/// A signer given as PEM: its certificate and key, and the chain above it up to the
/// root (absent for a root).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaPem {
    /// The signing certificate.
    pub cert: String,
    /// Its private key.
    pub key: String,
    /// The certificates above it, the root last.
    #[serde(default)]
    pub chain: Option<String>,
}

impl SuppliedCa {
    /// Reads the files.
    pub fn read(&self) -> Result<CaPem, CaError> {
        Ok(CaPem {
            cert: read_pem("certificate", &self.cert)?,
            key: read_pem("key", &self.key)?,
            chain: match &self.chain {
                Some(p) => Some(read_pem("chain", p)?),
                None => None,
            },
        })
    }
}

fn supplied(ca: &CaPem) -> Result<Stored, CaError> {
    let invalid = |what: &'static str, reason: String| CaError::Supplied {
        what,
        path: "(PEM)".into(),
        reason,
    };
    let key = KeyPair::from_pem(&ca.key).map_err(|e| invalid("key", e.to_string()))?;
    Issuer::from_ca_cert_pem(&ca.cert, key).map_err(|e| invalid("certificate", e.to_string()))?;
    let chain = ca.chain.as_deref().map(split_pem).unwrap_or_default();
    // The root is the last of the chain, or the certificate itself.
    let root = chain.last().cloned().unwrap_or_else(|| ca.cert.clone());
    Ok(Stored {
        cert: ca.cert.clone(),
        key: ca.key.clone(),
        chain,
        roots: vec![root],
        pending: None,
        signing_since: crate::proxies::unix_now(),
    })
}

impl Authority {
    /// Loads the authority from the store, creating it at the first start (from
    /// `supplied` when given, which also replaces a stored one that differs).
    pub async fn open(
        store: Arc<dyn Store>,
        sealer: Arc<Sealer>,
        settings: CaSettings,
        supplied_ca: Option<&SuppliedCa>,
    ) -> Result<Authority, CaError> {
        let authority = Authority {
            store,
            sealer,
            trust_domain: settings.trust_domain,
            workload_ttl: settings.workload_ttl,
            bundle_refresh: settings.bundle_refresh,
            signer: Mutex::new(None),
        };
        let trust_domain = authority.trust_domain.as_str();
        let existing = authority.load().await?;
        match (supplied_ca, existing) {
            (Some(ca), existing) => {
                let mut wanted = supplied(&ca.read()?)?;
                if existing.as_ref().map(|s| &s.stored.cert) != Some(&wanted.cert) {
                    // Keep trusting what the old signer signed until it is removed.
                    if let Some(old) = existing {
                        for root in old.stored.roots.iter() {
                            if !wanted.roots.contains(root) {
                                wanted.roots.push(root.clone());
                            }
                        }
                    }
                    authority.save(&wanted, None).await?;
                    tracing::info!("the CA the operator supplied signs workload certificates");
                }
            }
            (None, Some(_)) => {}
            (None, None) => {
                match authority.save(&new_root(trust_domain), Some(0)).await {
                    Ok(()) => tracing::info!(trust_domain, "created the mesh's root CA"),
                    // Another replica made it first.
                    Err(CaError::Store(StoreError::Conflict { .. })) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        authority.current().await?;
        Ok(authority)
    }

    async fn save(&self, stored: &Stored, expected: Option<Revision>) -> Result<(), CaError> {
        let json = serde_json::to_vec(stored).expect("the authority serializes");
        let value = self.sealer.seal(AUTHORITY, &json);
        match expected {
            Some(rev) => self.store.put_if(AUTHORITY, value, rev).await.map(drop)?,
            None => self.store.put(AUTHORITY, value).await.map(drop)?,
        }
        Ok(())
    }

    /// The stored authority, if any (uncached).
    async fn load(&self) -> Result<Option<Arc<Signer>>, CaError> {
        let Some(v) = self.store.get(AUTHORITY).await? else {
            return Ok(None);
        };
        let json = self.sealer.open(AUTHORITY, &v.value)?;
        let stored: Stored =
            serde_json::from_slice(&json).map_err(|e| CaError::Damaged(e.to_string()))?;
        let key = KeyPair::from_pem(&stored.key).map_err(|e| CaError::Damaged(e.to_string()))?;
        let issuer = Issuer::from_ca_cert_pem(&stored.cert, key)
            .map_err(|e| CaError::Damaged(e.to_string()))?;
        Ok(Some(Arc::new(Signer {
            revision: v.mod_revision,
            issuer,
            stored,
        })))
    }

    /// The current signer: cached, reloaded when another replica changed it.
    async fn current(&self) -> Result<Arc<Signer>, CaError> {
        let cached = self.signer.lock().expect("lock").clone();
        let revision = self.store.get(AUTHORITY).await?.map(|v| v.mod_revision);
        if let Some(s) = cached.filter(|s| Some(s.revision) == revision) {
            return Ok(s);
        }
        let loaded = self
            .load()
            .await?
            .ok_or_else(|| CaError::Damaged("the CA is missing from the store".into()))?;
        *self.signer.lock().expect("lock") = Some(loaded.clone());
        Ok(loaded)
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The trust bundle (PEM roots).
    pub async fn roots(&self) -> Result<Vec<String>, CaError> {
        Ok(self.current().await?.stored.roots.clone())
    }

    /// Signs a CSR (PEM) for `identity`, for `ttl` (the default when `None`, never
    /// longer than the default).
    pub async fn sign(
        &self,
        csr_pem: &str,
        identity: &Identity,
        ttl: Option<Duration>,
    ) -> Result<sign::Signed, SignError> {
        let signer = self.current().await.map_err(SignError::Ca)?;
        let ttl = ttl.unwrap_or(self.workload_ttl).min(self.workload_ttl);
        sign::sign(
            csr_pem,
            &identity.spiffe_id(&self.trust_domain),
            ttl,
            &signer.issuer,
            &signer.stored,
        )
    }
}

impl Authority {
    /// A certificate and fresh key for a server of the control plane itself: `names`
    /// as DNS or IP SANs, plus the SPIFFE ID of `identity`.
    pub async fn issue_server(
        &self,
        identity: &Identity,
        names: &[String],
        ttl: Duration,
    ) -> Result<(Vec<String>, String), CaError> {
        let signer = self.current().await?;
        let key = KeyPair::generate().expect("ECDSA P-256 key generation works");
        let mut params = CertificateParams::default();
        let spiffe = identity.spiffe_id(&self.trust_domain);
        let mut sans =
            vec![rcgen::SanType::URI(spiffe.as_str().try_into().map_err(
                |_| CaError::Damaged(format!("{spiffe} is not an IA5 string")),
            )?)];
        for name in names {
            sans.push(match name.parse::<std::net::IpAddr>() {
                Ok(ip) => rcgen::SanType::IpAddress(ip),
                Err(_) => rcgen::SanType::DnsName(
                    name.as_str()
                        .try_into()
                        .map_err(|_| CaError::Damaged(format!("{name:?} is not a DNS name")))?,
                ),
            });
        }
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(1);
        params.not_after = now + ttl;
        params.serial_number = Some(sign::random_serial());
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &signer.issuer)
            .map_err(|e| CaError::Damaged(e.to_string()))?;
        Ok((signer.stored.chain_for(cert.pem()), key.serialize_pem()))
    }
}
