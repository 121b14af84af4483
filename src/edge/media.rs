//! Turning a send request's media `source` into a file the bridge holds: decode or fetch it,
//! check it is what it claims to be, and upload it once (content-addressed).

use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use wagate_contract::wire::{media_path, Content, MediaKind, MediaRef, MAX_MEDIA_BYTES};
use worker::{AbortController, AbortSignal, Delay, Fetch, Method, Request, RequestInit, RequestRedirect};

use super::{Ctx, Outcome, Reply};
use crate::bridge::{Bridge, CallError};
use crate::domain::error::ApiError;
use crate::domain::links::{self, MediaQuery};
use crate::domain::media::{parse_source, settle_mime, MediaError, Source};
use crate::runtime::{config, egress, now_ms, required_config};

/// How long a media source has to deliver its whole file (`MEDIA_FETCH_TIMEOUT_S`).
const FETCH_TIMEOUT_S: u64 = 30;

pub struct MediaInput {
    pub kind: MediaKind,
    pub caption: Option<String>,
    pub file_name: Option<String>,
    pub mime_type: Option<String>,
}

/// A media source, if the worker may read it (`MEDIA_HOSTS`); checked with the request's other
/// fields, before anything is reserved or fetched.
pub fn source(ctx: &Ctx<'_>, source: &str) -> Result<Source, MediaError> {
    parse_source(source, &egress(ctx.env, "MEDIA_HOSTS"))
}

/// Fetches or decodes `source`, checks the file is what it claims to be, and uploads it to
/// the bridge. Callers reserve the send first: this is the costly part.
pub async fn prepare(ctx: &Ctx<'_>, input: MediaInput, source: Source) -> Result<Content, ApiError> {
    let (bytes, served) = match source {
        Source::Inline { mime_type, bytes } => (bytes, mime_type),
        Source::Url(url) => {
            fetch(&url, fetch_timeout(ctx)).await.map_err(|e| ApiError::MediaFetchFailed { message: e.0 })?
        }
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

fn fetch_timeout(ctx: &Ctx<'_>) -> Duration {
    let seconds = config(ctx.env, "MEDIA_FETCH_TIMEOUT_S").and_then(|v| v.parse::<u64>().ok());
    Duration::from_secs(seconds.unwrap_or(FETCH_TIMEOUT_S))
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

/// Fetches a media file as webhook posts are made: within a deadline that covers the body too
/// (a server dripping bytes cannot hold the request), redirects not followed (a redirect may
/// point anywhere the egress rule refuses), and no more read than the largest file, whatever
/// Content-Length says. Nothing the server sent is quoted back but its status code.
async fn fetch(url: &str, timeout: Duration) -> Result<(Vec<u8>, Option<String>), MediaError> {
    let controller = AbortController::default();
    let reading = Box::pin(read(url, controller.signal()));
    let deadline = Box::pin(Delay::from(timeout));
    let outcome = match select(reading, deadline).await {
        Either::Left((outcome, _)) => outcome,
        Either::Right(_) => {
            Err(MediaError(format!("The source URL did not deliver the file within {} s", timeout.as_secs())))
        }
    };
    // Whether it finished, overran or timed out, the connection is not needed any more.
    controller.abort();
    outcome
}

async fn read(url: &str, signal: AbortSignal) -> Result<(Vec<u8>, Option<String>), MediaError> {
    let failed = |_: worker::Error| MediaError("The source URL could not be fetched".into());
    let too_large = || MediaError(format!("The source is larger than {} MB", MAX_MEDIA_BYTES / (1024 * 1024)));
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_redirect(RequestRedirect::Manual);
    let request = Request::new_with_init(url, &init).map_err(failed)?;
    let mut resp = Fetch::Request(request).send_with_signal(&signal).await.map_err(failed)?;
    let status = resp.status_code();
    if !(200..300).contains(&status) {
        return Err(MediaError(format!("The source URL answered HTTP {status}")));
    }
    let header = |name: &str| resp.headers().get(name).ok().flatten();
    if header("content-length").and_then(|l| l.parse::<u64>().ok()).is_some_and(|l| l > MAX_MEDIA_BYTES) {
        return Err(too_large());
    }
    let served = header("content-type");
    let mut body = resp.stream().map_err(failed)?;
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(failed)?;
        if (bytes.len() + chunk.len()) as u64 > MAX_MEDIA_BYTES {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((bytes, served))
}
