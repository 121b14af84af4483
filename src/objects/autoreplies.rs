//! The app's auto-reply rules, and the answer to an inbound message: the first active rule
//! that matches (highest `priority` first, then oldest) reserves quota for a reply from the
//! device that received the message. The device queues the reply on its normal paced path.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::app::AppObject;
use super::{int, number, rows};
use crate::domain::autoreply::{self, reply_template, MatchKind, Matcher, SentReply, HOUR_MS};
use crate::domain::error::{ApiError, FieldError, Rule};
use crate::domain::events::{AutoReplyNote, AutoReplyOutcome, Event, Incoming, What};
use crate::domain::ids::{random_hex, DeviceId};
use crate::domain::scope;
use crate::protocol::app::AutoReply;
use crate::runtime::{iso, month_of};

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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleSpec {
    pub match_kind: MatchKind,
    pub pattern: String,
    pub reply: String,
    pub device_id: Option<DeviceId>,
    pub active: bool,
    pub priority: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RulePatch {
    pub match_kind: Option<MatchKind>,
    pub pattern: Option<String>,
    pub reply: Option<String>,
    pub device_id: Option<DeviceId>,
    pub active: Option<bool>,
    pub priority: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum AutoReplyCall {
    List,
    Create { spec: RuleSpec, now: u64 },
    Get { id: String },
    Update { id: String, patch: RulePatch, now: u64 },
    Delete { id: String },
}

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

    fn json(&self) -> Value {
        json!({
            "id": self.id, "match": self.match_kind, "pattern": self.pattern, "reply": self.reply,
            "device_id": self.device_id, "active": self.active != 0, "priority": self.priority, "hits": self.hits,
            "last_matched_at": self.last_matched_at.map(iso), "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        })
    }
}

/// Checks what the object alone can: the pattern under its match kind, the reply's variables.
fn check(kind: MatchKind, pattern: &str, reply: &str) -> Result<(), ApiError> {
    let invalid = |field: &str, reason: String| FieldError { field: field.to_owned(), rule: Rule::Invalid { reason } };
    let errors: Vec<FieldError> = [
        Matcher::new(kind, pattern).err().map(|reason| invalid("pattern", reason)),
        reply_template(reply).err().map(|e| invalid("reply", e.to_string())),
    ]
    .into_iter()
    .flatten()
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

    /// `scope`: a device-scoped key sees and changes only its device's rules.
    pub(super) fn auto_replies(&self, call: AutoReplyCall, scope: Option<&DeviceId>) -> Result<Value, ApiError> {
        let rule = |id: &str| {
            self.rule(id).and_then(|r| match scope::visible(scope, r.device_id.as_deref()) {
                true => Ok(r),
                false => Err(ApiError::not_found("auto-reply")),
            })
        };
        match call {
            AutoReplyCall::List => {
                let all = rows::<RuleRow>(
                    self.sql().exec("SELECT * FROM auto_replies ORDER BY priority DESC, created_at, id", None)?,
                )?;
                let all: Vec<RuleRow> =
                    all.into_iter().filter(|r| scope::visible(scope, r.device_id.as_deref())).collect();
                Ok(json!({"auto_replies": all.iter().map(RuleRow::json).collect::<Vec<_>>()}))
            }
            AutoReplyCall::Create { spec, now } => {
                if number(&self.sql(), "SELECT COUNT(*) AS n FROM auto_replies", vec![])?.unwrap_or(0) >= MAX_RULES {
                    let reason = format!("cannot be added: an app may have at most {MAX_RULES} auto-reply rules");
                    return Err(ApiError::field("pattern", Rule::Invalid { reason }));
                }
                check(spec.match_kind, &spec.pattern, &spec.reply)?;
                let id = format!("ar_{}", random_hex(8));
                let kind = serde_json::to_value(spec.match_kind).map_err(ApiError::internal)?;
                self.sql().exec(
                    "INSERT INTO auto_replies
                     (id, match_kind, pattern, reply, device_id, active, priority, created_at, updated_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    vec![
                        id.as_str().into(),
                        kind.as_str().unwrap_or_default().into(),
                        spec.pattern.into(),
                        spec.reply.into(),
                        spec.device_id.map(|d| d.to_string()).into(),
                        int(spec.active as u64),
                        spec.priority.into(),
                        int(now),
                        int(now),
                    ],
                )?;
                Ok(self.rule(&id)?.json())
            }
            AutoReplyCall::Get { id } => Ok(rule(&id)?.json()),
            AutoReplyCall::Update { id, patch, now } => {
                let current = rule(&id)?;
                let kind = patch.match_kind.unwrap_or(current.kind());
                check(
                    kind,
                    patch.pattern.as_deref().unwrap_or(&current.pattern),
                    patch.reply.as_deref().unwrap_or(&current.reply),
                )?;
                let kind = serde_json::to_value(kind).map_err(ApiError::internal)?;
                self.sql().exec(
                    "UPDATE auto_replies SET match_kind = ?, pattern = COALESCE(?, pattern), reply = COALESCE(?, reply),
                     device_id = COALESCE(?, device_id), active = COALESCE(?, active),
                     priority = COALESCE(?, priority), updated_at = ? WHERE id = ?",
                    vec![
                        kind.as_str().unwrap_or_default().into(),
                        patch.pattern.into(),
                        patch.reply.into(),
                        patch.device_id.map(|d| d.to_string()).into(),
                        patch.active.map(|a| a as i64).into(),
                        patch.priority.into(),
                        int(now),
                        id.as_str().into(),
                    ],
                )?;
                Ok(rule(&id)?.json())
            }
            AutoReplyCall::Delete { id } => {
                rule(&id)?;
                self.sql().exec("DELETE FROM auto_replies WHERE id = ?", vec![id.into()])?;
                Ok(json!({"success": true}))
            }
        }
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
        let rules = rows::<RuleRow>(self.sql().exec(
            "SELECT * FROM auto_replies WHERE active = 1 AND (device_id IS NULL OR device_id = ?)
             ORDER BY priority DESC, created_at, id",
            vec![device_id.as_str().into()],
        )?)?;
        let Some(rule) = rules.into_iter().find(|r| Matcher::new(r.kind(), &r.pattern).is_ok_and(|m| m.matches(&text)))
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
        // The event decides among a reply's alternatives, so a retried recording says the same.
        let seed = event_id.bytes().fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(b));
        let reply_text = reply_template(&rule.reply).map_err(ApiError::internal)?.render(value, seed);
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
