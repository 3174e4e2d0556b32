//! Certificate expiry as metrics, read from the secret store at each scrape:
//! `weft_tls_certificate_expiry_timestamp_seconds{secret}`, the `notAfter` of each
//! certificate secret's leaf, so an alert can fire before a workload's identity lapses
//! (a sidecar renews at half-life; a value closer than that means renewal fails).

use super::secrets::SecretStore;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::time::UNIX_EPOCH;

/// The collector over one proxy's secrets.
#[derive(Debug)]
pub struct CertificateExpiry(pub SecretStore);

impl Collector for CertificateExpiry {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let family = Family::<Vec<(String, String)>, Gauge>::default();
        for name in self.0.names() {
            let Some(cert) = self.0.certificate(&name) else {
                continue;
            };
            let expiry = cert
                .leaf()
                .not_after
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            family
                .get_or_create(&vec![("secret".to_string(), name)])
                .set(i64::try_from(expiry).unwrap_or(i64::MAX));
        }
        let metric = encoder.encode_descriptor(
            "weft_tls_certificate_expiry_timestamp_seconds",
            "When each certificate secret's leaf expires (Unix seconds)",
            None,
            family.metric_type(),
        )?;
        family.encode(metric)
    }
}
