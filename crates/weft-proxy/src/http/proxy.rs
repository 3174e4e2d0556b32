//! The life of one HTTP request, read top-down: check it, normalize it, set the
//! forwarding headers, find its route, run the HTTP filters (JWT, RBAC) in their order,
//! then answer locally, tunnel, or forward it; finally shape the response and hand its
//! body the books to close when it ends.

use super::body::{PooledConn, ReplayBody, RequestBody, ResponseBody, StreamEnd, Streamed};
use super::forward::{self, Outgoing, Target, Upstream};
use super::headers::{
    append_xff, client_address, new_request_id, remove_hop_by_hop, X_FORWARDED_PROTO,
    X_ORIGINAL_PATH, X_REQUEST_ID, X_UPSTREAM_SERVICE_TIME,
};
use super::local_reply;
use super::manager::{HttpFilter, HttpManager, ServerHeader, StripPort};
use super::matcher::RequestView;
use super::route::{
    is_grpc, strip_port, Forward, PathMatch, Route, RouteAction, RouteTable, VirtualHost,
    WeightedCluster,
};
use super::upgrade;
use crate::cluster::endpoint::InFlight;
use crate::cluster::hash::request_hash;
use crate::cluster::lb::LbPolicy;
use crate::error::ProxyError;
use crate::rbac::matcher::Input;
use crate::stream_info::{capture, Downstream, RequestInfo, StreamInfo};
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, SERVER, TRANSFER_ENCODING, UPGRADE, VIA};
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Response, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What every request on one downstream connection shares.
#[derive(Debug)]
pub struct Connection {
    /// The downstream connection.
    pub downstream: Arc<Downstream>,
    /// Its HTTP connection manager.
    pub manager: Arc<HttpManager>,
    /// Request-smuggling verdicts (HTTP/1 connections).
    pub verdicts: Option<Arc<super::smuggle::Verdicts>>,
    /// Set when a listener update's network RBAC filters deny the open connection
    /// (termination details): its requests get 403 until it closes.
    pub denied: Option<String>,
}

/// The route a request took, kept to shape its response.
struct Taken {
    table: Arc<RouteTable>,
    vhost: usize,
    route: usize,
    arm: Option<usize>,
}

impl Taken {
    fn parts(&self) -> (&VirtualHost, &Route, Option<&WeightedCluster>) {
        let vh = &self.table.virtual_hosts[self.vhost];
        let route = &vh.routes[self.route];
        let arm = match (&route.action, self.arm) {
            (RouteAction::Forward(f), Some(i)) => match &f.cluster {
                super::route::ClusterChoice::Weighted(arms, _) => arms.get(i),
                _ => None,
            },
            _ => None,
        };
        (vh, route, arm)
    }
}

/// State gathered while a request is handled, handed to the response body at the end.
struct Exchange {
    info: StreamInfo,
    received: Option<Arc<AtomicU64>>,
    taken: Option<Taken>,
    pooled: Option<PooledConn>,
    in_flight: Option<InFlight>,
    deadline: Option<Instant>,
    idle: Option<Duration>,
    request_id: Option<HeaderValue>,
    grpc: bool,
}

/// Handles one request; never fails (failures become local replies).
pub async fn handle(conn: Arc<Connection>, req: Request<Incoming>) -> Response<ResponseBody> {
    let manager = conn.manager.clone();
    manager.stats.rq_active.inc();
    let mut ex = Exchange {
        info: StreamInfo::new(conn.downstream.clone()),
        received: None,
        taken: None,
        pooled: None,
        in_flight: None,
        deadline: None,
        idle: manager.stream_idle_timeout,
        request_id: None,
        grpc: is_grpc(req.headers()),
    };
    let response = match proxy(&conn, req, &mut ex).await {
        Ok(r) => r,
        Err(err) => {
            ex.info.flags.insert(err.flag());
            ex.info.details = err.details();
            match &err {
                ProxyError::NoRoute => {
                    manager.stats.no_route.inc();
                }
                ProxyError::BadRequest(_) => {
                    manager.stats.rq_rejected.inc();
                }
                ProxyError::UpstreamTimeout(_) => {
                    if let Some(c) = ex
                        .info
                        .cluster
                        .as_ref()
                        .and_then(|n| manager.clusters.load().get(n).cloned())
                    {
                        c.stats.rq_timeout.inc();
                    }
                }
                _ => {}
            }
            tracing::debug!(error = %err, "local reply");
            let mut r = local_reply::error_reply(&err, ex.grpc);
            if matches!(
                err,
                ProxyError::BadRequest(_) | ProxyError::Http10NotAccepted
            ) {
                r.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            r
        }
    };
    finish(&manager, response, ex)
}

async fn proxy(
    conn: &Connection,
    mut req: Request<Incoming>,
    ex: &mut Exchange,
) -> Result<Response<ResponseBody>, ProxyError> {
    let manager = &conn.manager;
    if let Some(details) = &conn.denied {
        return Err(ProxyError::AccessDenied(details.clone()));
    }
    if let Some(v) = &conn.verdicts {
        match v.next() {
            super::smuggle::Verdict::Clean => {}
            super::smuggle::Verdict::LengthAndChunked => {
                return Err(ProxyError::BadRequest(
                    "content-length with transfer-encoding",
                ))
            }
            super::smuggle::Verdict::DuplicateLength => {
                return Err(ProxyError::BadRequest("duplicate content-length"))
            }
        }
    }
    check(&req, manager)?;

    let host = Host::of(&req, manager, conn.downstream.local.port())?;
    let routed_path = RoutedPath::of(&req, manager);
    let (authority, path) = (host.as_str(), routed_path.as_str());
    let scheme = if conn.downstream.tls.is_some() {
        "https"
    } else {
        "http"
    };
    forwarding_headers(&mut req, conn, ex, scheme);
    ex.info.request = Some(RequestInfo {
        method: req.method().clone(),
        path: req.uri().path_and_query().cloned(),
        authority: original_authority(&req),
        version: req.version(),
        headers: {
            let mut captured = Vec::new();
            capture(req.headers(), &manager.request_header_names, &mut captured);
            captured
        },
    });

    // The table as it is now: a route update governs the very next request, RBAC
    // overrides included, even on a connection opened before it.
    let table = manager.routes.load_full();
    let found = {
        let view = RequestView::new(&req, path, authority, scheme);
        table.virtual_host_index(authority).and_then(|v| {
            let vh = &table.virtual_hosts[v];
            let r = vh.routes.iter().position(|r| r.matcher.matches(&view))?;
            Some((v, r))
        })
    };
    if let Some((v, r)) = found {
        ex.info.route_name = Some(table.virtual_hosts[v].routes[r].name.clone());
    }
    // Filters run before the router, in order, so a denial wins over "no route".
    let route = found.map(|(v, r)| {
        let vh = &table.virtual_hosts[v];
        (vh, &vh.routes[r])
    });
    for filter in &manager.filters {
        match filter {
            HttpFilter::Jwt(jwt) => {
                let requirement = jwt.requirement(&RequestView::new(&req, path, authority, scheme));
                // Boxed: a check may fetch keys, a large future kept off the common path.
                Box::pin(jwt.authenticate(
                    &mut req,
                    requirement,
                    scheme,
                    &conn.downstream,
                    &mut ex.info.metadata,
                ))
                .await
                .map_err(|denial| ProxyError::JwtDenied(Box::new(denial)))?;
            }
            HttpFilter::Rbac(rbac) => {
                let view = RequestView::new(&req, path, authority, scheme);
                let input = Input {
                    conn: &conn.downstream,
                    remote: ex.info.client.ip(),
                    request: Some(&view),
                    metadata: Some(&ex.info.metadata),
                };
                rbac.check(route, &input)?;
            }
        }
    }
    let (vhost, route_index) = found.ok_or(ProxyError::NoRoute)?;
    let vh = &table.virtual_hosts[vhost];
    let route = &vh.routes[route_index];
    ex.taken = Some(Taken {
        table: table.clone(),
        vhost,
        route: route_index,
        arm: None,
    });

    match &route.action {
        RouteAction::Direct(d) => Ok(local_reply::direct(d.status, d.body.clone())),
        RouteAction::Redirect(r) => {
            let prefix = match &route.matcher.path {
                PathMatch::Prefix(p) | PathMatch::SeparatedPrefix(p) => Some(p.as_str()),
                _ => None,
            };
            Ok(local_reply::redirect(
                r.status,
                &r.location(scheme, authority, path, prefix),
            ))
        }
        RouteAction::Forward(fwd) => {
            forward_route(
                conn,
                req,
                ex,
                &table,
                vh,
                route,
                fwd,
                &routed_path,
                &host,
                scheme,
            )
            .await
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn forward_route(
    conn: &Connection,
    mut req: Request<Incoming>,
    ex: &mut Exchange,
    table: &RouteTable,
    vh: &VirtualHost,
    route: &Route,
    fwd: &Forward,
    routed_path: &RoutedPath,
    host: &Host,
    scheme: &str,
) -> Result<Response<ResponseBody>, ProxyError> {
    let manager = &conn.manager;
    let (path, authority) = (routed_path.as_str(), host.as_str());
    let (cluster_name, arm) = fwd
        .cluster
        .pick(req.headers())
        .ok_or_else(|| ProxyError::NoCluster(String::new(), fwd.cluster_not_found))?;
    if let (Some(arm), super::route::ClusterChoice::Weighted(arms, _)) = (arm, &fwd.cluster) {
        if let Some(t) = ex.taken.as_mut() {
            t.arm = arms.iter().position(|a| std::ptr::eq(a, arm));
        }
    }
    let cluster = manager
        .clusters
        .load()
        .get(cluster_name.as_ref())
        .cloned()
        .ok_or_else(|| ProxyError::NoCluster(cluster_name.to_string(), fwd.cluster_not_found))?;
    ex.info.cluster = Some(cluster.name.clone());

    // Timeouts: the route's, or a gRPC caller's own deadline when shorter.
    let mut timeout = fwd.timeout;
    if ex.grpc {
        if let Some(d) = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| parse_grpc_timeout(v.as_bytes()))
        {
            let d = fwd
                .grpc_timeout
                .max
                .map_or(d, |m| d.min(m))
                .saturating_sub(fwd.grpc_timeout.offset);
            timeout = Some(timeout.map_or(d, |t| t.min(d)));
        }
    }
    if let Some(max) = fwd.max_stream_duration {
        timeout = Some(timeout.map_or(max, |t| t.min(max)));
    }
    ex.deadline = timeout.map(|t| ex.info.start + t);
    if fwd.idle_timeout.is_some() {
        ex.idle = fwd.idle_timeout;
    }

    // Request headers: weighted arm, route, virtual host, then the whole table.
    let info = &ex.info;
    let headers = req.headers_mut();
    for m in [
        arm.map(|a| &a.request_headers),
        Some(&route.request_headers),
        Some(&vh.request_headers),
        Some(&table.request_headers),
    ]
    .into_iter()
    .flatten()
    {
        m.apply(headers, info);
    }

    let upgrade_kind = upgrade_type(&req);
    let upgrading = upgrade_kind.is_some();
    if let Some(kind) = &upgrade_kind {
        if !manager.upgrade_allowed(kind, &fwd.upgrades) {
            return Err(ProxyError::UpgradeNotAllowed(kind.clone()));
        }
    }
    remove_hop_by_hop(req.headers_mut(), upgrading);
    req.headers_mut().remove(http::header::EXPECT);

    let new_path = rewrite_path(fwd, &route.matcher.path, path);
    if let Cow::Owned(_) = &new_path {
        if !manager.suppress_envoy_headers && !req.headers().contains_key(&X_ORIGINAL_PATH) {
            if let Ok(v) = HeaderValue::from_str(path) {
                req.headers_mut().insert(X_ORIGINAL_PATH.clone(), v);
            }
        }
    }
    let authority_value = match &fwd.host_rewrite {
        super::route::HostRewrite::Literal(v) => v.clone(),
        super::route::HostRewrite::Header(h) => {
            req.headers().get(h).cloned().unwrap_or_else(|| {
                HeaderValue::from_str(authority).unwrap_or(HeaderValue::from_static(""))
            })
        }
        _ => original_authority(&req).unwrap_or_else(|| {
            HeaderValue::from_str(authority).unwrap_or(HeaderValue::from_static(""))
        }),
    };
    let hash = match cluster.lb.policy {
        LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. } => {
            let view = RequestView::new(&req, path, authority, scheme);
            request_hash(&fwd.hash_policy, &view, ex.info.client.ip())
        }
        _ => None,
    };
    let retry = fwd.retry.as_deref().filter(|r| {
        let view = RequestView::new(&req, path, authority, scheme);
        r.request_eligible(&view)
    });
    let target = Target {
        cluster: &cluster,
        retry,
        hash,
        original_dst: conn.downstream.local,
        attempt_count_header: fwd.include_attempt_count,
    };
    let path_and_query = match (&new_path, routed_path.path_and_query()) {
        _ if req.method() == Method::CONNECT => PathAndQuery::from_static("/"),
        (Cow::Borrowed(_), Some(shared)) => shared,
        _ => PathAndQuery::try_from(new_path.as_ref())
            .map_err(|_| ProxyError::BadRequest("invalid path"))?,
    };
    let downstream_h2 = req.version() == Version::HTTP_2;

    if upgrading {
        let on_upgrade = hyper::upgrade::on(&mut req);
        let (parts, _) = req.into_parts();
        if parts.method == Method::CONNECT && fwd.connect_terminate {
            // Tunnels are rare and their futures large: boxed, off the common path.
            return Box::pin(with_deadline(
                ex.deadline,
                upgrade::terminate_connect(&target, on_upgrade, &mut ex.info, ex.idle),
            ))
            .await;
        }
        let out = Outgoing {
            method: parts.method,
            path: path_and_query,
            authority: authority_value,
            auto_host: false,
            headers: parts.headers,
            downstream_h2,
        };
        return Box::pin(with_deadline(
            ex.deadline,
            upgrade::forward_upgrade(&target, out, on_upgrade, &mut ex.info, ex.idle),
        ))
        .await;
    }

    let (parts, body) = req.into_parts();
    let body = if body.is_end_stream() {
        RequestBody::Empty
    } else {
        let received = Arc::new(AtomicU64::new(0));
        ex.received = Some(received.clone());
        let streamed = Streamed::new(body, Some(received), manager.request_timeout);
        if retry.is_some_and(|r| r.num_retries > 0) {
            RequestBody::Replay(ReplayBody::new(streamed))
        } else {
            RequestBody::Stream(streamed)
        }
    };
    let out = Outgoing {
        method: parts.method,
        path: path_and_query,
        authority: authority_value,
        auto_host: matches!(fwd.host_rewrite, super::route::HostRewrite::Auto),
        headers: parts.headers,
        downstream_h2,
    };
    let upstream =
        with_deadline(ex.deadline, forward::send(&target, out, body, &mut ex.info)).await?;
    let Upstream {
        response,
        pooled,
        in_flight,
        at,
    } = upstream;
    ex.info.response_after = Some(at.duration_since(ex.info.start));
    ex.pooled = pooled;
    ex.in_flight = Some(in_flight);
    let (mut parts, body) = response.into_parts();
    parts.version = Version::HTTP_11;
    remove_hop_by_hop(&mut parts.headers, false);
    if !manager.suppress_envoy_headers {
        let ms = at.duration_since(ex.info.start).as_millis() as u64;
        parts
            .headers
            .insert(X_UPSTREAM_SERVICE_TIME.clone(), HeaderValue::from(ms));
    }
    Ok(Response::from_parts(parts, ResponseBody::upstream(body)))
}

/// Bounds `fut` by the deadline. A plain function returning a combinator, not an
/// `async fn`: an async wrapper would hold `fut` twice (as argument and as awaitee) and
/// double the size of every request's future.
fn with_deadline<T, F>(
    deadline: Option<Instant>,
    fut: F,
) -> impl Future<Output = Result<T, ProxyError>>
where
    F: Future<Output = Result<T, ProxyError>>,
{
    use futures_util::future::Either;
    use futures_util::FutureExt;
    match deadline {
        Some(at) => Either::Left(
            tokio::time::timeout_at(at.into(), fut).map(move |r| match r {
                Ok(r) => r,
                Err(_) => Err(ProxyError::UpstreamTimeout(
                    at.saturating_duration_since(Instant::now()),
                )),
            }),
        ),
        None => Either::Right(fut),
    }
}

/// Shapes the response and attaches the stream's books to its body.
fn finish(
    manager: &Arc<HttpManager>,
    mut response: Response<ResponseBody>,
    mut ex: Exchange,
) -> Response<ResponseBody> {
    let (pooled, in_flight) = (ex.pooled.take(), ex.in_flight.take());
    let route_stats = ex.taken.as_ref().map(|t| {
        let (vh, route, arm) = t.parts();
        let headers = response.headers_mut();
        for m in [
            arm.map(|a| &a.response_headers),
            Some(&route.response_headers),
            Some(&vh.response_headers),
            Some(&t.table.response_headers),
        ]
        .into_iter()
        .flatten()
        {
            m.apply(headers, &ex.info);
        }
        route.stats.clone()
    });
    let headers = response.headers_mut();
    match &manager.server_header {
        ServerHeader::Overwrite(v) => {
            headers.insert(SERVER, v.clone());
        }
        ServerHeader::AppendIfAbsent(v) => {
            if !headers.contains_key(SERVER) {
                headers.insert(SERVER, v.clone());
            }
        }
        ServerHeader::PassThrough => {}
    }
    if manager.always_set_request_id_in_response {
        if let Some(id) = ex.request_id.take() {
            headers.insert(X_REQUEST_ID.clone(), id);
        }
    }
    if let Some(via) = &manager.via {
        headers.append(VIA, via.clone());
    }
    ex.info.response_code = Some(response.status().as_u16());
    capture(
        response.headers(),
        &manager.response_header_names,
        &mut ex.info.response_headers,
    );
    let end = Box::new(StreamEnd {
        info: ex.info,
        manager: manager.clone(),
        route_stats,
        received: ex.received,
        pooled,
        in_flight,
    });
    let (deadline, idle) = (ex.deadline, ex.idle);
    response.map(|b| b.with_end(end).with_timeouts(deadline, idle))
}

/// Requests that must not pass: request smuggling shapes, HTTP/1.0 when refused, and
/// HTTP/1.1 without `Host`.
fn check<B>(req: &Request<B>, manager: &HttpManager) -> Result<(), ProxyError> {
    let h = req.headers();
    let mut lengths = h.get_all(CONTENT_LENGTH).iter();
    if let Some(first) = lengths.next() {
        if lengths.next().is_some() || first.as_bytes().contains(&b',') {
            return Err(ProxyError::BadRequest("duplicate content-length"));
        }
        if h.contains_key(TRANSFER_ENCODING) {
            return Err(ProxyError::BadRequest(
                "content-length with transfer-encoding",
            ));
        }
    }
    match req.version() {
        Version::HTTP_10 | Version::HTTP_09 if !manager.accept_http_10 => {
            return Err(ProxyError::Http10NotAccepted)
        }
        Version::HTTP_11 if !h.contains_key(HOST) && req.uri().authority().is_none() => {
            return Err(ProxyError::BadRequest("missing host"))
        }
        _ => {}
    }
    if h.get_all(HOST).iter().count() > 1 {
        return Err(ProxyError::BadRequest("duplicate host"));
    }
    Ok(())
}

/// The request's host in lower case (absolute-form or `:authority`, else `Host`), with
/// the port stripped as configured. It shares the request's buffer rather than borrow
/// the request, whose headers still change, or copy it.
struct Host {
    source: HostSource,
    len: usize,
}

enum HostSource {
    Header(HeaderValue),
    Uri(http::uri::Authority),
}

impl Host {
    fn of<B>(
        req: &Request<B>,
        manager: &HttpManager,
        listener_port: u16,
    ) -> Result<Host, ProxyError> {
        let source = match req.uri().authority() {
            Some(a) => HostSource::Uri(a.clone()),
            None => HostSource::Header(
                req.headers()
                    .get(HOST)
                    .cloned()
                    .unwrap_or(HeaderValue::from_static("")),
            ),
        };
        let mut host = Host {
            len: usize::MAX,
            source,
        };
        let full = host.full().ok_or(ProxyError::BadRequest("invalid host"))?;
        if full.bytes().any(|b| b.is_ascii_uppercase()) {
            let lower = HeaderValue::from_str(&full.to_ascii_lowercase())
                .map_err(|_| ProxyError::BadRequest("invalid host"))?;
            host.source = HostSource::Header(lower);
        }
        let full = host.full().unwrap_or("");
        host.len = match manager.strip_port {
            StripPort::Any => strip_port(full).len(),
            StripPort::Matching => {
                let stripped = strip_port(full).len();
                let port = full.get(stripped + 1..).and_then(|p| p.parse::<u16>().ok());
                if port == Some(listener_port) {
                    stripped
                } else {
                    full.len()
                }
            }
            StripPort::None => full.len(),
        };
        Ok(host)
    }

    fn full(&self) -> Option<&str> {
        match &self.source {
            HostSource::Header(h) => h.to_str().ok(),
            HostSource::Uri(a) => Some(a.as_str()),
        }
    }

    fn as_str(&self) -> &str {
        let full = self.full().unwrap_or("");
        full.get(..self.len).unwrap_or(full)
    }
}

/// The path (with query) routes match against: the request's own, shared, unless
/// normalization changed it.
enum RoutedPath {
    Shared(Option<PathAndQuery>),
    Normalized(String),
}

impl RoutedPath {
    fn of<B>(req: &Request<B>, manager: &HttpManager) -> RoutedPath {
        if req.method() == Method::CONNECT {
            return RoutedPath::Shared(None);
        }
        let pq = req.uri().path_and_query();
        let raw = pq.map_or("", |p| p.as_str());
        let path = raw.split_once('?').map_or(raw, |(p, _)| p);
        let merge = manager.merge_slashes && path.contains("//");
        let dots = manager.normalize_path
            && (path.contains("/.") || path.contains("%2e") || path.contains("%2E"));
        if !merge && !dots && !path.is_empty() {
            return RoutedPath::Shared(pq.cloned());
        }
        RoutedPath::Normalized(normalize_path(raw, merge, dots))
    }

    fn as_str(&self) -> &str {
        match self {
            RoutedPath::Shared(p) => p.as_ref().map_or("", |p| p.as_str()),
            RoutedPath::Normalized(s) => s,
        }
    }

    /// The path as sent upstream when no rewrite applies.
    fn path_and_query(&self) -> Option<PathAndQuery> {
        match self {
            RoutedPath::Shared(p) => p.clone(),
            RoutedPath::Normalized(s) => PathAndQuery::try_from(s.as_str()).ok(),
        }
    }
}

fn normalize_path(raw: &str, merge: bool, dots: bool) -> String {
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw, None),
    };
    let mut path: Cow<'_, str> = Cow::Borrowed(if path.is_empty() { "/" } else { path });
    if merge {
        let mut merged = String::with_capacity(path.len());
        for c in path.chars() {
            if !(c == '/' && merged.ends_with('/')) {
                merged.push(c);
            }
        }
        path = Cow::Owned(merged);
    }
    if dots {
        path = Cow::Owned(remove_dot_segments(&path));
    }
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path.into_owned(),
    }
}

fn original_authority<B>(req: &Request<B>) -> Option<HeaderValue> {
    match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => req.headers().get(HOST).cloned(),
    }
}

/// RFC 3986 §5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/').skip(1) {
        match seg {
            "." | "%2e" | "%2E" => {}
            ".." | "%2e%2e" | "%2E%2E" | ".%2e" | "%2e." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let trailing = path.ends_with("/.") || path.ends_with("/..");
    let mut s = String::with_capacity(path.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if s.is_empty() || trailing {
        s.push('/');
    }
    s
}

/// `X-Forwarded-For`, the client address, `X-Forwarded-Proto` and `X-Request-Id`.
fn forwarding_headers<B>(
    req: &mut Request<B>,
    conn: &Connection,
    ex: &mut Exchange,
    scheme: &'static str,
) {
    let manager = &conn.manager;
    let peer = conn.downstream.remote;
    let headers = req.headers_mut();
    let client = client_address(
        headers,
        peer.ip(),
        manager.use_remote_address,
        manager.xff_num_trusted_hops,
    );
    ex.info.client = SocketAddr::new(client, if client == peer.ip() { peer.port() } else { 0 });
    if manager.use_remote_address && !manager.skip_xff_append {
        append_xff(headers, peer.ip());
    }
    if manager.use_remote_address || !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(scheme));
    }
    if manager.generate_request_id {
        let external = manager.use_remote_address && !is_internal(client);
        let replace = !headers.contains_key(&X_REQUEST_ID)
            || (external && !manager.preserve_external_request_id);
        if replace {
            headers.insert(X_REQUEST_ID.clone(), new_request_id());
        }
    }
    ex.request_id = headers.get(&X_REQUEST_ID).cloned();
}

/// RFC 1918, loopback and unique-local addresses count as internal, as in Envoy.
fn is_internal(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(a) => a.is_private() || a.is_loopback(),
        std::net::IpAddr::V6(a) => a.is_loopback() || (a.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// The upgrade this request asks for, if any (`h2c` is not one: it is served as
/// HTTP/1.1, as Envoy does).
fn upgrade_type<B>(req: &Request<B>) -> Option<String> {
    if req.method() == Method::CONNECT {
        return Some("CONNECT".to_string());
    }
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let connection_upgrade = req.headers().get_all(CONNECTION).iter().any(|v| {
        v.to_str()
            .unwrap_or("")
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    });
    let kind = req.headers().get(UPGRADE)?.to_str().ok()?.trim();
    (connection_upgrade && !kind.eq_ignore_ascii_case("h2c")).then(|| kind.to_ascii_lowercase())
}

/// Applies `prefix_rewrite` or `regex_rewrite`; borrowed when nothing changed.
fn rewrite_path<'a>(fwd: &Forward, matcher: &PathMatch, path: &'a str) -> Cow<'a, str> {
    let (p, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let rewritten: Option<String> = if let Some(new_prefix) = &fwd.prefix_rewrite {
        let matched_len = match matcher {
            PathMatch::Prefix(m) | PathMatch::SeparatedPrefix(m) | PathMatch::Exact(m) => {
                m.len().min(p.len())
            }
            _ => 0,
        };
        let rest = &p[matched_len..];
        let mut s = String::with_capacity(new_prefix.len() + rest.len());
        s.push_str(new_prefix);
        s.push_str(rest);
        Some(s)
    } else {
        fwd.regex_rewrite
            .as_ref()
            .map(|(re, sub)| re.replace_all(p, sub.as_str()).into_owned())
    };
    match (rewritten, query) {
        (Some(mut s), Some(q)) => {
            s.push('?');
            s.push_str(q);
            Cow::Owned(s)
        }
        (Some(s), None) => Cow::Owned(s),
        (None, _) => Cow::Borrowed(path),
    }
}

/// Parses gRPC's `grpc-timeout` (e.g. `100m`, `5S`).
pub fn parse_grpc_timeout(v: &[u8]) -> Option<Duration> {
    let (unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts() {
        assert_eq!(
            parse_grpc_timeout(b"100m"),
            Some(Duration::from_millis(100))
        );
        assert_eq!(parse_grpc_timeout(b"5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout(b"m"), None);
        assert_eq!(parse_grpc_timeout(b"123456789S"), None);
        assert_eq!(parse_grpc_timeout(b"10x"), None);
    }

    #[test]
    fn dot_segments() {
        assert_eq!(remove_dot_segments("/a/b/../c"), "/a/c");
        assert_eq!(remove_dot_segments("/a/./b/."), "/a/b/");
        assert_eq!(remove_dot_segments("/../../x"), "/x");
        assert_eq!(remove_dot_segments("/a/%2e%2e/b"), "/b");
    }
}
