//! A broadcast campaign's storage (the campaign object's): the campaign row, its contacts with
//! their rendered texts and statuses, and the last send outcomes the failure breaker reads.

use serde::Deserialize;

use super::{Bind, Sql};
use crate::domain::campaign::{
    advance, contact_text, failure_rate_trips, transition, Action, Advance, CampaignStatus, ContactFilter,
    ContactStatus, Progress, FAILURE_WINDOW,
};
use crate::domain::error::ApiError;
use crate::domain::ids::{AppId, CampaignId, DeviceId};
use crate::domain::paging;
use crate::domain::schema::Migration;
use crate::domain::template::Template;
use crate::protocol::campaign::{
    CampaignMedia, CampaignSpec, CampaignView, ContactOutcome, ContactPage, ContactView, Waiting, CONTACTS_PAGE,
};

/// Oldest first; append, never edit (see `domain::schema`).
pub const MIGRATIONS: [Migration; 1] = [Migration::Sql(&[
    "CREATE TABLE IF NOT EXISTS campaign (
            one INTEGER PRIMARY KEY CHECK (one = 1), id TEXT NOT NULL, app_id TEXT NOT NULL, name TEXT NOT NULL,
            media TEXT, delay_seconds INTEGER NOT NULL, schedule_at INTEGER, device_ids TEXT NOT NULL,
            status TEXT NOT NULL, pause_reason TEXT, waiting_reason TEXT, waiting_until INTEGER,
            total INTEGER NOT NULL, created_at INTEGER NOT NULL, started_at INTEGER, completed_at INTEGER)",
    // status: pending → queued (handed to a device) → sent | delivered | read | failed.
    "CREATE TABLE IF NOT EXISTS contacts (
            seq INTEGER PRIMARY KEY, phone TEXT NOT NULL, name TEXT, text TEXT NOT NULL, status TEXT NOT NULL,
            checked INTEGER NOT NULL DEFAULT 0, message_id TEXT, device_id TEXT, error_code TEXT,
            updated_at INTEGER)",
    "CREATE INDEX IF NOT EXISTS contacts_status ON contacts (status, seq)",
    // The last send outcomes (1 = failed), for the failure-rate breaker.
    "CREATE TABLE IF NOT EXISTS outcomes (seq INTEGER PRIMARY KEY AUTOINCREMENT, failed INTEGER NOT NULL)",
])];

#[derive(Debug, Deserialize)]
pub struct CampaignRow {
    pub id: CampaignId,
    pub app_id: AppId,
    pub name: String,
    media: Option<String>,
    pub delay_seconds: u32,
    pub schedule_at: Option<u64>,
    device_ids: String,
    pub status: CampaignStatus,
    pause_reason: Option<String>,
    waiting_reason: Option<String>,
    waiting_until: Option<u64>,
    total: u64,
    created_at: u64,
    started_at: Option<u64>,
    completed_at: Option<u64>,
}

impl CampaignRow {
    pub fn device_ids(&self) -> Vec<DeviceId> {
        serde_json::from_str(&self.device_ids).unwrap_or_default()
    }

    pub fn media(&self) -> Option<CampaignMedia> {
        self.media.as_deref().and_then(|m| serde_json::from_str(m).ok())
    }

    /// The status `action` leads to from this campaign's, or why it may not.
    pub fn allowed(&self, action: Action) -> Result<CampaignStatus, ApiError> {
        transition(self.status, action).map_err(|e| ApiError::Conflict { message: e.to_string() })
    }
}

#[derive(Debug, Deserialize)]
pub struct ContactRow {
    pub seq: i64,
    pub phone: String,
    name: Option<String>,
    pub text: String,
    status: ContactStatus,
    pub checked: i64,
    message_id: Option<String>,
    device_id: Option<String>,
    error_code: Option<String>,
}

/// A contact status as the `contacts` table holds it.
fn stored(status: ContactStatus) -> Bind {
    status.as_str().into()
}

/// One row, its columns named beside their values, so that no value can land in another's column.
fn insert(sql: &impl Sql, table: &str, row: Vec<(&str, Bind)>) -> Result<(), ApiError> {
    let (columns, values): (Vec<&str>, Vec<Bind>) = row.into_iter().unzip();
    let marks = vec!["?"; columns.len()].join(", ");
    sql.run(&format!("INSERT INTO {table} ({}) VALUES ({marks})", columns.join(", ")), values)?;
    Ok(())
}

pub fn campaign(sql: &impl Sql) -> Result<CampaignRow, ApiError> {
    sql.row("SELECT * FROM campaign", vec![])?.ok_or_else(|| ApiError::not_found("campaign"))
}

/// The campaign, if it belongs to `app_id`; another app's is not found, as if absent.
pub fn campaign_of(sql: &impl Sql, app_id: &AppId) -> Result<CampaignRow, ApiError> {
    campaign(sql).ok().filter(|c| c.app_id == *app_id).ok_or_else(|| ApiError::not_found("campaign"))
}

/// Stores a new campaign with each contact's text rendered once, here.
pub fn create(sql: &impl Sql, spec: CampaignSpec) -> Result<(), ApiError> {
    if campaign(sql).is_ok() {
        return Err(ApiError::Conflict { message: "this campaign already exists".into() });
    }
    let template = Template::parse(&spec.message, |_| true).map_err(ApiError::internal)?;
    let status = match spec.schedule_at {
        Some(_) => transition(CampaignStatus::Draft, Action::Schedule).map_err(ApiError::internal)?,
        None => CampaignStatus::Draft,
    };
    let media = spec.media.as_ref().map(serde_json::to_string).transpose().map_err(ApiError::internal)?;
    insert(
        sql,
        "campaign",
        vec![
            ("one", 1i64.into()),
            ("id", spec.campaign_id.as_str().into()),
            ("app_id", spec.app_id.as_str().into()),
            ("name", spec.name.into()),
            ("media", media.into()),
            ("delay_seconds", spec.delay_seconds.into()),
            ("schedule_at", spec.schedule_at.into()),
            ("device_ids", serde_json::to_string(&spec.device_ids).map_err(ApiError::internal)?.into()),
            ("status", status.as_str().into()),
            ("total", (spec.contacts.len() as u64).into()),
            ("created_at", spec.now.into()),
        ],
    )?;
    for (seq, contact) in spec.contacts.into_iter().enumerate() {
        let text = contact_text(
            &template,
            spec.campaign_id.body(),
            &contact.phone,
            contact.name.as_deref(),
            &contact.variables,
        );
        insert(
            sql,
            "contacts",
            vec![
                ("seq", (seq as i64).into()),
                ("phone", contact.phone.into()),
                ("name", contact.name.into()),
                ("text", text.into()),
                ("status", stored(ContactStatus::Pending)),
            ],
        )?;
    }
    Ok(())
}

/// One page of contacts (from 1), optionally only those `filter` names.
pub fn contacts(sql: &impl Sql, filter: Option<ContactFilter>, page: i64) -> Result<ContactPage, ApiError> {
    let statuses: Vec<&str> = filter.map_or(&[][..], |f| f.statuses()).iter().map(|s| s.as_str()).collect();
    let filter = serde_json::to_string(&statuses).map_err(ApiError::internal)?;
    let total = sql
        .number(
            "SELECT COUNT(*) AS n FROM contacts WHERE ? = '[]' OR status IN (SELECT value FROM json_each(?))",
            vec![filter.as_str().into(), filter.as_str().into()],
        )?
        .unwrap_or(0);
    let page = page.max(1);
    let listed = sql.rows::<ContactRow>(
        "SELECT * FROM contacts
         WHERE ? = '[]' OR status IN (SELECT value FROM json_each(?)) ORDER BY seq LIMIT ? OFFSET ?",
        vec![filter.as_str().into(), filter.into(), CONTACTS_PAGE.into(), paging::offset(page, CONTACTS_PAGE).into()],
    )?;
    let contacts = listed
        .into_iter()
        .map(|c| ContactView {
            index: c.seq,
            phone: c.phone,
            name: c.name,
            text: c.text,
            status: c.status,
            message_id: c.message_id,
            device_id: c.device_id,
            error_code: c.error_code,
        })
        .collect();
    Ok(ContactPage { page, total, contacts })
}

pub fn progress(sql: &impl Sql) -> Result<Progress, ApiError> {
    #[derive(Deserialize)]
    struct Count {
        status: ContactStatus,
        n: u64,
    }
    let counts = sql.rows::<Count>("SELECT status, COUNT(*) AS n FROM contacts GROUP BY status", vec![])?;
    Ok(Progress::of(counts.into_iter().map(|c| (c.status, c.n))))
}

pub fn view(sql: &impl Sql) -> Result<CampaignView, ApiError> {
    let c = campaign(sql)?;
    let progress = progress(sql)?;
    let (media, device_ids) = (c.media(), c.device_ids());
    let waiting = c.waiting_until.filter(|_| c.status == CampaignStatus::Sending);
    Ok(CampaignView {
        id: c.id,
        name: c.name,
        status: c.status,
        pause_reason: c.pause_reason,
        waiting: waiting.map(|until| Waiting { reason: c.waiting_reason, until }),
        total_contacts: c.total,
        progress,
        delay_seconds: c.delay_seconds,
        schedule_at: c.schedule_at,
        media,
        device_ids,
        created_at: c.created_at,
        started_at: c.started_at,
        completed_at: c.completed_at,
    })
}

/// A new status, which ends any wait; the first start and the completion are stamped.
pub fn set_status(
    sql: &impl Sql,
    status: CampaignStatus,
    pause_reason: Option<&str>,
    now: u64,
) -> Result<(), ApiError> {
    sql.run(
        "UPDATE campaign SET status = ?1, pause_reason = ?2, waiting_until = NULL, waiting_reason = NULL,
         started_at = CASE WHEN ?1 = 'sending' THEN COALESCE(started_at, ?3) ELSE started_at END,
         completed_at = CASE WHEN ?1 = 'completed' THEN ?3 ELSE completed_at END",
        vec![status.as_str().into(), pause_reason.into(), now.into()],
    )?;
    Ok(())
}

/// A resumed campaign's breaker starts afresh.
pub fn forget_outcomes(sql: &impl Sql) -> Result<(), ApiError> {
    sql.run("DELETE FROM outcomes", vec![])?;
    Ok(())
}

pub fn delete(sql: &impl Sql) -> Result<(), ApiError> {
    for table in ["contacts", "outcomes", "campaign"] {
        sql.run(&format!("DELETE FROM {table}"), vec![])?;
    }
    Ok(())
}

/// What a contact's message outcome asks of the campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterOutcome {
    /// Nothing changed (an unknown contact, a stale or repeated outcome, no campaign).
    Nothing,
    /// The failure rate of the last sends trips the breaker.
    Trip,
    /// The contact moved on: the campaign may be done.
    Moved,
}

/// Moves a contact forward with its message's outcome (never back), and keeps the last
/// `FAILURE_WINDOW` send outcomes for the breaker.
pub fn outcome(sql: &impl Sql, outcome: ContactOutcome, now: u64) -> Result<AfterOutcome, ApiError> {
    let ContactOutcome { contact: seq, message_id, status: message, error_code } = outcome;
    let Ok(campaign) = campaign(sql) else { return Ok(AfterOutcome::Nothing) };
    let Some(current) = sql.row::<ContactRow>("SELECT * FROM contacts WHERE seq = ?", vec![seq.into()])? else {
        return Ok(AfterOutcome::Nothing);
    };
    let Some(Advance { to, outcome }) = advance(current.status, message) else { return Ok(AfterOutcome::Nothing) };
    sql.run(
        "UPDATE contacts SET status = ?, message_id = ?, error_code = COALESCE(?, error_code), updated_at = ? WHERE seq = ?",
        vec![stored(to), message_id.into(), error_code.into(), now.into(), seq.into()],
    )?;
    if outcome {
        sql.run("INSERT INTO outcomes (failed) VALUES (?)", vec![(to == ContactStatus::Failed).into()])?;
        sql.run(
            "DELETE FROM outcomes WHERE seq <= (SELECT MAX(seq) FROM outcomes) - ?",
            vec![(FAILURE_WINDOW as i64).into()],
        )?;
        #[derive(Deserialize)]
        struct Outcome {
            failed: i64,
        }
        let recent: Vec<bool> = sql
            .rows::<Outcome>("SELECT failed FROM outcomes ORDER BY seq", vec![])?
            .iter()
            .map(|o| o.failed != 0)
            .collect();
        if campaign.status == CampaignStatus::Sending && failure_rate_trips(&recent) {
            return Ok(AfterOutcome::Trip);
        }
    }
    Ok(AfterOutcome::Moved)
}

/// The next contact still to go out.
pub fn next_pending(sql: &impl Sql) -> Result<Option<ContactRow>, ApiError> {
    Ok(sql.row("SELECT * FROM contacts WHERE status = ? ORDER BY seq LIMIT 1", vec![stored(ContactStatus::Pending)])?)
}

/// The next pending contacts whose number was not checked against WhatsApp yet.
pub fn unchecked(sql: &impl Sql, limit: i64) -> Result<Vec<ContactRow>, ApiError> {
    Ok(sql.rows(
        "SELECT * FROM contacts WHERE status = ? AND checked = 0 ORDER BY seq LIMIT ?",
        vec![stored(ContactStatus::Pending), limit.into()],
    )?)
}

/// A contact's number was checked; one that is not on WhatsApp fails without spending quota.
pub fn checked(sql: &impl Sql, seq: i64, exists: bool, now: u64) -> Result<(), ApiError> {
    sql.run("UPDATE contacts SET checked = 1 WHERE seq = ?", vec![seq.into()])?;
    if !exists {
        fail_contact(sql, seq, "not_on_whatsapp", now)?;
    }
    Ok(())
}

pub fn fail_contact(sql: &impl Sql, seq: i64, code: &str, now: u64) -> Result<(), ApiError> {
    sql.run(
        "UPDATE contacts SET status = ?, error_code = ?, updated_at = ? WHERE seq = ?",
        vec![stored(ContactStatus::Failed), code.into(), now.into(), seq.into()],
    )?;
    Ok(())
}

/// Every number is at its warm-up cap until `until`; `None` ends the wait.
pub fn wait_for_warm_up(sql: &impl Sql, until: Option<u64>) -> Result<(), ApiError> {
    match until {
        Some(until) => {
            sql.run("UPDATE campaign SET waiting_reason = 'warm_up_cap', waiting_until = ?", vec![until.into()])?
        }
        None => sql.run("UPDATE campaign SET waiting_until = NULL, waiting_reason = NULL", vec![])?,
    }
    Ok(())
}

/// The contact was handed to a device under `message_id`, unless an outcome overtook it.
pub fn queued(sql: &impl Sql, seq: i64, message_id: &str, device_id: &str, now: u64) -> Result<(), ApiError> {
    sql.run(
        "UPDATE contacts SET status = ?, message_id = ?, device_id = ?, updated_at = ? WHERE seq = ? AND status = ?",
        vec![
            stored(ContactStatus::Queued),
            message_id.into(),
            device_id.into(),
            now.into(),
            seq.into(),
            stored(ContactStatus::Pending),
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::message::MessageStatus;
    use crate::protocol::campaign::ContactSpec;
    use crate::store::memory::Memory;
    use crate::store::migrate;

    fn app() -> AppId {
        AppId::parse("app_0123456789abcdef").unwrap()
    }

    fn spec(contacts: usize) -> CampaignSpec {
        CampaignSpec {
            campaign_id: CampaignId::generate(),
            app_id: app(),
            name: "Summer Sale".into(),
            message: "Hello {name}!".into(),
            contacts: (0..contacts)
                .map(|i| ContactSpec {
                    phone: format!("62812345{i:05}"),
                    name: Some(format!("c{i}")),
                    variables: Default::default(),
                })
                .collect(),
            media: None,
            delay_seconds: 5,
            schedule_at: None,
            device_ids: vec![],
            now: 1,
        }
    }

    fn store(contacts: usize) -> Memory {
        let sql = Memory::default();
        migrate(&sql, &MIGRATIONS).unwrap();
        create(&sql, spec(contacts)).unwrap();
        sql
    }

    fn report(seq: i64, status: MessageStatus) -> ContactOutcome {
        ContactOutcome { contact: seq, message_id: format!("msg_{seq}"), status, error_code: None }
    }

    #[test]
    fn a_campaign_is_created_once_with_each_text_rendered_and_only_its_app_sees_it() {
        let sql = store(3);
        assert!(matches!(create(&sql, spec(1)), Err(ApiError::Conflict { .. })));
        let page = contacts(&sql, None, 1).unwrap();
        assert_eq!((page.total, page.contacts.len()), (3, 3));
        assert_eq!(page.contacts[1].text, "Hello c1!");
        let other = AppId::parse("app_fedcba9876543210").unwrap();
        assert!(matches!(campaign_of(&sql, &other), Err(ApiError::NotFound { .. })));
        assert_eq!(view(&sql).unwrap().total_contacts, 3);
    }

    #[test]
    fn contacts_page_and_filter_and_a_silly_page_reads_as_the_first() {
        let sql = store(CONTACTS_PAGE as usize + 3);
        fail_contact(&sql, 0, "opted_out", 2).unwrap();
        assert_eq!(contacts(&sql, Some(ContactFilter::Failed), 1).unwrap().total, 1);
        assert_eq!(contacts(&sql, Some(ContactFilter::Sent), 1).unwrap().contacts.len(), 0);
        assert_eq!(contacts(&sql, None, 2).unwrap().contacts.len(), 3);
        assert_eq!(contacts(&sql, None, -5).unwrap().page, 1);
        assert!(contacts(&sql, None, 1_000_000).unwrap().contacts.is_empty());
    }

    #[test]
    fn outcomes_move_contacts_forward_only_and_unknown_ones_change_nothing() {
        let sql = store(2);
        queued(&sql, 0, "msg_0", "dev_1", 2).unwrap();
        assert_eq!(outcome(&sql, report(0, MessageStatus::Delivered), 3).unwrap(), AfterOutcome::Moved);
        assert_eq!(outcome(&sql, report(0, MessageStatus::Sent), 4).unwrap(), AfterOutcome::Nothing, "never back");
        assert_eq!(outcome(&sql, report(99, MessageStatus::Sent), 4).unwrap(), AfterOutcome::Nothing);
        queued(&sql, 0, "msg_other", "dev_2", 5).unwrap();
        let page = contacts(&sql, None, 1).unwrap();
        assert_eq!(page.contacts[0].message_id.as_deref(), Some("msg_0"), "an overtaken queueing does not rewrite it");
        assert_eq!(next_pending(&sql).unwrap().map(|c| c.seq), Some(1));
    }

    #[test]
    fn a_sending_campaign_whose_sends_keep_failing_trips_the_breaker() {
        let sql = store(FAILURE_WINDOW + 5);
        set_status(&sql, CampaignStatus::Sending, None, 2).unwrap();
        let after: Vec<AfterOutcome> = (0..FAILURE_WINDOW as i64 + 5)
            .map(|seq| outcome(&sql, report(seq, MessageStatus::Failed), 3).unwrap())
            .collect();
        assert!(after.contains(&AfterOutcome::Trip));
        assert_eq!(after[0], AfterOutcome::Moved, "one failure does not trip it");
        forget_outcomes(&sql).unwrap();
        assert_eq!(sql.number("SELECT COUNT(*) AS n FROM outcomes", vec![]).unwrap(), Some(0));
    }

    #[test]
    fn status_stamps_the_first_start_and_the_completion_and_ends_a_wait() {
        let sql = store(1);
        set_status(&sql, CampaignStatus::Sending, None, 10).unwrap();
        wait_for_warm_up(&sql, Some(99)).unwrap();
        assert_eq!(view(&sql).unwrap().waiting.map(|w| w.until), Some(99));
        set_status(&sql, CampaignStatus::Paused, Some("client"), 20).unwrap();
        set_status(&sql, CampaignStatus::Sending, None, 30).unwrap();
        set_status(&sql, CampaignStatus::Completed, None, 40).unwrap();
        let v = view(&sql).unwrap();
        assert_eq!((v.started_at, v.completed_at, v.waiting.is_none()), (Some(10), Some(40), true));
        checked(&sql, 0, false, 41).unwrap();
        assert_eq!(
            contacts(&sql, Some(ContactFilter::Failed), 1).unwrap().contacts[0].error_code.as_deref(),
            Some("not_on_whatsapp")
        );
        delete(&sql).unwrap();
        assert!(campaign(&sql).is_err());
    }
}
