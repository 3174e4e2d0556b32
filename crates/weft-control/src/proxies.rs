//! The proxies connected to this replica and where each stands: what was sent, what it
//! ACKed, its last NACK — what `weft proxy-status` shows.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where one xDS type stands for one proxy.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TypeStatus {
    /// Version of the last response sent.
    pub sent: String,
    /// Version last ACKed.
    pub acked: String,
    /// Responses sent.
    pub pushes: u64,
}

impl TypeStatus {
    /// `SYNCED` (the proxy applied what was sent), `NACKED` or `STALE` (not answered yet).
    pub fn state(&self, last_nack: Option<&Nack>, type_url: &str) -> &'static str {
        if self.sent == self.acked {
            "SYNCED"
        } else if last_nack.is_some_and(|n| n.type_url == type_url && n.version == self.sent) {
            "NACKED"
        } else {
            "STALE"
        }
    }
}

/// A rejected response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Nack {
    /// Its type.
    pub type_url: String,
    /// Its version.
    pub version: String,
    /// The proxy's reason.
    pub message: String,
    /// When (Unix seconds).
    pub at: u64,
}

/// One connected proxy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProxyStatus {
    /// Node id.
    pub id: String,
    /// `sidecar`, `gateway` or `proxyless`.
    pub role: String,
    /// Service (empty for proxyless clients).
    pub service: String,
    /// Namespace.
    pub namespace: String,
    /// Its address as seen by the control plane.
    pub peer: Option<SocketAddr>,
    /// `sotw` or `delta`.
    pub protocol: String,
    /// When the stream opened (Unix seconds).
    pub connected_since: u64,
    /// The replica serving it.
    pub replica: String,
    /// Per type URL.
    pub types: BTreeMap<String, TypeStatus>,
    /// Its last NACK, if any.
    pub last_nack: Option<Nack>,
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The connected proxies, by stream.
#[derive(Default)]
pub struct Proxies {
    streams: Mutex<BTreeMap<u64, ProxyStatus>>,
}

impl Proxies {
    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<u64, ProxyStatus>) -> R) -> R {
        f(&mut self.streams.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A stream opened.
    pub fn connected(&self, stream: u64, status: ProxyStatus) {
        self.with(|m| m.insert(stream, status));
    }

    /// A stream ended.
    pub fn disconnected(&self, stream: u64) {
        self.with(|m| m.remove(&stream));
    }

    /// A response was sent.
    pub fn pushed(&self, stream: u64, type_url: &str, version: &str) {
        self.with(|m| {
            if let Some(p) = m.get_mut(&stream) {
                let t = p.types.entry(type_url.to_string()).or_default();
                t.sent = version.to_string();
                t.pushes += 1;
            }
        });
    }

    /// The proxy applied `version`.
    pub fn acked(&self, stream: u64, type_url: &str, version: &str) {
        self.with(|m| {
            if let Some(p) = m.get_mut(&stream) {
                p.types.entry(type_url.to_string()).or_default().acked = version.to_string();
            }
        });
    }

    /// The proxy rejected `version`.
    pub fn nacked(&self, stream: u64, type_url: &str, version: &str, message: &str) {
        self.with(|m| {
            if let Some(p) = m.get_mut(&stream) {
                p.last_nack = Some(Nack {
                    type_url: type_url.to_string(),
                    version: version.to_string(),
                    message: message.to_string(),
                    at: unix_now(),
                });
            }
        });
    }

    /// Every connected proxy, by node id.
    pub fn list(&self) -> Vec<ProxyStatus> {
        let mut all: Vec<ProxyStatus> = self.with(|m| m.values().cloned().collect());
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// How many streams are open.
    pub fn count(&self) -> usize {
        self.with(|m| m.len())
    }
}
