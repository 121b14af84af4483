//! `/v1/devices…`: pairing, logout, number checks and sends.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use wagate_contract::wire::{CheckRequest, CheckResponse, LinkRequest, LinkResponse, SendRequest, SendResponse};

use super::ApiState;
use crate::engine::{LinkState, OutgoingMessage};
use crate::error::{ApiError, JsonBody};
use crate::ids::DeviceId;
use crate::jid::PhoneNumber;
use crate::journal::Keep;

/// One lookup round trip to WhatsApp; callers with more numbers batch them.
const MAX_CHECK_PHONES: usize = 100;

pub(super) async fn link(
    State(api): State<ApiState>,
    JsonBody(req): JsonBody<LinkRequest>,
) -> Result<Json<LinkResponse>, ApiError> {
    let device_id = DeviceId::parse(&req.device_id).map_err(ApiError::invalid_request)?;
    let pair_phone = req
        .pair_phone
        .as_deref()
        .map(PhoneNumber::parse)
        .transpose()
        .map_err(|e| ApiError::invalid_request(format!("pair_phone: {e}")))?;
    let response = match api.engine.link(&device_id, pair_phone.as_ref()).await? {
        LinkState::Pairing { qr, pair_code } => {
            // A real engine knows no QR until WhatsApp sends one; it follows as a QrUpdated event.
            let qr = Some(qr).filter(|qr| !qr.is_empty());
            LinkResponse { qr, pair_code: pair_code.map(|code| code.to_string()), phone: None }
        }
        LinkState::Linked { phone } => LinkResponse { qr: None, pair_code: None, phone: Some(phone) },
    };
    Ok(Json(response))
}

pub(super) async fn logout(State(api): State<ApiState>, Path(device_id): Path<String>) -> Result<StatusCode, ApiError> {
    let device_id = DeviceId::parse(&device_id).map_err(ApiError::invalid_request)?;
    api.engine.logout(&device_id).await?;
    tracing::info!(device_id = %device_id, "device logged out");
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn check(
    State(api): State<ApiState>,
    Path(device_id): Path<String>,
    JsonBody(req): JsonBody<CheckRequest>,
) -> Result<Json<CheckResponse>, ApiError> {
    let device_id = DeviceId::parse(&device_id).map_err(ApiError::invalid_request)?;
    if req.phones.is_empty() || req.phones.len() > MAX_CHECK_PHONES {
        return Err(ApiError::invalid_request(format!("phones must hold 1-{MAX_CHECK_PHONES} numbers")));
    }
    let phones = req
        .phones
        .iter()
        .map(|phone| PhoneNumber::parse(phone).map_err(|e| ApiError::invalid_request(format!("{phone:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let results = api.engine.check(&device_id, &phones).await?;
    Ok(Json(CheckResponse { results }))
}

pub(super) async fn send(
    State(api): State<ApiState>,
    Path(device_id): Path<String>,
    JsonBody(req): JsonBody<SendRequest>,
) -> Result<(StatusCode, Json<SendResponse>), ApiError> {
    let device_id = DeviceId::parse(&device_id).map_err(ApiError::invalid_request)?;
    let message = OutgoingMessage::parse(&req, &api.media)?;
    let state = api.dispatcher.submit(&device_id, message, Keep::of(req.sensitive), req.expires_at_ms).await?;
    Ok((StatusCode::ACCEPTED, Json(state)))
}
