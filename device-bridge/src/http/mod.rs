//! The worker's API: signed calls to link, check, send to and log out devices,
//! to upload the media those sends refer to, and to list and replay the events
//! the worker refused (dead letters).

mod dead_letters;
mod devices;
mod media;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};
use wagate_contract::signing::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use wagate_contract::wire::{DEAD_LETTERS_PATH, LINK_PATH, MAX_MEDIA_BYTES};

use crate::clock::now_secs;
use crate::config::Secret;
use crate::dispatch::Dispatcher;
use crate::engine::Engine;
use crate::error::ApiError;
use crate::media::MediaStore;
use crate::outbox::Outbox;

/// JSON calls carry a text or a reference to media; nothing legitimate comes near this.
const MAX_JSON_BYTES: usize = 1 << 20;

#[derive(Clone)]
pub struct ApiState {
    pub engine: Arc<dyn Engine>,
    pub dispatcher: Arc<Dispatcher>,
    pub media: MediaStore,
    pub outbox: Outbox,
}

pub fn router(state: ApiState, secret: Secret) -> Router {
    let json = Router::new()
        .route(LINK_PATH, post(devices::link))
        .route("/v1/devices/{device_id}", delete(devices::logout))
        .route("/v1/devices/{device_id}/messages", post(devices::send))
        .route("/v1/devices/{device_id}/check", post(devices::check))
        .route(DEAD_LETTERS_PATH, get(dead_letters::list))
        .route("/v1/dead-letters/{event_id}/replay", post(dead_letters::replay));
    let media = Router::new().route("/v1/media/{sha256}", put(media::put).get(media::get));
    let media_limit = usize::try_from(MAX_MEDIA_BYTES).unwrap_or(usize::MAX);
    let signed = signed(json, &secret, MAX_JSON_BYTES).merge(signed(media, &secret, media_limit)).with_state(state);
    Router::new().route("/healthz", get(healthz)).merge(signed)
}

/// Routes whose bodies may be up to `max_body` bytes, all signed. The limit is
/// the outer layer so that the signature check, which reads the body, obeys it.
fn signed(routes: Router<ApiState>, secret: &Secret, max_body: usize) -> Router<ApiState> {
    routes
        .route_layer(middleware::from_fn_with_state(secret.clone(), require_signature))
        .layer(DefaultBodyLimit::max(max_body))
}

/// Checks the HMAC over timestamp, method, path with query, and the raw body,
/// then hands the body on unchanged.
async fn require_signature(State(secret): State<Secret>, req: Request, next: Next) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let body = Bytes::from_request(Request::from_parts(parts.clone(), body), &()).await?;
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
