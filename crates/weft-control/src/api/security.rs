//! Tokens, certificates and the trust bundle.

use super::types::{CertificateRequest, RotationRequest, TokenCreated, TokenRequest};
use super::{Api, ApiError};
use crate::auth::{Principal, Role, TokenRecord, DEFAULT_JOIN_TTL};
use crate::ca::{CaError, CaStatus, RotationError, SignError, Signed};
use crate::identity::{valid_segment, Identity};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use std::time::Duration;
use weft_model::DEFAULT_NAMESPACE;

/// `POST /api/v1/tokens`: a join token for one identity (admin only).
pub async fn create_token(
    State(api): State<Api>,
    Json(request): Json<TokenRequest>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    let namespace = request
        .namespace
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    for (what, value) in [("service", &request.service), ("namespace", &namespace)] {
        if !valid_segment(value) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "{what} {value:?} is not a valid name (lowercase letters, digits, '-', '.')"
                ),
            ));
        }
    }
    let ttl = request
        .ttl_seconds
        .map_or(DEFAULT_JOIN_TTL, Duration::from_secs);
    if ttl.is_zero() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the lifetime must be positive",
        ));
    }
    let identity = Identity::new(namespace, request.service);
    let spiffe_id = identity.spiffe_id(api.tokens.trust_domain());
    let (token, record) = api.tokens.create(Role::Workload { identity }, ttl).await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            token,
            spiffe_id,
            record,
        }),
    ))
}

/// `GET /api/v1/tokens`: every token's record (never a token).
pub async fn list_tokens(State(api): State<Api>) -> Result<Json<Vec<TokenRecord>>, ApiError> {
    Ok(Json(api.tokens.list().await?))
}

/// `DELETE /api/v1/tokens/{id}`: revokes a token.
pub async fn revoke_token(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if api.tokens.revoke(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no token {id}"),
        ))
    }
}

/// `POST /api/v1/certificates`: signs a workload's CSR for the identity its token names
/// (an admin names it in the request).
pub async fn sign_certificate(
    State(api): State<Api>,
    Extension(principal): Extension<Principal>,
    Json(request): Json<CertificateRequest>,
) -> Result<Json<Signed>, ApiError> {
    let identity = match (&principal, request.namespace, request.service) {
        (Principal::Workload(own), _, _) => own.clone(),
        (Principal::Admin, namespace, Some(service)) => Identity::new(
            namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
            service,
        ),
        (Principal::Admin, _, None) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "an admin must name the service the certificate is for",
            ))
        }
    };
    let ttl = request.ttl_seconds.map(Duration::from_secs);
    match api.authority.sign(&request.csr, &identity, ttl).await {
        Ok(signed) => {
            api.metrics.certificates_signed.inc();
            Ok(Json(signed))
        }
        Err(SignError::Identity { asked, allowed }) => {
            api.metrics.csr_refused.inc();
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("the CSR asks for {asked}, but the credential is for {allowed}"),
            ))
        }
        Err(SignError::Invalid(why)) => {
            api.metrics.csr_refused.inc();
            Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the CSR is invalid: {why}"),
            ))
        }
        Err(SignError::Ca(e)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            e.to_string(),
        )),
    }
}

/// `GET /api/v1/ca/roots`: the trust bundle.
pub async fn roots(State(api): State<Api>) -> Result<Json<Vec<String>>, ApiError> {
    api.authority
        .roots()
        .await
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
}

/// `GET /api/v1/ca`: the trust bundle with each root described, and where a root
/// rotation stands (sidecars poll it).
pub async fn ca_status(State(api): State<Api>) -> Result<Json<CaStatus>, ApiError> {
    api.authority
        .status()
        .await
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
}

/// `POST /api/v1/ca/rotation`: one root-rotation step (admin only); answers the new
/// state, or 409 with why the step is refused now.
pub async fn rotate(
    State(api): State<Api>,
    Json(request): Json<RotationRequest>,
) -> Result<Json<CaStatus>, ApiError> {
    match api
        .authority
        .rotate(request.step, request.force, request.ca.as_ref())
        .await
    {
        Ok(()) => ca_status(State(api)).await,
        Err(RotationError::Ca(CaError::Supplied { what, reason, .. })) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the new CA's {what}: {reason}"),
        )),
        Err(RotationError::Ca(e)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            e.to_string(),
        )),
        Err(e) => Err(ApiError::new(StatusCode::CONFLICT, e.to_string())),
    }
}
