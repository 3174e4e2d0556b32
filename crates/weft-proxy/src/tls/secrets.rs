//! The secret store: named TLS certificates (a chain and its private key) and named
//! validation contexts (trusted roots), shared by the whole proxy. SDS secret names in
//! the configuration resolve here; the sidecar's identity manager sets them (keys are
//! made locally and never travel). A secret may be replaced at any time: the next
//! handshake uses the new material, established connections keep theirs.

use super::x509::CertSummary;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::watch;

/// Why material was refused.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The certificate chain is empty.
    #[error("secret {0:?}: the certificate chain is empty")]
    EmptyChain(String),
    /// No trusted root was given.
    #[error("secret {0:?}: no trusted root certificate")]
    NoRoots(String),
    /// A certificate could not be read.
    #[error("secret {name:?}: {source}")]
    Certificate {
        /// The secret.
        name: String,
        /// Why.
        #[source]
        source: super::x509::ParseError,
    },
    /// The key is not usable, or does not belong to the leaf certificate.
    #[error("secret {name:?}: {source}")]
    Key {
        /// The secret.
        name: String,
        /// Why.
        #[source]
        source: rustls::Error,
    },
}

/// A certificate with its private key, ready to present.
pub struct CertificateSecret {
    certified: Arc<CertifiedKey>,
    summaries: Vec<CertSummary>,
}

impl CertificateSecret {
    /// Checks and loads `chain` (leaf first) and `key`; `name` is for errors.
    pub fn new(
        name: &str,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<CertificateSecret, SecretError> {
        if chain.is_empty() {
            return Err(SecretError::EmptyChain(name.to_string()));
        }
        let summaries = summarize(name, &chain)?;
        let certified =
            CertifiedKey::from_der(chain, key, &super::provider()).map_err(|source| {
                SecretError::Key {
                    name: name.to_string(),
                    source,
                }
            })?;
        Ok(CertificateSecret {
            certified: Arc::new(certified),
            summaries,
        })
    }

    /// The chain and signing key, for rustls.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        self.certified.clone()
    }

    /// The leaf certificate's facts.
    pub fn leaf(&self) -> &CertSummary {
        &self.summaries[0]
    }

    /// Every certificate of the chain, leaf first.
    pub fn chain(&self) -> &[CertSummary] {
        &self.summaries
    }
}

impl fmt::Debug for CertificateSecret {
    // Never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateSecret")
            .field("serial", &self.leaf().serial)
            .field("uri_sans", &self.leaf().uri_sans)
            .finish_non_exhaustive()
    }
}

/// Trusted root certificates.
pub struct TrustSecret {
    roots: Arc<RootCertStore>,
    summaries: Vec<CertSummary>,
}

impl TrustSecret {
    /// Checks and loads `roots`; `name` is for errors.
    pub fn new(
        name: &str,
        roots: Vec<CertificateDer<'static>>,
    ) -> Result<TrustSecret, SecretError> {
        if roots.is_empty() {
            return Err(SecretError::NoRoots(name.to_string()));
        }
        let summaries = summarize(name, &roots)?;
        let mut store = RootCertStore::empty();
        for cert in roots {
            store.add(cert).map_err(|source| SecretError::Key {
                name: name.to_string(),
                source,
            })?;
        }
        Ok(TrustSecret {
            roots: Arc::new(store),
            summaries,
        })
    }

    /// The roots, for rustls.
    pub fn roots(&self) -> Arc<RootCertStore> {
        self.roots.clone()
    }

    /// Every root's facts.
    pub fn certificates(&self) -> &[CertSummary] {
        &self.summaries
    }
}

impl fmt::Debug for TrustSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustSecret")
            .field("roots", &self.summaries.len())
            .finish()
    }
}

fn summarize(name: &str, certs: &[CertificateDer<'_>]) -> Result<Vec<CertSummary>, SecretError> {
    certs
        .iter()
        .map(|c| {
            CertSummary::parse(c).map_err(|source| SecretError::Certificate {
                name: name.to_string(),
                source,
            })
        })
        .collect()
}

/// One named secret.
#[derive(Debug, Clone)]
pub enum Secret {
    /// A certificate and its key (Envoy's `tls_certificate` secret).
    Certificate(Arc<CertificateSecret>),
    /// Trusted roots (Envoy's `validation_context` secret).
    Trust(Arc<TrustSecret>),
}

#[derive(Debug)]
struct Inner {
    secrets: RwLock<BTreeMap<String, Secret>>,
    generation: AtomicU64,
    changed: watch::Sender<u64>,
}

/// Named TLS secrets shared by the whole proxy; cloning is cheap and every clone sees
/// the same secrets.
#[derive(Clone)]
pub struct SecretStore {
    inner: Arc<Inner>,
}

impl Default for SecretStore {
    fn default() -> Self {
        SecretStore::new()
    }
}

impl fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretStore")
            .field("names", &self.names())
            .field("generation", &self.generation())
            .finish()
    }
}

impl SecretStore {
    /// An empty store.
    pub fn new() -> SecretStore {
        SecretStore {
            inner: Arc::new(Inner {
                secrets: RwLock::new(BTreeMap::new()),
                generation: AtomicU64::new(0),
                changed: watch::Sender::new(0),
            }),
        }
    }

    /// Sets (or replaces) the certificate `name`: `chain` leaf first, and its private
    /// key. Material that cannot be used is logged and refused, and the previous secret
    /// of that name stays; [`Self::try_set_certificate`] returns the error instead.
    pub fn set_certificate(
        &self,
        name: &str,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) {
        if let Err(e) = self.try_set_certificate(name, chain, key) {
            tracing::error!(error = %e, "TLS certificate refused; keeping the previous one");
        }
    }

    /// Sets (or replaces) the certificate `name`, or says why the material is unusable.
    pub fn try_set_certificate(
        &self,
        name: &str,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<(), SecretError> {
        let secret = CertificateSecret::new(name, chain, key)?;
        tracing::info!(secret = name, serial = %secret.leaf().serial, uri_sans = ?secret.leaf().uri_sans, "TLS certificate set");
        self.put(name, Secret::Certificate(Arc::new(secret)));
        Ok(())
    }

    /// Sets (or replaces) the trusted roots `name`. Unusable roots are logged and
    /// refused, and the previous secret of that name stays.
    pub fn set_trust(&self, name: &str, roots: Vec<CertificateDer<'static>>) {
        if let Err(e) = self.try_set_trust(name, roots) {
            tracing::error!(error = %e, "TLS trust roots refused; keeping the previous ones");
        }
    }

    /// Sets (or replaces) the trusted roots `name`, or says why they are unusable.
    pub fn try_set_trust(
        &self,
        name: &str,
        roots: Vec<CertificateDer<'static>>,
    ) -> Result<(), SecretError> {
        let secret = TrustSecret::new(name, roots)?;
        tracing::info!(
            secret = name,
            roots = secret.certificates().len(),
            "TLS trust roots set"
        );
        self.put(name, Secret::Trust(Arc::new(secret)));
        Ok(())
    }

    /// Removes the secret `name`; handshakes that need it fail until it is set again.
    pub fn remove(&self, name: &str) {
        let removed = self
            .inner
            .secrets
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
            .is_some();
        if removed {
            self.bump();
        }
    }

    /// The secret `name`, if set.
    pub fn get(&self, name: &str) -> Option<Secret> {
        self.inner
            .secrets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// The certificate `name`, if set (and a certificate).
    pub fn certificate(&self, name: &str) -> Option<Arc<CertificateSecret>> {
        match self.get(name)? {
            Secret::Certificate(c) => Some(c),
            Secret::Trust(_) => None,
        }
    }

    /// The trusted roots `name`, if set (and roots).
    pub fn trust(&self, name: &str) -> Option<Arc<TrustSecret>> {
        match self.get(name)? {
            Secret::Trust(t) => Some(t),
            Secret::Certificate(_) => None,
        }
    }

    /// Whether a secret `name` is set.
    pub fn contains(&self, name: &str) -> bool {
        self.inner
            .secrets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(name)
    }

    /// The names set, sorted.
    pub fn names(&self) -> Vec<String> {
        self.inner
            .secrets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Every secret, by name.
    pub fn all(&self) -> Vec<(String, Secret)> {
        self.inner
            .secrets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// A number that changes whenever any secret does.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// Waits until a secret `name` is set (at once if it is).
    pub async fn wait_for(&self, name: &str) {
        let mut rx = self.inner.changed.subscribe();
        while !self.contains(name) {
            // The sender lives as long as `self`, so this never ends in an error.
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Waits until every secret in `names` is set.
    pub async fn wait_for_all(&self, names: &[&str]) {
        for name in names {
            self.wait_for(name).await;
        }
    }

    fn put(&self, name: &str, secret: Secret) {
        self.inner
            .secrets
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), secret);
        self.bump();
    }

    fn bump(&self) {
        let g = self.inner.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.inner.changed.send_replace(g);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(uri: &str) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().expect("ia5"))];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        (
            cert.der().clone(),
            PrivateKeyDer::Pkcs8(key.serialized_der().to_vec().into()),
        )
    }

    #[tokio::test]
    async fn set_replace_remove_and_wait() {
        let store = SecretStore::new();
        let waiter = {
            let s = store.clone();
            tokio::spawn(async move { s.wait_for("default").await })
        };
        let (cert, key) = self_signed("spiffe://weft.local/ns/a/sa/one");
        store.set_certificate("default", vec![cert.clone()], key);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("join");
        let g1 = store.generation();
        let one = store.certificate("default").expect("set");
        assert_eq!(one.leaf().uri_sans, vec!["spiffe://weft.local/ns/a/sa/one"]);
        // A key that is not the certificate's is refused; the old secret stays.
        let (_, other_key) = self_signed("spiffe://weft.local/ns/a/sa/two");
        assert!(store
            .try_set_certificate("default", vec![cert.clone()], other_key)
            .is_err());
        assert_eq!(store.generation(), g1);
        let (cert2, key2) = self_signed("spiffe://weft.local/ns/a/sa/two");
        store.set_certificate("default", vec![cert2], key2);
        assert!(store.generation() > g1);
        let two = store.certificate("default").expect("replaced");
        assert_eq!(two.leaf().uri_sans, vec!["spiffe://weft.local/ns/a/sa/two"]);
        assert!(format!("{two:?}").contains("serial") && !format!("{store:?}").contains("key:"));
        store.set_trust("ROOTCA", vec![cert]);
        assert!(store.trust("ROOTCA").is_some() && store.certificate("ROOTCA").is_none());
        assert_eq!(store.names(), vec!["ROOTCA", "default"]);
        store.remove("default");
        assert!(!store.contains("default"));
        // Already there: no wait.
        store.wait_for("ROOTCA").await;
    }

    #[test]
    fn refused_material_keeps_nothing_and_says_why() {
        let store = SecretStore::new();
        let err = store
            .try_set_certificate(
                "default",
                Vec::new(),
                PrivateKeyDer::Pkcs8(Vec::new().into()),
            )
            .expect_err("empty chain");
        assert!(err.to_string().contains("\"default\""), "{err}");
        assert!(store.try_set_trust("ROOTCA", Vec::new()).is_err());
        let err = store
            .try_set_trust("ROOTCA", vec![CertificateDer::from(vec![1, 2, 3])])
            .expect_err("garbage");
        assert!(err.to_string().contains("ROOTCA"), "{err}");
        assert!(!store.contains("default") && !store.contains("ROOTCA"));
        assert_eq!(store.generation(), 0);
        store.remove("nothing");
        assert_eq!(store.generation(), 0);
    }
}
