//! The app's monthly quota: the counter in the app row, started over each period (audited), and
//! the reservations of units not yet refunded, so each message is given back at most once.

use super::access::{self, Actor, Change};
use super::tenant::{self, App};
use super::{devices, idempotency, Sql};
use crate::domain::error::ApiError;
use crate::domain::ids::{DeviceId, MessageId};
use crate::protocol::app::{Reservation, ReserveSend};

pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS reservations (message_id TEXT PRIMARY KEY)";

/// The app row with its quota counter moved to `period` (a new month starts at zero).
pub fn in_period(sql: &impl Sql, period: &str, now: u64) -> Result<App, ApiError> {
    let mut app = tenant::app(sql)?;
    if app.quota_period != period {
        sql.run("UPDATE app SET quota_period = ?, quota_used = 0", vec![period.into()])?;
        sql.run("DELETE FROM reservations", vec![])?;
        if !app.quota_period.is_empty() {
            let change = Change::QuotaReset { from: app.quota_period, to: period.to_owned(), used: app.quota_used };
            access::audit(sql, &Actor::System, &change, now)?;
        }
        app.quota_period = period.to_owned();
        app.quota_used = 0;
    }
    Ok(app)
}

/// Picks the sending device and reserves one unit for a new message.
pub fn reserve(sql: &impl Sql, device_id: Option<DeviceId>, period: &str, now: u64) -> Result<Reservation, ApiError> {
    let app = in_period(sql, period, now)?;
    let device_id = devices::pick(sql, device_id)?;
    if app.quota_used >= app.monthly_messages {
        return Err(ApiError::QuotaExceeded);
    }
    let message_id = MessageId::generate(&device_id);
    sql.run("UPDATE app SET quota_used = quota_used + 1", vec![])?;
    sql.run("INSERT INTO reservations (message_id) VALUES (?)", vec![message_id.as_str().into()])?;
    devices::used(sql, &device_id, now)?;
    Ok(Reservation { device_id, message_id, quota_remaining: app.monthly_messages - app.quota_used - 1 })
}

/// A send's reservation: the one its `Idempotency-Key` is bound to, else a new one, bound to it.
pub fn reservation_for(sql: &impl Sql, op: ReserveSend) -> Result<Reservation, ApiError> {
    let ReserveSend { device_id, period, now, idempotency_key } = op;
    let Some(key) = idempotency_key else { return reserve(sql, device_id, &period, now) };
    if let Some(message_id) = idempotency::bound(sql, &key)? {
        let quota_remaining = in_period(sql, &period, now)?.quota_remaining();
        return Ok(Reservation { device_id: message_id.device(), message_id, quota_remaining });
    }
    let reservation = reserve(sql, device_id, &period, now)?;
    idempotency::bind(sql, &key, &reservation.message_id)?;
    Ok(reservation)
}

/// Gives back the unit of a message that will never go out; once per message.
pub fn refund(sql: &impl Sql, message_id: &MessageId) -> Result<(), ApiError> {
    let binds = || vec![message_id.as_str().into()];
    if sql.any("SELECT COUNT(*) AS n FROM reservations WHERE message_id = ?", binds())? {
        sql.run("DELETE FROM reservations WHERE message_id = ?", binds())?;
        sql.run("UPDATE app SET quota_used = MAX(quota_used - 1, 0)", vec![])?;
    }
    // A retry under the key then sends afresh.
    idempotency::release(sql, message_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::device::DeviceStatus;
    use crate::domain::idempotency::Decision;
    use crate::protocol::app::IdempotencyBegin;
    use crate::store::memory::Memory;
    use crate::store::tenant::testing::{created, plan};

    fn online(sql: &Memory, n: u8) -> DeviceId {
        let id = DeviceId::parse(&format!("dev_{:016x}", n)).unwrap();
        devices::add(sql, &id, None, 10, 1).unwrap();
        devices::changed(sql, &id, DeviceStatus::Online, None, 1).unwrap();
        id
    }

    fn used(sql: &Memory) -> i64 {
        sql.number("SELECT quota_used AS n FROM app", vec![]).unwrap().unwrap()
    }

    #[test]
    fn the_quota_runs_out_and_a_new_month_starts_it_over_audited_once() {
        let sql = created(plan(2), 1);
        online(&sql, 1);
        assert_eq!(reserve(&sql, None, "2026-11", 2).unwrap().quota_remaining, 1);
        assert_eq!(reserve(&sql, None, "2026-11", 3).unwrap().quota_remaining, 0);
        assert_eq!(reserve(&sql, None, "2026-11", 4).map(drop), Err(ApiError::QuotaExceeded));
        assert_eq!(used(&sql), 2, "a refused send charges nothing");
        assert_eq!(reserve(&sql, None, "2026-12", 5).unwrap().quota_remaining, 1);
        in_period(&sql, "2026-12", 6).unwrap();
        let resets: Vec<_> =
            access::audit_trail(&sql).unwrap().into_iter().filter(|e| e.action == "quota.reset").collect();
        assert_eq!(resets.len(), 1);
        assert_eq!((resets[0].actor.as_str(), resets[0].at), ("system", 5));
        assert_eq!(resets[0].detail, r#"{"from":"2026-11","to":"2026-12","used":2}"#);
    }

    #[test]
    fn reservations_spread_over_online_devices_and_refuse_an_offline_one() {
        let sql = created(plan(10), 1);
        let (a, b) = (online(&sql, 1), online(&sql, 2));
        let offline = DeviceId::parse("dev_00000000000000ff").unwrap();
        devices::add(&sql, &offline, None, 10, 1).unwrap();
        let picked: Vec<_> = (2..6).map(|now| reserve(&sql, None, "2026-12", now).unwrap().device_id).collect();
        assert_eq!(picked, [a.clone(), b.clone(), a.clone(), b]);
        let refused = reserve(&sql, Some(offline), "2026-12", 7).map(drop);
        assert_eq!(refused, Err(ApiError::DeviceNotConnected));
        assert_eq!(reserve(&sql, Some(a.clone()), "2026-12", 8).unwrap().message_id.device(), a);
        assert_eq!(used(&sql), 5);
    }

    #[test]
    fn a_refund_gives_back_exactly_once() {
        let sql = created(plan(10), 1);
        online(&sql, 1);
        let first = reserve(&sql, None, "2026-12", 2).unwrap();
        let second = reserve(&sql, None, "2026-12", 3).unwrap();
        refund(&sql, &first.message_id).unwrap();
        refund(&sql, &first.message_id).unwrap();
        assert_eq!(used(&sql), 1, "a repeated refund gives nothing more");
        let unknown = MessageId::generate(&first.device_id);
        refund(&sql, &unknown).unwrap();
        assert_eq!(used(&sql), 1);
        refund(&sql, &second.message_id).unwrap();
        refund(&sql, &second.message_id).unwrap();
        assert_eq!(used(&sql), 0, "never below zero");
    }

    #[test]
    fn a_key_gets_the_same_message_id_back_charged_once() {
        let sql = created(plan(10), 1);
        online(&sql, 1);
        let op = IdempotencyBegin { key: "k".into(), fingerprint: "f".into(), now: 2, lease_ms: 1 };
        assert_eq!(idempotency::begin(&sql, op), Ok(Decision::Proceed));
        let send =
            || ReserveSend { device_id: None, period: "2026-12".into(), now: 3, idempotency_key: Some("k".into()) };
        let first = reservation_for(&sql, send()).unwrap();
        let again = reservation_for(&sql, send()).unwrap();
        assert_eq!((&again.message_id, again.quota_remaining), (&first.message_id, 9));
        assert_eq!(used(&sql), 1);
        refund(&sql, &first.message_id).unwrap();
        let afresh = reservation_for(&sql, send()).unwrap();
        assert_ne!(afresh.message_id, first.message_id, "a refunded id never goes out");
        assert_eq!(used(&sql), 1);
    }
}
