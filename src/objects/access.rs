//! Who may call an app, kept in its object: the IP allow-list and whether it is enforced, and
//! the audit trail of access changes (keys, allow-list, suspension, quota).

use serde::Deserialize;
use serde_json::{json, Value};

use super::app::AppObject;
use super::{int, number, rows};
use crate::domain::allowlist;
use crate::domain::error::{ApiError, Rule};
use crate::domain::ids::{random_hex, KeyId};
use crate::protocol::access::{AllowIp, AllowList, AllowListHandler, AllowedIp, DisallowIp, ListAllowed, Restrict};
use crate::protocol::app::AuditEntry;

pub const SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS ip_allow (
        id TEXT PRIMARY KEY, entry TEXT NOT NULL UNIQUE, label TEXT, created_at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
        detail TEXT NOT NULL)",
];

/// How many audit entries one listing returns, newest first.
const AUDIT_PAGE: i64 = 200;

#[derive(Deserialize)]
struct Entry {
    id: String,
    entry: String,
    label: Option<String>,
    created_at: u64,
}

impl From<Entry> for AllowedIp {
    fn from(e: Entry) -> Self {
        AllowedIp { id: e.id, ip_address: e.entry, label: e.label, created_at: e.created_at }
    }
}

impl AppObject {
    pub(super) fn audit(&self, actor: &str, action: &str, detail: Value, at: u64) -> Result<(), ApiError> {
        self.sql().exec(
            "INSERT INTO audit (at, actor, action, detail) VALUES (?, ?, ?, ?)",
            vec![int(at), actor.into(), action.into(), detail.to_string().into()],
        )?;
        Ok(())
    }

    pub(super) fn audit_trail(&self) -> Result<Vec<AuditEntry>, ApiError> {
        rows(
            self.sql().exec(
                "SELECT at, actor, action, detail FROM audit ORDER BY seq DESC LIMIT ?",
                vec![AUDIT_PAGE.into()],
            )?,
        )
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
        let restricted = self.restricted()?;
        let entries = if restricted { self.entries()? } else { vec![] };
        match allowlist::admits(restricted, entries.iter().map(|e| e.entry.as_str()), ip) {
            true => Ok(()),
            false => Err(ApiError::IpNotAllowed { ip: ip.unwrap_or_default().to_owned() }),
        }
    }

    fn allow_list_view(&self) -> Result<AllowList, ApiError> {
        let ips = self.entries()?.into_iter().map(AllowedIp::from).collect();
        Ok(AllowList { restriction_enabled: self.restricted()?, ips })
    }
}

/// The allow-list's changes go to the audit trail under the key that made them.
fn actor(key: &KeyId) -> String {
    format!("key:{key}")
}

impl AllowListHandler for AppObject {
    async fn list_allowed(&self, _: ListAllowed) -> Result<AllowList, ApiError> {
        self.allow_list_view()
    }

    async fn allow_ip(&self, op: AllowIp) -> Result<AllowedIp, ApiError> {
        let net = allowlist::parse_entry(&op.ip_address)
            .map_err(|reason| ApiError::field("ip_address", Rule::Invalid { reason }))?;
        let entry = net.to_string();
        let exists =
            number(&self.sql(), "SELECT COUNT(*) AS n FROM ip_allow WHERE entry = ?", vec![entry.as_str().into()])?;
        if exists.unwrap_or(0) > 0 {
            return Err(ApiError::Conflict { message: format!("{entry} is already on the whitelist") });
        }
        let id = format!("ip_{}", random_hex(8));
        self.sql().exec(
            "INSERT INTO ip_allow (id, entry, label, created_at) VALUES (?, ?, ?, ?)",
            vec![id.as_str().into(), entry.as_str().into(), op.label.clone().into(), int(op.now)],
        )?;
        let detail = json!({"id": id, "ip_address": entry, "label": op.label});
        self.audit(&actor(&op.actor), "ip_whitelist.added", detail, op.now)?;
        Ok(AllowedIp { id, ip_address: entry, label: op.label, created_at: op.now })
    }

    async fn disallow_ip(&self, op: DisallowIp) -> Result<(), ApiError> {
        let entry = self.entries()?.into_iter().find(|e| e.id == op.id).ok_or_else(|| ApiError::not_found("IP"))?;
        self.sql().exec("DELETE FROM ip_allow WHERE id = ?", vec![op.id.as_str().into()])?;
        let detail = json!({"id": op.id, "ip_address": entry.entry});
        self.audit(&actor(&op.actor), "ip_whitelist.removed", detail, op.now)
    }

    async fn restrict(&self, op: Restrict) -> Result<AllowList, ApiError> {
        allowlist::may_restrict(op.enabled, !self.entries()?.is_empty())
            .map_err(|reason| ApiError::field("enabled", Rule::Invalid { reason }))?;
        match op.enabled {
            true => {
                self.sql().exec("INSERT OR IGNORE INTO settings (name, value) VALUES ('ip_restriction', '1')", None)?
            }
            false => self.sql().exec("DELETE FROM settings WHERE name = 'ip_restriction'", None)?,
        };
        self.audit(&actor(&op.actor), "ip_whitelist.restriction", json!({"enabled": op.enabled}), op.now)?;
        self.allow_list_view()
    }
}
