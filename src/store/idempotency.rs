//! `Idempotency-Key`s of sends (see `domain::idempotency`): the key's fingerprint, the lease of
//! the request handling it, its saved answer, and the message id it is bound to.

use serde::Deserialize;

use super::Sql;
use crate::domain::error::ApiError;
use crate::domain::idempotency::{self, Decision, SavedResponse, Stored};
use crate::domain::ids::MessageId;
use crate::protocol::app::{IdempotencyBegin, IdempotencyFinish};

pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS idempotency (
        key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, status INTEGER, body TEXT, created_at INTEGER NOT NULL)";

/// Added by releases from before versioning: the lease of the request handling a key, and the
/// message id the key is bound to.
pub const ADDED_COLUMNS: [(&str, &str, &str); 2] =
    [("idempotency", "leased_at", "INTEGER"), ("idempotency", "message_id", "TEXT")];

#[derive(Deserialize)]
struct Row {
    fingerprint: String,
    status: Option<u16>,
    body: Option<String>,
    created_at: u64,
    leased_at: Option<u64>,
}

impl From<Row> for Stored {
    fn from(row: Row) -> Self {
        let response = row.status.zip(row.body).map(|(status, body)| SavedResponse { status, body });
        Stored { fingerprint: row.fingerprint, response, created_at: row.created_at, leased_at: row.leased_at }
    }
}

/// Claims the key for a request, or says what became of its earlier use.
pub fn begin(sql: &impl Sql, op: IdempotencyBegin) -> Result<Decision, ApiError> {
    let IdempotencyBegin { key, fingerprint, now, lease_ms } = op;
    sql.run(
        "DELETE FROM idempotency WHERE created_at < ?",
        vec![now.saturating_sub(idempotency::RETENTION_MS).into()],
    )?;
    let stored = sql
        .row::<Row>(
            "SELECT fingerprint, status, body, created_at, leased_at FROM idempotency WHERE key = ?",
            vec![key.as_str().into()],
        )?
        .map(Stored::from);
    let decision = idempotency::decide(stored.as_ref(), &fingerprint, now, lease_ms);
    if decision == Decision::Proceed {
        // A retry takes the lease over and keeps the key's message id.
        sql.run(
            "INSERT INTO idempotency (key, fingerprint, created_at, leased_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (key) DO UPDATE SET leased_at = excluded.leased_at",
            vec![key.into(), fingerprint.into(), now.into(), now.into()],
        )?;
    }
    Ok(decision)
}

/// Saves the answer to replay, or (`None`: the attempt failed) frees the key for a retry.
pub fn finish(sql: &impl Sql, op: IdempotencyFinish) -> Result<(), ApiError> {
    match op.response {
        Some(response) => sql.run(
            "UPDATE idempotency SET status = ?, body = ? WHERE key = ?",
            vec![u32::from(response.status).into(), response.body.into(), op.key.into()],
        )?,
        None => {
            // A key that reserved nothing is forgotten; one bound to a message id keeps it
            // (the device may hold the message) and only lets go of the lease.
            sql.run(
                "DELETE FROM idempotency WHERE key = ? AND status IS NULL AND message_id IS NULL",
                vec![op.key.as_str().into()],
            )?;
            sql.run("UPDATE idempotency SET leased_at = NULL WHERE key = ? AND status IS NULL", vec![op.key.into()])?;
        }
    }
    Ok(())
}

/// The message id the key is bound to, if its first request reserved one.
pub fn bound(sql: &impl Sql, key: &str) -> Result<Option<MessageId>, ApiError> {
    #[derive(Deserialize)]
    struct Bound {
        message_id: Option<String>,
    }
    let bound = sql.row::<Bound>("SELECT message_id FROM idempotency WHERE key = ?", vec![key.into()])?;
    Ok(bound.and_then(|b| b.message_id).as_deref().and_then(MessageId::parse))
}

pub fn bind(sql: &impl Sql, key: &str, message_id: &MessageId) -> Result<(), ApiError> {
    sql.run("UPDATE idempotency SET message_id = ? WHERE key = ?", vec![message_id.as_str().into(), key.into()])?;
    Ok(())
}

/// A refunded message will never go out: a key still waiting for its answer lets go of it, so a
/// retry under the key sends afresh.
pub fn release(sql: &impl Sql, message_id: &MessageId) -> Result<(), ApiError> {
    sql.run(
        "UPDATE idempotency SET message_id = NULL WHERE message_id = ? AND status IS NULL",
        vec![message_id.as_str().into()],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::DeviceId;
    use crate::domain::schema::add_column;
    use crate::store::memory::Memory;

    const NOW: u64 = 1_780_000_000_000;
    const LEASE: u64 = idempotency::DEFAULT_LEASE_MS;

    fn store() -> Memory {
        let sql = Memory::default();
        sql.run(SCHEMA, vec![]).unwrap();
        for (table, column, definition) in ADDED_COLUMNS {
            sql.run(&add_column(table, column, definition), vec![]).unwrap();
        }
        sql
    }

    fn begin_at(sql: &Memory, key: &str, fingerprint: &str, now: u64) -> Decision {
        let op = IdempotencyBegin { key: key.into(), fingerprint: fingerprint.into(), now, lease_ms: LEASE };
        begin(sql, op).unwrap()
    }

    fn message() -> MessageId {
        MessageId::generate(&DeviceId::parse("dev_0123456789abcdef").unwrap())
    }

    #[test]
    fn a_key_stays_bound_to_one_message_id_across_retries() {
        let sql = store();
        assert_eq!(begin_at(&sql, "k", "f", NOW), Decision::Proceed);
        assert_eq!(bound(&sql, "k"), Ok(None));
        let id = message();
        bind(&sql, "k", &id).unwrap();
        assert_eq!(begin_at(&sql, "k", "f", NOW + 1), Decision::InFlight, "the first request still runs");
        finish(&sql, IdempotencyFinish { key: "k".into(), response: None }).unwrap();
        assert_eq!(begin_at(&sql, "k", "f", NOW + 2), Decision::Proceed, "a failed attempt frees the key");
        assert_eq!(bound(&sql, "k"), Ok(Some(id.clone())), "and the retry re-drives the same id");
        assert_eq!(begin_at(&sql, "k", "other body", NOW + 3), Decision::Mismatch);
        let saved = SavedResponse { status: 201, body: "{}".into() };
        finish(&sql, IdempotencyFinish { key: "k".into(), response: Some(saved.clone()) }).unwrap();
        assert_eq!(begin_at(&sql, "k", "f", NOW + 4), Decision::Replay(saved));
        release(&sql, &id).unwrap();
        assert_eq!(bound(&sql, "k"), Ok(Some(id)), "an answered key keeps its id");
        assert_eq!(bound(&sql, "unknown"), Ok(None));
    }

    #[test]
    fn a_failure_forgets_a_key_that_reserved_nothing_and_a_refund_unbinds_a_waiting_one() {
        let sql = store();
        begin_at(&sql, "k", "f", NOW);
        finish(&sql, IdempotencyFinish { key: "k".into(), response: None }).unwrap();
        assert_eq!(begin_at(&sql, "k", "another body", NOW + 1), Decision::Proceed, "forgotten");
        let id = message();
        bind(&sql, "k", &id).unwrap();
        release(&sql, &id).unwrap();
        assert_eq!(bound(&sql, "k"), Ok(None));
    }

    #[test]
    fn keys_are_forgotten_after_their_retention() {
        let sql = store();
        begin_at(&sql, "k", "f", NOW);
        bind(&sql, "k", &message()).unwrap();
        assert_eq!(begin_at(&sql, "other", "f", NOW + idempotency::RETENTION_MS + 1), Decision::Proceed);
        assert_eq!(bound(&sql, "k"), Ok(None), "the expired key was deleted");
    }
}
