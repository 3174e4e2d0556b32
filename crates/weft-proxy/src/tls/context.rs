//! What upstream and downstream TLS contexts share: where their certificate and trusted
//! roots come from (inline in the configuration, or a secret named by SDS and held in
//! the [`SecretStore`]), the protocol versions allowed, and the cache of the rustls
//! configuration built from them, rebuilt when the store changes.

use super::secrets::{CertificateSecret, SecretStore, TrustSecret};
use super::verify::SanMatcher;
use super::TlsError;
use rustls::SupportedProtocolVersion;
use std::sync::{Arc, Mutex};

/// Where a certificate and its key come from.
#[derive(Debug, Clone)]
pub enum CertSource {
    /// Loaded from the configuration (`tls_certificates`).
    Inline(Arc<CertificateSecret>),
    /// The named secret (`tls_certificate_sds_secret_configs`).
    Sds(Arc<str>),
}

impl CertSource {
    /// The certificate now, or which secret is missing.
    pub fn resolve(&self, store: &SecretStore) -> Result<Arc<CertificateSecret>, TlsError> {
        match self {
            CertSource::Inline(c) => Ok(c.clone()),
            CertSource::Sds(name) => store
                .certificate(name)
                .ok_or_else(|| TlsError::MissingSecret(name.clone())),
        }
    }
}

/// Where trusted roots come from.
#[derive(Debug, Clone)]
pub enum RootsSource {
    /// Loaded from the configuration (`validation_context.trusted_ca`).
    Inline(Arc<TrustSecret>),
    /// The named secret (`validation_context_sds_secret_config`).
    Sds(Arc<str>),
}

impl RootsSource {
    /// The roots now, or which secret is missing.
    pub fn resolve(&self, store: &SecretStore) -> Result<Arc<TrustSecret>, TlsError> {
        match self {
            RootsSource::Inline(t) => Ok(t.clone()),
            RootsSource::Sds(name) => store
                .trust(name)
                .ok_or_else(|| TlsError::MissingSecret(name.clone())),
        }
    }
}

/// How the peer's certificate is validated.
#[derive(Debug, Clone)]
pub struct Validation {
    /// Trusted roots.
    pub roots: RootsSource,
    /// Expected subject alternative names (none: any name).
    pub sans: Arc<[SanMatcher]>,
}

/// The TLS versions allowed (`tls_params`); rustls speaks 1.2 and 1.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versions {
    /// TLS 1.2 and 1.3.
    Both,
    /// TLS 1.3 only.
    Tls13,
    /// TLS 1.2 only.
    Tls12,
}

impl Versions {
    /// For rustls' configuration builders.
    pub fn list(self) -> &'static [&'static SupportedProtocolVersion] {
        static BOTH: [&SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        static TLS13: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        static TLS12: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
        match self {
            Versions::Both => &BOTH,
            Versions::Tls13 => &TLS13,
            Versions::Tls12 => &TLS12,
        }
    }
}

/// A rustls configuration built for one generation of the secret store.
#[derive(Debug)]
pub struct ConfigCache<T> {
    slot: Mutex<Option<(u64, Arc<T>)>>,
}

impl<T> Default for ConfigCache<T> {
    fn default() -> Self {
        ConfigCache {
            slot: Mutex::new(None),
        }
    }
}

impl<T> ConfigCache<T> {
    /// The configuration for `generation`, built by `build` when the cached one is older.
    pub fn get(
        &self,
        generation: u64,
        build: impl FnOnce() -> Result<T, TlsError>,
    ) -> Result<Arc<T>, TlsError> {
        if let Some((g, config)) = &*self.slot.lock().unwrap_or_else(|e| e.into_inner()) {
            if *g == generation {
                return Ok(config.clone());
            }
        }
        // Built outside the lock: other connections keep using the old one meanwhile.
        let config = Arc::new(build()?);
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_none_or(|(g, _)| *g <= generation) {
            *slot = Some((generation, config.clone()));
        }
        Ok(config)
    }
}
