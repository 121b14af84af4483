//! One Durable Object per app and phone (named by `domain::otp::phone_key`): that phone's
//! verification sessions and the record of codes sent to it, for per-phone throttling.
//! Expiry is an alarm; what happened is recorded as `otp.verified` / `otp.expired` events.

use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, SqlStorage, State};

use super::app::AppOp;
use super::{create_schema, int, legacy_call, legacy_serve, rows, to_json, APPS};
use crate::domain::error::ApiError;
use crate::domain::events::{Event, OtpEnded, What};
use crate::domain::ids::AppId;
use crate::domain::otp::{Session, SessionState, Throttle, Verdict};
use crate::runtime::{iso, now_ms, required_config};

/// Sessions and send records are kept this long after they end, then purged.
const KEEP_MS: u64 = 24 * 60 * 60 * 1000;
const RETRY_MS: i64 = 5_000;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum OtpOp {
    Start {
        session_id: String,
        app_id: AppId,
        phone: String,
        code_hash: Vec<u8>,
        expires_at: u64,
        resend_cooldown_ms: u64,
        hourly_cap: usize,
        now: u64,
    },
    /// The code could not be sent: the session and its send record go; earlier codes stay valid.
    Cancel {
        session_id: String,
    },
    /// The code is queued for sending: every earlier code for this phone stops working.
    Accepted {
        session_id: String,
    },
    Verify {
        session_id: String,
        app_id: AppId,
        code: String,
        now: u64,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Started {
    Started,
    Throttled { retry_after_secs: u64 },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Verified {
    pub verdict: Verdict,
    pub phone: String,
    pub verified_at: Option<u64>,
}

#[derive(Deserialize)]
struct SessionRow {
    session_id: String,
    app_id: String,
    phone: String,
    /// Hex of the keyed hash; cleared once the session can no longer verify.
    code_hash: Option<String>,
    attempts: u32,
    state: String,
    expires_at: u64,
    verified_at: Option<u64>,
}

#[derive(Deserialize)]
struct SentAt {
    at: u64,
}

const PENDING: &str = "pending";
const VERIFIED: &str = "verified";
const LOCKED: &str = "locked";
const SUPERSEDED: &str = "superseded";
const EXPIRED: &str = "expired";

fn state_name(state: SessionState) -> &'static str {
    match state {
        SessionState::Pending => PENDING,
        SessionState::Verified => VERIFIED,
        SessionState::Locked => LOCKED,
        SessionState::Superseded => SUPERSEDED,
    }
}

#[durable_object]
pub struct OtpObject {
    state: State,
    env: Env,
}

impl DurableObject for OtpObject {
    fn new(state: State, env: Env) -> Self {
        create_schema(
            &state,
            &[
                "CREATE TABLE IF NOT EXISTS sessions (
                    session_id TEXT PRIMARY KEY, app_id TEXT NOT NULL, phone TEXT NOT NULL, code_hash TEXT,
                    attempts INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL, expires_at INTEGER NOT NULL,
                    created_at INTEGER NOT NULL, verified_at INTEGER, event_recorded INTEGER NOT NULL DEFAULT 0)",
                "CREATE TABLE IF NOT EXISTS sends (session_id TEXT PRIMARY KEY, at INTEGER NOT NULL)",
            ],
        );
        Self { state, env }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        legacy_serve(req, |op: OtpOp| self.handle(op)).await
    }

    async fn alarm(&self) -> worker::Result<Response> {
        if let Err(e) = self.tick().await {
            worker::console_error!("otp alarm: {e}");
            self.state.storage().set_alarm(RETRY_MS).await?;
        }
        Response::empty()
    }
}

impl OtpObject {
    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }

    async fn handle(&self, op: OtpOp) -> Result<serde_json::Value, ApiError> {
        match op {
            OtpOp::Start { session_id, app_id, phone, code_hash, expires_at, resend_cooldown_ms, hourly_cap, now } => {
                let sent = rows::<SentAt>(self.sql().exec("SELECT at FROM sends", None)?)?;
                let recent: Vec<u64> = sent.iter().map(|s| s.at).collect();
                let throttle = Throttle { resend_cooldown_ms, hourly_cap };
                if let Err(retry_after_secs) = throttle.check(&recent, now) {
                    return to_json(&Started::Throttled { retry_after_secs });
                }
                self.sql().exec(
                    "INSERT INTO sessions (session_id, app_id, phone, code_hash, state, expires_at, created_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?)",
                    vec![
                        session_id.as_str().into(),
                        app_id.as_str().into(),
                        phone.into(),
                        hex::encode(code_hash).into(),
                        PENDING.into(),
                        int(expires_at),
                        int(now),
                    ],
                )?;
                self.sql()
                    .exec("INSERT INTO sends (session_id, at) VALUES (?, ?)", vec![session_id.into(), int(now)])?;
                self.alarm_at(expires_at).await?;
                to_json(&Started::Started)
            }
            OtpOp::Accepted { session_id } => {
                self.sql().exec(
                    "UPDATE sessions SET state = ?, code_hash = NULL, event_recorded = 1
                     WHERE state = ? AND session_id != ?",
                    vec![SUPERSEDED.into(), PENDING.into(), session_id.into()],
                )?;
                Ok(serde_json::Value::Null)
            }
            OtpOp::Cancel { session_id } => {
                self.sql().exec("DELETE FROM sessions WHERE session_id = ?", vec![session_id.as_str().into()])?;
                self.sql().exec("DELETE FROM sends WHERE session_id = ?", vec![session_id.into()])?;
                Ok(serde_json::Value::Null)
            }
            OtpOp::Verify { session_id, app_id, code, now } => {
                to_json(&self.verify(&session_id, &app_id, &code, now).await?)
            }
        }
    }

    async fn verify(&self, session_id: &str, app_id: &AppId, code: &str, now: u64) -> Result<Verified, ApiError> {
        let row = rows::<SessionRow>(
            self.sql().exec("SELECT * FROM sessions WHERE session_id = ?", vec![session_id.into()])?,
        )?
        .into_iter()
        .next()
        .filter(|row| row.app_id == app_id.as_str());
        // An unknown session answers like an expired one: nothing to learn from probing ids.
        let Some(row) = row else {
            return Ok(Verified { verdict: Verdict::Expired, phone: String::new(), verified_at: None });
        };
        let state = match row.state.as_str() {
            PENDING => SessionState::Pending,
            VERIFIED => SessionState::Verified,
            LOCKED => SessionState::Locked,
            _ => SessionState::Superseded,
        };
        let session = Session {
            code_hash: row.code_hash.as_deref().and_then(|h| hex::decode(h).ok()).unwrap_or_default(),
            attempts: row.attempts,
            state,
            expires_at_ms: row.expires_at,
        };
        let secret = required_config(&self.env, "OTP_SECRET")?;
        let (verdict, after) = session.verify(secret.as_bytes(), session_id, code, now);
        if after != session {
            let verified = after.state == SessionState::Verified;
            self.sql().exec(
                "UPDATE sessions SET attempts = ?, state = ?, verified_at = ?,
                 code_hash = CASE WHEN ? THEN code_hash END WHERE session_id = ?",
                vec![
                    int(after.attempts.into()),
                    state_name(after.state).into(),
                    verified.then_some(now as i64).into(),
                    int((after.state == SessionState::Pending) as u64),
                    session_id.into(),
                ],
            )?;
            if verified {
                self.record_events().await;
            }
        }
        let verified_at = if verdict == Verdict::Verified { Some(now) } else { row.verified_at };
        Ok(Verified { verdict, phone: row.phone, verified_at })
    }

    /// Keeps the earliest pending alarm.
    async fn alarm_at(&self, at: u64) -> Result<(), ApiError> {
        let storage = self.state.storage();
        match storage.get_alarm().await? {
            Some(existing) if existing as u64 <= at => Ok(()),
            _ => Ok(storage.set_alarm(at.saturating_sub(now_ms()) as i64).await?),
        }
    }

    async fn tick(&self) -> Result<(), ApiError> {
        let now = now_ms();
        // Expired sessions lose their code at once; the row stays so a late verify says "expired".
        self.sql().exec(
            "UPDATE sessions SET state = ?, code_hash = NULL WHERE state = ? AND expires_at <= ?",
            vec![EXPIRED.into(), PENDING.into(), int(now)],
        )?;
        self.record_events().await;
        let cutoff = int(now.saturating_sub(KEEP_MS));
        self.sql()
            .exec("DELETE FROM sessions WHERE state != ? AND expires_at < ?", vec![PENDING.into(), cutoff.clone()])?;
        self.sql().exec("DELETE FROM sends WHERE at < ?", vec![cutoff])?;
        let earliest = |query: &str, bindings: Vec<worker::SqlStorageValue>| -> Result<Option<u64>, ApiError> {
            Ok(rows::<SentAt>(self.sql().exec(query, bindings)?)?.first().map(|r| r.at))
        };
        let unrecorded = earliest(
            "SELECT 0 AS at FROM sessions WHERE state IN (?, ?) AND event_recorded = 0 LIMIT 1",
            vec![VERIFIED.into(), EXPIRED.into()],
        )?;
        let next_expiry = earliest(
            "SELECT MIN(expires_at) AS at FROM sessions WHERE state = ? HAVING COUNT(*) > 0",
            vec![PENDING.into()],
        )?;
        let oldest_send = earliest("SELECT MIN(at) AS at FROM sends HAVING COUNT(*) > 0", vec![])?;
        if unrecorded.is_some() {
            self.state.storage().set_alarm(RETRY_MS).await?;
        } else if let Some(at) = next_expiry {
            self.alarm_at(at).await?;
        } else if let Some(at) = oldest_send {
            self.alarm_at(at + KEEP_MS).await?;
        }
        Ok(())
    }

    /// Records `otp.verified` / `otp.expired` for sessions that ended and have not been
    /// recorded yet; what fails stays unrecorded and the alarm tries again.
    async fn record_events(&self) {
        let ended = match self
            .sql()
            .exec(
                "SELECT * FROM sessions WHERE state IN (?, ?) AND event_recorded = 0",
                vec![VERIFIED.into(), EXPIRED.into()],
            )
            .map_err(ApiError::from)
            .and_then(rows::<SessionRow>)
        {
            Ok(ended) => ended,
            Err(e) => return worker::console_error!("otp events: {e}"),
        };
        for session in ended {
            let ended = |verified_at| OtpEnded {
                session_id: session.session_id.clone(),
                phone_number: session.phone.clone(),
                verified_at,
            };
            let (what, at) = if session.state == VERIFIED {
                let at = session.verified_at.unwrap_or_else(now_ms);
                (What::OtpVerified(ended(Some(iso(at)))), at)
            } else {
                (What::OtpExpired(ended(None)), session.expires_at)
            };
            // One id per session and outcome, so a retried recording is not a second event.
            let id = format!("evt_otp_{}_{}", session.session_id.replace('-', ""), session.state);
            let op = AppOp::Record { event: Event { id, ..Event::new(None, at, what) } };
            match legacy_call::<_, serde_json::Value>(&self.env, APPS, &session.app_id, &op).await {
                Ok(_) => {
                    let _ = self.sql().exec(
                        "UPDATE sessions SET event_recorded = 1 WHERE session_id = ?",
                        vec![session.session_id.into()],
                    );
                }
                Err(e) => {
                    worker::console_warn!("otp event deferred: {e}");
                    let _ = self.state.storage().set_alarm(RETRY_MS).await;
                    return;
                }
            }
        }
    }
}
