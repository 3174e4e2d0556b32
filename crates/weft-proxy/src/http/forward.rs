//! Sending a request to its cluster: pick an endpoint, take a pooled connection, send,
//! and retry by the route's policy with back-off, each attempt under its per-try
//! timeout. The caller bounds the whole exchange by the route timeout.

use super::body::{BodyError, PooledConn, RequestBody};
use super::headers::X_ATTEMPT_COUNT;
use super::retry::RetryPolicy;
use crate::cluster::endpoint::{Endpoint, InFlight};
use crate::cluster::pool::{self, Sender};
use crate::cluster::{Cluster, Discovery, UpstreamProtocol};
use crate::error::{ProxyError, ResponseFlags};
use crate::metrics::code_class;
use crate::stream_info::StreamInfo;
use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// The parts of the upstream request that every attempt shares.
#[derive(Debug)]
pub struct Outgoing {
    /// Method.
    pub method: Method,
    /// Path and query, after rewrites.
    pub path: PathAndQuery,
    /// Authority sent upstream (`Host` or `:authority`).
    pub authority: HeaderValue,
    /// Replace the authority with the endpoint's hostname (`auto_host_rewrite`).
    pub auto_host: bool,
    /// Headers, already mutated and without hop-by-hop ones.
    pub headers: HeaderMap,
    /// Whether the downstream spoke HTTP/2.
    pub downstream_h2: bool,
}

/// Where and how a request goes.
#[derive(Debug)]
pub struct Target<'a> {
    /// The cluster.
    pub cluster: &'a Arc<Cluster>,
    /// Retry policy, if any.
    pub retry: Option<&'a RetryPolicy>,
    /// Hash for consistent-hash balancing.
    pub hash: Option<u64>,
    /// The downstream connection's original destination (ORIGINAL_DST clusters).
    pub original_dst: SocketAddr,
    /// Send `x-envoy-attempt-count`.
    pub attempt_count_header: bool,
}

/// A response from upstream with what must live as long as its body.
#[derive(Debug)]
pub struct Upstream {
    /// The response.
    pub response: Response<Incoming>,
    /// The HTTP/1.1 connection to return to its pool when the body ends.
    pub pooled: Option<PooledConn>,
    /// The endpoint's in-flight count.
    pub in_flight: InFlight,
    /// When the response headers arrived.
    pub at: Instant,
}

/// Sends the request, retrying as the policy allows.
pub async fn send(
    target: &Target<'_>,
    mut out: Outgoing,
    mut body: RequestBody,
    info: &mut StreamInfo,
) -> Result<Upstream, ProxyError> {
    let cluster = target.cluster;
    let max_attempts = 1 + target.retry.map_or(0, |r| r.num_retries);
    let mut avoid: Option<SocketAddr> = None;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let endpoint = pick(target, &out, avoid)?;
        let replay = if attempt < max_attempts {
            replayable(&body)
        } else {
            None
        };
        // The last possible attempt takes the headers instead of copying them.
        let last = replay.is_none();
        let result = attempt_once(
            target,
            &mut out,
            last,
            endpoint.clone(),
            body,
            attempt,
            info,
        )
        .await;
        let wants_retry = match (&result, target.retry) {
            (_, None) => false,
            (Ok(up), Some(policy)) => {
                policy.retry_response(up.response.status().as_u16(), up.response.headers())
            }
            (Err(e), Some(policy)) => policy.retry_error(e),
        };
        if !wants_retry || replay.is_none() {
            if wants_retry && max_attempts > 1 {
                info.flags
                    .insert(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
                cluster.stats.rq_retry_limit_exceeded.inc();
            }
            return result;
        }
        if let Err(e) = &result {
            tracing::debug!(cluster = %cluster.name, endpoint = %endpoint.address, error = %e, attempt, "retrying");
        }
        drop(result);
        body = replay.unwrap_or(RequestBody::Empty);
        avoid = Some(endpoint.address);
        cluster.stats.rq_retry.inc();
        if let Some(policy) = target.retry {
            tokio::time::sleep(policy.backoff(attempt)).await;
        }
    }
}

/// A fresh copy of the body for another attempt, if it can be sent again.
fn replayable(body: &RequestBody) -> Option<RequestBody> {
    match body {
        RequestBody::Empty => Some(RequestBody::Empty),
        RequestBody::Full(Some(d)) => Some(RequestBody::Full(Some(d.clone()))),
        RequestBody::Full(None) => Some(RequestBody::Empty),
        RequestBody::Replay(r) => r.retry().map(RequestBody::Replay),
        RequestBody::Stream(_) => None,
    }
}

fn pick(
    target: &Target<'_>,
    out: &Outgoing,
    avoid: Option<SocketAddr>,
) -> Result<Arc<Endpoint>, ProxyError> {
    let cluster = target.cluster;
    if let Discovery::OriginalDst { header } = &cluster.discovery {
        let from_header = header
            .as_ref()
            .and_then(|h| out.headers.get(h))
            .and_then(|v| v.to_str().ok()?.parse::<SocketAddr>().ok());
        return Ok(cluster.original_dst_endpoint(from_header.unwrap_or(target.original_dst)));
    }
    cluster
        .lb
        .pick(&cluster.hosts(), target.hash, avoid)
        .ok_or(ProxyError::NoHealthyUpstream)
}

#[allow(clippy::too_many_arguments)]
async fn attempt_once(
    target: &Target<'_>,
    out: &mut Outgoing,
    last: bool,
    endpoint: Arc<Endpoint>,
    body: RequestBody,
    attempt: u32,
    info: &mut StreamInfo,
) -> Result<Upstream, ProxyError> {
    let cluster = target.cluster;
    let per_try = target.retry.and_then(|r| r.per_try_timeout);
    let decay = cluster.lb.policy.ewma_decay();
    info.upstream_host = Some(endpoint.address);
    info.attempts = attempt;
    let started = Instant::now();
    let in_flight = InFlight::start(endpoint.clone());
    cluster.stats.rq_active.inc();
    let exchange = exchange(
        cluster,
        &endpoint,
        out,
        last,
        body,
        attempt,
        target.attempt_count_header,
    );
    // Either, not an if/else of awaits: the exchange future is stored once.
    use futures_util::FutureExt;
    let result = match per_try {
        Some(t) => futures_util::future::Either::Left(
            tokio::time::timeout(t, exchange)
                .map(move |r| r.unwrap_or(Err(ProxyError::PerTryTimeout(t)))),
        ),
        None => futures_util::future::Either::Right(exchange),
    }
    .await;
    if matches!(result, Err(ProxyError::PerTryTimeout(_))) {
        cluster.stats.rq_per_try_timeout.inc();
    }
    cluster.stats.rq_active.dec();
    match result {
        Ok((response, pooled, tls)) => {
            info.upstream_tls = tls;
            let status = response.status().as_u16();
            cluster.stats.rq_by_class[code_class(status)].inc();
            cluster
                .stats
                .rq_time
                .observe(started.elapsed().as_secs_f64() * 1000.0);
            in_flight.responded(status, decay);
            Ok(Upstream {
                response,
                pooled,
                in_flight,
                at: Instant::now(),
            })
        }
        Err(e) => {
            match &e {
                ProxyError::ConnectFailure { source, .. } => {
                    info.upstream_failure = Some(source.to_string());
                }
                ProxyError::TlsHandshake { source, .. } => {
                    info.upstream_failure = Some(source.transport_failure_reason());
                }
                _ => {}
            }
            in_flight.failed(decay, matches!(e, ProxyError::PerTryTimeout(_)));
            Err(e)
        }
    }
}

/// One request on one connection; a reused HTTP/1.1 connection that the upstream had
/// already closed is replaced once, transparently, when the body allows it.
async fn exchange(
    cluster: &Cluster,
    endpoint: &Arc<Endpoint>,
    out: &mut Outgoing,
    last: bool,
    body: RequestBody,
    attempt: u32,
    attempt_header: bool,
) -> Result<(Response<Incoming>, Option<PooledConn>, pool::Session), ProxyError> {
    let h2 = match cluster.protocol {
        UpstreamProtocol::Http1 => false,
        UpstreamProtocol::Http2 => true,
        UpstreamProtocol::UseDownstream => out.downstream_h2,
    };
    let mut body = body;
    let mut fresh = false;
    loop {
        let sender = if fresh {
            let (sender, tls) = pool::connect_http1(endpoint, cluster, false).await?;
            Sender::Http1 {
                sender,
                uses: 0,
                tls,
            }
        } else {
            pool::checkout(endpoint, cluster, h2).await?
        };
        let reused = matches!(sender, Sender::Http1 { uses, .. } if uses > 0);
        let spare = if reused { replayable(&body) } else { None };
        let request = build_request(
            out,
            !reused && last,
            endpoint,
            body,
            h2,
            attempt,
            attempt_header,
        )?;
        match sender {
            Sender::Http2(mut s, tls) => {
                return s
                    .send_request(request)
                    .await
                    .map(|r| (r, None, tls))
                    .map_err(classify)
            }
            Sender::Http1 {
                mut sender,
                uses,
                tls,
            } => match sender.send_request(request).await {
                Ok(r) => {
                    return Ok((
                        r,
                        Some(PooledConn {
                            endpoint: endpoint.clone(),
                            sender,
                            uses,
                            tls: tls.clone(),
                        }),
                        tls,
                    ))
                }
                Err(e) => match (e.is_canceled(), spare) {
                    (true, Some(again)) => {
                        tracing::debug!(endpoint = %endpoint.address, "pooled connection was closed; reconnecting");
                        body = again;
                        fresh = true;
                    }
                    _ => return Err(classify(e)),
                },
            },
        }
    }
}

fn build_request(
    out: &mut Outgoing,
    take_headers: bool,
    endpoint: &Endpoint,
    body: RequestBody,
    h2: bool,
    attempt: u32,
    attempt_header: bool,
) -> Result<Request<RequestBody>, ProxyError> {
    let authority = match (&endpoint.hostname, out.auto_host) {
        (Some(host), true) => HeaderValue::from_str(host).unwrap_or_else(|_| out.authority.clone()),
        (None, true) => HeaderValue::from_str(&endpoint.address.to_string())
            .unwrap_or_else(|_| out.authority.clone()),
        _ => out.authority.clone(),
    };
    let mut req = Request::new(body);
    *req.method_mut() = out.method.clone();
    *req.headers_mut() = if take_headers {
        std::mem::take(&mut out.headers)
    } else {
        out.headers.clone()
    };
    if attempt_header {
        req.headers_mut()
            .insert(X_ATTEMPT_COUNT.clone(), HeaderValue::from(attempt));
    }
    if h2 {
        *req.version_mut() = Version::HTTP_2;
        req.headers_mut().remove(HOST);
        let auth = Authority::try_from(authority.as_bytes())
            .map_err(|_| ProxyError::BadRequest("invalid authority"))?;
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(auth);
        parts.path_and_query = Some(out.path.clone());
        *req.uri_mut() =
            Uri::from_parts(parts).map_err(|_| ProxyError::BadRequest("invalid request target"))?;
    } else {
        *req.version_mut() = Version::HTTP_11;
        req.headers_mut().insert(HOST, authority);
        *req.uri_mut() = Uri::from(out.path.clone());
    }
    Ok(req)
}

/// Maps a failed exchange to the proxy's error: refused streams are safe to retry,
/// parse errors are the upstream's fault, a request body that timed out is ours.
pub fn classify(e: hyper::Error) -> ProxyError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            if h2.reason() == Some(h2::Reason::REFUSED_STREAM) {
                return ProxyError::RefusedStream(e);
            }
        }
        match s.downcast_ref::<BodyError>() {
            Some(BodyError::RequestTimeout) => return ProxyError::RequestTimeout,
            // The downstream body broke (bad chunking, client gone): the client's fault.
            Some(BodyError::Stream(_)) => return ProxyError::BadRequest("malformed request body"),
            _ => {}
        }
        source = s.source();
    }
    if e.is_parse() || e.is_parse_status() {
        return ProxyError::UpstreamProtocol(e);
    }
    ProxyError::UpstreamReset(e)
}
