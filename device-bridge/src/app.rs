//! Wiring: storage, engine, event pipeline and routes, started in the order
//! recovery needs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;
use wagate_contract::wire::EventKind;

use crate::config::{Config, EngineKind};
use crate::db::Db;
use crate::dispatch::Dispatcher;
use crate::engine::sim::SimEngine;
use crate::engine::{Engine, EngineError, EngineEvent, EventSink};
use crate::error::{method_not_allowed, not_found};
use crate::http::{self, ApiState};
use crate::outbox::{self, Outbox, WorkerClient};
use crate::{journal, sim_api};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("whatsapp engine not built in yet; run with WAGATE_ENGINE=sim")]
    EngineNotBuilt,
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open {path}: {source}")]
    Storage { path: PathBuf, source: rusqlite::Error },
    #[error("cannot load the send journal: {0}")]
    Journal(rusqlite::Error),
    #[error("the engine could not restore its devices: {0}")]
    Restore(#[from] EngineError),
    #[error("cannot build the HTTP client for the worker: {0}")]
    WorkerClient(#[from] reqwest::Error),
}

/// A started bridge: its routes, and the background tasks behind them.
pub struct Bridge {
    router: Router,
    tasks: Vec<JoinHandle<()>>,
}

impl Bridge {
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        if config.engine == EngineKind::Whatsapp {
            return Err(StartError::EngineNotBuilt);
        }
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir).map_err(|source| StartError::DataDir { path: dir.clone(), source })?;
        let storage = |path: PathBuf| move |source| StartError::Storage { path, source };

        let bridge_db_path = dir.join("bridge.db");
        let bridge_db = Db::open(&bridge_db_path, &format!("{}{}", journal::SCHEMA, outbox::SCHEMA))
            .map_err(storage(bridge_db_path))?;
        let (sink, events) = EventSink::channel();
        let sim_db_path = dir.join("sim.db");
        let sim = SimEngine::open(&sim_db_path, config.sim, sink).map_err(storage(sim_db_path))?;
        let engine: Arc<dyn Engine> = Arc::new(sim.clone());
        let outbox = Outbox::new(bridge_db.clone());
        let worker = WorkerClient::new(&config.worker_url, config.secret.clone())?;

        // Interrupted sends are tried before `restore` (so their outcome precedes
        // resumed receipts); those that cannot go yet wait for their device's `Connected`.
        let dispatcher =
            Arc::new(Dispatcher::new(engine.clone(), bridge_db, outbox.clone()).map_err(StartError::Journal)?);
        dispatcher.resume_all().await;
        engine.restore().await?;
        let tasks = vec![
            tokio::spawn(pump(events, outbox.clone(), dispatcher.clone())),
            tokio::spawn(outbox::deliver(outbox, worker)),
        ];

        let router = http::router(ApiState { engine, dispatcher }, config.secret.clone())
            .merge(sim_api::router(sim, config.secret.clone()))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed);
        Ok(Self { router, tasks })
    }

    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Stops the background tasks. Nothing is lost: undelivered events stay in the outbox.
    pub fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

/// Moves engine events into the outbox, and resumes interrupted sends when a device connects.
async fn pump(mut events: UnboundedReceiver<EngineEvent>, outbox: Outbox, dispatcher: Arc<Dispatcher>) {
    while let Some(event) = events.recv().await {
        let mut attempt: u32 = 0;
        while let Err(e) = outbox.record(&event) {
            // Dropping it would lose a send's outcome; wait for the disk instead.
            attempt = attempt.saturating_add(1);
            tracing::error!(device_id = %event.device_id, error = %e, attempt, "cannot store an event; retrying");
            tokio::time::sleep(Duration::from_millis(100).saturating_mul(attempt).min(Duration::from_secs(5))).await;
        }
        if let EventKind::Connected { .. } = event.kind {
            let dispatcher = dispatcher.clone();
            tokio::spawn(async move { dispatcher.resume(&event.device_id).await });
        }
    }
}
