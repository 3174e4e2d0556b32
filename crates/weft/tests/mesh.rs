//! The mesh end to end, from the real binary: `weft control`, applications under
//! `weft run`, traffic through their sidecars, Istio resources applied while it flows.

mod support;

use std::time::{Duration, Instant};
use support::*;
use weft_test::Upstream;

const SUBSETS: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
"#;

fn split(v1: u32, v2: u32) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: {v1}
    - destination:
        host: reviews
        subset: v2
      weight: {v2}
"#
    )
}

/// Two versions under `weft run`, an 80/20 VirtualService: 2,000 requests split within
/// three points, then a change to all-v2 is followed without restarting anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_split_follows_the_virtual_service() {
    weighted_split(&[]).await;
}

/// The same with a client sidecar on delta xDS, which takes its outbound virtual hosts
/// over VHDS: the VirtualService reaches it as its service's virtual host alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_split_follows_the_virtual_service_over_vhds() {
    weighted_split(&["--delta"]).await;
}

async fn weighted_split(client_args: &[&str]) {
    let dir = TempDir::new("split");
    let control = Control::start(&dir.0, "control", &dir.join("data"), &[]);
    let api = control.client();
    let v1 = Upstream::start("v1").await;
    let v2 = Upstream::start("v2").await;
    let client_app = Upstream::start("client").await;
    let _s1 = sidecar(
        &dir.0,
        "reviews-v1",
        "reviews",
        &["version=v1"],
        v1.addr.port(),
        &[&control],
        &[],
    );
    let _s2 = sidecar(
        &dir.0,
        "reviews-v2",
        "reviews",
        &["version=v2"],
        v2.addr.port(),
        &[&control],
        &[],
    );
    let client = sidecar(
        &dir.0,
        "client",
        "client",
        &[],
        client_app.addr.port(),
        &[&control],
        client_args,
    );
    wait_healthy(&api, "reviews", 2, Duration::from_secs(20)).await;
    client.ready(Duration::from_secs(10)).await;
    if client_args.contains(&"--delta") {
        // Its route configuration's virtual hosts came over VHDS.
        wait_config(
            client.admin,
            "outbound|default/reviews.default.svc.cluster.local:9080",
            Duration::from_secs(10),
        )
        .await;
    }

    apply(&api, SUBSETS).await;
    apply(&api, &split(80, 20)).await;
    wait_config(
        client.admin,
        "outbound|9080|v2|reviews",
        Duration::from_secs(10),
    )
    .await;
    let mut mesh = MeshClient::new(client.outbound);
    wait_served(
        &mut mesh,
        "http://reviews:9080/",
        &["v1", "v2"],
        Duration::from_secs(10),
    )
    .await;

    let mut to_v1 = 0;
    for _ in 0..2000 {
        let a = mesh.get("http://reviews:9080/").await.expect("request");
        assert_eq!(a.status, 200, "{a:?}");
        if a.upstream == "v1" {
            to_v1 += 1;
        }
    }
    let share = f64::from(to_v1) / 2000.0 * 100.0;
    assert!(
        (77.0..=83.0).contains(&share),
        "v1 got {share:.1}% of 2000 requests"
    );

    apply(&api, &split(0, 100)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answers: Vec<String> = {
            let mut v = Vec::new();
            for _ in 0..20 {
                v.push(
                    mesh.get("http://reviews:9080/")
                        .await
                        .expect("request")
                        .upstream,
                );
            }
            v
        };
        if answers.iter().all(|u| u == "v2") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "all-v2 never took effect: {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A workload stopped with SIGTERM leaves its service before its application stops:
/// requests flowing the whole time all succeed. A sidecar killed outright leaves the
/// endpoints after the disconnect grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_fails_no_request() {
    let dir = TempDir::new("rolling");
    let control = Control::start(&dir.0, "control", &dir.join("data"), &[]);
    let api = control.client();
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let client_app = Upstream::start("client").await;
    let mut sa = sidecar(
        &dir.0,
        "reviews-a",
        "reviews",
        &["version=v1"],
        a.addr.port(),
        &[&control],
        &[],
    );
    let mut sb = sidecar(
        &dir.0,
        "reviews-b",
        "reviews",
        &["version=v1"],
        b.addr.port(),
        &[&control],
        &[],
    );
    let client = sidecar(
        &dir.0,
        "client",
        "client",
        &[],
        client_app.addr.port(),
        &[&control],
        &[],
    );
    wait_healthy(&api, "reviews", 2, Duration::from_secs(20)).await;
    client.ready(Duration::from_secs(10)).await;
    wait_served(
        &mut MeshClient::new(client.outbound),
        "http://reviews:9080/",
        &["a", "b"],
        Duration::from_secs(10),
    )
    .await;

    let load = Load::start(client.outbound, "http://reviews:9080/");
    tokio::time::sleep(Duration::from_millis(500)).await;
    sa.proc.terminate();
    let status = sa
        .proc
        .wait(Duration::from_secs(15))
        .expect("weft run exits after SIGTERM");
    assert!(
        status.code().is_some(),
        "exited by itself: {status}\n{}",
        sa.proc.log_text()
    );
    wait_healthy(&api, "reviews", 1, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    load.finish(100).await;

    // Killed without warning: gone from the endpoints after the grace period.
    sb.proc.kill();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let d = api
            .json::<weft_control::api::types::ServiceDescription>(
                hyper::Method::GET,
                "/api/v1/services/default/reviews",
                None::<&()>,
            )
            .await;
        if d.as_ref().is_ok_and(|d| d.instances.is_empty()) || d.is_err() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "killed sidecar still registered: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `kill -9` of the control plane loses nothing it acknowledged, and traffic between
/// sidecars continues through the outage and the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_kill_9_loses_nothing() {
    let dir = TempDir::new("kill9");
    let data = dir.join("data");
    let mut control = Control::start(&dir.0, "control", &data, &[]);
    let api = control.client();
    let v1 = Upstream::start("v1").await;
    let client_app = Upstream::start("client").await;
    let _s1 = sidecar(
        &dir.0,
        "reviews-v1",
        "reviews",
        &["version=v1"],
        v1.addr.port(),
        &[&control],
        &[],
    );
    let client = sidecar(
        &dir.0,
        "client",
        "client",
        &[],
        client_app.addr.port(),
        &[&control],
        &[],
    );
    wait_healthy(&api, "reviews", 1, Duration::from_secs(20)).await;
    let applied = apply(&api, SUBSETS).await;
    assert!(applied.revision > 0);
    apply(&api, &split(100, 0)).await;
    client.ready(Duration::from_secs(10)).await;
    wait_config(
        client.admin,
        "outbound|9080|v1|reviews",
        Duration::from_secs(10),
    )
    .await;
    let mut mesh = MeshClient::new(client.outbound);
    wait_served(
        &mut mesh,
        "http://reviews:9080/",
        &["v1"],
        Duration::from_secs(10),
    )
    .await;

    let (xds, api_addr) = (control.xds.to_string(), control.api.to_string());
    control.proc.kill();
    for _ in 0..20 {
        let a = mesh
            .get("http://reviews:9080/")
            .await
            .expect("served while down");
        assert_eq!((a.status, a.upstream.as_str()), (200, "v1"));
    }
    // Same addresses: the sidecars reconnect to it.
    let control = Control::start_on(&dir.0, "control-2", &data, &xds, &api_addr, &[]);
    let api = control.client();
    let vs = api
        .json::<serde_json::Value>(
            hyper::Method::GET,
            "/api/v1/resources/virtualservice/default/reviews",
            None::<&()>,
        )
        .await
        .expect("the VirtualService survived");
    assert_eq!(vs["spec"]["http"][0]["route"][0]["weight"], 100);
    // The registration outlives the restart (orphan grace), so endpoints never empty.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let a = mesh
            .get("http://reviews:9080/")
            .await
            .expect("served after restart");
        assert_eq!(a.status, 200, "{a:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_healthy(&api, "reviews", 1, Duration::from_secs(10)).await;

    // A sidecar killed hard takes its application along (no unmanaged leftover).
    let mut client = client;
    let pid = client.proc.child.id();
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .expect("the sidecar's children");
    let app: u32 = children
        .split_whitespace()
        .next()
        .and_then(|c| c.parse().ok())
        .expect("the application's pid");
    client.proc.kill();
    let gone = Instant::now();
    while std::path::Path::new(&format!("/proc/{app}/cmdline")).exists()
        && std::fs::read_to_string(format!("/proc/{app}/stat")).is_ok_and(|s| !s.contains(") Z "))
    {
        assert!(
            gone.elapsed() < Duration::from_secs(5),
            "the application outlived its sidecar"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
