//! What a certificate says, read with `x509-parser`: its subject alternative names (the
//! URI SAN carries a workload's SPIFFE ID), serial number and validity. Used to match
//! peers against expected identities, for `/certs`, and for access logs.

use rustls_pki_types::CertificateDer;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

/// A certificate that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid X.509 certificate: {0}")]
pub struct ParseError(String);

/// The facts of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// Serial number, lowercase hex without separators (as Envoy's `/certs` shows it).
    pub serial: String,
    /// Subject, RFC 4514 (as Envoy reports it, and RBAC's `authenticated` matches it).
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
            subject: rfc4514(cert.subject()),
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

/// A name as RFC 4514 writes it: the last RDN first, RDNs joined by `,` and the values
/// of one RDN by `+`, special characters escaped. Values that are not strings are
/// written `#` and their DER in hex.
fn rfc4514(name: &X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let rdns: Vec<_> = name.iter_rdn().collect();
    let mut out = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            match x509_parser::objects::oid2abbrev(attr.attr_type(), registry) {
                Ok(abbrev) => out.push_str(abbrev),
                Err(_) => out.push_str(&attr.attr_type().to_id_string()),
            }
            out.push('=');
            match attr.as_str() {
                Ok(v) => escape_value(v, &mut out),
                Err(_) => {
                    out.push('#');
                    for b in attr.attr_value().as_bytes() {
                        out.push_str(&format!("{b:02x}"));
                    }
                }
            }
        }
    }
    out
}

fn escape_value(v: &str, out: &mut String) {
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
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
    fn subject_is_written_as_rfc_4514() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        // The sequence in the certificate: O first, CN last; RFC 4514 writes it reversed.
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Weft, Inc.");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "b");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let summary = CertSummary::parse(cert.der()).expect("parses");
        assert_eq!(summary.subject, r"CN=b,O=Weft\, Inc.");
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
