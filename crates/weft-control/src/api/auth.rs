//! The API's door: every request but `/ready` and `/metrics` carries a token. Admin
//! tokens reach everything; a workload's token reaches only what a sidecar needs —
//! its own certificates, its own health reports, the trust bundle.

use super::{Api, ApiError};
use crate::auth::{AuthError, Principal};
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

/// Paths anyone may read: readiness and metrics (counts, no configuration).
fn is_open(path: &str) -> bool {
    path == "/ready" || path == "/metrics"
}

/// Paths a workload token may use (the handler checks the identity).
fn workload_may(method: &Method, path: &str) -> bool {
    (method == Method::POST && path == "/api/v1/certificates")
        || (method == Method::GET && (path == "/api/v1/ca/roots" || path == "/api/v1/ca"))
        || (method == Method::PUT
            && path.starts_with("/api/v1/registry/")
            && path.ends_with("/health"))
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        match e {
            AuthError::Unauthenticated(why) => ApiError::new(StatusCode::UNAUTHORIZED, why),
            AuthError::Store(e) => e.into(),
            AuthError::Seal(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}

/// Authenticates the request and puts its [`Principal`] in its extensions.
pub async fn authenticate(
    State(api): State<Api>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let path = request.uri().path().to_string();
    if is_open(&path) {
        return Ok(next.run(request).await);
    }
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = match api.tokens.verify_bearer(header).await {
        Ok(p) => p,
        Err(e) => {
            api.metrics.auth_failures.inc();
            return Err(e.into());
        }
    };
    if let Principal::Workload(identity) = &principal {
        if !workload_may(request.method(), &path) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "a workload token (for {identity}) cannot use {} {path}",
                    request.method()
                ),
            ));
        }
    }
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}
