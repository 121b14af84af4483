//! The simulator's control API (sim engine only): tests and demos act as the
//! phones here, scanning QRs, typing pairing codes, unlinking, writing to
//! devices and reading what the phones received.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use wagate_contract::wire::{error_code, Content, MediaKind, MediaRef, MAX_MEDIA_BYTES};

use crate::config::Secret;
use crate::engine::message::check_text;
use crate::engine::sim::{PhoneMessage, SimEngine, SimError};
use crate::engine::Location;
use crate::error::{ApiError, JsonBody};
use crate::ids::DeviceId;
use crate::inbound::ReceivedBody;
use crate::jid::{is_group_id, Jid, PhoneNumber};
use crate::media::{parse_mime_type, MediaStore};
use crate::pair_code::PairCode;

/// Room for a base64-encoded file of the largest size WhatsApp takes.
const MAX_INBOUND_BYTES: usize = (MAX_MEDIA_BYTES as usize) / 3 * 4 + 64 * 1024;

#[derive(Clone)]
struct SimApi {
    sim: SimEngine,
    media: MediaStore,
}

pub fn router(sim: SimEngine, media: MediaStore, secret: Secret) -> Router {
    Router::new()
        .route("/sim/devices/{device_id}/scan", post(scan))
        .route("/sim/devices/{device_id}/pair", post(pair))
        .route("/sim/devices/{device_id}/disconnect", post(disconnect))
        .route("/sim/inbound", post(inbound))
        .route("/sim/phones/{phone}/messages", get(phone_messages))
        .route_layer(middleware::from_fn_with_state(secret, require_bearer))
        .layer(DefaultBodyLimit::max(MAX_INBOUND_BYTES))
        .with_state(SimApi { sim, media })
}

impl From<SimError> for ApiError {
    fn from(e: SimError) -> Self {
        match e {
            SimError::DeviceNotFound => {
                ApiError::new(StatusCode::NOT_FOUND, error_code::DEVICE_NOT_FOUND, e.to_string())
            }
            SimError::NotWaitingForScan => ApiError::new(StatusCode::CONFLICT, "not_waiting_for_scan", e.to_string()),
            SimError::NoPairCode => ApiError::new(StatusCode::CONFLICT, "no_pair_code", e.to_string()),
            SimError::WrongPairCode => ApiError::new(StatusCode::BAD_REQUEST, "wrong_pair_code", e.to_string()),
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
struct PairRequest {
    code: String,
}

/// Exactly one of `text`, `media`, `location`, `reaction` and (unchecked only) `kind`.
#[derive(Deserialize)]
struct InboundRequest {
    device_id: String,
    /// A phone number, or a group's JID (`<group id>@g.us`) for a group message.
    from: String,
    /// A group message's author: a phone number (unchecked: any string).
    participant: Option<String>,
    /// The sender's WhatsApp display name.
    name: Option<String>,
    text: Option<String>,
    media: Option<InboundMedia>,
    location: Option<InboundLocation>,
    reaction: Option<InboundReaction>,
    /// What a modified WhatsApp client could send: the content goes to the bridge
    /// as the real engine would decode it, without the simulator's checks.
    #[serde(default)]
    unchecked: bool,
    /// Unchecked only: a kind of message the bridge does not know, such as `poll`.
    kind: Option<String>,
    /// Unchecked only: the WhatsApp message id, instead of a generated one.
    external_id: Option<String>,
}

#[derive(Deserialize)]
struct InboundMedia {
    mime_type: String,
    data_base64: String,
    file_name: Option<String>,
    caption: Option<String>,
}

/// Coordinates may be given as the strings `"NaN"`, `"Infinity"` and `"-Infinity"`,
/// which JSON has no numbers for but a WhatsApp message (a protobuf double) can carry.
#[derive(Deserialize)]
struct InboundLocation {
    #[serde(deserialize_with = "any_double")]
    latitude: f64,
    #[serde(deserialize_with = "any_double")]
    longitude: f64,
    name: Option<String>,
    address: Option<String>,
}

fn any_double<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Double {
        Number(f64),
        Named(String),
    }
    match Double::deserialize(deserializer)? {
        Double::Number(n) => Ok(n),
        Double::Named(name) => match name.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            _ => Err(serde::de::Error::custom("a number, or one of \"NaN\", \"Infinity\", \"-Infinity\"")),
        },
    }
}

#[derive(Deserialize)]
struct InboundReaction {
    external_id: String,
    emoji: String,
}

async fn scan(
    State(api): State<SimApi>,
    Path(device_id): Path<String>,
    JsonBody(req): JsonBody<ScanRequest>,
) -> Result<Json<Value>, ApiError> {
    let device_id = DeviceId::parse(&device_id).map_err(ApiError::invalid_request)?;
    let phone = PhoneNumber::parse(&req.phone).map_err(ApiError::invalid_request)?;
    api.sim.scan(&device_id, &phone)?;
    tracing::info!(device_id = %device_id, "sim: QR scanned");
    Ok(Json(json!({ "device_id": device_id.as_str(), "status": "connected", "phone": phone.as_str() })))
}

async fn pair(
    State(api): State<SimApi>,
    Path(device_id): Path<String>,
    JsonBody(req): JsonBody<PairRequest>,
) -> Result<Json<Value>, ApiError> {
    let device_id = DeviceId::parse(&device_id).map_err(ApiError::invalid_request)?;
    let code = PairCode::parse(&req.code).map_err(ApiError::invalid_request)?;
    let phone = api.sim.pair(&device_id, &code)?;
    tracing::info!(device_id = %device_id, "sim: pairing code entered");
    Ok(Json(json!({ "device_id": device_id.as_str(), "status": "connected", "phone": phone })))
}

async fn disconnect(State(api): State<SimApi>, Path(device_id): Path<String>) -> Result<Json<Value>, ApiError> {
    let device_id = DeviceId::parse(&device_id).map_err(ApiError::invalid_request)?;
    api.sim.unlink(&device_id)?;
    tracing::info!(device_id = %device_id, "sim: device unlinked from its phone");
    Ok(Json(json!({ "device_id": device_id.as_str(), "status": "disconnected" })))
}

async fn inbound(State(api): State<SimApi>, JsonBody(req): JsonBody<InboundRequest>) -> Result<Json<Value>, ApiError> {
    let device_id = DeviceId::parse(&req.device_id).map_err(ApiError::invalid_request)?;
    let (from, participant, body) =
        if req.unchecked { unchecked(&req, &api.media).await? } else { checked(&req, &api.media).await? };
    let external_id = req.external_id.filter(|_| req.unchecked);
    let external_id = api.sim.inbound(&device_id, from, participant, external_id, req.name, body)?;
    Ok(Json(json!({ "external_id": external_id })))
}

/// The chat, its author in a group, and what was sent.
type Inbound = (String, Option<String>, ReceivedBody);

/// What a genuine WhatsApp client can send: from a number, or from a group's member.
async fn checked(req: &InboundRequest, media: &MediaStore) -> Result<Inbound, ApiError> {
    let (from, participant) = match (Jid::parse(&req.from), &req.participant) {
        (Ok(group @ Jid::Group(_)), Some(author)) => {
            let author =
                PhoneNumber::parse(author).map_err(|e| ApiError::invalid_request(format!("participant: {e}")))?;
            (group, Some(author.jid().to_string()))
        }
        (Ok(Jid::Group(_)), None) => {
            return Err(ApiError::invalid_request("a group message needs its participant, the member who wrote it"))
        }
        (_, Some(_)) => {
            return Err(ApiError::invalid_request("participant is for group messages (from: <group id>@g.us)"))
        }
        (_, None) => (PhoneNumber::parse(&req.from).map_err(ApiError::invalid_request)?.jid(), None),
    };
    if req.kind.is_some() || req.external_id.is_some() {
        return Err(ApiError::invalid_request("kind and external_id are for unchecked inbound only"));
    }
    let content = match (&req.text, &req.media, &req.location, &req.reaction) {
        (Some(text), None, None, None) => {
            check_text("text", text).map_err(ApiError::invalid_request)?;
            Content::Text { text: text.clone() }
        }
        (None, Some(m), None, None) => {
            let mime_type = parse_mime_type(&m.mime_type).map_err(ApiError::invalid_request)?;
            received_media(m, mime_type, media).await?
        }
        (None, None, Some(l), None) => Location::parse(l.latitude, l.longitude, l.name.clone(), l.address.clone())
            .map_err(ApiError::invalid_request)?
            .into(),
        (None, None, None, Some(reaction)) if reaction.external_id.trim().is_empty() => {
            return Err(ApiError::invalid_request("reaction.external_id must not be empty"))
        }
        (None, None, None, Some(r)) => {
            Content::Reaction { target_external_id: r.external_id.clone(), emoji: r.emoji.clone() }
        }
        _ => return Err(ApiError::invalid_request("give exactly one of text, media, location and reaction")),
    };
    Ok((from.to_string(), participant, ReceivedBody::Content(content)))
}

/// As the real engine decodes what a modified client sent: fields as they came,
/// numbers as the protobuf doubles carried them. Only what makes a request at all
/// (one kind of content, media bytes to store) is required.
async fn unchecked(req: &InboundRequest, media: &MediaStore) -> Result<Inbound, ApiError> {
    // The engine reports a person (the sender of a direct chat, a group's author) by their JID.
    let person = |id: &str| {
        if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
            format!("{id}@s.whatsapp.net")
        } else {
            id.to_owned()
        }
    };
    let from = person(&req.from);
    let participant = req.participant.as_deref().map(person);
    let content = match (&req.text, &req.media, &req.location, &req.reaction, &req.kind) {
        (Some(text), None, None, None, None) => Content::Text { text: text.clone() },
        (None, Some(m), None, None, None) => received_media(m, m.mime_type.clone(), media).await?,
        (None, None, Some(l), None, None) => Content::Location {
            latitude: l.latitude,
            longitude: l.longitude,
            name: l.name.clone(),
            address: l.address.clone(),
        },
        (None, None, None, Some(r), None) => {
            Content::Reaction { target_external_id: r.external_id.clone(), emoji: r.emoji.clone() }
        }
        (None, None, None, None, Some(kind)) => {
            return Ok((from, participant, ReceivedBody::Unsupported { kind: kind.clone() }))
        }
        _ => return Err(ApiError::invalid_request("give exactly one of text, media, location, reaction and kind")),
    };
    Ok((from, participant, ReceivedBody::Content(content)))
}

/// Stores the file the phone sent, as a real engine stores what it downloads.
async fn received_media(media: &InboundMedia, mime_type: String, store: &MediaStore) -> Result<Content, ApiError> {
    let bytes = BASE64
        .decode(media.data_base64.as_bytes())
        .map_err(|e| ApiError::invalid_request(format!("media.data_base64: {e}")))?;
    if bytes.is_empty() || bytes.len() as u64 > MAX_MEDIA_BYTES {
        return Err(ApiError::invalid_request(format!("media must be 1-{MAX_MEDIA_BYTES} bytes")));
    }
    let stored = store.put(Bytes::from(bytes), None).await?;
    Ok(Content::Media {
        kind: kind_of(&mime_type),
        media: MediaRef {
            sha256: stored.sha256().to_string(),
            size: stored.size(),
            mime_type,
            file_name: media.file_name.clone(),
        },
        caption: media.caption.clone(),
    })
}

/// How WhatsApp would present a file of this type.
fn kind_of(mime_type: &str) -> MediaKind {
    match mime_type.split('/').next() {
        Some("image") => MediaKind::Image,
        Some("video") => MediaKind::Video,
        Some("audio") => MediaKind::Audio,
        _ => MediaKind::Document,
    }
}

async fn phone_messages(
    State(api): State<SimApi>,
    Path(phone): Path<String>,
) -> Result<Json<Vec<PhoneMessage>>, ApiError> {
    if PhoneNumber::parse(&phone).is_err() && !is_group_id(&phone) {
        return Err(ApiError::invalid_request("expected a phone number (digits) or a group id"));
    }
    Ok(Json(api.sim.phone_messages(&phone).map_err(ApiError::internal)?))
}
