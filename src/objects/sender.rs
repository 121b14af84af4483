//! One Durable Object per webhook endpoint (named by its id) that makes the HTTP POSTs of its
//! deliveries, signed by the app's object. Holding no state, it isolates each receiver: a slow,
//! unreachable or unresolvable one affects only its own sender.

use worker::{
    durable_object, AbortController, Delay, DurableObject, Env, Fetch, Headers, Method, Request, RequestInit, Response,
    State,
};

use futures_util::future::{select, Either};

use super::serve;
use crate::domain::error::ApiError;
use crate::protocol::sender::{Attempt, PostDelivery, Sender, SenderHandler};

/// A 2xx within this time is success; anything else is a failure and retried.
pub const TIMEOUT_MS: u64 = 10_000;
const EXCERPT_CHARS: usize = 200;

#[durable_object]
pub struct SenderObject {
    _state: State,
}

impl DurableObject for SenderObject {
    fn new(state: State, _env: Env) -> Self {
        Self { _state: state }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        serve::<Sender, _>(req, |op| op.dispatch(self)).await
    }
}

impl SenderHandler for SenderObject {
    async fn post(&self, PostDelivery { url, headers, body }: PostDelivery) -> Result<Attempt, ApiError> {
        Ok(post(&url, &headers, body).await)
    }
}

/// One POST: 10 s to answer 2xx; redirects are failures, not followed.
async fn post(url: &str, headers: &[(String, String)], body: String) -> Attempt {
    let failed = |error: String| Attempt { ok: false, status: None, error: Some(error) };
    let request_headers = Headers::new();
    let _ = request_headers.set("content-type", "application/json");
    let _ = request_headers.set("user-agent", "wagate-webhooks/1");
    for (name, value) in headers {
        let _ = request_headers.set(name, value);
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(request_headers)
        .with_body(Some(wasm_bindgen::JsValue::from_str(&body)))
        .with_redirect(worker::RequestRedirect::Manual);
    let request = match Request::new_with_init(url, &init) {
        Ok(request) => request,
        Err(e) => return failed(e.to_string()),
    };
    let controller = AbortController::default();
    let signal = controller.signal();
    let send = Box::pin(async move { Fetch::Request(request).send_with_signal(&signal).await });
    let timeout = Box::pin(Delay::from(std::time::Duration::from_millis(TIMEOUT_MS)));
    match select(send, timeout).await {
        Either::Left((Ok(mut response), _)) => {
            let status = response.status_code();
            let excerpt = response.text().await.unwrap_or_default().chars().take(EXCERPT_CHARS).collect::<String>();
            let ok = (200..300).contains(&status);
            Attempt { ok, status: Some(status), error: (!ok).then(|| format!("HTTP {status}: {excerpt}")) }
        }
        Either::Left((Err(e), _)) => failed(e.to_string()),
        Either::Right(_) => {
            controller.abort();
            failed(format!("no answer within {} s", TIMEOUT_MS / 1000))
        }
    }
}
