//! The durable outbox: every engine event is stored as the exact
//! [`BridgeEvent`] body the worker will receive, then one task posts them in
//! order, deleting each only once the worker answered 2xx. Events therefore
//! survive a worker outage and a bridge restart; the worker discards an
//! `event_id` it has already applied, so a repeat after a crash is harmless.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use wagate_contract::signing::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use wagate_contract::wire::{BridgeEvent, EventKind, EVENTS_PATH};

use crate::clock::now_secs;
use crate::config::Secret;
use crate::db::Db;
use crate::engine::EngineEvent;
use crate::journal;
use crate::metrics::Metrics;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
";

const FIRST_RETRY: Duration = Duration::from_millis(100);
/// Short enough that a test stack recovers within seconds once the worker is up.
const MAX_RETRY: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Outbox {
    db: Db,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
}

struct Queued {
    seq: i64,
    event_id: String,
    body: String,
}

impl Outbox {
    /// `db` must hold the journal too: a send's outcome and its event commit together.
    pub fn new(db: Db, metrics: Arc<Metrics>) -> Self {
        Self { db, wake: Arc::default(), metrics }
    }

    /// Stores the event for delivery. A send's outcome (`MessageSent`,
    /// `MessageFailed`) is written to the journal in the same transaction.
    pub fn record(&self, event: &EngineEvent) -> rusqlite::Result<()> {
        let wire = BridgeEvent {
            event_id: format!("evt_{}", hex::encode(rand::random::<[u8; 16]>())),
            device_id: event.device_id.to_string(),
            at_ms: event.at_ms,
            kind: event.kind.clone(),
        };
        let body = serde_json::to_string(&wire).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        {
            let mut conn = self.db.lock();
            let tx = conn.transaction()?;
            journal::resolve(&tx, &wire.kind)?;
            tx.execute(
                "INSERT INTO outbox (event_id, body, created_ms) VALUES (?1, ?2, ?3)",
                rusqlite::params![wire.event_id, body, i64::try_from(event.at_ms).unwrap_or(i64::MAX)],
            )?;
            tx.commit()?;
        }
        if let EventKind::MessageFailed { code, .. } = &wire.kind {
            self.metrics.send_failed(code);
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Events not yet acknowledged by the worker.
    pub fn depth(&self) -> rusqlite::Result<u64> {
        let count: i64 = self.db.lock().query_row("SELECT count(*) FROM outbox", [], |row| row.get(0))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    fn oldest(&self) -> rusqlite::Result<Option<Queued>> {
        use rusqlite::OptionalExtension;
        self.db
            .lock()
            .query_row("SELECT seq, event_id, body FROM outbox ORDER BY seq LIMIT 1", [], |row| {
                Ok(Queued { seq: row.get(0)?, event_id: row.get(1)?, body: row.get(2)? })
            })
            .optional()
    }

    fn remove(&self, seq: i64) -> rusqlite::Result<()> {
        self.db.lock().execute("DELETE FROM outbox WHERE seq = ?1", [seq])?;
        Ok(())
    }
}

/// Posts signed events to the worker's `/bridge/v1/events`.
pub struct WorkerClient {
    http: reqwest::Client,
    url: String,
    secret: Secret,
}

#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error("worker unreachable: {0}")]
    Unreachable(String),
    #[error("worker answered {status}: {body}")]
    Refused { status: u16, body: String },
}

impl WorkerClient {
    pub fn new(worker_url: &str, secret: Secret) -> reqwest::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .build()?;
        Ok(Self { http, url: format!("{}{EVENTS_PATH}", worker_url.trim_end_matches('/')), secret })
    }

    async fn post(&self, body: &str) -> Result<(), DeliveryError> {
        let ts = now_secs();
        let signature = signing::sign(self.secret.expose(), ts, "POST", EVENTS_PATH, body.as_bytes());
        let response = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(body.to_owned())
            .send()
            .await
            .map_err(|e| DeliveryError::Unreachable(error_chain(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default().chars().take(200).collect();
        Err(DeliveryError::Refused { status: status.as_u16(), body })
    }
}

/// Delivers the outbox forever, oldest event first; a failure blocks the queue
/// (order matters to the worker) and is retried with capped, jittered backoff.
pub async fn deliver(outbox: Outbox, worker: WorkerClient) {
    let mut failures: u32 = 0;
    loop {
        let queued = match outbox.oldest() {
            Ok(Some(queued)) => queued,
            Ok(None) => {
                outbox.wake.notified().await;
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox; retrying");
                tokio::time::sleep(MAX_RETRY).await;
                continue;
            }
        };
        match worker.post(&queued.body).await {
            Ok(()) => {
                outbox.metrics.event_posted();
                if failures > 0 {
                    tracing::info!(failures, "worker reachable again; delivering queued events");
                    failures = 0;
                }
                if let Err(e) = outbox.remove(queued.seq) {
                    // It will be posted again, which the worker tolerates; just don't spin.
                    tracing::error!(event_id = %queued.event_id, error = %e, "cannot remove a delivered event");
                    tokio::time::sleep(MAX_RETRY).await;
                }
            }
            Err(e) => {
                outbox.metrics.event_post_failed();
                failures = failures.saturating_add(1);
                let delay = retry_delay(failures);
                // One warning per backoff step; once at the cap, further retries only at debug.
                if failures == 1 || retry_delay(failures - 1) < delay {
                    tracing::warn!(event_id = %queued.event_id, failures, retry_in_ms = delay.as_millis() as u64, error = %e, "event delivery to the worker failed");
                } else {
                    tracing::debug!(event_id = %queued.event_id, failures, error = %e, "event delivery to the worker failed");
                }
                tokio::time::sleep(delay.mul_f64(rand::random_range(0.5..=1.0))).await;
            }
        }
    }
}

fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY)
}

/// reqwest's own message hides the cause ("error sending request"); the chain names it.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use wagate_contract::wire::SendResponse;

    use crate::engine::{OutgoingMessage, Payload};
    use crate::ids::{DeviceId, MessageId};
    use crate::jid::Jid;

    fn open(path: &std::path::Path) -> Db {
        Db::open(path, &format!("{}{SCHEMA}", journal::SCHEMA)).unwrap()
    }

    #[test]
    fn events_survive_reopening_in_order_and_outcomes_land_in_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bridge.db");
        let dev = DeviceId::parse("dev_a").unwrap();
        let message = OutgoingMessage {
            message_id: MessageId::parse("msg_1").unwrap(),
            to: Jid::parse("14155552671@s.whatsapp.net").unwrap(),
            payload: Payload::Text { text: "hi".into() },
        };
        let kinds = [
            EventKind::Connected { phone: "6281234567890".into() },
            EventKind::MessageSent { message_id: "msg_1".into(), external_id: "3EB0AB".into() },
            EventKind::MessageDelivered { message_id: "msg_1".into() },
        ];
        {
            let db = open(&path);
            journal::claim(&db.lock(), &dev, &message).unwrap();
            let outbox = Outbox::new(db, Arc::default());
            for kind in &kinds {
                outbox.record(&EngineEvent::now(&dev, kind.clone())).unwrap();
            }
        }

        let db = open(&path);
        assert_eq!(
            journal::state(&db.lock(), &message.message_id).unwrap(),
            Some(SendResponse::Sent { external_id: "3EB0AB".into() })
        );
        let outbox = Outbox::new(db, Arc::default());
        assert_eq!(outbox.depth().unwrap(), 3);
        let mut delivered = Vec::new();
        while let Some(queued) = outbox.oldest().unwrap() {
            let event: BridgeEvent = serde_json::from_str(&queued.body).unwrap();
            assert_eq!(event.event_id, queued.event_id);
            assert!(event.event_id.starts_with("evt_"));
            assert_eq!(event.device_id, "dev_a");
            delivered.push(event.kind);
            outbox.remove(queued.seq).unwrap();
        }
        assert_eq!(delivered, kinds);
        assert_eq!(outbox.depth().unwrap(), 0);
    }

    #[test]
    fn retry_delay_doubles_up_to_the_cap() {
        let delays: Vec<u128> = (1..=8).map(|n| retry_delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY);
    }
}
