//! The ADS server and client against each other over real gRPC on 127.0.0.1: initial
//! state, updates, removals, NACKs, growing subscriptions, and the hold of listeners
//! until new clusters' endpoints are subscribed, in both protocol variants.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use weft_xds::client::{self, ClientConfig, Handler, Protocol, Update};
use weft_xds::pb::envoy::config::cluster::v3::{cluster, Cluster};
use weft_xds::pb::envoy::config::core::v3::Node;
use weft_xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use weft_xds::pb::envoy::config::listener::v3::Listener;
use weft_xds::pb::envoy::config::route::v3::VirtualHost;
use weft_xds::server::{AdsServer, ClientInfo, Source, Subscription, View};
use weft_xds::{type_url, Resource};

/// A source whose resources the test sets; every client sees the same.
#[derive(Default)]
struct TestSource {
    resources: Mutex<BTreeMap<&'static str, Vec<Arc<Resource>>>>,
    tx: Mutex<Option<watch::Sender<u64>>>,
    nacks: Mutex<Vec<String>>,
    acks: Mutex<Vec<(String, String)>>,
    /// Per type: bumped by each change of it (`View::generation`).
    generations: Mutex<BTreeMap<String, u64>>,
    /// Per type: how often a stream listed its resources.
    looked: Mutex<BTreeMap<String, usize>>,
}

impl TestSource {
    fn looked(&self, type_url: &str) -> usize {
        self.looked
            .lock()
            .expect("lock")
            .get(type_url)
            .copied()
            .unwrap_or(0)
    }

    fn set(&self, type_url: &'static str, resources: Vec<Resource>) {
        self.set_all(vec![(type_url, resources)]);
    }

    /// Changes several types at once, as one snapshot.
    fn set_all(&self, changes: Vec<(&'static str, Vec<Resource>)>) {
        let mut all = self.resources.lock().expect("lock");
        for (type_url, resources) in changes {
            all.insert(type_url, resources.into_iter().map(Arc::new).collect());
            *self
                .generations
                .lock()
                .expect("lock")
                .entry(type_url.to_string())
                .or_default() += 1;
        }
        drop(all);
        if let Some(tx) = &*self.tx.lock().expect("lock") {
            tx.send_modify(|v| *v += 1);
        }
    }
}

struct TestView(Arc<TestSource>, watch::Receiver<u64>);

impl View for TestView {
    fn resources(
        &self,
        type_url: &str,
        names: Option<&weft_xds::server::Names>,
    ) -> Vec<Arc<Resource>> {
        *self
            .0
            .looked
            .lock()
            .expect("lock")
            .entry(type_url.to_string())
            .or_default() += 1;
        let all = self
            .0
            .resources
            .lock()
            .expect("lock")
            .get(type_url)
            .cloned()
            .unwrap_or_default();
        all.into_iter()
            .filter(|r| names.is_none_or(|n| n.contains(&r.name)))
            .collect()
    }
    fn changes(&self) -> watch::Receiver<u64> {
        self.1.clone()
    }
    fn generation(&self, type_url: &str, _names: Option<&weft_xds::server::Names>) -> Option<u64> {
        Some(
            self.0
                .generations
                .lock()
                .expect("lock")
                .get(type_url)
                .copied()
                .unwrap_or(0),
        )
    }
    fn acked(&self, type_url: &str, version: &str) {
        self.0
            .acks
            .lock()
            .expect("lock")
            .push((type_url.to_string(), version.to_string()));
    }
    fn nacked(&self, _type_url: &str, _version: &str, message: &str) {
        self.0.nacks.lock().expect("lock").push(message.to_string());
    }
}

struct Shared(Arc<TestSource>);

impl Source for Shared {
    fn connect(
        &self,
        client: &ClientInfo,
        _: &tonic::metadata::MetadataMap,
    ) -> Result<Arc<dyn View>, tonic::Status> {
        assert_eq!(client.node.id, "node-1");
        let mut tx = self.0.tx.lock().expect("lock");
        let rx = tx.get_or_insert_with(|| watch::channel(0).0).subscribe();
        Ok(Arc::new(TestView(self.0.clone(), rx)))
    }
}

/// Records what it gets; refuses clusters named "bad"; subscribes to the endpoints of
/// every cluster it has.
#[derive(Clone, Default)]
struct Recorder {
    clusters: Arc<Mutex<BTreeMap<String, Cluster>>>,
    endpoints: Arc<Mutex<BTreeMap<String, ClusterLoadAssignment>>>,
    /// What arrived, in order: `endpoints:NAME` and `listener:NAME`.
    log: Arc<Mutex<Vec<String>>>,
}

impl Handler for Recorder {
    fn apply(&mut self, type_url: &str, update: Update) -> Result<(), String> {
        use prost::Message;
        match type_url {
            type_url::CLUSTER => {
                let mut next = match &update {
                    Update::Full(_) => BTreeMap::new(),
                    Update::Delta { .. } => self.clusters.lock().expect("lock").clone(),
                };
                let (changed, removed): (Vec<_>, Vec<String>) = match update {
                    Update::Full(list) => (
                        list.into_iter().map(|a| (String::new(), a)).collect(),
                        vec![],
                    ),
                    Update::Delta { changed, removed } => (changed, removed),
                };
                for (_, any) in changed {
                    let c = Cluster::decode(any.value.as_slice()).map_err(|e| e.to_string())?;
                    if c.name == "bad" {
                        return Err("cluster bad is refused".into());
                    }
                    next.insert(c.name.clone(), c);
                }
                for r in removed {
                    next.remove(&r);
                }
                *self.clusters.lock().expect("lock") = next;
            }
            type_url::CLUSTER_LOAD_ASSIGNMENT => {
                let list = match update {
                    Update::Full(list) => list,
                    Update::Delta { changed, .. } => changed.into_iter().map(|(_, a)| a).collect(),
                };
                for any in list {
                    let c = ClusterLoadAssignment::decode(any.value.as_slice())
                        .map_err(|e| e.to_string())?;
                    self.log
                        .lock()
                        .expect("lock")
                        .push(format!("endpoints:{}", c.cluster_name));
                    self.endpoints
                        .lock()
                        .expect("lock")
                        .insert(c.cluster_name.clone(), c);
                }
            }
            type_url::LISTENER => {
                let list = match update {
                    Update::Full(list) => list,
                    Update::Delta { changed, .. } => changed.into_iter().map(|(_, a)| a).collect(),
                };
                for any in list {
                    let l = Listener::decode(any.value.as_slice()).map_err(|e| e.to_string())?;
                    self.log
                        .lock()
                        .expect("lock")
                        .push(format!("listener:{}", l.name));
                }
            }
            type_url::VIRTUAL_HOST => {
                let list = match update {
                    Update::Full(list) => list,
                    Update::Delta { changed, .. } => changed.into_iter().map(|(_, a)| a).collect(),
                };
                for any in list {
                    let v = VirtualHost::decode(any.value.as_slice()).map_err(|e| e.to_string())?;
                    self.log
                        .lock()
                        .expect("lock")
                        .push(format!("vhost:{}", v.name));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn subscriptions(&self) -> Vec<(&'static str, Subscription)> {
        let names = self
            .clusters
            .lock()
            .expect("lock")
            .keys()
            .cloned()
            .collect();
        vec![
            (type_url::CLUSTER, Subscription::Wildcard),
            (type_url::LISTENER, Subscription::Wildcard),
            (
                type_url::CLUSTER_LOAD_ASSIGNMENT,
                Subscription::Names(names),
            ),
            (
                type_url::VIRTUAL_HOST,
                Subscription::Names(BTreeSet::from(["routes/to-d".to_string()])),
            ),
        ]
    }
}

fn cluster(name: &str, timeout: i64) -> Resource {
    let c = Cluster {
        name: name.into(),
        connect_timeout: Some(weft_xds::pb::google::protobuf::Duration {
            seconds: timeout,
            nanos: 0,
        }),
        ..Default::default()
    };
    Resource::new(name, &c)
}

fn eds_cluster(name: &str) -> Resource {
    let c = Cluster {
        name: name.into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        ..Default::default()
    };
    Resource::new(name, &c)
}

fn listener_named(name: &str) -> Resource {
    Resource::new(
        name,
        &Listener {
            name: name.into(),
            ..Default::default()
        },
    )
}

fn cla(name: &str) -> Resource {
    Resource::new(
        name,
        &ClusterLoadAssignment {
            cluster_name: name.into(),
            ..Default::default()
        },
    )
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn scenario(protocol: Protocol) {
    let source = Arc::new(TestSource::default());
    source.set(type_url::CLUSTER, vec![cluster("a", 1), cluster("b", 1)]);
    source.set(
        type_url::CLUSTER_LOAD_ASSIGNMENT,
        vec![cla("a"), cla("b"), cla("c")],
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local address");
    let server = AdsServer::new(Arc::new(Shared(source.clone()))).into_service();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let recorder = Recorder::default();
    let config = ClientConfig {
        endpoints: vec![format!("http://{addr}")],
        node: Node {
            id: "node-1".into(),
            ..Default::default()
        },
        protocol,
        token: None,
        max_backoff: Duration::from_secs(1),
    };
    tokio::spawn(client::run(config, recorder.clone()));

    let r = recorder.clone();
    eventually("initial clusters and their endpoints", || {
        r.clusters.lock().expect("lock").len() == 2 && r.endpoints.lock().expect("lock").len() == 2
    })
    .await;
    assert!(
        !recorder.endpoints.lock().expect("lock").contains_key("c"),
        "only named endpoints are sent"
    );

    // One assignment changes: only it is sent, in both variants (a state-of-the-world
    // response of endpoints may leave out what did not change).
    recorder.log.lock().expect("lock").clear();
    let clusters_looked = source.looked(type_url::CLUSTER);
    let endpoints_looked = source.looked(type_url::CLUSTER_LOAD_ASSIGNMENT);
    let mut changed_a = ClusterLoadAssignment {
        cluster_name: "a".into(),
        ..Default::default()
    };
    changed_a.policy = Some(Default::default());
    source.set(
        type_url::CLUSTER_LOAD_ASSIGNMENT,
        vec![Resource::new("a", &changed_a), cla("b"), cla("c")],
    );
    let log = recorder.log.clone();
    eventually("the changed assignment", || {
        log.lock().expect("lock").iter().any(|e| e == "endpoints:a")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        *log.lock().expect("lock"),
        ["endpoints:a"],
        "only what changed"
    );
    // Woken by the change, the stream looked at the endpoints only: the clusters'
    // generation had not moved.
    assert_eq!(source.looked(type_url::CLUSTER), clusters_looked);
    assert!(source.looked(type_url::CLUSTER_LOAD_ASSIGNMENT) > endpoints_looked);
    source.set(
        type_url::CLUSTER_LOAD_ASSIGNMENT,
        vec![cla("a"), cla("b"), cla("c")],
    );

    // A new cluster: its endpoints follow through the grown subscription.
    source.set(
        type_url::CLUSTER,
        vec![cluster("a", 1), cluster("b", 1), cluster("c", 1)],
    );
    eventually("cluster c and its endpoints", || {
        r.endpoints.lock().expect("lock").contains_key("c")
    })
    .await;

    // A change, then a removal.
    source.set(type_url::CLUSTER, vec![cluster("a", 2), cluster("c", 1)]);
    eventually("a updated, b removed", || {
        let c = r.clusters.lock().expect("lock");
        c.len() == 2 && c["a"].connect_timeout.as_ref().map(|d| d.seconds) == Some(2)
    })
    .await;

    // A resource the client refuses is NACKed; the client keeps what it had.
    source.set(type_url::CLUSTER, vec![cluster("a", 2), cluster("bad", 1)]);
    let s = source.clone();
    eventually("a NACK", || !s.nacks.lock().expect("lock").is_empty()).await;
    assert_eq!(
        source.nacks.lock().expect("lock")[0],
        "cluster bad is refused"
    );
    assert!(
        recorder.clusters.lock().expect("lock").contains_key("c"),
        "last good configuration kept"
    );
    assert!(!source.acks.lock().expect("lock").is_empty());

    // A new EDS cluster and a listener and a virtual host that use it, in one change:
    // they wait until the client has subscribed to the cluster's endpoints and received
    // them.
    source.set_all(vec![
        (type_url::CLUSTER, vec![cluster("a", 2), eds_cluster("d")]),
        (
            type_url::CLUSTER_LOAD_ASSIGNMENT,
            vec![cla("a"), cla("b"), cla("c"), cla("d")],
        ),
        (type_url::LISTENER, vec![listener_named("to-d")]),
        (
            type_url::VIRTUAL_HOST,
            vec![Resource::new(
                "routes/to-d",
                &VirtualHost {
                    name: "routes/to-d".into(),
                    ..Default::default()
                },
            )],
        ),
    ]);
    let log = recorder.log.clone();
    eventually("the listener and the virtual host", || {
        let log = log.lock().expect("lock");
        log.iter().any(|e| e == "listener:to-d") && log.iter().any(|e| e == "vhost:routes/to-d")
    })
    .await;
    let log = log.lock().expect("lock").clone();
    let at = |e: &str| log.iter().position(|x| x == e);
    assert!(
        at("endpoints:d") < at("listener:to-d") && at("endpoints:d").is_some(),
        "endpoints before the listener that routes to them: {log:?}"
    );
    assert!(
        at("endpoints:d") < at("vhost:routes/to-d"),
        "endpoints before the virtual host that routes to them: {log:?}"
    );
}

#[tokio::test]
async fn state_of_the_world() {
    scenario(Protocol::Sotw).await;
}

#[tokio::test]
async fn incremental() {
    scenario(Protocol::Delta).await;
}
