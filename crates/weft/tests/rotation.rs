//! Rotation under load, with no failed request: workload certificates with a 1-minute
//! lifetime renew several times, and the mesh's root is replaced (prepare, activate,
//! finish) while requests run between two sidecars under STRICT mTLS, each request on
//! a new mTLS connection (so every handshake uses the certificates of the moment).

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::*;

/// One connection per request between the sidecars: a handshake each time.
const NEW_CONNECTION_EACH_REQUEST: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: server
  namespace: default
spec:
  host: server
  trafficPolicy:
    connectionPool:
      http:
        maxRequestsPerConnection: 1
"#;

/// `weft ca ARGS...` against `control`: success, and what it printed.
fn ca(control: &Control, args: &[&str]) -> (bool, String) {
    let out = weft()
        .arg("ca")
        .args(args)
        .args([
            "--server",
            &control.api.to_string(),
            "--token",
            &control.token,
        ])
        .output()
        .expect("weft ca");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The serial of the sidecar's workload certificate and the subjects it trusts.
async fn certs(admin: SocketAddr) -> (String, Vec<String>) {
    let dump = weft_test::proxy::admin_get(admin, "/certs").await.json();
    let mut serial = String::new();
    let mut roots = Vec::new();
    for c in dump["certificates"].as_array().expect("certificates") {
        if c["name"] == "default" {
            serial = c["cert_chain"][0]["serial_number"]
                .as_str()
                .unwrap_or_default()
                .to_string();
        }
        if c["name"] == "ROOTCA" {
            for r in c["ca_cert"].as_array().expect("ca_cert") {
                roots.push(r["subject"].as_str().unwrap_or_default().to_string());
            }
        }
    }
    (serial, roots)
}

/// A condition on the sidecars' trust bundles (subjects of their roots).
type BundleCheck<'a> = &'a dyn Fn(&[Vec<String>]) -> bool;

/// Watches both sidecars' certificates until `deadline`, collecting serials, until
/// `done` holds for the trust bundles (`None`: just until the deadline).
async fn watch(
    sidecars: &[&Sidecar],
    serials: &mut [BTreeSet<String>],
    until: Instant,
    done: Option<BundleCheck<'_>>,
) -> bool {
    while Instant::now() < until {
        let mut bundles = Vec::new();
        for (s, seen) in sidecars.iter().zip(serials.iter_mut()) {
            let (serial, roots) = certs(s.admin).await;
            if !serial.is_empty() {
                seen.insert(serial);
            }
            bundles.push(roots);
        }
        if done.is_some_and(|d| d(&bundles)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    done.is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_and_root_rotate_under_load_without_a_failed_request() {
    let dir = TempDir::new("rotation");
    let flags = ["--workload-cert-ttl", "60s", "--bundle-refresh", "2s"].map(String::from);
    let control = Control::start(&dir.0, "control", &dir.join("data"), &flags);
    let api = control.client();
    apply(&api, MESH_STRICT).await;
    apply(&api, NEW_CONNECTION_EACH_REQUEST).await;
    let pair = Pair::start(&dir, &control, &[], &[]).await;
    let (server, client) = (&pair.server, &pair.client);
    let mut mesh = MeshClient::new(client.outbound);
    wait_served(
        &mut mesh,
        "http://server:9080/",
        &["server"],
        Duration::from_secs(10),
    )
    .await;

    let start = Instant::now();
    let load = Load::start(client.outbound, "http://server:9080/");
    let sidecars = [server, client];
    let mut serials = vec![BTreeSet::new(), BTreeSet::new()];
    watch(
        &sidecars,
        &mut serials,
        start + Duration::from_secs(3),
        None,
    )
    .await;

    // 1. A new root joins the bundle; the old one signs on.
    let (ok, text) = ca(&control, &["rotate", "prepare"]);
    assert!(ok, "prepare: {text}");
    let (ok, text) = ca(&control, &["rotate", "activate"]);
    assert!(
        !ok && text.contains("may not have fetched"),
        "activate too early: {text}"
    );
    let both_roots = |b: &[Vec<String>]| b.iter().all(|r| r.len() == 2);
    let deadline = Instant::now() + Duration::from_secs(10);
    assert!(
        watch(&sidecars, &mut serials, deadline, Some(&both_roots)).await,
        "both sidecars trust both roots"
    );

    // 2. After two bundle refresh periods, the new root signs.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (ok, text) = ca(&control, &["rotate", "activate"]);
    assert!(ok, "activate: {text}");
    let activated = Instant::now();
    let (ok, text) = ca(&control, &["rotate", "finish"]);
    assert!(
        !ok && text.contains("may still be in use"),
        "finish too early: {text}"
    );

    // 3. Once a certificate lifetime has passed, the old root goes.
    let finish_at = activated + Duration::from_secs(66);
    watch(&sidecars, &mut serials, finish_at, None).await;
    let (ok, text) = ca(&control, &["rotate", "finish"]);
    assert!(ok, "finish: {text}");
    assert!(text.contains("rotation: none under way"), "{text}");
    let one_root = |b: &[Vec<String>]| b.iter().all(|r| r.len() == 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    assert!(
        watch(&sidecars, &mut serials, deadline, Some(&one_root)).await,
        "both sidecars trust the new root alone"
    );
    watch(
        &sidecars,
        &mut serials,
        Instant::now() + Duration::from_secs(3),
        None,
    )
    .await;
    load.finish(1_000).await;

    for (name, seen) in ["server", "client"].iter().zip(&serials) {
        assert!(
            seen.len() >= 4,
            "{name}'s certificate renewed only {} times: {seen:?}",
            seen.len() - 1
        );
    }
    let metrics = weft_test::proxy::admin_metrics(client.admin).await;
    let expiry = weft_test::proxy::metric(
        &metrics,
        "weft_tls_certificate_expiry_timestamp_seconds{secret=\"default\"}",
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(
        expiry > now && expiry <= now + 61.0,
        "the expiry metric shows the current 1-minute certificate: {expiry} vs now {now}"
    );
}
