//! Turning a send request's media `source` into a file the bridge holds: decode or fetch it,
//! check it is what it claims to be, and upload it once (content-addressed).

use sha2::{Digest, Sha256};
use wagate_contract::wire::{media_path, Content, MediaKind, MediaRef, MAX_MEDIA_BYTES};
use worker::{Fetch, Method, Request, RequestInit};

use super::{Ctx, Outcome, Reply};
use crate::bridge::{Bridge, CallError};
use crate::domain::error::{ApiError, Rule};
use crate::domain::links::{self, MediaQuery};
use crate::domain::media::{parse_source, settle_mime, MediaError, Source};
use crate::runtime::{is_production, now_ms, required_config};

pub struct MediaInput {
    pub kind: MediaKind,
    pub source: String,
    pub caption: Option<String>,
    pub file_name: Option<String>,
    pub mime_type: Option<String>,
}

pub async fn prepare(ctx: &Ctx<'_>, input: MediaInput) -> Result<Content, ApiError> {
    let source = parse_source(&input.source, !is_production(ctx.env))
        .map_err(|e| ApiError::field("source", Rule::Invalid { reason: e.0 }))?;
    let (bytes, served) = match source {
        Source::Inline { mime_type, bytes } => (bytes, mime_type),
        Source::Url(url) => fetch(&url).await.map_err(|e| ApiError::MediaFetchFailed { message: e.0 })?,
    };
    let mime_type = settle_mime(input.kind, input.mime_type.as_deref(), served.as_deref(), &bytes)
        .map_err(|e| ApiError::MediaFetchFailed { message: format!("The source {e}") })?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let stored: MediaRef = Bridge::from_env(ctx.env)?.put(&media_path(&sha256), &mime_type, bytes).await?;
    if stored.sha256 != sha256 {
        return Err(ApiError::internal("the bridge stored different bytes than were sent"));
    }
    let media = MediaRef { sha256, size: stored.size, mime_type, file_name: input.file_name };
    Ok(Content::Media { kind: input.kind, media, caption: input.caption })
}

/// Serves an inbound message's file to whoever holds its signed, unexpired link.
pub async fn download(ctx: &Ctx<'_>, sha256: &str) -> Outcome {
    let query: MediaQuery = ctx.query()?;
    let key = required_config(ctx.env, "WEBHOOK_KEY")?;
    links::verify_media(key.as_bytes(), sha256, &query, now_ms() / 1000)
        .map_err(|e| ApiError::Forbidden { code: "invalid_link".into(), message: e.to_string() })?;
    let bytes = Bridge::from_env(ctx.env)?.get(&media_path(sha256)).await.map_err(|e| match e {
        CallError::Refused { status: 404, .. } => ApiError::not_found("media"),
        e => e.into(),
    })?;
    // Anyone on WhatsApp can send a file: it is never rendered on our origin.
    ctx.extra_headers.borrow_mut().push(("content-disposition".into(), "attachment".into()));
    Ok(Reply::bytes(query.mime, bytes))
}

async fn fetch(url: &str) -> Result<(Vec<u8>, Option<String>), MediaError> {
    let failed = |e: worker::Error| MediaError(format!("The source URL could not be fetched: {e}"));
    let mut init = RequestInit::new();
    init.with_method(Method::Get);
    let mut resp = Fetch::Request(Request::new_with_init(url, &init).map_err(failed)?).send().await.map_err(failed)?;
    let status = resp.status_code();
    if !(200..300).contains(&status) {
        return Err(MediaError(format!("The source URL answered HTTP {status}")));
    }
    let header = |name: &str| resp.headers().get(name).ok().flatten();
    if header("content-length").and_then(|l| l.parse::<u64>().ok()).is_some_and(|l| l > MAX_MEDIA_BYTES) {
        return Err(MediaError(format!("The source is larger than {} MB", MAX_MEDIA_BYTES / (1024 * 1024))));
    }
    let served = header("content-type");
    let bytes = resp.bytes().await.map_err(failed)?;
    Ok((bytes, served))
}
