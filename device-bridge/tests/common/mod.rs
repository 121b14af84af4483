//! Test fixtures: a bridge on a random port with its own data directory, a fake
//! worker that checks signatures and records events, and signed clients.

#![allow(dead_code)] // each test binary uses its own subset

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use tokio::net::TcpListener;
use wagate_bridge::app::Bridge;
use wagate_bridge::config::{Config, EngineKind, Secret};
use wagate_bridge::engine::sim::SimTimings;
use wagate_contract::signing::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use wagate_contract::wire::{BridgeEvent, EventKind, EVENTS_PATH};

pub const SECRET: &str = "test-bridge-secret";
/// Nothing listens here: the outbox keeps retrying.
pub const DEAD_WORKER: &str = "http://127.0.0.1:1";

pub fn config(data_dir: &Path, worker_url: &str) -> Config {
    Config {
        host: [127, 0, 0, 1].into(),
        port: 0,
        secret: Secret::new(SECRET),
        worker_url: worker_url.to_owned(),
        data_dir: data_dir.to_owned(),
        engine: EngineKind::Sim,
        sim: SimTimings {
            deliver: Duration::from_millis(10),
            read: Duration::from_millis(30),
            qr_ttl: Duration::from_secs(60),
        },
        retention: Duration::from_secs(30 * 86_400),
    }
}

pub fn now_secs() -> u64 {
    wagate_bridge::clock::now_secs()
}

/// A running bridge; derefs to a client for it.
pub struct TestBridge {
    pub client: BridgeClient,
    bridge: Bridge,
    server: tokio::task::JoinHandle<()>,
}

impl TestBridge {
    pub async fn start(config: Config) -> Self {
        let bridge = Bridge::start(&config).await.expect("bridge starts");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = bridge.router();
        let server = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self { client: BridgeClient { url, http: reqwest::Client::new() }, bridge, server }
    }

    pub async fn stop(self) {
        self.server.abort();
        self.bridge.stop().await;
    }
}

impl std::ops::Deref for TestBridge {
    type Target = BridgeClient;

    fn deref(&self) -> &BridgeClient {
        &self.client
    }
}

#[derive(Clone)]
pub struct BridgeClient {
    pub url: String,
    http: reqwest::Client,
}

impl BridgeClient {
    /// Sends a request exactly as `auth` says, with `body` as raw JSON text.
    pub async fn call(&self, method: &str, path: &str, auth: Auth<'_>, body: Option<Value>) -> (StatusCode, Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let (status, text) = self.raw(method, path, auth, body.into_bytes(), None).await;
        let body = if text.is_empty() { Value::Null } else { serde_json::from_slice(&text).expect("JSON body") };
        (status, body)
    }

    /// Sends `body` as it is, with `content_type` if given; answers the raw response body.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        auth: Auth<'_>,
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> (StatusCode, Vec<u8>) {
        let mut request = self.http.request(method.parse().unwrap(), format!("{}{path}", self.url));
        match auth {
            Auth::None => {}
            Auth::Bearer(token) => request = request.bearer_auth(token),
            Auth::Signed { secret, ts, path: signed_path } => {
                let signature = signing::sign(secret.as_bytes(), ts, method, signed_path.unwrap_or(path), &body);
                request = request.header(TIMESTAMP_HEADER, ts.to_string()).header(SIGNATURE_HEADER, signature);
            }
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.body(body).send().await.expect("bridge reachable");
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        (status, response.bytes().await.unwrap().to_vec())
    }

    /// A worker call, correctly signed.
    pub async fn signed(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(method, path, Auth::signed(), body).await
    }

    /// A call to the simulator's control API.
    pub async fn sim(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(method, path, Auth::Bearer(SECRET), body).await
    }

    /// Links and scans a device; returns once both calls succeeded.
    pub async fn connect(&self, device_id: &str, phone: &str) {
        let (status, _) = self.signed("POST", "/v1/devices", Some(serde_json::json!({ "device_id": device_id }))).await;
        assert_eq!(status, StatusCode::OK);
        let scan = format!("/sim/devices/{device_id}/scan");
        let (status, body) = self.sim("POST", &scan, Some(serde_json::json!({ "phone": phone }))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    pub async fn inbox(&self, phone: &str) -> Vec<Value> {
        let (status, body) = self.sim("GET", &format!("/sim/phones/{phone}/messages"), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body.as_array().cloned().expect("an array")
    }
}

pub enum Auth<'a> {
    None,
    Bearer(&'a str),
    /// `path` overrides the path that is signed (to test tampering).
    Signed {
        secret: &'a str,
        ts: u64,
        path: Option<&'a str>,
    },
}

impl Auth<'_> {
    pub fn signed() -> Self {
        Auth::Signed { secret: SECRET, ts: now_secs(), path: None }
    }
}

/// A stand-in for the worker's `/bridge/v1/events`: checks each signature,
/// refuses the first `fail_first` deliveries, and records the rest.
#[derive(Clone)]
pub struct FakeWorker {
    pub url: String,
    state: Arc<WorkerState>,
}

struct WorkerState {
    events: Mutex<Vec<BridgeEvent>>,
    fail_remaining: AtomicU32,
    refused: AtomicU32,
    bad_signatures: AtomicU32,
}

impl FakeWorker {
    pub async fn start(fail_first: u32) -> Self {
        let state = Arc::new(WorkerState {
            events: Mutex::default(),
            fail_remaining: AtomicU32::new(fail_first),
            refused: AtomicU32::new(0),
            bad_signatures: AtomicU32::new(0),
        });
        let app = Router::new().route(EVENTS_PATH, post(receive)).with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, state }
    }

    pub fn events(&self) -> Vec<BridgeEvent> {
        self.state.events.lock().unwrap().clone()
    }

    pub fn refused(&self) -> u32 {
        self.state.refused.load(Ordering::SeqCst)
    }

    pub fn bad_signatures(&self) -> u32 {
        self.state.bad_signatures.load(Ordering::SeqCst)
    }

    /// Waits until some received event satisfies `matches`, and returns it.
    pub async fn wait_for(&self, what: &str, matches: impl Fn(&BridgeEvent) -> bool) -> BridgeEvent {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(event) = self.events().into_iter().find(&matches) {
                return event;
            }
            assert!(tokio::time::Instant::now() < deadline, "no {what} within 10 s; got {:#?}", self.events());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for the `MessageSent` of message `id`, and returns it.
    pub async fn wait_sent(&self, id: &str) -> BridgeEvent {
        let what = format!("MessageSent of {id}");
        self.wait_for(&what, |e| matches!(&e.kind, EventKind::MessageSent { message_id, .. } if message_id == id)).await
    }

    /// Waits for the `MessageFailed` of message `id`, and returns it.
    pub async fn wait_failed(&self, id: &str) -> BridgeEvent {
        let what = format!("MessageFailed of {id}");
        self.wait_for(&what, |e| matches!(&e.kind, EventKind::MessageFailed { message_id, .. } if message_id == id))
            .await
    }

    /// Waits for the `MessageRead` of message `id`, and returns it.
    pub async fn wait_read(&self, id: &str) -> BridgeEvent {
        let what = format!("MessageRead of {id}");
        self.wait_for(&what, |e| matches!(&e.kind, EventKind::MessageRead { message_id } if message_id == id)).await
    }

    pub fn kinds(&self) -> Vec<EventKind> {
        self.events().into_iter().map(|e| e.kind).collect()
    }
}

async fn receive(State(state): State<Arc<WorkerState>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let verified = signing::verify(
        SECRET.as_bytes(),
        header(TIMESTAMP_HEADER),
        header(SIGNATURE_HEADER),
        now_secs(),
        "POST",
        EVENTS_PATH,
        &body,
    );
    if verified.is_err() {
        state.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED;
    }
    if state.fail_remaining.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        state.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let event: BridgeEvent = serde_json::from_slice(&body).expect("a BridgeEvent");
    state.events.lock().unwrap().push(event);
    StatusCode::OK
}

/// Runs one bridge "process" on its own runtime; dropping the runtime kills all
/// of its tasks mid-flight, as a crash would.
pub fn process<F: Future>(run: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let output = runtime.block_on(run);
    runtime.shutdown_timeout(Duration::from_secs(1));
    output
}

/// A text message to `to`'s number, as the journal holds a send.
pub fn text_message(id: &str, to: &str) -> wagate_bridge::engine::OutgoingMessage {
    wagate_bridge::engine::OutgoingMessage {
        message_id: wagate_bridge::ids::MessageId::parse(id).unwrap(),
        to: wagate_bridge::jid::Jid::parse(&format!("{to}@s.whatsapp.net")).unwrap(),
        payload: wagate_bridge::engine::Payload::Text { text: format!("text of {id}") },
    }
}
