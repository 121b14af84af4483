//! What the app's object knows for its campaigns: the campaign index (for listing), the
//! opt-out list, each number's warm-up allowance, and the choice of the number that sends a
//! campaign's next message.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::app::AppObject;
use super::{int, number, rows};
use crate::domain::campaign::{is_opt_out, WarmUp};
use crate::domain::error::ApiError;
use crate::domain::events::{Event, What};
use crate::domain::ids::{CampaignId, DeviceId};
use crate::domain::paging;
use crate::protocol::app::{Governor, Reservation, ONLINE};
use crate::runtime::iso;

pub const PAGE_SIZE: i64 = 20;

pub const SCHEMA: [&str; 5] = [
    "CREATE TABLE IF NOT EXISTS campaigns (id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, device_id TEXT)",
    "CREATE TABLE IF NOT EXISTS opt_outs (phone TEXT PRIMARY KEY, source TEXT NOT NULL, created_at INTEGER NOT NULL)",
    // Campaign messages per number and day since it was linked, for the warm-up caps.
    "CREATE TABLE IF NOT EXISTS warm_up (
        device_id TEXT PRIMARY KEY, linked_at INTEGER NOT NULL, day INTEGER NOT NULL DEFAULT -1,
        sent INTEGER NOT NULL DEFAULT 0)",
    // A campaign contact's reservation, so a retried dispatch gets the same message id.
    "CREATE TABLE IF NOT EXISTS campaign_reservations (reference TEXT PRIMARY KEY, reservation TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
];

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum AudienceCall {
    /// `device_id`: the campaign's one number, if it has only one (what a scoped key may list).
    Index {
        campaign_id: CampaignId,
        device_id: Option<DeviceId>,
        now: u64,
    },
    Unindex {
        campaign_id: CampaignId,
    },
    /// Campaign ids, newest first; with `scope`, only those sent from that one device.
    Page {
        page: i64,
        scope: Option<DeviceId>,
    },
    OptOuts,
    AddOptOut {
        phone: String,
        now: u64,
    },
    RemoveOptOut {
        phone: String,
    },
    /// The number to send a campaign's next message to `phone` (none: only whether one is online).
    Pick {
        device_ids: Vec<DeviceId>,
        phone: Option<String>,
        now: u64,
    },
    /// Reserves quota for a campaign contact (idempotent by `reference`) and counts it against
    /// the number's warm-up allowance.
    Reserve {
        device_id: DeviceId,
        reference: String,
        period: String,
        now: u64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "pick", rename_all = "snake_case")]
pub enum Pick {
    Device {
        device_id: DeviceId,
    },
    OptedOut,
    NoDevice,
    /// Every online number has used today's warm-up allowance; more from `until`.
    WarmingUp {
        until: u64,
    },
}

#[derive(Deserialize)]
struct Candidate {
    device_id: String,
    linked_at: Option<u64>,
    day: Option<i64>,
    sent: Option<i64>,
}

#[derive(Deserialize)]
struct Stored {
    value: String,
}

impl AppObject {
    pub(super) fn governor(&self) -> Result<Governor, ApiError> {
        let stored = rows::<Stored>(self.sql().exec("SELECT value FROM settings WHERE name = 'governor'", None)?)?;
        Ok(stored.first().and_then(|s| serde_json::from_str(&s.value).ok()).unwrap_or_default())
    }

    pub(super) fn set_governor(&self, governor: &Governor) -> Result<(), ApiError> {
        let value = serde_json::to_string(governor).map_err(ApiError::internal)?;
        self.sql().exec(
            "INSERT INTO settings (name, value) VALUES ('governor', ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            vec![value.into()],
        )?;
        Ok(())
    }

    /// A number's warm-up starts the first time it comes online.
    pub(super) fn note_linked(&self, device_id: &DeviceId, status: &str, at: u64) -> Result<(), ApiError> {
        if status == ONLINE {
            self.sql().exec(
                "INSERT OR IGNORE INTO warm_up (device_id, linked_at) VALUES (?, ?)",
                vec![device_id.as_str().into(), int(at)],
            )?;
        }
        Ok(())
    }

    /// An inbound message that says only an opt-out keyword puts its sender on the list.
    pub(super) fn note_opt_out(&self, event: &Event) -> Result<(), ApiError> {
        let What::MessageIncoming(message) = &event.what else { return Ok(()) };
        let (Some(text), from) = (&message.body, &message.from) else { return Ok(()) };
        if is_opt_out(text, &self.governor()?.opt_out_keywords) {
            self.sql().exec(
                "INSERT OR IGNORE INTO opt_outs (phone, source, created_at) VALUES (?, 'keyword', ?)",
                vec![from.as_str().into(), int(event.at_ms)],
            )?;
        }
        Ok(())
    }

    pub(super) fn audience(&self, call: AudienceCall) -> Result<Value, ApiError> {
        match call {
            AudienceCall::Index { campaign_id, device_id, now } => {
                self.sql().exec(
                    "INSERT OR IGNORE INTO campaigns (id, device_id, created_at) VALUES (?, ?, ?)",
                    vec![campaign_id.as_str().into(), device_id.map(|d| d.to_string()).into(), int(now)],
                )?;
                Ok(Value::Null)
            }
            AudienceCall::Unindex { campaign_id } => {
                self.sql().exec("DELETE FROM campaigns WHERE id = ?", vec![campaign_id.as_str().into()])?;
                Ok(Value::Null)
            }
            AudienceCall::Page { page, scope } => {
                #[derive(Deserialize)]
                struct Id {
                    id: String,
                }
                let scope = scope.map(|d| d.to_string());
                let total = number(
                    &self.sql(),
                    "SELECT COUNT(*) AS n FROM campaigns WHERE ? IS NULL OR device_id = ?",
                    vec![scope.clone().into(), scope.clone().into()],
                )?
                .unwrap_or(0);
                let ids = rows::<Id>(self.sql().exec(
                    "SELECT id FROM campaigns WHERE ? IS NULL OR device_id = ?
                     ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
                    vec![scope.clone().into(), scope.into(), PAGE_SIZE.into(), paging::offset(page, PAGE_SIZE).into()],
                )?)?;
                Ok(json!({"total": total, "ids": ids.into_iter().map(|i| i.id).collect::<Vec<_>>()}))
            }
            AudienceCall::OptOuts => {
                #[derive(Deserialize)]
                struct Row {
                    phone: String,
                    source: String,
                    created_at: u64,
                }
                let all =
                    rows::<Row>(self.sql().exec("SELECT * FROM opt_outs ORDER BY created_at DESC, phone", None)?)?;
                let list: Vec<Value> = all
                    .iter()
                    .map(|r| json!({"phone": r.phone, "source": r.source, "created_at": iso(r.created_at)}))
                    .collect();
                Ok(json!({"opt_outs": list, "count": list.len()}))
            }
            AudienceCall::AddOptOut { phone, now } => {
                self.sql().exec(
                    "INSERT OR IGNORE INTO opt_outs (phone, source, created_at) VALUES (?, 'api', ?)",
                    vec![phone.as_str().into(), int(now)],
                )?;
                Ok(json!({"phone": phone}))
            }
            AudienceCall::RemoveOptOut { phone } => {
                let listed = number(
                    &self.sql(),
                    "SELECT COUNT(*) AS n FROM opt_outs WHERE phone = ?",
                    vec![phone.as_str().into()],
                )?;
                if listed.unwrap_or(0) == 0 {
                    return Err(ApiError::not_found("opt-out"));
                }
                self.sql().exec("DELETE FROM opt_outs WHERE phone = ?", vec![phone.into()])?;
                Ok(json!({"success": true}))
            }
            AudienceCall::Pick { device_ids, phone, now } => {
                serde_json::to_value(self.pick_for_campaign(&device_ids, phone.as_deref(), now)?)
                    .map_err(ApiError::internal)
            }
            AudienceCall::Reserve { device_id, reference, period, now } => {
                let earlier = rows::<Stored>(self.sql().exec(
                    "SELECT reservation AS value FROM campaign_reservations WHERE reference = ?",
                    vec![reference.as_str().into()],
                )?)?;
                if let Some(earlier) = earlier.first() {
                    return serde_json::from_str(&earlier.value).map_err(ApiError::internal);
                }
                let reservation: Reservation = self.reserve(Some(device_id.clone()), &period, now)?;
                let linked_at = self.linked_at(&device_id, now)?;
                let day = WarmUp::day(linked_at, now) as i64;
                self.sql().exec(
                    "UPDATE warm_up SET sent = CASE WHEN day = ? THEN sent + 1 ELSE 1 END, day = ? WHERE device_id = ?",
                    vec![day.into(), day.into(), device_id.as_str().into()],
                )?;
                let value = serde_json::to_value(&reservation).map_err(ApiError::internal)?;
                self.sql().exec(
                    "INSERT INTO campaign_reservations (reference, reservation) VALUES (?, ?)",
                    vec![reference.into(), value.to_string().into()],
                )?;
                Ok(value)
            }
        }
    }

    fn linked_at(&self, device_id: &DeviceId, now: u64) -> Result<u64, ApiError> {
        self.sql().exec(
            "INSERT OR IGNORE INTO warm_up (device_id, linked_at) VALUES (?, ?)",
            vec![device_id.as_str().into(), int(now)],
        )?;
        let linked = number(
            &self.sql(),
            "SELECT linked_at AS n FROM warm_up WHERE device_id = ?",
            vec![device_id.as_str().into()],
        )?;
        Ok(linked.map_or(now, |l| l as u64))
    }

    /// Online numbers of the campaign (all the app's when it names none), least recently used
    /// first, so a campaign spread over several numbers goes round-robin.
    fn pick_for_campaign(&self, device_ids: &[DeviceId], phone: Option<&str>, now: u64) -> Result<Pick, ApiError> {
        if let Some(phone) = phone {
            let opted_out =
                number(&self.sql(), "SELECT COUNT(*) AS n FROM opt_outs WHERE phone = ?", vec![phone.into()])?;
            if opted_out.unwrap_or(0) > 0 {
                return Ok(Pick::OptedOut);
            }
        }
        let named = serde_json::to_string(device_ids).map_err(ApiError::internal)?;
        let candidates = rows::<Candidate>(self.sql().exec(
            "SELECT d.device_id, w.linked_at, w.day, w.sent FROM devices d LEFT JOIN warm_up w ON w.device_id = d.device_id
             WHERE d.status = ? AND (? = '[]' OR d.device_id IN (SELECT value FROM json_each(?)))
             ORDER BY d.last_used_at, d.device_id",
            vec![ONLINE.into(), named.as_str().into(), named.as_str().into()],
        )?)?;
        if candidates.is_empty() {
            return Ok(Pick::NoDevice);
        }
        let warm_up = self.governor()?.warm_up;
        let mut next_allowance = u64::MAX;
        for candidate in candidates {
            let device_id = DeviceId::parse(&candidate.device_id)
                .ok_or_else(|| ApiError::internal("stored device id is malformed"))?;
            if phone.is_none() {
                // Only whether one is online (to start, to check numbers): allowances do not matter.
                return Ok(Pick::Device { device_id });
            }
            let linked_at = candidate.linked_at.unwrap_or(now);
            let day = WarmUp::day(linked_at, now) as i64;
            let sent_today = if candidate.day == Some(day) { candidate.sent.unwrap_or(0) as u64 } else { 0 };
            match warm_up.daily_cap(linked_at, now) {
                Some(cap) if sent_today >= cap => {
                    next_allowance = next_allowance.min(WarmUp::next_day_start_ms(linked_at, now));
                }
                _ => return Ok(Pick::Device { device_id }),
            }
        }
        Ok(Pick::WarmingUp { until: next_allowance })
    }
}
