//! Requests that become tunnels: WebSocket (and other `Upgrade`s) and CONNECT, either
//! forwarded to the upstream on a dedicated HTTP/1.1 connection or, with
//! `connect_config`, terminated here with the payload carried over TCP.

use super::body::ResponseBody;
use super::forward::{classify, Outgoing, Target};
use crate::cluster::endpoint::InFlight;
use crate::cluster::pool;
use crate::error::ProxyError;
use crate::io::copy_bidirectional;
use crate::stream_info::StreamInfo;
use http::header::HOST;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::time::Duration;

/// Forwards the upgrade request; when the upstream switches protocols (or accepts the
/// CONNECT), both sides are joined into one tunnel.
pub async fn forward_upgrade(
    target: &Target<'_>,
    out: Outgoing,
    downstream: OnUpgrade,
    info: &mut StreamInfo,
    idle: Option<Duration>,
) -> Result<Response<ResponseBody>, ProxyError> {
    let cluster = target.cluster;
    let endpoint = cluster
        .lb
        .pick(&cluster.hosts(), target.hash, None)
        .ok_or(ProxyError::NoHealthyUpstream)?;
    info.upstream_host = Some(endpoint.address);
    info.attempts = 1;
    let in_flight = InFlight::start(endpoint.clone());
    let (mut sender, tls) = pool::connect_http1(&endpoint, cluster, true).await?;
    info.upstream_tls = tls;
    let connect = out.method == Method::CONNECT;
    let mut req = Request::new(super::body::RequestBody::Empty);
    *req.method_mut() = out.method;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = out.headers;
    req.headers_mut().insert(HOST, out.authority.clone());
    *req.uri_mut() = if connect {
        Uri::try_from(out.authority.as_bytes())
            .map_err(|_| ProxyError::BadRequest("invalid CONNECT target"))?
    } else {
        Uri::from(out.path)
    };
    let mut resp = sender.send_request(req).await.map_err(classify)?;
    in_flight.responded(resp.status().as_u16(), cluster.lb.policy.ewma_decay());
    let switched =
        resp.status() == StatusCode::SWITCHING_PROTOCOLS || (connect && resp.status().is_success());
    if !switched {
        return Ok(resp.map(ResponseBody::upstream));
    }
    let upstream = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let _in_flight = in_flight;
        let (Ok(down), Ok(up)) = tokio::join!(downstream, upstream) else {
            return;
        };
        let (mut down, mut up) = (TokioIo::new(down), TokioIo::new(up));
        copy_bidirectional(&mut down, &mut up, idle).await;
    });
    Ok(resp.map(|_| ResponseBody::empty()))
}

/// Answers a CONNECT here and carries its payload over a TCP connection to the cluster.
pub async fn terminate_connect(
    target: &Target<'_>,
    downstream: OnUpgrade,
    info: &mut StreamInfo,
    idle: Option<Duration>,
) -> Result<Response<ResponseBody>, ProxyError> {
    let cluster = target.cluster;
    let endpoint = cluster
        .lb
        .pick(&cluster.hosts(), target.hash, None)
        .ok_or(ProxyError::NoHealthyUpstream)?;
    info.upstream_host = Some(endpoint.address);
    info.attempts = 1;
    let in_flight = InFlight::start(endpoint.clone());
    let mut tcp = pool::connect_tcp(&endpoint, cluster).await?;
    info.upstream_local = tcp.local_addr().ok();
    tokio::spawn(async move {
        let _in_flight = in_flight;
        let Ok(down) = downstream.await else { return };
        let mut down = TokioIo::new(down);
        copy_bidirectional(&mut down, &mut tcp, idle).await;
    });
    Ok(Response::new(ResponseBody::empty()))
}
