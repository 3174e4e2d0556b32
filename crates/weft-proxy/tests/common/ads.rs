//! A small ADS server for tests: resources set by the test, pushed to every connected
//! proxy on each change; NACKs recorded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use weft_xds::server::{AdsServer, ClientInfo, Source, View};
use weft_xds::Resource;

/// The resources served, by type URL.
#[derive(Default)]
pub struct Config {
    resources: Mutex<BTreeMap<&'static str, Vec<Arc<Resource>>>>,
    tx: Mutex<Option<watch::Sender<u64>>>,
    /// NACK messages received.
    pub nacks: Mutex<Vec<String>>,
}

impl Config {
    /// Replaces the resources of type `t` and pushes them.
    pub fn set(&self, t: &'static str, list: Vec<Resource>) {
        self.resources
            .lock()
            .expect("lock")
            .insert(t, list.into_iter().map(Arc::new).collect());
        if let Some(tx) = &*self.tx.lock().expect("lock") {
            tx.send_modify(|v| *v += 1);
        }
    }
}

struct V(Arc<Config>, watch::Receiver<u64>);

impl View for V {
    fn resources(&self, t: &str, names: Option<&weft_xds::server::Names>) -> Vec<Arc<Resource>> {
        let all = self
            .0
            .resources
            .lock()
            .expect("lock")
            .get(t)
            .cloned()
            .unwrap_or_default();
        // VHDS subscribes to route configuration names: each names every virtual host
        // under it (`ROUTE_CONFIGURATION/VIRTUAL_HOST`).
        let vhds = t == weft_xds::type_url::VIRTUAL_HOST;
        let wanted = |n: &weft_xds::server::Names, name: &str| {
            n.contains(name) || (vhds && name.split_once('/').is_some_and(|(rc, _)| n.contains(rc)))
        };
        all.into_iter()
            .filter(|r| names.is_none_or(|n| wanted(n, &r.name)))
            .collect()
    }
    fn changes(&self) -> watch::Receiver<u64> {
        self.1.clone()
    }
    fn acked(&self, _: &str, _: &str) {}
    fn nacked(&self, _: &str, _: &str, message: &str) {
        self.0.nacks.lock().expect("lock").push(message.to_string());
    }
}

struct S(Arc<Config>);

impl Source for S {
    fn connect(
        &self,
        _: &ClientInfo,
        _: &tonic::metadata::MetadataMap,
    ) -> Result<Arc<dyn View>, tonic::Status> {
        let mut tx = self.0.tx.lock().expect("lock");
        let rx = tx.get_or_insert_with(|| watch::channel(0).0).subscribe();
        Ok(Arc::new(V(self.0.clone(), rx)))
    }
}

/// A bootstrap that takes listeners and clusters over ADS (`protocol`: `GRPC` or
/// `DELTA_GRPC`) from `xds`, with `static_clusters` (from `cluster()`) beside.
pub fn bootstrap(xds: SocketAddr, protocol: &str, static_clusters: &[String]) -> String {
    format!(
        r#"
node: {{ id: sidecar-1, cluster: test }}
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
dynamic_resources:
  lds_config: {{ ads: {{}} }}
  cds_config: {{ ads: {{}} }}
  ads_config:
    api_type: {protocol}
    transport_api_version: V3
    grpc_services: [{{ envoy_grpc: {{ cluster_name: xds }} }}]
static_resources:
  clusters:
  - name: xds
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: xds
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }} }}
{}"#,
        xds.port(),
        static_clusters.concat()
    )
}

/// Serves ADS for `config` on `listener` until dropped or aborted.
pub async fn serve(config: Arc<Config>, listener: tokio::net::TcpListener) {
    let _ = tonic::transport::Server::builder()
        .add_service(AdsServer::new(Arc::new(S(config))).into_service())
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await;
}
