//! `/v1/media/{sha256}`: the worker uploads a file before a send refers to it,
//! and fetches the files that arrived with inbound messages.

use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use wagate_contract::wire::MediaRef;

use super::ApiState;
use crate::error::{ApiError, RawBody};
use crate::media::{parse_mime_type, Sha256Hex, MEDIA_NOT_FOUND};

const OCTET_STREAM: &str = "application/octet-stream";

/// Stores the body under its hash, which must be the one in the path. Idempotent.
pub(super) async fn put(
    State(api): State<ApiState>,
    Path(sha256): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<MediaRef>), ApiError> {
    let expected = Sha256Hex::parse(&sha256).map_err(ApiError::invalid_request)?;
    let mime_type = match headers.get(CONTENT_TYPE) {
        None => OCTET_STREAM.to_owned(),
        Some(value) => value
            .to_str()
            .map_err(|_| ApiError::invalid_request("Content-Type is not text"))
            .and_then(|value| parse_mime_type(value).map_err(ApiError::invalid_request))?,
    };
    if body.is_empty() {
        return Err(ApiError::invalid_request("media must not be empty"));
    }
    let stored = api.media.put(body, Some(expected)).await?;
    tracing::info!(sha256 = %stored.sha256(), size = stored.size(), "media stored");
    let media = MediaRef { sha256: stored.sha256().to_string(), size: stored.size(), mime_type, file_name: None };
    Ok((StatusCode::CREATED, Json(media)))
}

pub(super) async fn get(
    State(api): State<ApiState>,
    Path(sha256): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let sha256 = Sha256Hex::parse(&sha256).map_err(ApiError::invalid_request)?;
    let stored = api.media.find(&sha256).map_err(ApiError::internal)?.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, MEDIA_NOT_FOUND, format!("no media with sha256 {sha256}"))
    })?;
    let bytes = stored.read().await.map_err(ApiError::internal)?;
    Ok(([(CONTENT_TYPE, OCTET_STREAM)], bytes))
}
