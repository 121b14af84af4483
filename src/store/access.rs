//! Who may call an app: the IP allow-list and whether it is enforced, and the audit trail of
//! access changes (keys, allow-list, suspension, quota). The allow-list facet is served by any
//! [`Sql`], so the app's object answers it by being its storage.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Sql;
use crate::domain::allowlist;
use crate::domain::error::{ApiError, Rule};
use crate::domain::ids::{random_hex, DeviceId, KeyId};
use crate::protocol::access::{AllowIp, AllowList, AllowListHandler, AllowedIp, DisallowIp, ListAllowed, Restrict};
use crate::protocol::app::{AppPatch, AuditEntry};

pub const SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS ip_allow (
        id TEXT PRIMARY KEY, entry TEXT NOT NULL UNIQUE, label TEXT, created_at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
        detail TEXT NOT NULL)",
];

/// How many audit entries one listing returns, newest first.
const AUDIT_PAGE: i64 = 200;

/// Who made a change the audit trail records.
#[derive(Debug, Clone, PartialEq)]
pub enum Actor {
    Operator,
    /// The gateway itself (a new quota period).
    System,
    Key(KeyId),
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Actor::Operator => f.write_str("operator"),
            Actor::System => f.write_str("system"),
            Actor::Key(key) => write!(f, "key:{key}"),
        }
    }
}

/// A change the audit trail records, with the detail it is stored under.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Change {
    AppCreated {
        key_id: KeyId,
    },
    /// Only the fields the patch set are recorded.
    AppUpdated(AppPatch),
    KeyCreated {
        key_id: KeyId,
        device_id: Option<DeviceId>,
        expires_at: Option<String>,
    },
    KeyRevoked {
        key_id: KeyId,
    },
    QuotaReset {
        from: String,
        to: String,
        used: i64,
    },
    IpAdded {
        id: String,
        ip_address: String,
        label: Option<String>,
    },
    IpRemoved {
        id: String,
        ip_address: String,
    },
    Restriction {
        enabled: bool,
    },
}

impl Change {
    pub fn action(&self) -> &'static str {
        match self {
            Change::AppCreated { .. } => "app.created",
            Change::AppUpdated(AppPatch { suspended: Some(true), .. }) => "app.suspended",
            Change::AppUpdated(AppPatch { suspended: Some(false), .. }) => "app.unsuspended",
            Change::AppUpdated(_) => "app.updated",
            Change::KeyCreated { .. } => "key.created",
            Change::KeyRevoked { .. } => "key.revoked",
            Change::QuotaReset { .. } => "quota.reset",
            Change::IpAdded { .. } => "ip_whitelist.added",
            Change::IpRemoved { .. } => "ip_whitelist.removed",
            Change::Restriction { .. } => "ip_whitelist.restriction",
        }
    }

    /// The detail as stored: a JSON object with its keys in order (and a patch's unset fields left out).
    fn detail(&self) -> String {
        let mut detail = serde_json::to_value(self).unwrap_or(Value::Null);
        if let (Change::AppUpdated(_), Value::Object(fields)) = (self, &mut detail) {
            fields.retain(|_, v| !v.is_null());
        }
        detail.to_string()
    }
}

pub fn audit(sql: &impl Sql, actor: &Actor, change: &Change, at: u64) -> Result<(), ApiError> {
    sql.run(
        "INSERT INTO audit (at, actor, action, detail) VALUES (?, ?, ?, ?)",
        vec![at.into(), actor.to_string().into(), change.action().into(), change.detail().into()],
    )?;
    Ok(())
}

pub fn audit_trail(sql: &impl Sql) -> Result<Vec<AuditEntry>, ApiError> {
    let query = "SELECT at, actor, action, detail FROM audit ORDER BY seq DESC LIMIT ?";
    Ok(sql.rows(query, vec![AUDIT_PAGE.into()])?)
}

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

fn restricted(sql: &impl Sql) -> Result<bool, ApiError> {
    Ok(sql.any("SELECT COUNT(*) AS n FROM settings WHERE name = 'ip_restriction'", vec![])?)
}

fn entries(sql: &impl Sql) -> Result<Vec<Entry>, ApiError> {
    Ok(sql.rows("SELECT * FROM ip_allow ORDER BY created_at, id", vec![])?)
}

/// Whether a request from `ip` may proceed (management of the list itself is exempt).
pub fn ip_allowed(sql: &impl Sql, ip: Option<&str>) -> Result<(), ApiError> {
    let restricted = restricted(sql)?;
    let entries = if restricted { entries(sql)? } else { vec![] };
    match allowlist::admits(restricted, entries.iter().map(|e| e.entry.as_str()), ip) {
        true => Ok(()),
        false => Err(ApiError::IpNotAllowed { ip: ip.unwrap_or_default().to_owned() }),
    }
}

fn allow_list(sql: &impl Sql) -> Result<AllowList, ApiError> {
    let ips = entries(sql)?.into_iter().map(AllowedIp::from).collect();
    Ok(AllowList { restriction_enabled: restricted(sql)?, ips })
}

impl<S: Sql> AllowListHandler for S {
    async fn list_allowed(&self, _: ListAllowed) -> Result<AllowList, ApiError> {
        allow_list(self)
    }

    async fn allow_ip(&self, op: AllowIp) -> Result<AllowedIp, ApiError> {
        let net = allowlist::parse_entry(&op.ip_address)
            .map_err(|reason| ApiError::field("ip_address", Rule::Invalid { reason }))?;
        let entry = net.to_string();
        if self.any("SELECT COUNT(*) AS n FROM ip_allow WHERE entry = ?", vec![entry.as_str().into()])? {
            let shown = allowlist::shown(&entry);
            return Err(ApiError::Conflict { message: format!("{shown} is already on the whitelist") });
        }
        let id = format!("ip_{}", random_hex(8));
        self.run(
            "INSERT INTO ip_allow (id, entry, label, created_at) VALUES (?, ?, ?, ?)",
            vec![id.as_str().into(), entry.as_str().into(), op.label.clone().into(), op.now.into()],
        )?;
        let change = Change::IpAdded { id: id.clone(), ip_address: entry.clone(), label: op.label.clone() };
        audit(self, &Actor::Key(op.actor), &change, op.now)?;
        Ok(AllowedIp { id, ip_address: entry, label: op.label, created_at: op.now })
    }

    async fn disallow_ip(&self, op: DisallowIp) -> Result<(), ApiError> {
        let entry = entries(self)?.into_iter().find(|e| e.id == op.id).ok_or_else(|| ApiError::not_found("IP"))?;
        self.run("DELETE FROM ip_allow WHERE id = ?", vec![op.id.as_str().into()])?;
        audit(self, &Actor::Key(op.actor), &Change::IpRemoved { id: op.id, ip_address: entry.entry }, op.now)
    }

    async fn restrict(&self, op: Restrict) -> Result<AllowList, ApiError> {
        allowlist::may_restrict(op.enabled, !entries(self)?.is_empty())
            .map_err(|reason| ApiError::field("enabled", Rule::Invalid { reason }))?;
        match op.enabled {
            true => self.run("INSERT OR IGNORE INTO settings (name, value) VALUES ('ip_restriction', '1')", vec![])?,
            false => self.run("DELETE FROM settings WHERE name = 'ip_restriction'", vec![])?,
        };
        audit(self, &Actor::Key(op.actor), &Change::Restriction { enabled: op.enabled }, op.now)?;
        allow_list(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::{now, Memory};

    fn store() -> Memory {
        crate::store::tenant::testing::storage()
    }

    fn key() -> KeyId {
        KeyId::parse("key_0123456789abcdef").unwrap()
    }

    fn add(sql: &Memory, ip: &str) -> Result<AllowedIp, ApiError> {
        now(sql.allow_ip(AllowIp { actor: key(), ip_address: ip.into(), label: Some("office".into()), now: 5 }))
    }

    #[test]
    fn an_unrestricted_app_admits_everyone_and_a_restricted_one_only_its_list() {
        let sql = store();
        assert_eq!(ip_allowed(&sql, Some("203.0.113.9")), Ok(()));
        assert!(matches!(add(&sql, "10.1.2.3/8"), Err(ApiError::Validation { .. })), "a range with host bits set");
        assert_eq!(add(&sql, "10.0.0.0/8").unwrap().ip_address, "10.0.0.0/8");
        now(sql.restrict(Restrict { actor: key(), enabled: true, now: 6 })).unwrap();
        assert_eq!(ip_allowed(&sql, Some("10.9.9.9")), Ok(()));
        assert_eq!(ip_allowed(&sql, Some("203.0.113.9")), Err(ApiError::IpNotAllowed { ip: "203.0.113.9".into() }));
        assert_eq!(ip_allowed(&sql, None), Err(ApiError::IpNotAllowed { ip: String::new() }));
    }

    #[test]
    fn the_list_refuses_duplicates_and_garbage_and_an_empty_list_cannot_be_enforced() {
        let sql = store();
        let enforce = || now(sql.restrict(Restrict { actor: key(), enabled: true, now: 6 }));
        assert!(matches!(enforce(), Err(ApiError::Validation { .. })), "nobody could call the app");
        add(&sql, "192.0.2.1").unwrap();
        assert!(matches!(add(&sql, "192.0.2.1/32"), Err(ApiError::Conflict { .. })));
        assert!(matches!(add(&sql, "not an address"), Err(ApiError::Validation { .. })));
        assert!(matches!(add(&sql, "'); DROP TABLE ip_allow; --"), Err(ApiError::Validation { .. })));
        assert_eq!(now(sql.list_allowed(ListAllowed { actor: key() })).unwrap().ips.len(), 1);
        let gone = now(sql.disallow_ip(DisallowIp { actor: key(), id: "ip_unknown".into(), now: 7 }));
        assert_eq!(gone, Err(ApiError::not_found("IP")));
    }

    #[test]
    fn every_change_is_audited_under_the_key_that_made_it_newest_first() {
        let sql = store();
        let entry = add(&sql, "192.0.2.1").unwrap();
        now(sql.disallow_ip(DisallowIp { actor: key(), id: entry.id.clone(), now: 7 })).unwrap();
        let trail = audit_trail(&sql).unwrap();
        let actions: Vec<_> = trail.iter().map(|e| (e.action.as_str(), e.actor.as_str(), e.at)).collect();
        assert_eq!(
            actions,
            [
                ("ip_whitelist.removed", "key:key_0123456789abcdef", 7),
                ("ip_whitelist.added", "key:key_0123456789abcdef", 5)
            ]
        );
        assert_eq!(trail[0].detail, format!(r#"{{"id":"{}","ip_address":"192.0.2.1/32"}}"#, entry.id));
    }

    #[test]
    fn details_are_stored_as_before_typed_changes() {
        let created = Change::KeyCreated { key_id: key(), device_id: None, expires_at: None };
        assert_eq!(created.detail(), r#"{"device_id":null,"expires_at":null,"key_id":"key_0123456789abcdef"}"#);
        let patch = AppPatch { suspended: Some(true), api_rpm: Some(5), ..AppPatch::default() };
        let updated = Change::AppUpdated(patch);
        assert_eq!(
            (updated.action(), updated.detail().as_str()),
            ("app.suspended", r#"{"api_rpm":5,"suspended":true}"#)
        );
        let reset = Change::QuotaReset { from: "2026-11".into(), to: "2026-12".into(), used: 3 };
        assert_eq!(reset.detail(), r#"{"from":"2026-11","to":"2026-12","used":3}"#);
        assert_eq!(Actor::System.to_string(), "system");
    }
}
