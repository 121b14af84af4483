//! Who may call an app, kept in its object: the IP allow-list and whether it is enforced, and
//! the audit trail of access changes (keys, allow-list, suspension, quota).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::app::AppObject;
use super::{int, number, rows};
use crate::domain::allowlist::{self, client_ip};
use crate::domain::error::{ApiError, Rule};
use crate::domain::ids::random_hex;
use crate::runtime::iso;

pub const SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS ip_allow (
        id TEXT PRIMARY KEY, entry TEXT NOT NULL UNIQUE, label TEXT, created_at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
        detail TEXT NOT NULL)",
];

/// How many audit entries one listing returns, newest first.
const AUDIT_PAGE: i64 = 200;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum AllowListCall {
    List,
    Add { ip_address: String, label: Option<String>, now: u64 },
    Remove { id: String, now: u64 },
    Restrict { enabled: bool, now: u64 },
}

#[derive(Deserialize)]
struct Entry {
    id: String,
    entry: String,
    label: Option<String>,
    created_at: u64,
}

impl AppObject {
    pub(super) fn audit(&self, actor: &str, action: &str, detail: Value, at: u64) -> Result<(), ApiError> {
        self.sql().exec(
            "INSERT INTO audit (at, actor, action, detail) VALUES (?, ?, ?, ?)",
            vec![int(at), actor.into(), action.into(), detail.to_string().into()],
        )?;
        Ok(())
    }

    pub(super) fn audit_trail(&self) -> Result<Value, ApiError> {
        #[derive(Deserialize)]
        struct Row {
            at: u64,
            actor: String,
            action: String,
            detail: String,
        }
        let trail =
            rows::<Row>(self.sql().exec("SELECT * FROM audit ORDER BY seq DESC LIMIT ?", vec![AUDIT_PAGE.into()])?)?;
        let entries: Vec<Value> = trail
            .into_iter()
            .map(|r| {
                let detail: Value = serde_json::from_str(&r.detail).unwrap_or(Value::Null);
                json!({"at": iso(r.at), "actor": r.actor, "action": r.action, "detail": detail})
            })
            .collect();
        Ok(json!({"audit": entries}))
    }

    fn restricted(&self) -> Result<bool, ApiError> {
        let enabled = number(&self.sql(), "SELECT COUNT(*) AS n FROM settings WHERE name = 'ip_restriction'", vec![])?;
        Ok(enabled.unwrap_or(0) > 0)
    }

    fn entries(&self) -> Result<Vec<Entry>, ApiError> {
        rows::<Entry>(self.sql().exec("SELECT * FROM ip_allow ORDER BY created_at, id", None)?)
    }

    /// Whether a request from `ip` may proceed (management of the list itself is exempt).
    pub(super) fn ip_allowed(&self, ip: Option<&str>) -> Result<(), ApiError> {
        if !self.restricted()? {
            return Ok(());
        }
        let nets: Vec<_> = self.entries()?.iter().filter_map(|e| allowlist::parse_entry(&e.entry).ok()).collect();
        match client_ip(ip) {
            Some(addr) if allowlist::allows(&nets, addr) => Ok(()),
            _ => Err(ApiError::IpNotAllowed { ip: ip.unwrap_or_default().to_owned() }),
        }
    }

    fn allow_list_json(&self) -> Result<Value, ApiError> {
        let entries: Vec<Value> = self
            .entries()?
            .iter()
            .map(|e| json!({"id": e.id, "ip_address": e.entry, "label": e.label, "created_at": iso(e.created_at)}))
            .collect();
        Ok(json!({"restriction_enabled": self.restricted()?, "count": entries.len(), "ips": entries}))
    }

    /// `actor` is the key that made the change, for the audit trail.
    pub(super) fn allow_list(&self, call: AllowListCall, actor: &str) -> Result<Value, ApiError> {
        match call {
            AllowListCall::List => self.allow_list_json(),
            AllowListCall::Add { ip_address, label, now } => {
                let net = allowlist::parse_entry(&ip_address)
                    .map_err(|reason| ApiError::field("ip_address", Rule::Invalid { reason }))?;
                let entry = net.to_string();
                let exists = number(
                    &self.sql(),
                    "SELECT COUNT(*) AS n FROM ip_allow WHERE entry = ?",
                    vec![entry.as_str().into()],
                )?;
                if exists.unwrap_or(0) > 0 {
                    return Err(ApiError::Conflict { message: format!("{entry} is already on the whitelist") });
                }
                let id = format!("ip_{}", random_hex(8));
                self.sql().exec(
                    "INSERT INTO ip_allow (id, entry, label, created_at) VALUES (?, ?, ?, ?)",
                    vec![id.as_str().into(), entry.as_str().into(), label.clone().into(), int(now)],
                )?;
                self.audit(actor, "ip_whitelist.added", json!({"id": id, "ip_address": entry, "label": label}), now)?;
                Ok(json!({"id": id, "ip_address": entry, "label": label, "created_at": iso(now)}))
            }
            AllowListCall::Remove { id, now } => {
                let entry =
                    self.entries()?.into_iter().find(|e| e.id == id).ok_or_else(|| ApiError::not_found("IP"))?;
                self.sql().exec("DELETE FROM ip_allow WHERE id = ?", vec![id.as_str().into()])?;
                self.audit(actor, "ip_whitelist.removed", json!({"id": id, "ip_address": entry.entry}), now)?;
                Ok(json!({"success": true}))
            }
            AllowListCall::Restrict { enabled, now } => {
                if enabled && self.entries()?.is_empty() {
                    let reason = "cannot be enabled while the whitelist is empty: add an IP first".into();
                    return Err(ApiError::field("enabled", Rule::Invalid { reason }));
                }
                match enabled {
                    true => self
                        .sql()
                        .exec("INSERT OR IGNORE INTO settings (name, value) VALUES ('ip_restriction', '1')", None)?,
                    false => self.sql().exec("DELETE FROM settings WHERE name = 'ip_restriction'", None)?,
                };
                self.audit(actor, "ip_whitelist.restriction", json!({"enabled": enabled}), now)?;
                self.allow_list_json()
            }
        }
    }
}
