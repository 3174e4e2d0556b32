//! An ADS client: one gRPC stream to a control plane (state-of-the-world or delta),
//! ACKing what its [`Handler`] applies and NACKing, with the handler's reason, what it
//! rejects; following the subscriptions the handler asks for (route and endpoint names
//! grow with listeners and clusters); reconnecting with jittered back-off to the next
//! control-plane address when the stream breaks. Nothing is dropped on disconnect: the
//! handler keeps its last good configuration.

use crate::pb::envoy::config::core::v3::Node;
use crate::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use crate::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use crate::pb::google::protobuf::Any;
use crate::pb::google::rpc::Status as RpcStatus;
use crate::server::Subscription;
use crate::type_url;
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::sync::mpsc;

/// Which protocol variant to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// State of the world.
    Sotw,
    /// Incremental.
    Delta,
}

/// Resources received for one type.
#[derive(Debug, Clone)]
pub enum Update {
    /// The full set the client subscribed to (state of the world).
    Full(Vec<Any>),
    /// Changes (delta): resources added or changed, and names removed.
    Delta {
        /// Added or changed, by name.
        changed: Vec<(String, Any)>,
        /// Removed names.
        removed: Vec<String>,
    },
}

/// Applies configuration and says what else to subscribe to.
pub trait Handler: Send + 'static {
    /// Applies one response; `Err` is sent back as the NACK's reason and the handler must
    /// keep what it had.
    fn apply(&mut self, type_url: &str, update: Update) -> Result<(), String>;
    /// Current subscriptions for every type the handler wants (listeners and clusters
    /// usually by wildcard; routes and endpoints by the names they reference).
    fn subscriptions(&self) -> Vec<(&'static str, Subscription)>;
    /// The stream is up (`true`) or down (`false`).
    fn connection(&mut self, _up: bool) {}
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Control-plane addresses (`http://host:port`), tried in turn.
    pub endpoints: Vec<String>,
    /// This proxy's node.
    pub node: Node,
    /// Protocol variant.
    pub protocol: Protocol,
    /// Sent as `authorization: Bearer ...` when set.
    pub token: Option<String>,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
}

/// Runs the client until the handle is dropped.
pub async fn run<H: Handler>(config: ClientConfig, mut handler: H) {
    let mut attempt = 0u32;
    let mut which = 0usize;
    loop {
        if config.endpoints.is_empty() {
            return;
        }
        let endpoint = &config.endpoints[which % config.endpoints.len()];
        let started = std::time::Instant::now();
        let result = match config.protocol {
            Protocol::Sotw => sotw_session(&config, endpoint, &mut handler).await,
            Protocol::Delta => delta_session(&config, endpoint, &mut handler).await,
        };
        handler.connection(false);
        if let Err(e) = result {
            tracing::warn!(control_plane = %endpoint, error = %e, "xDS stream ended; keeping the last good configuration");
        }
        // A stream that lived a while starts the back-off over.
        if started.elapsed() > Duration::from_secs(30) {
            attempt = 0;
        }
        which += 1;
        attempt += 1;
        let ceiling = Duration::from_millis(250)
            .saturating_mul(1 << attempt.min(8))
            .min(config.max_backoff);
        let wait = Duration::from_millis(fastrand::u64(
            ceiling.as_millis() as u64 / 2..=ceiling.as_millis() as u64,
        ));
        tokio::time::sleep(wait).await;
    }
}

async fn connect(
    endpoint: &str,
) -> Result<AggregatedDiscoveryServiceClient<tonic::transport::Channel>, String> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .map_err(|e| format!("bad control-plane address {endpoint}: {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {endpoint}: {e}"))?;
    Ok(AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024))
}

fn with_token<T>(message: T, token: &Option<String>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    if let Some(t) = token {
        if let Ok(v) = format!("Bearer {t}").parse() {
            req.metadata_mut().insert("authorization", v);
        }
    }
    req
}

fn names_of(sub: &Subscription) -> Vec<String> {
    match sub {
        Subscription::Wildcard => Vec::new(),
        Subscription::Names(n) => n.iter().cloned().collect(),
    }
}

/// Per-type state of the state-of-the-world stream.
#[derive(Default)]
struct SotwState {
    version: String,
    nonce: String,
    sent: Option<Subscription>,
}

async fn sotw_session<H: Handler>(
    config: &ClientConfig,
    endpoint: &str,
    handler: &mut H,
) -> Result<(), String> {
    let mut client = connect(endpoint).await?;
    let (tx, rx) = mpsc::channel::<DiscoveryRequest>(16);
    let mut states: BTreeMap<&'static str, SotwState> = BTreeMap::new();
    let mut first = true;
    // Subscribe before the stream opens so the first request carries the node.
    for (t, sub) in handler.subscriptions() {
        let req = DiscoveryRequest {
            node: first.then(|| config.node.clone()),
            type_url: t.to_string(),
            resource_names: names_of(&sub),
            ..Default::default()
        };
        first = false;
        states.insert(
            t,
            SotwState {
                sent: Some(sub),
                ..Default::default()
            },
        );
        tx.send(req).await.map_err(|e| e.to_string())?;
    }
    let outbound = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut inbound = client
        .stream_aggregated_resources(with_token(outbound, &config.token))
        .await
        .map_err(|s| format!("{}: {}", s.code(), s.message()))?
        .into_inner();
    handler.connection(true);
    while let Some(resp) = inbound.next().await {
        let resp: DiscoveryResponse = resp.map_err(|s| format!("{}: {}", s.code(), s.message()))?;
        let Some(key) = states
            .keys()
            .find(|k| **k == resp.type_url)
            .copied()
            .or_else(|| known_type(&resp.type_url))
        else {
            continue;
        };
        let state = states.entry(key).or_default();
        let result = handler.apply(&resp.type_url, Update::Full(resp.resources));
        state.nonce = resp.nonce.clone();
        let error_detail = match result {
            Ok(()) => {
                state.version = resp.version_info.clone();
                None
            }
            Err(message) => {
                tracing::warn!(type_url = %resp.type_url, version = %resp.version_info, %message, "configuration rejected (NACK)");
                Some(RpcStatus {
                    code: 3,
                    message,
                    details: Vec::new(),
                })
            }
        };
        let names = state.sent.as_ref().map(names_of).unwrap_or_default();
        tx.send(DiscoveryRequest {
            version_info: state.version.clone(),
            type_url: resp.type_url.clone(),
            resource_names: names,
            response_nonce: resp.nonce,
            error_detail,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
        // New references (routes of new listeners, endpoints of new clusters) are
        // subscribed to right away.
        for (t, sub) in handler.subscriptions() {
            let state = states.entry(t).or_default();
            if state.sent.as_ref() != Some(&sub) {
                tx.send(DiscoveryRequest {
                    version_info: state.version.clone(),
                    type_url: t.to_string(),
                    resource_names: names_of(&sub),
                    response_nonce: state.nonce.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
                state.sent = Some(sub);
            }
        }
    }
    Err("the control plane closed the stream".into())
}

fn known_type(url: &str) -> Option<&'static str> {
    [
        type_url::LISTENER,
        type_url::ROUTE_CONFIGURATION,
        type_url::CLUSTER,
        type_url::CLUSTER_LOAD_ASSIGNMENT,
        type_url::SECRET,
    ]
    .into_iter()
    .find(|t| *t == url)
}

async fn delta_session<H: Handler>(
    config: &ClientConfig,
    endpoint: &str,
    handler: &mut H,
) -> Result<(), String> {
    let mut client = connect(endpoint).await?;
    let (tx, rx) = mpsc::channel::<DeltaDiscoveryRequest>(16);
    let mut sent: HashMap<&'static str, Subscription> = HashMap::new();
    let mut first = true;
    for (t, sub) in handler.subscriptions() {
        let subscribe = match &sub {
            Subscription::Wildcard => vec!["*".to_string()],
            Subscription::Names(n) => n.iter().cloned().collect(),
        };
        tx.send(DeltaDiscoveryRequest {
            node: first.then(|| config.node.clone()),
            type_url: t.to_string(),
            resource_names_subscribe: subscribe,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
        first = false;
        sent.insert(t, sub);
    }
    let outbound = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut inbound = client
        .delta_aggregated_resources(with_token(outbound, &config.token))
        .await
        .map_err(|s| format!("{}: {}", s.code(), s.message()))?
        .into_inner();
    handler.connection(true);
    while let Some(resp) = inbound.next().await {
        let resp: DeltaDiscoveryResponse =
            resp.map_err(|s| format!("{}: {}", s.code(), s.message()))?;
        let update = Update::Delta {
            changed: resp
                .resources
                .into_iter()
                .filter_map(|r| r.resource.map(|a| (r.name, a)))
                .collect(),
            removed: resp.removed_resources,
        };
        let error_detail = match handler.apply(&resp.type_url, update) {
            Ok(()) => None,
            Err(message) => {
                tracing::warn!(type_url = %resp.type_url, %message, "configuration rejected (NACK)");
                Some(RpcStatus {
                    code: 3,
                    message,
                    details: Vec::new(),
                })
            }
        };
        tx.send(DeltaDiscoveryRequest {
            type_url: resp.type_url.clone(),
            response_nonce: resp.nonce,
            error_detail,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
        for (t, sub) in handler.subscriptions() {
            let previous = sent
                .get(t)
                .cloned()
                .unwrap_or(Subscription::Names(Default::default()));
            if previous == sub {
                continue;
            }
            let (subscribe, unsubscribe) = match (&previous, &sub) {
                (Subscription::Names(old), Subscription::Names(new)) => (
                    new.difference(old).cloned().collect(),
                    old.difference(new).cloned().collect(),
                ),
                (_, Subscription::Wildcard) => (vec!["*".to_string()], Vec::new()),
                (Subscription::Wildcard, Subscription::Names(new)) => {
                    (new.iter().cloned().collect(), vec!["*".to_string()])
                }
            };
            tx.send(DeltaDiscoveryRequest {
                type_url: t.to_string(),
                resource_names_subscribe: subscribe,
                resource_names_unsubscribe: unsubscribe,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
            sent.insert(t, sub);
        }
    }
    Err("the control plane closed the stream".into())
}
