//! The fetch entry point: routes a request to its handler and renders the
//! outcome in the dialect its path belongs to.

mod admin;
mod auth;
mod autoreplies;
mod broadcast;
mod events;
mod fault;
mod idempotency;
mod ipwhitelist;
mod linkpage;
mod loginwa;
mod media;
mod otp;
mod send;
mod spwp;
mod webhooks;

use js_sys::{Reflect, Uint8Array};
use serde_json::Value;
use wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys;
use worker::{event, Context, Env, Headers, Request, Response};

use crate::dialect::routes::{self, service::Service, Area};
use crate::dialect::{self, Dialect, RequestMeta};
use crate::domain::body;
use crate::domain::error::ApiError;
use crate::domain::ids::random_hex;
use crate::runtime::{iso, now_ms};
use crate::url_parts::split_url;

/// A handler's successful answer.
pub struct Reply {
    status: u16,
    body: Body,
    /// Answered from the idempotency store rather than handled again.
    replayed: bool,
}

enum Body {
    Json(Value),
    Bytes { content_type: String, bytes: Vec<u8> },
    Empty,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Self { status, body: Body::Json(body), replayed: false }
    }

    pub fn replayed(self) -> Self {
        Self { replayed: true, ..self }
    }

    pub fn json_body(&self) -> Option<&Value> {
        match &self.body {
            Body::Json(body) => Some(body),
            _ => None,
        }
    }

    pub fn bytes(content_type: impl Into<String>, bytes: Vec<u8>) -> Self {
        Self { status: 200, body: Body::Bytes { content_type: content_type.into(), bytes }, replayed: false }
    }

    pub fn no_content() -> Self {
        Self { status: 204, body: Body::Empty, replayed: false }
    }
}

pub type Outcome = Result<Reply, ApiError>;

const MAX_PAGE: i64 = 1_000_000;

/// What handlers need to know about the request besides its body.
pub struct Ctx<'a> {
    pub env: &'a Env,
    pub meta: RequestMeta,
    /// `scheme://host` as the client addressed us, for URLs we hand back.
    pub origin: String,
    pub query: String,
    /// Headers every answer to this request carries (rate-limit state once the key is known).
    pub extra_headers: std::cell::RefCell<Vec<(String, String)>>,
    /// The `Idempotency-Key` this request holds once claimed: its send reserves under it.
    pub idempotency_key: std::cell::RefCell<Option<String>>,
    /// A fault the test suite asked for (development only).
    pub fault: fault::Fault,
}

impl Ctx<'_> {
    /// The query string as `T`, or the dialect's validation error.
    pub fn query<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_urlencoded::from_str(&self.query)
            .map_err(|e| ApiError::field("query", crate::domain::error::Rule::Invalid { reason: e.to_string() }))
    }

    /// The `page` query parameter of a listing: 1 when absent, an error outside 1..=1,000,000.
    pub fn page(&self) -> Result<i64, ApiError> {
        #[derive(serde::Deserialize)]
        struct Page {
            page: Option<i64>,
        }
        match self.query::<Page>()?.page {
            None => Ok(1),
            Some(page) if (1..=MAX_PAGE).contains(&page) => Ok(page),
            Some(_) => Err(ApiError::field("page", crate::domain::error::Rule::Range { min: 1, max: MAX_PAGE })),
        }
    }
}

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    // The raw URL string: `Request::url()` would pull a full URL parser into the bundle.
    let url = req.inner().url();
    let (origin, path, query) = split_url(&url);
    let ctx = Ctx {
        env: &env,
        meta: RequestMeta { request_id: random_hex(13), path: path.to_owned(), timestamp: iso(now_ms()) },
        origin: origin.to_owned(),
        query: query.to_owned(),
        extra_headers: Default::default(),
        idempotency_key: Default::default(),
        fault: fault::Fault::of(&req, &env),
    };
    let dialect = Dialect::of_path(path);
    let content_length = req.headers().get("content-length").ok().flatten();
    let max_bytes = routes::max_body(path);
    // Refused on its declared length before anything else, authentication included, is done.
    let outcome = match body::declared_too_large(content_length.as_deref(), max_bytes) {
        true => Err(ApiError::PayloadTooLarge { max_bytes }),
        false => route(&mut req, &ctx).await,
    };
    render(outcome, dialect, &ctx)
}

async fn route(req: &mut Request, ctx: &Ctx<'_>) -> Outcome {
    // `worker` reads any method it does not know (QUERY, PROPFIND, …) as GET; the raw name
    // routes those as a method no path has, so they get 405 rather than a GET's answer.
    let method = routes::Method::parse(&req.inner().method());
    let path = ctx.meta.path.clone();
    let segments = routes::segments(&path);
    match routes::area(&segments) {
        (Area::Admin, rest) => admin::route(req, ctx, method, rest).await,
        (Area::Spwp, rest) => spwp::route(req, ctx, routes::spwp::resolve(method, rest)?).await,
        (Area::LoginWa, rest) => loginwa::route(req, ctx, routes::loginwa::resolve(method, rest)?).await,
        (Area::Service, segments) => match routes::service::resolve(method, segments)? {
            Service::Health => Ok(Reply::json(200, serde_json::json!({"status": "ok"}))),
            Service::BridgeEvents => events::receive(req, ctx).await,
            Service::LinkPage => {
                let mut page = ctx.env.assets("ASSETS")?.fetch(format!("{}/link/", ctx.origin), None).await?;
                // The page's policy is written once, in public/_headers, for the asset it is.
                let policy = page.headers().get("content-security-policy")?.ok_or_else(|| {
                    ApiError::internal("the link page asset carries no Content-Security-Policy (public/_headers)")
                })?;
                ctx.extra_headers.borrow_mut().push(("content-security-policy".into(), policy));
                Ok(Reply::bytes("text/html; charset=utf-8", page.bytes().await?))
            }
        },
    }
}

fn render(outcome: Outcome, dialect: Dialect, ctx: &Ctx<'_>) -> worker::Result<Response> {
    let meta = &ctx.meta;
    let headers = Headers::new();
    for (name, value) in ctx.extra_headers.borrow().iter() {
        headers.set(name, value)?;
    }
    let (status, body) = match outcome {
        Ok(reply) => {
            if reply.replayed {
                headers.set("idempotent-replayed", "true")?;
            }
            (reply.status, reply.body)
        }
        Err(err) => {
            if let ApiError::MethodNotAllowed { allow } = &err {
                headers.set("allow", allow)?;
            }
            if let ApiError::RateLimited { retry_after_secs, headers: extra, .. } = &err {
                headers.set("retry-after", &retry_after_secs.to_string())?;
                for (name, value) in extra {
                    headers.set(name, value)?;
                }
            }
            if let ApiError::Internal { detail } = &err {
                worker::console_error!("request {} failed: {detail}", meta.request_id);
            }
            let (status, body) = dialect::error(dialect, &err, meta);
            (status, Body::Json(body))
        }
    };
    headers.set("x-request-id", &meta.request_id)?;
    let response = match body {
        Body::Json(body) => {
            headers.set("content-type", "application/json")?;
            Response::from_bytes(body.to_string().into_bytes())?
        }
        Body::Bytes { content_type, bytes } => {
            headers.set("content-type", &content_type)?;
            headers.set("cache-control", "no-store")?;
            headers.set("x-content-type-options", "nosniff")?;
            Response::from_bytes(bytes)?
        }
        Body::Empty => Response::empty()?,
    };
    Ok(response.with_status(status).with_headers(headers))
}

/// An RFC 3339 date-time field, in ms since the epoch.
pub fn date_time(f: &mut crate::domain::validate::Fields<'_>, field: &str, required: bool) -> Option<u64> {
    let text = f.string(field, required, 1, 64)?;
    let ms = js_sys::Date::parse(&text);
    if ms.is_nan() {
        f.fail(field, crate::domain::error::Rule::Invalid { reason: "must be an RFC 3339 date-time".into() });
        return None;
    }
    Some(ms.max(0.0) as u64)
}

/// The raw request body, kept no further than its route's cap: a body without a
/// `Content-Length` (chunked) that passes it is refused with 413, its rest read and dropped
/// rather than held.
pub async fn raw_body(req: &mut Request) -> Result<Vec<u8>, ApiError> {
    let url = req.inner().url();
    let max_bytes = routes::max_body(split_url(&url).1);
    let Some(stream) = req.inner().body() else { return Ok(vec![]) };
    let reader: web_sys::ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
    let field = |chunk: &JsValue, name: &str| Reflect::get(chunk, &JsValue::from_str(name)).ok();
    let (mut bytes, mut too_large) = (Vec::new(), false);
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(|_| ApiError::MalformedJson)?;
        if field(&chunk, "done").is_none_or(|done| done.is_truthy()) {
            break;
        }
        let Some(value) = field(&chunk, "value").and_then(|v| v.dyn_into::<Uint8Array>().ok()) else {
            return Err(ApiError::MalformedJson);
        };
        too_large |= bytes.len() as u64 + u64::from(value.length()) > max_bytes;
        // Answering before the body's end would lose the connection's next request under
        // wrangler dev; Cloudflare bounds what is left (its own request size limit).
        if too_large {
            bytes = Vec::new();
        } else {
            bytes.extend(value.to_vec());
        }
    }
    match too_large {
        true => Err(ApiError::PayloadTooLarge { max_bytes }),
        false => Ok(bytes),
    }
}

/// The request body as a JSON object, or the dialect's malformed-JSON error.
pub async fn json_body(req: &mut Request) -> Result<serde_json::Map<String, Value>, ApiError> {
    crate::domain::validate::json_object(&raw_body(req).await?)
}
