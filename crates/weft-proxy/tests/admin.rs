//! The admin listener: readiness, metrics, config dump, clusters, draining.

mod common;

use common::{cluster, http_bootstrap, route_all};
use weft_test::proxy::{admin_get, get};
use weft_test::{runtime, TestProxy, Upstream};

#[test]
fn admin_pages() {
    let rt = runtime();
    let up = rt.block_on(Upstream::start("up"));
    let yaml = http_bootstrap(
        &route_all("backend", ""),
        "",
        &[cluster(
            "backend",
            &[up.addr],
            "    lb_policy: LEAST_REQUEST\n",
        )],
    );
    let proxy = TestProxy::start(&yaml, 2);
    let (addr, admin) = (proxy.addr("http"), proxy.admin());
    rt.block_on(async {
        let ready = admin_get(admin, "/ready").await;
        assert_eq!((ready.status, ready.text().as_str()), (200, "LIVE\n"));
        for _ in 0..3 {
            assert_eq!(get(addr, "svc", "/").await.status, 200);
        }
        assert_eq!(get(addr, "svc", "/status/503").await.status, 503);

        let m = admin_get(admin, "/stats/prometheus").await;
        assert!(m.headers["content-type"].to_str().expect("ct").starts_with("text/plain; version=0.0.4"));
        let text = m.text();
        for line in [
            r#"weft_http_downstream_rq_total{stat_prefix="ingress",response_code_class="2xx"} 3"#,
            r#"weft_http_downstream_rq_total{stat_prefix="ingress",response_code_class="5xx"} 1"#,
            r#"weft_cluster_upstream_rq_total{cluster="backend",response_code_class="2xx"} 3"#,
            r#"weft_cluster_upstream_cx_total{cluster="backend"}"#,
            r#"weft_cluster_membership_healthy{cluster="backend"} 1"#,
            r#"weft_route_rq_total{route_config="routes",virtual_host="all",route="all/0",response_code_class="2xx"} 3"#,
            r#"weft_listener_downstream_cx_total{listener="http"}"#,
            "weft_cluster_upstream_rq_time_milliseconds_bucket",
            "weft_http_downstream_rq_active",
            "weft_listener_downstream_cx_rx_bytes_total",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert_eq!(admin_get(admin, "/metrics").await.status, 200);

        let dump = admin_get(admin, "/config_dump").await.json();
        let configs = dump["configs"].as_array().expect("configs");
        let types: Vec<&str> = configs.iter().map(|c| c["@type"].as_str().expect("@type")).collect();
        assert_eq!(
            types,
            [
                "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
                "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
                "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
                "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
                "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
            ]
        );
        assert_eq!(configs[1]["static_clusters"][0]["cluster"]["name"], "backend");
        assert_eq!(configs[2]["static_listeners"][0]["listener"]["name"], "http");
        assert_eq!(configs[3]["static_route_configs"][0]["route_config"]["name"], "routes");

        let clusters = admin_get(admin, "/clusters").await.text();
        assert!(clusters.contains(&format!("backend::{}::rq_total::4", up.addr)), "{clusters}");
        assert!(clusters.contains(&format!("backend::{}::health_flags::healthy", up.addr)), "{clusters}");
        assert!(clusters.contains("backend::lb_policy::least_request"), "{clusters}");
        let json = admin_get(admin, "/clusters?format=json").await.json();
        assert_eq!(json["cluster_statuses"][0]["name"], "backend");

        assert_eq!(admin_get(admin, "/nope").await.status, 404);
        assert_eq!(admin_get(admin, "/drain_listeners").await.status, 405, "draining needs POST");
    });
}

#[test]
fn drain_listeners_stops_accepting() {
    let rt = runtime();
    let up = rt.block_on(Upstream::start("up"));
    let yaml = http_bootstrap(&route_all("up", ""), "", &[cluster("up", &[up.addr], "")]);
    let proxy = TestProxy::start(&yaml, 1);
    let (addr, admin) = (proxy.addr("http"), proxy.admin());
    rt.block_on(async {
        assert_eq!(get(addr, "svc", "/").await.status, 200);
        let req = http::Request::post(format!("http://{admin}/drain_listeners"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("req");
        assert_eq!(weft_test::proxy::send(req).await.status, 200);
        assert_eq!(
            admin_get(admin, "/ready").await.status,
            503,
            "draining is not ready"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "listener still accepting"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
}
