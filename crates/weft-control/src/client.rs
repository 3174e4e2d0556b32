//! A client of the REST API, for the CLI and for sidecars reporting health: JSON over
//! HTTP/1.1, with several control-plane addresses tried in turn.

use crate::api::types::ErrorBody;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;
use tokio::net::TcpStream;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No control plane answered.
    #[error("cannot reach the control plane at {servers}: {reason}")]
    Unreachable {
        /// The addresses tried.
        servers: String,
        /// The last failure.
        reason: String,
    },
    /// The control plane answered with an error.
    #[error("{}", .body.error)]
    Api {
        /// Its status.
        status: StatusCode,
        /// Its explanation.
        body: ErrorBody,
    },
    /// The answer was not what the API sends.
    #[error("unexpected answer from the control plane: {0}")]
    Decode(String),
}

impl ClientError {
    /// The HTTP status, for an error the control plane returned.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Talks to one control plane (of several addresses).
#[derive(Debug, Clone)]
pub struct ApiClient {
    servers: Vec<String>,
    token: Option<String>,
    timeout: Duration,
}

/// `http://host:port/`, `host:port` → `host:port`.
fn authority(server: &str) -> &str {
    let s = server.strip_prefix("http://").unwrap_or(server);
    s.trim_end_matches('/')
}

impl ApiClient {
    /// A client of `servers` (`host:port` or `http://host:port`, comma-separated lists
    /// allowed), sending `token` as a bearer credential when given.
    pub fn new(servers: &[String], token: Option<String>) -> ApiClient {
        ApiClient {
            servers: servers
                .iter()
                .flat_map(|s| s.split(','))
                .map(|s| authority(s.trim()).to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            token,
            timeout: Duration::from_secs(30),
        }
    }

    /// Sets the per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> ApiClient {
        self.timeout = timeout;
        self
    }

    /// The addresses, as given.
    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    async fn once(
        &self,
        server: &str,
        method: &Method,
        path: &str,
        body: &Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), String> {
        let stream = TcpStream::connect(server)
            .await
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header("host", server)
            .header("accept", "application/json");
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = match body {
            Some(b) => request
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(b.clone()))),
            None => request.body(Full::new(Bytes::new())),
        }
        .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, bytes))
    }

    /// Sends a request to the first control plane that answers; a non-2xx answer is
    /// [`ClientError::Api`].
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, ClientError> {
        let mut reason = "no server configured".to_string();
        for server in &self.servers {
            let attempt =
                tokio::time::timeout(self.timeout, self.once(server, &method, path, &body)).await;
            let (status, bytes) = match attempt {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => {
                    reason = format!("{server}: {e}");
                    continue;
                }
                Err(_) => {
                    reason = format!("{server}: no answer within {:?}", self.timeout);
                    continue;
                }
            };
            if status.is_success() {
                return Ok(bytes);
            }
            let body = serde_json::from_slice::<ErrorBody>(&bytes).unwrap_or_else(|_| ErrorBody {
                error: format!("{status}: {}", String::from_utf8_lossy(&bytes).trim()),
                details: Vec::new(),
            });
            return Err(ClientError::Api { status, body });
        }
        Err(ClientError::Unreachable {
            servers: self.servers.join(","),
            reason,
        })
    }

    /// Sends JSON (or nothing) and decodes JSON.
    pub async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let body = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let bytes = self.call(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }
}

/// Encodes one path segment (names are DNS labels, but ids may hold anything).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
