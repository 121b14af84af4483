//! The app's auto-reply rules, and the answer to an inbound message: the first active rule
//! that matches (highest `priority` first, then oldest) reserves quota for a reply from the
//! device that received the message. The device queues the reply on its normal paced path.

use serde::Deserialize;

use super::app::AppObject;
use super::{int, number, rows};
use crate::domain::autoreply::{self, reply_template, MatchKind, SentReply, HOUR_MS};
use crate::domain::error::{ApiError, FieldError, Rule};
use crate::domain::events::{AutoReplyNote, AutoReplyOutcome, Event, Incoming, What};
use crate::domain::ids::{random_hex, DeviceId};
use crate::domain::scope;
use crate::protocol::app::AutoReply;
use crate::protocol::autoreplies::{
    AutoReplyHandler, CreateRule, DeleteRule, GetRule, ListRules, RuleView, UpdateRule,
};
use crate::runtime::month_of;

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

/// A rule the object will not store, with each field at fault.
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

fn note(message: &mut Incoming, rule_id: &str, outcome: AutoReplyOutcome) {
    message.auto_reply = Some(AutoReplyNote { rule_id: rule_id.to_owned(), outcome });
}

fn skipped(message: &mut Incoming, rule_id: &str, why: &str) -> Option<AutoReply> {
    note(message, rule_id, AutoReplyOutcome::Skipped { skipped: why.to_owned() });
    None
}

impl AppObject {
    fn rule(&self, id: &str) -> Result<RuleRow, ApiError> {
        rows::<RuleRow>(self.sql().exec("SELECT * FROM auto_replies WHERE id = ?", vec![id.into()])?)?
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::not_found("auto-reply"))
    }

    /// The rule `id`, if `scope` (a device-scoped key's device) may see it.
    fn visible_rule(&self, id: &str, scope: Option<&DeviceId>) -> Result<RuleRow, ApiError> {
        self.rule(id).and_then(|r| match scope::visible(scope, r.device_id.as_deref()) {
            true => Ok(r),
            false => Err(ApiError::not_found("auto-reply")),
        })
    }

    /// The reply an earlier recording of this event queued, for a retried recording.
    pub(super) fn earlier_reply(&self, event_id: &str) -> Result<Option<AutoReply>, ApiError> {
        #[derive(Deserialize)]
        struct Logged {
            reply: String,
        }
        let logged = rows::<Logged>(
            self.sql().exec("SELECT reply FROM auto_replied WHERE event_id = ?", vec![event_id.into()])?,
        )?;
        logged.into_iter().next().map(|l| serde_json::from_str(&l.reply).map_err(ApiError::internal)).transpose()
    }

    /// Whether `rule_id` may answer `sender` now (`domain::autoreply::verdict`), counting this
    /// message towards the sender's quick answers in a row either way.
    fn ration(&self, rule_id: &str, sender: &str, now: u64) -> Result<Result<(), autoreply::Suppressed>, ApiError> {
        #[derive(Deserialize)]
        struct Streak {
            quick_answers: u32,
        }
        let sql = self.sql();
        sql.exec("DELETE FROM auto_reply_log WHERE at <= ?", vec![int(now.saturating_sub(HOUR_MS))])?;
        let replies = rows::<SentReply>(
            sql.exec("SELECT rule_id, at FROM auto_reply_log WHERE sender = ?", vec![sender.into()])?,
        )?;
        let before = rows::<Streak>(
            sql.exec("SELECT quick_answers FROM auto_reply_senders WHERE sender = ?", vec![sender.into()])?,
        )?
        .first()
        .map_or(0, |s| s.quick_answers);
        let quick = autoreply::quick_answers(before, &replies, now);
        sql.exec(
            "INSERT INTO auto_reply_senders (sender, quick_answers) VALUES (?, ?)
             ON CONFLICT (sender) DO UPDATE SET quick_answers = excluded.quick_answers",
            vec![sender.into(), int(quick.into())],
        )?;
        Ok(autoreply::verdict(&self.governor()?.auto_reply, &replies, quick, rule_id, now))
    }

    /// Answers an inbound message by the first matching rule, noting on the event what was done.
    pub(super) fn auto_reply(&self, event: &mut Event) -> Result<Option<AutoReply>, ApiError> {
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
        let mut rules = rows::<RuleRow>(self.sql().exec(
            "SELECT * FROM auto_replies WHERE active = 1 AND (device_id IS NULL OR device_id = ?)
             ORDER BY priority DESC, created_at, id",
            vec![device_id.as_str().into()],
        )?)?;
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
        let reply_text =
            reply_template(&rule.reply).map_err(ApiError::internal)?.render(value, autoreply::seed(&event_id));
        let to = from;
        self.sql().exec(
            "UPDATE auto_replies SET hits = hits + 1, last_matched_at = ? WHERE id = ?",
            vec![int(at), rule.id.as_str().into()],
        )?;
        if let Err(suppressed) = self.ration(&rule.id, &to, at)? {
            note(message, &rule.id, AutoReplyOutcome::Suppressed { suppressed });
            return Ok(None);
        }
        let reservation = match self.reserve(Some(device_id), &month_of(at), at) {
            Ok(reservation) => reservation,
            // Replying is best effort: a reply that cannot go out is noted on the event, not queued.
            Err(ApiError::QuotaExceeded) => return Ok(skipped(message, &rule.id, "quota_exceeded")),
            Err(ApiError::DeviceNotConnected) => return Ok(skipped(message, &rule.id, "device_not_connected")),
            Err(e) => return Err(e),
        };
        let reply =
            AutoReply { message_id: reservation.message_id.to_string(), rule_id: rule.id, to, text: reply_text };
        note(message, &reply.rule_id, AutoReplyOutcome::Queued { message_id: reply.message_id.clone() });
        self.sql().exec(
            "INSERT INTO auto_reply_log (sender, rule_id, at) VALUES (?, ?, ?)",
            vec![reply.to.as_str().into(), reply.rule_id.as_str().into(), int(at)],
        )?;
        self.sql().exec(
            "INSERT INTO auto_replied (event_id, reply) VALUES (?, ?)",
            vec![event_id.as_str().into(), serde_json::to_string(&reply).map_err(ApiError::internal)?.into()],
        )?;
        Ok(Some(reply))
    }
}

impl AutoReplyHandler for AppObject {
    async fn list_rules(&self, ListRules { scope }: ListRules) -> Result<Vec<RuleView>, ApiError> {
        let all = rows::<RuleRow>(
            self.sql().exec("SELECT * FROM auto_replies ORDER BY priority DESC, created_at, id", None)?,
        )?;
        Ok(all
            .into_iter()
            .filter(|r| scope::visible(scope.as_ref(), r.device_id.as_deref()))
            .map(RuleRow::view)
            .collect())
    }

    async fn create_rule(&self, CreateRule { spec, now, .. }: CreateRule) -> Result<RuleView, ApiError> {
        // The edge has already bound a scoped key's rule to its device.
        if number(&self.sql(), "SELECT COUNT(*) AS n FROM auto_replies", vec![])?.unwrap_or(0) >= MAX_RULES {
            let reason = format!("cannot be added: an app may have at most {MAX_RULES} auto-reply rules");
            return Err(ApiError::field("pattern", Rule::Invalid { reason }));
        }
        check(spec.match_kind, &spec.pattern, &spec.reply)?;
        let id = format!("ar_{}", random_hex(8));
        self.sql().exec(
            "INSERT INTO auto_replies
             (id, match_kind, pattern, reply, device_id, active, priority, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
            vec![
                id.as_str().into(),
                kind_name(spec.match_kind)?.into(),
                spec.pattern.into(),
                spec.reply.into(),
                spec.device_id.map(|d| d.to_string()).into(),
                int(spec.active as u64),
                spec.priority.into(),
                int(now),
            ],
        )?;
        Ok(self.rule(&id)?.view())
    }

    async fn get_rule(&self, GetRule { scope, id }: GetRule) -> Result<RuleView, ApiError> {
        Ok(self.visible_rule(&id, scope.as_ref())?.view())
    }

    async fn update_rule(&self, UpdateRule { scope, id, patch, now }: UpdateRule) -> Result<RuleView, ApiError> {
        let current = self.visible_rule(&id, scope.as_ref())?;
        let kind = patch.match_kind.unwrap_or(current.kind());
        check(
            kind,
            patch.pattern.as_deref().unwrap_or(&current.pattern),
            patch.reply.as_deref().unwrap_or(&current.reply),
        )?;
        self.sql().exec(
            "UPDATE auto_replies SET match_kind = ?1, pattern = COALESCE(?2, pattern), reply = COALESCE(?3, reply),
             device_id = COALESCE(?4, device_id), active = COALESCE(?5, active),
             priority = COALESCE(?6, priority), updated_at = ?7 WHERE id = ?8",
            vec![
                kind_name(kind)?.into(),
                patch.pattern.into(),
                patch.reply.into(),
                patch.device_id.map(|d| d.to_string()).into(),
                patch.active.map(|a| a as i64).into(),
                patch.priority.into(),
                int(now),
                id.as_str().into(),
            ],
        )?;
        Ok(self.rule(&id)?.view())
    }

    async fn delete_rule(&self, DeleteRule { scope, id }: DeleteRule) -> Result<(), ApiError> {
        self.visible_rule(&id, scope.as_ref())?;
        self.sql().exec("DELETE FROM auto_replies WHERE id = ?", vec![id.into()])?;
        Ok(())
    }
}

/// A match kind as stored: its wire name.
fn kind_name(kind: MatchKind) -> Result<String, ApiError> {
    match serde_json::to_value(kind).map_err(ApiError::internal)? {
        serde_json::Value::String(name) => Ok(name),
        _ => Err(ApiError::internal("a match kind is named by a string")),
    }
}
