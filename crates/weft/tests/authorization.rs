//! AuthorizationPolicy end to end, with the examples of Istio's documentation: deny
//! all, allow GET on one path from one principal, deny a header value. Callers are
//! sidecars with their own identities (certificates from the control plane's CA);
//! the server's sidecar decides and answers 403 `RBAC: access denied`.
//!
//! The same callers serve every phase: a policy applied now governs the connections
//! the sidecars already keep open to each other (the server accepts no new one).

mod support;

use std::time::Duration;
use support::*;
use weft_test::proxy::admin_metrics;
use weft_test::Upstream;

const DENY_ALL: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-nothing
  namespace: default
spec: {}
"#;

const ALLOW_GET_INFO_FROM_SLEEP: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-get
  namespace: default
spec:
  selector:
    matchLabels:
      app: server
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/sleep"]
    to:
    - operation:
        methods: ["GET"]
        paths: ["/info*"]
"#;

const DENY_GUEST: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-guest
  namespace: default
spec:
  selector:
    matchLabels:
      app: server
  action: DENY
  rules:
  - when:
    - key: request.headers[x-token]
      values: ["guest"]
"#;

async fn status(client: &Sidecar, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut mesh = MeshClient::new(client.outbound);
    let a = mesh
        .request(&format!("http://server:9080{path}"), headers)
        .await
        .expect("an answer");
    (a.status, a.body)
}

/// Connections the sidecar's inbound listeners have accepted.
async fn inbound_connections(sidecar: &Sidecar) -> f64 {
    admin_metrics(sidecar.admin)
        .await
        .lines()
        .filter(|l| l.starts_with("weft_listener_downstream_cx_total{listener=\"inbound|"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_documentation_examples_behave_as_documented() {
    let dir = TempDir::new("authz");
    let control = Control::start(&dir.0, "control", &dir.join("data"), &[]);
    let api = control.client();
    let server_app = Upstream::start("server").await;
    let client_app = Upstream::start("client").await;
    let server = sidecar(
        &dir.0,
        "server",
        "server",
        &["app=server"],
        server_app.addr.port(),
        &[&control],
        &[],
    );
    let caller = |name: &str, service: &str| {
        sidecar(
            &dir.0,
            name,
            service,
            &[],
            client_app.addr.port(),
            &[&control],
            &[],
        )
    };
    let (sleep, other) = (caller("sleep", "sleep"), caller("other", "other"));
    wait_healthy(&api, "server", 1, Duration::from_secs(20)).await;
    for s in [&sleep, &other] {
        s.ready(Duration::from_secs(10)).await;
        wait_config(s.admin, "sa/server", Duration::from_secs(10)).await;
    }
    // Open the connections every phase reuses.
    assert_eq!(status(&sleep, "/info", &[]).await.0, 200);
    assert_eq!(status(&other, "/info", &[]).await.0, 200);
    let opened = inbound_connections(&server).await;
    assert!(opened > 0.0);

    // Deny all: an ALLOW policy without rules matches nothing.
    apply(&api, DENY_ALL).await;
    wait_config(
        server.admin,
        "envoy.extensions.filters.http.rbac.v3.RBAC",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        status(&sleep, "/info", &[]).await,
        (403, "RBAC: access denied".to_string())
    );

    // ALLOW GET /info* from sleep only.
    delete(&api, DENY_ALL).await;
    apply(&api, ALLOW_GET_INFO_FROM_SLEEP).await;
    wait_config(server.admin, "policy[allow-get]", Duration::from_secs(10)).await;
    assert_eq!(
        status(&sleep, "/info/1", &[]).await.0,
        200,
        "sleep may GET /info*"
    );
    assert_eq!(
        status(&sleep, "/admin", &[]).await.0,
        403,
        "not another path"
    );
    assert_eq!(
        status(&other, "/info/1", &[]).await.0,
        403,
        "not another principal"
    );
    let view = describe(&control, "server");
    assert!(
        view.lines()
            .any(|l| l.contains("default/allow-get") && l.contains("deny unless an ALLOW matches")),
        "weft describe shows the ALLOW policy:\n{view}"
    );

    // DENY a header value; everything else passes.
    delete(&api, ALLOW_GET_INFO_FROM_SLEEP).await;
    apply(&api, DENY_GUEST).await;
    wait_config(server.admin, "policy[deny-guest]", Duration::from_secs(10)).await;
    assert_eq!(status(&sleep, "/admin", &[]).await.0, 200);
    assert_eq!(
        status(&sleep, "/admin", &[("x-token", "guest")]).await,
        (403, "RBAC: access denied".to_string())
    );
    assert_eq!(
        status(&sleep, "/admin", &[("x-token", "admin")]).await.0,
        200
    );
    assert_eq!(
        inbound_connections(&server).await,
        opened,
        "every phase ran on the connections opened before the first policy"
    );
}
