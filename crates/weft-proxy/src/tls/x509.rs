//! What a certificate says, read with `x509-parser`: its subject alternative names (the
//! URI SAN carries a workload's SPIFFE ID), serial number and validity. Used to match
//! peers against expected identities, for `/certs`, and for access logs.

use rustls_pki_types::CertificateDer;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A certificate that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid X.509 certificate: {0}")]
pub struct ParseError(String);

/// The facts of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// Serial number, lowercase hex without separators (as Envoy's `/certs` shows it).
    pub serial: String,
    /// Subject, RFC 4514.
    pub subject: String,
    /// URI SANs.
    pub uri_sans: Vec<String>,
    /// DNS SANs.
    pub dns_sans: Vec<String>,
    /// E-mail SANs.
    pub email_sans: Vec<String>,
    /// IP address SANs.
    pub ip_sans: Vec<String>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// Whether it is a CA certificate.
    pub is_ca: bool,
}

impl CertSummary {
    /// Parses a DER certificate.
    pub fn parse(der: &CertificateDer<'_>) -> Result<CertSummary, ParseError> {
        let (_, cert) =
            X509Certificate::from_der(der.as_ref()).map_err(|e| ParseError(e.to_string()))?;
        let mut summary = CertSummary {
            serial: cert
                .raw_serial()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            subject: cert.subject().to_string(),
            uri_sans: Vec::new(),
            dns_sans: Vec::new(),
            email_sans: Vec::new(),
            ip_sans: Vec::new(),
            not_before: system_time(cert.validity().not_before.timestamp()),
            not_after: system_time(cert.validity().not_after.timestamp()),
            is_ca: cert.is_ca(),
        };
        let sans = cert
            .subject_alternative_name()
            .map_err(|e| ParseError(format!("subject alternative names: {e}")))?;
        if let Some(sans) = sans {
            for name in &sans.value.general_names {
                match name {
                    GeneralName::URI(u) => summary.uri_sans.push(u.to_string()),
                    GeneralName::DNSName(d) => summary.dns_sans.push(d.to_string()),
                    GeneralName::RFC822Name(e) => summary.email_sans.push(e.to_string()),
                    GeneralName::IPAddress(ip) => {
                        if let Some(ip) = ip_address(ip) {
                            summary.ip_sans.push(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(summary)
    }

    /// Whole days from `now` until it expires (negative once expired).
    pub fn days_until_expiration(&self, now: SystemTime) -> i64 {
        match self.not_after.duration_since(now) {
            Ok(left) => (left.as_secs() / 86_400) as i64,
            Err(past) => -((past.duration().as_secs() / 86_400) as i64) - 1,
        }
    }
}

fn system_time(unix: i64) -> SystemTime {
    if unix >= 0 {
        UNIX_EPOCH + Duration::from_secs(unix as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs())
    }
}

fn ip_address(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error() {
        assert!(CertSummary::parse(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])).is_err());
        assert!(CertSummary::parse(&CertificateDer::from(Vec::new())).is_err());
    }

    #[test]
    fn days_left() {
        let now = SystemTime::now();
        let s = CertSummary {
            serial: "01".into(),
            subject: String::new(),
            uri_sans: vec![],
            dns_sans: vec![],
            email_sans: vec![],
            ip_sans: vec![],
            not_before: now,
            not_after: now + Duration::from_secs(86_400 * 3 + 5),
            is_ca: false,
        };
        assert_eq!(s.days_until_expiration(now), 3);
        assert_eq!(
            s.days_until_expiration(now + Duration::from_secs(86_400 * 4)),
            -1
        );
    }
}
