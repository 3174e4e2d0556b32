//! The aggregated discovery service (ADS) over gRPC, state-of-the-world and incremental
//! (delta), as Envoy's xDS protocol defines them: subscriptions by name or wildcard,
//! versions and nonces, ACK and NACK, stale nonces ignored, and a push only when what a
//! client subscribed to has changed. What each client sees comes from a [`Source`].

use crate::pb::envoy::config::core::v3::Node;
use crate::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use crate::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
    Resource as DeltaResource,
};
use crate::resource::Resource;
use crate::type_url;
use crate::warming::{self, Warming};
use futures_util::{Stream, StreamExt};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status, Streaming};
use xxhash_rust::xxh64::xxh64;

/// Which resources of a type a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    /// Every resource of the type.
    Wildcard,
    /// These names.
    Names(BTreeSet<String>),
}

impl Subscription {
    /// The names, or `None` for a wildcard.
    pub fn names(&self) -> Option<&BTreeSet<String>> {
        match self {
            Subscription::Wildcard => None,
            Subscription::Names(n) => Some(n),
        }
    }
}

/// A connected client, as its first request describes it.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// Unique per stream in this process.
    pub stream_id: u64,
    /// The node it sent (empty for clients that send none, like some gRPC clients).
    pub node: Node,
    /// Its address.
    pub peer: Option<SocketAddr>,
    /// Whether it speaks the incremental protocol.
    pub delta: bool,
}

/// What one client sees; dropped when its stream ends.
pub trait View: Send + Sync + 'static {
    /// The resources of `type_url` visible to the client, limited to `names` when given.
    fn resources(&self, type_url: &str, names: Option<&BTreeSet<String>>) -> Vec<Arc<Resource>>;
    /// Changes (its value is irrelevant) whenever something the client may see changed.
    fn changes(&self) -> watch::Receiver<u64>;
    /// The client applied `version` of `type_url`.
    fn acked(&self, type_url: &str, version: &str);
    /// The client rejected `version` of `type_url`.
    fn nacked(&self, type_url: &str, version: &str, message: &str);
    /// A response was sent.
    fn pushed(&self, _push: &Pushed<'_>) {}
}

/// What one response carried.
#[derive(Debug, Clone, Copy)]
pub struct Pushed<'a> {
    /// Its type.
    pub type_url: &'a str,
    /// The version it carries.
    pub version: &'a str,
    /// Resources in it (changed ones only, for delta).
    pub resources: usize,
    /// Its encoded size.
    pub bytes: usize,
}

/// Admits clients and gives each its view.
pub trait Source: Send + Sync + 'static {
    /// Called with a stream's first request: authenticate (from `metadata`), register,
    /// and return the client's view, or refuse the stream.
    fn connect(
        &self,
        client: &ClientInfo,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Arc<dyn View>, Status>;
}

/// The ADS service, ready to be added to a tonic server.
pub struct AdsServer<S> {
    source: Arc<S>,
    streams: AtomicU64,
}

impl<S: Source> AdsServer<S> {
    /// A server drawing on `source`.
    pub fn new(source: Arc<S>) -> Self {
        AdsServer {
            source,
            streams: AtomicU64::new(1),
        }
    }

    /// The tonic service.
    pub fn into_service(self) -> AggregatedDiscoveryServiceServer<Self> {
        AggregatedDiscoveryServiceServer::new(self).max_decoding_message_size(64 * 1024 * 1024)
    }
}

/// Order in which types are pushed after a change: clusters before their endpoints,
/// listeners before their routes ("make before break").
const PUSH_ORDER: [&str; 5] = [
    type_url::CLUSTER,
    type_url::CLUSTER_LOAD_ASSIGNMENT,
    type_url::LISTENER,
    type_url::ROUTE_CONFIGURATION,
    type_url::SECRET,
];

/// Types whose empty subscription means "everything" (legacy wildcard).
fn wildcard_by_default(type_url: &str) -> bool {
    type_url == type_url::LISTENER || type_url == type_url::CLUSTER
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

static NONCES: AtomicU64 = AtomicU64::new(1);

fn next_nonce() -> String {
    NONCES.fetch_add(1, Ordering::Relaxed).to_string()
}

/// A deterministic version for a set of resources, equal on every replica.
fn set_version(resources: &[Arc<Resource>]) -> String {
    let mut key = String::new();
    for r in resources {
        key.push_str(&r.name);
        key.push('\0');
        key.push_str(&r.version);
        key.push('\0');
    }
    let mut v = String::with_capacity(16);
    let _ = write!(v, "{:016x}", xxh64(key.as_bytes(), 0));
    v
}

#[tonic::async_trait]
impl<S: Source> AggregatedDiscoveryService for AdsServer<S> {
    type StreamAggregatedResourcesStream = BoxStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = BoxStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let peer = request.remote_addr();
        let metadata = request.metadata().clone();
        let mut inbound = request.into_inner();
        let first = match inbound.next().await {
            Some(Ok(r)) => r,
            Some(Err(e)) => return Err(e),
            None => return Err(Status::cancelled("stream closed before its first request")),
        };
        let client = ClientInfo {
            stream_id: self.streams.fetch_add(1, Ordering::Relaxed),
            node: first.node.clone().unwrap_or_default(),
            peer,
            delta: false,
        };
        let view = self.source.connect(&client, &metadata)?;
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(sotw_loop(view, first, inbound, tx));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let peer = request.remote_addr();
        let metadata = request.metadata().clone();
        let mut inbound = request.into_inner();
        let first = match inbound.next().await {
            Some(Ok(r)) => r,
            Some(Err(e)) => return Err(e),
            None => return Err(Status::cancelled("stream closed before its first request")),
        };
        let client = ClientInfo {
            stream_id: self.streams.fetch_add(1, Ordering::Relaxed),
            node: first.node.clone().unwrap_or_default(),
            peer,
            delta: true,
        };
        let view = self.source.connect(&client, &metadata)?;
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(delta_loop(view, first, inbound, tx));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// State-of-the-world: what was last sent for one type.
#[derive(Default)]
struct SotwType {
    subscription: Option<Subscription>,
    nonce: String,
    version: String,
    /// name → version of what was last sent.
    sent: Option<BTreeMap<String, String>>,
}

async fn sotw_loop(
    view: Arc<dyn View>,
    first: DiscoveryRequest,
    mut inbound: Streaming<DiscoveryRequest>,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
) {
    let mut types: HashMap<String, SotwType> = HashMap::new();
    let mut warming = Warming::default();
    let mut changes = view.changes();
    changes.mark_unchanged();
    let mut next = Some(first);
    loop {
        if let Some(req) = next.take() {
            if sotw_request(&*view, &mut types, req, &tx).await.is_err() {
                return;
            }
            let subscribed = |name: &str| sotw_subscribed(&types, name);
            if warming.satisfied(subscribed) {
                warming.clear();
                if sotw_push_held(&*view, &mut types, &tx).await.is_err() {
                    return;
                }
            }
            continue;
        }
        tokio::select! {
            req = inbound.next() => match req {
                Some(Ok(r)) => next = Some(r),
                _ => return,
            },
            _ = warming.expired() => {
                warming.clear();
                if sotw_push_held(&*view, &mut types, &tx).await.is_err() {
                    return;
                }
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                for t in ordered_types(types.keys()) {
                    if warming.holds(&t) {
                        continue;
                    }
                    let before = sotw_sent_names(&types, &t);
                    if sotw_push(&*view, &mut types, &t, false, &tx).await.is_err() {
                        return;
                    }
                    if t == type_url::CLUSTER && types.contains_key(type_url::CLUSTER_LOAD_ASSIGNMENT) {
                        let added: BTreeSet<String> =
                            sotw_sent_names(&types, &t).difference(&before).cloned().collect();
                        if !added.is_empty() {
                            let clusters = view.resources(type_url::CLUSTER, Some(&added));
                            let missing = warming::eds_names(&clusters)
                                .into_iter()
                                .filter(|n| !sotw_subscribed(&types, n))
                                .collect();
                            warming.start(missing);
                        }
                    }
                }
            }
        }
    }
}

/// Names last sent of a type.
fn sotw_sent_names(types: &HashMap<String, SotwType>, type_url: &str) -> BTreeSet<String> {
    types
        .get(type_url)
        .and_then(|s| s.sent.as_ref())
        .map(|sent| sent.keys().cloned().collect())
        .unwrap_or_default()
}

/// Whether the client subscribes to the endpoints named `name`.
fn sotw_subscribed(types: &HashMap<String, SotwType>, name: &str) -> bool {
    match types
        .get(type_url::CLUSTER_LOAD_ASSIGNMENT)
        .and_then(|s| s.subscription.as_ref())
    {
        Some(Subscription::Wildcard) => true,
        Some(Subscription::Names(n)) => n.contains(name),
        None => false,
    }
}

/// Pushes what the warming hold kept back.
async fn sotw_push_held(
    view: &dyn View,
    types: &mut HashMap<String, SotwType>,
    tx: &mpsc::Sender<Result<DiscoveryResponse, Status>>,
) -> Result<(), ()> {
    for t in [type_url::LISTENER, type_url::ROUTE_CONFIGURATION] {
        sotw_push(view, types, t, false, tx).await?;
    }
    Ok(())
}

/// The subscribed types in push order.
fn ordered_types<'a>(types: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut list: Vec<String> = types.cloned().collect();
    list.sort_by_key(|t| {
        PUSH_ORDER
            .iter()
            .position(|p| p == t)
            .unwrap_or(PUSH_ORDER.len())
    });
    list
}

async fn sotw_request(
    view: &dyn View,
    types: &mut HashMap<String, SotwType>,
    req: DiscoveryRequest,
    tx: &mpsc::Sender<Result<DiscoveryResponse, Status>>,
) -> Result<(), ()> {
    if req.type_url.is_empty() {
        return Ok(());
    }
    let state = types.entry(req.type_url.clone()).or_default();
    if !req.response_nonce.is_empty() && req.response_nonce != state.nonce {
        // An answer to an older response: a newer one is on its way to the client.
        return Ok(());
    }
    if !req.response_nonce.is_empty() {
        match &req.error_detail {
            Some(err) => view.nacked(&req.type_url, &state.version, &err.message),
            None => view.acked(&req.type_url, &state.version),
        }
    }
    let subscription = if req.resource_names.is_empty() && wildcard_by_default(&req.type_url) {
        Subscription::Wildcard
    } else {
        Subscription::Names(req.resource_names.iter().cloned().collect())
    };
    let changed = state.subscription.as_ref() != Some(&subscription);
    state.subscription = Some(subscription);
    // A NACK with an unchanged subscription waits for new content; anything else may
    // need an answer.
    if req.error_detail.is_some() && !changed {
        return Ok(());
    }
    sotw_push(view, types, &req.type_url, changed, tx).await
}

async fn sotw_push(
    view: &dyn View,
    types: &mut HashMap<String, SotwType>,
    type_url: &str,
    force: bool,
    tx: &mpsc::Sender<Result<DiscoveryResponse, Status>>,
) -> Result<(), ()> {
    let Some(state) = types.get_mut(type_url) else {
        return Ok(());
    };
    let Some(subscription) = &state.subscription else {
        return Ok(());
    };
    let resources = view.resources(type_url, subscription.names());
    let now: BTreeMap<String, String> = resources
        .iter()
        .map(|r| (r.name.clone(), r.version.clone()))
        .collect();
    if !force && state.sent.as_ref() == Some(&now) {
        return Ok(());
    }
    // Named subscriptions get nothing until something they named exists, except that a
    // changed subscription is always answered (gRPC clients wait for it).
    state.version = set_version(&resources);
    state.nonce = next_nonce();
    state.sent = Some(now);
    let response = DiscoveryResponse {
        version_info: state.version.clone(),
        resources: resources.iter().map(|r| r.body.clone()).collect(),
        type_url: type_url.to_string(),
        nonce: state.nonce.clone(),
        ..Default::default()
    };
    view.pushed(&Pushed {
        type_url,
        version: &state.version,
        resources: resources.len(),
        bytes: prost::Message::encoded_len(&response),
    });
    tx.send(Ok(response)).await.map_err(|_| ())
}

/// Incremental: what the client holds for one type.
#[derive(Default)]
struct DeltaType {
    wildcard: bool,
    names: BTreeSet<String>,
    /// name → version the client has.
    known: HashMap<String, String>,
    nonce: String,
    version: String,
    answered: bool,
}

async fn delta_loop(
    view: Arc<dyn View>,
    first: DeltaDiscoveryRequest,
    mut inbound: Streaming<DeltaDiscoveryRequest>,
    tx: mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>,
) {
    let mut types: HashMap<String, DeltaType> = HashMap::new();
    let mut warming = Warming::default();
    let mut changes = view.changes();
    changes.mark_unchanged();
    let mut next = Some(first);
    loop {
        if let Some(req) = next.take() {
            if delta_request(&*view, &mut types, req, &tx).await.is_err() {
                return;
            }
            if warming.satisfied(|name| delta_subscribed(&types, name)) {
                warming.clear();
                if delta_push_held(&*view, &mut types, &tx).await.is_err() {
                    return;
                }
            }
            continue;
        }
        tokio::select! {
            req = inbound.next() => match req {
                Some(Ok(r)) => next = Some(r),
                _ => return,
            },
            _ = warming.expired() => {
                warming.clear();
                if delta_push_held(&*view, &mut types, &tx).await.is_err() {
                    return;
                }
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                for t in ordered_types(types.keys()) {
                    if warming.holds(&t) {
                        continue;
                    }
                    let before = delta_known_names(&types, &t);
                    if delta_push(&*view, &mut types, &t, &tx).await.is_err() {
                        return;
                    }
                    if t == type_url::CLUSTER && types.contains_key(type_url::CLUSTER_LOAD_ASSIGNMENT) {
                        let added: BTreeSet<String> =
                            delta_known_names(&types, &t).difference(&before).cloned().collect();
                        if !added.is_empty() {
                            let clusters = view.resources(type_url::CLUSTER, Some(&added));
                            let missing = warming::eds_names(&clusters)
                                .into_iter()
                                .filter(|n| !delta_subscribed(&types, n))
                                .collect();
                            warming.start(missing);
                        }
                    }
                }
            }
        }
    }
}

/// Names the client holds of a type.
fn delta_known_names(types: &HashMap<String, DeltaType>, type_url: &str) -> BTreeSet<String> {
    types
        .get(type_url)
        .map(|s| s.known.keys().cloned().collect())
        .unwrap_or_default()
}

/// Whether the client subscribes to the endpoints named `name`.
fn delta_subscribed(types: &HashMap<String, DeltaType>, name: &str) -> bool {
    types
        .get(type_url::CLUSTER_LOAD_ASSIGNMENT)
        .is_some_and(|s| s.wildcard || s.names.contains(name))
}

/// Pushes what the warming hold kept back.
async fn delta_push_held(
    view: &dyn View,
    types: &mut HashMap<String, DeltaType>,
    tx: &mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>,
) -> Result<(), ()> {
    for t in [type_url::LISTENER, type_url::ROUTE_CONFIGURATION] {
        delta_push(view, types, t, tx).await?;
    }
    Ok(())
}

async fn delta_request(
    view: &dyn View,
    types: &mut HashMap<String, DeltaType>,
    req: DeltaDiscoveryRequest,
    tx: &mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>,
) -> Result<(), ()> {
    if req.type_url.is_empty() {
        return Ok(());
    }
    let fresh = !types.contains_key(&req.type_url);
    let state = types.entry(req.type_url.clone()).or_default();
    if fresh {
        // An empty first subscription is the legacy wildcard for listeners and clusters.
        state.wildcard =
            req.resource_names_subscribe.is_empty() && wildcard_by_default(&req.type_url);
        state.known = req.initial_resource_versions.clone().into_iter().collect();
    }
    if !req.response_nonce.is_empty() {
        if req.response_nonce != state.nonce {
            return Ok(());
        }
        match &req.error_detail {
            Some(err) => {
                view.nacked(&req.type_url, &state.version, &err.message);
                // The client kept its previous resources; forget what we think it has so
                // the next change resends them.
                state.known.clear();
            }
            None => view.acked(&req.type_url, &state.version),
        }
    }
    let mut changed = false;
    for name in &req.resource_names_subscribe {
        if name == "*" {
            changed |= !state.wildcard;
            state.wildcard = true;
        } else {
            changed |= state.names.insert(name.clone());
        }
    }
    for name in &req.resource_names_unsubscribe {
        if name == "*" {
            state.wildcard = false;
        } else {
            state.names.remove(name);
            state.known.remove(name);
        }
        changed = true;
    }
    if changed || fresh {
        return delta_push(view, types, &req.type_url, tx).await;
    }
    Ok(())
}

async fn delta_push(
    view: &dyn View,
    types: &mut HashMap<String, DeltaType>,
    type_url: &str,
    tx: &mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>,
) -> Result<(), ()> {
    let Some(state) = types.get_mut(type_url) else {
        return Ok(());
    };
    let resources = if state.wildcard {
        view.resources(type_url, None)
    } else {
        view.resources(type_url, Some(&state.names))
    };
    let mut send = Vec::new();
    let mut present = BTreeSet::new();
    for r in &resources {
        present.insert(r.name.as_str());
        if state.known.get(&r.name) != Some(&r.version) {
            send.push(r.clone());
        }
    }
    let removed: Vec<String> = state
        .known
        .keys()
        .filter(|name| !present.contains(name.as_str()))
        .cloned()
        .collect();
    // The first answer to a wildcard is sent even when empty: clients wait for it.
    if send.is_empty() && removed.is_empty() && (state.answered || !state.wildcard) {
        return Ok(());
    }
    for r in &send {
        state.known.insert(r.name.clone(), r.version.clone());
    }
    for name in &removed {
        state.known.remove(name);
    }
    state.answered = true;
    state.nonce = next_nonce();
    state.version = set_version(&resources);
    let response = DeltaDiscoveryResponse {
        system_version_info: state.version.clone(),
        resources: send
            .iter()
            .map(|r| DeltaResource {
                name: r.name.clone(),
                version: r.version.clone(),
                resource: Some(r.body.clone()),
                ..Default::default()
            })
            .collect(),
        type_url: type_url.to_string(),
        removed_resources: removed,
        nonce: state.nonce.clone(),
        ..Default::default()
    };
    view.pushed(&Pushed {
        type_url,
        version: &state.version,
        resources: send.len(),
        bytes: prost::Message::encoded_len(&response),
    });
    tx.send(Ok(response)).await.map_err(|_| ())
}
