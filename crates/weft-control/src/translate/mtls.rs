//! Mutual TLS between sidecars, as Envoy is configured for it: an `UpstreamTlsContext`
//! on clusters whose endpoints are all sidecars (Istio's auto mTLS), expecting the
//! service's SPIFFE ID; a `DownstreamTlsContext` on inbound filter chains, requiring a
//! client certificate from the mesh's trust domain. Both name their material by SDS
//! (`default`, `ROOTCA`): the sidecar fills its secret store itself, from the CSR the
//! control plane signs, so no key ever travels in configuration.

use super::envoy;
use super::peer_authentication::Mode;
use weft_xds::pb::envoy::config::core::v3::{transport_socket, TransportSocket};
use weft_xds::pb::envoy::config::listener::v3::{
    listener_filter, FilterChain, FilterChainMatch, Listener, ListenerFilter,
};
use weft_xds::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use weft_xds::pb::envoy::extensions::transport_sockets::tls::v3 as tls;
use weft_xds::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher};

/// SDS name of the workload certificate.
pub const CERTIFICATE_SECRET: &str = "default";
/// SDS name of the trust bundle.
pub const ROOTS_SECRET: &str = "ROOTCA";
/// Transport socket name of TLS.
const TLS_SOCKET: &str = "envoy.transport_sockets.tls";
/// ALPN offered on inbound mTLS: the inner protocol is chosen per connection.
pub const INBOUND_ALPN: [&str; 2] = ["h2", "http/1.1"];

/// TLS 1.3 only: every peer is a Weft sidecar.
fn params() -> tls::TlsParameters {
    tls::TlsParameters {
        tls_minimum_protocol_version: tls::tls_parameters::TlsProtocol::TlSv13 as i32,
        tls_maximum_protocol_version: tls::tls_parameters::TlsProtocol::TlSv13 as i32,
        ..Default::default()
    }
}

fn common(alpn: &[&str], san: MatchPattern) -> tls::CommonTlsContext {
    let sds = |name: &str| tls::SdsSecretConfig {
        name: name.to_string(),
        ..Default::default()
    };
    tls::CommonTlsContext {
        tls_params: Some(params()),
        alpn_protocols: alpn.iter().map(|s| s.to_string()).collect(),
        tls_certificate_sds_secret_configs: vec![sds(CERTIFICATE_SECRET)],
        validation_context_type: Some(
            tls::common_tls_context::ValidationContextType::CombinedValidationContext(
                tls::common_tls_context::CombinedCertificateValidationContext {
                    default_validation_context: Some(tls::CertificateValidationContext {
                        match_typed_subject_alt_names: vec![tls::SubjectAltNameMatcher {
                            san_type: tls::subject_alt_name_matcher::SanType::Uri as i32,
                            matcher: Some(StringMatcher {
                                match_pattern: Some(san),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                    validation_context_sds_secret_config: Some(sds(ROOTS_SECRET)),
                    ..Default::default()
                },
            ),
        ),
        ..Default::default()
    }
}

fn socket(typed: weft_xds::pb::google::protobuf::Any) -> TransportSocket {
    TransportSocket {
        name: TLS_SOCKET.to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(typed)),
    }
}

/// The client side: present the workload certificate, accept only `peer` (a SPIFFE
/// ID), offer `alpn`.
pub fn upstream(peer: &str, alpn: &[&str]) -> TransportSocket {
    socket(envoy::any(&tls::UpstreamTlsContext {
        common_tls_context: Some(common(alpn, MatchPattern::Exact(peer.to_string()))),
        ..Default::default()
    }))
}

/// The server side: require a client certificate of `trust_domain`.
pub fn downstream(trust_domain: &str) -> TransportSocket {
    socket(envoy::any(&tls::DownstreamTlsContext {
        common_tls_context: Some(common(
            &INBOUND_ALPN,
            MatchPattern::Prefix(format!("spiffe://{trust_domain}/")),
        )),
        require_client_certificate: Some(weft_xds::pb::google::protobuf::BoolValue { value: true }),
        ..Default::default()
    }))
}

/// Puts an inbound listener's (one, plaintext) filter chain behind the port's mTLS
/// `mode`: STRICT serves it over mTLS only (a plaintext connection matches no chain and
/// is closed); PERMISSIVE serves it both ways, told apart by the TLS inspector;
/// DISABLE leaves it plaintext.
pub fn secure_inbound(listener: &mut Listener, mode: Mode, trust_domain: &str) {
    if mode == Mode::Disable {
        return;
    }
    let Some(plain) = listener.filter_chains.pop() else {
        return;
    };
    let by_transport = |protocol: &str| {
        Some(FilterChainMatch {
            transport_protocol: protocol.to_string(),
            ..Default::default()
        })
    };
    listener.listener_filters.push(ListenerFilter {
        name: "envoy.filters.listener.tls_inspector".into(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(envoy::any(
            &TlsInspector::default(),
        ))),
        ..Default::default()
    });
    listener.filter_chains.push(FilterChain {
        name: "mtls".into(),
        filter_chain_match: by_transport("tls"),
        transport_socket: Some(downstream(trust_domain)),
        ..plain.clone()
    });
    if mode == Mode::Permissive {
        listener.filter_chains.push(FilterChain {
            name: "plaintext".into(),
            filter_chain_match: by_transport("raw_buffer"),
            ..plain
        });
    }
}
