//! What the app's object knows for its campaigns: the campaign index (for listing), the
//! opt-out list, each number's warm-up allowance, the operator's governor settings, and the
//! choice of the number that sends a campaign's next message. The facet is served by any [`Sql`]
//! that can also reserve quota ([`Quota`]), so the app's object answers it by being its storage.

use serde::Deserialize;

use super::Sql;
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

/// Quota for one message from one of the app's numbers, as a campaign contact and an auto-reply
/// take it. The app's object reserves it: its quota period turns over by the runtime's clock.
pub trait Quota {
    fn reserve(&self, device_id: &DeviceId, period: &str, now: u64) -> Result<Reservation, ApiError>;
}

#[derive(Deserialize)]
struct Candidate {
    device_id: String,
    linked_at: Option<u64>,
    day: Option<i64>,
    sent: Option<i64>,
}

impl Candidate {
    fn sent(&self) -> Sent {
        Sent { linked_at: self.linked_at, day: self.day, count: self.sent }
    }
}

#[derive(Deserialize)]
struct Stored {
    value: String,
}

/// The operator's settings; the defaults until they are first saved (or if what is saved no
/// longer reads).
pub fn governor(sql: &impl Sql) -> Result<Governor, ApiError> {
    let stored = sql.row::<Stored>("SELECT value FROM settings WHERE name = 'governor'", vec![])?;
    Ok(stored.and_then(|s| serde_json::from_str(&s.value).ok()).unwrap_or_default())
}

pub fn set_governor(sql: &impl Sql, governor: &Governor) -> Result<(), ApiError> {
    let value = serde_json::to_string(governor).map_err(ApiError::internal)?;
    sql.run(
        "INSERT INTO settings (name, value) VALUES ('governor', ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        vec![value.into()],
    )?;
    Ok(())
}

/// A number's warm-up starts the first time it comes online.
pub fn note_linked(sql: &impl Sql, device_id: &DeviceId, status: DeviceStatus, at: u64) -> Result<(), ApiError> {
    if status == DeviceStatus::Online {
        sql.run(
            "INSERT OR IGNORE INTO warm_up (device_id, linked_at) VALUES (?, ?)",
            vec![device_id.as_str().into(), at.into()],
        )?;
    }
    Ok(())
}

/// An inbound message that says only an opt-out keyword puts its sender on the list.
pub fn note_opt_out(sql: &impl Sql, event: &Event) -> Result<(), ApiError> {
    let What::MessageIncoming(message) = &event.what else { return Ok(()) };
    let (Some(text), from) = (&message.body, &message.from) else { return Ok(()) };
    if is_opt_out(text, &governor(sql)?.opt_out_keywords) {
        sql.run(
            "INSERT OR IGNORE INTO opt_outs (phone, source, created_at) VALUES (?, 'keyword', ?)",
            vec![from.as_str().into(), event.at_ms.into()],
        )?;
    }
    Ok(())
}

fn opted_out(sql: &impl Sql, phone: &str) -> Result<bool, ApiError> {
    Ok(sql.any("SELECT COUNT(*) AS n FROM opt_outs WHERE phone = ?", vec![phone.into()])?)
}

/// When the number was linked; one never seen online (linked before warm-ups were kept) starts now.
fn linked_at(sql: &impl Sql, device_id: &DeviceId, now: u64) -> Result<u64, ApiError> {
    sql.run(
        "INSERT OR IGNORE INTO warm_up (device_id, linked_at) VALUES (?, ?)",
        vec![device_id.as_str().into(), now.into()],
    )?;
    let linked =
        sql.number("SELECT linked_at AS n FROM warm_up WHERE device_id = ?", vec![device_id.as_str().into()])?;
    Ok(linked.map_or(now, |l| l as u64))
}

/// Online numbers of the campaign (all the app's when it names none), least recently used
/// first, so a campaign spread over several numbers goes round-robin.
fn pick(sql: &impl Sql, device_ids: &[DeviceId], phone: Option<&str>, now: u64) -> Result<Pick, ApiError> {
    if let Some(phone) = phone {
        if opted_out(sql, phone)? {
            return Ok(Pick::OptedOut);
        }
    }
    let named = serde_json::to_string(device_ids).map_err(ApiError::internal)?;
    let candidates = sql.rows::<Candidate>(
        "SELECT d.device_id, w.linked_at, w.day, w.sent FROM devices d LEFT JOIN warm_up w ON w.device_id = d.device_id
         WHERE d.status = ? AND (? = '[]' OR d.device_id IN (SELECT value FROM json_each(?)))
         ORDER BY d.last_used_at, d.device_id",
        vec![DeviceStatus::Online.as_str().into(), named.as_str().into(), named.as_str().into()],
    )?;
    // Only whether one is online (to start, to check numbers): allowances do not matter.
    let chosen = match (candidates.is_empty(), phone) {
        (true, _) => return Ok(Pick::NoDevice),
        (false, None) => 0,
        (false, Some(_)) => {
            let sent: Vec<Sent> = candidates.iter().map(Candidate::sent).collect();
            match governor(sql)?.warm_up.first_allowed(&sent, now) {
                Ok(index) => index,
                Err(until) => return Ok(Pick::WarmingUp { until }),
            }
        }
    };
    let device_id = DeviceId::parse(&candidates[chosen].device_id)
        .ok_or_else(|| ApiError::internal("stored device id is malformed"))?;
    Ok(Pick::Device { device_id })
}

impl<S: Sql + Quota> AudienceHandler for S {
    async fn index_campaign(&self, op: IndexCampaign) -> Result<(), ApiError> {
        self.run(
            "INSERT OR IGNORE INTO campaigns (id, device_id, created_at) VALUES (?, ?, ?)",
            vec![op.campaign_id.as_str().into(), op.device_id.map(|d| d.to_string()).into(), op.now.into()],
        )?;
        Ok(())
    }

    async fn unindex_campaign(&self, op: UnindexCampaign) -> Result<(), ApiError> {
        self.run("DELETE FROM campaigns WHERE id = ?", vec![op.campaign_id.as_str().into()])?;
        Ok(())
    }

    async fn list_campaigns(&self, ListCampaigns { page, scope }: ListCampaigns) -> Result<CampaignIndex, ApiError> {
        #[derive(Deserialize)]
        struct Id {
            id: String,
        }
        let scope = scope.map(|d| d.to_string());
        let total = self
            .number(
                "SELECT COUNT(*) AS n FROM campaigns WHERE ? IS NULL OR device_id = ?",
                vec![scope.clone().into(), scope.clone().into()],
            )?
            .unwrap_or(0);
        let ids = self.rows::<Id>(
            "SELECT id FROM campaigns WHERE ? IS NULL OR device_id = ?
             ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
            vec![scope.clone().into(), scope.into(), PAGE_SIZE.into(), paging::offset(page, PAGE_SIZE).into()],
        )?;
        let ids = ids
            .iter()
            .map(|i| CampaignId::parse(&i.id).ok_or_else(|| ApiError::internal("stored campaign id is malformed")))
            .collect::<Result<_, _>>()?;
        Ok(CampaignIndex { total, ids })
    }

    async fn list_opt_outs(&self, _: ListOptOuts) -> Result<Vec<OptOut>, ApiError> {
        Ok(self.rows::<OptOut>("SELECT * FROM opt_outs ORDER BY created_at DESC, phone", vec![])?)
    }

    async fn add_opt_out(&self, AddOptOut { phone, now }: AddOptOut) -> Result<String, ApiError> {
        self.run(
            "INSERT OR IGNORE INTO opt_outs (phone, source, created_at) VALUES (?, 'api', ?)",
            vec![phone.as_str().into(), now.into()],
        )?;
        Ok(phone)
    }

    async fn remove_opt_out(&self, RemoveOptOut { phone }: RemoveOptOut) -> Result<(), ApiError> {
        if !opted_out(self, &phone)? {
            return Err(ApiError::not_found("opt-out"));
        }
        self.run("DELETE FROM opt_outs WHERE phone = ?", vec![phone.into()])?;
        Ok(())
    }

    async fn pick_sender(&self, op: PickSender) -> Result<Pick, ApiError> {
        pick(self, &op.device_ids, op.phone.as_deref(), op.now)
    }

    async fn reserve_contact(&self, op: ReserveContact) -> Result<Reservation, ApiError> {
        let ReserveContact { device_id, reference, period, now } = op;
        let earlier = self.row::<Stored>(
            "SELECT reservation AS value FROM campaign_reservations WHERE reference = ?",
            vec![reference.as_str().into()],
        )?;
        if let Some(earlier) = earlier {
            return serde_json::from_str(&earlier.value).map_err(ApiError::internal);
        }
        let reservation = self.reserve(&device_id, &period, now)?;
        let linked_at = linked_at(self, &device_id, now)?;
        let day = WarmUp::day(linked_at, now) as i64;
        self.run(
            "UPDATE warm_up SET sent = CASE WHEN day = ? THEN sent + 1 ELSE 1 END, day = ? WHERE device_id = ?",
            vec![day.into(), day.into(), device_id.as_str().into()],
        )?;
        let stored = serde_json::to_string(&reservation).map_err(ApiError::internal)?;
        self.run(
            "INSERT INTO campaign_reservations (reference, reservation) VALUES (?, ?)",
            vec![reference.into(), stored.into()],
        )?;
        Ok(reservation)
    }
}

/// The app's object as the audience and auto-reply facets see it in tests: its storage (these
/// facets' tables and its device registry) and a quota reserved as the object reserves it.
#[cfg(test)]
pub(super) mod fixture {
    use std::cell::Cell;

    use serde::de::DeserializeOwned;

    use super::Quota;
    use crate::domain::device::DeviceStatus;
    use crate::domain::error::ApiError;
    use crate::domain::ids::{DeviceId, MessageId};
    use crate::protocol::app::Reservation;
    use crate::store::memory::Memory;
    use crate::store::{tenant, Bind, Sql, SqlError};

    pub struct App {
        sql: Memory,
        /// Messages the month still allows.
        pub quota: Cell<i64>,
    }

    impl App {
        pub fn new(quota: i64) -> Self {
            App { sql: tenant::testing::storage(), quota: Cell::new(quota) }
        }

        pub fn device(&self, n: u8, status: DeviceStatus) -> DeviceId {
            let device_id = DeviceId::parse(&format!("dev_{n:016x}")).unwrap();
            self.sql
                .run(
                    "INSERT INTO devices (device_id, status, created_at) VALUES (?, ?, 0)
                     ON CONFLICT (device_id) DO UPDATE SET status = excluded.status",
                    vec![device_id.as_str().into(), status.as_str().into()],
                )
                .unwrap();
            device_id
        }
    }

    impl Sql for App {
        fn run(&self, query: &str, binds: Vec<Bind>) -> Result<(), SqlError> {
            self.sql.run(query, binds)
        }

        fn rows<T: DeserializeOwned>(&self, query: &str, binds: Vec<Bind>) -> Result<Vec<T>, SqlError> {
            self.sql.rows(query, binds)
        }
    }

    /// As `AppObject::reserve`: an online number, quota left, and the number counts as just used.
    impl Quota for App {
        fn reserve(&self, device_id: &DeviceId, _period: &str, now: u64) -> Result<Reservation, ApiError> {
            let online = "SELECT COUNT(*) AS n FROM devices WHERE device_id = ? AND status = ?";
            if !self.any(online, vec![device_id.as_str().into(), DeviceStatus::Online.as_str().into()])? {
                return Err(ApiError::DeviceNotConnected);
            }
            if self.quota.get() <= 0 {
                return Err(ApiError::QuotaExceeded);
            }
            self.quota.set(self.quota.get() - 1);
            self.run(
                "UPDATE devices SET last_used_at = ? WHERE device_id = ?",
                vec![now.into(), device_id.as_str().into()],
            )?;
            let message_id = MessageId::generate(device_id);
            Ok(Reservation { device_id: device_id.clone(), message_id, quota_remaining: self.quota.get() })
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::fixture::App;
    use super::*;
    use crate::domain::events::OtpEnded;
    use crate::store::memory::now;

    const T0: u64 = 1_800_000_000_000;
    const DAY_MS: u64 = 24 * 60 * 60 * 1000;

    fn incoming(from: &str, body: Option<&str>, at_ms: u64) -> Event {
        let data = json!({
            "message_id": "msg_0123456789abcdef0123456789abcdef", "external_id": "3EB0",
            "device_id": "dev_0123456789abcdef", "from": from, "name": null, "group": false,
            "type": "text", "body": body, "content": {"type": "text", "text": body.unwrap_or_default()},
        });
        Event {
            id: "evt_1".into(),
            device_id: None,
            at_ms,
            what: What::MessageIncoming(serde_json::from_value(data).unwrap()),
        }
    }

    fn opt_outs(app: &App) -> Vec<(String, String, u64)> {
        let listed = now(app.list_opt_outs(ListOptOuts {})).unwrap();
        listed.into_iter().map(|o| (o.phone, o.source, o.created_at)).collect()
    }

    fn pick_for(app: &App, device_ids: &[DeviceId], phone: Option<&str>, at: u64) -> Pick {
        let op = PickSender { device_ids: device_ids.to_vec(), phone: phone.map(str::to_owned), now: at };
        now(app.pick_sender(op)).unwrap()
    }

    fn contact(app: &App, device_id: &DeviceId, reference: &str, at: u64) -> Result<Reservation, ApiError> {
        let op =
            ReserveContact { device_id: device_id.clone(), reference: reference.into(), period: "p".into(), now: at };
        now(app.reserve_contact(op))
    }

    fn campaign(n: u32) -> CampaignId {
        CampaignId::parse(&format!("camp_{n:016x}")).unwrap()
    }

    fn warm_up(first_day_cap: u64) -> Governor {
        Governor { warm_up: WarmUp { first_day_cap, growth_percent: 50, uncapped_after: 10 }, ..Governor::default() }
    }

    #[test]
    fn a_message_saying_only_a_keyword_opts_its_sender_out_once() {
        let app = App::new(0);
        note_opt_out(&app, &incoming("628111", Some("stop please"), T0)).unwrap();
        note_opt_out(&app, &incoming("628111", None, T0)).unwrap();
        assert_eq!(opt_outs(&app), [], "a sentence, or no text, is not an opt-out");
        note_opt_out(&app, &incoming("628111", Some(" Stop! "), T0 + 1)).unwrap();
        note_opt_out(&app, &incoming("628111", Some("UNSUBSCRIBE"), T0 + 2)).unwrap();
        assert_eq!(opt_outs(&app), [("628111".into(), "keyword".into(), T0 + 1)], "the first time is kept");
        assert_eq!(pick_for(&app, &[], Some("628111"), T0 + 3), Pick::OptedOut);

        // The operator's own keywords replace the defaults.
        let governor = Governor { opt_out_keywords: vec!["Keluar".into()], ..Governor::default() };
        set_governor(&app, &governor).unwrap();
        note_opt_out(&app, &incoming("628222", Some("stop"), T0 + 4)).unwrap();
        note_opt_out(&app, &incoming("628333", Some("keluar."), T0 + 5)).unwrap();
        let phones: Vec<_> = opt_outs(&app).into_iter().map(|o| o.0).collect();
        assert_eq!(phones, ["628333", "628111"], "newest first");

        // Other events are not read.
        let mut other = incoming("628444", Some("keluar"), T0);
        other.what =
            What::OtpExpired(OtpEnded { session_id: "s".into(), phone_number: "628444".into(), verified_at: None });
        note_opt_out(&app, &other).unwrap();
        assert_eq!(opt_outs(&app).len(), 2);
    }

    #[test]
    fn opt_outs_by_api_are_idempotent_and_hostile_numbers_stay_text() {
        let app = App::new(0);
        let add = |phone: &str, at| now(app.add_opt_out(AddOptOut { phone: phone.into(), now: at })).unwrap();
        assert_eq!(add("628111", 5), "628111");
        add("628111", 9);
        note_opt_out(&app, &incoming("628111", Some("STOP"), 10)).unwrap();
        assert_eq!(opt_outs(&app), [("628111".into(), "api".into(), 5)], "neither a repeat nor a keyword rewrites it");
        let hostile = "'); DELETE FROM opt_outs; --";
        add(hostile, 11);
        assert_eq!(opt_outs(&app).len(), 2);
        let remove = |phone: &str| now(app.remove_opt_out(RemoveOptOut { phone: phone.into() }));
        assert_eq!(remove("628999"), Err(ApiError::not_found("opt-out")));
        assert_eq!(remove("62811%"), Err(ApiError::not_found("opt-out")), "no pattern matching");
        assert_eq!(remove(hostile), Ok(()));
        assert_eq!(remove("628111"), Ok(()));
        assert_eq!(remove("628111"), Err(ApiError::not_found("opt-out")));
        assert_eq!(opt_outs(&app), []);
    }

    #[test]
    fn the_governor_is_stored_as_before_and_unreadable_settings_read_as_the_defaults() {
        let app = App::new(0);
        assert_eq!(governor(&app).unwrap().opt_out_keywords, Governor::default().opt_out_keywords);
        set_governor(&app, &warm_up(3)).unwrap();
        let stored = app.row::<Stored>("SELECT value FROM settings WHERE name = 'governor'", vec![]).unwrap().unwrap();
        assert_eq!(
            stored.value,
            r#"{"warm_up":{"first_day_cap":3,"growth_percent":50,"uncapped_after":10},"opt_out_keywords":["STOP","STOP ALL","UNSUBSCRIBE","BERHENTI","STOP PROMO"],"auto_reply":{"cooldown_secs":60,"hourly_cap":5}}"#
        );
        assert_eq!(governor(&app).unwrap().warm_up.first_day_cap, 3);
        // Settings saved before the auto-reply limits existed read with their defaults.
        app.run(
            r#"UPDATE settings SET value = '{"warm_up":{"first_day_cap":7,"growth_percent":0,"uncapped_after":9},"opt_out_keywords":[]}' WHERE name = 'governor'"#,
            vec![],
        )
        .unwrap();
        let old = governor(&app).unwrap();
        assert_eq!((old.warm_up.first_day_cap, old.auto_reply.hourly_cap), (7, 5));
        app.run("UPDATE settings SET value = 'not json' WHERE name = 'governor'", vec![]).unwrap();
        assert_eq!(governor(&app).unwrap().warm_up.first_day_cap, WarmUp::default().first_day_cap);
    }

    #[test]
    fn each_number_sends_its_days_cap_and_more_the_next_day() {
        let app = App::new(1_000);
        set_governor(&app, &warm_up(2)).unwrap();
        let device = app.device(1, DeviceStatus::Online);
        note_linked(&app, &device, DeviceStatus::Registering, T0 - DAY_MS).unwrap();
        note_linked(&app, &device, DeviceStatus::Online, T0).unwrap();
        note_linked(&app, &device, DeviceStatus::Online, T0 + 5).unwrap();
        assert_eq!(linked_at(&app, &device, T0 + 9).unwrap(), T0, "the first time online counts, once");

        let named = [device.clone()];
        for (reference, at) in [("c1", T0 + 1), ("c2", T0 + 2)] {
            assert_eq!(pick_for(&app, &named, Some("62811"), at), Pick::Device { device_id: device.clone() });
            contact(&app, &device, reference, at).unwrap();
        }
        assert_eq!(pick_for(&app, &named, Some("62811"), T0 + 3), Pick::WarmingUp { until: T0 + DAY_MS });
        assert_eq!(pick_for(&app, &named, None, T0 + 3), Pick::Device { device_id: device.clone() }, "only online");
        // A retried dispatch gets its reservation again, and counts for nothing more.
        let again = contact(&app, &device, "c2", T0 + 4).unwrap();
        assert_eq!(app.quota.get(), 998);
        assert_eq!(again.quota_remaining, 998);

        // The second day allows half as many again: three.
        let day_two = T0 + DAY_MS;
        for n in 0..3 {
            assert!(matches!(pick_for(&app, &named, Some("62811"), day_two + n), Pick::Device { .. }), "message {n}");
            contact(&app, &device, &format!("d{n}"), day_two + n).unwrap();
        }
        assert_eq!(pick_for(&app, &named, Some("62811"), day_two + 9), Pick::WarmingUp { until: T0 + 2 * DAY_MS });
        // On the fifth day the cap (2 · 1.5⁴ = 10.1) would pass `uncapped_after`: no cap from then on.
        let day_five = T0 + 4 * DAY_MS;
        for n in 0..20 {
            contact(&app, &device, &format!("e{n}"), day_five + n).unwrap();
        }
        assert!(matches!(pick_for(&app, &named, Some("62811"), day_five + 99), Pick::Device { .. }));
    }

    #[test]
    fn a_number_never_seen_online_starts_its_warm_up_at_its_first_campaign_message() {
        let app = App::new(10);
        set_governor(&app, &warm_up(1)).unwrap();
        let device = app.device(1, DeviceStatus::Online);
        assert!(matches!(pick_for(&app, &[], Some("62811"), T0), Pick::Device { .. }));
        contact(&app, &device, "c1", T0).unwrap();
        assert_eq!(pick_for(&app, &[], Some("62811"), T0 + 1), Pick::WarmingUp { until: T0 + DAY_MS });
    }

    #[test]
    fn the_pick_takes_turns_among_the_named_online_numbers_and_passes_over_capped_ones() {
        let app = App::new(10);
        assert_eq!(pick_for(&app, &[], Some("62811"), T0), Pick::NoDevice);
        let offline = app.device(9, DeviceStatus::Offline);
        assert_eq!(pick_for(&app, &[], None, T0), Pick::NoDevice);
        assert_eq!(pick_for(&app, std::slice::from_ref(&offline), Some("62811"), T0), Pick::NoDevice);
        let (a, b) = (app.device(1, DeviceStatus::Online), app.device(2, DeviceStatus::Online));
        assert_eq!(pick_for(&app, &[], Some("62811"), T0), Pick::Device { device_id: a.clone() });
        contact(&app, &a, "c1", T0).unwrap();
        assert_eq!(pick_for(&app, &[], Some("62811"), T0 + 1), Pick::Device { device_id: b.clone() }, "round-robin");
        contact(&app, &b, "c2", T0 + 1).unwrap();
        assert_eq!(pick_for(&app, &[], Some("62811"), T0 + 2), Pick::Device { device_id: a.clone() });
        assert_eq!(pick_for(&app, &[b.clone(), offline], None, T0 + 2), Pick::Device { device_id: b.clone() });
        // A number of another app (or none at all) is not the app's to send from.
        let stranger = DeviceId::parse("dev_ffffffffffffffff").unwrap();
        assert_eq!(pick_for(&app, &[stranger], Some("62811"), T0 + 2), Pick::NoDevice);

        // With one a day, both have had today's: more from the earlier of their next days (`a`
        // counts from its first message, `b` from its own). A third number, used last, still sends.
        set_governor(&app, &warm_up(1)).unwrap();
        assert_eq!(pick_for(&app, &[], Some("62811"), T0 + 3), Pick::WarmingUp { until: T0 + DAY_MS });
        let c = app.device(3, DeviceStatus::Online);
        app.run("UPDATE devices SET last_used_at = ? WHERE device_id = ?", vec![(T0 + 100).into(), c.as_str().into()])
            .unwrap();
        assert_eq!(pick_for(&app, &[], Some("62811"), T0 + 3), Pick::Device { device_id: c.clone() });
        assert_eq!(
            pick_for(&app, &[a.clone(), b.clone()], Some("62811"), T0 + 3),
            Pick::WarmingUp { until: T0 + DAY_MS }
        );
    }

    #[test]
    fn a_contact_is_reserved_only_with_quota_and_an_online_number() {
        let app = App::new(1);
        let offline = app.device(1, DeviceStatus::Offline);
        assert_eq!(contact(&app, &offline, "c1", T0).err(), Some(ApiError::DeviceNotConnected));
        let device = app.device(2, DeviceStatus::Online);
        let first = contact(&app, &device, "c1", T0).unwrap();
        assert_eq!(first.device_id, device);
        assert_eq!(contact(&app, &device, "c2", T0).err(), Some(ApiError::QuotaExceeded));
        assert_eq!(contact(&app, &device, "c1", T0).unwrap().message_id, first.message_id, "the retry is not refused");
        let stored = "SELECT COUNT(*) AS n FROM campaign_reservations";
        assert_eq!(app.number(stored, vec![]).unwrap(), Some(1), "refused contacts keep nothing");
        let sent = "SELECT sent AS n FROM warm_up WHERE device_id = ?";
        assert_eq!(app.number(sent, vec![device.as_str().into()]).unwrap(), Some(1));
    }

    #[test]
    fn the_campaign_index_pages_newest_first_within_a_scope() {
        let app = App::new(0);
        let (a, b) =
            (DeviceId::parse("dev_000000000000000a").unwrap(), DeviceId::parse("dev_000000000000000b").unwrap());
        for n in 0..45 {
            let device_id = match n % 3 {
                0 => None,
                1 => Some(a.clone()),
                _ => Some(b.clone()),
            };
            now(app.index_campaign(IndexCampaign { campaign_id: campaign(n), device_id, now: T0 + u64::from(n) }))
                .unwrap();
        }
        // A repeated indexing (a retried creation) changes nothing.
        now(app.index_campaign(IndexCampaign { campaign_id: campaign(0), device_id: Some(a.clone()), now: T0 + 99 }))
            .unwrap();
        let page = |page, scope: Option<&DeviceId>| {
            now(app.list_campaigns(ListCampaigns { page, scope: scope.cloned() })).unwrap()
        };
        let first = page(1, None);
        assert_eq!((first.total, first.ids.len()), (45, 20));
        assert_eq!((first.ids[0].clone(), first.ids[19].clone()), (campaign(44), campaign(25)));
        assert_eq!(page(0, None), first, "pages below one read as the first");
        assert_eq!(page(-7, None), first);
        assert_eq!(page(3, None).ids, (0..5).rev().map(campaign).collect::<Vec<_>>());
        assert_eq!(page(i64::MAX / 100, None), CampaignIndex { total: 45, ids: vec![] });
        let scoped = page(1, Some(&a));
        assert_eq!(scoped.total, 15);
        assert_eq!(scoped.ids.first(), Some(&campaign(43)));
        assert_eq!(scoped.ids.last(), Some(&campaign(1)), "the campaign indexed unscoped stays unscoped");
        let stranger = DeviceId::parse("dev_ffffffffffffffff").unwrap();
        assert_eq!(page(1, Some(&stranger)), CampaignIndex { total: 0, ids: vec![] });

        now(app.unindex_campaign(UnindexCampaign { campaign_id: campaign(44) })).unwrap();
        now(app.unindex_campaign(UnindexCampaign { campaign_id: campaign(1_000) })).unwrap();
        assert_eq!(page(1, None).total, 44);
        assert_eq!(page(1, None).ids[0], campaign(43));
    }
}
