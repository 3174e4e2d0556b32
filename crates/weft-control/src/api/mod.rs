//! The REST API the CLI speaks (JSON over HTTP/1.1):
//!
//! | method and path | what |
//! |---|---|
//! | `GET /ready` | 200 once the first translation is done |
//! | `GET /metrics` | the control plane's metrics (Prometheus text) |
//! | `POST /api/v1/apply?dryRun&partial` | apply files ([`types::DocumentsRequest`]) |
//! | `POST /api/v1/delete?dryRun` | delete the resources files name |
//! | `GET /api/v1/resources/{kind}?namespace=NS` | list (`namespace=*`: every namespace) |
//! | `GET /api/v1/resources/{kind}/{namespace}/{name}` | one resource |
//! | `DELETE /api/v1/resources/{kind}/{namespace}/{name}` | delete one |
//! | `GET /api/v1/services?namespace=NS` | services, instances and health |
//! | `GET /api/v1/services/{namespace}/{name}` | one service described |
//! | `GET /api/v1/proxies` | connected proxies and their sync state |
//! | `PUT /api/v1/registry/{namespace}/{service}/{id}/health` | a sidecar reports its application's health |
//! | `POST /api/v1/tokens` | a join token for one identity ([`types::TokenRequest`]) |
//! | `GET /api/v1/tokens` | token records (never tokens) |
//! | `DELETE /api/v1/tokens/{id}` | revoke a token |
//! | `POST /api/v1/certificates` | sign a workload CSR ([`types::CertificateRequest`]) |
//! | `GET /api/v1/ca/roots` | the trust bundle (PEM) |
//! | `GET /api/v1/ca` | the bundle described, the signing root, rotation state |
//! | `POST /api/v1/ca/rotation` | a root-rotation step ([`types::RotationRequest`]) |
//!
//! Every path but `/ready` and `/metrics` needs `Authorization: Bearer TOKEN` (see
//! `api/auth.rs`): 401 without a valid one, 403 when a workload token asks for more than a
//! sidecar needs.
//!
//! Errors are JSON [`types::ErrorBody`] with a 4xx or 5xx status.

mod auth;
mod changes;
mod handlers;
mod security;
pub mod types;

use crate::auth::Tokens;
use crate::ca::Authority;
use crate::mesh::Mesh;
use crate::metrics::Metrics;
use crate::proxies::Proxies;
use crate::registrar::Registrar;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use std::sync::Arc;
use types::ErrorBody;
use weft_store::{Store, StoreError};

/// What the handlers share.
#[derive(Clone)]
pub struct Api {
    /// The followed mesh.
    pub mesh: Arc<Mesh>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// Registrations.
    pub registrar: Arc<Registrar>,
    /// Connected proxies.
    pub proxies: Arc<Proxies>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Token issuing and verification.
    pub tokens: Arc<Tokens>,
    /// The certificate authority.
    pub authority: Arc<Authority>,
}

/// The API's routes.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/ready", get(handlers::ready))
        .route("/metrics", get(handlers::metrics))
        .route("/api/v1/apply", post(changes::apply))
        .route("/api/v1/delete", post(changes::delete_documents))
        .route("/api/v1/resources/{kind}", get(handlers::list_resources))
        .route(
            "/api/v1/resources/{kind}/{namespace}/{name}",
            get(handlers::get_resource).delete(changes::delete_one),
        )
        .route("/api/v1/services", get(handlers::list_services))
        .route(
            "/api/v1/services/{namespace}/{name}",
            get(handlers::describe_service),
        )
        .route("/api/v1/proxies", get(handlers::proxies))
        .route(
            "/api/v1/registry/{namespace}/{service}/{id}/health",
            put(handlers::report_health),
        )
        .route(
            "/api/v1/tokens",
            post(security::create_token).get(security::list_tokens),
        )
        .route("/api/v1/tokens/{id}", delete(security::revoke_token))
        .route("/api/v1/certificates", post(security::sign_certificate))
        .route("/api/v1/ca/roots", get(security::roots))
        .route("/api/v1/ca", get(security::ca_status))
        .route("/api/v1/ca/rotation", post(security::rotate))
        .fallback(handlers::not_found)
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            auth::authenticate,
        ))
        .with_state(api)
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    /// An error with `status`.
    pub fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                error: error.into(),
                details: Vec::new(),
            },
        }
    }

    /// Adds one line per problem.
    pub fn with_details(mut self, details: Vec<String>) -> ApiError {
        self.body.details = details;
        self
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        tracing::warn!(error = %e, "store operation failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store is unavailable: {e}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}
