//! A provider's `remote_jwks`: fetched with a GET through a cluster of the proxy (its
//! endpoints, balancing, pooled connections and TLS, as any request to it), on first
//! use, then kept for `cache_duration` (Envoy's default: 10 minutes) and fetched again
//! by the first request after that.
//!
//! Requests that need the keys while a fetch is under way wait for it rather than start
//! their own. A failed fetch (unreachable, not 200, not a JWKS, over the timeout) fails
//! the requests waiting on it with `Jwks remote fetch is failed`, and is not retried for
//! [`FAILED_REFETCH_DELAY`], so an unreachable key server costs one timeout per second,
//! not one per request.

use super::jwks::Jwks;
use super::status::JwtError;
use crate::cluster::pool;
use crate::cluster::ClusterMap;
use crate::error::ProxyError;
use crate::http::body::RequestBody;
use crate::http::forward::{self, Outgoing, Target, Upstream};
use crate::stream_info::{Downstream, StreamInfo};
use arc_swap::{ArcSwap, ArcSwapOption};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Envoy's default `cache_duration`.
pub const DEFAULT_CACHE_DURATION: Duration = Duration::from_secs(600);
/// How long a failed fetch is remembered before the next request tries again.
pub const FAILED_REFETCH_DELAY: Duration = Duration::from_secs(1);
/// The largest JWKS document accepted.
pub const MAX_JWKS_BYTES: usize = 1 << 20;

/// Where a provider's keys come from.
#[derive(Debug)]
pub struct RemoteJwks {
    /// `http_uri.uri`, for logs.
    pub uri: String,
    /// `http_uri.cluster`.
    pub cluster: Arc<str>,
    /// The URI's authority, sent as `Host`.
    pub authority: HeaderValue,
    /// The URI's path and query.
    pub path: PathAndQuery,
    /// `http_uri.timeout`: the whole fetch, body included.
    pub timeout: Duration,
    /// `cache_duration`.
    pub cache_duration: Duration,
    /// The proxy's clusters, looked up at fetch time.
    pub clusters: Arc<ArcSwap<ClusterMap>>,
    /// The last fetch and until when it holds.
    last: ArcSwapOption<Fetched>,
    /// Held while fetching, so concurrent requests share one fetch.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct Fetched {
    keys: Option<Arc<Jwks>>,
    until: Instant,
}

impl RemoteJwks {
    /// Keys at `uri` through `cluster`, nothing fetched yet.
    pub fn new(
        uri: String,
        cluster: Arc<str>,
        authority: HeaderValue,
        path: PathAndQuery,
        timeout: Duration,
        cache_duration: Duration,
        clusters: Arc<ArcSwap<ClusterMap>>,
    ) -> RemoteJwks {
        RemoteJwks {
            uri,
            cluster,
            authority,
            path,
            timeout,
            cache_duration,
            clusters,
            last: ArcSwapOption::empty(),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The keys, fetched when none are fresh; `downstream` is the connection of the
    /// request that needs them (the fetch's record, and the original destination).
    pub async fn keys(&self, downstream: &Arc<Downstream>) -> Result<Arc<Jwks>, JwtError> {
        if let Some(result) = self.fresh() {
            return result;
        }
        let _turn = self.fetching.lock().await;
        // Whoever held the lock before may have fetched already.
        if let Some(result) = self.fresh() {
            return result;
        }
        let keys = match tokio::time::timeout(self.timeout, self.fetch(downstream)).await {
            Ok(Ok(jwks)) => Some(Arc::new(jwks)),
            Ok(Err(why)) => {
                tracing::warn!(uri = %self.uri, cluster = %self.cluster, "JWKS fetch failed: {why}");
                None
            }
            Err(_) => {
                tracing::warn!(uri = %self.uri, cluster = %self.cluster, timeout = ?self.timeout, "JWKS fetch timed out");
                None
            }
        };
        let hold = if keys.is_some() {
            self.cache_duration
        } else {
            FAILED_REFETCH_DELAY
        };
        self.last.store(Some(Arc::new(Fetched {
            keys: keys.clone(),
            until: Instant::now() + hold,
        })));
        keys.ok_or(JwtError::JwksFetchFail)
    }

    /// The last fetch's outcome while it holds.
    fn fresh(&self) -> Option<Result<Arc<Jwks>, JwtError>> {
        let last = self.last.load();
        let last = last.as_ref().filter(|f| Instant::now() < f.until)?;
        Some(last.keys.clone().ok_or(JwtError::JwksFetchFail))
    }

    async fn fetch(&self, downstream: &Arc<Downstream>) -> Result<Jwks, String> {
        let cluster = self
            .clusters
            .load()
            .get(&self.cluster)
            .cloned()
            .ok_or_else(|| format!("cluster {:?} does not exist", self.cluster))?;
        let target = Target {
            cluster: &cluster,
            retry: None,
            hash: None,
            original_dst: downstream.local,
            attempt_count_header: false,
        };
        let out = Outgoing {
            method: Method::GET,
            path: self.path.clone(),
            authority: self.authority.clone(),
            auto_host: false,
            headers: HeaderMap::new(),
            downstream_h2: false,
        };
        let mut info = StreamInfo::new(downstream.clone());
        let Upstream {
            response, pooled, ..
        } = forward::send(&target, out, RequestBody::Empty, &mut info)
            .await
            .map_err(|e: ProxyError| e.to_string())?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?
            .to_bytes();
        // The body was read to its end: the connection may serve another request.
        if let Some(p) = pooled {
            pool::release(&p.endpoint, p.sender, p.uses, p.tls);
        }
        if status != StatusCode::OK {
            return Err(format!("status {status}"));
        }
        Jwks::parse(&body).map_err(|e| e.to_string())
    }
}
