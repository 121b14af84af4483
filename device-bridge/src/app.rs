//! Wiring: storage, engine, event pipeline and routes, started in the order
//! recovery needs, and stopped in the order that loses nothing.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use wagate_contract::wire::EventKind;

use crate::config::{Config, EngineKind};
use crate::db::Db;
use crate::dispatch::Dispatcher;
use crate::engine::sim::SimEngine;
use crate::engine::whatsapp::{WhatsappConfig, WhatsappEngine};
use crate::engine::{Engine, EngineError, EngineEvent, EventSink};
use crate::error::{method_not_allowed, not_found};
use crate::http::{self, ApiState};
use crate::ids::DeviceId;
use crate::media::MediaStore;
use crate::metrics::{self, Metrics, MetricsState};
use crate::outbox::{self, Outbox, WorkerClient};
use crate::{journal, retention, sim_api};

/// How long a stop waits for sends being resumed to reach the engine.
const SEND_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open {path}: {source}")]
    Storage { path: PathBuf, source: rusqlite::Error },
    #[error("cannot load the send journal or the event outbox: {0}")]
    Journal(rusqlite::Error),
    #[error("the engine could not restore its devices: {0}")]
    Restore(#[from] EngineError),
    #[error("cannot build the HTTP client for the worker: {0}")]
    WorkerClient(#[from] reqwest::Error),
}

/// A started bridge: its routes, and the background tasks behind them.
pub struct Bridge {
    router: Router,
    pump: JoinHandle<UnboundedReceiver<EngineEvent>>,
    stop_pump: oneshot::Sender<()>,
    delivery: JoinHandle<()>,
    retention: JoinHandle<()>,
    outbox: Outbox,
    /// Holds live connections whose state must be flushed before the process exits.
    whatsapp: Option<Arc<WhatsappEngine>>,
}

impl Bridge {
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir).map_err(|source| StartError::DataDir { path: dir.clone(), source })?;
        owner_only(dir).map_err(|source| StartError::DataDir { path: dir.clone(), source })?;
        let media_dir = dir.join("media");
        let media =
            MediaStore::open(media_dir.clone()).map_err(|source| StartError::DataDir { path: media_dir, source })?;
        let storage = |path: PathBuf| move |source| StartError::Storage { path, source };

        let bridge_db_path = dir.join("bridge.db");
        let bridge_db = Db::open(&bridge_db_path, &format!("{}{}", journal::SCHEMA, outbox::SCHEMA))
            .map_err(storage(bridge_db_path))?;
        let metrics = Arc::new(Metrics::default());
        let (sink, events) = EventSink::channel(metrics.clone());
        let (engine, sim, whatsapp): (Arc<dyn Engine>, _, _) = match config.engine {
            EngineKind::Sim => {
                let sim_db_path = dir.join("sim.db");
                let sim = SimEngine::open(&sim_db_path, config.sim, sink).map_err(storage(sim_db_path))?;
                (Arc::new(sim.clone()), Some(sim), None)
            }
            EngineKind::Whatsapp => {
                let whatsapp = WhatsappConfig::new(dir);
                let registry_path = whatsapp.registry_path.clone();
                let engine = WhatsappEngine::open(whatsapp, media.clone(), sink).map_err(storage(registry_path))?;
                let engine = Arc::new(engine);
                (engine.clone(), None, Some(engine))
            }
        };
        let outbox = Outbox::new(bridge_db.clone(), metrics.clone()).map_err(StartError::Journal)?;
        let worker = WorkerClient::new(&config.worker_url, config.secret.clone())?;

        // Interrupted sends are tried before `restore` (so their outcome precedes
        // resumed receipts); those that cannot go yet wait for their device's `Connected`.
        let dispatcher =
            Dispatcher::new(engine.clone(), bridge_db.clone(), outbox.clone(), media.clone(), metrics.clone())
                .map_err(StartError::Journal)?;
        let dispatcher = Arc::new(dispatcher);
        dispatcher.resume_all().await;
        engine.restore().await?;
        let (stop_pump, stop) = oneshot::channel();
        let pump = tokio::spawn(pump(events, outbox.clone(), dispatcher.clone(), metrics.clone(), stop));
        let delivery = tokio::spawn(outbox::deliver(outbox.clone(), worker));
        let retention =
            tokio::spawn(retention::run(bridge_db.clone(), outbox.clone(), media.clone(), config.retention));

        let api = ApiState { engine: engine.clone(), dispatcher, media: media.clone(), outbox: outbox.clone() };
        let mut router = http::router(api, config.secret.clone()).merge(metrics::router(MetricsState {
            metrics,
            engine,
            outbox: outbox.clone(),
            journal: bridge_db,
        }));
        if let Some(sim) = sim {
            router = router.merge(sim_api::router(sim, media, config.secret.clone()));
        }
        let router = router.fallback(not_found).method_not_allowed_fallback(method_not_allowed);
        Ok(Self { router, pump, stop_pump, delivery, retention, outbox, whatsapp })
    }

    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Call once the HTTP server has finished its requests: sends being resumed
    /// finish, the engine closes its connections, every event emitted until then
    /// is stored, then delivery stops. Nothing is lost: undelivered events stay
    /// in the outbox for the next start.
    pub async fn stop(self) {
        // A pump that is already gone has handed back nothing left to store.
        let _ = self.stop_pump.send(());
        let events = self.pump.await;
        if let Some(whatsapp) = &self.whatsapp {
            whatsapp.shutdown().await;
        }
        match events {
            Ok(events) => drain(events, &self.outbox).await,
            Err(e) => tracing::error!(error = %e, "the event pump failed while stopping"),
        }
        self.delivery.abort();
        self.retention.abort();
    }
}

/// The data directory holds every account's session keys: readable by this user
/// only, whatever the volume or directory was created with.
#[cfg(unix)]
fn owner_only(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[cfg(not(unix))]
fn owner_only(_dir: &std::path::Path) -> std::io::Result<()> {
    Ok(())
}

/// Moves engine events into the outbox, resumes interrupted sends when a device
/// connects, and counts reconnections. On `stop`, it lets the resumed sends
/// finish, then hands back the events still to be stored.
async fn pump(
    mut events: UnboundedReceiver<EngineEvent>,
    outbox: Outbox,
    dispatcher: Arc<Dispatcher>,
    metrics: Arc<Metrics>,
    mut stop: oneshot::Receiver<()>,
) -> UnboundedReceiver<EngineEvent> {
    let mut resumes = JoinSet::new();
    // A `Connected` that does not end one of these pairings is a session coming back.
    let mut pairing: HashSet<DeviceId> = HashSet::new();
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { return events };
                store(&outbox, &event).await;
                match event.kind {
                    EventKind::QrUpdated { .. } | EventKind::PairCode { .. } => {
                        pairing.insert(event.device_id);
                    }
                    EventKind::Connected { .. } => {
                        if !pairing.remove(&event.device_id) {
                            metrics.reconnected();
                        }
                        let dispatcher = dispatcher.clone();
                        resumes.spawn(async move { dispatcher.resume(&event.device_id).await });
                    }
                    _ => {}
                }
            }
            Some(_) = resumes.join_next(), if !resumes.is_empty() => {}
            _ = &mut stop => break,
        }
    }
    let finished = tokio::time::timeout(SEND_GRACE, async { while resumes.join_next().await.is_some() {} }).await;
    if finished.is_err() {
        tracing::warn!("stopping with resumed sends unfinished; they stay pending for the next start");
    }
    events
}

/// Stores every event emitted so far; later ones are dropped.
async fn drain(mut events: UnboundedReceiver<EngineEvent>, outbox: &Outbox) {
    events.close();
    while let Some(event) = events.recv().await {
        store(outbox, &event).await;
    }
}

async fn store(outbox: &Outbox, event: &EngineEvent) {
    let mut attempt: u32 = 0;
    while let Err(e) = outbox.record(event) {
        // Dropping it would lose a send's outcome; wait for the disk instead.
        attempt = attempt.saturating_add(1);
        tracing::error!(device_id = %event.device_id, error = %e, attempt, "cannot store an event; retrying");
        tokio::time::sleep(Duration::from_millis(100).saturating_mul(attempt).min(Duration::from_secs(5))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sim::SimTimings;

    /// What a stop (SIGTERM, after the server finished its requests) relies on:
    /// events queued when it begins, and those emitted while the engine closes.
    #[tokio::test]
    async fn a_stop_stores_every_event_already_emitted() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("bridge.db"), &format!("{}{}", journal::SCHEMA, outbox::SCHEMA)).unwrap();
        let metrics = Arc::new(Metrics::default());
        let outbox = Outbox::new(db.clone(), metrics.clone()).unwrap();
        let (sink, events) = EventSink::channel(metrics.clone());
        let timings = SimTimings { deliver: Duration::ZERO, read: Duration::ZERO, qr_ttl: Duration::from_secs(1) };
        let sim = SimEngine::open(&dir.path().join("sim.db"), timings, sink.clone()).unwrap();
        let media = MediaStore::open(dir.path().join("media")).unwrap();
        let dispatcher = Dispatcher::new(Arc::new(sim), db, outbox.clone(), media, metrics.clone()).unwrap();

        let device = DeviceId::parse("dev_a").unwrap();
        for n in 0..100 {
            sink.emit(&device, EventKind::MessageDelivered { message_id: format!("msg_{n}") });
        }
        let (stop, stopped) = oneshot::channel();
        stop.send(()).unwrap();
        let events = pump(events, outbox.clone(), Arc::new(dispatcher), metrics, stopped).await;
        sink.emit(&device, EventKind::MessageRead { message_id: "msg_0".into() });
        drain(events, &outbox).await;
        assert_eq!(outbox.depth().unwrap(), 101);
    }
}
