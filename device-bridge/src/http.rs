//! The worker's API: signed calls to link and log out devices and to send.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use wagate_contract::signing::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use wagate_contract::wire::{LinkRequest, LinkResponse, SendRequest, SendResponse, LINK_PATH};

use crate::clock::now_secs;
use crate::config::Secret;
use crate::dispatch::Dispatcher;
use crate::engine::{Engine, LinkState, OutgoingMessage};
use crate::error::{ApiError, JsonBody};
use crate::ids::DeviceId;

/// Sends carry one text; nothing legitimate comes near this.
const MAX_BODY_BYTES: usize = 1 << 20;

#[derive(Clone)]
pub struct ApiState {
    pub engine: Arc<dyn Engine>,
    pub dispatcher: Arc<Dispatcher>,
}

pub fn router(state: ApiState, secret: Secret) -> Router {
    let signed = Router::new()
        .route(LINK_PATH, post(link))
        .route("/v1/devices/{device_id}", delete(logout))
        .route("/v1/devices/{device_id}/messages", post(send))
        .route_layer(middleware::from_fn_with_state(secret, require_signature))
        .with_state(state);
    Router::new().route("/healthz", get(healthz)).merge(signed)
}

/// Checks the HMAC over timestamp, method, path with query, and the raw body,
/// then hands the body on unchanged.
async fn require_signature(State(secret): State<Secret>, req: Request, next: Next) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::invalid_request(format!("body unreadable or over {MAX_BODY_BYTES} bytes")))?;
    let path = parts.uri.path_and_query().map_or_else(|| parts.uri.path(), |pq| pq.as_str());
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    signing::verify(
        secret.expose(),
        header(TIMESTAMP_HEADER),
        header(SIGNATURE_HEADER),
        now_secs(),
        parts.method.as_str(),
        path,
        &body,
    )
    .map_err(|e| {
        tracing::warn!(method = %parts.method, path, reason = %e, "rejected unsigned or badly signed request");
        ApiError::unauthorized(e)
    })?;
    Ok(next.run(Request::from_parts(parts, Body::from(body))).await)
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn link(
    State(api): State<ApiState>,
    JsonBody(req): JsonBody<LinkRequest>,
) -> Result<Json<LinkResponse>, ApiError> {
    let device_id = DeviceId::parse(&req.device_id).map_err(ApiError::invalid_request)?;
    let response = match api.engine.link(&device_id).await? {
        LinkState::Pairing { qr } => LinkResponse { qr: Some(qr), phone: None },
        LinkState::Linked { phone } => LinkResponse { qr: None, phone: Some(phone) },
    };
    Ok(Json(response))
}

async fn logout(State(api): State<ApiState>, Path(device_id): Path<String>) -> Result<StatusCode, ApiError> {
    let device_id = DeviceId::parse(&device_id).map_err(ApiError::invalid_request)?;
    api.engine.logout(&device_id).await?;
    tracing::info!(device_id = %device_id, "device logged out");
    Ok(StatusCode::NO_CONTENT)
}

async fn send(
    State(api): State<ApiState>,
    Path(device_id): Path<String>,
    JsonBody(req): JsonBody<SendRequest>,
) -> Result<(StatusCode, Json<SendResponse>), ApiError> {
    let device_id = DeviceId::parse(&device_id).map_err(ApiError::invalid_request)?;
    let message = OutgoingMessage::try_from(req).map_err(ApiError::invalid_request)?;
    let state = api.dispatcher.submit(&device_id, message).await?;
    Ok((StatusCode::ACCEPTED, Json(state)))
}
