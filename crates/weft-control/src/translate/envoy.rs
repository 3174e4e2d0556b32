//! Constructors for the Envoy resources the translator emits, so that the translation
//! reads as policy (which listener, which routes, which clusters) rather than as protobuf
//! plumbing.

use prost::Message;
use std::net::SocketAddr;
use weft_xds::pb::envoy::config::cluster::v3::{cluster, Cluster, LoadBalancingPolicy};
use weft_xds::pb::envoy::config::core::v3 as core;
use weft_xds::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use weft_xds::pb::envoy::config::listener::v3::{
    filter, ApiListener, Filter, FilterChain, Listener,
};
use weft_xds::pb::envoy::config::route::v3 as route;
use weft_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use weft_xds::pb::envoy::extensions::upstreams::http::v3::{
    http_protocol_options, HttpProtocolOptions,
};
use weft_xds::pb::google::protobuf::{Any, Duration, UInt32Value};
use weft_xds::type_url;

/// Packs a message as an `Any`.
pub fn any<M: Message + prost::Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

/// A socket address.
pub fn address(host: &str, port: u16) -> core::Address {
    core::Address {
        address: Some(core::address::Address::SocketAddress(core::SocketAddress {
            address: host.to_string(),
            port_specifier: Some(core::socket_address::PortSpecifier::PortValue(u32::from(
                port,
            ))),
            ..Default::default()
        })),
    }
}

/// A duration.
pub fn duration(d: std::time::Duration) -> Duration {
    Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// `ads: {}`.
pub fn ads() -> core::ConfigSource {
    core::ConfigSource {
        config_source_specifier: Some(core::config_source::ConfigSourceSpecifier::Ads(
            Default::default(),
        )),
        resource_api_version: core::ApiVersion::V3 as i32,
        ..Default::default()
    }
}

fn router() -> hcm::HttpFilter {
    hcm::HttpFilter {
        name: "envoy.filters.http.router".into(),
        config_type: Some(hcm::http_filter::ConfigType::TypedConfig(any(
            &weft_xds::pb::envoy::extensions::filters::http::router::v3::Router::default(),
        ))),
        ..Default::default()
    }
}

/// Where a connection manager's routes come from.
pub enum Routes {
    /// Over RDS, by name.
    Rds(String),
    /// Inline.
    Inline(Box<route::RouteConfiguration>),
}

/// An HTTP connection manager.
pub fn http_manager(
    stat_prefix: &str,
    routes: Routes,
    upgrades: &[&str],
) -> hcm::HttpConnectionManager {
    hcm::HttpConnectionManager {
        stat_prefix: stat_prefix.to_string(),
        codec_type: hcm::http_connection_manager::CodecType::Auto as i32,
        route_specifier: Some(match routes {
            Routes::Rds(name) => hcm::http_connection_manager::RouteSpecifier::Rds(hcm::Rds {
                config_source: Some(ads()),
                route_config_name: name,
            }),
            Routes::Inline(rc) => hcm::http_connection_manager::RouteSpecifier::RouteConfig(*rc),
        }),
        http_filters: vec![router()],
        upgrade_configs: upgrades
            .iter()
            .map(|u| hcm::http_connection_manager::UpgradeConfig {
                upgrade_type: u.to_string(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// A listener on `addr` running one HTTP connection manager.
pub fn http_listener(
    name: &str,
    addr: SocketAddr,
    manager: &hcm::HttpConnectionManager,
) -> Listener {
    Listener {
        name: name.to_string(),
        address: Some(address(&addr.ip().to_string(), addr.port())),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(any(manager))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A listener for proxyless gRPC clients: an `api_listener` named as the client dials.
pub fn api_listener(name: &str, manager: &hcm::HttpConnectionManager) -> Listener {
    Listener {
        name: name.to_string(),
        api_listener: Some(ApiListener {
            api_listener: Some(any(manager)),
        }),
        ..Default::default()
    }
}

/// How a cluster balances.
#[derive(Debug, Clone, PartialEq)]
pub enum Balance {
    /// Peak-EWMA for Weft, round robin for other clients (the mesh default).
    PeakEwma,
    /// A classic policy.
    Classic(cluster::LbPolicy),
    /// Consistent hashing on a ring.
    RingHash {
        /// Minimum ring size.
        minimum: Option<u64>,
    },
    /// Maglev.
    Maglev {
        /// Table size.
        table_size: Option<u64>,
    },
}

/// An EDS cluster.
pub fn eds_cluster(
    name: &str,
    balance: &Balance,
    http2: bool,
    connect_timeout: std::time::Duration,
) -> Cluster {
    let mut c = Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: name.to_string(),
        }),
        connect_timeout: Some(duration(connect_timeout)),
        ..Default::default()
    };
    apply_balance(&mut c, balance);
    if http2 {
        set_http2(&mut c);
    }
    c
}

/// A cluster whose endpoints the proxy resolves by DNS: `STRICT_DNS` (every address of
/// every name) or, with `round_robin`, `LOGICAL_DNS` (the first address of one name).
pub fn dns_cluster(
    name: &str,
    balance: &Balance,
    http2: bool,
    connect_timeout: std::time::Duration,
    round_robin: bool,
    endpoints: &[EndpointSpec],
) -> Cluster {
    let kind = if round_robin {
        cluster::DiscoveryType::LogicalDns
    } else {
        cluster::DiscoveryType::StrictDns
    };
    let mut c = Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(kind as i32)),
        connect_timeout: Some(duration(connect_timeout)),
        load_assignment: Some(assignment(name, endpoints)),
        ..Default::default()
    };
    apply_balance(&mut c, balance);
    if http2 {
        set_http2(&mut c);
    }
    c
}

/// A STATIC cluster of one address.
pub fn static_cluster(
    name: &str,
    addr: SocketAddr,
    connect_timeout: std::time::Duration,
) -> Cluster {
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        connect_timeout: Some(duration(connect_timeout)),
        load_assignment: Some(assignment(
            name,
            &[EndpointSpec {
                host: addr.ip().to_string(),
                port: addr.port(),
                weight: 1,
                healthy: true,
            }],
        )),
        ..Default::default()
    }
}

fn apply_balance(c: &mut Cluster, balance: &Balance) {
    use weft_xds::pb::envoy::config::cluster::v3::load_balancing_policy::Policy;
    use weft_xds::pb::envoy::extensions::load_balancing_policies as lbp;
    let policy = |name: &str, typed: Any| Policy {
        typed_extension_config: Some(core::TypedExtensionConfig {
            name: name.to_string(),
            typed_config: Some(typed),
        }),
    };
    match balance {
        Balance::PeakEwma => {
            // Weft takes the first policy it knows; Envoy and gRPC the first they know.
            c.load_balancing_policy = Some(LoadBalancingPolicy {
                policies: vec![
                    policy(
                        "weft.lb.peak_ewma",
                        any(&weft_xds::ext::PeakEwma::default()),
                    ),
                    policy(
                        "envoy.load_balancing_policies.round_robin",
                        any(&lbp::round_robin::v3::RoundRobin::default()),
                    ),
                ],
            });
        }
        Balance::Classic(p) => c.lb_policy = *p as i32,
        Balance::RingHash { minimum } => {
            c.lb_policy = cluster::LbPolicy::RingHash as i32;
            if let Some(m) = minimum {
                c.lb_config = Some(cluster::LbConfig::RingHashLbConfig(
                    cluster::RingHashLbConfig {
                        minimum_ring_size: Some(weft_xds::pb::google::protobuf::UInt64Value {
                            value: *m,
                        }),
                        ..Default::default()
                    },
                ));
            }
        }
        Balance::Maglev { table_size } => {
            c.lb_policy = cluster::LbPolicy::Maglev as i32;
            if let Some(t) = table_size {
                c.lb_config = Some(cluster::LbConfig::MaglevLbConfig(cluster::MaglevLbConfig {
                    table_size: Some(weft_xds::pb::google::protobuf::UInt64Value { value: *t }),
                }));
            }
        }
    }
}

/// Sets connection options (idle timeout, requests per connection) for HTTP upstreams,
/// keeping the protocol already chosen.
pub fn set_common_http_options(c: &mut Cluster, common: core::HttpProtocolOptions) {
    let key = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
    let mut options = c
        .typed_extension_protocol_options
        .get(key)
        .and_then(|a| HttpProtocolOptions::decode(a.value.as_slice()).ok())
        .unwrap_or_default();
    options.common_http_protocol_options = Some(common);
    if options.upstream_protocol_options.is_none() {
        options.upstream_protocol_options = Some(http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
            http_protocol_options::ExplicitHttpConfig {
                protocol_config: Some(http_protocol_options::explicit_http_config::ProtocolConfig::HttpProtocolOptions(
                    Default::default(),
                )),
            },
        ));
    }
    c.typed_extension_protocol_options
        .insert(key.into(), any(&options));
}

/// Makes upstream connections speak HTTP/2 (keeping common options already set).
pub fn set_http2(c: &mut Cluster) {
    set_protocol(c, http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
        http_protocol_options::ExplicitHttpConfig {
            protocol_config: Some(http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                Default::default(),
            )),
        },
    ));
}

/// Makes upstream connections speak whatever the downstream spoke.
pub fn set_downstream_protocol(c: &mut Cluster) {
    set_protocol(
        c,
        http_protocol_options::UpstreamProtocolOptions::UseDownstreamProtocolConfig(
            Default::default(),
        ),
    );
}

fn set_protocol(c: &mut Cluster, protocol: http_protocol_options::UpstreamProtocolOptions) {
    let key = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
    let mut options = c
        .typed_extension_protocol_options
        .get(key)
        .and_then(|a| HttpProtocolOptions::decode(a.value.as_slice()).ok())
        .unwrap_or_default();
    options.upstream_protocol_options = Some(protocol);
    c.typed_extension_protocol_options
        .insert(key.into(), any(&options));
}

/// One endpoint of an assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    /// Address: an IP (EDS, STATIC) or a name (DNS clusters).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Weight.
    pub weight: u32,
    /// Whether it takes traffic.
    pub healthy: bool,
}

/// A cluster load assignment in one locality (with a weight, which gRPC clients
/// require or they drop the locality, and a `locality`, even an empty one, without
/// which they NACK the assignment).
pub fn assignment(name: &str, endpoints: &[EndpointSpec]) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: name.to_string(),
        endpoints: vec![LocalityLbEndpoints {
            locality: Some(core::Locality::default()),
            load_balancing_weight: Some(UInt32Value { value: 1 }),
            lb_endpoints: endpoints
                .iter()
                .map(|e| LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(address(&e.host, e.port)),
                        ..Default::default()
                    })),
                    health_status: if e.healthy {
                        core::HealthStatus::Healthy
                    } else {
                        core::HealthStatus::Unhealthy
                    } as i32,
                    load_balancing_weight: Some(UInt32Value {
                        value: e.weight.max(1),
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The type URL of the connection manager (for callers checking listeners).
pub const HCM: &str = type_url::HTTP_CONNECTION_MANAGER;
