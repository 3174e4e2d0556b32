//! RequestAuthentication and AuthorizationPolicy `requestPrincipals` end to end, after
//! Istio's "Authorization with JWT" task: the server's sidecar verifies tokens with keys
//! it fetches from a JWKS served by another service of the mesh (through that
//! service's sidecar, over mTLS); an invalid token gets 401, a missing one passes until
//! a policy requires a principal, then only the right subject (and claim) gets in.

mod support;

use serde_json::json;
use std::time::Duration;
use support::*;
use weft_test::jwt::{jwks, now, Issuer, JwksServer};

const ISSUER: &str = "testing@secure.istio.io";

fn request_authentication() -> String {
    format!(
        r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: jwt-example
  namespace: default
spec:
  selector:
    matchLabels:
      app: server
  jwtRules:
  - issuer: "{ISSUER}"
    jwksUri: "http://jwks.default.svc.cluster.local:9080/jwks.json"
"#
    )
}

fn require_principal() -> String {
    format!(
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: require-jwt
  namespace: default
spec:
  selector:
    matchLabels:
      app: server
  action: ALLOW
  rules:
  - from:
    - source:
        requestPrincipals: ["{ISSUER}/{ISSUER}"]
"#
    )
}

fn require_group() -> String {
    format!(
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: require-jwt
  namespace: default
spec:
  selector:
    matchLabels:
      app: server
  action: ALLOW
  rules:
  - from:
    - source:
        requestPrincipals: ["{ISSUER}/*"]
    when:
    - key: request.auth.claims[groups]
      values: ["group1"]
"#
    )
}

async fn call(client: &Sidecar, token: Option<&str>) -> (u16, String) {
    let mut mesh = MeshClient::new(client.outbound);
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .as_deref()
        .map(|b| vec![("authorization", b)])
        .unwrap_or_default();
    let a = mesh
        .request("http://server:9080/headers", &headers)
        .await
        .expect("an answer");
    (a.status, a.body)
}

/// Waits until `token` gets `status` (a new configuration reaches the sidecar).
async fn wait_status(client: &Sidecar, token: Option<&str>, status: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = call(client, token).await;
        if got.0 == status {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expected {status}, still {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_from_a_jwks_in_the_mesh_and_request_principals() {
    let dir = TempDir::new("request-authn");
    let control = Control::start(&dir.0, "control", &dir.join("data"), &[]);
    let api = control.client();
    let issuer = Issuer::rsa(ISSUER, "key-1");
    let stranger = Issuer::rsa(ISSUER, "key-2");
    let keys = JwksServer::start(jwks(&[&issuer])).await;
    let jwks_sidecar = sidecar(
        &dir.0,
        "jwks",
        "jwks",
        &[],
        keys.addr.port(),
        &[&control],
        &[],
    );
    let pair = Pair::start(&dir, &control, &["app=server"], &[]).await;
    let (server, client) = (&pair.server, &pair.client);
    wait_healthy(&api, "jwks", 1, Duration::from_secs(20)).await;
    assert_eq!(call(client, None).await.0, 200);

    apply(&api, &request_authentication()).await;
    wait_config(server.admin, "jwt_authn", Duration::from_secs(10)).await;
    let good = issuer.token(ISSUER, "any");

    // Invalid tokens are refused; a valid one and none at all pass.
    wait_status(client, Some("not.a.token"), 401).await;
    assert_eq!(call(client, None).await.0, 200, "no token: allowed");
    let (status, body) = call(client, Some(&good)).await;
    assert_eq!(status, 200, "{body}");
    assert!(keys.hits() >= 1, "the keys came from the JWKS service");
    assert_eq!(
        call(client, Some(&stranger.token(ISSUER, "any"))).await.0,
        401,
        "a key the JWKS does not hold"
    );
    let expired = issuer.sign(json!({"iss": ISSUER, "sub": ISSUER, "exp": now() - 600}));
    assert_eq!(call(client, Some(&expired)).await.0, 401, "expired");
    assert!(
        !body.to_ascii_lowercase().contains("authorization"),
        "the token is not forwarded to the application: {body}"
    );

    // A policy requires the principal ISSUER/ISSUER.
    apply(&api, &require_principal()).await;
    wait_status(client, None, 403).await;
    assert_eq!(call(client, Some(&good)).await.0, 200);
    assert_eq!(
        call(client, Some(&issuer.token("someone-else", "any")))
            .await
            .0,
        403,
        "another subject"
    );

    // A claim condition: group1 in the groups claim.
    apply(&api, &require_group()).await;
    let grouped = issuer.sign(json!({
        "iss": ISSUER, "sub": "anyone", "exp": now() + 600, "groups": ["group1", "group2"]
    }));
    wait_status(client, Some(&good), 403).await;
    assert_eq!(call(client, Some(&grouped)).await.0, 200, "group1 member");
    drop(jwks_sidecar);
}
