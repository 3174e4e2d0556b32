//! Private keys taken out of configuration before it is shown (`/config_dump`): inline
//! keys in TLS contexts become `[redacted]`, as Envoy shows them. File names stay.

use prost::Message;
use weft_xds::pb::envoy::config::cluster::v3::Cluster;
use weft_xds::pb::envoy::config::core::v3::{data_source::Specifier, DataSource, TransportSocket};
use weft_xds::pb::envoy::config::listener::v3::Listener;
use weft_xds::pb::envoy::extensions::transport_sockets::tls::v3::{
    CommonTlsContext, DownstreamTlsContext, UpstreamTlsContext,
};
use weft_xds::pb::google::protobuf::Any;

/// What replaces an inline secret.
pub const REDACTED: &str = "[redacted]";

/// Redacts every static cluster and listener of a bootstrap.
pub fn bootstrap(b: &mut weft_xds::pb::envoy::config::bootstrap::v3::Bootstrap) {
    if let Some(s) = &mut b.static_resources {
        s.clusters.iter_mut().for_each(cluster);
        s.listeners.iter_mut().for_each(listener);
    }
}

/// Redacts the cluster's transport sockets.
pub fn cluster(c: &mut Cluster) {
    if let Some(ts) = &mut c.transport_socket {
        transport_socket(ts);
    }
    for m in &mut c.transport_socket_matches {
        if let Some(ts) = &mut m.transport_socket {
            transport_socket(ts);
        }
    }
}

/// Redacts the listener's transport sockets.
pub fn listener(l: &mut Listener) {
    for fc in l
        .filter_chains
        .iter_mut()
        .chain(l.default_filter_chain.iter_mut())
    {
        if let Some(ts) = &mut fc.transport_socket {
            transport_socket(ts);
        }
    }
}

/// Redacts a cluster or listener given as an `Any` (as received over xDS).
pub fn any(a: &mut Any) {
    if a.type_url == weft_xds::type_url::CLUSTER {
        if let Ok(mut c) = Cluster::decode(a.value.as_slice()) {
            cluster(&mut c);
            a.value = c.encode_to_vec();
        }
    } else if a.type_url == weft_xds::type_url::LISTENER {
        if let Ok(mut l) = Listener::decode(a.value.as_slice()) {
            listener(&mut l);
            a.value = l.encode_to_vec();
        }
    }
}

fn transport_socket(ts: &mut TransportSocket) {
    use weft_xds::pb::envoy::config::core::v3::transport_socket::ConfigType;
    let Some(ConfigType::TypedConfig(a)) = &mut ts.config_type else {
        return;
    };
    if a.type_url == super::super::compile::tls::UPSTREAM_TLS_CONTEXT {
        if let Ok(mut u) = UpstreamTlsContext::decode(a.value.as_slice()) {
            if let Some(c) = &mut u.common_tls_context {
                common(c);
            }
            a.value = u.encode_to_vec();
        }
    } else if a.type_url == super::super::compile::tls::DOWNSTREAM_TLS_CONTEXT {
        if let Ok(mut d) = DownstreamTlsContext::decode(a.value.as_slice()) {
            if let Some(c) = &mut d.common_tls_context {
                common(c);
            }
            a.value = d.encode_to_vec();
        }
    }
}

fn common(c: &mut CommonTlsContext) {
    for cert in &mut c.tls_certificates {
        if let Some(k) = &mut cert.private_key {
            data_source(k);
        }
        if let Some(p) = &mut cert.password {
            data_source(p);
        }
    }
}

fn data_source(d: &mut DataSource) {
    if matches!(
        d.specifier,
        Some(Specifier::InlineBytes(_) | Specifier::InlineString(_))
    ) {
        d.specifier = Some(Specifier::InlineString(REDACTED.into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_xds::pb::envoy::extensions::transport_sockets::tls::v3::TlsCertificate;

    #[test]
    fn inline_keys_are_redacted_files_are_not() {
        let secret = "-----BEGIN PRIVATE KEY-----\nSECRET\n-----END PRIVATE KEY-----";
        let tls = UpstreamTlsContext {
            common_tls_context: Some(CommonTlsContext {
                tls_certificates: vec![
                    TlsCertificate {
                        private_key: Some(DataSource {
                            specifier: Some(Specifier::InlineString(secret.into())),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    TlsCertificate {
                        private_key: Some(DataSource {
                            specifier: Some(Specifier::Filename("/etc/key.pem".into())),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut c = Cluster {
            name: "c".into(),
            transport_socket: Some(TransportSocket {
                name: "envoy.transport_sockets.tls".into(),
                config_type: Some(
                    weft_xds::pb::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(
                        Any {
                            type_url: crate::compile::tls::UPSTREAM_TLS_CONTEXT.into(),
                            value: tls.encode_to_vec(),
                        },
                    ),
                ),
            }),
            ..Default::default()
        };
        let mut a = Any {
            type_url: weft_xds::type_url::CLUSTER.into(),
            value: c.encode_to_vec(),
        };
        cluster(&mut c);
        any(&mut a);
        for bytes in [c.encode_to_vec(), a.value.clone()] {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            assert!(!text.contains("SECRET"), "key leaked");
            assert!(text.contains(REDACTED));
            assert!(text.contains("/etc/key.pem"));
        }
    }
}
