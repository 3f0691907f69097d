//! `GET`/`POST /metadata` (procs in the v2 metadata shape) and `POST /secret`.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use proctor_schema::AppState;
use proctor_schema::procs::service::{ProcQuery, list_procs, upsert_procs};
use proctor_schema::secrets::service;
use serde::Deserialize;

use super::metadata::LegacyMetadata;
use super::{LegacyCaller, LegacyError, decode, decode_object, json_response};

/// The procs the caller may run, in name order, as a JSON array (`[]` when there are none).
pub async fn list(State(state): State<AppState>, LegacyCaller(caller): LegacyCaller) -> Response {
    match list_procs(&state, &caller, &ProcQuery::default()).await {
        Ok(procs) => {
            let metadata: Vec<LegacyMetadata> = procs
                .iter()
                .map(|view| LegacyMetadata::from_model(&view.model))
                .collect();
            json_response(StatusCode::OK, &metadata)
        }
        Err(error) => LegacyError::from_api(&error, "").into_response(),
    }
}

/// Creates or updates procs from a JSON array of v2 metadata (administrators only); 201 with
/// an empty body. One invalid element stores nothing.
pub async fn apply(
    State(state): State<AppState>,
    LegacyCaller(caller): LegacyCaller,
    body: Bytes,
) -> Response {
    if let Err(error) = caller.require_admin(&state, "create or change procs") {
        return LegacyError::from_api(&error, "").into_response();
    }
    if let Err(refusal) = super::refuse_nul(&body) {
        return refusal.into_response();
    }
    let Some(items) = decode::<Vec<LegacyMetadata>>(&body) else {
        return LegacyError::bad_request("malformed request").into_response();
    };
    // Existing procs keep what the v2 shape cannot express (see `LegacyMetadata::to_definition`).
    let names: Vec<&str> = items.iter().map(|item| item.name.as_str()).collect();
    let define = |index: usize, stored: Option<&_>| items[index].to_definition(stored);
    match upsert_procs(&state, &caller, &names, define).await {
        Ok(_) => StatusCode::CREATED.into_response(),
        Err(error) => LegacyError::from_api(&error, "").into_response(),
    }
}

/// The `POST /secret` body.
#[derive(Deserialize)]
struct SecretBody {
    #[serde(default)]
    job_name: Option<String>,
    #[serde(default)]
    secrets: Option<BTreeMap<String, String>>,
}

/// Sets secret values of a proc (administrators only); 201 with an empty body.
pub async fn set_secrets(
    State(state): State<AppState>,
    LegacyCaller(caller): LegacyCaller,
    body: Bytes,
) -> Response {
    if let Err(error) = caller.require_admin(&state, "set secrets") {
        return LegacyError::from_api(&error, "").into_response();
    }
    if let Err(refusal) = super::refuse_nul(&body) {
        return refusal.into_response();
    }
    let Some(body) = decode_object::<SecretBody>(&body) else {
        return LegacyError::bad_request("malformed request").into_response();
    };
    let Some(proc) = body.job_name.filter(|name| !name.trim().is_empty()) else {
        return LegacyError::bad_request("job_name: the proc name is missing").into_response();
    };
    let values: Vec<(String, String)> = body.secrets.unwrap_or_default().into_iter().collect();
    match service::set_secrets(&state, &caller, &proc, &values).await {
        Ok(_) => StatusCode::CREATED.into_response(),
        Err(error) => LegacyError::from_api(&error, "").into_response(),
    }
}
