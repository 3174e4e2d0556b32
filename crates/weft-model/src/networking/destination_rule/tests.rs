//! DestinationRule parsing and validation.

use super::*;
use crate::resource::{Kind, Spec};
use crate::testing::{err, ok, warn};

const K: Kind = Kind::DestinationRule;

fn dr(spec: &str) -> DestinationRule {
    match ok(K, spec).spec {
        Spec::DestinationRule(dr) => dr,
        other => panic!("{other:?}"),
    }
}

#[test]
fn reads_every_traffic_policy_feature() {
    let d = dr(r#"
host: reviews.prod.svc.cluster.local
exportTo: ["*"]
trafficPolicy:
  loadBalancer:
    consistentHash:
      httpCookie: {name: user, path: /, ttl: 0.5s}
      ringHash: {minimumRingSize: 1024}
    localityLbSetting:
      enabled: true
      distribute:
      - from: us-west/zone1/*
        to: {"us-west/zone1/*": 80, "us-west/zone2/*": 20}
    warmupDurationSecs: 30s
  connectionPool:
    tcp:
      maxConnections: 100
      connectTimeout: 30ms
      tcpKeepalive: {time: 7200s, interval: 75s, probes: 9}
      maxConnectionDuration: 1h
      idleTimeout: 1h
    http:
      http1MaxPendingRequests: 10
      http2MaxRequests: 1000
      maxRequestsPerConnection: 10
      maxRetries: 3
      idleTimeout: 1m
      h2UpgradePolicy: UPGRADE
      maxConcurrentStreams: 100
  outlierDetection:
    consecutive5xxErrors: 7
    consecutiveGatewayErrors: 5
    interval: 5m
    baseEjectionTime: 15m
    maxEjectionPercent: 50
    minHealthPercent: 10
    splitExternalLocalOriginErrors: true
    consecutiveLocalOriginFailures: 3
  tls:
    mode: SIMPLE
    sni: reviews.example.com
    subjectAltNames: [spiffe://cluster.local/ns/prod/sa/reviews]
  portLevelSettings:
  - port: {number: 9080}
    loadBalancer: {simple: LEAST_REQUEST}
subsets:
- name: v1
  labels: {version: v1}
- name: v2
  labels: {version: v2}
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
"#);
    let tp = d.traffic_policy.as_ref().expect("policy");
    let lb = tp.load_balancer.as_ref().expect("lb");
    let ch = lb.consistent_hash.as_ref().expect("hash");
    assert_eq!(
        ch.http_cookie
            .as_ref()
            .and_then(|c| c.ttl)
            .map(|t| t.as_millis()),
        Some(500)
    );
    assert_eq!(lb.warmup_duration_secs.map(|d| d.as_millis()), Some(30_000));
    let pool = tp.connection_pool.as_ref().expect("pool");
    assert_eq!(
        pool.tcp
            .as_ref()
            .and_then(|t| t.connect_timeout)
            .map(|d| d.as_millis()),
        Some(30)
    );
    assert_eq!(
        pool.http.as_ref().and_then(|h| h.h2_upgrade_policy),
        Some(H2UpgradePolicy::Upgrade)
    );
    let od = tp.outlier_detection.as_ref().expect("outlier");
    assert_eq!(od.consecutive_5xx_errors, Some(7));
    assert_eq!(
        tp.tls.as_ref().and_then(|t| t.mode),
        Some(ClientTlsMode::Simple)
    );
    assert_eq!(d.subsets.len(), 2);
    assert_eq!(d.subsets[1].labels["version"], "v2");
}

#[test]
fn subsets() {
    let e = err(
        K,
        "host: r\nsubsets:\n- {name: v1, labels: {version: v1}}\n- {name: v1, labels: {version: v2}}\n",
        ".subsets[1].name",
    );
    assert!(e.message.contains("duplicate subset name"), "{e}");
    assert_eq!(e.line, 10);
    err(
        K,
        "host: r\nsubsets:\n- {name: V1, labels: {version: v1}}\n",
        ".subsets[0].name",
    );
    err(
        K,
        "host: r\nsubsets:\n- {labels: {version: v1}}\n",
        ".subsets[0].name",
    );
    err(
        K,
        "host: r\nsubsets:\n- {name: v1, labels: {\"\": v1}}\n",
        ".subsets[0].labels[\"\"]",
    );
    err(
        K,
        "host: r\nsubsets:\n- {name: v1, labels: {version: \"-v1\"}}\n",
        ".subsets[0].labels.version",
    );
}

#[test]
fn empty_policies_are_errors_where_absent_ones_are_fine() {
    dr("host: r\n");
    dr("host: r\ntrafficPolicy: null\n");
    dr("host: r\ntrafficPolicy:\n  connectionPool: null\n  tls: {mode: ISTIO_MUTUAL}\n");
    let e = err(
        K,
        "host: r\ntrafficPolicy:\n  connectionPool: {}\n",
        ".trafficPolicy.connectionPool",
    );
    assert!(e.message.contains("at least one field"), "{e}");
    assert_eq!(e.line, 9);
    err(K, "host: r\ntrafficPolicy: {}\n", ".trafficPolicy");
    err(
        K,
        "host: r\ntrafficPolicy:\n  portLevelSettings: [{port: {number: 80}}]\n",
        ".trafficPolicy.portLevelSettings[0]",
    );
    err(
        K,
        "host: r\ntrafficPolicy:\n  portLevelSettings: [{tls: {mode: DISABLE}}]\n",
        ".trafficPolicy.portLevelSettings[0].port",
    );
}

#[test]
fn load_balancer_rules() {
    err(
        K,
        "host: r\ntrafficPolicy:\n  loadBalancer: {simple: RANDOM, consistentHash: {useSourceIp: true}}\n",
        ".trafficPolicy.loadBalancer",
    );
    warn(
        K,
        "host: r\ntrafficPolicy:\n  loadBalancer: {simple: LEAST_CONN}\n",
        ".trafficPolicy.loadBalancer.simple",
    );
    let e = err(
        K,
        "host: r\ntrafficPolicy:\n  loadBalancer: {simple: ROUND_ROBBIN}\n",
        ".trafficPolicy.loadBalancer.simple",
    );
    assert!(e.message.contains("did you mean \"ROUND_ROBIN\""), "{e}");
    err(
        K,
        "host: r\ntrafficPolicy:\n  loadBalancer: {consistentHash: {httpCookie: {path: /}}}\n",
        ".trafficPolicy.loadBalancer.consistentHash.httpCookie.name",
    );
    err(
        K,
        "host: r\ntrafficPolicy:\n  loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 1000}}}\n",
        ".trafficPolicy.loadBalancer.consistentHash.maglev.tableSize",
    );
    dr("host: r\ntrafficPolicy:\n  loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 65537}}}\n");
    warn(
        K,
        "host: r\ntrafficPolicy:\n  loadBalancer: {consistentHash: {httpHeaderName: x-user, minimumRingSize: 1024}}\n",
        ".trafficPolicy.loadBalancer.consistentHash.minimumRingSize",
    );
    err(
        K,
        "host: r\ntrafficPolicy:\n  loadBalancer:\n    localityLbSetting:\n      distribute: [{from: a/b, to: {c: 60, d: 30}}]\n",
        ".trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to",
    );
    err(
        K,
        "host: r\ntrafficPolicy:\n  outlierDetection: {consecutive5xxErrors: 1}\n  loadBalancer:\n    localityLbSetting:\n      failover: [{from: us-east, to: us-east}]\n",
        ".trafficPolicy.loadBalancer.localityLbSetting.failover[0]",
    );
}

#[test]
fn pools_outliers_and_tls() {
    err(
        K,
        "host: r\ntrafficPolicy:\n  connectionPool: {tcp: {maxConnections: -1}}\n",
        ".trafficPolicy.connectionPool.tcp.maxConnections",
    );
    err(
        K,
        "host: r\ntrafficPolicy:\n  connectionPool: {http: {h2UpgradePolicy: UPGRADE, useClientProtocol: true}}\n",
        ".trafficPolicy.connectionPool.http.useClientProtocol",
    );
    err(
        K,
        "host: r\ntrafficPolicy:\n  connectionPool: {tcp: {connectTimeout: 0s}}\n",
        ".trafficPolicy.connectionPool.tcp.connectTimeout",
    );
    let w = warn(
        K,
        "host: r\ntrafficPolicy:\n  outlierDetection: {consecutiveErrors: 5}\n",
        ".trafficPolicy.outlierDetection.consecutiveErrors",
    );
    assert!(w.message.contains("deprecated"), "{w}");
    err(
        K,
        "host: r\ntrafficPolicy:\n  outlierDetection: {maxEjectionPercent: 120}\n",
        ".trafficPolicy.outlierDetection.maxEjectionPercent",
    );
    err(
        K,
        "host: r\ntrafficPolicy:\n  outlierDetection: {consecutiveLocalOriginFailures: 2}\n",
        ".trafficPolicy.outlierDetection.consecutiveLocalOriginFailures",
    );
    err(
        K,
        "host: r\ntrafficPolicy:\n  tls: {mode: MUTUAL}\n",
        ".trafficPolicy.tls.clientCertificate",
    );
    dr("host: r\ntrafficPolicy:\n  tls: {mode: MUTUAL, credentialName: client-cert}\n");
    err(
        K,
        "host: r\ntrafficPolicy:\n  tls: {mode: SIMPLE, credentialName: c, caCertificates: /ca.pem}\n",
        ".trafficPolicy.tls",
    );
    err(
        K,
        "host: r\ntrafficPolicy:\n  tls: {mode: STRICT}\n",
        ".trafficPolicy.tls.mode",
    );
    err(
        K,
        "host: r\ntrafficPolicy:\n  tunnel: {targetHost: example.com, targetPort: 0}\n",
        ".trafficPolicy.tunnel.targetPort",
    );
}

#[test]
fn host_export_and_selector() {
    err(K, "subsets: [{name: v1}]\n", ".host");
    dr("host: \"*.example.com\"\n");
    err(K, "host: \"foo.*.com\"\n", ".host");
    err(K, "host: r\nexportTo: [a, a]\n", ".exportTo[1]");
    err(K, "host: r\nexportTo: [\"*\", a]\n", ".exportTo");
    dr("host: r\nworkloadSelector: {matchLabels: {app: x}}\n");
    err(
        K,
        "host: r\nworkloadSelector: {matchLabels: {app: x}}\nexportTo: [other]\n",
        ".exportTo",
    );
    warn(
        K,
        "host: r\nworkloadSelector: {matchLabels: {}}\n",
        ".workloadSelector.matchLabels",
    );
}
