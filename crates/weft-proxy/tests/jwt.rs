//! Envoy's JWT filter over real sockets: RS256 and ES256 tokens from keys made here,
//! where tokens are taken from and what reaches the app, Envoy's refusals (status,
//! body, challenge, access-log details, metrics), Istio's `[provider, allow_missing]`
//! requirement, keys fetched through a cluster from a real HTTP server, and the filter
//! feeding RBAC's metadata principals as Istio's `requestPrincipals` and
//! `request.auth.claims` conditions need.

mod common;

use bytes::Bytes;
use common::{log_path, read_log};
use http_body_util::Full;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use weft_proxy::{Proxy, ProxyOptions};
use weft_test::jwt::{jwks, now, Issuer, JwksServer};
use weft_test::proxy::{admin_metrics, metric, send, Reply};
use weft_test::{runtime, TestProxy, Upstream};

const JWT_AUTHN: &str =
    "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication";
const HTTP_RBAC: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
const LOG_FORMAT: &str = "%RESPONSE_CODE% %RESPONSE_CODE_DETAILS% %REQ(:PATH)%\\n";
const ISS: &str = "https://issuer.example.com";
const AUD: &str = "orders.example.com";

// ---- configuration ----

/// An HTTP filter list item named `name` with `config` (JSON is YAML) as typed_config.
fn filter(name: &str, type_url: &str, config: Value) -> String {
    let mut config = config;
    config["@type"] = json!(type_url);
    format!("          - name: {name}\n            typed_config: {config}\n")
}

/// The JWT filter with `config`.
fn jwt_filter(config: Value) -> String {
    filter("envoy.filters.http.jwt_authn", JWT_AUTHN, config)
}

/// A provider for `issuer`, its key inline, with `extra` fields.
fn provider(issuer: &Issuer, extra: Value) -> Value {
    let mut p = json!({"issuer": issuer.iss, "local_jwks": {"inline_string": jwks(&[issuer])}});
    if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
        p.extend(extra.clone());
    }
    p
}

/// Istio's rule for a RequestAuthentication: every path, a token of `provider` if one
/// is sent.
fn istio_rule(provider: &str) -> Value {
    json!({"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": [
        {"provider_name": provider}, {"allow_missing": {}}]}}})
}

/// A listener `http` (stat prefix `ingress`) running `filters` then the router, every
/// path routed to the cluster `app`, access-logged to `log`; `clusters` added.
fn bootstrap(filters: &str, app: SocketAddr, clusters: &str, log: &Path) -> String {
    let clusters = format!("{}{clusters}", common::cluster("app", &[app], ""));
    let vhosts = common::route_all("app", "");
    common::filtered_http_bootstrap(filters, &vhosts, "", &clusters, log, LOG_FORMAT)
}

// ---- clients ----

/// `GET path` on `svc` with `headers`.
async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut b = http::Request::get(format!("http://{addr}{path}")).header("host", "svc");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(b.body(Full::new(Bytes::new())).expect("request")).await
}

/// `GET path` with `Authorization: Bearer token`.
async fn bearer(addr: SocketAddr, path: &str, token: &str) -> Reply {
    get(addr, path, &[("authorization", &format!("Bearer {token}"))]).await
}

/// What the app received: its request headers.
fn received(r: &Reply) -> Value {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers["x-upstream"], "app");
    r.json()["headers"].clone()
}

/// A refusal as Envoy words it; `invalid_token` unless the token was missing.
fn assert_refused(r: &Reply, status: u16, body: &str, path: &str) {
    assert_eq!((r.status, r.text().as_str()), (status, body));
    let mut challenge = format!("Bearer realm=\"http://svc{path}\"");
    if body != "Jwt is missing" {
        challenge.push_str(", error=\"invalid_token\"");
    }
    assert_eq!(r.headers["www-authenticate"], challenge.as_str(), "{body}");
}

fn jwt_metric(text: &str, series: &str) -> f64 {
    metric(text, &format!("weft_jwt_authn_{series}"))
}

// ---- tests ----

#[test]
fn rs256_and_es256_tokens_reach_the_app_without_their_token() {
    let rt = runtime();
    let app = rt.block_on(Upstream::start("app"));
    let (rsa, ec) = (
        Issuer::rsa(ISS, "rsa-1"),
        Issuer::ec("https://ec.example.com", "ec-1"),
    );
    let config = json!({
        "providers": {
            "rsa": provider(&rsa, json!({"audiences": [AUD], "forward_payload_header": "x-jwt-payload"})),
            "ec": provider(&ec, json!({"forward": true, "from_headers": [{"name": "x-ec-token"}]})),
        },
        "rules": [
            {"match": {"prefix": "/ec"}, "requires": {"provider_name": "ec"}},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "rsa"}},
        ],
    });
    let log = log_path("jwt", "pass");
    let proxy = TestProxy::start(&bootstrap(&jwt_filter(config), app.addr, "", &log), 1);
    let addr = proxy.addr("http");
    rt.block_on(async {
        let token = rsa.token("alice", AUD);
        let forged_payload = ("x-jwt-payload", "eyJzdWIiOiJyb290In0");
        let auth = format!("Bearer {token}");
        let r = get(addr, "/orders", &[("authorization", &auth), forged_payload]).await;
        let headers = received(&r);
        assert!(headers.get("authorization").is_none(), "{headers}");
        // The payload header carries the verified payload, never the client's.
        let payload = headers["x-jwt-payload"].as_str().expect("payload header");
        assert_eq!(payload, token.split('.').nth(1).expect("payload part"));

        // ES256 from its own header, kept because the provider forwards it.
        let ec_token = ec.token("bob", "anything");
        let r = get(addr, "/ec/x", &[("x-ec-token", &ec_token)]).await;
        assert_eq!(received(&r)["x-ec-token"], ec_token.as_str());
        // Each rule takes its own provider's tokens only.
        let r = bearer(addr, "/ec/x", &token).await;
        assert_refused(&r, 401, "Jwt is missing", "/ec/x");

        let m = admin_metrics(proxy.admin()).await;
        assert_eq!(
            jwt_metric(&m, r#"allowed_total{stat_prefix="ingress"}"#),
            2.0,
            "{m}"
        );
        assert_eq!(
            jwt_metric(
                &m,
                r#"denied_total{stat_prefix="ingress",reason="missing"}"#
            ),
            1.0,
            "{m}"
        );
    });
    assert_eq!(app.request_count(), 2);
    let lines = read_log(&log, 3);
    assert!(
        lines.contains(&"401 jwt_authn_access_denied{Jwt_is_missing} /ec/x".to_string()),
        "{lines:?}"
    );
}

#[test]
fn tokens_in_the_access_token_parameter_are_read_by_default() {
    let rt = runtime();
    let app = rt.block_on(Upstream::start("app"));
    let rsa = Issuer::rsa(ISS, "k");
    let config = json!({
        "providers": {"p": provider(&rsa, json!({}))},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}],
    });
    let log = log_path("jwt", "param");
    let proxy = TestProxy::start(&bootstrap(&jwt_filter(config), app.addr, "", &log), 1);
    let addr = proxy.addr("http");
    rt.block_on(async {
        let path = format!("/items?x=1&access_token={}", rsa.token("alice", AUD));
        let r = get(addr, &path, &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        // As in Envoy, a token in the query is left where it is.
        assert_eq!(r.json()["path"], path.as_str());
        let r = get(addr, "/items?access_token=nope", &[]).await;
        assert_refused(
            &r,
            401,
            "Jwt is not in the form of Header.Payload.Signature",
            "/items?access_token=nope",
        );
    });
}

#[test]
fn bad_tokens_are_refused_with_envoys_reasons() {
    let rt = runtime();
    let app = rt.block_on(Upstream::start("app"));
    let rsa = Issuer::rsa(ISS, "k");
    let stranger = Issuer::rsa("https://stranger.example.com", "k");
    let impostor = Issuer::rsa(ISS, "k");
    let config = json!({
        "providers": {"p": provider(&rsa, json!({"audiences": [AUD]}))},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}],
    });
    let log = log_path("jwt", "bad");
    let proxy = TestProxy::start(&bootstrap(&jwt_filter(config), app.addr, "", &log), 1);
    let addr = proxy.addr("http");
    rt.block_on(async {
        let t = now();
        let cases = [
            (
                rsa.sign(json!({"sub": "a", "aud": AUD, "exp": t - 120})),
                401,
                "Jwt is expired",
            ),
            (
                rsa.sign(json!({"sub": "a", "aud": AUD, "nbf": t + 120})),
                401,
                "Jwt not yet valid",
            ),
            (
                stranger.token("a", AUD),
                401,
                "Jwt issuer is not configured",
            ),
            // Envoy answers a token for another audience 403, not 401.
            (
                rsa.token("a", "payments.example.com"),
                403,
                "Audiences in Jwt are not allowed",
            ),
            (impostor.token("a", AUD), 401, "Jwt verification fails"),
            (
                "a.b".to_string(),
                401,
                "Jwt is not in the form of Header.Payload.Signature",
            ),
        ];
        for (token, status, body) in &cases {
            assert_refused(
                &bearer(addr, "/orders/1", token).await,
                *status,
                body,
                "/orders/1",
            );
        }
        // A signature altered by one bit.
        let good = rsa.token("a", AUD);
        let (signed, sig) = good.rsplit_once('.').expect("three parts");
        let mut sig = sig.as_bytes().to_vec();
        sig[10] = if sig[10] == b'A' { b'B' } else { b'A' };
        let forged = format!("{signed}.{}", String::from_utf8(sig).expect("ascii"));
        assert_refused(
            &bearer(addr, "/o", &forged).await,
            401,
            "Jwt verification fails",
            "/o",
        );
        // No token where a provider is required.
        assert_refused(&get(addr, "/o", &[]).await, 401, "Jwt is missing", "/o");
        // A gRPC caller gets UNAUTHENTICATED.
        let grpc = send(
            http::Request::post(format!("http://{addr}/pkg.Svc/Call"))
                .header("host", "svc")
                .header("content-type", "application/grpc")
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await;
        assert_eq!(grpc.status, 200);
        assert_eq!(grpc.headers["grpc-status"], "16");
        assert_eq!(grpc.headers["grpc-message"], "Jwt is missing");
        assert_eq!(bearer(addr, "/o", &good).await.status, 200);

        let m = admin_metrics(proxy.admin()).await;
        for (reason, n) in [
            ("expired", 1.0),
            ("not_yet_valid", 1.0),
            ("issuer", 1.0),
            ("audience", 1.0),
            ("signature", 2.0),
            ("malformed", 1.0),
            ("missing", 2.0),
        ] {
            let series = format!(r#"denied_total{{stat_prefix="ingress",reason="{reason}"}}"#);
            assert_eq!(jwt_metric(&m, &series), n, "{reason}\n{m}");
        }
    });
    assert_eq!(
        app.request_count(),
        1,
        "only the good token reached the app"
    );
    let lines = read_log(&log, 10);
    for details in [
        "401 jwt_authn_access_denied{Jwt_is_expired} /orders/1",
        "403 jwt_authn_access_denied{Audiences_in_Jwt_are_not_allowed} /orders/1",
        "401 jwt_authn_access_denied{Jwt_verification_fails} /o",
    ] {
        assert!(lines.contains(&details.to_string()), "{details}: {lines:?}");
    }
}

#[test]
fn istio_requirement_lets_requests_without_a_token_through() {
    let rt = runtime();
    let app = rt.block_on(Upstream::start("app"));
    let rsa = Issuer::rsa(ISS, "k");
    let config = json!({
        "providers": {"origins-0": provider(&rsa, json!({"payload_in_metadata": ISS}))},
        "rules": [
            {"match": {"prefix": "/healthz"}},
            istio_rule("origins-0"),
        ],
        "bypass_cors_preflight": true,
    });
    let log = log_path("jwt", "istio");
    let proxy = TestProxy::start(&bootstrap(&jwt_filter(config), app.addr, "", &log), 1);
    let addr = proxy.addr("http");
    rt.block_on(async {
        assert_eq!(get(addr, "/", &[]).await.status, 200, "no token");
        assert_eq!(bearer(addr, "/", &rsa.token("a", AUD)).await.status, 200);
        let expired = rsa.sign(json!({"sub": "a", "exp": now() - 3600}));
        assert_refused(
            &bearer(addr, "/x", &expired).await,
            401,
            "Jwt is expired",
            "/x",
        );
        // A rule without a requirement checks nothing, bad tokens included.
        assert_eq!(bearer(addr, "/healthz", &expired).await.status, 200);
        // A CORS preflight carries no credentials and is let through.
        let preflight = send(
            http::Request::builder()
                .method("OPTIONS")
                .uri(format!("http://{addr}/x"))
                .header("host", "svc")
                .header("origin", "https://app.example.com")
                .header("access-control-request-method", "POST")
                .header("authorization", format!("Bearer {expired}"))
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await;
        assert_eq!(preflight.status, 200);
    });
}

#[test]
fn remote_keys_are_fetched_through_a_cluster_and_cached() {
    let rt = runtime();
    let app = rt.block_on(Upstream::start("app"));
    let rsa = Issuer::rsa(ISS, "k");
    let server = rt.block_on(JwksServer::start(jwks(&[&rsa])));
    let remote = |cluster: &str| {
        json!({"issuer": ISS, "remote_jwks": {
            "http_uri": {"uri": "http://keys.example.com/.well-known/jwks.json",
                         "cluster": cluster, "timeout": "1s"},
            "cache_duration": "1s"}})
    };
    let config = json!({
        "providers": {"remote": remote("jwks"), "nowhere": remote("closed")},
        "rules": [
            {"match": {"prefix": "/nowhere"}, "requires": {"provider_name": "nowhere"}},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "remote"}},
        ],
    });
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let clusters = format!(
        "{}{}",
        common::cluster("jwks", &[server.addr], ""),
        common::cluster("closed", &[closed], "")
    );
    let log = log_path("jwt", "remote");
    let proxy = TestProxy::start(
        &bootstrap(&jwt_filter(config), app.addr, &clusters, &log),
        1,
    );
    let addr = proxy.addr("http");
    rt.block_on(async {
        let token = rsa.token("alice", AUD);
        assert_eq!(server.hits(), 0, "fetched on first use, not at start");
        assert_eq!(bearer(addr, "/a", &token).await.status, 200);
        assert_eq!(bearer(addr, "/b", &token).await.status, 200);
        assert_eq!(server.hits(), 1, "cached");
        // After cache_duration the keys are fetched again; a failing server fails the
        // requests that need them.
        server.set(503, "unavailable");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let r = bearer(addr, "/c", &token).await;
        assert_refused(&r, 401, "Jwks remote fetch is failed", "/c");
        assert_eq!(server.hits(), 2);
        // A failure is remembered for a second: no fetch per request.
        let r = bearer(addr, "/d", &token).await;
        assert_refused(&r, 401, "Jwks remote fetch is failed", "/d");
        assert_eq!(server.hits(), 2);
        server.set(200, &jwks(&[&rsa]));
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(bearer(addr, "/e", &token).await.status, 200);
        assert_eq!(server.hits(), 3);
        // A key server nobody answers at.
        let r = bearer(addr, "/nowhere", &token).await;
        assert_refused(&r, 401, "Jwks remote fetch is failed", "/nowhere");
        // No token, no fetch.
        assert_refused(
            &get(addr, "/nowhere", &[]).await,
            401,
            "Jwt is missing",
            "/nowhere",
        );
    });
}

/// Istio's RBAC for `requestPrincipals: ["ISS/alice"]` on `/api`, and for
/// `request.auth.claims[groups]` containing `admins` on `/admin` (Istio's form that takes
/// a list claim or a string claim).
fn request_principal_rules() -> Value {
    let metadata = |keys: &[&str], value: Value| {
        json!({"metadata": {"filter": "istio_authn",
            "path": keys.iter().map(|k| json!({"key": k})).collect::<Vec<_>>(),
            "value": value}})
    };
    let exact = |s: &str| json!({"string_match": {"exact": s}});
    let principal = metadata(&["request.auth.principal"], exact(&format!("{ISS}/alice")));
    let admins = metadata(
        &["request.auth.claims", "groups"],
        json!({"or_match": {"value_matchers": [
            {"list_match": {"one_of": exact("admins")}}, exact("admins")]}}),
    );
    let authenticated = metadata(
        &["request.auth.principal"],
        json!({"string_match": {"safe_regex": {"regex": ".+"}}}),
    );
    let path = |p: &str| json!({"url_path": {"path": {"prefix": p}}});
    json!({"rules": {"action": "ALLOW", "policies": {
        "ns[default]-policy[api]-rule[0]": {"permissions": [path("/api")], "principals": [principal]},
        "ns[default]-policy[admin]-rule[0]": {"permissions": [path("/admin")],
            "principals": [{"and_ids": {"ids": [authenticated, admins]}}]},
    }}})
}

#[test]
fn request_principals_and_claims_are_enforced_by_rbac() {
    let rt = runtime();
    let app = rt.block_on(Upstream::start("app"));
    let rsa = Issuer::rsa(ISS, "k");
    let jwt = jwt_filter(json!({
        "providers": {"origins-0": provider(&rsa, json!({"payload_in_metadata": ISS}))},
        "rules": [istio_rule("origins-0")],
    }));
    let rbac = filter(
        "envoy.filters.http.rbac",
        HTTP_RBAC,
        request_principal_rules(),
    );
    let log = log_path("jwt", "principals");
    let proxy = TestProxy::start(&bootstrap(&format!("{jwt}{rbac}"), app.addr, "", &log), 1);
    let addr = proxy.addr("http");
    rt.block_on(async {
        let alice = rsa.token("alice", AUD);
        let bob = rsa.token("bob", AUD);
        assert_eq!(bearer(addr, "/api/orders", &alice).await.status, 200);
        let denied = bearer(addr, "/api/orders", &bob).await;
        assert_eq!(
            (denied.status, denied.text().as_str()),
            (403, "RBAC: access denied")
        );
        // No token passes the JWT filter, and the policy requires a principal.
        assert_eq!(get(addr, "/api/orders", &[]).await.status, 403);
        // Claims: a list claim and a string claim both satisfy Istio's matcher.
        let listed =
            rsa.sign(json!({"sub": "carol", "groups": ["dev", "admins"], "exp": now() + 60}));
        let single = rsa.sign(json!({"sub": "dave", "groups": "admins", "exp": now() + 60}));
        let other = rsa.sign(json!({"sub": "erin", "groups": ["dev"], "exp": now() + 60}));
        assert_eq!(bearer(addr, "/admin", &listed).await.status, 200);
        assert_eq!(bearer(addr, "/admin", &single).await.status, 200);
        assert_eq!(bearer(addr, "/admin", &other).await.status, 403);
        assert_eq!(bearer(addr, "/admin", &alice).await.status, 403);
    });
    assert_eq!(app.request_count(), 3);
    let lines = read_log(&log, 7);
    assert!(
        lines.contains(&"403 rbac_access_denied_matched_policy[none] /api/orders".to_string()),
        "{lines:?}"
    );
}

#[test]
fn filters_run_in_their_configured_order() {
    let rt = runtime();
    let app = rt.block_on(Upstream::start("app"));
    let rsa = Issuer::rsa(ISS, "k");
    let jwt = jwt_filter(json!({
        "providers": {"origins-0": provider(&rsa, json!({}))},
        "rules": [istio_rule("origins-0")],
    }));
    let rbac = filter(
        "envoy.filters.http.rbac",
        HTTP_RBAC,
        request_principal_rules(),
    );
    // RBAC first: nothing is known of the token yet, so alice is denied, and a bad
    // token is refused by RBAC before the JWT filter could say why.
    let log = log_path("jwt", "order");
    let proxy = TestProxy::start(&bootstrap(&format!("{rbac}{jwt}"), app.addr, "", &log), 1);
    let addr = proxy.addr("http");
    rt.block_on(async {
        let r = bearer(addr, "/api/orders", &rsa.token("alice", AUD)).await;
        assert_eq!((r.status, r.text().as_str()), (403, "RBAC: access denied"));
        let r = bearer(addr, "/api/orders", "x.y.z").await;
        assert_eq!((r.status, r.text().as_str()), (403, "RBAC: access denied"));
    });
    assert_eq!(app.request_count(), 0);
}

fn load_error(yaml: &str) -> String {
    let options = ProxyOptions {
        concurrency: 1,
        ..ProxyOptions::new("jwt-test.yaml")
    };
    match Proxy::from_text(&options, yaml) {
        Ok(_) => panic!("accepted:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn configuration_errors_name_their_path() {
    let app: SocketAddr = "127.0.0.1:9".parse().expect("address");
    let issuer = Issuer::ec(ISS, "k");
    let log = log_path("jwt", "errors");
    let at = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config";
    let cases = [
        (
            json!({"providers": {"p": provider(&issuer, json!({}))},
                   "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "q"}}]}),
            format!("{at}.rules[0].requires.provider_name: provider \"q\" is not configured"),
        ),
        (
            json!({"providers": {"p": {"issuer": ISS, "local_jwks": {"inline_string": "{\"keys\": []}"}}}}),
            format!("{at}.providers[\"p\"].local_jwks: the JWKS has no usable key"),
        ),
        (
            json!({"providers": {"p": {"issuer": ISS, "remote_jwks": {"http_uri": {
                "uri": "http://keys/jwks", "cluster": "missing", "timeout": "1s"}}}}}),
            format!("{at}.providers[\"p\"].remote_jwks.http_uri.cluster: cluster \"missing\" does not exist"),
        ),
        (
            json!({"providers": {"p": {"issuer": ISS}}}),
            format!("{at}.providers[\"p\"]: one of local_jwks or remote_jwks is required"),
        ),
        (
            json!({"providers": {"p": provider(&issuer, json!({"claim_to_headers": [
                {"header_name": "x-sub", "claim_name": "sub"}]}))}}),
            format!("{at}.providers[\"p\"].claim_to_headers: this field is not supported"),
        ),
        (
            json!({"providers": {"p": provider(&issuer, json!({}))},
                   "rules": [{"match": {"prefix": "/"}, "requirement_name": "r"}]}),
            format!("{at}.rules[0].requirement_name: requirement \"r\" is not in requirement_map"),
        ),
        (
            json!({"providers": {"p": provider(&issuer, json!({}))},
                   "rules": [{"match": {"prefix": "/"}, "requires": {"requires_any": {
                       "requirements": [{"provider_name": "p"}]}}}]}),
            format!("{at}.rules[0].requires.requires_any.requirements: at least two"),
        ),
    ];
    for (config, want) in cases {
        let err = load_error(&bootstrap(&jwt_filter(config), app, "", &log));
        assert!(err.contains(&want), "{want}\nnot in:\n{err}");
    }
}
