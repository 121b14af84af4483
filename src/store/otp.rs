//! One phone's verification sessions and the codes sent to it (the OTP object's storage):
//! throttled starts, verification through `domain::otp::Session`, expiry, and the ended
//! sessions whose `otp.verified` / `otp.expired` events are still to be recorded.

use serde::Deserialize;

use super::Sql;
use crate::domain::error::ApiError;
use crate::domain::otp::{next_wake, Session, SessionState, Throttle, Wake, KEEP_MS};
use crate::domain::schema::Migration;
use crate::protocol::otp::{StartSession, Started, Verified, VerifyCode};

/// Oldest first; append, never edit (see `domain::schema`).
pub const MIGRATIONS: [Migration; 1] = [Migration::Sql(&[
    "CREATE TABLE IF NOT EXISTS sessions (
                session_id TEXT PRIMARY KEY, app_id TEXT NOT NULL, phone TEXT NOT NULL, code_hash TEXT,
                attempts INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL, expires_at INTEGER NOT NULL,
                created_at INTEGER NOT NULL, verified_at INTEGER, event_recorded INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS sends (session_id TEXT PRIMARY KEY, at INTEGER NOT NULL)",
])];

const PENDING: &str = SessionState::Pending.as_str();
const VERIFIED: &str = SessionState::Verified.as_str();
const SUPERSEDED: &str = SessionState::Superseded.as_str();
const EXPIRED: &str = SessionState::Expired.as_str();

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
struct At {
    at: u64,
}

/// A session that ended (verified or expired) and whose event is not recorded yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    pub session_id: String,
    pub app_id: String,
    pub phone: String,
    pub state: SessionState,
    /// When it was verified, or when it expired.
    pub at: u64,
}

/// A new session, unless the phone was sent codes too often; the caller arms the expiry alarm.
pub fn start(sql: &impl Sql, op: StartSession) -> Result<Started, ApiError> {
    let StartSession { session_id, app_id, phone, code_hash, expires_at, resend_cooldown_ms, hourly_cap, now } = op;
    let recent: Vec<u64> = sql.rows::<At>("SELECT at FROM sends", vec![])?.into_iter().map(|s| s.at).collect();
    if let Err(retry_after_secs) = (Throttle { resend_cooldown_ms, hourly_cap }).check(&recent, now) {
        return Ok(Started::Throttled { retry_after_secs });
    }
    sql.run(
        "INSERT INTO sessions (session_id, app_id, phone, code_hash, state, expires_at, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
        vec![
            session_id.as_str().into(),
            app_id.as_str().into(),
            phone.into(),
            hex::encode(code_hash).into(),
            PENDING.into(),
            expires_at.into(),
            now.into(),
        ],
    )?;
    sql.run("INSERT INTO sends (session_id, at) VALUES (?, ?)", vec![session_id.into(), now.into()])?;
    Ok(Started::Started)
}

/// The code of `session_id` went out: every other pending session of the phone stops verifying
/// (superseded sessions record no event).
pub fn accepted(sql: &impl Sql, session_id: &str) -> Result<(), ApiError> {
    sql.run(
        "UPDATE sessions SET state = ?, code_hash = NULL, event_recorded = 1 WHERE state = ? AND session_id != ?",
        vec![SUPERSEDED.into(), PENDING.into(), session_id.into()],
    )?;
    Ok(())
}

/// The code never went out: the session and its send are forgotten (it does not count against
/// the throttle).
pub fn cancel(sql: &impl Sql, session_id: &str) -> Result<(), ApiError> {
    sql.run("DELETE FROM sessions WHERE session_id = ?", vec![session_id.into()])?;
    sql.run("DELETE FROM sends WHERE session_id = ?", vec![session_id.into()])?;
    Ok(())
}

/// Checks a code against the session (of this app only) and keeps what the attempt changed;
/// the second value says whether this attempt verified it.
pub fn verify(sql: &impl Sql, op: VerifyCode, secret: &[u8]) -> Result<(Verified, bool), ApiError> {
    let VerifyCode { session_id, app_id, code, now } = op;
    let row = sql
        .row::<SessionRow>("SELECT * FROM sessions WHERE session_id = ?", vec![session_id.as_str().into()])?
        .filter(|row| row.app_id == app_id.as_str());
    // An unknown session answers like an expired one: nothing to learn from probing ids.
    let Some(row) = row else {
        let verdict = crate::domain::otp::Verdict::Expired;
        return Ok((Verified { verdict, phone: String::new(), verified_at: None }, false));
    };
    let state = SessionState::parse(&row.state).ok_or_else(|| ApiError::internal("stored session state is unknown"))?;
    let session = Session {
        code_hash: row.code_hash.as_deref().and_then(|h| hex::decode(h).ok()).unwrap_or_default(),
        attempts: row.attempts,
        state,
        expires_at_ms: row.expires_at,
    };
    let (verdict, after) = session.verify(secret, &session_id, &code, now);
    let verified = after.state == SessionState::Verified && session.state != SessionState::Verified;
    if after != session {
        sql.run(
            "UPDATE sessions SET attempts = ?, state = ?, verified_at = ?,
             code_hash = CASE WHEN ? THEN code_hash END WHERE session_id = ?",
            vec![
                after.attempts.into(),
                after.state.as_str().into(),
                (after.state == SessionState::Verified).then_some(now).into(),
                (after.state == SessionState::Pending).into(),
                session_id.into(),
            ],
        )?;
    }
    let verified_at = if verdict == crate::domain::otp::Verdict::Verified { Some(now) } else { row.verified_at };
    Ok((Verified { verdict, phone: row.phone, verified_at }, verified))
}

/// Pending sessions past their expiry lose their code at once; the row stays so a late verify
/// says "expired". Ended sessions and sends older than `KEEP_MS` go.
pub fn expire(sql: &impl Sql, now: u64) -> Result<(), ApiError> {
    sql.run(
        "UPDATE sessions SET state = ?, code_hash = NULL WHERE state = ? AND expires_at <= ?",
        vec![EXPIRED.into(), PENDING.into(), now.into()],
    )?;
    let cutoff = now.saturating_sub(KEEP_MS);
    sql.run("DELETE FROM sessions WHERE state != ? AND expires_at < ?", vec![PENDING.into(), cutoff.into()])?;
    sql.run("DELETE FROM sends WHERE at < ?", vec![cutoff.into()])?;
    Ok(())
}

/// Ended sessions whose event is still to be recorded.
pub fn ended(sql: &impl Sql, now: u64) -> Result<Vec<Ended>, ApiError> {
    let rows = sql.rows::<SessionRow>(
        "SELECT * FROM sessions WHERE state IN (?, ?) AND event_recorded = 0",
        vec![VERIFIED.into(), EXPIRED.into()],
    )?;
    Ok(rows
        .into_iter()
        .filter_map(|s| {
            let state = SessionState::parse(&s.state)?;
            let at = match state {
                SessionState::Verified => s.verified_at.unwrap_or(now),
                _ => s.expires_at,
            };
            Some(Ended { session_id: s.session_id, app_id: s.app_id, phone: s.phone, state, at })
        })
        .collect())
}

pub fn recorded(sql: &impl Sql, session_id: &str) -> Result<(), ApiError> {
    sql.run("UPDATE sessions SET event_recorded = 1 WHERE session_id = ?", vec![session_id.into()])?;
    Ok(())
}

/// When the object must wake next (see `domain::otp::next_wake`).
pub fn wake(sql: &impl Sql) -> Result<Option<Wake>, ApiError> {
    let earliest =
        |query: &str, binds| -> Result<Option<u64>, ApiError> { Ok(sql.row::<At>(query, binds)?.map(|r| r.at)) };
    let unrecorded = earliest(
        "SELECT 0 AS at FROM sessions WHERE state IN (?, ?) AND event_recorded = 0 LIMIT 1",
        vec![VERIFIED.into(), EXPIRED.into()],
    )?;
    let next_expiry = earliest(
        "SELECT MIN(expires_at) AS at FROM sessions WHERE state = ? HAVING COUNT(*) > 0",
        vec![PENDING.into()],
    )?;
    let oldest_send = earliest("SELECT MIN(at) AS at FROM sends HAVING COUNT(*) > 0", vec![])?;
    Ok(next_wake(unrecorded.is_some(), next_expiry, oldest_send))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::AppId;
    use crate::domain::otp::{hash_code, Verdict};
    use crate::store::memory::Memory;
    use crate::store::migrate;

    const SECRET: &[u8] = b"otp-secret";
    const MINUTE: u64 = 60_000;

    fn store() -> Memory {
        let sql = Memory::default();
        migrate(&sql, &MIGRATIONS).unwrap();
        sql
    }

    fn app() -> AppId {
        AppId::parse("app_0123456789abcdef").unwrap()
    }

    fn begin(sql: &Memory, session_id: &str, now: u64) -> Started {
        let op = StartSession {
            session_id: session_id.into(),
            app_id: app(),
            phone: "6281234567890".into(),
            code_hash: hash_code(SECRET, session_id, "123456"),
            expires_at: now + 5 * MINUTE,
            resend_cooldown_ms: MINUTE,
            hourly_cap: 3,
            now,
        };
        start(sql, op).unwrap()
    }

    fn check(sql: &Memory, session_id: &str, app_id: AppId, code: &str, now: u64) -> (Verified, bool) {
        verify(sql, VerifyCode { session_id: session_id.into(), app_id, code: code.into(), now }, SECRET).unwrap()
    }

    #[test]
    fn a_phone_is_throttled_by_cooldown_and_hourly_cap_and_a_cancelled_send_does_not_count() {
        let sql = store();
        assert_eq!(begin(&sql, "s1", 0), Started::Started);
        assert_eq!(begin(&sql, "s2", MINUTE / 2), Started::Throttled { retry_after_secs: 30 });
        cancel(&sql, "s1").unwrap();
        assert_eq!(begin(&sql, "s2", MINUTE / 2), Started::Started, "a code that never went out");
        assert_eq!(begin(&sql, "s3", 2 * MINUTE), Started::Started);
        assert_eq!(begin(&sql, "s4", 4 * MINUTE), Started::Started);
        let capped = begin(&sql, "s5", 6 * MINUTE);
        assert!(matches!(capped, Started::Throttled { retry_after_secs } if retry_after_secs > 50 * 60));
    }

    #[test]
    fn a_code_verifies_once_for_its_own_app_and_a_probe_learns_nothing() {
        let sql = store();
        begin(&sql, "s1", 0);
        let other = AppId::parse("app_fedcba9876543210").unwrap();
        let probed = check(&sql, "s1", other, "123456", 1);
        assert_eq!((probed.0.verdict, probed.0.phone.as_str(), probed.1), (Verdict::Expired, "", false));
        assert_eq!(check(&sql, "nope", app(), "123456", 1).0.verdict, Verdict::Expired);
        let (first, newly) = check(&sql, "s1", app(), "123456", 2);
        assert_eq!((first.verdict, first.verified_at, newly), (Verdict::Verified, Some(2), true));
        let (again, newly) = check(&sql, "s1", app(), "123456", 3);
        assert_ne!(again.verdict, Verdict::Verified, "a code works once");
        assert!(!newly);
        assert_eq!(
            ended(&sql, 9).unwrap().iter().map(|e| (e.state, e.at)).collect::<Vec<_>>(),
            [(SessionState::Verified, 2)]
        );
        recorded(&sql, "s1").unwrap();
        assert_eq!(ended(&sql, 9).unwrap(), []);
    }

    #[test]
    fn wrong_codes_run_out_of_attempts_and_the_right_one_no_longer_works() {
        let sql = store();
        begin(&sql, "s1", 0);
        let verdicts: Vec<Verdict> = (0..10).map(|i| check(&sql, "s1", app(), "000000", i).0.verdict).collect();
        assert!(verdicts.iter().all(|v| *v != Verdict::Verified));
        assert_ne!(check(&sql, "s1", app(), "123456", 11).0.verdict, Verdict::Verified);
    }

    #[test]
    fn a_newer_code_supersedes_the_older_one_without_an_event() {
        let sql = store();
        begin(&sql, "s1", 0);
        begin(&sql, "s2", 2 * MINUTE);
        accepted(&sql, "s2").unwrap();
        assert_ne!(check(&sql, "s1", app(), "123456", 3 * MINUTE).0.verdict, Verdict::Verified);
        assert_eq!(check(&sql, "s2", app(), "123456", 3 * MINUTE).0.verdict, Verdict::Verified);
        assert_eq!(ended(&sql, 0).unwrap().len(), 1, "only s2 ended with an event");
    }

    #[test]
    fn expiry_ends_sessions_and_the_wake_follows_what_is_left() {
        let sql = store();
        assert_eq!(wake(&sql).unwrap(), None, "nothing held, no alarm");
        begin(&sql, "s1", 0);
        assert_eq!(wake(&sql).unwrap(), Some(Wake::At(5 * MINUTE)));
        expire(&sql, 5 * MINUTE).unwrap();
        assert_eq!(check(&sql, "s1", app(), "123456", 5 * MINUTE).0.verdict, Verdict::Expired);
        assert_eq!(wake(&sql).unwrap(), Some(Wake::Soon), "its event is still to be recorded");
        recorded(&sql, "s1").unwrap();
        assert_eq!(wake(&sql).unwrap(), Some(Wake::At(KEEP_MS)), "the send record is purged later");
        expire(&sql, KEEP_MS + 6 * MINUTE).unwrap();
        assert_eq!(wake(&sql).unwrap(), None);
        assert_eq!(sql.number("SELECT COUNT(*) AS n FROM sessions", vec![]).unwrap(), Some(0));
    }
}
