//! One Durable Object per app and phone (named by `domain::otp::phone_key`): that phone's
//! verification sessions and the record of codes sent to it, for per-phone throttling.
//! Expiry is an alarm; what happened is recorded as `otp.verified` / `otp.expired` events.

use std::time::Duration;

use serde::Deserialize;
use worker::{durable_object, DurableObject, Env, Request, Response, SqlStorage, State};

use super::{call, end_alarm, int, migrate, rows, serve};
use crate::domain::error::ApiError;
use crate::domain::events::{Event, OtpEnded, What};
use crate::domain::otp::{next_wake, Session, SessionState, Throttle, Verdict, Wake, KEEP_MS};
use crate::domain::schema::Migration;
use crate::protocol::app::Record;
use crate::protocol::otp::{
    CancelSession, Otp, OtpHandler, SessionAccepted, StartSession, Started, Verified, VerifyCode,
};
use crate::runtime::{iso, now_ms, required_config};

const RETRY_MS: u64 = 5_000;

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

const PENDING: &str = SessionState::Pending.as_str();
const VERIFIED: &str = SessionState::Verified.as_str();
const SUPERSEDED: &str = SessionState::Superseded.as_str();
const EXPIRED: &str = SessionState::Expired.as_str();

/// Oldest first; append, never edit (see `domain::schema`).
const MIGRATIONS: [Migration; 1] = [Migration::Sql(&[
    "CREATE TABLE IF NOT EXISTS sessions (
                session_id TEXT PRIMARY KEY, app_id TEXT NOT NULL, phone TEXT NOT NULL, code_hash TEXT,
                attempts INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL, expires_at INTEGER NOT NULL,
                created_at INTEGER NOT NULL, verified_at INTEGER, event_recorded INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS sends (session_id TEXT PRIMARY KEY, at INTEGER NOT NULL)",
])];

#[durable_object]
pub struct OtpObject {
    state: State,
    env: Env,
}

impl DurableObject for OtpObject {
    fn new(state: State, env: Env) -> Self {
        migrate(&state, "otp", &MIGRATIONS);
        Self { state, env }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        serve::<Otp, _>(req, |op| op.dispatch(self)).await
    }

    async fn alarm(&self) -> worker::Result<Response> {
        end_alarm(&self.state, "otp alarm", self.tick().await, Some(RETRY_MS)).await
    }
}

impl OtpHandler for OtpObject {
    async fn start(&self, op: StartSession) -> Result<Started, ApiError> {
        let StartSession { session_id, app_id, phone, code_hash, expires_at, resend_cooldown_ms, hourly_cap, now } = op;
        let sent = rows::<SentAt>(self.sql().exec("SELECT at FROM sends", None)?)?;
        let recent: Vec<u64> = sent.iter().map(|s| s.at).collect();
        let throttle = Throttle { resend_cooldown_ms, hourly_cap };
        if let Err(retry_after_secs) = throttle.check(&recent, now) {
            return Ok(Started::Throttled { retry_after_secs });
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
        self.sql().exec("INSERT INTO sends (session_id, at) VALUES (?, ?)", vec![session_id.into(), int(now)])?;
        self.alarm_at(expires_at).await?;
        Ok(Started::Started)
    }

    async fn accepted(&self, SessionAccepted { session_id }: SessionAccepted) -> Result<(), ApiError> {
        self.sql().exec(
            "UPDATE sessions SET state = ?, code_hash = NULL, event_recorded = 1
             WHERE state = ? AND session_id != ?",
            vec![SUPERSEDED.into(), PENDING.into(), session_id.into()],
        )?;
        Ok(())
    }

    async fn cancel(&self, CancelSession { session_id }: CancelSession) -> Result<(), ApiError> {
        self.sql().exec("DELETE FROM sessions WHERE session_id = ?", vec![session_id.as_str().into()])?;
        self.sql().exec("DELETE FROM sends WHERE session_id = ?", vec![session_id.into()])?;
        Ok(())
    }

    async fn verify(&self, VerifyCode { session_id, app_id, code, now }: VerifyCode) -> Result<Verified, ApiError> {
        let row = rows::<SessionRow>(
            self.sql().exec("SELECT * FROM sessions WHERE session_id = ?", vec![session_id.as_str().into()])?,
        )?
        .into_iter()
        .next()
        .filter(|row| row.app_id == app_id.as_str());
        // An unknown session answers like an expired one: nothing to learn from probing ids.
        let Some(row) = row else {
            return Ok(Verified { verdict: Verdict::Expired, phone: String::new(), verified_at: None });
        };
        let state =
            SessionState::parse(&row.state).ok_or_else(|| ApiError::internal("stored session state is unknown"))?;
        let session = Session {
            code_hash: row.code_hash.as_deref().and_then(|h| hex::decode(h).ok()).unwrap_or_default(),
            attempts: row.attempts,
            state,
            expires_at_ms: row.expires_at,
        };
        let secret = required_config(&self.env, "OTP_SECRET")?;
        let (verdict, after) = session.verify(secret.as_bytes(), &session_id, &code, now);
        if after != session {
            let verified = after.state == SessionState::Verified;
            self.sql().exec(
                "UPDATE sessions SET attempts = ?, state = ?, verified_at = ?,
                 code_hash = CASE WHEN ? THEN code_hash END WHERE session_id = ?",
                vec![
                    int(after.attempts.into()),
                    after.state.as_str().into(),
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
}

impl OtpObject {
    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
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
        match next_wake(unrecorded.is_some(), next_expiry, oldest_send) {
            Some(Wake::Soon) => self.state.storage().set_alarm(Duration::from_millis(RETRY_MS)).await?,
            Some(Wake::At(at)) => self.alarm_at(at).await?,
            None => {}
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
            let op = Record { event: Event { id, ..Event::new(None, at, what) } };
            match call(&self.env, &session.app_id, op).await {
                Ok(_) => {
                    let _ = self.sql().exec(
                        "UPDATE sessions SET event_recorded = 1 WHERE session_id = ?",
                        vec![session.session_id.into()],
                    );
                }
                Err(e) => {
                    worker::console_warn!("otp event deferred: {e}");
                    let _ = self.state.storage().set_alarm(Duration::from_millis(RETRY_MS)).await;
                    return;
                }
            }
        }
    }
}
