//! `/v1/dead-letters…`: the events the worker refused for good, for the operator
//! (through the worker's `/admin/v1/bridge/dead-letters`) to see and replay.

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::Json;
use wagate_contract::wire::{DeadLetters, Replayed};

use super::ApiState;
use crate::error::ApiError;
use crate::outbox::MAX_LIST;

const DEFAULT_LIST: usize = 100;

/// `?limit=N`, the only parameter.
pub(super) async fn list(State(api): State<ApiState>, uri: Uri) -> Result<Json<DeadLetters>, ApiError> {
    let bad = || ApiError::invalid_request(format!("the only parameter is limit, 1-{MAX_LIST}"));
    let limit = match uri.query().filter(|q| !q.is_empty()) {
        None => DEFAULT_LIST,
        Some(query) => query.strip_prefix("limit=").and_then(|n| n.parse().ok()).ok_or_else(bad)?,
    };
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(bad());
    }
    Ok(Json(DeadLetters { dead_letters: api.outbox.dead_letters(limit).map_err(ApiError::internal)? }))
}

/// Queues the event again under its own id, so the worker applies it at most once.
pub(super) async fn replay(
    State(api): State<ApiState>,
    Path(event_id): Path<String>,
) -> Result<(StatusCode, Json<Replayed>), ApiError> {
    if !api.outbox.replay(&event_id).map_err(ApiError::internal)? {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "no dead letter with this id"));
    }
    tracing::info!(event_id, "dead letter replayed");
    Ok((StatusCode::ACCEPTED, Json(Replayed { replayed: event_id })))
}
