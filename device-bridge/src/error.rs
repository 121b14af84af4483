//! One error type for every HTTP answer of the bridge, mapped to status and
//! [`BridgeError`] JSON in one place. Anything unexpected is logged here and
//! answered as an opaque 500, so internals never leak to callers.

use std::fmt::Display;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use wagate_contract::wire::{error_code, BridgeError};

use crate::dispatch::DispatchError;
use crate::engine::message::InvalidContent;
use crate::engine::EngineError;
use crate::media::PutError;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    pub fn invalid_request(why: impl Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error_code::INVALID_REQUEST, why.to_string())
    }

    pub fn unauthorized(why: impl Display) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, error_code::UNAUTHORIZED, why.to_string())
    }

    pub fn internal(error: impl Display) -> Self {
        tracing::error!(error = %error, "request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = BridgeError { code: self.code.to_owned(), message: self.message };
        (self.status, Json(body)).into_response()
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::DeviceNotFound => {
                Self::new(StatusCode::NOT_FOUND, error_code::DEVICE_NOT_FOUND, e.to_string())
            }
            EngineError::DeviceOffline => Self::new(StatusCode::CONFLICT, error_code::DEVICE_OFFLINE, e.to_string()),
            EngineError::Upstream(_) => Self::new(StatusCode::BAD_GATEWAY, "engine_error", e.to_string()),
            EngineError::Storage(_) | EngineError::Media(_) => Self::internal(e),
        }
    }
}

impl From<InvalidContent> for ApiError {
    fn from(e: InvalidContent) -> Self {
        match e {
            InvalidContent::Invalid(_) | InvalidContent::MediaNotFound(_) => Self::invalid_request(e),
            InvalidContent::Storage(_) => Self::internal(e),
        }
    }
}

impl From<PutError> for ApiError {
    fn from(e: PutError) -> Self {
        match e {
            PutError::Mismatch { .. } => Self::invalid_request(e),
            PutError::Io(_) => Self::internal(e),
        }
    }
}

/// An unreadable or oversized body (413), as a [`BridgeError`] like every other error.
impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        Self::new(rejection.status(), error_code::INVALID_REQUEST, rejection.body_text())
    }
}

impl From<DispatchError> for ApiError {
    fn from(e: DispatchError) -> Self {
        match e {
            DispatchError::Engine(e) => e.into(),
            DispatchError::Journal(_) => Self::internal(e),
        }
    }
}

/// A JSON body whose rejection is a [`BridgeError`] like every other error.
/// The content type is not checked: callers sign the body, not its headers.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::invalid_request(format!("invalid JSON body: {e}")))
    }
}

/// The raw body, with [`JsonBody`]'s error answers.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Ok(Self(Bytes::from_request(req, state).await?))
    }
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route")
}
