//! The proxy configured over ADS by a real gRPC server in the test: listeners, routes,
//! clusters and endpoints arrive dynamically; updates apply without dropping requests;
//! a bad update is NACKed and the last good configuration keeps serving; the proxy
//! keeps serving while the control plane is away and resubscribes when it is back.

mod common;

use common::ads::{bootstrap, serve, Config};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
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
use weft_xds::{type_url, Resource};

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

/// A route to `cluster` for every path.
fn route_to(cluster: &str) -> route::Route {
    route::Route {
        r#match: Some(route::RouteMatch {
            path_specifier: Some(route::route_match::PathSpecifier::Prefix("/".into())),
            ..Default::default()
        }),
        action: Some(route::route::Action::Route(route::RouteAction {
            cluster_specifier: Some(route::route_action::ClusterSpecifier::Cluster(
                cluster.into(),
            )),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// The route configuration `routes` with its virtual hosts over VHDS.
fn vhds_routes() -> Resource {
    let rc = route::RouteConfiguration {
        name: "routes".into(),
        vhds: Some(route::Vhds {
            config_source: Some(core::ConfigSource {
                config_source_specifier: Some(core::config_source::ConfigSourceSpecifier::Ads(
                    Default::default(),
                )),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    Resource::new("routes", &rc)
}

/// VHDS virtual host `routes/DOMAIN`: `domain` to `cluster`.
fn vhost(domain: &str, cluster: &str) -> Resource {
    let name = format!("routes/{domain}");
    let vh = route::VirtualHost {
        name: name.clone(),
        domains: vec![domain.into()],
        routes: vec![route_to(cluster)],
        ..Default::default()
    };
    Resource::new(name, &vh)
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

    let proxy = TestProxy::start(&bootstrap(xds_addr, protocol, &[]), 2);
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

/// VHDS over delta ADS: the route configuration names no virtual host; they arrive as
/// resources of their own, each change touching one of them, and the proxy routes by
/// them; one it cannot compile is NACKed and the last good ones keep serving.
#[test]
fn virtual_hosts_over_vhds() {
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
    config.set(type_url::ROUTE_CONFIGURATION, vec![vhds_routes()]);
    config.set(
        type_url::VIRTUAL_HOST,
        vec![vhost("a", "v1"), vhost("b", "v2")],
    );
    let xds_socket = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind xDS socket");
    let xds_addr = xds_socket.local_addr().expect("local address");
    let _server = rt.spawn(serve(config.clone(), xds_socket));

    let proxy = TestProxy::start(&bootstrap(xds_addr, "DELTA_GRPC", &[]), 2);
    let addr = proxy.addr("dynamic");
    let upstream = |r: weft_test::proxy::Reply| {
        r.headers
            .get("x-upstream")
            .map(|v| v.to_str().expect("ASCII token").to_string())
    };
    let eventually = |host: &'static str, want: Option<&'static str>| async move {
        for _ in 0..100 {
            let r = get(addr, host, "/").await;
            let got = if r.status == 404 { None } else { upstream(r) };
            if got.as_deref() == want {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    };
    rt.block_on(async {
        // Ready means the virtual hosts are there too.
        assert_eq!(upstream(get(addr, "a", "/").await).as_deref(), Some("v1"));
        assert_eq!(upstream(get(addr, "b", "/").await).as_deref(), Some("v2"));

        // One virtual host changes, one is added, one is removed.
        config.set(
            type_url::VIRTUAL_HOST,
            vec![vhost("a", "v2"), vhost("c", "v1")],
        );
        assert!(eventually("a", Some("v2")).await, "a moved to v2");
        assert!(eventually("c", Some("v1")).await, "c was added");
        assert!(eventually("b", None).await, "b was removed");

        // A virtual host that does not compile is NACKed; the last good ones serve.
        let mut bad: route::VirtualHost =
            prost::Message::decode(vhost("a", "v1").body.value.as_slice()).expect("decode");
        bad.routes[0].r#match = Some(route::RouteMatch {
            path_specifier: Some(route::route_match::PathSpecifier::SafeRegex(
                weft_xds::pb::envoy::r#type::matcher::v3::RegexMatcher {
                    regex: "(unclosed".into(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        });
        config.set(
            type_url::VIRTUAL_HOST,
            vec![Resource::new("routes/a", &bad), vhost("c", "v1")],
        );
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
        assert_eq!(upstream(get(addr, "a", "/").await).as_deref(), Some("v2"));
        assert_eq!(upstream(get(addr, "c", "/").await).as_deref(), Some("v1"));
    });
    // The dump shows the route configuration with its virtual hosts, as Envoy's does.
    let dump = rt
        .block_on(weft_test::proxy::admin_get(proxy.admin(), "/config_dump"))
        .json()
        .to_string();
    assert!(
        dump.contains("routes/a") && dump.contains("routes/c"),
        "{dump}"
    );
}
