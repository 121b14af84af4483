//! What the app's object knows for its campaigns: the campaign index (for listing), the
//! opt-out list, each number's warm-up allowance, and the choice of the number that sends a
//! campaign's next message.

use serde::Deserialize;

use super::app::AppObject;
use super::{int, number, rows};
use crate::domain::campaign::{is_opt_out, Sent, WarmUp};
use crate::domain::device::DeviceStatus;
use crate::domain::error::ApiError;
use crate::domain::events::{Event, What};
use crate::domain::ids::{CampaignId, DeviceId};
use crate::domain::paging;
use crate::protocol::app::{Governor, Reservation};
use crate::protocol::audience::{
    AddOptOut, AudienceHandler, CampaignIndex, IndexCampaign, ListCampaigns, ListOptOuts, OptOut, Pick, PickSender,
    RemoveOptOut, ReserveContact, UnindexCampaign, PAGE_SIZE,
};

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
    pub(super) fn note_linked(&self, device_id: &DeviceId, status: DeviceStatus, at: u64) -> Result<(), ApiError> {
        if status == DeviceStatus::Online {
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
            vec![DeviceStatus::Online.as_str().into(), named.as_str().into(), named.as_str().into()],
        )?)?;
        // Only whether one is online (to start, to check numbers): allowances do not matter.
        let chosen = match (candidates.is_empty(), phone) {
            (true, _) => return Ok(Pick::NoDevice),
            (false, None) => 0,
            (false, Some(_)) => {
                let sent: Vec<Sent> = candidates.iter().map(Candidate::sent).collect();
                match self.governor()?.warm_up.first_allowed(&sent, now) {
                    Ok(index) => index,
                    Err(until) => return Ok(Pick::WarmingUp { until }),
                }
            }
        };
        let device_id = DeviceId::parse(&candidates[chosen].device_id)
            .ok_or_else(|| ApiError::internal("stored device id is malformed"))?;
        Ok(Pick::Device { device_id })
    }
}

impl Candidate {
    fn sent(&self) -> Sent {
        Sent { linked_at: self.linked_at, day: self.day, count: self.sent }
    }
}

impl AudienceHandler for AppObject {
    async fn index_campaign(&self, op: IndexCampaign) -> Result<(), ApiError> {
        self.sql().exec(
            "INSERT OR IGNORE INTO campaigns (id, device_id, created_at) VALUES (?, ?, ?)",
            vec![op.campaign_id.as_str().into(), op.device_id.map(|d| d.to_string()).into(), int(op.now)],
        )?;
        Ok(())
    }

    async fn unindex_campaign(&self, op: UnindexCampaign) -> Result<(), ApiError> {
        self.sql().exec("DELETE FROM campaigns WHERE id = ?", vec![op.campaign_id.as_str().into()])?;
        Ok(())
    }

    async fn list_campaigns(&self, ListCampaigns { page, scope }: ListCampaigns) -> Result<CampaignIndex, ApiError> {
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
        let ids = ids
            .iter()
            .map(|i| CampaignId::parse(&i.id).ok_or_else(|| ApiError::internal("stored campaign id is malformed")))
            .collect::<Result<_, _>>()?;
        Ok(CampaignIndex { total, ids })
    }

    async fn list_opt_outs(&self, _: ListOptOuts) -> Result<Vec<OptOut>, ApiError> {
        rows::<OptOut>(self.sql().exec("SELECT * FROM opt_outs ORDER BY created_at DESC, phone", None)?)
    }

    async fn add_opt_out(&self, AddOptOut { phone, now }: AddOptOut) -> Result<String, ApiError> {
        self.sql().exec(
            "INSERT OR IGNORE INTO opt_outs (phone, source, created_at) VALUES (?, 'api', ?)",
            vec![phone.as_str().into(), int(now)],
        )?;
        Ok(phone)
    }

    async fn remove_opt_out(&self, RemoveOptOut { phone }: RemoveOptOut) -> Result<(), ApiError> {
        let listed =
            number(&self.sql(), "SELECT COUNT(*) AS n FROM opt_outs WHERE phone = ?", vec![phone.as_str().into()])?;
        if listed.unwrap_or(0) == 0 {
            return Err(ApiError::not_found("opt-out"));
        }
        self.sql().exec("DELETE FROM opt_outs WHERE phone = ?", vec![phone.into()])?;
        Ok(())
    }

    async fn pick_sender(&self, op: PickSender) -> Result<Pick, ApiError> {
        self.pick_for_campaign(&op.device_ids, op.phone.as_deref(), op.now)
    }

    async fn reserve_contact(&self, op: ReserveContact) -> Result<Reservation, ApiError> {
        let ReserveContact { device_id, reference, period, now } = op;
        let earlier = rows::<Stored>(self.sql().exec(
            "SELECT reservation AS value FROM campaign_reservations WHERE reference = ?",
            vec![reference.as_str().into()],
        )?)?;
        if let Some(earlier) = earlier.first() {
            return serde_json::from_str(&earlier.value).map_err(ApiError::internal);
        }
        let reservation = self.reserve(Some(device_id.clone()), &period, now)?;
        let linked_at = self.linked_at(&device_id, now)?;
        let day = WarmUp::day(linked_at, now) as i64;
        self.sql().exec(
            "UPDATE warm_up SET sent = CASE WHEN day = ? THEN sent + 1 ELSE 1 END, day = ? WHERE device_id = ?",
            vec![day.into(), day.into(), device_id.as_str().into()],
        )?;
        let stored = serde_json::to_string(&reservation).map_err(ApiError::internal)?;
        self.sql().exec(
            "INSERT INTO campaign_reservations (reference, reservation) VALUES (?, ?)",
            vec![reference.into(), stored.into()],
        )?;
        Ok(reservation)
    }
}
