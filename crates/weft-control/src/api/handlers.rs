//! Read-only endpoints, readiness, metrics and health reports.

use super::types::{HealthReport, ResourceList, ServiceDescription, ServiceSummary};
use super::{Api, ApiError};
use crate::auth::Principal;
use crate::identity::Identity;
use crate::proxies::ProxyStatus;
use crate::registrar::HealthError;
use crate::{describe, resources};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde::Deserialize;
use weft_model::{Kind, DEFAULT_NAMESPACE};

/// `?namespace=`: absent is `default`, `*` is every namespace.
#[derive(Debug, Default, Deserialize)]
pub struct NamespaceQuery {
    namespace: Option<String>,
}

impl NamespaceQuery {
    fn scope(&self) -> Option<&str> {
        match self.namespace.as_deref() {
            Some("*") => None,
            Some(ns) => Some(ns),
            None => Some(DEFAULT_NAMESPACE),
        }
    }
}

pub async fn ready(State(api): State<Api>) -> impl IntoResponse {
    if api.mesh.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: first translation pending\n",
        )
    }
}

pub async fn metrics(State(api): State<Api>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        api.metrics.encode(),
    )
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint")
}

pub(super) fn kind(name: &str) -> Result<Kind, ApiError> {
    resources::parse_kind(name).ok_or_else(|| {
        let known: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("unknown kind {name:?}; known kinds: {}", known.join(", ")),
        )
    })
}

pub async fn list_resources(
    State(api): State<Api>,
    Path(kind_name): Path<String>,
    Query(q): Query<NamespaceQuery>,
) -> Result<Json<ResourceList>, ApiError> {
    let kind = kind(&kind_name)?;
    let listing = api
        .store
        .list(&resources::kind_prefix(kind, q.scope()))
        .await;
    api.metrics.store_op("list", &listing);
    let mut items = Vec::new();
    for kv in listing?.items {
        match resources::decode(&kv.key, &kv.value) {
            Ok(r) => items.push(serde_json::to_value(&r).unwrap_or_default()),
            Err(e) => tracing::warn!(key = kv.key, error = %e, "stored resource skipped"),
        }
    }
    Ok(Json(ResourceList { items }))
}

pub async fn get_resource(
    State(api): State<Api>,
    Path((kind_name, namespace, name)): Path<(String, String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let kind = kind(&kind_name)?;
    let key = resources::key(&weft_model::ResourceKey {
        kind,
        namespace: namespace.clone(),
        name: name.clone(),
    });
    let got = api.store.get(&key).await;
    api.metrics.store_op("get", &got);
    let Some(v) = got? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "{} {namespace}/{name} not found",
                resources::qualified(kind)
            ),
        ));
    };
    let r = resources::decode(&key, &v.value)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(Json(serde_json::to_value(&r).unwrap_or_default()))
}

pub async fn list_services(
    State(api): State<Api>,
    Query(q): Query<NamespaceQuery>,
) -> Json<Vec<ServiceSummary>> {
    Json(describe::list(&api.mesh.state(), q.scope()))
}

pub async fn describe_service(
    State(api): State<Api>,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<ServiceDescription>, ApiError> {
    describe::describe(&api.mesh.state(), &namespace, &name)
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no service {name} in namespace {namespace}"),
            )
        })
}

pub async fn proxies(State(api): State<Api>) -> Json<Vec<ProxyStatus>> {
    Json(api.proxies.list())
}

pub async fn report_health(
    State(api): State<Api>,
    Extension(principal): Extension<Principal>,
    Path((namespace, service, id)): Path<(String, String, String)>,
    Json(report): Json<HealthReport>,
) -> Result<StatusCode, ApiError> {
    let identity = Identity::new(namespace.as_str(), service.as_str());
    if !principal.may_act_as(&identity) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("this credential cannot report the health of {identity}"),
        ));
    }
    match api
        .registrar
        .set_health(&namespace, &service, &id, report.healthy)
        .await
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(HealthError::NotFound(what)) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no instance {what} is registered (has its sidecar connected?)"),
        )),
        Err(HealthError::Store(e)) => Err(e.into()),
    }
}
