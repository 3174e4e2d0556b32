//! Load balancing across real upstreams: spread, stickiness of hashing policies,
//! priority failover, and peak-EWMA steering away from a slow endpoint.

mod common;

use common::{cluster, http_bootstrap, route_all};
use http_body_util::Full;
use std::collections::HashMap;
use weft_test::proxy::{get, send};
use weft_test::{runtime, TestProxy, Upstream};

fn upstreams(rt: &tokio::runtime::Runtime, n: usize) -> Vec<Upstream> {
    rt.block_on(async {
        let mut v = Vec::new();
        for i in 0..n {
            v.push(Upstream::start(&format!("u{i}")).await);
        }
        v
    })
}

fn spread(
    rt: &tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    path: &str,
    n: usize,
) -> HashMap<String, usize> {
    rt.block_on(async {
        let mut counts = HashMap::new();
        for _ in 0..n {
            let r = get(addr, "svc", path).await;
            *counts
                .entry(r.headers["x-upstream"].to_str().expect("s").to_string())
                .or_insert(0) += 1;
        }
        counts
    })
}

#[test]
fn round_robin_and_least_request_spread_evenly() {
    let rt = runtime();
    let ups = upstreams(&rt, 3);
    let addrs: Vec<_> = ups.iter().map(|u| u.addr).collect();
    for policy in ["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM"] {
        let yaml = http_bootstrap(
            &route_all("c", ""),
            "",
            &[cluster("c", &addrs, &format!("    lb_policy: {policy}\n"))],
        );
        let proxy = TestProxy::start(&yaml, 1);
        let counts = spread(&rt, proxy.addr("http"), "/", 300);
        assert_eq!(counts.len(), 3, "{policy}: {counts:?}");
        assert!(counts.values().all(|c| *c >= 60), "{policy}: {counts:?}");
    }
}

#[test]
fn ring_hash_and_maglev_stick_by_header() {
    let rt = runtime();
    let ups = upstreams(&rt, 4);
    let addrs: Vec<_> = ups.iter().map(|u| u.addr).collect();
    for policy in ["RING_HASH", "MAGLEV"] {
        let yaml = http_bootstrap(
            &route_all("c", "hash_policy: [{ header: { header_name: x-user } }]"),
            "",
            &[cluster("c", &addrs, &format!("    lb_policy: {policy}\n"))],
        );
        let proxy = TestProxy::start(&yaml, 2);
        let addr = proxy.addr("http");
        rt.block_on(async {
            let mut seen = HashMap::new();
            for user in 0..40 {
                for _ in 0..3 {
                    let req = http::Request::get(format!("http://{addr}/"))
                        .header("host", "svc")
                        .header("x-user", format!("user-{user}"))
                        .body(Full::new(bytes::Bytes::new()))
                        .expect("req");
                    let who = send(req).await.headers["x-upstream"]
                        .to_str()
                        .expect("s")
                        .to_string();
                    let first = seen.entry(user).or_insert_with(|| who.clone());
                    assert_eq!(*first, who, "{policy}: user-{user} moved");
                }
            }
            let distinct: std::collections::HashSet<_> = seen.values().collect();
            assert!(
                distinct.len() >= 3,
                "{policy}: 40 users landed on {distinct:?}"
            );
        });
    }
}

#[test]
fn priorities_fail_over_when_health_drops() {
    let rt = runtime();
    let ups = upstreams(&rt, 3);
    let yaml = format!(
        r#"
static_resources:
  listeners:
  - name: http
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: p
          route_config:
            virtual_hosts:
{}          http_filters: [{{ name: envoy.filters.http.router }}]
  clusters:
  - name: c
    load_assignment:
      cluster_name: c
      endpoints:
      - priority: 0
        lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}
          health_status: UNHEALTHY
      - priority: 1
        lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}
"#,
        route_all("c", ""),
        ups[0].addr.port(),
        ups[1].addr.port(),
        ups[2].addr.port()
    );
    let proxy = TestProxy::start(&yaml, 1);
    let counts = spread(&rt, proxy.addr("http"), "/", 400);
    // Priority 0 is 50% healthy → 70% of traffic with over-provisioning; priority 1 takes the rest.
    assert!(
        !counts.contains_key("u1"),
        "an unhealthy endpoint gets nothing: {counts:?}"
    );
    let p0 = counts.get("u0").copied().unwrap_or(0);
    let p1 = counts.get("u2").copied().unwrap_or(0);
    assert!((220..=340).contains(&p0) && p0 + p1 == 400, "{counts:?}");
}

#[test]
fn peak_ewma_avoids_the_slow_endpoint() {
    let rt = runtime();
    let (slow, fast) = rt.block_on(async {
        (
            Upstream::start_slow("slow", std::time::Duration::from_millis(40)).await,
            Upstream::start("fast").await,
        )
    });
    let extra = r#"    load_balancing_policy:
      policies:
      - typed_extension_config:
          name: weft.lb.peak_ewma
          typed_config:
            "@type": type.googleapis.com/weft.config.lb.v1.PeakEwma
            decay: 10s
      - typed_extension_config:
          name: envoy.load_balancing_policies.round_robin
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin
"#;
    let yaml = http_bootstrap(
        &route_all("c", ""),
        "",
        &[cluster("c", &[slow.addr, fast.addr], extra)],
    );
    let proxy = TestProxy::start(&yaml, 1);
    let counts = spread(&rt, proxy.addr("http"), "/", 200);
    let to_slow = counts.get("slow").copied().unwrap_or(0);
    assert!(
        to_slow < 20,
        "peak-EWMA sent {to_slow} of 200 to the endpoint 40 ms slower: {counts:?}"
    );
    drop(proxy);
    // Round robin, for contrast, splits evenly.
    let yaml = http_bootstrap(
        &route_all("c", ""),
        "",
        &[cluster("c", &[slow.addr, fast.addr], "")],
    );
    let proxy = TestProxy::start(&yaml, 1);
    let counts = spread(&rt, proxy.addr("http"), "/", 40);
    assert_eq!(counts.get("slow"), Some(&20));
}
