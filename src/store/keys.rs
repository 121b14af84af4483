//! The app's API keys (hashes only) and the per-key rate limits: whether a presented key may
//! make a request, and what the response's rate-limit headers say.

use serde::Deserialize;

use super::access::{self, Actor, Change};
use super::{devices, tenant, Sql};
use crate::domain::error::ApiError;
use crate::domain::ids::{AppId, DeviceId, KeyId};
use crate::domain::keys;
use crate::domain::ratelimit::{self, Gcra};
use crate::protocol::app::{AddKey, Authenticate, KeyView, LimitClass, RateHeaders, Tenant};

pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS keys (
        key_id TEXT PRIMARY KEY, hash TEXT NOT NULL, device_id TEXT,
        created_at INTEGER NOT NULL, revoked_at INTEGER, last_used_at INTEGER)";

pub const RATE_LIMITS: &str = "CREATE TABLE IF NOT EXISTS rate_limits (
            key_id TEXT NOT NULL, class TEXT NOT NULL, tat INTEGER NOT NULL, PRIMARY KEY (key_id, class))";

/// Added by releases from before versioning.
pub const ADDED_COLUMNS: [(&str, &str, &str); 1] = [("keys", "expires_at", "INTEGER")];

pub fn insert(
    sql: &impl Sql,
    key_id: &KeyId,
    hash: &str,
    device_id: Option<&DeviceId>,
    expires_at: Option<u64>,
    now: u64,
) -> Result<(), ApiError> {
    sql.run(
        "INSERT INTO keys (key_id, hash, device_id, expires_at, created_at) VALUES (?, ?, ?, ?, ?)",
        vec![key_id.as_str().into(), hash.into(), device_id.map(|d| d.as_str()).into(), expires_at.into(), now.into()],
    )?;
    Ok(())
}

/// Adds a key (bound to a device of the app's, if any); `expiry` is its expiry as the audit
/// trail prints it (RFC 3339, which the runtime formats).
pub fn add(sql: &impl Sql, op: AddKey, expiry: Option<String>) -> Result<(), ApiError> {
    let AddKey { key_id, key_hash, device_id, expires_at, now } = op;
    tenant::app(sql)?;
    if let Some(device) = &device_id {
        devices::entry(sql, device)?;
    }
    insert(sql, &key_id, &key_hash, device_id.as_ref(), expires_at, now)?;
    access::audit(sql, &Actor::Operator, &Change::KeyCreated { key_id, device_id, expires_at: expiry }, now)
}

pub fn list(sql: &impl Sql) -> Result<Vec<KeyView>, ApiError> {
    Ok(sql.rows(
        "SELECT key_id, device_id, created_at, revoked_at, last_used_at, expires_at FROM keys ORDER BY created_at, key_id",
        vec![],
    )?)
}

/// Revokes a key; a revoked key keeps the time it was first revoked.
pub fn revoke(sql: &impl Sql, key_id: KeyId, now: u64) -> Result<(), ApiError> {
    if !sql.any("SELECT COUNT(*) AS n FROM keys WHERE key_id = ?", vec![key_id.as_str().into()])? {
        return Err(ApiError::not_found("key"));
    }
    sql.run(
        "UPDATE keys SET revoked_at = COALESCE(revoked_at, ?) WHERE key_id = ?",
        vec![now.into(), key_id.as_str().into()],
    )?;
    access::audit(sql, &Actor::Operator, &Change::KeyRevoked { key_id }, now)
}

#[derive(Deserialize)]
struct Key {
    hash: String,
    device_id: Option<String>,
    revoked_at: Option<u64>,
    expires_at: Option<u64>,
}

/// Whether the presented key may make this request: known, matching, live, of an app not
/// suspended, from an allowed address, within its per-minute limit (which it then counts).
pub fn check_key(sql: &impl Sql, op: Authenticate) -> Result<Tenant, ApiError> {
    let Authenticate { key_id, key_hash, class, ip, ip_exempt, now } = op;
    let app = tenant::app(sql).map_err(|_| ApiError::Unauthorized)?;
    let key = sql
        .row::<Key>(
            "SELECT hash, device_id, revoked_at, expires_at FROM keys WHERE key_id = ?",
            vec![key_id.as_str().into()],
        )?
        .ok_or(ApiError::Unauthorized)?;
    let expired = key.expires_at.is_some_and(|at| at <= now);
    if !keys::hashes_match(&key.hash, &key_hash) || key.revoked_at.is_some() || expired {
        return Err(ApiError::Unauthorized);
    }
    if app.suspended != 0 {
        return Err(ApiError::Suspended);
    }
    if !ip_exempt {
        access::ip_allowed(sql, ip.as_deref())?;
    }
    let (rpm, class_name) = match class {
        LimitClass::Api => (app.api_rpm, "api"),
        LimitClass::Auth => (app.auth_rpm, "auth"),
    };
    let gcra = Gcra { limit: rpm.max(1) as u64, window_ms: 60_000 };
    let tat = sql.number(
        "SELECT tat AS n FROM rate_limits WHERE key_id = ? AND class = ?",
        vec![key_id.as_str().into(), class_name.into()],
    )?;
    let verdict = gcra.check(tat.map(|t| t as u64), now);
    let rate = RateHeaders(ratelimit::headers(&gcra, &verdict).map(|(name, value)| (name.to_owned(), value)).into());
    if !verdict.allowed {
        return Err(ApiError::RateLimited {
            retry_after_secs: verdict.retry_after_secs,
            message: format!("Too many requests: this key may make {rpm} per minute here"),
            headers: rate.0,
        });
    }
    sql.run(
        "INSERT INTO rate_limits (key_id, class, tat) VALUES (?, ?, ?)
         ON CONFLICT (key_id, class) DO UPDATE SET tat = excluded.tat",
        vec![key_id.as_str().into(), class_name.into(), verdict.tat.into()],
    )?;
    sql.run("UPDATE keys SET last_used_at = ? WHERE key_id = ?", vec![now.into(), key_id.as_str().into()])?;
    Ok(Tenant {
        rate,
        app_id: AppId::parse(&app.app_id).ok_or_else(|| ApiError::internal("stored app id is malformed"))?,
        key_id,
        device_scope: key.device_id.as_deref().and_then(DeviceId::parse),
        default_country_code: app.default_country_code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::access::{AllowIp, AllowListHandler, Restrict};
    use crate::protocol::app::AppPatch;
    use crate::store::memory::{now as run, Memory};
    use crate::store::tenant::testing::{created, plan};

    const NOW: u64 = 1_780_000_000_000;

    fn first() -> KeyId {
        KeyId::parse("key_0123456789abcdef").unwrap()
    }

    fn auth(sql: &Memory, key_id: KeyId, hash: &str, class: LimitClass, now: u64) -> Result<Tenant, ApiError> {
        let op = Authenticate {
            key_id,
            key_hash: hash.into(),
            class,
            ip: Some("203.0.113.9".into()),
            ip_exempt: false,
            now,
        };
        check_key(sql, op)
    }

    #[test]
    fn a_bad_unknown_revoked_or_expired_key_is_refused() {
        let sql = created(plan(10), NOW);
        assert_eq!(auth(&sql, first(), "h", LimitClass::Api, NOW).unwrap().key_id, first());
        assert_eq!(auth(&sql, first(), "wrong", LimitClass::Api, NOW).map(drop), Err(ApiError::Unauthorized));
        let other = KeyId::parse("key_fedcba9876543210").unwrap();
        assert_eq!(auth(&sql, other.clone(), "h", LimitClass::Api, NOW).map(drop), Err(ApiError::Unauthorized));
        let add_op = AddKey {
            key_id: other.clone(),
            key_hash: "h2".into(),
            device_id: None,
            expires_at: Some(NOW + 10),
            now: NOW,
        };
        add(&sql, add_op, Some("later".into())).unwrap();
        assert!(auth(&sql, other.clone(), "h2", LimitClass::Api, NOW + 9).is_ok());
        assert_eq!(auth(&sql, other, "h2", LimitClass::Api, NOW + 10).map(drop), Err(ApiError::Unauthorized));
        revoke(&sql, first(), NOW + 1).unwrap();
        revoke(&sql, first(), NOW + 2).unwrap();
        assert_eq!(list(&sql).unwrap()[0].revoked_at, Some(NOW + 1), "the first revocation stands");
        assert_eq!(auth(&sql, first(), "h", LimitClass::Api, NOW + 3).map(drop), Err(ApiError::Unauthorized));
        let unknown = KeyId::parse("key_1111111111111111").unwrap();
        assert_eq!(revoke(&sql, unknown, NOW), Err(ApiError::not_found("key")));
        let bound = AddKey {
            key_id: KeyId::parse("key_2222222222222222").unwrap(),
            key_hash: "h3".into(),
            device_id: DeviceId::parse("dev_0123456789abcdef"),
            expires_at: None,
            now: NOW,
        };
        assert_eq!(add(&sql, bound, None), Err(ApiError::not_found("device")), "another app's device");
    }

    #[test]
    fn a_suspended_app_is_refused_after_its_key_checks_out() {
        let sql = created(plan(10), NOW);
        tenant::update(&sql, AppPatch { suspended: Some(true), ..AppPatch::default() }, NOW).unwrap();
        assert_eq!(auth(&sql, first(), "h", LimitClass::Api, NOW).map(drop), Err(ApiError::Suspended));
        assert_eq!(auth(&sql, first(), "wrong", LimitClass::Api, NOW).map(drop), Err(ApiError::Unauthorized));
    }

    #[test]
    fn the_rate_limit_is_per_class_and_says_so_in_its_headers() {
        let sql = created(plan(10), NOW); // api 2 per minute, auth 1
        let ok = auth(&sql, first(), "h", LimitClass::Api, NOW).unwrap();
        assert_eq!(ok.rate.0[0], ("ratelimit-policy".to_owned(), "\"default\";q=2;w=60".to_owned()));
        assert_eq!(ok.rate.0[1].1, "\"default\";r=1;t=30");
        auth(&sql, first(), "h", LimitClass::Api, NOW).unwrap();
        match auth(&sql, first(), "h", LimitClass::Api, NOW) {
            Err(ApiError::RateLimited { retry_after_secs, headers, .. }) => {
                assert_eq!(retry_after_secs, 30);
                assert_eq!(headers[1].1, "\"default\";r=0;t=60");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(auth(&sql, first(), "h", LimitClass::Auth, NOW).is_ok(), "auth has its own budget");
        assert!(auth(&sql, first(), "h", LimitClass::Api, NOW + 30_000).is_ok(), "and it refills");
        assert_eq!(list(&sql).unwrap()[0].last_used_at, Some(NOW + 30_000));
    }

    #[test]
    fn a_restricted_app_admits_only_its_addresses_except_for_the_list_itself() {
        let sql = created(plan(10), NOW);
        run(sql.allow_ip(AllowIp { actor: first(), ip_address: "10.0.0.0/8".into(), label: None, now: NOW })).unwrap();
        run(sql.restrict(Restrict { actor: first(), enabled: true, now: NOW })).unwrap();
        let from = |ip: &str, ip_exempt: bool| {
            let op = Authenticate {
                key_id: first(),
                key_hash: "h".into(),
                class: LimitClass::Auth,
                ip: Some(ip.into()),
                ip_exempt,
                now: NOW,
            };
            check_key(&sql, op).map(drop)
        };
        assert_eq!(from("203.0.113.9", false), Err(ApiError::IpNotAllowed { ip: "203.0.113.9".into() }));
        assert_eq!(from("10.1.2.3", false), Ok(()));
        assert_eq!(
            from("203.0.113.9", true),
            Err(ApiError::RateLimited {
                retry_after_secs: 60,
                message: "Too many requests: this key may make 1 per minute here".into(),
                headers: vec![
                    ("ratelimit-policy".into(), "\"default\";q=1;w=60".into()),
                    ("ratelimit".into(), "\"default\";r=0;t=60".into())
                ]
            }),
            "exempt from the list, not from the limit"
        );
    }
}
