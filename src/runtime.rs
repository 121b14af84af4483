//! Small bridges to the Workers runtime shared by the edge handlers and the Durable Objects.

use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsValue;
use worker::Env;

use crate::domain::egress::{Egress, ParsedUrl};
use crate::domain::error::ApiError;

pub fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

/// RFC 3339 in UTC with milliseconds (`domain::time::millis`), as SPWP and wagate's own views
/// print times; LoginWA's forms are `domain::time::{seconds_z, seconds_offset}`.
pub use crate::domain::time::millis as iso;

/// `YYYY-MM` of `ms`: the monthly quota period.
pub fn month_of(ms: u64) -> String {
    iso(ms)[..7].to_owned()
}

/// When the calendar month (UTC) after the one `ms` falls in begins.
pub fn next_month_start_ms(ms: u64) -> u64 {
    let date = js_sys::Date::new(&JsValue::from_f64(ms as f64));
    // `Date.UTC` carries month 12 over into January of the next year.
    js_sys::Date::utc(date.get_utc_full_year() as f64, date.get_utc_month() as f64 + 1.0) as u64
}

/// A configuration value: a `[vars]` entry or a secret (`.dev.vars` locally).
pub fn config(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .map(|v| v.to_string())
        .or_else(|_| env.secret(name).map(|s| s.to_string()))
        .ok()
        .filter(|v| !v.is_empty())
}

/// A comma-separated configuration value as a list (empty when unset).
pub fn config_list(env: &Env, name: &str) -> Vec<String> {
    config(env, name)
        .map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default()
}

/// Loopback receivers and `debug_code` are development conveniences, off in production.
pub fn is_production(env: &Env) -> bool {
    config(env, "ENVIRONMENT").as_deref() != Some("development")
}

/// The egress policy of requests the worker makes for a tenant: webhook posts
/// (`WEBHOOK_HOSTS`) or media fetches (`MEDIA_HOSTS`).
pub fn egress(env: &Env, hosts_setting: &'static str) -> Egress {
    Egress {
        parse: parse_url,
        allow_loopback: !is_production(env),
        hosts: config_list(env, hosts_setting),
        hosts_setting,
    }
}

#[wasm_bindgen]
extern "C" {
    /// The runtime's WHATWG `URL`: the same parser its `fetch` reads a URL with.
    #[wasm_bindgen(js_name = URL)]
    type WhatwgUrl;
    #[wasm_bindgen(constructor, js_class = "URL", catch)]
    fn new(url: &str) -> Result<WhatwgUrl, JsValue>;
    #[wasm_bindgen(method, getter, js_class = "URL")]
    fn protocol(this: &WhatwgUrl) -> String;
    #[wasm_bindgen(method, getter, js_class = "URL")]
    fn username(this: &WhatwgUrl) -> String;
    #[wasm_bindgen(method, getter, js_class = "URL")]
    fn password(this: &WhatwgUrl) -> String;
    #[wasm_bindgen(method, getter, js_class = "URL")]
    fn hostname(this: &WhatwgUrl) -> String;
}

/// `url` as the runtime's `fetch` will read it; `None` when it is not a URL at all.
fn parse_url(url: &str) -> Option<ParsedUrl> {
    let parsed = WhatwgUrl::new(url).ok()?;
    Some(ParsedUrl {
        scheme: parsed.protocol().trim_end_matches(':').to_owned(),
        username: parsed.username(),
        password: parsed.password(),
        host: parsed.hostname(),
    })
}

pub fn required_config(env: &Env, name: &str) -> Result<String, ApiError> {
    config(env, name).ok_or_else(|| ApiError::internal(format!("{name} is not configured")))
}

impl From<worker::Error> for ApiError {
    fn from(e: worker::Error) -> Self {
        ApiError::internal(e)
    }
}
