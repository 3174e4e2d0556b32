//! `TransportSocket` → TLS contexts: `UpstreamTlsContext` on clusters and
//! `DownstreamTlsContext` on filter chains (or `raw_buffer`, plaintext). Inline material
//! is read and checked here, so a bad PEM file names its field; secrets named by SDS
//! resolve from the proxy's secret store at handshake time.

use super::route::string_matcher;
use super::{decode_any, Context};
use crate::tls::secrets::{CertificateSecret, TrustSecret};
use crate::tls::verify::{SanMatcher, SanType};
use crate::tls::{
    material, CertSource, DownstreamTls, RootsSource, Side, UpstreamTls, Validation, Versions,
};
use rustls_pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;
use weft_xds::pb::envoy::config::core::v3::{transport_socket::ConfigType, TransportSocket};
use weft_xds::pb::envoy::extensions::transport_sockets::tls::v3 as tls;

/// Type URL of `UpstreamTlsContext`.
pub const UPSTREAM_TLS_CONTEXT: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
/// Type URL of `DownstreamTlsContext`.
pub const DOWNSTREAM_TLS_CONTEXT: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
/// Type URL of the plaintext transport socket.
pub const RAW_BUFFER: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer";
/// Name of the TLS transport socket.
pub const TLS_NAME: &str = "envoy.transport_sockets.tls";
/// Name of the plaintext transport socket.
pub const RAW_BUFFER_NAME: &str = "envoy.transport_sockets.raw_buffer";

enum Kind<'a> {
    Plain,
    Tls(&'a weft_xds::pb::google::protobuf::Any),
}

fn kind<'a>(
    ts: &'a TransportSocket,
    expected: &str,
    path: &str,
    ctx: &mut Context<'_>,
) -> Option<Kind<'a>> {
    match &ts.config_type {
        Some(ConfigType::TypedConfig(any)) if any.type_url == RAW_BUFFER => Some(Kind::Plain),
        Some(ConfigType::TypedConfig(any)) if any.type_url == expected => Some(Kind::Tls(any)),
        Some(ConfigType::TypedConfig(any)) => {
            ctx.error(
                &format!("{path}.typed_config"),
                format!(
                    "transport socket {} is not supported here (expected {} or raw_buffer)",
                    any.type_url,
                    super::type_name(expected)
                ),
            );
            None
        }
        None if ts.name == RAW_BUFFER_NAME => Some(Kind::Plain),
        None => {
            ctx.error(
                &format!("{path}.typed_config"),
                format!("transport socket {:?} needs a typed_config", ts.name),
            );
            None
        }
    }
}

/// A cluster's `transport_socket`: `Some(None)` for plaintext, `None` on error.
pub fn upstream(
    ts: &TransportSocket,
    path: &str,
    ctx: &mut Context<'_>,
) -> Option<Option<Arc<UpstreamTls>>> {
    let any = match kind(ts, UPSTREAM_TLS_CONTEXT, path, ctx)? {
        Kind::Plain => return Some(None),
        Kind::Tls(any) => any,
    };
    let path = format!("{path}.typed_config");
    let u: tls::UpstreamTlsContext = decode_any(any, &path, ctx)?;
    let errors_before = ctx.errors.len();
    let sni = if u.sni.is_empty() {
        None
    } else {
        match ServerName::try_from(u.sni.clone()) {
            Ok(n) => Some(n),
            Err(_) => {
                ctx.error(
                    &format!("{path}.sni"),
                    format!("{:?} is not a valid server name", u.sni),
                );
                None
            }
        }
    };
    let common = common(
        u.common_tls_context.as_ref(),
        &format!("{path}.common_tls_context"),
        ctx,
    )?;
    if ctx.errors.len() > errors_before {
        return None;
    }
    Some(Some(Arc::new(UpstreamTls::new(
        sni,
        common.alpn,
        common.cert,
        common.validation,
        common.versions,
        ctx.secrets.clone(),
        ctx.metrics.tls(Side::Upstream),
    ))))
}

/// A filter chain's `transport_socket`: `Some(None)` for plaintext, `None` on error.
pub fn downstream(
    ts: &TransportSocket,
    handshake_timeout: Duration,
    path: &str,
    ctx: &mut Context<'_>,
) -> Option<Option<Arc<DownstreamTls>>> {
    let any = match kind(ts, DOWNSTREAM_TLS_CONTEXT, path, ctx)? {
        Kind::Plain => return Some(None),
        Kind::Tls(any) => any,
    };
    let path = format!("{path}.typed_config");
    let d: tls::DownstreamTlsContext = decode_any(any, &path, ctx)?;
    let errors_before = ctx.errors.len();
    let cpath = format!("{path}.common_tls_context");
    let common = common(d.common_tls_context.as_ref(), &cpath, ctx)?;
    let required = d.require_client_certificate.is_some_and(|v| v.value);
    if required && common.validation.is_none() {
        ctx.error(
            &format!("{path}.require_client_certificate"),
            "client certificates can only be required with a validation context (trusted roots)",
        );
    }
    let Some(cert) = common.cert else {
        ctx.error(
            &cpath,
            "a server certificate is required (tls_certificates or tls_certificate_sds_secret_configs)",
        );
        return None;
    };
    if ctx.errors.len() > errors_before {
        return None;
    }
    Some(Some(Arc::new(DownstreamTls::new(
        cert,
        common.validation,
        required,
        common.alpn,
        common.versions,
        handshake_timeout,
        ctx.secrets.clone(),
        ctx.metrics.tls(Side::Downstream),
    ))))
}

/// A compiled `CommonTlsContext`.
struct Common {
    cert: Option<CertSource>,
    validation: Option<Validation>,
    alpn: Vec<Vec<u8>>,
    versions: Versions,
}

fn common(c: Option<&tls::CommonTlsContext>, path: &str, ctx: &mut Context<'_>) -> Option<Common> {
    let default = tls::CommonTlsContext::default();
    let c = c.unwrap_or(&default);
    let errors_before = ctx.errors.len();
    let versions = versions(c.tls_params.as_ref(), &format!("{path}.tls_params"), ctx);
    let cert = certificate(c, path, ctx);
    let validation = validation(c, path, ctx);
    let mut alpn = Vec::new();
    for (i, p) in c.alpn_protocols.iter().enumerate() {
        if p.is_empty() || p.len() > 255 {
            ctx.error(
                &format!("{path}.alpn_protocols[{i}]"),
                "a protocol name is 1 to 255 bytes",
            );
        }
        alpn.push(p.as_bytes().to_vec());
    }
    if ctx.errors.len() > errors_before {
        return None;
    }
    Some(Common {
        cert,
        validation,
        alpn,
        versions,
    })
}

fn versions(p: Option<&tls::TlsParameters>, path: &str, ctx: &mut Context<'_>) -> Versions {
    use tls::tls_parameters::TlsProtocol as P;
    let Some(p) = p else {
        return Versions::Both;
    };
    let parse = |v: i32| P::try_from(v).unwrap_or(P::TlsAuto);
    // rustls speaks TLS 1.2 and 1.3: a floor below 1.2 is met by 1.2.
    let min13 = parse(p.tls_minimum_protocol_version) == P::TlSv13;
    let max = parse(p.tls_maximum_protocol_version);
    match (min13, max) {
        (_, P::TlSv10 | P::TlSv11) => {
            ctx.error(
                &format!("{path}.tls_maximum_protocol_version"),
                "weft speaks TLS 1.2 and 1.3 only",
            );
            Versions::Both
        }
        (true, P::TlSv12) => {
            ctx.error(
                path,
                "tls_minimum_protocol_version is above tls_maximum_protocol_version",
            );
            Versions::Both
        }
        (true, _) => Versions::Tls13,
        (false, P::TlSv12) => Versions::Tls12,
        (false, _) => Versions::Both,
    }
}

fn certificate(c: &tls::CommonTlsContext, path: &str, ctx: &mut Context<'_>) -> Option<CertSource> {
    match (
        c.tls_certificates.as_slice(),
        c.tls_certificate_sds_secret_configs.as_slice(),
    ) {
        ([], []) => None,
        ([cert], []) => {
            let cpath = format!("{path}.tls_certificates[0]");
            inline_certificate(cert, &cpath, ctx).map(|c| CertSource::Inline(Arc::new(c)))
        }
        ([], [sds]) => sds_name(
            sds,
            &format!("{path}.tls_certificate_sds_secret_configs[0]"),
            ctx,
        )
        .map(CertSource::Sds),
        ([_, ..], [_, ..]) => {
            ctx.error(
                path,
                "tls_certificates and tls_certificate_sds_secret_configs are exclusive",
            );
            None
        }
        ([_, _, ..], _) => {
            ctx.error(
                &format!("{path}.tls_certificates"),
                "weft presents one certificate per context",
            );
            None
        }
        (_, _) => {
            ctx.error(
                &format!("{path}.tls_certificate_sds_secret_configs"),
                "weft presents one certificate per context",
            );
            None
        }
    }
}

fn inline_certificate(
    cert: &tls::TlsCertificate,
    path: &str,
    ctx: &mut Context<'_>,
) -> Option<CertificateSecret> {
    let chain = match &cert.certificate_chain {
        Some(ds) => match material::certificates(ds) {
            Ok(c) => Some(c),
            Err(e) => {
                ctx.error(&source_path(path, "certificate_chain", e.field), e.message);
                None
            }
        },
        None => {
            ctx.error(
                &format!("{path}.certificate_chain"),
                "a certificate chain is required",
            );
            None
        }
    };
    let key = match &cert.private_key {
        Some(ds) => match material::private_key(ds) {
            Ok(k) => Some(k),
            Err(e) => {
                ctx.error(&source_path(path, "private_key", e.field), e.message);
                None
            }
        },
        None => {
            ctx.error(&format!("{path}.private_key"), "a private key is required");
            None
        }
    };
    let (chain, key) = (chain?, key?);
    match CertificateSecret::new(path, chain, key) {
        Ok(c) => Some(c),
        Err(e) => {
            ctx.error(&format!("{path}.private_key"), e.to_string());
            None
        }
    }
}

fn source_path(path: &str, field: &str, source_field: &str) -> String {
    if source_field.is_empty() {
        format!("{path}.{field}")
    } else {
        format!("{path}.{field}.{source_field}")
    }
}

fn sds_name(s: &tls::SdsSecretConfig, path: &str, ctx: &mut Context<'_>) -> Option<Arc<str>> {
    if s.name.is_empty() {
        ctx.error(
            &format!("{path}.name"),
            "a secret name is required (the secret is looked up in the proxy's secret store)",
        );
        return None;
    }
    use weft_xds::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier as S;
    if let Some(source) = &s.sds_config {
        if !matches!(source.config_source_specifier, Some(S::Ads(_))) {
            ctx.error(
                &format!("{path}.sds_config"),
                "secrets come from the proxy's own secret store: leave sds_config out, or set it to ads: {}",
            );
            return None;
        }
    }
    Some(s.name.as_str().into())
}

fn validation(c: &tls::CommonTlsContext, path: &str, ctx: &mut Context<'_>) -> Option<Validation> {
    use tls::common_tls_context::ValidationContextType as V;
    match &c.validation_context_type {
        None => None,
        Some(V::ValidationContext(v)) => {
            let vpath = format!("{path}.validation_context");
            let roots = match &v.trusted_ca {
                Some(ds) => match material::certificates(ds)
                    .map_err(|e| (source_path(&vpath, "trusted_ca", e.field), e.message))
                    .and_then(|certs| {
                        TrustSecret::new(&vpath, certs)
                            .map_err(|e| (format!("{vpath}.trusted_ca"), e.to_string()))
                    }) {
                    Ok(t) => Some(RootsSource::Inline(Arc::new(t))),
                    Err((p, m)) => {
                        ctx.error(&p, m);
                        None
                    }
                },
                None => {
                    ctx.error(
                        &format!("{vpath}.trusted_ca"),
                        "trusted_ca is required: weft always verifies the peer's chain when a validation context is given",
                    );
                    None
                }
            };
            let sans = san_matchers(v, &vpath, ctx);
            Some(Validation {
                roots: roots?,
                sans: sans.into(),
            })
        }
        Some(V::ValidationContextSdsSecretConfig(s)) => Some(Validation {
            roots: RootsSource::Sds(sds_name(
                s,
                &format!("{path}.validation_context_sds_secret_config"),
                ctx,
            )?),
            sans: Arc::from(Vec::new()),
        }),
        Some(V::CombinedValidationContext(combined)) => {
            let cpath = format!("{path}.combined_validation_context");
            let default = tls::CertificateValidationContext::default();
            let v = combined
                .default_validation_context
                .as_ref()
                .unwrap_or(&default);
            if v.trusted_ca.is_some() {
                ctx.error(
                    &format!("{cpath}.default_validation_context.trusted_ca"),
                    "the trusted roots come from validation_context_sds_secret_config; set them there",
                );
            }
            let sans = san_matchers(v, &format!("{cpath}.default_validation_context"), ctx);
            let Some(sds) = &combined.validation_context_sds_secret_config else {
                ctx.error(
                    &format!("{cpath}.validation_context_sds_secret_config"),
                    "the secret holding the trusted roots is required",
                );
                return None;
            };
            let name = sds_name(
                sds,
                &format!("{cpath}.validation_context_sds_secret_config"),
                ctx,
            )?;
            Some(Validation {
                roots: RootsSource::Sds(name),
                sans: sans.into(),
            })
        }
        Some(_) => {
            ctx.error(
                path,
                "this kind of validation context is not supported by weft",
            );
            None
        }
    }
}

#[allow(deprecated)]
fn san_matchers(
    v: &tls::CertificateValidationContext,
    path: &str,
    ctx: &mut Context<'_>,
) -> Vec<SanMatcher> {
    use tls::subject_alt_name_matcher::SanType as T;
    let mut out = Vec::new();
    for (i, m) in v.match_typed_subject_alt_names.iter().enumerate() {
        let mpath = format!("{path}.match_typed_subject_alt_names[{i}]");
        let san_type = match T::try_from(m.san_type) {
            Ok(T::Uri) => SanType::Uri,
            Ok(T::Dns) => SanType::Dns,
            Ok(T::Email) => SanType::Email,
            Ok(T::IpAddress) => SanType::IpAddress,
            Ok(T::OtherName) => {
                ctx.error(&format!("{mpath}.san_type"), "OTHER_NAME is not supported");
                continue;
            }
            _ => {
                ctx.error(
                    &format!("{mpath}.san_type"),
                    "one of URI, DNS, EMAIL or IP_ADDRESS is required",
                );
                continue;
            }
        };
        let Some(matcher) = &m.matcher else {
            ctx.error(&format!("{mpath}.matcher"), "a matcher is required");
            continue;
        };
        if let Some(matcher) = string_matcher(matcher, &format!("{mpath}.matcher"), ctx) {
            out.push(SanMatcher { san_type, matcher });
        }
    }
    for (i, m) in v.match_subject_alt_names.iter().enumerate() {
        if let Some(matcher) =
            string_matcher(m, &format!("{path}.match_subject_alt_names[{i}]"), ctx)
        {
            out.push(SanMatcher {
                san_type: SanType::Any,
                matcher,
            });
        }
    }
    out
}
