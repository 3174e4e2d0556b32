//! The aggregated discovery service (ADS) over gRPC, state-of-the-world and incremental
//! (delta), as Envoy's xDS protocol defines them: subscriptions by name or wildcard,
//! versions and nonces, ACK and NACK, stale nonces ignored, and a push only when what a
//! client subscribed to has changed. What each client sees comes from a [`Source`].
//!
//! Built for many clients sharing one snapshot:
//!
//! - **No copies per client.** A response holds the snapshot's `Arc<Resource>`s and is
//!   encoded lazily, a bounded chunk at a time, as its connection takes the bytes
//!   ([`AdsBody`]); the stream yields between chunks, so a push to a thousand clients
//!   holds about a chunk per client in memory, not a whole response per client. (tonic's
//!   generated server would clone every resource into each response, and its encoder
//!   keeps a buffer as large as the largest response ever sent on each stream.)
//! - **Cheap when nothing changed.** Each stream keeps, per type, a 64-bit hash of the
//!   names and versions it last sent (state of the world), or the resources the client
//!   holds keyed by name (delta, shared with the snapshot); a change that does not touch
//!   a type costs one pass over it and no allocation.

pub use crate::names::{NameSet, Names};
use crate::pb::envoy::config::core::v3::Node;
use crate::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use crate::pb::google::protobuf::Any;
use crate::requests::Requests;
use crate::resource::Resource;
use crate::type_url;
use crate::warming::{self, Warming};
use bytes::{BufMut, Bytes, BytesMut};
use http_body::Frame;
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use std::borrow::Borrow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::convert::Infallible;
use std::fmt::Write;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{mpsc, watch};
use tonic::Status;
use xxhash_rust::xxh64::Xxh64;

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
    /// Who it proved to be ([`Source::authenticate`]), when it had to.
    pub principal: Option<String>,
}

/// What one client sees; dropped when its stream ends.
pub trait View: Send + Sync + 'static {
    /// The resources of `type_url` visible to the client, limited to `names` when given.
    fn resources(&self, type_url: &str, names: Option<&Names>) -> Vec<Arc<Resource>>;
    /// Changes (its value is irrelevant) whenever something the client may see changed.
    fn changes(&self) -> watch::Receiver<u64>;
    /// A number that changes whenever what [`View::resources`] returns for `type_url`
    /// and `names` may have changed; `None` (the default) when unknown. A stream woken
    /// by a change skips the types whose generation is the one it last looked at, so
    /// a change costs each client only the types it touched.
    fn generation(&self, _type_url: &str, _names: Option<&Names>) -> Option<u64> {
        None
    }
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

/// What [`Source::authenticate`] returns.
pub type Authenticating<'a> =
    Pin<Box<dyn Future<Output = Result<Option<String>, Status>> + Send + 'a>>;

/// Admits clients and gives each its view.
pub trait Source: Send + Sync + 'static {
    /// Called first with a stream's credentials (`metadata`): the principal they prove,
    /// or the reason the stream is refused. By default everyone is admitted, anonymous.
    fn authenticate<'a>(
        &'a self,
        _metadata: &'a tonic::metadata::MetadataMap,
        _peer: Option<SocketAddr>,
    ) -> Authenticating<'a> {
        Box::pin(async { Ok(None) })
    }

    /// Called with a stream's first request once authenticated: check the node against
    /// the principal, register, and return the client's view, or refuse the stream.
    fn connect(
        &self,
        client: &ClientInfo,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Arc<dyn View>, Status>;
}

/// The ADS server: streams drawing on a [`Source`].
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

    /// The gRPC service, ready to be added to a tonic server.
    pub fn into_service(self) -> AdsService<S> {
        AdsService {
            server: Arc::new(self),
        }
    }
}

/// The gRPC name of the service.
const SERVICE_NAME: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// Largest request accepted (a state-of-the-world request names every resource it
/// subscribes to).
const MAX_REQUEST: usize = 64 * 1024 * 1024;

/// Buffered responses per stream (each holds `Arc`s, not bytes).
const QUEUED_RESPONSES: usize = 16;

/// The ADS as a tower service for tonic's router: both methods of
/// `envoy.service.discovery.v3.AggregatedDiscoveryService`, requests decoded by tonic,
/// responses encoded by [`AdsBody`].
pub struct AdsService<S> {
    server: Arc<AdsServer<S>>,
}

impl<S> Clone for AdsService<S> {
    fn clone(&self) -> Self {
        AdsService {
            server: self.server.clone(),
        }
    }
}

impl<S> tonic::server::NamedService for AdsService<S> {
    const NAME: &'static str = SERVICE_NAME;
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, Infallible>> + Send>>;

impl<S: Source> tonic::codegen::Service<http::Request<tonic::body::Body>> for AdsService<S> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> ResponseFuture {
        let server = self.server.clone();
        Box::pin(async move {
            let opened = match request.uri().path() {
                SOTW_PATH => server.open(request, false).await,
                DELTA_PATH => server.open(request, true).await,
                other => Err(Status::unimplemented(format!(
                    "{other} is not a method of {SERVICE_NAME}"
                ))),
            };
            Ok(opened.unwrap_or_else(|status| status.into_http()))
        })
    }
}

/// A stream's requests.
type Inbound<R> = Requests<tonic::body::Body, R>;

/// The first request of a stream, for either variant.
trait FirstRequest: prost::Message + Default + Send + 'static {
    fn node(&self) -> Option<&Node>;
}

impl FirstRequest for DiscoveryRequest {
    fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }
}

impl FirstRequest for DeltaDiscoveryRequest {
    fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }
}

impl<S: Source> AdsServer<S> {
    /// Reads a stream's first request, admits the client and starts its loop; the
    /// response's body carries what the loop sends.
    async fn open(
        &self,
        request: http::Request<tonic::body::Body>,
        delta: bool,
    ) -> Result<http::Response<tonic::body::Body>, Status> {
        let peer = request
            .extensions()
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(|i| i.remote_addr());
        let (parts, body) = request.into_parts();
        let metadata = tonic::metadata::MetadataMap::from_headers(parts.headers);
        let (tx, rx) = mpsc::channel(QUEUED_RESPONSES);
        if delta {
            let (first, inbound, view) = self
                .admit::<DeltaDiscoveryRequest>(body, peer, &metadata, true)
                .await?;
            tokio::spawn(delta_loop(view, first, inbound, tx));
        } else {
            let (first, inbound, view) = self
                .admit::<DiscoveryRequest>(body, peer, &metadata, false)
                .await?;
            tokio::spawn(sotw_loop(view, first, inbound, tx));
        }
        let mut response = http::Response::new(tonic::body::Body::new(AdsBody::new(rx)));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        Ok(response)
    }

    async fn admit<R: FirstRequest>(
        &self,
        body: tonic::body::Body,
        peer: Option<SocketAddr>,
        metadata: &tonic::metadata::MetadataMap,
        delta: bool,
    ) -> Result<(R, Inbound<R>, Arc<dyn View>), Status> {
        let principal = self.source.authenticate(metadata, peer).await?;
        let mut inbound: Inbound<R> = Requests::new(body, MAX_REQUEST);
        let first = match inbound.next().await {
            Some(Ok(r)) => r,
            Some(Err(e)) => return Err(e),
            None => return Err(Status::cancelled("stream closed before its first request")),
        };
        let client = ClientInfo {
            stream_id: self.streams.fetch_add(1, Ordering::Relaxed),
            node: first.node().cloned().unwrap_or_default(),
            peer,
            delta,
            principal,
        };
        let view = self.source.connect(&client, metadata)?;
        Ok((first, inbound, view))
    }
}

/// Order in which types are pushed after a change: clusters before their endpoints,
/// listeners before their routes, route configurations before their virtual hosts
/// ("make before break").
const PUSH_ORDER: [&str; 6] = [
    type_url::CLUSTER,
    type_url::CLUSTER_LOAD_ASSIGNMENT,
    type_url::LISTENER,
    type_url::ROUTE_CONFIGURATION,
    type_url::VIRTUAL_HOST,
    type_url::SECRET,
];

/// Types whose empty subscription means "everything" (legacy wildcard).
fn wildcard_by_default(type_url: &str) -> bool {
    type_url == type_url::LISTENER || type_url == type_url::CLUSTER
}

static NONCES: AtomicU64 = AtomicU64::new(1);

fn next_nonce() -> String {
    NONCES.fetch_add(1, Ordering::Relaxed).to_string()
}

/// A deterministic version for a set of resources, equal on every replica: the hash of
/// their names and versions (hashed as they stream by, nothing is allocated).
fn set_version(resources: &[Arc<Resource>]) -> String {
    let mut hash = Xxh64::new(0);
    for r in resources {
        hash.update(r.name.as_bytes());
        hash.update(&[0]);
        hash.update(r.version.as_bytes());
        hash.update(&[0]);
    }
    let mut v = String::with_capacity(16);
    let _ = write!(v, "{:016x}", hash.digest());
    v
}

/// What a stream subscribed to, as the server keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sub {
    Wildcard,
    Names(Names),
}

impl Sub {
    fn names(&self) -> Option<&Names> {
        match self {
            Sub::Wildcard => None,
            Sub::Names(n) => Some(n),
        }
    }
}

/// State-of-the-world: what was last sent for one type.
#[derive(Default)]
struct SotwType {
    subscription: Option<Sub>,
    nonce: String,
    version: String,
    /// The [`set_version`] of what was last sent.
    sent: Option<String>,
    /// What the client was last sent of each resource: tells which clusters a push
    /// adds, and which endpoints and routes changed.
    known: HashSet<Known>,
    /// The [`View::generation`] last looked at after a change.
    seen: Option<u64>,
}

/// Whether a state-of-the-world response of `type_url` may carry only what changed.
/// The xDS protocol allows it for every type but listeners and clusters, whose
/// responses are the whole set (what is absent is removed); for the rest the client
/// keeps what a response leaves out. Without it, one endpoint changing re-sends every
/// assignment to every client.
fn sotw_partial(type_url: &str) -> bool {
    !matches!(type_url, type_url::LISTENER | type_url::CLUSTER)
}

async fn sotw_loop(
    view: Arc<dyn View>,
    first: DiscoveryRequest,
    mut inbound: Inbound<DiscoveryRequest>,
    tx: mpsc::Sender<Outgoing>,
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
            if warming.satisfied(|name| sotw_subscribed(&types, name)) {
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
                    if sotw_unchanged(&*view, &types, &t) {
                        continue;
                    }
                    let Ok(added) = sotw_push(&*view, &mut types, &t, false, &tx).await else {
                        return;
                    };
                    if types.contains_key(type_url::CLUSTER_LOAD_ASSIGNMENT) {
                        warming.start(warming::missing(&added, |n| sotw_subscribed(&types, n)));
                    }
                }
            }
        }
    }
}

/// After a change: whether `type_url`'s generation is the one the stream last looked
/// at, so that there is nothing to do.
fn sotw_unchanged(view: &dyn View, types: &HashMap<String, SotwType>, type_url: &str) -> bool {
    let Some(state) = types.get(type_url) else {
        return true;
    };
    let names = state.subscription.as_ref().and_then(Sub::names);
    state.seen.is_some() && view.generation(type_url, names) == state.seen
}

/// [`sotw_unchanged`] for delta streams.
fn delta_unchanged(view: &dyn View, types: &HashMap<String, DeltaType>, type_url: &str) -> bool {
    let Some(state) = types.get(type_url) else {
        return true;
    };
    let names = (!state.wildcard).then_some(&state.names);
    state.seen.is_some() && view.generation(type_url, names) == state.seen
}

/// Whether the client subscribes to the endpoints named `name`.
fn sotw_subscribed(types: &HashMap<String, SotwType>, name: &str) -> bool {
    match types
        .get(type_url::CLUSTER_LOAD_ASSIGNMENT)
        .and_then(|s| s.subscription.as_ref())
    {
        Some(Sub::Wildcard) => true,
        Some(Sub::Names(n)) => n.contains(name),
        None => false,
    }
}

/// Pushes what the warming hold kept back.
async fn sotw_push_held(
    view: &dyn View,
    types: &mut HashMap<String, SotwType>,
    tx: &mpsc::Sender<Outgoing>,
) -> Result<(), ()> {
    for t in warming::ROUTING {
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
    tx: &mpsc::Sender<Outgoing>,
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
            Some(err) => {
                view.nacked(&req.type_url, &state.version, &err.message);
                // The next change looks again, whatever it touched.
                state.seen = None;
            }
            None => view.acked(&req.type_url, &state.version),
        }
    }
    // Every request repeats the whole list: compared first, interned only if new.
    let changed = if req.resource_names.is_empty() && wildcard_by_default(&req.type_url) {
        state.subscription != Some(Sub::Wildcard)
    } else {
        !matches!(&state.subscription, Some(Sub::Names(n)) if n.same_as(&req.resource_names))
    };
    if changed {
        state.subscription = Some(
            if req.resource_names.is_empty() && wildcard_by_default(&req.type_url) {
                Sub::Wildcard
            } else {
                Sub::Names(req.resource_names.into_iter().collect())
            },
        );
    }
    // A NACK with an unchanged subscription waits for new content; anything else may
    // need an answer.
    if req.error_detail.is_some() && !changed {
        return Ok(());
    }
    sotw_push(view, types, &req.type_url, changed, tx)
        .await
        .map(drop)
}

async fn sotw_push(
    view: &dyn View,
    types: &mut HashMap<String, SotwType>,
    type_url: &str,
    force: bool,
    tx: &mpsc::Sender<Outgoing>,
) -> Result<Vec<Arc<Resource>>, ()> {
    let Some(state) = types.get_mut(type_url) else {
        return Ok(Vec::new());
    };
    let Some(subscription) = &state.subscription else {
        return Ok(Vec::new());
    };
    // Read before the resources, so that it is never newer than what they show.
    let generation = view.generation(type_url, subscription.names());
    let resources = view.resources(type_url, subscription.names());
    state.seen = generation;
    let version = set_version(&resources);
    if !force && state.sent.as_deref() == Some(version.as_str()) {
        return Ok(Vec::new());
    }
    // One pass: what is new to the client (clusters: for the warming hold), what
    // changed, and what it holds that is still there. `known` is updated in place: a
    // change of one resource touches one entry, not a set rebuilt per client.
    let partial = sotw_partial(type_url);
    let Compared {
        changed,
        added,
        held,
    } = compare(&state.known, &resources, type_url);
    if held != state.known.len() {
        let present: HashSet<&str> = resources.iter().map(|r| r.name.as_str()).collect();
        state.known.retain(|k| present.contains(k.0.name.as_str()));
    }
    for r in &changed {
        state.known.replace(Known(r.clone()));
    }
    // A changed subscription is answered even when nothing in it is new to the client.
    let send: Vec<Arc<Resource>> = if partial { changed } else { resources };
    if send.is_empty() && partial && !force && state.sent.is_some() {
        // Only removals: the client drops what it no longer subscribes to itself.
        state.sent = Some(version);
        return Ok(added);
    }
    // Named subscriptions get nothing until something they named exists, except that a
    // changed subscription is always answered (gRPC clients wait for it).
    state.nonce = next_nonce();
    state.sent = Some(version.clone());
    state.version = version;
    let head = DiscoveryResponse {
        version_info: state.version.clone(),
        type_url: type_url.to_string(),
        nonce: state.nonce.clone(),
        ..Default::default()
    };
    let out = Outgoing::new(prost::Message::encode_to_vec(&head), send, false);
    view.pushed(&Pushed {
        type_url,
        version: &state.version,
        resources: out.resources.len(),
        bytes: out.len,
    });
    tx.send(out).await.map_err(|_| ())?;
    Ok(added)
}

/// What a client holds of one resource: the resource as last sent (shared with the
/// snapshot it came from), found by name.
struct Known(Arc<Resource>);

/// The resources present now, against what a client holds.
struct Compared {
    /// New to the client or changed since it got them.
    changed: Vec<Arc<Resource>>,
    /// Clusters only: those new to the client, for the warming hold.
    added: Vec<Arc<Resource>>,
    /// How many of those present the client holds (all of what it holds, when equal
    /// to its count: nothing was removed).
    held: usize,
}

fn compare(known: &HashSet<Known>, resources: &[Arc<Resource>], type_url: &str) -> Compared {
    let mut out = Compared {
        changed: Vec::new(),
        added: Vec::new(),
        held: 0,
    };
    for r in resources {
        match known.get(r.name.as_str()) {
            Some(k) => {
                out.held += 1;
                if !k.is(r) {
                    out.changed.push(r.clone());
                }
            }
            None => {
                if type_url == type_url::CLUSTER {
                    out.added.push(r.clone());
                }
                out.changed.push(r.clone());
            }
        }
    }
    out
}

impl Known {
    fn is(&self, r: &Arc<Resource>) -> bool {
        Arc::ptr_eq(&self.0, r) || self.0.version == r.version
    }
}

impl Hash for Known {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes, so that lookups by `&str` find it.
        self.0.name.as_str().hash(state);
    }
}

impl PartialEq for Known {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for Known {}

impl Borrow<str> for Known {
    fn borrow(&self) -> &str {
        &self.0.name
    }
}

/// Incremental: what the client holds for one type.
#[derive(Default)]
struct DeltaType {
    wildcard: bool,
    names: Names,
    /// What the client has, by name.
    known: HashSet<Known>,
    nonce: String,
    version: String,
    answered: bool,
    /// The [`set_version`] of the resources `known` matched exactly when last
    /// compared; `None` once `known` may differ (NACK, unsubscription).
    synced: Option<String>,
    /// The [`View::generation`] last looked at after a change.
    seen: Option<u64>,
}

async fn delta_loop(
    view: Arc<dyn View>,
    first: DeltaDiscoveryRequest,
    mut inbound: Inbound<DeltaDiscoveryRequest>,
    tx: mpsc::Sender<Outgoing>,
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
                    if delta_unchanged(&*view, &types, &t) {
                        continue;
                    }
                    let Ok(added) = delta_push(&*view, &mut types, &t, &tx).await else {
                        return;
                    };
                    if types.contains_key(type_url::CLUSTER_LOAD_ASSIGNMENT) {
                        warming.start(warming::missing(&added, |n| delta_subscribed(&types, n)));
                    }
                }
            }
        }
    }
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
    tx: &mpsc::Sender<Outgoing>,
) -> Result<(), ()> {
    for t in warming::ROUTING {
        delta_push(view, types, t, tx).await?;
    }
    Ok(())
}

async fn delta_request(
    view: &dyn View,
    types: &mut HashMap<String, DeltaType>,
    req: DeltaDiscoveryRequest,
    tx: &mpsc::Sender<Outgoing>,
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
        // What a reconnecting client already has (names and versions, no content).
        state.known = req
            .initial_resource_versions
            .into_iter()
            .map(|(name, version)| {
                Known(Arc::new(Resource {
                    name,
                    version,
                    body: Any::default(),
                }))
            })
            .collect();
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
                state.synced = None;
                state.seen = None;
            }
            None => view.acked(&req.type_url, &state.version),
        }
    }
    let mut changed = false;
    let mut added = Vec::new();
    for name in req.resource_names_subscribe {
        if name == "*" {
            changed |= !state.wildcard;
            state.wildcard = true;
        } else if !state.names.contains(&name) {
            added.push(name);
        }
    }
    let mut removed = Vec::new();
    for name in req.resource_names_unsubscribe {
        if name == "*" {
            state.wildcard = false;
        } else {
            state.known.remove(name.as_str());
            removed.push(name);
        }
        state.synced = None;
        changed = true;
    }
    if !added.is_empty() || !removed.is_empty() {
        changed |= !added.is_empty();
        state.names = state.names.with(added, &removed);
    }
    if changed || fresh {
        return delta_push(view, types, &req.type_url, tx).await.map(drop);
    }
    Ok(())
}

async fn delta_push(
    view: &dyn View,
    types: &mut HashMap<String, DeltaType>,
    type_url: &str,
    tx: &mpsc::Sender<Outgoing>,
) -> Result<Vec<Arc<Resource>>, ()> {
    let Some(state) = types.get_mut(type_url) else {
        return Ok(Vec::new());
    };
    let names = (!state.wildcard).then_some(&state.names);
    // Read before the resources, so that it is never newer than what they show.
    let generation = view.generation(type_url, names);
    let resources = view.resources(type_url, names);
    state.seen = generation;
    let version = set_version(&resources);
    // The first answer to a wildcard is sent even when empty: clients wait for it.
    let must_answer = !state.answered && state.wildcard;
    if state.synced.as_deref() == Some(version.as_str()) && !must_answer {
        return Ok(Vec::new());
    }
    let Compared {
        changed: send,
        added,
        held,
    } = compare(&state.known, &resources, type_url);
    // Something the client holds is gone unless it holds exactly what is present.
    let removed: Vec<String> = if held == state.known.len() {
        Vec::new()
    } else {
        let present: HashSet<&str> = resources.iter().map(|r| r.name.as_str()).collect();
        state
            .known
            .iter()
            .filter(|k| !present.contains(k.0.name.as_str()))
            .map(|k| k.0.name.clone())
            .collect()
    };
    for name in &removed {
        state.known.remove(name.as_str());
    }
    for r in &send {
        state.known.replace(Known(r.clone()));
    }
    state.synced = Some(version.clone());
    if send.is_empty() && removed.is_empty() && !must_answer {
        return Ok(Vec::new());
    }
    state.answered = true;
    state.nonce = next_nonce();
    state.version = version;
    let head = DeltaDiscoveryResponse {
        system_version_info: state.version.clone(),
        type_url: type_url.to_string(),
        removed_resources: removed,
        nonce: state.nonce.clone(),
        ..Default::default()
    };
    let out = Outgoing::new(prost::Message::encode_to_vec(&head), send, true);
    view.pushed(&Pushed {
        type_url,
        version: &state.version,
        resources: out.resources.len(),
        bytes: out.len,
    });
    tx.send(out).await.map_err(|_| ())?;
    Ok(added)
}

// ---------------------------------------------------------------------------------
// Responses on the wire.

/// Field numbers of the messages written by hand below.
mod field {
    /// `DiscoveryResponse.resources` and `DeltaDiscoveryResponse.resources`.
    pub const RESOURCES: u32 = 2;
    /// `google.protobuf.Any`.
    pub const ANY_TYPE_URL: u32 = 1;
    pub const ANY_VALUE: u32 = 2;
    /// `envoy.service.discovery.v3.Resource`.
    pub const RESOURCE_VERSION: u32 = 1;
    pub const RESOURCE_RESOURCE: u32 = 2;
    pub const RESOURCE_NAME: u32 = 3;
}

/// Length of a length-delimited field holding `n` bytes.
fn delimited_len(tag: u32, n: usize) -> usize {
    key_len(tag) + encoded_len_varint(n as u64) + n
}

fn put_delimited_head(tag: u32, n: usize, buf: &mut BytesMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(n as u64, buf);
}

fn put_string(tag: u32, s: &str, buf: &mut BytesMut) {
    put_delimited_head(tag, s.len(), buf);
    buf.put_slice(s.as_bytes());
}

/// A response ready to go: its fields other than `resources` encoded (`head`), and
/// the resources, shared with the snapshot. Protobuf lets fields come in any order, so
/// the resources follow the head.
struct Outgoing {
    head: Vec<u8>,
    resources: Vec<Arc<Resource>>,
    /// `DeltaDiscoveryResponse` (resources wrapped in `Resource`) or `DiscoveryResponse`
    /// (bare `Any`s).
    delta: bool,
    /// The encoded message's length.
    len: usize,
}

impl Outgoing {
    fn new(head: Vec<u8>, resources: Vec<Arc<Resource>>, delta: bool) -> Outgoing {
        let mut out = Outgoing {
            len: head.len(),
            head,
            resources,
            delta,
        };
        out.len += out
            .resources
            .iter()
            .map(|r| delimited_len(field::RESOURCES, out.entry_len(r)))
            .sum::<usize>();
        out
    }

    fn any_len(body: &Any) -> usize {
        delimited_len(field::ANY_TYPE_URL, body.type_url.len())
            + delimited_len(field::ANY_VALUE, body.value.len())
    }

    /// Length of one entry of `resources` (without its own key and length).
    fn entry_len(&self, r: &Resource) -> usize {
        let any = Self::any_len(&r.body);
        if self.delta {
            delimited_len(field::RESOURCE_VERSION, r.version.len())
                + delimited_len(field::RESOURCE_RESOURCE, any)
                + delimited_len(field::RESOURCE_NAME, r.name.len())
        } else {
            any
        }
    }

    /// Writes what precedes the resource's bytes in its entry.
    fn put_before_value(&self, r: &Resource, buf: &mut BytesMut) {
        put_delimited_head(field::RESOURCES, self.entry_len(r), buf);
        if self.delta {
            put_string(field::RESOURCE_VERSION, &r.version, buf);
            put_delimited_head(field::RESOURCE_RESOURCE, Self::any_len(&r.body), buf);
        }
        put_string(field::ANY_TYPE_URL, &r.body.type_url, buf);
        put_delimited_head(field::ANY_VALUE, r.body.value.len(), buf);
    }

    /// Writes what follows the resource's bytes in its entry.
    fn put_after_value(&self, r: &Resource, buf: &mut BytesMut) {
        if self.delta {
            put_string(field::RESOURCE_NAME, &r.name, buf);
        }
    }
}

/// Bytes of a response produced per poll of the body: enough to keep a connection
/// busy, small enough that a push to every client at once holds little.
const CHUNK: usize = 64 * 1024;

/// Where the encoding of the current response stands.
enum Stage {
    /// The gRPC frame header and the head.
    Start,
    /// Resource `i`, at `offset` in its bytes.
    Resource { i: usize, offset: usize },
}

/// The response body of one stream: the gRPC frames of the responses its loop sends,
/// each encoded in chunks of about `CHUNK` (64 KiB) bytes as the connection asks for them, then
/// an OK status when the loop ends.
pub struct AdsBody {
    rx: mpsc::Receiver<Outgoing>,
    current: Option<(Outgoing, Stage)>,
    /// Whether the last poll produced a chunk of an unfinished response.
    produced: bool,
    finished: bool,
}

impl AdsBody {
    fn new(rx: mpsc::Receiver<Outgoing>) -> AdsBody {
        AdsBody {
            rx,
            current: None,
            produced: false,
            finished: false,
        }
    }

    /// Encodes the next chunk of `out`; `true` when the response is complete.
    fn fill(out: &Outgoing, stage: &mut Stage, chunk: &mut BytesMut) -> bool {
        loop {
            match stage {
                Stage::Start => {
                    chunk.put_u8(0); // not compressed
                    chunk.put_u32(out.len as u32);
                    chunk.put_slice(&out.head);
                    *stage = Stage::Resource { i: 0, offset: 0 };
                }
                Stage::Resource { i, offset } => {
                    let Some(r) = out.resources.get(*i) else {
                        return true;
                    };
                    if chunk.len() >= CHUNK {
                        return false;
                    }
                    if *offset == 0 {
                        out.put_before_value(r, chunk);
                    }
                    let value = &r.body.value[*offset..];
                    let take = value.len().min(CHUNK.saturating_sub(chunk.len()).max(1));
                    chunk.put_slice(&value[..take]);
                    *offset += take;
                    if *offset == r.body.value.len() {
                        out.put_after_value(r, chunk);
                        *i += 1;
                        *offset = 0;
                    }
                }
            }
        }
    }
}

impl http_body::Body for AdsBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        if this.produced {
            // Let the connection write what was produced, and other streams produce,
            // before this stream encodes more.
            this.produced = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if this.current.is_none() {
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(out)) => this.current = Some((out, Stage::Start)),
                Poll::Ready(None) => {
                    this.finished = true;
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        let Some((out, stage)) = &mut this.current else {
            return Poll::Pending;
        };
        let mut chunk = BytesMut::with_capacity((out.len + 5).min(CHUNK + 256));
        if Self::fill(out, stage, &mut chunk) {
            this.current = None;
        } else {
            this.produced = true;
        }
        Poll::Ready(Some(Ok(Frame::data(chunk.freeze()))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::envoy::config::cluster::v3::Cluster;
    use http_body::Body as _;
    use prost::Message;

    fn resources(sizes: &[usize]) -> Vec<Arc<Resource>> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                Arc::new(Resource::new(
                    format!("c{i}"),
                    &Cluster {
                        name: format!("c{i}"),
                        alt_stat_name: "x".repeat(*n),
                        ..Default::default()
                    },
                ))
            })
            .collect()
    }

    /// Runs a body to its end: the gRPC messages it carried, and its trailers.
    fn drain(out: Vec<Outgoing>) -> (Vec<Vec<u8>>, Option<http::HeaderMap>) {
        let (tx, rx) = mpsc::channel(out.len().max(1));
        for o in out {
            assert!(tx.try_send(o).is_ok(), "room");
        }
        drop(tx);
        let mut body = AdsBody::new(rx);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut bytes = Vec::new();
        let mut trailers = None;
        loop {
            match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(d) => {
                        assert!(d.len() <= CHUNK + 256 + 64, "a chunk of {} bytes", d.len());
                        bytes.extend_from_slice(&d);
                    }
                    Err(f) => trailers = f.into_trailers().ok(),
                },
                Poll::Ready(None) => break,
                Poll::Pending => continue,
                Poll::Ready(Some(Err(e))) => panic!("{e}"),
            }
        }
        let mut messages = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            assert_eq!(rest[0], 0, "uncompressed");
            let n = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            messages.push(rest[5..5 + n].to_vec());
            rest = &rest[5 + n..];
        }
        (messages, trailers)
    }

    #[test]
    fn responses_encode_as_prost_would() {
        // Small resources, one larger than a chunk, and an empty response.
        let rs = resources(&[10, 3 * CHUNK + 17, 0, 100]);
        let sotw = DiscoveryResponse {
            version_info: "v1".into(),
            type_url: type_url::CLUSTER.into(),
            nonce: "7".into(),
            ..Default::default()
        };
        let delta = DeltaDiscoveryResponse {
            system_version_info: "v2".into(),
            type_url: type_url::CLUSTER.into(),
            removed_resources: vec!["gone".into()],
            nonce: "8".into(),
            ..Default::default()
        };
        let outs = vec![
            Outgoing::new(sotw.encode_to_vec(), rs.clone(), false),
            Outgoing::new(delta.encode_to_vec(), rs.clone(), true),
            Outgoing::new(sotw.encode_to_vec(), Vec::new(), false),
        ];
        let lens: Vec<usize> = outs.iter().map(|o| o.len).collect();
        let (messages, trailers) = drain(outs);
        assert_eq!(messages.len(), 3);
        assert_eq!(
            messages.iter().map(Vec::len).collect::<Vec<_>>(),
            lens,
            "announced lengths"
        );

        let got = DiscoveryResponse::decode(messages[0].as_slice()).expect("decodes");
        let want = DiscoveryResponse {
            resources: rs.iter().map(|r| r.body.clone()).collect(),
            ..sotw.clone()
        };
        assert_eq!(got, want);

        let got = DeltaDiscoveryResponse::decode(messages[1].as_slice()).expect("decodes");
        let want = DeltaDiscoveryResponse {
            resources: rs
                .iter()
                .map(|r| crate::pb::envoy::service::discovery::v3::Resource {
                    name: r.name.clone(),
                    version: r.version.clone(),
                    resource: Some(r.body.clone()),
                    ..Default::default()
                })
                .collect(),
            ..delta
        };
        assert_eq!(got, want);

        let got = DiscoveryResponse::decode(messages[2].as_slice()).expect("decodes");
        assert_eq!(got, sotw);
        let trailers = trailers.expect("trailers");
        assert_eq!(
            trailers.get("grpc-status").map(|v| v.as_bytes()),
            Some(&b"0"[..])
        );
    }

    #[test]
    fn set_versions_follow_names_and_versions() {
        let a = resources(&[1, 2]);
        let b = resources(&[1, 3]);
        assert_eq!(set_version(&a), set_version(&a.clone()));
        assert_ne!(set_version(&a), set_version(&b));
        assert_ne!(set_version(&a), set_version(&a[..1]));
        // Streamed hashing equals hashing the joined key, as versions always were.
        let mut key = String::new();
        for r in &a {
            key.push_str(&r.name);
            key.push('\0');
            key.push_str(&r.version);
            key.push('\0');
        }
        assert_eq!(
            set_version(&a),
            format!("{:016x}", xxhash_rust::xxh64::xxh64(key.as_bytes(), 0))
        );
    }
}
