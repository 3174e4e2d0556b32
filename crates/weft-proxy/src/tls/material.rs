//! Certificates and keys from configuration: an Envoy `DataSource` (a file, inline bytes
//! or an inline string) holding PEM, read once when the configuration is compiled.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use weft_xds::pb::envoy::config::core::v3::{data_source::Specifier, DataSource};

/// Where a `DataSource` points and what it holds; errors say which of its fields is at
/// fault (`filename`, `inline_bytes`, ...) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    /// The `DataSource` field at fault.
    pub field: &'static str,
    /// Why.
    pub message: String,
}

/// The bytes of a `DataSource`.
pub fn read(source: &DataSource) -> Result<Vec<u8>, SourceError> {
    match &source.specifier {
        Some(Specifier::Filename(f)) => std::fs::read(f).map_err(|e| SourceError {
            field: "filename",
            message: format!("cannot read {f:?}: {e}"),
        }),
        Some(Specifier::InlineBytes(b)) => Ok(b.clone()),
        Some(Specifier::InlineString(s)) => Ok(s.clone().into_bytes()),
        Some(Specifier::EnvironmentVariable(_)) => Err(SourceError {
            field: "environment_variable",
            message: "not supported by weft".into(),
        }),
        None => Err(SourceError {
            field: "",
            message: "one of filename, inline_bytes or inline_string is required".into(),
        }),
    }
}

fn field(source: &DataSource) -> &'static str {
    match &source.specifier {
        Some(Specifier::Filename(_)) => "filename",
        Some(Specifier::InlineBytes(_)) => "inline_bytes",
        Some(Specifier::InlineString(_)) => "inline_string",
        _ => "",
    }
}

/// Every PEM `CERTIFICATE` in the source, in order; at least one.
pub fn certificates(source: &DataSource) -> Result<Vec<CertificateDer<'static>>, SourceError> {
    let bytes = read(source)?;
    let error = |message: String| SourceError {
        field: field(source),
        message,
    };
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(error("no PEM CERTIFICATE found".into()));
    }
    for (i, c) in certs.iter().enumerate() {
        super::x509::CertSummary::parse(c).map_err(|e| error(format!("certificate {i}: {e}")))?;
    }
    Ok(certs)
}

/// The one private key (PKCS#8, PKCS#1 or SEC1 PEM) in the source.
pub fn private_key(source: &DataSource) -> Result<PrivateKeyDer<'static>, SourceError> {
    let bytes = read(source)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| SourceError {
        field: field(source),
        // The key itself is never part of the message.
        message: format!("no usable PEM private key: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inline(s: &str) -> DataSource {
        DataSource {
            specifier: Some(Specifier::InlineString(s.into())),
            ..Default::default()
        }
    }

    #[test]
    fn bad_pem_is_named() {
        let e = certificates(&inline("hello")).expect_err("no cert");
        assert_eq!(e.field, "inline_string");
        let e = certificates(&inline(
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ))
        .expect_err("not a certificate");
        assert!(e.message.contains("certificate 0"), "{}", e.message);
        let e = private_key(&inline("nope")).expect_err("no key");
        assert!(e.message.contains("private key"));
        let missing = DataSource {
            specifier: Some(Specifier::Filename("/nonexistent/cert.pem".into())),
            ..Default::default()
        };
        let e = certificates(&missing).expect_err("no file");
        assert_eq!(e.field, "filename");
        assert!(e.message.contains("/nonexistent/cert.pem"));
    }
}
