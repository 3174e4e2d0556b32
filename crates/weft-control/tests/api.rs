//! The control plane's REST API and xDS accounting, over real sockets: apply is all or
//! nothing with errors naming file, line and field; dry runs change nothing; get,
//! delete and describe; health reports; a NACK shows in the proxy status and metrics.

use hyper::{Method, StatusCode};
use std::collections::BTreeSet;
use std::time::Duration;
use weft_control::api::types::{
    Action, ChangeResponse, Document, DocumentsRequest, ResourceList, ServiceDescription,
};
use weft_control::client::{ApiClient, ClientError};
use weft_control::proxies::ProxyStatus;
use weft_control::{Config, ControlPlane};
use weft_xds::client::{ClientConfig, Handler, Protocol, Update};
use weft_xds::pb::envoy::config::core::v3::Node;
use weft_xds::server::Subscription;
use weft_xds::type_url;

struct Fixture {
    control: Option<ControlPlane>,
    api: ApiClient,
    dir: std::path::PathBuf,
}

impl Fixture {
    async fn start(name: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("weft-api-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut config = Config::new(dir.clone());
        config.xds_address = "127.0.0.1:0".parse().expect("address");
        config.api_address = "127.0.0.1:0".parse().expect("address");
        config.xds_tls_address = None;
        let control = ControlPlane::start(config).await.expect("control plane");
        let api = ApiClient::new(
            &[control.api_address.to_string()],
            control.admin_token.clone(),
        );
        Fixture {
            control: Some(control),
            api,
            dir,
        }
    }

    fn control(&self) -> &ControlPlane {
        self.control.as_ref().expect("running")
    }

    async fn apply(
        &self,
        source: &str,
        text: &str,
        query: &str,
    ) -> Result<ChangeResponse, ClientError> {
        let request = DocumentsRequest {
            documents: vec![Document {
                source: source.into(),
                text: text.into(),
            }],
        };
        self.api
            .json(
                Method::POST,
                &format!("/api/v1/apply{query}"),
                Some(&request),
            )
            .await
    }

    async fn list(&self, kind: &str) -> Vec<String> {
        let list: ResourceList = self
            .api
            .json(
                Method::GET,
                &format!("/api/v1/resources/{kind}?namespace=*"),
                None::<&()>,
            )
            .await
            .expect("list");
        list.items
            .iter()
            .map(|i| {
                format!(
                    "{}/{}",
                    i["metadata"]["namespace"].as_str().unwrap_or(""),
                    i["metadata"]["name"].as_str().unwrap_or("")
                )
            })
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Dropping the control plane aborts its tasks.
        self.control.take();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const GOOD: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: reviews
  namespace: shop
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
"#;

#[tokio::test]
async fn apply_is_all_or_nothing_and_names_the_error() {
    let f = Fixture::start("all-or-nothing").await;
    let bad = format!(
        "{GOOD}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: broken\nspec:\n  hosts: [ratings]\n  http:\n  - route:\n    - destination: {{host: ratings}}\n      weight: fifty\n"
    );
    let err = f.apply("shop.yaml", &bad, "").await.expect_err("refused");
    assert_eq!(err.status(), Some(StatusCode::UNPROCESSABLE_ENTITY));
    let ClientError::Api { body, .. } = &err else {
        panic!("{err}")
    };
    let detail = body.details.join("\n");
    assert!(detail.contains("shop.yaml:"), "{detail}");
    assert!(detail.contains("document 3"), "{detail}");
    assert!(detail.contains("spec.http[0].route[0].weight"), "{detail}");
    assert!(
        f.list("virtualservice").await.is_empty(),
        "nothing was applied"
    );
    assert!(
        f.list("destinationrule").await.is_empty(),
        "nothing was applied"
    );

    // Asked for, the valid documents land and the invalid one is reported.
    let partial = f
        .apply("shop.yaml", &bad, "?partial=true")
        .await
        .expect("partial");
    assert_eq!(partial.errors.len(), 1, "{partial:?}");
    assert_eq!(f.list("vs").await, ["shop/reviews"]);
}

#[tokio::test]
async fn dry_run_reports_and_changes_nothing() {
    let f = Fixture::start("dry-run").await;
    let first = f
        .apply("a.yaml", GOOD, "?dryRun=true")
        .await
        .expect("dry run");
    assert!(first.dry_run);
    assert!(first.results.iter().all(|c| c.action == Action::Created));
    assert!(f.list("virtualservices").await.is_empty());

    let applied = f.apply("a.yaml", GOOD, "").await.expect("apply");
    assert!(applied.revision > 0);
    let again = f.apply("a.yaml", GOOD, "").await.expect("apply again");
    assert!(
        again.results.iter().all(|c| c.action == Action::Unchanged),
        "{again:?}"
    );
    assert_eq!(again.revision, 0, "an unchanged apply writes nothing");

    let changed = GOOD.replace("subset: v1}", "subset: v1}\n    timeout: 3s");
    let preview = f
        .apply("a.yaml", &changed, "?dryRun=true")
        .await
        .expect("preview");
    let vs = preview
        .results
        .iter()
        .find(|c| c.kind == "VirtualService")
        .expect("vs");
    assert_eq!(vs.action, Action::Configured);
    assert!(
        vs.diff.contains("+ ") && vs.diff.contains("timeout: 3s"),
        "{}",
        vs.diff
    );
    let stored: serde_json::Value = f
        .api
        .json(
            Method::GET,
            "/api/v1/resources/vs/shop/reviews",
            None::<&()>,
        )
        .await
        .expect("get");
    assert!(
        stored["spec"]["http"][0].get("timeout").is_none(),
        "dry run wrote: {stored}"
    );
}

#[tokio::test]
async fn get_delete_and_unknown_kinds() {
    let f = Fixture::start("get-delete").await;
    f.apply("a.yaml", GOOD, "").await.expect("apply");
    let missing = f
        .api
        .json::<serde_json::Value>(
            Method::GET,
            "/api/v1/resources/vs/default/nope",
            None::<&()>,
        )
        .await
        .expect_err("404");
    assert_eq!(missing.status(), Some(StatusCode::NOT_FOUND));
    let unknown = f
        .api
        .json::<serde_json::Value>(Method::GET, "/api/v1/resources/pods", None::<&()>)
        .await
        .expect_err("400");
    assert_eq!(unknown.status(), Some(StatusCode::BAD_REQUEST));
    assert!(unknown.to_string().contains("known kinds"), "{unknown}");

    let deleted: ChangeResponse = f
        .api
        .json(
            Method::DELETE,
            "/api/v1/resources/destinationrule/default/reviews",
            None::<&()>,
        )
        .await
        .expect("delete");
    assert_eq!(deleted.results[0].action, Action::Deleted);
    assert!(f.list("dr").await.is_empty());
    let again = f
        .api
        .json::<ChangeResponse>(
            Method::DELETE,
            "/api/v1/resources/dr/default/reviews",
            None::<&()>,
        )
        .await
        .expect_err("already gone");
    assert_eq!(again.status(), Some(StatusCode::NOT_FOUND));
}

/// A proxy that rejects every cluster it is sent.
struct Rejecting;

impl Handler for Rejecting {
    fn apply(&mut self, type_url: &str, _update: Update) -> Result<(), String> {
        if type_url == type_url::CLUSTER {
            Err("clusters are not welcome here".into())
        } else {
            Ok(())
        }
    }

    fn subscriptions(&self) -> Vec<(&'static str, Subscription)> {
        vec![
            (type_url::CLUSTER, Subscription::Wildcard),
            (type_url::LISTENER, Subscription::Wildcard),
        ]
    }
}

fn sidecar_node(id: &str) -> Node {
    let yaml = format!(
        "id: {id}\nmetadata:\n  WEFT_SERVICE: ratings\n  WEFT_NAMESPACE: default\n  WEFT_LABELS: {{version: v1}}\n  WEFT_INBOUND_ADDRESS: 127.0.0.1\n  WEFT_PORTS: [{{name: http, service_port: 9080, app_port: 9081, inbound_port: 15006, protocol: http}}]\n"
    );
    let json: serde_json::Value = serde_yaml_ng::from_str(&yaml).expect("yaml");
    let mut node = Node {
        id: id.into(),
        ..Default::default()
    };
    let mut fields = std::collections::BTreeMap::new();
    for (k, v) in json["metadata"].as_object().expect("metadata") {
        fields.insert(k.clone(), to_value(v));
    }
    node.metadata = Some(weft_xds::pb::google::protobuf::Struct {
        fields: fields.into_iter().collect(),
    });
    node
}

fn to_value(v: &serde_json::Value) -> weft_xds::pb::google::protobuf::Value {
    use weft_xds::pb::google::protobuf::{value::Kind, ListValue, Struct, Value};
    let kind = match v {
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Array(a) => Kind::ListValue(ListValue {
            values: a.iter().map(to_value).collect(),
        }),
        serde_json::Value::Object(o) => Kind::StructValue(Struct {
            fields: o.iter().map(|(k, v)| (k.clone(), to_value(v))).collect(),
        }),
        serde_json::Value::Null => Kind::NullValue(0),
    };
    Value { kind: Some(kind) }
}

#[tokio::test]
async fn registration_health_and_nacks_are_visible() {
    let f = Fixture::start("nack").await;
    let xds = f.control().xds_address;
    let client = tokio::spawn(weft_xds::client::run(
        ClientConfig {
            endpoints: vec![format!("http://{xds}")],
            node: sidecar_node("ratings-1.default"),
            protocol: Protocol::Sotw,
            token: f.control().admin_token.clone(),
            max_backoff: Duration::from_secs(1),
        },
        Rejecting,
    ));

    // The connected sidecar registered its workload, unhealthy until it reports.
    let describe = || async {
        f.api
            .json::<ServiceDescription>(
                Method::GET,
                "/api/v1/services/default/ratings",
                None::<&()>,
            )
            .await
    };
    let mut tries = 0;
    let d = loop {
        if let Ok(d) = describe().await {
            break d;
        }
        tries += 1;
        assert!(tries < 100, "never registered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((d.service.instances, d.service.healthy), (1, 0));
    // Policies that select its workload (and only those) are shown with it.
    let policies = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ratings-v1}\nspec:\n  selector: {matchLabels: {version: v1}}\n  action: DENY\n  rules: [{to: [{operation: {methods: [DELETE]}}]}]\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: others}\nspec:\n  selector: {matchLabels: {version: v9}}\n";
    f.apply("policies.yaml", policies, "")
        .await
        .expect("policies");
    let mut tries = 0;
    loop {
        let d = describe().await.expect("describe");
        if !d.policies.is_empty() {
            assert_eq!(d.policies, ["AuthorizationPolicy default/ratings-v1"]);
            break;
        }
        tries += 1;
        assert!(tries < 100, "policies never shown");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let health = serde_json::json!({"healthy": true});
    f.api
        .call(
            Method::PUT,
            "/api/v1/registry/default/ratings/ratings-1.default/health",
            Some(health.to_string().into_bytes()),
        )
        .await
        .expect("health report");
    let unknown = f
        .api
        .call(
            Method::PUT,
            "/api/v1/registry/default/ratings/nobody/health",
            Some(health.to_string().into_bytes()),
        )
        .await
        .expect_err("unknown instance");
    assert_eq!(unknown.status(), Some(StatusCode::NOT_FOUND));
    let mut tries = 0;
    while describe().await.expect("describe").service.healthy != 1 {
        tries += 1;
        assert!(tries < 100, "health never recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Its NACK is counted, logged and shown.
    let mut tries = 0;
    let status = loop {
        let all: Vec<ProxyStatus> = f
            .api
            .json(Method::GET, "/api/v1/proxies", None::<&()>)
            .await
            .expect("proxies");
        if let Some(p) = all.into_iter().find(|p| p.last_nack.is_some()) {
            break p;
        }
        tries += 1;
        assert!(tries < 100, "no NACK recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let nack = status.last_nack.as_ref().expect("nack");
    assert_eq!(status.id, "ratings-1.default");
    assert_eq!(nack.type_url, type_url::CLUSTER);
    assert_eq!(nack.message, "clusters are not welcome here");
    let cds = &status.types[type_url::CLUSTER];
    assert_eq!(
        cds.state(status.last_nack.as_ref(), type_url::CLUSTER),
        "NACKED"
    );
    let lds = &status.types[type_url::LISTENER];
    assert_eq!(
        lds.state(status.last_nack.as_ref(), type_url::LISTENER),
        "SYNCED"
    );
    let metrics = String::from_utf8(
        f.api
            .call(Method::GET, "/metrics", None)
            .await
            .expect("metrics")
            .to_vec(),
    )
    .expect("utf-8");
    let nacks = metrics
        .lines()
        .find_map(|l| l.strip_prefix("weft_control_xds_nacks_total{type=\"cds\"} "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(nacks.is_some_and(|n| n >= 1), "{metrics}");
    for line in [
        "weft_control_proxies_connected 1",
        "weft_control_registry_instances_healthy 1",
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    let names: BTreeSet<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("# TYPE"))
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    for name in [
        "weft_control_xds_push_latency_seconds",
        "weft_control_store_operations",
    ] {
        assert!(names.contains(name), "{names:?}");
    }
    client.abort();
}

/// A Workload with a health check enters its service's endpoints when its check
/// passes and leaves them when it fails, probed by the control plane.
#[tokio::test]
async fn workloads_are_probed() {
    let f = Fixture::start("probe").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let workload = format!(
        "apiVersion: weft.dev/v1\nkind: Workload\nmetadata: {{name: db-1}}\nspec:\n  service: db\n  address: 127.0.0.1\n  ports: {{tcp: {port}}}\n  healthCheck:\n    tcp: {{port: {port}}}\n    interval: 100ms\n    timeout: 100ms\n    unhealthyThreshold: 2\n"
    );
    f.apply("db.yaml", &workload, "").await.expect("apply");
    let healthy = || async {
        f.api
            .json::<ServiceDescription>(Method::GET, "/api/v1/services/default/db", None::<&()>)
            .await
            .map(|d| d.service.healthy)
            .unwrap_or(usize::MAX)
    };
    let mut tries = 0;
    while healthy().await != 1 {
        tries += 1;
        assert!(tries < 100, "the workload never became healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(listener);
    let mut tries = 0;
    while healthy().await != 0 {
        tries += 1;
        assert!(tries < 100, "the workload never became unhealthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
