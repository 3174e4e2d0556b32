//! Connection pool settings (circuit breaking) for DestinationRules and Sidecars.

use crate::duration::Duration;
use crate::validate::{Validate, Validator};
use serde::{Deserialize, Serialize};

/// Limits on connections and requests to an upstream.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionPoolSettings {
    /// TCP limits (HTTP and TCP upstreams).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpSettings>,
    /// HTTP limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSettings>,
}

/// TCP connection limits.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpSettings {
    /// Most connections to one upstream host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<i32>,
    /// TCP connect timeout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Duration>,
    /// TCP keepalive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// Longest a connection may live.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connection_duration: Option<Duration>,
    /// Close connections idle this long.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
}

/// TCP keepalive probes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpKeepalive {
    /// Unanswered probes before the connection is dead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probes: Option<u32>,
    /// Idle time before the first probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<Duration>,
    /// Time between probes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
}

/// HTTP request limits.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpSettings {
    /// Most requests waiting for a connection.
    #[serde(
        rename = "http1MaxPendingRequests",
        skip_serializing_if = "Option::is_none"
    )]
    pub http1_max_pending_requests: Option<i32>,
    /// Most active requests to the upstream.
    #[serde(rename = "http2MaxRequests", skip_serializing_if = "Option::is_none")]
    pub http2_max_requests: Option<i32>,
    /// Requests per connection before it is closed (1 disables keep-alive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_requests_per_connection: Option<i32>,
    /// Most outstanding retries across the upstream's hosts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<i32>,
    /// Close connections without requests for this long.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
    /// Whether HTTP/1.1 connections are upgraded to HTTP/2.
    #[serde(rename = "h2UpgradePolicy", skip_serializing_if = "Option::is_none")]
    pub h2_upgrade_policy: Option<H2UpgradePolicy>,
    /// Use the downstream's protocol upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_client_protocol: Option<bool>,
    /// Most concurrent streams per HTTP/2 connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_streams: Option<i32>,
}

/// HTTP/2 upgrade policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum H2UpgradePolicy {
    /// The mesh default.
    Default,
    /// Never upgrade.
    DoNotUpgrade,
    /// Upgrade.
    Upgrade,
}

impl Validate for ConnectionPoolSettings {
    fn validate(&self, v: &mut Validator<'_>) {
        if self.tcp.is_none() && self.http.is_none() {
            v.error("connection pool must have at least one field (tcp or http)");
        }
        if let Some(tcp) = &self.tcp {
            v.at("tcp", |v| {
                non_negative(v, "maxConnections", tcp.max_connections);
            });
        }
        if let Some(http) = &self.http {
            v.at("http", |v| {
                non_negative(
                    v,
                    "http1MaxPendingRequests",
                    http.http1_max_pending_requests,
                );
                non_negative(v, "http2MaxRequests", http.http2_max_requests);
                non_negative(
                    v,
                    "maxRequestsPerConnection",
                    http.max_requests_per_connection,
                );
                non_negative(v, "maxRetries", http.max_retries);
                non_negative(v, "maxConcurrentStreams", http.max_concurrent_streams);
                if http.h2_upgrade_policy == Some(H2UpgradePolicy::Upgrade)
                    && http.use_client_protocol == Some(true)
                {
                    v.error_at(
                        "useClientProtocol",
                        "useClientProtocol must not be true when h2UpgradePolicy is UPGRADE",
                    );
                }
            });
        }
    }
}

fn non_negative(v: &mut Validator<'_>, key: &str, value: Option<i32>) {
    if let Some(n) = value {
        if n < 0 {
            v.error_at(key, format!("{key} must not be negative (it is {n})"));
        }
    }
}
