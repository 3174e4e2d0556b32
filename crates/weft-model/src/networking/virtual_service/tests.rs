//! VirtualService parsing and validation.

use super::*;
use crate::resource::{Kind, Spec};
use crate::testing::{err, ok, warn};

const K: Kind = Kind::VirtualService;

fn vs(spec: &str) -> VirtualService {
    match ok(K, spec).spec {
        Spec::VirtualService(vs) => vs,
        other => panic!("{other:?}"),
    }
}

#[test]
fn reads_every_http_feature() {
    let v = vs(r#"
hosts: [reviews, "*.example.com"]
gateways: [mesh, istio-system/public]
exportTo: [".", other]
http:
- name: main
  match:
  - name: api
    uri: {prefix: /api}
    scheme: {exact: https}
    method: {exact: GET}
    authority: {regex: "^api\\.example\\.com$"}
    headers:
      end-user: {exact: jason}
    queryParams:
      debug: {exact: "1"}
    withoutHeaders:
      x-skip: {prefix: y}
    port: 8080
    sourceLabels: {app: productpage}
    gateways: [mesh]
    sourceNamespace: default
    ignoreUriCase: true
  route:
  - destination: {host: reviews, subset: v1, port: {number: 9080}}
    weight: 75
    headers:
      request: {set: {x-a: "1"}, add: {x-b: "2"}, remove: [x-c]}
      response: {remove: [x-d]}
  - destination: {host: reviews, subset: v2}
    weight: 25
  rewrite: {uri: /v1/api, authority: reviews.internal}
  timeout: 3s
  retries: {attempts: 3, perTryTimeout: 500ms, retryOn: "5xx,reset,503", retryRemoteLocalities: true}
  fault:
    delay: {fixedDelay: 7s, percentage: {value: 10}}
    abort: {httpStatus: 500, percentage: {value: 0.5}}
  mirror: {host: reviews-shadow}
  mirrorPercentage: {value: 5}
  corsPolicy:
    allowOrigins: [{exact: "https://example.com"}]
    allowMethods: [GET, POST]
    allowHeaders: [x-token]
    exposeHeaders: ["*"]
    maxAge: 24h
    allowCredentials: true
  headers:
    response: {set: {x-served-by: weft}}
"#);
    assert_eq!(v.hosts, ["reviews", "*.example.com"]);
    let r = &v.http[0];
    let m = &r.matches[0];
    assert_eq!(m.uri, Some(StringMatch::Prefix("/api".into())));
    assert_eq!(m.headers["end-user"], StringMatch::Exact("jason".into()));
    assert_eq!(m.query_params["debug"], StringMatch::Exact("1".into()));
    assert_eq!(m.port, Some(8080));
    assert_eq!(m.ignore_uri_case, Some(true));
    assert_eq!(r.route[0].weight, Some(75));
    assert_eq!(r.route[0].destination.port.map(|p| p.number), Some(9080));
    assert_eq!(r.timeout.map(|d| d.as_millis()), Some(3000));
    let retries = r.retries.as_ref().expect("retries");
    assert_eq!(retries.per_try_timeout.map(|d| d.as_millis()), Some(500));
    let fault = r.fault.as_ref().expect("fault");
    assert_eq!(fault.abort.as_ref().and_then(|a| a.http_status), Some(500));
    assert_eq!(
        r.cors_policy
            .as_ref()
            .and_then(|c| c.max_age)
            .map(|d| d.as_millis()),
        Some(86_400_000)
    );
}

#[test]
fn redirects_direct_responses_and_delegates() {
    let v = vs(r#"
hosts: [web]
http:
- match: [{uri: {exact: /old}}]
  redirect: {uri: /new, authority: web.example.com, redirectCode: 308, scheme: https, port: 8443}
- match: [{uri: {exact: /health}}]
  directResponse: {status: 200, body: {string: ok}}
- match: [{uri: {exact: /bin}}]
  directResponse: {status: 503, body: {bytes: aGVsbG8=}}
- match: [{uri: {prefix: /reviews}}]
  delegate: {name: reviews, namespace: team}
- route: [{destination: {host: web}}]
"#);
    assert_eq!(
        v.http[0].redirect.as_ref().and_then(|r| r.redirect_code),
        Some(308)
    );
    let body = v.http[1]
        .direct_response
        .as_ref()
        .and_then(|d| d.body.clone());
    assert_eq!(body, Some(HttpBody::String("ok".into())));
    assert_eq!(
        v.http[3].delegate.as_ref().map(|d| d.name.as_str()),
        Some("reviews")
    );
}

#[test]
fn tcp_and_tls_routes() {
    let v = vs(r#"
hosts: ["*.example.com"]
gateways: [edge]
tls:
- match: [{sniHosts: [a.example.com], port: 443}]
  route: [{destination: {host: a.internal}}]
tcp:
- match: [{port: 27017, destinationSubnets: [10.0.0.0/8]}]
  route: [{destination: {host: mongo, port: {number: 27017}}, weight: 100}]
"#);
    assert_eq!(v.tls[0].matches[0].sni_hosts, ["a.example.com"]);
    assert_eq!(v.tcp[0].route[0].weight, Some(100));
}

#[test]
fn weights_need_not_sum_to_100_but_cannot_all_be_zero() {
    vs("hosts: [r]\nhttp:\n- route:\n  - {destination: {host: r, subset: a}, weight: 1}\n  - {destination: {host: r, subset: b}, weight: 1}\n");
    vs("hosts: [r]\nhttp:\n- route:\n  - {destination: {host: r}, weight: 0}\n");
    let e = err(
        K,
        "hosts: [r]\nhttp:\n- route:\n  - {destination: {host: r, subset: a}, weight: 0}\n  - {destination: {host: r, subset: b}}\n",
        ".http[0].route",
    );
    assert!(e.message.contains("total destination weight is 0"), "{e}");
    let e = err(
        K,
        "hosts: [r]\nhttp:\n- route:\n  - destination: {host: r}\n    weight: -5\n",
        ".http[0].route[0].weight",
    );
    assert!(e.message.contains("negative"), "{e}");
    assert_eq!(e.line, 11);
}

#[test]
fn host_rules() {
    err(
        K,
        "hosts: [\"*\"]\nhttp: [{route: [{destination: {host: r}}]}]\n",
        ".hosts[0]",
    );
    vs("hosts: [\"*\"]\ngateways: [edge]\nhttp: [{route: [{destination: {host: r}}]}]\n");
    vs("hosts: [10.0.0.1]\nhttp: [{route: [{destination: {host: r}}]}]\n");
    err(
        K,
        "hosts: [Bad_Host]\nhttp: [{route: [{destination: {host: r}}]}]\n",
        ".hosts[0]",
    );
    let e = err(
        K,
        "hosts: [\"*.foo.com\", bar.foo.com]\nhttp: [{route: [{destination: {host: r}}]}]\n",
        ".hosts[0]",
    );
    assert!(e.message.contains("duplicate hosts"), "{e}");
    err(
        K,
        "hosts: [r]\nhttp: [{route: [{destination: {host: \"*\"}}]}]\n",
        ".http[0].route[0].destination.host",
    );
    err(
        K,
        "hosts: [r]\nhttp: [{route: [{destination: {subset: v1}}]}]\n",
        ".http[0].route[0].destination.host",
    );
    err(K, "hosts: [r]\n", "");
    err(
        K,
        "hosts: [r]\ngateways: [\"bad/Name\"]\nhttp: [{route: [{destination: {host: r}}]}]\n",
        ".gateways[0]",
    );
    err(
        K,
        "hosts: [r]\nexportTo: [~]\nhttp: [{route: [{destination: {host: r}}]}]\n",
        ".exportTo[0]",
    );
}

#[test]
fn delegate_rules() {
    vs("http:\n- match: [{uri: {prefix: /a}}]\n  route: [{destination: {host: a}}]\n");
    err(
        K,
        "gateways: [gw]\nhttp: [{route: [{destination: {host: a}}]}]\n",
        ".gateways",
    );
    err(
        K,
        "http:\n- match: [{uri: {regex: \"/a.*\"}}]\n  route: [{destination: {host: a}}]\n",
        ".http[0].match[0].uri",
    );
    err(
        K,
        "hosts: [a]\nhttp:\n- delegate: {name: b}\n  route: [{destination: {host: a}}]\n",
        ".http[0].route",
    );
}

#[test]
fn route_conflicts() {
    err(K, "hosts: [a]\nhttp: [{}]\n", ".http[0]");
    err(
        K,
        "hosts: [a]\nhttp:\n- redirect: {uri: /x}\n  route: [{destination: {host: a}}]\n",
        ".http[0].redirect",
    );
    err(
        K,
        "hosts: [a]\nhttp:\n- redirect: {uri: /x}\n  rewrite: {uri: /y}\n",
        ".http[0].rewrite",
    );
    err(
        K,
        "hosts: [a]\nhttp:\n- directResponse: {status: 200}\n  route: [{destination: {host: a}}]\n",
        ".http[0].directResponse",
    );
    err(
        K,
        "hosts: [a]\nhttp:\n- redirect: {}\n",
        ".http[0].redirect",
    );
    err(
        K,
        "hosts: [a]\nhttp:\n- redirect: {uri: /x, redirectCode: 200}\n",
        ".http[0].redirect.redirectCode",
    );
    err(
        K,
        "hosts: [a]\nhttp:\n- redirect: {scheme: ftp}\n",
        ".http[0].redirect.scheme",
    );
    err(
        K,
        "hosts: [a]\nhttp:\n- directResponse: {status: 99}\n",
        ".http[0].directResponse.status",
    );
    err(
        K,
        "hosts: [a]\nhttp:\n- directResponse: {status: 200, body: {bytes: \"not base64!\"}}\n",
        ".http[0].directResponse.body",
    );
    let e = err(
        K,
        "hosts: [a]\nhttp:\n- directResponse: {status: 200, body: {string: a, bytes: YQ==}}\n",
        ".http[0].directResponse.body",
    );
    assert!(e.message.contains("only one of"), "{e}");
}

#[test]
fn string_matches() {
    let e = err(
        K,
        "hosts: [a]\nhttp:\n- match: [{uri: {prefix: \"\"}}]\n  route: [{destination: {host: a}}]\n",
        ".http[0].match[0].uri.prefix",
    );
    assert!(e.message.contains("must not be empty"), "{e}");
    let e = err(
        K,
        "hosts: [a]\nhttp:\n- match: [{uri: {}}]\n  route: [{destination: {host: a}}]\n",
        ".http[0].match[0].uri",
    );
    assert!(e.message.contains("exactly one of"), "{e}");
    let e = err(
        K,
        "hosts: [a]\nhttp:\n- match: [{uri: {exact: /a, prefix: /b}}]\n  route: [{destination: {host: a}}]\n",
        ".http[0].match[0].uri",
    );
    assert!(e.message.contains("only one of"), "{e}");
    let e = err(
        K,
        "hosts: [a]\nhttp:\n- match: [{uri: {regex: \"(unclosed\"}}]\n  route: [{destination: {host: a}}]\n",
        ".http[0].match[0].uri.regex",
    );
    assert!(e.message.contains("RE2"), "{e}");
    let e = err(
        K,
        "hosts: [a]\nhttp:\n- match: [{uri: {prefx: /a}}]\n  route: [{destination: {host: a}}]\n",
        ".http[0].match[0].uri.prefx",
    );
    assert!(e.message.contains("did you mean \"prefix\""), "{e}");
    err(
        K,
        "hosts: [a]\nhttp:\n- match: [{headers: {\"bad header\": {exact: x}}}]\n  route: [{destination: {host: a}}]\n",
        ".http[0].match[0].headers[\"bad header\"]",
    );
    err(
        K,
        "hosts: [a]\nhttp:\n- match: [{headers: {\"@request.auth.claims.group\": {exact: x}}}]\n  route: [{destination: {host: a}}]\n",
        ".http[0].match[0].headers[\"@request.auth.claims.group\"]",
    );
}

#[test]
fn retries_faults_mirrors_rewrites() {
    err(
        K,
        "hosts: [a]\nhttp:\n- route: [{destination: {host: a}}]\n  retries: {attempts: -1}\n",
        ".http[0].retries.attempts",
    );
    err(
        K,
        "hosts: [a]\nhttp:\n- route: [{destination: {host: a}}]\n  retries: {attempts: 0, perTryTimeout: 1s}\n",
        ".http[0].retries.attempts",
    );
    let e = err(
        K,
        "hosts: [a]\nhttp:\n- route: [{destination: {host: a}}]\n  retries: {attempts: 2, retryOn: \"5xx,gateway-eror\"}\n",
        ".http[0].retries.retryOn",
    );
    assert!(e.message.contains("did you mean \"gateway-error\""), "{e}");
    err(
        K,
        "hosts: [a]\nhttp:\n- route: [{destination: {host: a}}]\n  fault: {}\n",
        ".http[0].fault",
    );
    err(
        K,
        "hosts: [a]\nhttp:\n- route: [{destination: {host: a}}]\n  fault: {abort: {httpStatus: 700}}\n",
        ".http[0].fault.abort.httpStatus",
    );
    err(
        K,
        "hosts: [a]\nhttp:\n- route: [{destination: {host: a}}]\n  fault: {abort: {grpcStatus: NOPE}}\n",
        ".http[0].fault.abort.grpcStatus",
    );
    err(
        K,
        "hosts: [a]\nhttp:\n- route: [{destination: {host: a}}]\n  fault: {delay: {percentage: {value: 101}, fixedDelay: 1s}}\n",
        ".http[0].fault.delay.percentage.value",
    );
    err(
        K,
        "hosts: [a]\nhttp:\n- route: [{destination: {host: a}}]\n  fault: {delay: {percentage: {value: 10}}}\n",
        ".http[0].fault.delay.fixedDelay",
    );
    warn(
        K,
        "hosts: [a]\nhttp:\n- route: [{destination: {host: a}}]\n  fault: {delay: {percent: 10, fixedDelay: 1s}}\n",
        ".http[0].fault.delay.percent",
    );
    let w = warn(
        K,
        "hosts: [a]\nhttp:\n- route: [{destination: {host: a}}]\n  mirror: {host: b}\n  mirrorPercent: 50\n",
        ".http[0].mirrorPercent",
    );
    assert!(w.message.contains("deprecated"), "{w}");
    err(
        K,
        "hosts: [a]\nhttp:\n- route: [{destination: {host: a}}]\n  mirror: {host: b}\n  mirrorPercentage: {value: 150}\n",
        ".http[0].mirrorPercentage",
    );
    err(
        K,
        "hosts: [a]\nhttp:\n- route: [{destination: {host: a}}]\n  mirror: {host: b}\n  mirrors: [{destination: {host: c}}]\n",
        ".http[0].mirrors",
    );
    vs("hosts: [a]\nhttp:\n- route: [{destination: {host: a}}]\n  mirrors: [{destination: {host: c}, percentage: {value: 10}}]\n");
    err(
        K,
        "hosts: [a]\nhttp:\n- route: [{destination: {host: a}}]\n  rewrite: {}\n",
        ".http[0].rewrite",
    );
    err(
        K,
        "hosts: [a]\nhttp:\n- route: [{destination: {host: a}}]\n  rewrite: {uri: /a, uriRegexRewrite: {match: a, rewrite: b}}\n",
        ".http[0].rewrite",
    );
    vs("hosts: [a]\nhttp:\n- route: [{destination: {host: a}}]\n  rewrite: {uriRegexRewrite: {match: \"^/v1/(.*)\", rewrite: \"/\\\\1\"}}\n");
    err(
        K,
        "hosts: [a]\nhttp:\n- route: [{destination: {host: a}}]\n  rewrite: {authority: x}\n  headers: {request: {set: {host: y}}}\n",
        ".http[0].headers",
    );
}

#[test]
fn header_edits_and_cors() {
    err(
        K,
        "hosts: [a]\nhttp:\n- route: [{destination: {host: a}}]\n  headers: {request: {set: {\":path\": x}}}\n",
        ".http[0].headers.request.set[\":path\"]",
    );
    err(
        K,
        "hosts: [a]\nhttp:\n- route: [{destination: {host: a}}]\n  headers: {response: {remove: [host]}}\n",
        ".http[0].headers.response.remove[0]",
    );
    err(
        K,
        "hosts: [a]\nhttp:\n- route: [{destination: {host: a}}]\n  headers: {request: {add: {x: \"50%\"}}}\n",
        ".http[0].headers.request.add.x",
    );
    err(
        K,
        "hosts: [a]\nhttp:\n- route: [{destination: {host: a}}]\n  corsPolicy: {allowMethods: [GETT]}\n",
        ".http[0].corsPolicy.allowMethods[0]",
    );
    err(
        K,
        "hosts: [a]\nhttp:\n- route: [{destination: {host: a}}]\n  corsPolicy: {maxAge: 1500ms}\n",
        ".http[0].corsPolicy.maxAge",
    );
    warn(
        K,
        "hosts: [a]\nhttp:\n- route: [{destination: {host: a}}]\n  corsPolicy: {allowOrigin: [\"*\"]}\n",
        ".http[0].corsPolicy.allowOrigin",
    );
}

#[test]
fn tls_and_tcp_rules() {
    err(
        K,
        "hosts: [a.com]\ntls:\n- route: [{destination: {host: a}}]\n",
        ".tls[0]",
    );
    err(
        K,
        "hosts: [a.com]\ntls:\n- match: [{sniHosts: [b.com]}]\n  route: [{destination: {host: a}}]\n",
        ".tls[0].match[0].sniHosts[0]",
    );
    err(
        K,
        "hosts: [a.com]\ntcp:\n- match: [{port: 0}]\n  route: [{destination: {host: a}}]\n",
        ".tcp[0].match[0].port",
    );
    err(K, "hosts: [a.com]\ntcp:\n- match: [{destinationSubnets: [10.0.0.0/40]}]\n  route: [{destination: {host: a}}]\n", ".tcp[0].match[0].destinationSubnets[0]");
    err(K, "hosts: [a.com]\ntcp: [{}]\n", ".tcp[0].route");
}

#[test]
fn unreachable_routes_warn() {
    let w = warn(
        K,
        "hosts: [a]\nhttp:\n- route: [{destination: {host: a}}]\n- match: [{uri: {prefix: /x}}]\n  route: [{destination: {host: b}}]\n",
        ".http[1]",
    );
    assert!(w.message.contains("never used"), "{w}");
}

#[test]
fn serializes_in_istio_spelling() {
    let v = vs("hosts: [a]\nhttp:\n- match: [{uri: {prefix: /api}, ignoreUriCase: true}]\n  route: [{destination: {host: a}, weight: 0}]\n  timeout: 1.5s\n");
    let json = serde_json::to_value(&v).expect("serializes");
    assert_eq!(
        json,
        serde_json::json!({
            "hosts": ["a"],
            "http": [{
                "match": [{"uri": {"prefix": "/api"}, "ignoreUriCase": true}],
                "route": [{"destination": {"host": "a"}, "weight": 0}],
                "timeout": "1.5s"
            }]
        })
    );
}
