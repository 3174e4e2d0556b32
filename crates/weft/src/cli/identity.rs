//! The sidecar's workload identity: a key pair made in memory (never written), a CSR
//! sent to the control plane with the sidecar's credential, and the signed certificate
//! and trust bundle put in the proxy's secret store under the names the control plane's
//! configuration refers to ([`CERTIFICATE_SECRET`] and [`ROOTS_SECRET`]: `default` and
//! `ROOTCA`, as Istio names them). The certificate is renewed at half its lifetime,
//! with a new key each time; connections made with the old one keep running (the store
//! only changes what new handshakes use).

use anyhow::Context;
use rcgen::{CertificateParams, DistinguishedName, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;
use weft_control::api::types::CertificateRequest;
use weft_control::ca::{CaStatus, Signed};
use weft_control::client::ApiClient;
use weft_control::identity::Identity;
use weft_control::translate::mtls::{CERTIFICATE_SECRET, ROOTS_SECRET};
use weft_proxy::tls::SecretStore;

/// Shortest wait between renewals, however short the certificate's lifetime.
const MIN_RENEW_AFTER: Duration = Duration::from_secs(1);
/// Retry backoff bounds while the control plane cannot sign.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(15);
/// Wait before the first trust bundle fetch, which tells the refresh period.
const FIRST_REFRESH: Duration = Duration::from_secs(1);

/// Gets a certificate for `identity` and keeps it fresh in `secrets`, forever: run it
/// as a task beside the proxy. Failures are logged and retried with backoff; the
/// certificate in the store stays until a new one replaces it.
///
/// Between renewals it fetches the trust bundle every refresh period the control
/// plane gives: a root a rotation adds is trusted before it signs anything, and once
/// another root signs, the certificate is renewed at once (see `ca/rotation.rs` in
/// weft-control).
///
/// An admin credential must say whom the certificate is for; a join token already
/// does, and the control plane signs only for its identity.
pub async fn maintain(client: ApiClient, identity: Identity, secrets: SecretStore) {
    let mut retry = RETRY_FIRST;
    let mut refresh = FIRST_REFRESH;
    let mut renew_at = Instant::now();
    let mut bundle: Vec<String> = Vec::new();
    let mut signed_by = String::new();
    loop {
        if Instant::now() >= renew_at {
            match renew(&client, &identity, &secrets).await {
                Ok(signed) => {
                    retry = RETRY_FIRST;
                    let wait = renew_after(signed.expires, SystemTime::now());
                    tracing::info!(
                        spiffe_id = signed.spiffe_id,
                        renew_in = ?wait,
                        "workload certificate installed"
                    );
                    renew_at = Instant::now() + wait;
                    bundle = signed.roots;
                    signed_by = signed.root;
                }
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), retry_in = ?retry, "workload certificate not obtained");
                    renew_at = Instant::now() + retry;
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        } else {
            match refresh_bundle(&client, &secrets, &mut bundle).await {
                Ok(status) => {
                    refresh = Duration::from_secs(status.bundle_refresh_seconds.max(1));
                    let signing = status.signing_root().unwrap_or_default();
                    if !signed_by.is_empty() && signing != signed_by {
                        tracing::info!("another root signs now; renewing the certificate");
                        renew_at = Instant::now();
                    }
                }
                Err(e) => {
                    tracing::debug!(error = format!("{e:#}"), "trust bundle not refreshed")
                }
            }
        }
        let until_renewal = renew_at.saturating_duration_since(Instant::now());
        tokio::time::sleep(until_renewal.min(refresh)).await;
    }
}

/// Fetches the trust bundle and installs it when it changed.
async fn refresh_bundle(
    client: &ApiClient,
    secrets: &SecretStore,
    installed: &mut Vec<String>,
) -> anyhow::Result<CaStatus> {
    let status: CaStatus = client
        .json(hyper::Method::GET, "/api/v1/ca", None::<&()>)
        .await
        .context("fetching the trust bundle")?;
    let roots = status.bundle();
    if roots != *installed {
        secrets
            .try_set_trust(ROOTS_SECRET, pem_certificates(&roots)?)
            .context("the trust bundle")?;
        tracing::info!(roots = roots.len(), "trust bundle updated");
        *installed = roots;
    }
    Ok(status)
}

/// One round: a new key, a CSR, the signed chain and roots into the store.
async fn renew(
    client: &ApiClient,
    identity: &Identity,
    secrets: &SecretStore,
) -> anyhow::Result<Signed> {
    let key = KeyPair::generate().context("generating a key pair")?;
    let mut params = CertificateParams::default();
    // The control plane writes the SPIFFE ID from the credential; the CSR asks nothing.
    params.distinguished_name = DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .context("making the CSR")?
        .pem()
        .context("encoding the CSR")?;
    let request = CertificateRequest {
        csr,
        ttl_seconds: None,
        service: Some(identity.service.clone()),
        namespace: Some(identity.namespace.clone()),
    };
    let signed: Signed = client
        .json(hyper::Method::POST, "/api/v1/certificates", Some(&request))
        .await
        .context("asking the control plane to sign")?;
    install(secrets, &signed, key.serialize_der())?;
    Ok(signed)
}

/// Puts a signed chain (with its key) and its roots in the store.
pub fn install(secrets: &SecretStore, signed: &Signed, key_pkcs8: Vec<u8>) -> anyhow::Result<()> {
    let chain = pem_certificates(&signed.chain).context("the signed chain")?;
    let roots = pem_certificates(&signed.roots).context("the trust bundle")?;
    // Roots first: a peer whose certificate a new root signed must verify as soon as
    // our own new certificate is in use.
    secrets
        .try_set_trust(ROOTS_SECRET, roots)
        .context("the trust bundle")?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8));
    secrets
        .try_set_certificate(CERTIFICATE_SECRET, chain, key)
        .context("the signed certificate")?;
    Ok(())
}

fn pem_certificates(pems: &[String]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let mut out = Vec::new();
    for pem in pems {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            out.push(cert.context("a PEM certificate")?);
        }
    }
    anyhow::ensure!(!out.is_empty(), "no certificate in it");
    Ok(out)
}

/// Half the time left before `expires` (Unix seconds), at least [`MIN_RENEW_AFTER`].
fn renew_after(expires: u64, now: SystemTime) -> Duration {
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    Duration::from_secs(expires.saturating_sub(now) / 2).max(MIN_RENEW_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_at_half_the_remaining_life() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(renew_after(1_060, now), Duration::from_secs(30));
        assert_eq!(
            renew_after(1_000 + 86_400, now),
            Duration::from_secs(43_200)
        );
        assert_eq!(renew_after(900, now), MIN_RENEW_AFTER);
    }
}
