//! Signed calls from the worker to the device bridge.

use serde::{de::DeserializeOwned, Serialize};
use wagate_contract::signing::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use wagate_contract::wire::BridgeError;
use worker::{Env, Fetch, Headers, Method, Request, RequestInit};

use crate::domain::error::ApiError;
use crate::runtime::{now_ms, required_config};

#[derive(Debug)]
pub enum CallError {
    /// The bridge answered with an error of its own.
    Refused { status: u16, error: BridgeError },
    /// No usable answer: not reachable, or not speaking the contract.
    Unreachable(String),
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        let message = match e {
            CallError::Refused { status, error } => {
                format!("bridge answered {status} {}: {}", error.code, error.message)
            }
            CallError::Unreachable(why) => format!("bridge unreachable: {why}"),
        };
        ApiError::BridgeUnavailable { message }
    }
}

pub struct Bridge {
    base_url: String,
    secret: String,
}

impl Bridge {
    pub fn from_env(env: &Env) -> Result<Self, ApiError> {
        Ok(Self {
            base_url: required_config(env, "BRIDGE_URL")?.trim_end_matches('/').to_owned(),
            secret: required_config(env, "BRIDGE_SECRET")?,
        })
    }

    pub async fn post<B: Serialize, R: DeserializeOwned>(&self, path: &str, body: &B) -> Result<R, CallError> {
        let body = serde_json::to_vec(body).map_err(|e| CallError::Unreachable(e.to_string()))?;
        decode(self.send(Method::Post, path, "application/json", body).await?)
    }

    /// Uploads raw bytes (a media file) with their content type.
    pub async fn put<R: DeserializeOwned>(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<R, CallError> {
        decode(self.send(Method::Put, path, content_type, body).await?)
    }

    pub async fn get_json<R: DeserializeOwned>(&self, path: &str) -> Result<R, CallError> {
        decode(self.get(path).await?)
    }

    /// Downloads raw bytes (a media file).
    pub async fn get(&self, path: &str) -> Result<Vec<u8>, CallError> {
        self.send(Method::Get, path, "application/json", Vec::new()).await
    }

    pub async fn delete(&self, path: &str) -> Result<(), CallError> {
        self.send(Method::Delete, path, "application/json", Vec::new()).await.map(drop)
    }

    async fn send(&self, method: Method, path: &str, content_type: &str, body: Vec<u8>) -> Result<Vec<u8>, CallError> {
        let unreachable = |e: worker::Error| CallError::Unreachable(e.to_string());
        let ts = now_ms() / 1000;
        let signature = signing::sign(self.secret.as_bytes(), ts, method.as_ref(), path, &body);
        let headers = Headers::new();
        headers.set("content-type", content_type).map_err(unreachable)?;
        headers.set(TIMESTAMP_HEADER, &ts.to_string()).map_err(unreachable)?;
        headers.set(SIGNATURE_HEADER, &signature).map_err(unreachable)?;
        let mut init = RequestInit::new();
        init.with_method(method).with_headers(headers);
        if !body.is_empty() {
            init.with_body(Some(js_sys::Uint8Array::from(body.as_slice()).into()));
        }
        let req = Request::new_with_init(&format!("{}{path}", self.base_url), &init).map_err(unreachable)?;
        let mut resp = Fetch::Request(req).send().await.map_err(unreachable)?;
        let status = resp.status_code();
        let bytes = resp.bytes().await.map_err(unreachable)?;
        if (200..300).contains(&status) {
            return Ok(bytes);
        }
        match serde_json::from_slice::<BridgeError>(&bytes) {
            Ok(error) => Err(CallError::Refused { status, error }),
            Err(_) => Err(CallError::Unreachable(format!("bridge answered {status}"))),
        }
    }
}

fn decode<R: DeserializeOwned>(bytes: Vec<u8>) -> Result<R, CallError> {
    serde_json::from_slice(&bytes).map_err(|e| CallError::Unreachable(format!("undecodable answer: {e}")))
}
