//! The JWT authentication HTTP filter (`envoy.filters.http.jwt_authn`,
//! `envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication`), with Envoy's
//! semantics: the first rule whose match fits the request names its requirement
//! ([`requirement`]); no rule, no check. A request that fails is answered 401 (403 for
//! a disallowed audience) with Envoy's reason as the body (`Jwt is missing`, `Jwt
//! verification fails`, ...), a `www-authenticate: Bearer realm="URI"` challenge
//! (with `, error="invalid_token"` unless the token was missing) and response code
//! details `jwt_authn_access_denied{Jwt_is_missing}`. The token is parsed ([`token`]),
//! its claims checked and its signature verified ([`jwks`]) with local keys or keys
//! fetched through a cluster ([`remote`]).
//!
//! What a request that passes leaves behind:
//! - each verified token is removed from its header unless its provider `forward`s it,
//!   and its payload goes upstream in `forward_payload_header` when one is named (that
//!   header is always stripped from what the client sent, so it cannot be forged);
//! - request metadata under `envoy.filters.http.jwt_authn`: the payload (a JSON
//!   object) at the provider's `payload_in_metadata` key;
//! - request metadata under `istio_authn`, which Istio's own authentication filter
//!   would write and its RBAC rules read (Weft has no such filter, so this one does),
//!   from the verified token with the lexically first issuer:
//!   `request.auth.principal` = `ISS/SUB` (when both are set; `requestPrincipals`),
//!   `request.auth.audiences` = the first audience, `request.auth.presenter` = `azp`,
//!   `request.auth.claims` = the payload as sent (`request.auth.claims[NAME]`: a string
//!   claim stays a string, a list a list).
//!
//! Counted in `weft_jwt_authn_allowed_total` and `weft_jwt_authn_denied_total` (by
//! `reason`), under the connection manager's stat prefix (and the filter's
//! `stat_prefix`).

pub mod extract;
pub mod jwks;
pub mod provider;
pub mod remote;
pub mod requirement;
pub mod status;
pub mod token;

use crate::http::matcher::RequestView;
use crate::http::route::RouteMatch;
use crate::metadata::DynamicMetadata;
use crate::metrics::JwtStats;
use crate::stream_info::Downstream;
use http::header::{HOST, ORIGIN};
use http::{HeaderMap, HeaderValue, Method, Request};
use provider::Provider;
use requirement::{Check, Requirement, Verified};
use serde_json::Value;
use status::JwtError;
use std::collections::HashMap;
use std::sync::Arc;

/// The filter's name, and its namespace in request metadata.
pub const FILTER_NAME: &str = "envoy.filters.http.jwt_authn";
/// The metadata namespace Istio's RBAC rules read the request's principal from.
pub const ISTIO_AUTHN: &str = "istio_authn";
/// Envoy cuts the path in the challenge's realm to this many bytes.
const MAX_REALM_PATH: usize = 256;

/// A compiled JWT filter.
#[derive(Debug)]
pub struct JwtAuthn {
    /// Its name in the connection manager (per-route configuration is keyed by it).
    pub name: Arc<str>,
    /// Every provider, in name order.
    pub providers: Vec<Arc<Provider>>,
    /// `rules`, in order.
    pub rules: Vec<Rule>,
    /// `requirement_map`, for per-route `requirement_name`s.
    pub requirement_map: HashMap<String, Arc<Requirement>>,
    /// `bypass_cors_preflight`: CORS preflights pass unchecked.
    pub bypass_cors_preflight: bool,
    /// `strip_failure_response`: denials carry no body and no challenge.
    pub strip_failure_response: bool,
    /// Metric handles.
    pub stats: JwtStats,
}

/// One `RequirementRule`.
#[derive(Debug)]
pub struct Rule {
    /// Which requests it is for.
    pub matcher: RouteMatch,
    /// What they must meet; `None`: nothing (the request passes unchecked).
    pub requirement: Option<Arc<Requirement>>,
}

/// A request the filter refused.
#[derive(Debug)]
pub struct JwtDenial {
    /// Why.
    pub error: JwtError,
    /// The `www-authenticate` value; `None` with `strip_failure_response`.
    pub challenge: Option<HeaderValue>,
}

impl JwtAuthn {
    /// The requirement of the first rule that matches the request, if any.
    pub fn requirement(&self, req: &RequestView<'_>) -> Option<&Requirement> {
        let rule = self.rules.iter().find(|r| r.matcher.matches(req))?;
        rule.requirement.as_deref()
    }

    /// Checks the request against `requirement` (from [`JwtAuthn::requirement`]); when
    /// it passes, the verified tokens leave their traces in the request and in
    /// `metadata`. `scheme` is the request's, for the challenge.
    pub async fn authenticate<B>(
        &self,
        req: &mut Request<B>,
        requirement: Option<&Requirement>,
        scheme: &str,
        downstream: &Arc<Downstream>,
        metadata: &mut DynamicMetadata,
    ) -> Result<(), JwtDenial> {
        for p in &self.providers {
            if let Some(h) = &p.forward_payload_header {
                req.headers_mut().remove(h);
            }
        }
        let requirement = match requirement {
            Some(r) if !(self.bypass_cors_preflight && is_cors_preflight(req)) => r,
            _ => {
                self.stats.allowed.inc();
                return Ok(());
            }
        };
        let mut check = Check {
            headers: req.headers(),
            query: req.uri().query(),
            providers: &self.providers,
            downstream,
            now: now(),
            verified: Vec::new(),
        };
        let result = requirement.check(&mut check).await;
        let verified = check.verified;
        match result {
            Ok(()) => {
                self.stats.allowed.inc();
                record(verified, req.headers_mut(), metadata);
                Ok(())
            }
            Err(error) => {
                self.stats.denied[error.index()].inc();
                tracing::debug!(filter = %self.name, "JWT authentication failed: {error}");
                let challenge =
                    (!self.strip_failure_response).then(|| challenge(req, scheme, error));
                Err(JwtDenial { error, challenge })
            }
        }
    }
}

/// Leaves the verified tokens' traces: tokens out of the request unless forwarded,
/// payloads in their headers and in the metadata, Istio's principal and claims.
fn record(verified: Vec<Verified>, headers: &mut HeaderMap, metadata: &mut DynamicMetadata) {
    for v in &verified {
        let p = &v.provider;
        if !p.forward {
            v.location.remove(headers);
        }
        if let Some(name) = &p.forward_payload_header {
            let mut payload = v.jwt.payload_base64url().to_string();
            if p.pad_forward_payload_header {
                while payload.len() % 4 != 0 {
                    payload.push('=');
                }
            }
            if let Ok(value) = HeaderValue::from_str(&payload) {
                headers.insert(name.clone(), value);
            }
        }
        if let Some(key) = &p.payload_in_metadata {
            metadata.set(FILTER_NAME, key, Value::Object(v.jwt.payload.clone()));
        }
    }
    if let Some(first) = verified
        .into_iter()
        .min_by(|a, b| a.jwt.iss.cmp(&b.jwt.iss))
    {
        istio_authn(first.jwt, metadata);
    }
}

/// What Istio's authentication filter records for a verified request token.
fn istio_authn(jwt: token::Jwt, metadata: &mut DynamicMetadata) {
    let mut set = |key: &str, value: Value| metadata.set(ISTIO_AUTHN, key, value);
    if let (Some(iss), Some(sub)) = (&jwt.iss, &jwt.sub) {
        if !iss.is_empty() && !sub.is_empty() {
            set(
                "request.auth.principal",
                Value::String(format!("{iss}/{sub}")),
            );
        }
    }
    if let Some(aud) = jwt.audiences.first() {
        set("request.auth.audiences", Value::String(aud.clone()));
    }
    if let Some(Value::String(azp)) = jwt.payload.get("azp") {
        if !azp.is_empty() {
            set("request.auth.presenter", Value::String(azp.clone()));
        }
    }
    set("request.auth.claims", Value::Object(jwt.payload));
}

/// Envoy's challenge: `Bearer realm="SCHEME://HOST/PATH"`, and `error="invalid_token"`
/// when a token was there.
fn challenge<B>(req: &Request<B>, scheme: &str, error: JwtError) -> HeaderValue {
    let scheme = req
        .headers()
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(scheme);
    let host = match req.uri().authority() {
        Some(a) => a.as_str(),
        None => req
            .headers()
            .get(HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    };
    let path = req.uri().path_and_query().map_or("", |p| p.as_str());
    let path = path.get(..MAX_REALM_PATH).unwrap_or(path);
    let mut value = format!("Bearer realm=\"{scheme}://{host}{path}\"");
    if error != JwtError::Missing {
        value.push_str(", error=\"invalid_token\"");
    }
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

/// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
fn is_cors_preflight<B>(req: &Request<B>) -> bool {
    let h = req.headers();
    let present = |name| h.get(name).is_some_and(|v: &HeaderValue| !v.is_empty());
    req.method() == Method::OPTIONS
        && present(ORIGIN)
        && present(http::header::ACCESS_CONTROL_REQUEST_METHOD)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
