//! The closed control plane, over real sockets: no API call, xDS stream or CSR without
//! a credential; join tokens bound to one identity; revocation; certificates that
//! carry the SPIFFE ID of the token and chain to the mesh's root; secrets sealed in
//! the store; an operator-supplied CA.

use hyper::{Method, StatusCode};
use rcgen::{CertificateParams, KeyPair, SanType};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::sync::Arc;
use std::time::Duration;
use weft_control::api::types::{CertificateRequest, RotationRequest, TokenCreated, TokenRequest};
use weft_control::ca::{CaStatus, Signed, Step, SuppliedCa, AUTHORITY};
use weft_control::client::{ApiClient, ClientError};
use weft_control::{Config, ControlPlane};
use weft_store::Store;
use weft_xds::client::{ClientConfig, Handler, Protocol, Update};
use weft_xds::pb::envoy::config::core::v3::Node;
use weft_xds::server::Subscription;
use weft_xds::type_url;
use x509_parser::prelude::*;

struct Plane {
    control: ControlPlane,
    admin: ApiClient,
    dir: tempfile::TempDir,
}

async fn start(configure: impl FnOnce(&mut Config)) -> Plane {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::new(dir.path().join("data"));
    config.xds_address = "127.0.0.1:0".parse().expect("address");
    config.api_address = "127.0.0.1:0".parse().expect("address");
    config.xds_tls_address = None;
    configure(&mut config);
    let control = ControlPlane::start(config).await.expect("control plane");
    let admin = ApiClient::new(
        &[control.api_address.to_string()],
        Some(
            control
                .admin_token
                .clone()
                .expect("the first start makes an admin token"),
        ),
    );
    Plane {
        control,
        admin,
        dir,
    }
}

impl Plane {
    fn as_caller(&self, token: Option<&str>) -> ApiClient {
        ApiClient::new(
            &[self.control.api_address.to_string()],
            token.map(str::to_string),
        )
    }

    async fn join_token(&self, service: &str) -> TokenCreated {
        self.admin
            .json(
                Method::POST,
                "/api/v1/tokens",
                Some(&TokenRequest {
                    service: service.into(),
                    namespace: None,
                    ttl_seconds: None,
                }),
            )
            .await
            .expect("a join token")
    }
}

fn status(r: Result<impl std::fmt::Debug, ClientError>) -> StatusCode {
    match r {
        Err(ClientError::Api { status, .. }) => status,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn csr(sans: &[&str]) -> (String, KeyPair) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans
        .iter()
        .map(|s| SanType::URI((*s).try_into().expect("IA5")))
        .collect();
    let csr = params.serialize_request(&key).expect("CSR");
    (csr.pem().expect("PEM"), key)
}

async fn sign(client: &ApiClient, csr: String) -> Result<Signed, ClientError> {
    client
        .json(
            Method::POST,
            "/api/v1/certificates",
            Some(&CertificateRequest {
                csr,
                ttl_seconds: Some(600),
                service: None,
                namespace: None,
            }),
        )
        .await
}

#[tokio::test]
async fn the_api_refuses_callers_without_a_valid_credential() {
    let p = start(|_| {}).await;
    for token in [None, Some("garbage"), Some("a.b.c")] {
        let r = p
            .as_caller(token)
            .json::<serde_json::Value>(Method::GET, "/api/v1/services", None::<&()>)
            .await;
        assert_eq!(status(r), StatusCode::UNAUTHORIZED, "token {token:?}");
    }
    // Every route but readiness and metrics is closed, whatever it would return.
    for path in [
        "/api/v1/resources/VirtualService",
        "/api/v1/proxies",
        "/api/v1/tokens",
        "/api/v1/ca/roots",
        "/nowhere",
    ] {
        let r = p.as_caller(None).call(Method::GET, path, None).await;
        assert_eq!(status(r), StatusCode::UNAUTHORIZED, "{path}");
    }
    let r = p.as_caller(None).call(Method::GET, "/ready", None).await;
    assert!(r.is_ok());

    // A join token does what a sidecar needs and nothing else.
    let join = p.join_token("reviews").await;
    let sidecar = p.as_caller(Some(&join.token));
    for (method, path) in [
        (Method::GET, "/api/v1/services"),
        (Method::POST, "/api/v1/tokens"),
        (Method::GET, "/api/v1/tokens"),
    ] {
        let r = sidecar.call(method, path, Some(b"{}".to_vec())).await;
        assert_eq!(status(r), StatusCode::FORBIDDEN, "{path}");
    }
    let r = sidecar
        .call(
            Method::PUT,
            "/api/v1/registry/default/ratings/x/health",
            Some(br#"{"healthy":true}"#.to_vec()),
        )
        .await;
    assert_eq!(status(r), StatusCode::FORBIDDEN, "another service's health");
    assert!(sidecar
        .call(Method::GET, "/api/v1/ca/roots", None)
        .await
        .is_ok());
    let metrics = p
        .admin
        .call(Method::GET, "/metrics", None)
        .await
        .expect("metrics");
    assert!(String::from_utf8_lossy(&metrics).contains("weft_control_auth_failures_total"));
}

#[tokio::test]
async fn certificates_carry_the_tokens_identity_only() {
    let p = start(|_| {}).await;
    let join = p.join_token("reviews").await;
    assert_eq!(
        join.spiffe_id,
        "spiffe://cluster.local/ns/default/sa/reviews"
    );
    let sidecar = p.as_caller(Some(&join.token));

    // A CSR without SANs, or with its own identity, is signed for that identity.
    for sans in [&[][..], &[join.spiffe_id.as_str()][..]] {
        let (pem, _key) = csr(sans);
        let signed = sign(&sidecar, pem).await.expect("signed");
        assert_eq!(signed.spiffe_id, join.spiffe_id);
        let leaf = CertificateDer::from_pem_slice(signed.chain[0].as_bytes()).expect("PEM");
        let (_, cert) = X509Certificate::from_der(&leaf).expect("X.509");
        let uris: Vec<String> = cert
            .subject_alternative_name()
            .expect("SAN")
            .expect("present")
            .value
            .general_names
            .iter()
            .map(|n| format!("{n}"))
            .collect();
        assert_eq!(uris, [format!("URI({})", join.spiffe_id)]);
        assert!(!cert.is_ca());
        let eku = cert
            .extended_key_usage()
            .expect("EKU")
            .expect("present")
            .value;
        assert!(eku.client_auth && eku.server_auth);
        let lifetime =
            cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert!(
            (600..=700).contains(&lifetime),
            "asked for 10 minutes: {lifetime}s"
        );
        // It chains to the mesh's root.
        let root = CertificateDer::from_pem_slice(signed.roots[0].as_bytes()).expect("PEM");
        let (_, root) = X509Certificate::from_der(&root).expect("X.509");
        cert.verify_signature(Some(root.public_key()))
            .expect("signed by the root");
    }

    // A CSR for another identity is refused, and so is garbage.
    let (pem, _) = csr(&["spiffe://cluster.local/ns/default/sa/ratings"]);
    assert_eq!(status(sign(&sidecar, pem).await), StatusCode::FORBIDDEN);
    assert_eq!(
        status(sign(&sidecar, "not a CSR".into()).await),
        StatusCode::BAD_REQUEST
    );
    // No credential, no certificate; a revoked token neither.
    let (pem, _) = csr(&[]);
    assert_eq!(
        status(sign(&p.as_caller(None), pem.clone()).await),
        StatusCode::UNAUTHORIZED
    );
    p.admin
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{}", join.record.id),
            None,
        )
        .await
        .expect("revoked");
    assert_eq!(status(sign(&sidecar, pem).await), StatusCode::UNAUTHORIZED);
}

/// Records whether anything arrived.
#[derive(Clone, Default)]
struct Got(Arc<std::sync::atomic::AtomicBool>);

impl Handler for Got {
    fn apply(&mut self, _: &str, _: Update) -> Result<(), String> {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
    fn subscriptions(&self) -> Vec<(&'static str, Subscription)> {
        vec![(type_url::CLUSTER, Subscription::Wildcard)]
    }
}

/// Whether an xDS client with `token`, claiming to be `service`, gets configuration.
async fn xds_served(p: &Plane, token: Option<String>, service: &str) -> bool {
    let mut node = Node {
        id: format!("{service}-1.default"),
        ..Default::default()
    };
    node.metadata = Some(weft_xds::pb::google::protobuf::Struct {
        fields: [("WEFT_SERVICE", service), ("WEFT_NAMESPACE", "default")]
            .into_iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    weft_xds::pb::google::protobuf::Value {
                        kind: Some(weft_xds::pb::google::protobuf::value::Kind::StringValue(
                            v.to_string(),
                        )),
                    },
                )
            })
            .collect(),
    });
    let got = Got::default();
    let client = tokio::spawn(weft_xds::client::run(
        ClientConfig {
            endpoints: vec![format!("http://{}", p.control.xds_address)],
            node,
            protocol: Protocol::Sotw,
            token,
            max_backoff: Duration::from_millis(200),
        },
        got.clone(),
    ));
    let mut served = false;
    for _ in 0..40 {
        if got.0.load(std::sync::atomic::Ordering::Relaxed) {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    client.abort();
    served
}

#[tokio::test]
async fn xds_needs_a_token_for_the_identity_the_node_claims() {
    let p = start(|_| {}).await;
    let join = p.join_token("reviews").await;
    assert!(xds_served(&p, Some(join.token.clone()), "reviews").await);
    assert!(!xds_served(&p, None, "reviews").await, "no token");
    assert!(
        !xds_served(&p, Some("x.y.z".into()), "reviews").await,
        "forged"
    );
    assert!(
        !xds_served(&p, Some(join.token.clone()), "ratings").await,
        "a token for reviews claiming to be ratings"
    );
    p.admin
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{}", join.record.id),
            None,
        )
        .await
        .expect("revoked");
    assert!(
        !xds_served(&p, Some(join.token), "reviews").await,
        "revoked"
    );
}

#[tokio::test]
async fn secrets_are_sealed_and_a_supplied_ca_signs() {
    // The operator's CA: a root and an intermediate that signs.
    let dir = tempfile::tempdir().expect("temp dir");
    let root_key = KeyPair::generate().expect("key");
    let mut root = CertificateParams::new(Vec::<String>::new()).expect("params");
    root.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let root_cert = root.self_signed(&root_key).expect("root");
    let root_issuer = rcgen::Issuer::new(root, root_key);
    let mid_key = KeyPair::generate().expect("key");
    let mut mid = CertificateParams::new(Vec::<String>::new()).expect("params");
    mid.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let mid_cert = mid.signed_by(&mid_key, &root_issuer).expect("intermediate");
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let ca = SuppliedCa {
        cert: write("ca-cert.pem", mid_cert.pem()),
        key: write("ca-key.pem", mid_key.serialize_pem()),
        chain: Some(write("cert-chain.pem", root_cert.pem())),
    };
    let seal = write("seal.key", "ab".repeat(32));
    let p = start(|c| {
        c.ca = Some(ca);
        c.seal_key = Some(seal);
    })
    .await;
    let join = p.join_token("reviews").await;
    let (pem, _) = csr(&[]);
    let signed = sign(&p.as_caller(Some(&join.token)), pem)
        .await
        .expect("signed");
    assert_eq!(signed.chain.len(), 2, "the leaf and the intermediate");
    assert_eq!(signed.roots, [root_cert.pem()], "trust the operator's root");

    // What the store holds shows no key (read once the replica has let go of it).
    p.control.shutdown().await;
    let store = weft_store::redb::RedbStore::open(p.dir.path().join("data").join("store.redb"))
        .expect("the store");
    for key in [AUTHORITY, weft_control::auth::SIGNING_KEY] {
        let value = store.get(key).await.expect("get").expect("present").value;
        assert!(
            !String::from_utf8_lossy(&value).contains("PRIVATE KEY")
                && value.starts_with(b"weft-sealed-v1:"),
            "{key} is sealed"
        );
    }
}

async fn rotate(client: &ApiClient, step: Step, force: bool) -> Result<CaStatus, ClientError> {
    let request = RotationRequest {
        step,
        force,
        ca: None,
    };
    client
        .json(Method::POST, "/api/v1/ca/rotation", Some(&request))
        .await
}

#[tokio::test]
async fn root_rotation_steps_in_order_and_only_for_admins() {
    let p = start(|c| c.bundle_refresh = Duration::from_secs(60)).await;
    let workload = p.as_caller(Some(&p.join_token("reviews").await.token));
    let first: CaStatus = workload
        .json(Method::GET, "/api/v1/ca", None::<&()>)
        .await
        .expect("a workload reads the bundle");
    assert_eq!(first.roots.len(), 1);
    assert!(first.roots[0].signing);
    assert_eq!(
        status(rotate(&workload, Step::Prepare, false).await),
        StatusCode::FORBIDDEN,
        "a workload may not rotate the root"
    );

    // Out of order: nothing to activate; then activate and finish wait unless forced.
    assert_eq!(
        status(rotate(&p.admin, Step::Activate, false).await),
        StatusCode::CONFLICT
    );
    let prepared = rotate(&p.admin, Step::Prepare, false)
        .await
        .expect("prepare");
    assert_eq!(prepared.roots.len(), 2);
    assert!(prepared.roots[1].pending && !prepared.roots[1].signing);
    let since = prepared.pending_since.expect("a rotation under way");
    assert_eq!(
        prepared.activate_from,
        Some(since + 120),
        "two 60 s refreshes"
    );
    assert_eq!(prepared.finish_from, None);
    assert_eq!(
        status(rotate(&p.admin, Step::Prepare, false).await),
        StatusCode::CONFLICT,
        "one rotation at a time"
    );
    assert_eq!(
        status(rotate(&p.admin, Step::Activate, false).await),
        StatusCode::CONFLICT,
        "sidecars have not had two refresh periods"
    );
    assert_eq!(
        status(rotate(&p.admin, Step::Finish, false).await),
        StatusCode::CONFLICT,
        "the new root does not sign yet"
    );
    let active = rotate(&p.admin, Step::Activate, true)
        .await
        .expect("forced");
    assert!(active.roots[1].signing && !active.roots[0].signing);
    assert_eq!(active.activate_from, None);
    assert_eq!(
        active.finish_from,
        Some(active.signing_since + active.workload_ttl_seconds + 5)
    );

    // New certificates chain to the new root; the old one is still trusted.
    let (request, _key) = csr(&[]);
    let signed = sign(&workload, request).await.expect("signed");
    assert_eq!(signed.root, active.roots[1].pem);
    assert_eq!(signed.roots.len(), 2);
    assert_eq!(
        status(rotate(&p.admin, Step::Finish, false).await),
        StatusCode::CONFLICT,
        "certificates of the old root are still valid"
    );
    let done = rotate(&p.admin, Step::Finish, true).await.expect("forced");
    assert_eq!(done.roots.len(), 1);
    assert_eq!(done.finish_from, None);
    assert_eq!(done.roots[0].pem, active.roots[1].pem);
}
