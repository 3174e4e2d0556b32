//! Bookinfo's routing files as Istio's documentation writes them.

mod support;

use support::parse_ok;
use weft_model::networking::virtual_service::HttpRouteDestination;
use weft_model::networking::StringMatch;
use weft_model::{Kind, Resource, Spec};

const VIRTUAL_SERVICE_ALL_V1: &str = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: productpage
spec:
  hosts:
  - productpage
  http:
  - route:
    - destination:
        host: productpage
        subset: v1
---
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
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts:
  - ratings
  http:
  - route:
    - destination:
        host: ratings
        subset: v1
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: details
spec:
  hosts:
  - details
  http:
  - route:
    - destination:
        host: details
        subset: v1
---
"#;

const REVIEWS_90_10: &str = r#"apiVersion: networking.istio.io/v1
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
      weight: 90
    - destination:
        host: reviews
        subset: v2
      weight: 10
"#;

const REVIEWS_50_50: &str = r#"apiVersion: networking.istio.io/v1alpha3
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
      weight: 50
    - destination:
        host: reviews
        subset: v3
      weight: 50
"#;

const REVIEWS_TEST_V2: &str = r#"apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
    - reviews
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v2
  - route:
    - destination:
        host: reviews
        subset: v1
"#;

const DESTINATION_RULE_ALL: &str = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: productpage
spec:
  host: productpage
  subsets:
  - name: v1
    labels:
      version: v1
---
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
  - name: v3
    labels:
      version: v3
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: ratings
spec:
  host: ratings
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
  - name: v2-mysql
    labels:
      version: v2-mysql
  - name: v2-mysql-vm
    labels:
      version: v2-mysql-vm
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: details
spec:
  host: details
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
---
"#;

const GATEWAY: &str = r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: bookinfo-gateway
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 8080
      name: http
      protocol: HTTP
    hosts:
    - "*"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bookinfo
spec:
  hosts:
  - "*"
  gateways:
  - bookinfo-gateway
  http:
  - match:
    - uri:
        exact: /productpage
    - uri:
        prefix: /static
    - uri:
        exact: /login
    - uri:
        exact: /logout
    - uri:
        prefix: /api/v1/products
    route:
    - destination:
        host: productpage
        port:
          number: 9080
"#;

fn routes(r: &Resource) -> &[HttpRouteDestination] {
    match &r.spec {
        Spec::VirtualService(vs) => &vs.http[0].route,
        other => panic!("{other:?}"),
    }
}

fn weights(r: &Resource) -> Vec<(String, Option<i32>)> {
    routes(r)
        .iter()
        .map(|d| (d.destination.subset.clone().unwrap_or_default(), d.weight))
        .collect()
}

#[test]
fn all_v1_routes_every_service_to_v1() {
    let (resources, warnings) = parse_ok("virtual-service-all-v1.yaml", VIRTUAL_SERVICE_ALL_V1);
    assert!(warnings.is_empty(), "{warnings:?}");
    let names: Vec<String> = resources.iter().map(|r| r.key().to_string()).collect();
    assert_eq!(
        names,
        [
            "VirtualService/default/productpage",
            "VirtualService/default/reviews",
            "VirtualService/default/ratings",
            "VirtualService/default/details"
        ]
    );
    for r in &resources {
        let route = routes(r);
        assert_eq!(route.len(), 1);
        assert_eq!(route[0].destination.host, r.name());
        assert_eq!(route[0].destination.subset.as_deref(), Some("v1"));
    }
}

#[test]
fn weighted_reviews() {
    let (r, _) = parse_ok("virtual-service-reviews-90-10.yaml", REVIEWS_90_10);
    assert_eq!(
        weights(&r[0]),
        [("v1".into(), Some(90)), ("v2".into(), Some(10))]
    );
    let (r, _) = parse_ok("virtual-service-reviews-50-50.yaml", REVIEWS_50_50);
    assert_eq!(
        weights(&r[0]),
        [("v1".into(), Some(50)), ("v3".into(), Some(50))]
    );
    assert_eq!(r[0].api_version, "networking.istio.io/v1alpha3");
}

#[test]
fn jason_goes_to_v2() {
    let (r, _) = parse_ok("virtual-service-reviews-test-v2.yaml", REVIEWS_TEST_V2);
    let Spec::VirtualService(vs) = &r[0].spec else {
        panic!("not a VirtualService")
    };
    assert_eq!(vs.http.len(), 2);
    let m = &vs.http[0].matches[0];
    assert_eq!(m.headers["end-user"], StringMatch::Exact("jason".into()));
    assert_eq!(
        vs.http[0].route[0].destination.subset.as_deref(),
        Some("v2")
    );
    assert!(vs.http[1].matches.is_empty());
    assert_eq!(
        vs.http[1].route[0].destination.subset.as_deref(),
        Some("v1")
    );
}

#[test]
fn destination_rules_define_subsets() {
    let (r, _) = parse_ok("destination-rule-all.yaml", DESTINATION_RULE_ALL);
    assert_eq!(r.len(), 4);
    let Spec::DestinationRule(reviews) = &r[1].spec else {
        panic!("not a DestinationRule")
    };
    assert_eq!(reviews.host, "reviews");
    let subsets: Vec<(&str, &str)> = reviews
        .subsets
        .iter()
        .map(|s| (s.name.as_str(), s.labels["version"].as_str()))
        .collect();
    assert_eq!(subsets, [("v1", "v1"), ("v2", "v2"), ("v3", "v3")]);
    assert!(r.iter().all(|r| r.kind() == Kind::DestinationRule));
}

#[test]
fn gateway_and_its_virtual_service() {
    let (r, _) = parse_ok("bookinfo-gateway.yaml", GATEWAY);
    assert_eq!(r[0].kind(), Kind::Gateway);
    let Spec::VirtualService(vs) = &r[1].spec else {
        panic!("not a VirtualService")
    };
    assert_eq!(vs.http[0].matches.len(), 5);
    assert_eq!(
        vs.http[0].route[0].destination.port.map(|p| p.number),
        Some(9080)
    );
}

#[test]
fn everything_round_trips_through_json_and_yaml() {
    let sources = [
        VIRTUAL_SERVICE_ALL_V1,
        REVIEWS_90_10,
        REVIEWS_50_50,
        REVIEWS_TEST_V2,
        DESTINATION_RULE_ALL,
        GATEWAY,
    ];
    for text in sources {
        let (resources, _) = parse_ok("bookinfo.yaml", text);
        for r in resources {
            let json = serde_json::to_string(&r).expect("serializes");
            assert_eq!(Resource::from_json("stored", &json).expect("reads back"), r);
            let back: Resource = serde_json::from_str(&json).expect("deserializes");
            assert_eq!(back, r);
            let yaml = serde_yaml_ng::to_string(&r).expect("yaml");
            let (again, _) = parse_ok("printed.yaml", &yaml);
            assert_eq!(again, [r]);
        }
    }
}

#[test]
fn printed_yaml_is_what_the_user_wrote() {
    let (r, _) = parse_ok("virtual-service-reviews-test-v2.yaml", REVIEWS_TEST_V2);
    let printed = serde_yaml_ng::to_string(&r[0]).expect("yaml");
    let expected = "\
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
spec:
  hosts:
  - reviews
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v2
  - route:
    - destination:
        host: reviews
        subset: v1
";
    assert_eq!(printed, expected);
}
