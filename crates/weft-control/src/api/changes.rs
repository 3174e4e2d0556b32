//! Apply and delete: all resources of a request land in one store transaction (or none
//! do), guarded by the mod revisions they were compared against, so two concurrent
//! applies never interleave and a failed validation changes nothing.

use super::handlers::kind;
use super::types::{Action, Change, ChangeOptions, ChangeResponse, DocumentsRequest};
use super::{Api, ApiError};
use crate::{diff, resources};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use std::collections::BTreeSet;
use weft_model::{parse_documents, Resource, ResourceKey};
use weft_store::{StoreError, Txn};

/// How often a transaction that lost a race is recomputed and tried again.
const ATTEMPTS: usize = 5;

/// The resources of a request, validated; errors as the request's answer.
struct Parsed {
    resources: Vec<Resource>,
    warnings: Vec<String>,
    errors: Vec<String>,
}

fn parse(request: &DocumentsRequest) -> Parsed {
    let mut out = Parsed {
        resources: Vec::new(),
        warnings: Vec::new(),
        errors: Vec::new(),
    };
    let mut seen = BTreeSet::new();
    for doc in &request.documents {
        let parsed = parse_documents(&doc.source, &doc.text);
        out.warnings
            .extend(parsed.warnings.iter().map(|d| d.to_string()));
        out.errors
            .extend(parsed.errors.iter().map(|d| d.to_string()));
        for r in parsed.resources {
            if !seen.insert(r.key()) {
                out.errors.push(format!(
                    "{}: {} is given more than once",
                    doc.source,
                    r.key()
                ));
                continue;
            }
            out.resources.push(r);
        }
    }
    out
}

fn yaml(r: &Resource) -> String {
    serde_yaml_ng::to_string(r).unwrap_or_default()
}

fn change(key: &ResourceKey, action: Action, diff: String) -> Change {
    Change {
        kind: key.kind.to_string(),
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        action,
        diff,
    }
}

fn refuse(parsed: &Parsed, what: &str) -> ApiError {
    let n = parsed.errors.len();
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!(
            "{n} error{}; nothing was {what}",
            if n == 1 { "" } else { "s" }
        ),
    )
    .with_details(parsed.errors.clone())
}

pub async fn apply(
    State(api): State<Api>,
    Query(options): Query<ChangeOptions>,
    Json(request): Json<DocumentsRequest>,
) -> Result<Json<ChangeResponse>, ApiError> {
    let parsed = parse(&request);
    if !parsed.errors.is_empty() && !options.partial {
        return Err(refuse(&parsed, "applied"));
    }
    if parsed.resources.is_empty() && parsed.errors.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "no resources found in the input",
        ));
    }
    for _ in 0..ATTEMPTS {
        let mut txn = Txn::new();
        let mut results = Vec::new();
        for r in &parsed.resources {
            let key = resources::key(&r.key());
            let got = api.store.get(&key).await;
            api.metrics.store_op("get", &got);
            let current = got?;
            let old = current
                .as_ref()
                .and_then(|v| resources::decode(&key, &v.value).ok());
            let (action, diff) = match &old {
                None if current.is_none() => (Action::Created, String::new()),
                Some(old) if resources::encode(old) == resources::encode(r) => {
                    (Action::Unchanged, String::new())
                }
                Some(old) => (Action::Configured, diff::lines(&yaml(old), &yaml(r))),
                // Stored but unreadable: replace it.
                None => (Action::Configured, String::new()),
            };
            if action != Action::Unchanged {
                txn = txn
                    .check(key.clone(), current.as_ref().map_or(0, |v| v.mod_revision))
                    .put(key, resources::encode(r));
            }
            results.push(change(&r.key(), action, diff));
        }
        let mut response = ChangeResponse {
            results,
            warnings: parsed.warnings.clone(),
            errors: parsed.errors.clone(),
            revision: 0,
            dry_run: options.dry_run,
        };
        if options.dry_run || txn.ops.is_empty() {
            return Ok(Json(response));
        }
        let committed = api.store.txn(txn).await;
        api.metrics.store_op("txn", &committed);
        match committed {
            Ok(revision) => {
                response.revision = revision;
                for c in &response.results {
                    if c.action != Action::Unchanged {
                        tracing::info!(
                            kind = c.kind,
                            namespace = c.namespace,
                            name = c.name,
                            action = c.action.as_str(),
                            revision,
                            "resource applied"
                        );
                    }
                }
                return Ok(Json(response));
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(conflict())
}

fn conflict() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "the resources kept changing while this request was applied; try again",
    )
}

/// Deletes `keys` in one transaction; the answer lists each.
async fn delete_keys(
    api: &Api,
    keys: &[ResourceKey],
    dry_run: bool,
) -> Result<ChangeResponse, ApiError> {
    for _ in 0..ATTEMPTS {
        let mut txn = Txn::new();
        let mut results = Vec::new();
        for k in keys {
            let key = resources::key(k);
            let got = api.store.get(&key).await;
            api.metrics.store_op("get", &got);
            match got? {
                Some(v) => {
                    txn = txn.check(key.clone(), v.mod_revision).delete(key);
                    results.push(change(k, Action::Deleted, String::new()));
                }
                None => results.push(change(k, Action::NotFound, String::new())),
            }
        }
        let mut response = ChangeResponse {
            results,
            dry_run,
            ..Default::default()
        };
        if dry_run || txn.ops.is_empty() {
            return Ok(response);
        }
        let committed = api.store.txn(txn).await;
        api.metrics.store_op("txn", &committed);
        match committed {
            Ok(revision) => {
                response.revision = revision;
                for c in &response.results {
                    if c.action == Action::Deleted {
                        tracing::info!(
                            kind = c.kind,
                            namespace = c.namespace,
                            name = c.name,
                            revision,
                            "resource deleted"
                        );
                    }
                }
                return Ok(response);
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(conflict())
}

pub async fn delete_documents(
    State(api): State<Api>,
    Query(options): Query<ChangeOptions>,
    Json(request): Json<DocumentsRequest>,
) -> Result<Json<ChangeResponse>, ApiError> {
    let parsed = parse(&request);
    if !parsed.errors.is_empty() && !options.partial {
        return Err(refuse(&parsed, "deleted"));
    }
    let keys: Vec<ResourceKey> = parsed.resources.iter().map(|r| r.key()).collect();
    let mut response = delete_keys(&api, &keys, options.dry_run).await?;
    response.errors = parsed.errors;
    Ok(Json(response))
}

pub async fn delete_one(
    State(api): State<Api>,
    Path((kind_name, namespace, name)): Path<(String, String, String)>,
    Query(options): Query<ChangeOptions>,
) -> Result<Json<ChangeResponse>, ApiError> {
    let key = ResourceKey {
        kind: kind(&kind_name)?,
        namespace,
        name,
    };
    let response = delete_keys(&api, std::slice::from_ref(&key), options.dry_run).await?;
    if response
        .results
        .iter()
        .all(|c| c.action == Action::NotFound)
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "{} {}/{} not found",
                resources::qualified(key.kind),
                key.namespace,
                key.name
            ),
        ));
    }
    Ok(Json(response))
}
