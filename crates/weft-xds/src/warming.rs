//! Make before break across types. When a change gives a client clusters it has never
//! had, their endpoints reach it only after it subscribes to them — a round trip after
//! the clusters arrive. Routes sent in the meantime could send traffic to a cluster
//! with no endpoints yet. So after such a change the server holds the types that route
//! (listeners, route configurations and virtual hosts) until the client has subscribed to the new
//! clusters' endpoints and been sent them, or until [`TIMEOUT`] passes — the order
//! the xDS protocol asks of management servers ("eventual consistency
//! considerations").

use crate::pb::envoy::config::cluster::v3::{cluster, Cluster};
use crate::resource::Resource;
use crate::type_url;
use prost::Message;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The types that route, held while new clusters warm, in push order.
pub const ROUTING: [&str; 3] = [
    type_url::LISTENER,
    type_url::ROUTE_CONFIGURATION,
    type_url::VIRTUAL_HOST,
];

/// How long routes wait for new clusters' endpoints at most.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Whether routing types are held, and for which endpoint subscriptions.
#[derive(Debug, Default)]
pub struct Warming {
    waiting: BTreeSet<String>,
    deadline: Option<Instant>,
}

impl Warming {
    /// Whether pushes of `type_url` wait.
    pub fn holds(&self, type_url: &str) -> bool {
        self.deadline.is_some() && ROUTING.contains(&type_url)
    }

    /// Whether anything is held.
    pub fn is_active(&self) -> bool {
        self.deadline.is_some()
    }

    /// Holds routing types until the client subscribes to the endpoints of `missing`.
    pub fn start(&mut self, missing: BTreeSet<String>) {
        if missing.is_empty() {
            return;
        }
        self.waiting.extend(missing);
        self.deadline
            .get_or_insert_with(|| Instant::now() + TIMEOUT);
    }

    /// Whether every awaited subscription is now in place (the hold can end).
    pub fn satisfied(&self, subscribed: impl Fn(&str) -> bool) -> bool {
        self.is_active() && self.waiting.iter().all(|n| subscribed(n))
    }

    /// Ends the hold.
    pub fn clear(&mut self) {
        self.waiting.clear();
        self.deadline = None;
    }

    /// Resolves when the hold times out (never while nothing is held).
    pub async fn expired(&self) {
        match self.deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    }
}

/// The endpoint names of the EDS clusters among `added` that the client has not
/// subscribed to yet.
pub fn missing(added: &[Arc<Resource>], subscribed: impl Fn(&str) -> bool) -> BTreeSet<String> {
    if added.is_empty() {
        return BTreeSet::new();
    }
    eds_names(added)
        .into_iter()
        .filter(|n| !subscribed(n))
        .collect()
}

/// The endpoint names (EDS service names) of the EDS clusters among `clusters`.
pub fn eds_names(clusters: &[Arc<Resource>]) -> BTreeSet<String> {
    clusters
        .iter()
        .filter_map(|r| Cluster::decode(r.body.value.as_slice()).ok())
        .filter(|c| {
            matches!(
                c.cluster_discovery_type,
                Some(cluster::ClusterDiscoveryType::Type(t)) if t == cluster::DiscoveryType::Eds as i32
            )
        })
        .map(|c| {
            c.eds_cluster_config
                .as_ref()
                .map(|e| e.service_name.clone())
                .filter(|n| !n.is_empty())
                .unwrap_or(c.name)
        })
        .collect()
}
