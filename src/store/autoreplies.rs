//! The app's auto-reply rules, and the answer to an inbound message: the first active rule
//! that matches (highest `priority` first, then oldest) reserves quota for a reply from the
//! device that received the message. The device queues the reply on its normal paced path.
//! The rules facet is served by any [`Sql`], so the app's object answers it by being its storage.

use serde::Deserialize;

use super::audience::{governor, Quota};
use super::Sql;
use crate::domain::autoreply::{self, reply_template, MatchKind, SentReply, HOUR_MS};
use crate::domain::error::{ApiError, FieldError, Rule};
use crate::domain::events::{AutoReplyNote, AutoReplyOutcome, Event, Incoming, What};
use crate::domain::ids::{random_hex, DeviceId};
use crate::domain::scope;
use crate::protocol::app::AutoReply;
use crate::protocol::autoreplies::{
    AutoReplyHandler, CreateRule, DeleteRule, GetRule, ListRules, RuleView, UpdateRule,
};

pub const MAX_RULES: i64 = 100;

pub const SCHEMA: [&str; 5] = [
    "CREATE TABLE IF NOT EXISTS auto_replies (
        id TEXT PRIMARY KEY, match_kind TEXT NOT NULL, pattern TEXT NOT NULL, reply TEXT NOT NULL, device_id TEXT,
        active INTEGER NOT NULL, priority INTEGER NOT NULL, hits INTEGER NOT NULL DEFAULT 0,
        last_matched_at INTEGER, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)",
    // The reply each answered event got, so that a retried recording queues the same one.
    "CREATE TABLE IF NOT EXISTS auto_replied (event_id TEXT PRIMARY KEY, reply TEXT NOT NULL)",
    // The replies each sender got in the last hour, and their quick answers in a row, for the rationing.
    "CREATE TABLE IF NOT EXISTS auto_reply_log (sender TEXT NOT NULL, rule_id TEXT NOT NULL, at INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS auto_reply_log_sender ON auto_reply_log (sender, at)",
    "CREATE TABLE IF NOT EXISTS auto_reply_senders (sender TEXT PRIMARY KEY, quick_answers INTEGER NOT NULL)",
];

#[derive(Debug, Clone, Deserialize)]
struct RuleRow {
    id: String,
    match_kind: String,
    pattern: String,
    reply: String,
    device_id: Option<String>,
    active: i64,
    priority: i64,
    hits: i64,
    last_matched_at: Option<u64>,
    created_at: u64,
    updated_at: u64,
}

impl RuleRow {
    fn kind(&self) -> MatchKind {
        MatchKind::parse(&self.match_kind).unwrap_or(MatchKind::Exact)
    }

    fn view(self) -> RuleView {
        RuleView {
            match_kind: self.kind(),
            id: self.id,
            pattern: self.pattern,
            reply: self.reply,
            device_id: self.device_id,
            active: self.active != 0,
            priority: self.priority,
            hits: self.hits,
            last_matched_at: self.last_matched_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// A rule the app will not store, with each field at fault.
fn check(kind: MatchKind, pattern: &str, reply: &str) -> Result<(), ApiError> {
    let errors: Vec<FieldError> = autoreply::problems(kind, pattern, reply)
        .into_iter()
        .map(|(field, reason)| FieldError { field: field.to_owned(), rule: Rule::Invalid { reason } })
        .collect();
    match errors.is_empty() {
        true => Ok(()),
        false => Err(ApiError::Validation { errors }),
    }
}

/// A match kind as stored: its wire name.
fn kind_name(kind: MatchKind) -> Result<String, ApiError> {
    match serde_json::to_value(kind).map_err(ApiError::internal)? {
        serde_json::Value::String(name) => Ok(name),
        _ => Err(ApiError::internal("a match kind is named by a string")),
    }
}

fn note(message: &mut Incoming, rule_id: &str, outcome: AutoReplyOutcome) {
    message.auto_reply = Some(AutoReplyNote { rule_id: rule_id.to_owned(), outcome });
}

fn skipped(message: &mut Incoming, rule_id: &str, why: &str) -> Option<AutoReply> {
    note(message, rule_id, AutoReplyOutcome::Skipped { skipped: why.to_owned() });
    None
}

fn rule(sql: &impl Sql, id: &str) -> Result<RuleRow, ApiError> {
    sql.row::<RuleRow>("SELECT * FROM auto_replies WHERE id = ?", vec![id.into()])?
        .ok_or_else(|| ApiError::not_found("auto-reply"))
}

/// The rule `id`, if `scope` (a device-scoped key's device) may see it.
fn visible_rule(sql: &impl Sql, id: &str, scope: Option<&DeviceId>) -> Result<RuleRow, ApiError> {
    rule(sql, id).and_then(|r| match scope::visible(scope, r.device_id.as_deref()) {
        true => Ok(r),
        false => Err(ApiError::not_found("auto-reply")),
    })
}

/// The reply an earlier recording of this event queued, for a retried recording.
pub fn earlier_reply(sql: &impl Sql, event_id: &str) -> Result<Option<AutoReply>, ApiError> {
    #[derive(Deserialize)]
    struct Logged {
        reply: String,
    }
    let logged = sql.row::<Logged>("SELECT reply FROM auto_replied WHERE event_id = ?", vec![event_id.into()])?;
    logged.map(|l| serde_json::from_str(&l.reply).map_err(ApiError::internal)).transpose()
}

/// Whether `rule_id` may answer `sender` now (`domain::autoreply::verdict`), counting this
/// message towards the sender's quick answers in a row either way.
fn ration(
    sql: &impl Sql,
    rule_id: &str,
    sender: &str,
    now: u64,
) -> Result<Result<(), autoreply::Suppressed>, ApiError> {
    #[derive(Deserialize)]
    struct Streak {
        quick_answers: u32,
    }
    sql.run("DELETE FROM auto_reply_log WHERE at <= ?", vec![now.saturating_sub(HOUR_MS).into()])?;
    let replies =
        sql.rows::<SentReply>("SELECT rule_id, at FROM auto_reply_log WHERE sender = ?", vec![sender.into()])?;
    let before = sql
        .row::<Streak>("SELECT quick_answers FROM auto_reply_senders WHERE sender = ?", vec![sender.into()])?
        .map_or(0, |s| s.quick_answers);
    let quick = autoreply::quick_answers(before, &replies, now);
    sql.run(
        "INSERT INTO auto_reply_senders (sender, quick_answers) VALUES (?, ?)
         ON CONFLICT (sender) DO UPDATE SET quick_answers = excluded.quick_answers",
        vec![sender.into(), quick.into()],
    )?;
    Ok(autoreply::verdict(&governor(sql)?.auto_reply, &replies, quick, rule_id, now))
}

/// Answers an inbound message by the first matching rule, noting on the event what was done;
/// the reply's quota is reserved in `period` (the month of the event).
pub fn auto_reply(sql: &(impl Sql + Quota), event: &mut Event, period: &str) -> Result<Option<AutoReply>, ApiError> {
    let (event_id, at) = (event.id.clone(), event.at_ms);
    let What::MessageIncoming(message) = &mut event.what else { return Ok(None) };
    if message.group {
        return Ok(None);
    }
    let device_id = message.device_id.clone();
    let (Some(text), Some(from)) = (
        message.body.clone().filter(|t| !t.trim().is_empty()),
        Some(message.from.clone()).filter(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit())),
    ) else {
        return Ok(None); // nothing a rule can read, or no number to answer
    };
    let mut rules = sql.rows::<RuleRow>(
        "SELECT * FROM auto_replies WHERE active = 1 AND (device_id IS NULL OR device_id = ?)
         ORDER BY priority DESC, created_at, id",
        vec![device_id.as_str().into()],
    )?;
    let Some(rule) = autoreply::first_match(rules.iter().map(|r| (r.kind(), r.pattern.as_str())), &text)
        .map(|chosen| rules.swap_remove(chosen))
    else {
        return Ok(None);
    };
    let name = message.name.clone().filter(|n| !n.trim().is_empty()).unwrap_or_else(|| from.clone());
    let value = |variable: &str| match variable {
        "name" => Some(name.clone()),
        "phone" => Some(from.clone()),
        "message" => Some(text.clone()),
        _ => None,
    };
    let reply_text = reply_template(&rule.reply).map_err(ApiError::internal)?.render(value, autoreply::seed(&event_id));
    let to = from;
    sql.run(
        "UPDATE auto_replies SET hits = hits + 1, last_matched_at = ? WHERE id = ?",
        vec![at.into(), rule.id.as_str().into()],
    )?;
    if let Err(suppressed) = ration(sql, &rule.id, &to, at)? {
        note(message, &rule.id, AutoReplyOutcome::Suppressed { suppressed });
        return Ok(None);
    }
    let reservation = match sql.reserve(&device_id, period, at) {
        Ok(reservation) => reservation,
        // Replying is best effort: a reply that cannot go out is noted on the event, not queued.
        Err(ApiError::QuotaExceeded) => return Ok(skipped(message, &rule.id, "quota_exceeded")),
        Err(ApiError::DeviceNotConnected) => return Ok(skipped(message, &rule.id, "device_not_connected")),
        Err(e) => return Err(e),
    };
    let reply = AutoReply { message_id: reservation.message_id.to_string(), rule_id: rule.id, to, text: reply_text };
    note(message, &reply.rule_id, AutoReplyOutcome::Queued { message_id: reply.message_id.clone() });
    sql.run(
        "INSERT INTO auto_reply_log (sender, rule_id, at) VALUES (?, ?, ?)",
        vec![reply.to.as_str().into(), reply.rule_id.as_str().into(), at.into()],
    )?;
    sql.run(
        "INSERT INTO auto_replied (event_id, reply) VALUES (?, ?)",
        vec![event_id.as_str().into(), serde_json::to_string(&reply).map_err(ApiError::internal)?.into()],
    )?;
    Ok(Some(reply))
}

impl<S: Sql> AutoReplyHandler for S {
    async fn list_rules(&self, ListRules { scope }: ListRules) -> Result<Vec<RuleView>, ApiError> {
        let all = self.rows::<RuleRow>("SELECT * FROM auto_replies ORDER BY priority DESC, created_at, id", vec![])?;
        Ok(all
            .into_iter()
            .filter(|r| scope::visible(scope.as_ref(), r.device_id.as_deref()))
            .map(RuleRow::view)
            .collect())
    }

    async fn create_rule(&self, CreateRule { spec, now, .. }: CreateRule) -> Result<RuleView, ApiError> {
        // The edge has already bound a scoped key's rule to its device.
        if self.number("SELECT COUNT(*) AS n FROM auto_replies", vec![])?.unwrap_or(0) >= MAX_RULES {
            let reason = format!("cannot be added: an app may have at most {MAX_RULES} auto-reply rules");
            return Err(ApiError::field("pattern", Rule::Invalid { reason }));
        }
        check(spec.match_kind, &spec.pattern, &spec.reply)?;
        let id = format!("ar_{}", random_hex(8));
        self.run(
            "INSERT INTO auto_replies
             (id, match_kind, pattern, reply, device_id, active, priority, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
            vec![
                id.as_str().into(),
                kind_name(spec.match_kind)?.into(),
                spec.pattern.into(),
                spec.reply.into(),
                spec.device_id.map(|d| d.to_string()).into(),
                spec.active.into(),
                spec.priority.into(),
                now.into(),
            ],
        )?;
        Ok(rule(self, &id)?.view())
    }

    async fn get_rule(&self, GetRule { scope, id }: GetRule) -> Result<RuleView, ApiError> {
        Ok(visible_rule(self, &id, scope.as_ref())?.view())
    }

    async fn update_rule(&self, UpdateRule { scope, id, patch, now }: UpdateRule) -> Result<RuleView, ApiError> {
        let current = visible_rule(self, &id, scope.as_ref())?;
        let kind = patch.match_kind.unwrap_or(current.kind());
        check(
            kind,
            patch.pattern.as_deref().unwrap_or(&current.pattern),
            patch.reply.as_deref().unwrap_or(&current.reply),
        )?;
        self.run(
            "UPDATE auto_replies SET match_kind = ?1, pattern = COALESCE(?2, pattern), reply = COALESCE(?3, reply),
             device_id = COALESCE(?4, device_id), active = COALESCE(?5, active),
             priority = COALESCE(?6, priority), updated_at = ?7 WHERE id = ?8",
            vec![
                kind_name(kind)?.into(),
                patch.pattern.into(),
                patch.reply.into(),
                patch.device_id.map(|d| d.to_string()).into(),
                patch.active.into(),
                patch.priority.into(),
                now.into(),
                id.as_str().into(),
            ],
        )?;
        Ok(rule(self, &id)?.view())
    }

    async fn delete_rule(&self, DeleteRule { scope, id }: DeleteRule) -> Result<(), ApiError> {
        visible_rule(self, &id, scope.as_ref())?;
        self.run("DELETE FROM auto_replies WHERE id = ?", vec![id.into()])?;
        Ok(())
    }
}

/// The marks of replies to events no longer recorded, and the reply log past its hour (it is
/// also trimmed as replies are rationed) with the streaks of senders no longer in it.
pub fn trim(sql: &impl Sql, now: u64) -> Result<(), ApiError> {
    sql.run("DELETE FROM auto_replied WHERE event_id NOT IN (SELECT id FROM events)", vec![])?;
    sql.run("DELETE FROM auto_reply_log WHERE at <= ?", vec![now.saturating_sub(HOUR_MS).into()])?;
    sql.run("DELETE FROM auto_reply_senders WHERE sender NOT IN (SELECT sender FROM auto_reply_log)", vec![])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::autoreply::{ReplyLimits, Suppressed, LOOP_ANSWER_MS};
    use crate::domain::device::DeviceStatus;
    use crate::domain::events::OtpEnded;
    use crate::domain::ids::MessageId;
    use crate::protocol::app::Governor;
    use crate::protocol::autoreplies::{RulePatch, RuleSpec};
    use crate::store::audience::fixture::App;
    use crate::store::audience::set_governor;
    use crate::store::memory::now;

    const T0: u64 = 1_800_000_000_000;
    const MINUTE: u64 = 60_000;

    /// What an answer comes to: the reply's text, or the outcome noted on the event (if any).
    type Answer = Result<String, Option<AutoReplyOutcome>>;

    fn spec(kind: MatchKind, pattern: &str, reply: &str) -> RuleSpec {
        let (pattern, reply) = (pattern.into(), reply.into());
        RuleSpec { match_kind: kind, pattern, reply, device_id: None, active: true, priority: 0 }
    }

    /// Creates a rule a millisecond after the one before, so that "oldest first" is one order.
    fn create(app: &App, spec: RuleSpec) -> Result<RuleView, ApiError> {
        let before = app.number("SELECT COUNT(*) AS n FROM auto_replies", vec![]).unwrap().unwrap_or(0);
        now(app.create_rule(CreateRule { scope: None, spec, now: T0 + before as u64 }))
    }

    fn limits(app: &App, cooldown_secs: u64, hourly_cap: u64) {
        let governor = Governor { auto_reply: ReplyLimits { cooldown_secs, hourly_cap }, ..Governor::default() };
        set_governor(app, &governor).unwrap();
    }

    /// An inbound message from `from` to `device`, recorded as event `id`.
    fn message(device: &DeviceId, id: &str, from: &str, body: &str, at_ms: u64) -> Event {
        let data = json!({
            "message_id": MessageId::generate(device), "external_id": "3EB0", "device_id": device, "from": from,
            "name": "Ana", "group": false, "type": "text", "body": body, "content": {"type": "text", "text": body},
        });
        let what = What::MessageIncoming(serde_json::from_value(data).unwrap());
        Event { id: id.into(), device_id: Some(device.clone()), at_ms, what }
    }

    fn note_of(event: &Event) -> Option<AutoReplyOutcome> {
        let What::MessageIncoming(message) = &event.what else { panic!("{event:?}") };
        message.auto_reply.clone().map(|n| n.outcome)
    }

    fn answer(app: &App, device: &DeviceId, id: &str, from: &str, body: &str, at: u64) -> Answer {
        let mut event = message(device, id, from, body, at);
        match auto_reply(app, &mut event, "2027-01").unwrap() {
            Some(reply) => {
                assert_eq!(note_of(&event), Some(AutoReplyOutcome::Queued { message_id: reply.message_id.clone() }));
                assert_eq!(reply.to, from);
                Ok(reply.text)
            }
            None => Err(note_of(&event)),
        }
    }

    fn suppressed(suppressed: Suppressed) -> Answer {
        Err(Some(AutoReplyOutcome::Suppressed { suppressed }))
    }

    fn skipped(why: &str) -> Answer {
        Err(Some(AutoReplyOutcome::Skipped { skipped: why.into() }))
    }

    #[test]
    fn the_first_matching_rule_answers_highest_priority_first_and_a_devices_own_rules_only_there() {
        let app = App::new(100);
        let (device, other) = (app.device(1, DeviceStatus::Online), app.device(2, DeviceStatus::Online));
        create(&app, spec(MatchKind::Contains, "price", "Prices: see site")).unwrap();
        let regex = spec(MatchKind::Regex, r"^price\s+of\s+\w+$", "Hi {name}, {message}?");
        create(&app, RuleSpec { priority: 5, ..regex }).unwrap();
        create(&app, RuleSpec { active: false, priority: 9, ..spec(MatchKind::Contains, "price", "inactive") })
            .unwrap();
        let own = spec(MatchKind::Exact, "hello", "Hi from two");
        create(&app, RuleSpec { device_id: Some(other.clone()), priority: 9, ..own }).unwrap();
        create(&app, spec(MatchKind::Exact, "hello", "Hello {phone}")).unwrap();
        create(&app, spec(MatchKind::Contains, "rice", "Rice!")).unwrap();

        assert_eq!(answer(&app, &device, "evt_1", "62811", "PRICE of rice", T0), Ok("Hi Ana, PRICE of rice?".into()));
        let oldest = Ok("Prices: see site".into());
        assert_eq!(answer(&app, &device, "evt_2", "62822", "what's the price?", T0), oldest, "then the oldest");
        assert_eq!(answer(&app, &device, "evt_3", "62833", "  Hello ", T0), Ok("Hello 62833".into()));
        assert_eq!(answer(&app, &other, "evt_4", "62833", "hello", T0), Ok("Hi from two".into()));
        assert_eq!(answer(&app, &device, "evt_5", "62844", "hello there", T0), Err(None), "exact means exact");
    }

    #[test]
    fn messages_no_rule_can_answer_are_left_alone() {
        let app = App::new(100);
        let device = app.device(1, DeviceStatus::Online);
        create(&app, spec(MatchKind::Regex, ".*", "Got it")).unwrap();
        for (from, body) in
            [("62811", "   "), ("", "hi"), ("62811@s.whatsapp.net", "hi"), ("+62811", "hi"), ("628'--", "hi")]
        {
            assert_eq!(answer(&app, &device, "evt_1", from, body, T0), Err(None), "{from:?} {body:?}");
        }
        let mut group = message(&device, "evt_2", "120363", "hi", T0);
        if let What::MessageIncoming(m) = &mut group.what {
            m.group = true;
        }
        assert!(auto_reply(&app, &mut group, "p").unwrap().is_none());
        let mut other = message(&device, "evt_3", "62811", "hi", T0);
        other.what =
            What::OtpExpired(OtpEnded { session_id: "s".into(), phone_number: "62811".into(), verified_at: None });
        assert!(auto_reply(&app, &mut other, "p").unwrap().is_none());
        assert_eq!(app.quota.get(), 100, "nothing reserved");
        assert_eq!(now(app.list_rules(ListRules { scope: None })).unwrap()[0].hits, 0);
    }

    #[test]
    fn a_rule_answers_a_sender_once_per_cooldown_and_every_match_counts() {
        let app = App::new(100);
        let device = app.device(1, DeviceStatus::Online);
        let rule = create(&app, spec(MatchKind::Contains, "price", "Prices")).unwrap();
        create(&app, spec(MatchKind::Contains, "hours", "9 to 5")).unwrap();
        assert!(answer(&app, &device, "evt_1", "62811", "price", T0).is_ok());
        assert_eq!(answer(&app, &device, "evt_2", "62811", "price?", T0 + 30_000), suppressed(Suppressed::Cooldown));
        assert!(answer(&app, &device, "evt_3", "62822", "price", T0 + 30_000).is_ok(), "another sender");
        assert!(answer(&app, &device, "evt_4", "62811", "hours", T0 + 45_000).is_ok(), "another rule");
        assert!(answer(&app, &device, "evt_5", "62811", "price", T0 + MINUTE + 1).is_ok(), "the cooldown is over");
        let seen = now(app.get_rule(GetRule { scope: None, id: rule.id })).unwrap();
        assert_eq!((seen.hits, seen.last_matched_at), (4, Some(T0 + MINUTE + 1)), "held back, still a hit");
        assert_eq!(app.quota.get(), 96);
    }

    #[test]
    fn trimming_forgets_replies_to_trimmed_events_and_senders_quiet_for_an_hour() {
        let app = App::new(100);
        let device = app.device(1, DeviceStatus::Online);
        create(&app, spec(MatchKind::Contains, "price", "Prices")).unwrap();
        let kept = message(&device, "evt_kept", "62811", "price", T0);
        crate::store::events::record(&app, &kept).unwrap();
        assert!(answer(&app, &device, "evt_kept", "62811", "price", T0).is_ok());
        assert!(answer(&app, &device, "evt_gone", "62822", "price", T0 + 30 * MINUTE).is_ok());
        let count = |table: &str| app.number(&format!("SELECT COUNT(*) AS n FROM {table}"), vec![]).unwrap();
        trim(&app, T0 + HOUR_MS).unwrap();
        assert!(earlier_reply(&app, "evt_kept").unwrap().is_some(), "its event is still recorded");
        assert!(earlier_reply(&app, "evt_gone").unwrap().is_none());
        assert_eq!((count("auto_reply_log"), count("auto_reply_senders")), (Some(1), Some(1)), "the later sender");
        trim(&app, T0 + 30 * MINUTE + HOUR_MS).unwrap();
        assert_eq!((count("auto_reply_log"), count("auto_reply_senders")), (Some(0), Some(0)));
    }

    #[test]
    fn a_sender_gets_at_most_the_hourly_cap_of_replies() {
        let app = App::new(100);
        let device = app.device(1, DeviceStatus::Online);
        create(&app, spec(MatchKind::Regex, ".", "ok")).unwrap();
        limits(&app, 0, 3);
        let at = |n: u64| T0 + n * 5 * MINUTE;
        for n in 0..3 {
            assert!(answer(&app, &device, &format!("evt_{n}"), "62811", "hi", at(n)).is_ok(), "reply {n}");
        }
        assert_eq!(answer(&app, &device, "evt_3", "62811", "hi", at(3)), suppressed(Suppressed::HourlyCap));
        assert!(answer(&app, &device, "evt_4", "62822", "hi", at(3)).is_ok(), "each sender has their own");
        // An hour after the first reply there is room for one more, and only one.
        assert!(answer(&app, &device, "evt_5", "62811", "hi", T0 + 60 * MINUTE).is_ok());
        assert_eq!(answer(&app, &device, "evt_6", "62811", "hi", T0 + 61 * MINUTE), suppressed(Suppressed::HourlyCap));
        let logged = app.number("SELECT COUNT(*) AS n FROM auto_reply_log", vec![]).unwrap();
        assert_eq!(logged, Some(4), "replies older than an hour are let go");
        limits(&app, 0, 0);
        assert_eq!(answer(&app, &device, "evt_7", "62833", "hi", at(20)), suppressed(Suppressed::HourlyCap), "cap 0");
    }

    #[test]
    fn another_program_answering_in_a_loop_gets_no_more_replies_until_it_pauses() {
        let app = App::new(100);
        let device = app.device(1, DeviceStatus::Online);
        create(&app, spec(MatchKind::Regex, ".", "ok")).unwrap();
        limits(&app, 0, 100);
        let quick = LOOP_ANSWER_MS / 5;
        let replied: Vec<bool> = (0..5)
            .map(|n| answer(&app, &device, &format!("evt_{n}"), "62811", "auto", T0 + n * quick).is_ok())
            .collect();
        assert_eq!(replied, [true, true, true, false, false]);
        assert_eq!(answer(&app, &device, "evt_5", "62811", "auto", T0 + 5 * quick), suppressed(Suppressed::Loop));
        // The last reply went out at `2 · quick`: an answer that long after is a person's.
        assert!(answer(&app, &device, "evt_6", "62811", "auto", T0 + 2 * quick + LOOP_ANSWER_MS).is_ok());
    }

    #[test]
    fn a_reply_that_cannot_go_out_is_noted_and_not_counted() {
        let app = App::new(1);
        let device = app.device(1, DeviceStatus::Online);
        let rule = create(&app, spec(MatchKind::Regex, ".", "ok")).unwrap();
        assert!(answer(&app, &device, "evt_1", "62811", "hi", T0).is_ok());
        assert_eq!(answer(&app, &device, "evt_2", "62822", "hi", T0), skipped("quota_exceeded"));
        app.quota.set(5);
        let offline = app.device(2, DeviceStatus::Offline);
        assert_eq!(answer(&app, &offline, "evt_3", "62833", "hi", T0), skipped("device_not_connected"));
        // A skipped reply is not held against the sender: they are answered as soon as one can go out.
        assert!(answer(&app, &device, "evt_4", "62822", "hi", T0 + 1).is_ok());
        assert_eq!(app.number("SELECT COUNT(*) AS n FROM auto_reply_log", vec![]).unwrap(), Some(2));
        assert_eq!(earlier_reply(&app, "evt_2").unwrap().map(|r| r.text), None);
        assert_eq!(now(app.get_rule(GetRule { scope: None, id: rule.id })).unwrap().hits, 4);
    }

    #[test]
    fn an_event_is_answered_once_and_a_retried_recording_finds_the_same_reply() {
        let app = App::new(10);
        let device = app.device(1, DeviceStatus::Online);
        let rule = spec(MatchKind::Regex, ".", "{Hi|Hello|Hey|Good day|Greetings} {name}");
        create(&app, rule.clone()).unwrap();
        assert!(earlier_reply(&app, "evt_1").unwrap().is_none());
        let mut event = message(&device, "evt_1", "62811", "hi", T0);
        let reply = auto_reply(&app, &mut event, "2027-01").unwrap().unwrap();
        let earlier = earlier_reply(&app, "evt_1").unwrap().unwrap();
        assert_eq!(
            (&earlier.message_id, &earlier.rule_id, &earlier.to, &earlier.text),
            (&reply.message_id, &reply.rule_id, &reply.to, &reply.text)
        );
        // The event answered again (past the app's check for a recorded event) queues no second reply.
        let mut again = message(&device, "evt_1", "62811", "hi", T0 + 2 * MINUTE);
        assert!(auto_reply(&app, &mut again, "2027-01").is_err());
        assert_eq!(earlier_reply(&app, "evt_1").unwrap().unwrap().message_id, reply.message_id);
        // The alternative is chosen by the event, so any recording of it says the same.
        let elsewhere = App::new(10);
        let device = elsewhere.device(1, DeviceStatus::Online);
        create(&elsewhere, rule).unwrap();
        let mut same = message(&device, "evt_1", "62811", "hi", T0);
        assert_eq!(auto_reply(&elsewhere, &mut same, "p").unwrap().unwrap().text, reply.text);
    }

    #[test]
    fn rules_are_checked_seen_only_by_their_device_and_capped_in_number() {
        let app = App::new(0);
        let (a, b) = (app.device(1, DeviceStatus::Online), app.device(2, DeviceStatus::Online));
        let bad = create(&app, spec(MatchKind::Regex, "(unclosed", "Hi {nope}"));
        let Err(ApiError::Validation { errors }) = bad else { panic!("{bad:?}") };
        assert_eq!(errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), ["pattern", "reply"]);
        let hostile = "'); DROP TABLE auto_replies; --";
        let open = create(&app, spec(MatchKind::Exact, hostile, "ok")).unwrap();
        assert_eq!((open.pattern.as_str(), open.match_kind, open.created_at), (hostile, MatchKind::Exact, T0));
        let owned =
            create(&app, RuleSpec { device_id: Some(a.clone()), ..spec(MatchKind::Contains, "x", "y") }).unwrap();
        assert!(owned.id.starts_with("ar_") && owned.id != open.id);
        let kinds = "SELECT COUNT(*) AS n FROM auto_replies WHERE match_kind = 'contains' AND active = 1";
        assert_eq!(app.number(kinds, vec![]).unwrap(), Some(1), "stored under the wire name");

        let list = |scope: Option<&DeviceId>| now(app.list_rules(ListRules { scope: scope.cloned() })).unwrap();
        assert_eq!(list(None).len(), 2);
        assert_eq!(list(Some(&a)), std::slice::from_ref(&owned));
        assert_eq!(list(Some(&b)), []);
        let get =
            |scope: Option<&DeviceId>, id: &str| now(app.get_rule(GetRule { scope: scope.cloned(), id: id.into() }));
        let gone = Some(ApiError::not_found("auto-reply"));
        assert_eq!(get(Some(&b), &owned.id).err(), gone, "another device's rule");
        assert_eq!(get(Some(&a), &open.id).err(), gone, "the app-wide rules are not a scoped key's");
        assert_eq!(get(None, "ar_unknown").err(), gone);
        assert_eq!(get(None, "' OR 1=1 --").err(), gone);
        let update = |scope: Option<&DeviceId>, patch: RulePatch| {
            now(app.update_rule(UpdateRule { scope: scope.cloned(), id: owned.id.clone(), patch, now: T0 + 5 }))
        };
        assert_eq!(update(Some(&b), RulePatch::default()).err(), gone);
        assert_eq!(now(app.delete_rule(DeleteRule { scope: Some(b.clone()), id: owned.id.clone() })).err(), gone);

        let patch =
            RulePatch { pattern: Some("z".into()), active: Some(false), priority: Some(-3), ..RulePatch::default() };
        let changed = update(Some(&a), patch).unwrap();
        assert_eq!(
            (changed.pattern.as_str(), changed.reply.as_str(), changed.active, changed.priority),
            ("z", "y", false, -3)
        );
        assert_eq!((changed.match_kind, changed.created_at, changed.updated_at), (MatchKind::Contains, T0 + 1, T0 + 5));
        let unusable =
            RulePatch { match_kind: Some(MatchKind::Regex), pattern: Some("[".into()), ..RulePatch::default() };
        assert!(matches!(update(None, unusable), Err(ApiError::Validation { .. })));
        assert_eq!(get(None, &owned.id), Ok(changed), "a refused change changes nothing");
        assert_eq!(now(app.delete_rule(DeleteRule { scope: Some(a.clone()), id: owned.id.clone() })), Ok(()));
        assert_eq!(now(app.delete_rule(DeleteRule { scope: None, id: owned.id.clone() })).err(), gone);

        for n in 1..MAX_RULES {
            create(&app, spec(MatchKind::Contains, &format!("p{n}"), "ok")).unwrap();
        }
        let full = create(&app, spec(MatchKind::Contains, "one more", "ok"));
        let Err(ApiError::Validation { errors }) = full else { panic!("{full:?}") };
        assert_eq!(errors[0].field, "pattern");
        assert_eq!(list(None).len() as i64, MAX_RULES);
    }
}
