//! The admin listener: readiness, Prometheus metrics, the configuration as Envoy dumps
//! it, cluster endpoints, and draining.

use crate::cluster::{ClusterMap, Discovery};
use crate::drain::Drain;
use crate::metrics::Metrics;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prost::Message;
use std::convert::Infallible;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use weft_xds::pb::envoy::admin::v3 as admin;
use weft_xds::pb::envoy::config::bootstrap::v3::Bootstrap;
use weft_xds::pb::google::protobuf::{Any, Timestamp};

/// What the admin pages read.
pub struct AdminState {
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Clusters.
    pub clusters: Arc<ArcSwap<ClusterMap>>,
    /// The running bootstrap.
    pub bootstrap: Bootstrap,
    /// Listeners and where they are bound.
    pub listeners: crate::dynamic::BoundListeners,
    /// What came over xDS.
    pub dynamic: Arc<std::sync::Mutex<crate::dynamic::Dump>>,
    /// The drain signal.
    pub drain: Drain,
    /// Set once every listener is bound.
    pub ready: AtomicBool,
    /// Asks the proxy to shut down.
    pub shutdown: tokio::sync::Notify,
    /// When the proxy started.
    pub started: Instant,
    /// When the configuration was loaded.
    pub loaded_at: std::time::SystemTime,
    /// TLS secrets, for `/certs`.
    pub secrets: crate::tls::SecretStore,
}

/// Serves the admin pages until draining ends the process.
pub async fn serve(socket: TcpListener, state: Arc<AdminState>) {
    loop {
        let Ok((stream, _)) = socket.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn route(state: &AdminState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    match (req.method(), path) {
        (&Method::GET, "/ready") => {
            if state.drain.is_draining() {
                text(StatusCode::SERVICE_UNAVAILABLE, "DRAINING\n")
            } else if state.ready.load(Ordering::Acquire) {
                text(StatusCode::OK, "LIVE\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "PRE_INITIALIZING\n")
            }
        }
        (&Method::GET, "/stats/prometheus") | (&Method::GET, "/metrics") => {
            let mut r = text(StatusCode::OK, state.metrics.encode());
            r.headers_mut().insert(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8".parse().expect("valid"));
            r
        }
        (&Method::GET, "/config_dump") => {
            let dump = config_dump(state);
            crate::memory::release_free_memory();
            json(dump)
        }
        (&Method::GET, "/certs") => json(certs(state)),
        (&Method::GET, "/clusters") if query.contains("format=json") => json(clusters_json(state)),
        (&Method::GET, "/clusters") => text(StatusCode::OK, clusters_text(state)),
        (&Method::GET, "/listeners") => {
            let mut s = String::new();
            for (name, addr) in state.listeners.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                let _ = writeln!(s, "{name}::{addr}");
            }
            text(StatusCode::OK, s)
        }
        (&Method::GET, "/server_info") => json(serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "state": if state.drain.is_draining() { "DRAINING" } else if state.ready.load(Ordering::Acquire) { "LIVE" } else { "PRE_INITIALIZING" },
            "uptime_current_epoch": format!("{}s", state.started.elapsed().as_secs()),
            "node": weft_xds::to_json(&state.bootstrap.node.clone().unwrap_or_default()),
        })),
        (&Method::POST, "/drain_listeners") => {
            state.drain.start();
            text(StatusCode::OK, "OK\n")
        }
        (&Method::POST, "/quitquitquit") => {
            state.shutdown.notify_one();
            text(StatusCode::OK, "OK\n")
        }
        (&Method::GET, "/") => text(
            StatusCode::OK,
            "admin commands are:\n  /ready\n  /stats/prometheus (also /metrics)\n  /config_dump\n  /certs\n  /clusters (?format=json)\n  /listeners\n  /server_info\n  POST /drain_listeners\n  POST /quitquitquit\n",
        ),
        (_, "/drain_listeners") | (_, "/quitquitquit") => text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, "text/plain".parse().expect("valid"));
    r
}

fn json(v: serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec_pretty(&v).unwrap_or_default(),
    )));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/json".parse().expect("valid"),
    );
    r
}

fn any<M: Message + prost::Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

/// A resource's version: the hash of its bytes, as the control plane computes it.
fn resource_version(a: &Any) -> String {
    format!("{:016x}", xxhash_rust::xxh64::xxh64(&a.value, 0))
}

/// Envoy's `ConfigDump`: bootstrap, clusters, listeners, routes and endpoints, static
/// and from xDS.
fn config_dump(state: &AdminState) -> serde_json::Value {
    let updated = {
        let d = state
            .loaded_at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp {
            seconds: d.as_secs() as i64,
            nanos: d.subsec_nanos() as i32,
        }
    };
    // Inline private keys never leave the proxy.
    let mut redacted = state.bootstrap.clone();
    crate::tls::redact::bootstrap(&mut redacted);
    let statics = redacted.static_resources.clone().unwrap_or_default();
    let bootstrap = admin::BootstrapConfigDump {
        bootstrap: Some(redacted),
        last_updated: Some(updated),
    };
    let dynamic = state.dynamic.lock().unwrap_or_else(|e| e.into_inner());
    let of = |t: &str| {
        let mut set = dynamic.resources.get(t).cloned().unwrap_or_default();
        set.values_mut().for_each(crate::tls::redact::any);
        set
    };
    let error_state = |t: &str| {
        dynamic
            .rejected
            .get(t)
            .map(|details| admin::UpdateFailureState {
                details: details.clone(),
                ..Default::default()
            })
    };
    let clusters = admin::ClustersConfigDump {
        static_clusters: statics
            .clusters
            .iter()
            .map(|c| admin::clusters_config_dump::StaticCluster {
                cluster: Some(any(c)),
                last_updated: Some(updated),
            })
            .collect(),
        dynamic_active_clusters: of(weft_xds::type_url::CLUSTER)
            .into_values()
            .map(|a| admin::clusters_config_dump::DynamicCluster {
                version_info: resource_version(&a),
                cluster: Some(a),
                last_updated: Some(updated),
                error_state: error_state(weft_xds::type_url::CLUSTER),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let listeners = admin::ListenersConfigDump {
        static_listeners: statics
            .listeners
            .iter()
            .map(|l| admin::listeners_config_dump::StaticListener {
                listener: Some(any(l)),
                last_updated: Some(updated),
            })
            .collect(),
        dynamic_listeners: of(weft_xds::type_url::LISTENER)
            .into_iter()
            .map(|(name, a)| admin::listeners_config_dump::DynamicListener {
                name,
                active_state: Some(admin::listeners_config_dump::DynamicListenerState {
                    version_info: resource_version(&a),
                    listener: Some(a),
                    last_updated: Some(updated),
                }),
                error_state: error_state(weft_xds::type_url::LISTENER),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let routes = admin::RoutesConfigDump {
        static_route_configs: inline_routes(&statics.listeners)
            .into_iter()
            .map(|r| admin::routes_config_dump::StaticRouteConfig {
                route_config: Some(any(&r)),
                last_updated: Some(updated),
            })
            .collect(),
        dynamic_route_configs: of(weft_xds::type_url::ROUTE_CONFIGURATION)
            .into_values()
            .map(|a| admin::routes_config_dump::DynamicRouteConfig {
                version_info: resource_version(&a),
                route_config: Some(a),
                last_updated: Some(updated),
                error_state: error_state(weft_xds::type_url::ROUTE_CONFIGURATION),
                ..Default::default()
            })
            .collect(),
    };
    let endpoints = admin::EndpointsConfigDump {
        dynamic_endpoint_configs: of(weft_xds::type_url::CLUSTER_LOAD_ASSIGNMENT)
            .into_values()
            .map(|a| admin::endpoints_config_dump::DynamicEndpointConfig {
                version_info: resource_version(&a),
                endpoint_config: Some(a),
                last_updated: Some(updated),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    drop(dynamic);
    let dump = admin::ConfigDump {
        configs: vec![
            any(&bootstrap),
            any(&clusters),
            any(&listeners),
            any(&routes),
            any(&endpoints),
        ],
    };
    weft_xds::to_json(&dump)
}

/// Envoy's `/certs`: per secret, its certificates' serial, subject alternative names,
/// validity and days until expiry. Never a key.
fn certs(state: &AdminState) -> serde_json::Value {
    use crate::tls::secrets::Secret;
    use crate::tls::x509::CertSummary;
    let now = std::time::SystemTime::now();
    let details = |name: &str, c: &CertSummary| {
        let mut sans = Vec::new();
        sans.extend(c.uri_sans.iter().map(|v| serde_json::json!({ "uri": v })));
        sans.extend(c.dns_sans.iter().map(|v| serde_json::json!({ "dns": v })));
        sans.extend(
            c.ip_sans
                .iter()
                .map(|v| serde_json::json!({ "ip_address": v })),
        );
        sans.extend(
            c.email_sans
                .iter()
                .map(|v| serde_json::json!({ "email": v })),
        );
        let time = |t| {
            let mut s = String::new();
            crate::format::write_rfc3339_millis(t, &mut s);
            s
        };
        serde_json::json!({
            "path": name,
            "serial_number": c.serial,
            "subject": c.subject,
            "subject_alt_names": sans,
            "days_until_expiration": c.days_until_expiration(now).max(0).to_string(),
            "valid_from": time(c.not_before),
            "expiration_time": time(c.not_after),
        })
    };
    let certificates: Vec<serde_json::Value> = state
        .secrets
        .all()
        .into_iter()
        .map(|(name, secret)| match secret {
            Secret::Certificate(c) => serde_json::json!({
                "name": name,
                "ca_cert": [],
                "cert_chain": c.chain().iter().map(|s| details(&name, s)).collect::<Vec<_>>(),
            }),
            Secret::Trust(t) => serde_json::json!({
                "name": name,
                "ca_cert": t.certificates().iter().map(|s| details(&name, s)).collect::<Vec<_>>(),
                "cert_chain": [],
            }),
        })
        .collect();
    serde_json::json!({ "certificates": certificates })
}

fn inline_routes(
    listeners: &[weft_xds::pb::envoy::config::listener::v3::Listener],
) -> Vec<weft_xds::pb::envoy::config::route::v3::RouteConfiguration> {
    use weft_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
        http_connection_manager::RouteSpecifier, HttpConnectionManager,
    };
    let mut out = Vec::new();
    for l in listeners {
        for fc in l.filter_chains.iter().chain(l.default_filter_chain.iter()) {
            for f in &fc.filters {
                if let Some(
                    weft_xds::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(a),
                ) = &f.config_type
                {
                    if a.type_url == weft_xds::type_url::HTTP_CONNECTION_MANAGER {
                        if let Ok(m) = HttpConnectionManager::decode(a.value.as_slice()) {
                            if let Some(RouteSpecifier::RouteConfig(rc)) = m.route_specifier {
                                out.push(rc);
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// Envoy's text `/clusters`: `cluster::host::stat::value` lines.
fn clusters_text(state: &AdminState) -> String {
    let mut s = String::new();
    let clusters = state.clusters.load();
    let mut names: Vec<_> = clusters.keys().collect();
    names.sort();
    for name in names {
        let c = &clusters[name];
        let _ = writeln!(s, "{name}::default_priority::max_connections::1024");
        let _ = writeln!(s, "{name}::lb_policy::{}", c.lb.policy.name());
        let _ = writeln!(s, "{name}::added_via_api::false");
        for ep in c.hosts().endpoints() {
            let a = ep.address;
            let st = &ep.stats;
            let load = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
            let _ = writeln!(s, "{name}::{a}::cx_total::{}", load(&st.cx_total));
            let _ = writeln!(
                s,
                "{name}::{a}::cx_connect_fail::{}",
                load(&st.cx_connect_fail)
            );
            let _ = writeln!(s, "{name}::{a}::cx_idle::{}", ep.idle_connections());
            let _ = writeln!(
                s,
                "{name}::{a}::rq_active::{}",
                ep.active.load(Ordering::Relaxed)
            );
            let _ = writeln!(s, "{name}::{a}::rq_total::{}", load(&st.rq_total));
            let _ = writeln!(s, "{name}::{a}::rq_success::{}", load(&st.rq_success));
            let _ = writeln!(s, "{name}::{a}::rq_error::{}", load(&st.rq_error));
            let _ = writeln!(s, "{name}::{a}::rq_timeout::{}", load(&st.rq_timeout));
            let _ = writeln!(s, "{name}::{a}::weight::{}", ep.weight());
            let _ = writeln!(s, "{name}::{a}::priority::{}", ep.priority);
            let _ = writeln!(s, "{name}::{a}::health_flags::{}", ep.health().as_str());
            if let Some(h) = &ep.hostname {
                let _ = writeln!(s, "{name}::{a}::hostname::{h}");
            }
        }
    }
    s
}

fn clusters_json(state: &AdminState) -> serde_json::Value {
    let clusters = state.clusters.load();
    let mut list: Vec<serde_json::Value> = clusters
        .values()
        .map(|c| {
            let hosts: Vec<serde_json::Value> = c
                .hosts()
                .endpoints()
                .map(|ep| {
                    let st = &ep.stats;
                    serde_json::json!({
                        "address": {"socket_address": {"address": ep.address.ip().to_string(), "port_value": ep.address.port()}},
                        "hostname": ep.hostname.as_deref().unwrap_or(""),
                        "weight": ep.weight(),
                        "priority": ep.priority,
                        "health_status": {"eds_health_status": match ep.health() {
                            crate::cluster::endpoint::Health::Healthy => "HEALTHY",
                            crate::cluster::endpoint::Health::Degraded => "DEGRADED",
                            crate::cluster::endpoint::Health::Unhealthy => "UNHEALTHY",
                        }},
                        "stats": [
                            {"name": "cx_total", "value": st.cx_total.load(Ordering::Relaxed)},
                            {"name": "cx_connect_fail", "value": st.cx_connect_fail.load(Ordering::Relaxed)},
                            {"name": "rq_total", "value": st.rq_total.load(Ordering::Relaxed)},
                            {"name": "rq_success", "value": st.rq_success.load(Ordering::Relaxed)},
                            {"name": "rq_error", "value": st.rq_error.load(Ordering::Relaxed)},
                            {"name": "rq_timeout", "value": st.rq_timeout.load(Ordering::Relaxed)},
                            {"name": "rq_active", "value": ep.active.load(Ordering::Relaxed)},
                        ],
                    })
                })
                .collect();
            let kind = match c.discovery {
                Discovery::Static => "STATIC",
                Discovery::StrictDns { .. } => "STRICT_DNS",
                Discovery::LogicalDns { .. } => "LOGICAL_DNS",
                Discovery::OriginalDst { .. } => "ORIGINAL_DST",
                Discovery::Eds { .. } => "EDS",
            };
            serde_json::json!({
                "name": &*c.name,
                "type": kind,
                "lb_policy": c.lb.policy.name(),
                "host_statuses": hosts,
            })
        })
        .collect();
    list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    serde_json::json!({ "cluster_statuses": list })
}
