//! The proxy configured over ADS by a real gRPC server in the test: listeners, routes,
//! clusters and endpoints arrive dynamically; updates apply without dropping requests;
//! a bad update is NACKed and the last good configuration keeps serving; the proxy
//! keeps serving while the control plane is away and resubscribes when it is back.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use weft_test::proxy::get;
use weft_test::{runtime, TestProxy, Upstream};
use weft_xds::pb::envoy::config::cluster::v3::{cluster, Cluster};
use weft_xds::pb::envoy::config::core::v3 as core;
use weft_xds::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use weft_xds::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
use weft_xds::pb::envoy::config::route::v3 as route;
use weft_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use weft_xds::pb::google::protobuf::Any;
use weft_xds::server::{AdsServer, ClientInfo, Source, View};
use weft_xds::{type_url, Resource};

#[derive(Default)]
struct Config {
    resources: Mutex<BTreeMap<&'static str, Vec<Arc<Resource>>>>,
    tx: Mutex<Option<watch::Sender<u64>>>,
    nacks: Mutex<Vec<String>>,
}

impl Config {
    fn set(&self, t: &'static str, list: Vec<Resource>) {
        self.resources
            .lock()
            .expect("lock")
            .insert(t, list.into_iter().map(Arc::new).collect());
        if let Some(tx) = &*self.tx.lock().expect("lock") {
            tx.send_modify(|v| *v += 1);
        }
    }
}

struct V(Arc<Config>, watch::Receiver<u64>);

impl View for V {
    fn resources(&self, t: &str, names: Option<&BTreeSet<String>>) -> Vec<Arc<Resource>> {
        let all = self
            .0
            .resources
            .lock()
            .expect("lock")
            .get(t)
            .cloned()
            .unwrap_or_default();
        all.into_iter()
            .filter(|r| names.is_none_or(|n| n.contains(&r.name)))
            .collect()
    }
    fn changes(&self) -> watch::Receiver<u64> {
        self.1.clone()
    }
    fn acked(&self, _: &str, _: &str) {}
    fn nacked(&self, _: &str, _: &str, message: &str) {
        self.0.nacks.lock().expect("lock").push(message.to_string());
    }
}

struct S(Arc<Config>);

impl Source for S {
    fn connect(
        &self,
        _: &ClientInfo,
        _: &tonic::metadata::MetadataMap,
    ) -> Result<Arc<dyn View>, tonic::Status> {
        let mut tx = self.0.tx.lock().expect("lock");
        let rx = tx.get_or_insert_with(|| watch::channel(0).0).subscribe();
        Ok(Arc::new(V(self.0.clone(), rx)))
    }
}

fn addr(a: SocketAddr) -> core::Address {
    core::Address {
        address: Some(core::address::Address::SocketAddress(core::SocketAddress {
            address: a.ip().to_string(),
            port_specifier: Some(core::socket_address::PortSpecifier::PortValue(
                a.port() as u32
            )),
            ..Default::default()
        })),
    }
}

fn eds_cluster(name: &str) -> Resource {
    let c = Cluster {
        name: name.into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(core::ConfigSource {
                config_source_specifier: Some(core::config_source::ConfigSourceSpecifier::Ads(
                    Default::default(),
                )),
                ..Default::default()
            }),
            service_name: name.into(),
        }),
        ..Default::default()
    };
    Resource::new(name, &c)
}

fn endpoints(name: &str, addrs: &[SocketAddr]) -> Resource {
    let cla = ClusterLoadAssignment {
        cluster_name: name.into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: addrs
                .iter()
                .map(|a| LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(addr(*a)),
                        ..Default::default()
                    })),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    Resource::new(name, &cla)
}

fn listener() -> Resource {
    let manager = hcm::HttpConnectionManager {
        stat_prefix: "inbound".into(),
        route_specifier: Some(hcm::http_connection_manager::RouteSpecifier::Rds(
            hcm::Rds {
                config_source: Some(core::ConfigSource {
                    config_source_specifier: Some(core::config_source::ConfigSourceSpecifier::Ads(
                        Default::default(),
                    )),
                    ..Default::default()
                }),
                route_config_name: "routes".into(),
            },
        )),
        http_filters: vec![hcm::HttpFilter {
            name: "envoy.filters.http.router".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let l = Listener {
        name: "dynamic".into(),
        address: Some(addr("127.0.0.1:0".parse().expect("address"))),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "hcm".into(),
                config_type: Some(filter::ConfigType::TypedConfig(Any {
                    type_url: type_url::HTTP_CONNECTION_MANAGER.into(),
                    value: prost::Message::encode_to_vec(&manager),
                })),
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    Resource::new("dynamic", &l)
}

fn routes(cluster: &str, timeout_s: i64) -> Resource {
    let rc = route::RouteConfiguration {
        name: "routes".into(),
        virtual_hosts: vec![route::VirtualHost {
            name: "all".into(),
            domains: vec!["*".into()],
            routes: vec![route::Route {
                r#match: Some(route::RouteMatch {
                    path_specifier: Some(route::route_match::PathSpecifier::Prefix("/".into())),
                    ..Default::default()
                }),
                action: Some(route::route::Action::Route(route::RouteAction {
                    cluster_specifier: Some(route::route_action::ClusterSpecifier::Cluster(
                        cluster.into(),
                    )),
                    timeout: Some(weft_xds::pb::google::protobuf::Duration {
                        seconds: timeout_s,
                        nanos: 0,
                    }),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    Resource::new("routes", &rc)
}

fn bootstrap(xds: SocketAddr, protocol: &str) -> String {
    format!(
        r#"
node: {{ id: sidecar-1, cluster: test }}
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
dynamic_resources:
  lds_config: {{ ads: {{}} }}
  cds_config: {{ ads: {{}} }}
  ads_config:
    api_type: {protocol}
    transport_api_version: V3
    grpc_services: [{{ envoy_grpc: {{ cluster_name: xds }} }}]
static_resources:
  clusters:
  - name: xds
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: xds
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}
"#,
        xds.port()
    )
}

async fn serve(config: Arc<Config>, listener: tokio::net::TcpListener) {
    let _ = tonic::transport::Server::builder()
        .add_service(AdsServer::new(Arc::new(S(config))).into_service())
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await;
}

fn scenario(protocol: &str) {
    let rt = runtime();
    let (v1, v2) =
        rt.block_on(async { (Upstream::start("v1").await, Upstream::start("v2").await) });
    let config = Arc::new(Config::default());
    config.set(
        type_url::CLUSTER,
        vec![eds_cluster("v1"), eds_cluster("v2")],
    );
    config.set(
        type_url::CLUSTER_LOAD_ASSIGNMENT,
        vec![endpoints("v1", &[v1.addr]), endpoints("v2", &[v2.addr])],
    );
    config.set(type_url::LISTENER, vec![listener()]);
    config.set(type_url::ROUTE_CONFIGURATION, vec![routes("v1", 15)]);
    let xds_socket = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind xDS socket");
    let xds_addr = xds_socket.local_addr().expect("local address");
    let server = rt.spawn(serve(config.clone(), xds_socket));

    let proxy = TestProxy::start(&bootstrap(xds_addr, protocol), 2);
    let addr = proxy.addr("dynamic");
    let upstream = |r: weft_test::proxy::Reply| {
        r.headers
            .get("x-upstream")
            .map(|v| v.to_str().expect("ASCII token").to_string())
    };
    rt.block_on(async {
        assert_eq!(upstream(get(addr, "svc", "/").await).as_deref(), Some("v1"));

        // Switch the route while a slow request is in flight: it completes, new ones move.
        let slow = tokio::spawn(async move { get(addr, "svc", "/delay/600").await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        config.set(type_url::ROUTE_CONFIGURATION, vec![routes("v2", 15)]);
        let mut moved = false;
        for _ in 0..100 {
            if upstream(get(addr, "svc", "/").await).as_deref() == Some("v2") {
                moved = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(moved, "the route update reached the proxy");
        assert_eq!(
            slow.await.expect("slow request task").status,
            200,
            "the in-flight request finished"
        );

        // New endpoints for v2 (EDS only).
        let v3 = Upstream::start("v3").await;
        config.set(
            type_url::CLUSTER_LOAD_ASSIGNMENT,
            vec![endpoints("v1", &[v1.addr]), endpoints("v2", &[v3.addr])],
        );
        let mut seen = false;
        for _ in 0..100 {
            if upstream(get(addr, "svc", "/").await).as_deref() == Some("v3") {
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(seen, "the endpoint update reached the proxy");

        // A route naming a regex that does not compile is NACKed; v3 keeps serving.
        let mut bad = routes("v2", 15);
        let mut rc: route::RouteConfiguration =
            prost::Message::decode(bad.body.value.as_slice()).expect("decode");
        rc.virtual_hosts[0].routes[0].r#match = Some(route::RouteMatch {
            path_specifier: Some(route::route_match::PathSpecifier::SafeRegex(
                weft_xds::pb::envoy::r#type::matcher::v3::RegexMatcher {
                    regex: "(unclosed".into(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        });
        bad = Resource::new("routes", &rc);
        config.set(type_url::ROUTE_CONFIGURATION, vec![bad]);
        for _ in 0..100 {
            if !config.nacks.lock().expect("lock").is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let nacks = config.nacks.lock().expect("lock").clone();
        assert!(
            nacks.iter().any(|n| n.contains("invalid regex")),
            "{nacks:?}"
        );
        assert_eq!(
            upstream(get(addr, "svc", "/").await).as_deref(),
            Some("v3"),
            "last good configuration serves"
        );

        // The control plane goes away: the proxy keeps serving.
        server.abort();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(upstream(get(addr, "svc", "/").await).as_deref(), Some("v3"));
        drop(v3);
    });
    let dump = rt
        .block_on(weft_test::proxy::admin_get(proxy.admin(), "/config_dump"))
        .json();
    let text = dump.to_string();
    assert!(text.contains("dynamic_active_clusters"), "{text}");
    assert!(
        text.contains("\"dynamic\""),
        "the dynamic listener is in the dump"
    );
}

#[test]
fn configured_over_sotw_ads() {
    scenario("GRPC");
}

#[test]
fn configured_over_delta_ads() {
    scenario("DELTA_GRPC");
}
