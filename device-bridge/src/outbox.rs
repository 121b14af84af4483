//! The durable outbox: every engine event is stored as the exact
//! [`BridgeEvent`] body the worker will receive, then posted, and deleted only
//! once the worker answered 2xx. Events therefore survive a worker outage and a
//! bridge restart; the worker discards an `event_id` it has already applied, so
//! a repeat after a crash is harmless.
//!
//! Order matters within a device (its object applies status changes and
//! receipts in turn), not across devices: each device with events waiting has a
//! lane of its own that posts them oldest first, so one device's event that the
//! worker keeps failing (a 5xx, a timeout) holds up only that device. An event
//! the worker refuses for good (a 4xx that no retry can change, see
//! [`refused_for_good`]) moves to the dead letters with the worker's status and
//! error code, where the operator can list and replay it; the lane goes on.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{params, OptionalExtension};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use wagate_contract::signing::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use wagate_contract::wire::{BridgeEvent, DeadLetter, EventKind, EVENTS_PATH};

use crate::clock::{now_ms, now_secs};
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
    created_ms INTEGER NOT NULL,
    device_id TEXT NOT NULL DEFAULT ''
);
-- Events the worker refused for good, as they were posted; never retried by themselves.
CREATE TABLE IF NOT EXISTS dead_letters (
    event_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    type TEXT NOT NULL,
    body TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    status INTEGER NOT NULL,
    error TEXT NOT NULL,
    dead_ms INTEGER NOT NULL
);
";

/// Outboxes written before delivery went per device have no `device_id`: add it
/// from the stored bodies, then index the lanes.
const MIGRATION: &str = "
UPDATE outbox SET device_id = coalesce(json_extract(body, '$.device_id'), '') WHERE device_id = '';
CREATE INDEX IF NOT EXISTS outbox_lanes ON outbox (device_id, seq);
";

const FIRST_RETRY: Duration = Duration::from_millis(100);
/// Short enough that a test stack recovers within seconds once the worker is up.
const MAX_RETRY: Duration = Duration::from_secs(5);
/// Posts in flight at once, across all lanes: the worker is one service, however many devices.
const MAX_IN_FLIGHT: usize = 8;
/// The part of the worker's error code a dead letter keeps.
const MAX_ERROR_CHARS: usize = 64;
/// The most dead letters one listing shows.
pub const MAX_LIST: usize = 1000;

#[derive(Clone)]
pub struct Outbox {
    db: Db,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
}

struct Queued {
    event_id: String,
    body: String,
}

impl Outbox {
    /// `db` must hold the journal too: a send's outcome and its event commit together.
    pub fn new(db: Db, metrics: Arc<Metrics>) -> rusqlite::Result<Self> {
        {
            let conn = db.lock();
            let has_lanes: bool = conn.query_row(
                "SELECT count(*) > 0 FROM pragma_table_info('outbox') WHERE name = 'device_id'",
                [],
                |row| row.get(0),
            )?;
            if !has_lanes {
                conn.execute_batch("ALTER TABLE outbox ADD COLUMN device_id TEXT NOT NULL DEFAULT ''")?;
            }
            conn.execute_batch(MIGRATION)?;
        }
        Ok(Self { db, wake: Arc::default(), metrics })
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
                "INSERT INTO outbox (event_id, device_id, body, created_ms) VALUES (?1, ?2, ?3, ?4)",
                params![wire.event_id, wire.device_id, body, sql_ms(event.at_ms)],
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
        count(&self.db, "SELECT count(*) FROM outbox")
    }

    pub fn dead_letter_count(&self) -> rusqlite::Result<u64> {
        count(&self.db, "SELECT count(*) FROM dead_letters")
    }

    /// The dead letters, oldest refusal first. Their bodies (which may carry a
    /// message text) stay in storage: the operator sees what each was, not what it said.
    pub fn dead_letters(&self, limit: usize) -> rusqlite::Result<Vec<DeadLetter>> {
        let conn = self.db.lock();
        let mut stmt = conn.prepare(
            "SELECT event_id, device_id, type, status, error, created_ms, dead_ms FROM dead_letters
             ORDER BY dead_ms, event_id LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit.min(MAX_LIST) as i64], |row| {
            Ok(DeadLetter {
                id: row.get(0)?,
                device_id: row.get(1)?,
                kind: row.get(2)?,
                status: row.get(3)?,
                error: row.get(4)?,
                created_ms: u64::try_from(row.get::<_, i64>(5)?).unwrap_or(0),
                dead_ms: u64::try_from(row.get::<_, i64>(6)?).unwrap_or(0),
            })
        })?;
        rows.collect()
    }

    /// Queues a dead letter again, after whatever its device has queued since;
    /// false when there is no dead letter with this id.
    pub fn replay(&self, event_id: &str) -> rusqlite::Result<bool> {
        let replayed = {
            let mut conn = self.db.lock();
            let tx = conn.transaction()?;
            let moved = tx.execute(
                "INSERT INTO outbox (event_id, device_id, body, created_ms)
                 SELECT event_id, device_id, body, created_ms FROM dead_letters WHERE event_id = ?1",
                [event_id],
            )?;
            tx.execute("DELETE FROM dead_letters WHERE event_id = ?1", [event_id])?;
            tx.commit()?;
            moved == 1
        };
        if replayed {
            self.wake.notify_one();
        }
        Ok(replayed)
    }

    /// Dead letters refused before `before_ms`; returns how many went.
    pub fn prune_dead_letters(&self, before_ms: u64) -> rusqlite::Result<usize> {
        self.db.lock().execute("DELETE FROM dead_letters WHERE dead_ms < ?1", [sql_ms(before_ms)])
    }

    fn lanes_waiting(&self) -> rusqlite::Result<Vec<String>> {
        let conn = self.db.lock();
        let mut stmt = conn.prepare("SELECT DISTINCT device_id FROM outbox")?;
        let rows = stmt.query_map([], |row| row.get(0))?;
        rows.collect()
    }

    fn oldest(&self, device_id: &str) -> rusqlite::Result<Option<Queued>> {
        self.db
            .lock()
            .query_row(
                "SELECT event_id, body FROM outbox WHERE device_id = ?1 ORDER BY seq LIMIT 1",
                [device_id],
                |row| Ok(Queued { event_id: row.get(0)?, body: row.get(1)? }),
            )
            .optional()
    }

    fn remove(&self, event_id: &str) -> rusqlite::Result<()> {
        self.db.lock().execute("DELETE FROM outbox WHERE event_id = ?1", [event_id])?;
        Ok(())
    }

    /// Moves the event to the dead letters, in one transaction.
    fn bury(&self, event_id: &str, status: u16, error: &str) -> rusqlite::Result<()> {
        let mut conn = self.db.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO dead_letters (event_id, device_id, type, body, created_ms, status, error, dead_ms)
             SELECT event_id, device_id, coalesce(json_extract(body, '$.type'), ''), body, created_ms, ?2, ?3, ?4
             FROM outbox WHERE event_id = ?1",
            params![event_id, status, error, sql_ms(now_ms())],
        )?;
        tx.execute("DELETE FROM outbox WHERE event_id = ?1", [event_id])?;
        tx.commit()
    }
}

fn count(db: &Db, sql: &str) -> rusqlite::Result<u64> {
    let n: i64 = db.lock().query_row(sql, [], |row| row.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn sql_ms(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
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
    /// Only the error code of the answer is kept: its message may quote the event.
    #[error("worker answered {status} {code}")]
    Refused { status: u16, code: String },
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
        let answer = response.bytes().await.unwrap_or_default();
        Err(DeliveryError::Refused { status: status.as_u16(), code: error_code(&answer) })
    }
}

/// The `error` (LoginWA) or `code` (SPWP, the bridge) of a JSON error body, cut
/// to a short token; empty when there is none.
fn error_code(body: &[u8]) -> String {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let code = ["error", "code"].iter().find_map(|field| json.get(field).and_then(|v| v.as_str())).unwrap_or("");
    code.chars().filter(|c| c.is_ascii_alphanumeric() || "_.-".contains(*c)).take(MAX_ERROR_CHARS).collect()
}

/// True for a 4xx that says the event itself is wrong, which no retry changes.
/// Not: 401 and 403 (a secret or clock out of step, or the worker's failed-auth
/// guard: every event would be refused until that is fixed, and then accepted),
/// 404 (a worker URL without the route: a deployment to fix, not an event),
/// 408, 425 and 429 (explicitly "later").
pub fn refused_for_good(status: u16) -> bool {
    (400..500).contains(&status) && !matches!(status, 401 | 403 | 404 | 408 | 425 | 429)
}

/// Delivers the outbox forever: one lane per device with events waiting.
pub async fn deliver(outbox: Outbox, worker: WorkerClient) {
    let worker = Arc::new(worker);
    let posts = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut lanes = JoinSet::new();
    let mut running: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut busy: HashSet<String> = HashSet::new();
    loop {
        match outbox.lanes_waiting() {
            Ok(devices) => {
                for device_id in devices {
                    if busy.insert(device_id.clone()) {
                        let lane = lane(outbox.clone(), worker.clone(), posts.clone(), device_id.clone());
                        running.insert(lanes.spawn(lane).id(), device_id);
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox; retrying");
                tokio::time::sleep(MAX_RETRY).await;
            }
        }
        tokio::select! {
            () = outbox.wake.notified() => {}
            Some(done) = lanes.join_next_with_id(), if !lanes.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => {
                        tracing::error!(error = %e, "an outbox lane failed; restarting it");
                        e.id()
                    }
                };
                if let Some(device_id) = running.remove(&id) {
                    busy.remove(&device_id);
                }
            }
        }
    }
}

/// Posts one device's events oldest first until none is left. A failure holds
/// the lane (order matters to the device) and is retried with capped, jittered
/// backoff; a refusal for good moves the event to the dead letters.
async fn lane(outbox: Outbox, worker: Arc<WorkerClient>, posts: Arc<Semaphore>, device_id: String) {
    let mut failures: u32 = 0;
    loop {
        let queued = match outbox.oldest(&device_id) {
            Ok(Some(queued)) => queued,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(device_id, error = %e, "cannot read the outbox; retrying");
                tokio::time::sleep(MAX_RETRY).await;
                continue;
            }
        };
        let posted = {
            let _permit = posts.acquire().await;
            worker.post(&queued.body).await
        };
        let stored = match posted {
            Ok(()) => {
                outbox.metrics.event_posted();
                if failures > 0 {
                    tracing::info!(device_id, failures, "worker takes this device's events again");
                    failures = 0;
                }
                // If this fails the event is posted again, which the worker tolerates.
                outbox.remove(&queued.event_id)
            }
            Err(DeliveryError::Refused { status, code }) if refused_for_good(status) => {
                outbox.metrics.dead_lettered(status);
                tracing::warn!(device_id, event_id = %queued.event_id, status, error = code, "the worker refused an event for good; kept as a dead letter");
                failures = 0;
                outbox.bury(&queued.event_id, status, &code)
            }
            Err(e) => {
                outbox.metrics.event_post_failed();
                failures = failures.saturating_add(1);
                let delay = retry_delay(failures);
                // One warning per backoff step; once at the cap, further retries only at debug.
                if failures == 1 || retry_delay(failures - 1) < delay {
                    tracing::warn!(device_id, event_id = %queued.event_id, failures, retry_in_ms = delay.as_millis() as u64, error = %e, "event delivery to the worker failed");
                } else {
                    tracing::debug!(device_id, event_id = %queued.event_id, failures, error = %e, "event delivery to the worker failed");
                }
                tokio::time::sleep(delay.mul_f64(rand::random_range(0.5..=1.0))).await;
                Ok(())
            }
        };
        if let Err(e) = stored {
            tracing::error!(device_id, event_id = %queued.event_id, error = %e, "cannot update the outbox after a post");
            tokio::time::sleep(MAX_RETRY).await;
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
            journal::claim(&db.lock(), &dev, &message, None).unwrap();
            let outbox = Outbox::new(db, Arc::default()).unwrap();
            for kind in &kinds {
                outbox.record(&EngineEvent::now(&dev, kind.clone())).unwrap();
            }
        }

        let db = open(&path);
        assert_eq!(
            journal::state(&db.lock(), &message.message_id).unwrap(),
            Some(SendResponse::Sent { external_id: "3EB0AB".into() })
        );
        let outbox = Outbox::new(db, Arc::default()).unwrap();
        assert_eq!(outbox.depth().unwrap(), 3);
        assert_eq!(outbox.lanes_waiting().unwrap(), ["dev_a"]);
        let mut delivered = Vec::new();
        while let Some(queued) = outbox.oldest("dev_a").unwrap() {
            let event: BridgeEvent = serde_json::from_str(&queued.body).unwrap();
            assert_eq!(event.event_id, queued.event_id);
            assert!(event.event_id.starts_with("evt_"));
            assert_eq!(event.device_id, "dev_a");
            delivered.push(event.kind);
            outbox.remove(&queued.event_id).unwrap();
        }
        assert_eq!(delivered, kinds);
        assert_eq!(outbox.depth().unwrap(), 0);
    }

    #[test]
    fn refused_events_move_to_the_dead_letters_and_back() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::new(open(&dir.path().join("bridge.db")), Arc::default()).unwrap();
        let (a, b) = (DeviceId::parse("dev_a").unwrap(), DeviceId::parse("dev_b").unwrap());
        outbox.record(&EngineEvent::now(&a, EventKind::MessageRead { message_id: "msg_1".into() })).unwrap();
        outbox.record(&EngineEvent::now(&b, EventKind::MessageRead { message_id: "msg_2".into() })).unwrap();
        let mut lanes = outbox.lanes_waiting().unwrap();
        lanes.sort();
        assert_eq!(lanes, ["dev_a", "dev_b"]);

        let refused = outbox.oldest("dev_a").unwrap().unwrap();
        outbox.bury(&refused.event_id, 422, "validation_failed").unwrap();
        assert_eq!((outbox.depth().unwrap(), outbox.dead_letter_count().unwrap()), (1, 1));
        let [dead] = &outbox.dead_letters(10).unwrap()[..] else { panic!("one dead letter") };
        assert_eq!(
            (dead.id.as_str(), dead.device_id.as_str(), dead.kind.as_str(), dead.status, dead.error.as_str()),
            (refused.event_id.as_str(), "dev_a", "message_read", 422, "validation_failed")
        );
        assert!(outbox.oldest("dev_a").unwrap().is_none());

        assert!(outbox.replay(&dead.id).unwrap());
        assert!(!outbox.replay(&dead.id).unwrap(), "replayed once");
        assert_eq!(outbox.oldest("dev_a").unwrap().unwrap().body, refused.body, "the same event, same id");
        assert_eq!(outbox.dead_letter_count().unwrap(), 0);

        outbox.bury(&refused.event_id, 400, "").unwrap();
        assert_eq!(outbox.prune_dead_letters(now_ms() - 60_000).unwrap(), 0);
        assert_eq!(outbox.prune_dead_letters(now_ms() + 1).unwrap(), 1);
    }

    #[test]
    fn only_refusals_no_retry_can_change_are_for_good() {
        for status in [400, 409, 410, 413, 415, 422] {
            assert!(refused_for_good(status), "{status}");
        }
        for status in [200, 301, 401, 403, 404, 408, 425, 429, 500, 502, 503] {
            assert!(!refused_for_good(status), "{status}");
        }
        assert_eq!(error_code(br#"{"error":"validation_failed","message":"secret text"}"#), "validation_failed");
        assert_eq!(error_code(br#"{"code":"BAD code\n"}"#), "BADcode");
        assert_eq!(error_code(b"<html>"), "");
        assert_eq!(error_code(format!(r#"{{"error":"{}"}}"#, "x".repeat(500)).as_bytes()).len(), MAX_ERROR_CHARS);
    }

    #[test]
    fn an_outbox_from_before_lanes_gets_its_device_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bridge.db");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
                 body TEXT NOT NULL, created_ms INTEGER NOT NULL);
                 INSERT INTO outbox (event_id, body, created_ms)
                 VALUES ('evt_1', '{\"event_id\":\"evt_1\",\"device_id\":\"dev_old\",\"at_ms\":1,\"type\":\"message_read\",\"message_id\":\"msg_1\"}', 1);",
            )
            .unwrap();
        }
        let outbox = Outbox::new(open(&path), Arc::default()).unwrap();
        assert_eq!(outbox.lanes_waiting().unwrap(), ["dev_old"]);
        assert_eq!(outbox.oldest("dev_old").unwrap().unwrap().event_id, "evt_1");
    }

    #[test]
    fn retry_delay_doubles_up_to_the_cap() {
        let delays: Vec<u128> = (1..=8).map(|n| retry_delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY);
    }
}
