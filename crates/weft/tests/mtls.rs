//! Mutual TLS between sidecars, end to end from the real binary: workloads get their
//! certificates from the control plane's CA by CSR, sidecars reach each other over
//! TLS 1.3 with the hybrid post-quantum key exchange, PeerAuthentication decides what
//! an inbound port accepts — and tools no one here wrote check it from outside: a
//! packet capture (tshark) of the traffic between the sidecars shows no plaintext
//! HTTP, and sslscan finds TLS 1.3 only and no weak cipher.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_test::proxy::{admin_metrics as metrics, metric};

const SERVER_PERMISSIVE: &str = r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: server
  namespace: default
spec:
  selector:
    matchLabels:
      app: server
  mtls:
    mode: PERMISSIVE
"#;

/// A plaintext HTTP/1.1 request straight to `addr`: the status line, or `None` when the
/// connection is closed without one.
async fn plaintext_get(addr: SocketAddr) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nhost: server\r\nconnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    text.lines()
        .next()
        .filter(|l| l.starts_with("HTTP/"))
        .map(str::to_string)
}

/// Runs a tool, returning its standard output; panics with its output if it fails.
fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} is needed by this test (scripts/test.sh installs it): {e}")
        });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_speak_mtls_and_peer_authentication_decides() {
    let dir = TempDir::new("mtls");
    let control = Control::start(&dir.0, "control", &dir.join("data"), &[]);
    let api = control.client();
    apply(&api, MESH_STRICT).await;
    let inbound = free_port();
    let inbound_addr = SocketAddr::from(([127, 0, 0, 1], inbound));
    let pair = Pair::start(
        &dir,
        &control,
        &["app=server"],
        &["--inbound-port", &inbound.to_string()],
    )
    .await;
    let (server, client) = (&pair.server, &pair.client);

    // Start the capture, then send traffic between the sidecars.
    let capture = dir.join("between-sidecars.pcap");
    let mut tshark = Command::new("tshark")
        .args(["-i", "lo", "-f", &format!("tcp port {inbound}"), "-w"])
        .arg(&capture)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("tshark is needed by this test (scripts/test.sh installs it)");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut mesh = MeshClient::new(client.outbound);
    wait_served(
        &mut mesh,
        "http://server:9080/",
        &["server"],
        Duration::from_secs(10),
    )
    .await;
    for _ in 0..20 {
        let a = mesh
            .get("http://server:9080/secret-path")
            .await
            .expect("request");
        assert_eq!(a.status, 200, "{a:?}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(tshark.id() as i32).expect("pid"),
        rustix::process::Signal::INT,
    )
    .expect("stop tshark");
    tshark.wait().expect("tshark exits");

    // On the wire: TLS handshakes, application data, and no HTTP anywhere.
    let path = capture.to_str().expect("utf-8 path");
    // What tshark makes of the bytes on its own: TLS, and no HTTP however it looks.
    let summary = tool("tshark", &["-r", path]);
    assert_eq!(
        tool("tshark", &["-r", path, "-Y", "http"]).lines().count(),
        0,
        "no plaintext HTTP between the sidecars:\n{summary}"
    );
    let frames = |what: &str| summary.lines().filter(|l| l.contains(what)).count();
    assert!(frames("Client Hello") >= 1, "a ClientHello:\n{summary}");
    assert!(
        frames("TLSv1.3") >= 20 && frames("Application Data") >= 20,
        "TLS 1.3 application data:\n{summary}"
    );
    let raw = std::fs::read(&capture).expect("capture");
    assert!(
        !raw.windows(b"secret-path".len())
            .any(|w| w == b"secret-path"),
        "the request path never crosses in clear"
    );

    // Both sides: TLS 1.3 with X25519MLKEM768, the peers' identities verified.
    let server_metrics = metrics(server.admin).await;
    let client_metrics = metrics(client.admin).await;
    assert!(
        metric(
            &server_metrics,
            r#"weft_tls_handshake_negotiated_total{side="downstream",version="TLSv1.3",group="X25519MLKEM768"}"#
        ) >= 1.0,
        "{server_metrics}"
    );
    assert!(
        metric(
            &client_metrics,
            r#"weft_tls_handshake_negotiated_total{side="upstream",version="TLSv1.3",group="X25519MLKEM768"}"#
        ) >= 1.0,
        "{client_metrics}"
    );

    // STRICT: plaintext straight to the server's inbound port is refused.
    assert_eq!(
        plaintext_get(inbound_addr).await,
        None,
        "plaintext refused under STRICT"
    );

    // `weft describe` says so: mTLS from sidecars, outsiders refused, and why.
    let view = describe(&control, "server");
    assert!(
        view.contains("Identity: spiffe://cluster.local/ns/default/sa/server"),
        "{view}"
    );
    let inbound_row =
        |view: &str, words: &[&str]| view.lines().any(|l| words.iter().all(|w| l.contains(w)));
    assert!(
        inbound_row(
            &view,
            &["STRICT", "mTLS", "refused (STRICT)", "istio-system/default"]
        ),
        "{view}"
    );

    // A tool no one here wrote: TLS 1.3 only, no weak cipher.
    let scan = tool("sslscan", &["--no-colour", &inbound_addr.to_string()]);
    let enabled = |proto: &str| {
        scan.lines().any(|l| {
            let mut words = l.split_whitespace();
            words.next() == Some(proto) && words.next() == Some("enabled")
        })
    };
    assert!(enabled("TLSv1.3"), "{scan}");
    for old in ["SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1", "TLSv1.2"] {
        assert!(!enabled(old), "{old} enabled:\n{scan}");
    }
    for line in scan
        .lines()
        .filter(|l| l.starts_with("Preferred") || l.starts_with("Accepted"))
    {
        assert!(
            line.contains("TLSv1.3"),
            "a cipher outside TLS 1.3: {line}\n{scan}"
        );
    }

    // PERMISSIVE for this workload: plaintext and mTLS both served on the one port.
    apply(&api, SERVER_PERMISSIVE).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = plaintext_get(inbound_addr).await {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "plaintext never accepted under PERMISSIVE"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.contains(" 200 "), "{status}");
    let a = mesh.get("http://server:9080/").await.expect("request");
    assert_eq!(a.status, 200, "mTLS still served: {a:?}");
    let view = describe(&control, "server");
    assert!(
        inbound_row(
            &view,
            &["PERMISSIVE", "mTLS", "plaintext", "default/server"]
        ),
        "{view}"
    );
}
