//! The simulator's control API (sim engine only): tests and demos act as the
//! phones here, scanning QRs, unlinking, writing to devices and reading what
//! the phones received.

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use wagate_contract::wire::error_code;

use crate::config::Secret;
use crate::engine::sim::{PhoneMessage, SimEngine, SimError};
use crate::error::{ApiError, JsonBody};
use crate::ids::DeviceId;
use crate::jid::{is_group_id, PhoneNumber};

pub fn router(sim: SimEngine, secret: Secret) -> Router {
    Router::new()
        .route("/sim/devices/{device_id}/scan", post(scan))
        .route("/sim/devices/{device_id}/disconnect", post(disconnect))
        .route("/sim/inbound", post(inbound))
        .route("/sim/phones/{phone}/messages", get(phone_messages))
        .route_layer(middleware::from_fn_with_state(secret, require_bearer))
        .with_state(sim)
}

impl From<SimError> for ApiError {
    fn from(e: SimError) -> Self {
        match e {
            SimError::DeviceNotFound => {
                ApiError::new(StatusCode::NOT_FOUND, error_code::DEVICE_NOT_FOUND, e.to_string())
            }
            SimError::NotWaitingForScan => ApiError::new(StatusCode::CONFLICT, "not_waiting_for_scan", e.to_string()),
            SimError::NotConnected => ApiError::new(StatusCode::CONFLICT, error_code::DEVICE_OFFLINE, e.to_string()),
            SimError::Storage(_) => ApiError::internal(e),
        }
    }
}

async fn require_bearer(State(secret): State<Secret>, req: Request, next: Next) -> Result<Response, ApiError> {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match token {
        Some(token) if bool::from(token.as_bytes().ct_eq(secret.expose())) => Ok(next.run(req).await),
        _ => Err(ApiError::unauthorized("Authorization: Bearer <BRIDGE_SECRET> required")),
    }
}

#[derive(Deserialize)]
struct ScanRequest {
    phone: String,
}

#[derive(Deserialize)]
struct InboundRequest {
    device_id: String,
    from: String,
    text: String,
}

async fn scan(
    State(sim): State<SimEngine>,
    Path(device_id): Path<String>,
    JsonBody(req): JsonBody<ScanRequest>,
) -> Result<Json<Value>, ApiError> {
    let device_id = DeviceId::parse(&device_id).map_err(ApiError::invalid_request)?;
    let phone = PhoneNumber::parse(&req.phone).map_err(ApiError::invalid_request)?;
    sim.scan(&device_id, &phone)?;
    tracing::info!(device_id = %device_id, "sim: QR scanned");
    Ok(Json(json!({ "device_id": device_id.as_str(), "status": "connected", "phone": phone.as_str() })))
}

async fn disconnect(State(sim): State<SimEngine>, Path(device_id): Path<String>) -> Result<Json<Value>, ApiError> {
    let device_id = DeviceId::parse(&device_id).map_err(ApiError::invalid_request)?;
    sim.unlink(&device_id)?;
    tracing::info!(device_id = %device_id, "sim: device unlinked from its phone");
    Ok(Json(json!({ "device_id": device_id.as_str(), "status": "disconnected" })))
}

async fn inbound(
    State(sim): State<SimEngine>,
    JsonBody(req): JsonBody<InboundRequest>,
) -> Result<Json<Value>, ApiError> {
    let device_id = DeviceId::parse(&req.device_id).map_err(ApiError::invalid_request)?;
    let from = PhoneNumber::parse(&req.from).map_err(ApiError::invalid_request)?;
    if req.text.trim().is_empty() {
        return Err(ApiError::invalid_request("text must not be empty"));
    }
    let external_id = sim.inbound(&device_id, &from, req.text)?;
    Ok(Json(json!({ "external_id": external_id })))
}

async fn phone_messages(
    State(sim): State<SimEngine>,
    Path(phone): Path<String>,
) -> Result<Json<Vec<PhoneMessage>>, ApiError> {
    if PhoneNumber::parse(&phone).is_err() && !is_group_id(&phone) {
        return Err(ApiError::invalid_request("expected a phone number (digits) or a group id"));
    }
    Ok(Json(sim.phone_messages(&phone).map_err(ApiError::internal)?))
}
