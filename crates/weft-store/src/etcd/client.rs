//! The gRPC side of the etcd store: the `etcd://host:port,host:port` URL, one channel
//! to the endpoint in use, failover to the next endpoint when it fails, and unary and
//! streaming calls through `tonic::client::Grpc` with prost's codec.
//!
//! Failover rule (the one etcd's own Go client follows): a request that may have
//! reached a server is retried on another endpoint only if repeating it is harmless
//! ([`Retry::Always`]: reads, watch creation, keep-alives, compaction). Writes
//! ([`Retry::IfNotSent`]) move on only when the connection could not even be made; if a
//! write fails after it may have been sent, the caller gets the error (the write may or
//! may not have happened) and the next call uses the next endpoint.

use std::error::Error as _;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use futures_util::Stream;
use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status, Streaming};
use tonic_prost::ProstCodec;

use super::EtcdError;

/// The port used when an endpoint names none (etcd's client port).
pub const DEFAULT_PORT: u16 = 2379;

/// How long to wait for a TCP connection to an endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a unary call (or a stream's first response) may take.
pub(super) const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 pings on idle connections, so a dead endpoint under a watch is noticed.
/// (etcd refuses pings more often than every 5 s by default.)
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest response accepted (tonic's default is 4 MiB; listings page well below).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// When a failed call may be repeated on another endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    /// Repeating is harmless.
    Always,
    /// Only if the request certainly never left.
    IfNotSent,
}

/// The endpoints and the connection in use.
#[derive(Debug)]
pub(super) struct Client {
    url: String,
    endpoints: Vec<String>,
    current: Mutex<Current>,
}

#[derive(Debug)]
struct Current {
    index: usize,
    channel: Option<Channel>,
}

/// A connection to one endpoint.
pub(super) struct Conn {
    index: usize,
    /// `host:port`.
    pub(super) endpoint: String,
    channel: Channel,
}

/// A failed call: `sent` tells whether the request may have reached the server.
struct Failure {
    status: Box<Status>,
    sent: bool,
}

/// Parses `etcd://host[:port][,host[:port]...]` into `host:port` endpoints.
pub(super) fn parse_url(url: &str) -> Result<Vec<String>, EtcdError> {
    let invalid = |reason: &'static str| EtcdError::InvalidUrl {
        url: url.to_owned(),
        reason,
    };
    let rest = url
        .strip_prefix("etcd://")
        .ok_or_else(|| invalid("expected etcd://host:port[,host:port...]"))?;
    let rest = rest.trim_end_matches('/');
    let mut endpoints = Vec::new();
    for part in rest.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(invalid("empty endpoint"));
        }
        if part.contains('/') || part.contains('@') {
            return Err(invalid(
                "endpoints are host:port, without path or credentials",
            ));
        }
        let has_port = match part.rsplit_once(':') {
            // `[::1]:2379` or `host:2379`; a bare IPv6 literal must be bracketed.
            Some((host, port))
                if !host.is_empty() && (host.ends_with(']') || !host.contains(':')) =>
            {
                port.parse::<u16>()
                    .map_err(|_| invalid("endpoint port is not a number"))?;
                true
            }
            Some(_) if !part.starts_with('[') => {
                return Err(invalid("IPv6 endpoints must be bracketed: [::1]:2379"))
            }
            _ => false,
        };
        endpoints.push(if has_port {
            part.to_owned()
        } else {
            format!("{part}:{DEFAULT_PORT}")
        });
    }
    Ok(endpoints)
}

impl Client {
    /// Parses `url` and connects to the first endpoint that answers.
    pub(super) async fn connect(url: &str) -> Result<Self, EtcdError> {
        let client = Self {
            url: url.to_owned(),
            endpoints: parse_url(url)?,
            current: Mutex::new(Current {
                index: 0,
                channel: None,
            }),
        };
        client.conn().await?;
        Ok(client)
    }

    /// The endpoints, `host:port`, in failover order.
    pub(super) fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The connection in use, connecting (from the current endpoint on) if needed.
    pub(super) async fn conn(&self) -> Result<Conn, EtcdError> {
        let (start, channel) = {
            let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
            (current.index, current.channel.clone())
        };
        if let Some(channel) = channel {
            return Ok(Conn {
                index: start,
                endpoint: self.endpoints[start].clone(),
                channel,
            });
        }
        let mut last = None;
        for step in 0..self.endpoints.len() {
            let index = (start + step) % self.endpoints.len();
            let endpoint = &self.endpoints[index];
            match connect(endpoint).await {
                Ok(channel) => {
                    let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
                    current.index = index;
                    current.channel = Some(channel.clone());
                    return Ok(Conn {
                        index,
                        endpoint: endpoint.clone(),
                        channel,
                    });
                }
                Err(source) => {
                    tracing::debug!(%endpoint, error = %source, "etcd endpoint unreachable");
                    last = Some((endpoint.clone(), source));
                }
            }
        }
        let (endpoint, source) = last.ok_or_else(|| EtcdError::InvalidUrl {
            url: self.url.clone(),
            reason: "no endpoints",
        })?;
        Err(EtcdError::Unreachable {
            url: self.url.clone(),
            endpoint,
            source,
        })
    }

    /// Drops the connection to endpoint `index` and moves to the next endpoint.
    pub(super) fn failed(&self, index: usize) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.index == index {
            current.channel = None;
            current.index = (index + 1) % self.endpoints.len();
        }
    }

    /// Calls a unary method, failing over as `retry` allows; returns the answer and
    /// the endpoint (`host:port`) that gave it.
    pub(super) async fn unary<Req, Resp>(
        &self,
        method: &'static str,
        request: Req,
        retry: Retry,
    ) -> Result<(Resp, String), EtcdError>
    where
        Req: prost::Message + Clone + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.with_failover(method, retry, |channel| {
            let request = request.clone();
            async move {
                let mut grpc = ready(channel).await?;
                let path = PathAndQuery::from_static(method);
                let codec = ProstCodec::<Req, Resp>::default();
                match grpc.unary(Request::new(request), path, codec).await {
                    Ok(response) => Ok(response.into_inner()),
                    Err(status) => Err(Failure::from_status(status)),
                }
            }
        })
        .await
    }

    /// Opens a streaming call with the requests `make` returns (called once per
    /// attempt; `K` is whatever must live as long as the request stream, such as its
    /// sender) and waits for the response headers. Fails over as `retry` allows.
    pub(super) async fn streaming<Req, Resp, S, K, F>(
        &self,
        method: &'static str,
        retry: Retry,
        make: F,
    ) -> Result<(Streaming<Resp>, K, String), EtcdError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
        S: Stream<Item = Req> + Send + 'static,
        K: Send,
        F: Fn() -> (S, K),
    {
        let (result, endpoint) = self
            .with_failover(method, retry, |channel| {
                let (requests, keep) = make();
                async move {
                    let mut grpc = ready(channel).await?;
                    let path = PathAndQuery::from_static(method);
                    let codec = ProstCodec::<Req, Resp>::default();
                    match grpc.streaming(Request::new(requests), path, codec).await {
                        Ok(response) => Ok((response.into_inner(), keep)),
                        Err(status) => Err(Failure::from_status(status)),
                    }
                }
            })
            .await?;
        Ok((result.0, result.1, endpoint))
    }

    /// Runs `call` on the current endpoint, moving on to the next on failure as
    /// `retry` allows (each endpoint at most once). Returns the result and the endpoint
    /// that produced it.
    async fn with_failover<T, F, Fut>(
        &self,
        method: &'static str,
        retry: Retry,
        call: F,
    ) -> Result<(T, String), EtcdError>
    where
        F: Fn(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let attempts = self.endpoints.len();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let conn = self.conn().await?;
            let failure = match tokio::time::timeout(RPC_TIMEOUT, call(conn.channel.clone())).await
            {
                Ok(Ok(value)) => return Ok((value, conn.endpoint)),
                Ok(Err(failure)) => failure,
                Err(_) => {
                    self.failed(conn.index);
                    if retry == Retry::Always && attempt < attempts {
                        continue;
                    }
                    return Err(EtcdError::Timeout {
                        endpoint: conn.endpoint,
                        method,
                        after: RPC_TIMEOUT,
                    });
                }
            };
            if failure.status.code() != Code::Unavailable {
                return Err(EtcdError::Rpc {
                    endpoint: conn.endpoint,
                    method,
                    status: failure.status,
                });
            }
            self.failed(conn.index);
            let may_retry = retry == Retry::Always || !failure.sent;
            if !may_retry || attempt >= attempts {
                return Err(EtcdError::Rpc {
                    endpoint: conn.endpoint,
                    method,
                    status: failure.status,
                });
            }
            tracing::debug!(
                endpoint = %conn.endpoint,
                method,
                error = %failure.status.message(),
                "etcd call failed; trying the next endpoint"
            );
        }
    }
}

impl Failure {
    /// Classifies a call's status: never sent if the connection could not be made.
    fn from_status(status: Status) -> Self {
        let mut cause = status.source();
        let mut sent = true;
        while let Some(error) = cause {
            if error.is::<tonic::ConnectError>() {
                sent = false;
                break;
            }
            cause = error.source();
        }
        Self {
            status: Box::new(status),
            sent,
        }
    }
}

/// A gRPC client on `channel`, ready to send (a failure here means nothing was sent).
async fn ready(channel: Channel) -> Result<Grpc<Channel>, Failure> {
    let mut grpc = Grpc::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
    match grpc.ready().await {
        Ok(()) => Ok(grpc),
        Err(error) => Err(Failure {
            status: Box::new(Status::unavailable(format!(
                "connection not ready: {error}"
            ))),
            sent: false,
        }),
    }
}

/// Connects to `host:port` over plain HTTP/2.
async fn connect(endpoint: &str) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("http://{endpoint}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .connect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoint_lists() {
        assert_eq!(
            parse_url("etcd://127.0.0.1:2379,127.0.0.1:22379").expect("valid URL"),
            ["127.0.0.1:2379", "127.0.0.1:22379"]
        );
        assert_eq!(parse_url("etcd://db/").expect("valid URL"), ["db:2379"]);
        assert_eq!(
            parse_url("etcd://[::1]:3000").expect("valid URL"),
            ["[::1]:3000"]
        );
        assert_eq!(
            parse_url("etcd://[::1]").expect("valid URL"),
            ["[::1]:2379"]
        );
    }

    #[test]
    fn rejects_bad_urls_naming_them() {
        for bad in [
            "http://127.0.0.1:2379",
            "etcd://",
            "etcd://a:1,,b:2",
            "etcd://a:port",
            "etcd://a:1/path",
            "etcd://::1",
        ] {
            let error = parse_url(bad).expect_err(bad);
            assert!(error.to_string().contains(bad), "{error}");
        }
    }
}
