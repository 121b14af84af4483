//! API keys: `wg_live_<app>_<key>_<secret>`.
//!
//! The key names its app and key id so the worker can route it straight to the
//! app's Durable Object; only a SHA-256 of the whole key is stored there, and it
//! is compared in constant time. The secret part carries 192 bits of entropy, so
//! a fast hash is the right tool (a password KDF protects low-entropy secrets).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ids::{random_hex, AppId, KeyId};

/// Recognisable prefix, so secret scanners can find leaked keys.
pub const KEY_PREFIX: &str = "wg_live_";
const SECRET_BYTES: usize = 24;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKey {
    pub app_id: AppId,
    pub key_id: KeyId,
}

/// A new key for `app_id`/`key_id`; returned to the caller once, never stored.
pub fn generate(app_id: &AppId, key_id: &KeyId) -> String {
    format!("{}{}", prefix(app_id, key_id), random_hex(SECRET_BYTES))
}

/// The part of a key before its secret: safe to show, and enough to tell keys apart.
pub fn prefix(app_id: &AppId, key_id: &KeyId) -> String {
    format!("{KEY_PREFIX}{}_{}_", app_id.body(), key_id.body())
}

/// Where a presented key routes to; `None` for anything not shaped like our keys.
pub fn parse(key: &str) -> Option<ParsedKey> {
    let mut parts = key.strip_prefix(KEY_PREFIX)?.split('_');
    let (app, id, secret) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || secret.len() != 2 * SECRET_BYTES {
        return None;
    }
    Some(ParsedKey {
        app_id: AppId::parse(&format!("{}{app}", AppId::PREFIX))?,
        key_id: KeyId::parse(&format!("{}{id}", KeyId::PREFIX))?,
    })
}

/// The stored form of a key.
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

pub fn hashes_match(stored: &str, presented: &str) -> bool {
    stored.as_bytes().ct_eq(presented.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_routes_to_its_app_and_key() {
        let (app, id) = (AppId::generate(), KeyId::generate());
        let key = generate(&app, &id);
        assert!(key.starts_with("wg_live_"));
        assert_eq!(parse(&key), Some(ParsedKey { app_id: app.clone(), key_id: id.clone() }));
        assert_ne!(generate(&app, &id), key, "each key has a fresh secret");
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        let key = generate(&AppId::generate(), &KeyId::generate());
        assert_eq!(parse(&key[..key.len() - 1]), None);
        assert_eq!(parse(&format!("{key}_x")), None);
        assert_eq!(parse(&key.replacen("wg_live_", "wg_test_", 1)), None);
        assert_eq!(parse("sk_live_abc123xyz789"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn hash_is_stable_and_distinguishes_keys() {
        let key = generate(&AppId::generate(), &KeyId::generate());
        assert_eq!(hash(&key), hash(&key));
        assert_eq!(hash(&key).len(), 64);
        assert!(!hash(&key).contains(&key[8..]));
        assert!(hashes_match(&hash(&key), &hash(&key)));
        assert!(!hashes_match(&hash(&key), &hash("wg_live_other")));
    }
}

/// The credential a request presents: `Authorization: Bearer …` or `X-Api-Key`. A request that
/// carries a credential we cannot use (another scheme, an empty bearer) or two different keys is
/// refused rather than let through on the other one.
pub fn presented<'a>(authorization: Option<&'a str>, x_api_key: Option<&'a str>) -> Option<&'a str> {
    let bearer = match authorization.map(str::trim) {
        None => None,
        Some(value) => {
            let (scheme, token) = value.split_once(' ')?;
            let token = token.trim();
            if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
                return None;
            }
            Some(token)
        }
    };
    match (bearer, x_api_key.map(str::trim).filter(|k| !k.is_empty())) {
        (Some(a), Some(b)) if a != b => None,
        (bearer, header) => bearer.or(header),
    }
}

#[cfg(test)]
mod presented_tests {
    use super::presented;

    #[test]
    fn bearer_or_api_key_header() {
        assert_eq!(presented(Some("Bearer abc"), None), Some("abc"));
        assert_eq!(presented(Some("bearer  abc "), Some("abc")), Some("abc"));
        assert_eq!(presented(Some("Bearer abc"), Some("other")), None, "two different keys");
        assert_eq!(presented(None, Some("abc")), Some("abc"));
        assert_eq!(presented(Some("Basic abc"), Some("key")), None, "an unusable credential is not skipped");
        assert_eq!(presented(Some("Bearer "), Some("key")), None);
        assert_eq!(presented(Some(""), Some("key")), None, "an empty Authorization header is a bad credential");
        assert_eq!(presented(Some("Bearer "), None), None);
        assert_eq!(presented(None, Some("  ")), None);
        assert_eq!(presented(None, None), None);
    }
}
