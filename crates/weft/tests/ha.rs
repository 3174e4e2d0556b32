//! Two control-plane replicas on one etcd: a change applied through one reaches
//! sidecars connected to the other within a second, and when one is killed its
//! sidecars move to the other with no failed request.

mod support;

use std::time::{Duration, Instant};
use support::*;
use weft_control::proxies::ProxyStatus;
use weft_store::etcd_server::EtcdServer;
use weft_test::Upstream;

fn route_to(subset: &str) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {{version: v1}}
  - name: v2
    labels: {{version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {{host: reviews, subset: {subset}}}
"#
    )
}

async fn proxies(api: &weft_control::client::ApiClient) -> Vec<ProxyStatus> {
    api.json(hyper::Method::GET, "/api/v1/proxies", None::<&()>)
        .await
        .expect("proxy status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_etcd_and_take_over() {
    let dir = TempDir::new("ha");
    let etcd = EtcdServer::start()
        .await
        .expect("etcd (package etcd-server)");
    // Secrets in etcd are sealed with a key every replica is given.
    let seal = dir.join("seal.key");
    std::fs::write(&seal, "5eed".repeat(16)).expect("seal key");
    let store = [
        "--store".to_string(),
        etcd.url(),
        "--seal-key".to_string(),
        seal.display().to_string(),
    ];
    let mut a = Control::start(&dir.0, "control-a", &dir.join("a"), &store);
    let mut b = Control::start(&dir.0, "control-b", &dir.join("b"), &store);
    // The first replica made the mesh's admin token; the second shares it.
    b.token = a.token.clone();
    let (api_a, api_b) = (a.client(), b.client());

    let v1 = Upstream::start("v1").await;
    let v2 = Upstream::start("v2").await;
    let client_app = Upstream::start("client").await;
    // The servers on A (A first), the client on B (B first).
    let _s1 = sidecar(
        &dir.0,
        "reviews-v1",
        "reviews",
        &["version=v1"],
        v1.addr.port(),
        &[&a, &b],
        &[],
    );
    let _s2 = sidecar(
        &dir.0,
        "reviews-v2",
        "reviews",
        &["version=v2"],
        v2.addr.port(),
        &[&a, &b],
        &[],
    );
    let client = sidecar(
        &dir.0,
        "client",
        "client",
        &[],
        client_app.addr.port(),
        &[&b, &a],
        &[],
    );
    // Both replicas see every registration.
    wait_healthy(&api_a, "reviews", 2, Duration::from_secs(20)).await;
    wait_healthy(&api_b, "reviews", 2, Duration::from_secs(20)).await;
    client.ready(Duration::from_secs(10)).await;
    assert_eq!(proxies(&api_b).await.len(), 1, "only the client is on B");

    let mut mesh = MeshClient::new(client.outbound);
    apply(&api_a, &route_to("v1")).await;
    wait_served(
        &mut mesh,
        "http://reviews:9080/",
        &["v1"],
        Duration::from_secs(10),
    )
    .await;
    // Applied through A, followed by the client on B within a second.
    apply(&api_a, &route_to("v2")).await;
    let applied = Instant::now();
    wait_served(
        &mut mesh,
        "http://reviews:9080/",
        &["v2"],
        Duration::from_secs(5),
    )
    .await;
    let took = applied.elapsed();
    assert!(took < Duration::from_secs(1), "took {took:?}");

    // Kill A under load: its sidecars reconnect to B; no request fails.
    let load = Load::start(client.outbound, "http://reviews:9080/");
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.proc.kill();
    let deadline = Instant::now() + Duration::from_secs(15);
    while proxies(&api_b).await.len() < 3 {
        assert!(Instant::now() < deadline, "sidecars of A never reached B");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // B now configures them: a change through B reaches the servers' sidecars too.
    apply(&api_b, &route_to("v1")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    load.finish(100).await;
    wait_served(
        &mut mesh,
        "http://reviews:9080/",
        &["v1"],
        Duration::from_secs(5),
    )
    .await;
    let all = proxies(&api_b).await;
    assert!(
        all.iter()
            .all(|p| p.types.values().all(|t| t.sent == t.acked)),
        "every proxy on B is in sync: {all:?}"
    );
    drop(etcd);
}
