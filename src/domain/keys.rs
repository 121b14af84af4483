//! API keys: `wg_live_<app>_<key>_<secret>`.
//!
//! The key names its app and key id so the worker can route it straight to the
//! app's Durable Object; only a SHA-256 of the whole key is stored there, and it
//! is compared in constant time. The secret part carries 128 random bits (192 in
//! keys issued before tags), so a fast hash is the right tool (a password KDF
//! protects low-entropy secrets).
//!
//! The secret ends in a tag: an HMAC, under the worker's `KEY_SECRET`, of the app id,
//! key id and random part. The worker refuses a key whose tag is wrong before any
//! object is touched, so guessed or forged keys cost no Durable Object. The tag is
//! not the whole secret: holding `KEY_SECRET` and a key's (non-secret) prefix is not
//! enough to make the key, because the object still checks the hash of the random part.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ids::{random_hex, AppId, KeyId};

/// Recognisable prefix, so secret scanners can find leaked keys.
pub const KEY_PREFIX: &str = "wg_live_";
const NONCE_BYTES: usize = 16;
const TAG_BYTES: usize = 16;
/// Keys issued before tags: 24 random bytes, checked by their app's object alone.
const UNTAGGED_SECRET_BYTES: usize = 24;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKey {
    pub app_id: AppId,
    pub key_id: KeyId,
    /// Issued with a tag (checked); `false` for keys issued before tags.
    pub tagged: bool,
}

/// A new key for `app_id`/`key_id`; returned to the caller once, never stored.
pub fn generate(key_secret: &[u8], app_id: &AppId, key_id: &KeyId) -> String {
    let nonce = random_hex(NONCE_BYTES);
    let tag = tag(key_secret, app_id, key_id, &nonce);
    format!("{}{nonce}{tag}", prefix(app_id, key_id))
}

/// The part of a key before its secret: safe to show, and enough to tell keys apart.
pub fn prefix(app_id: &AppId, key_id: &KeyId) -> String {
    format!("{KEY_PREFIX}{}_{}_", app_id.body(), key_id.body())
}

fn tag(key_secret: &[u8], app_id: &AppId, key_id: &KeyId, nonce: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key_secret).expect("HMAC accepts keys of any length");
    for part in [app_id.as_str(), key_id.as_str(), nonce] {
        mac.update(part.as_bytes());
        mac.update(b"\n");
    }
    hex::encode(&mac.finalize().into_bytes()[..TAG_BYTES])
}

/// Where a presented key routes to, if the worker could have issued it: `None` for anything
/// not shaped like our keys, or whose tag is not ours. Untagged keys (issued before tags) are
/// passed on, marked, for the caller to check that their app exists before its object is asked.
pub fn authentic(key_secret: &[u8], key: &str) -> Option<ParsedKey> {
    let mut parts = key.strip_prefix(KEY_PREFIX)?.split('_');
    let (app, id, secret) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut parsed = ParsedKey {
        app_id: AppId::parse(&format!("{}{app}", AppId::PREFIX))?,
        key_id: KeyId::parse(&format!("{}{id}", KeyId::PREFIX))?,
        tagged: true,
    };
    match secret.len() {
        n if n == 2 * UNTAGGED_SECRET_BYTES => {
            parsed.tagged = false;
            Some(parsed)
        }
        n if n == 2 * (NONCE_BYTES + TAG_BYTES) => {
            let (nonce, presented) = secret.split_at(2 * NONCE_BYTES);
            let expected = tag(key_secret, &parsed.app_id, &parsed.key_id, nonce);
            bool::from(expected.as_bytes().ct_eq(presented.as_bytes())).then_some(parsed)
        }
        _ => None,
    }
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

    const SECRET: &[u8] = b"key secret of this worker";

    #[test]
    fn generated_key_routes_to_its_app_and_key() {
        let (app, id) = (AppId::generate(), KeyId::generate());
        let key = generate(SECRET, &app, &id);
        assert!(key.starts_with("wg_live_"));
        assert_eq!(authentic(SECRET, &key), Some(ParsedKey { app_id: app.clone(), key_id: id.clone(), tagged: true }));
        assert_ne!(generate(SECRET, &app, &id), key, "each key has a fresh secret");
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        let key = generate(SECRET, &AppId::generate(), &KeyId::generate());
        assert_eq!(authentic(SECRET, &key[..key.len() - 1]), None);
        assert_eq!(authentic(SECRET, &format!("{key}_x")), None);
        assert_eq!(authentic(SECRET, &key.replacen("wg_live_", "wg_test_", 1)), None);
        assert_eq!(authentic(SECRET, "sk_live_abc123xyz789"), None);
        assert_eq!(authentic(SECRET, ""), None);
    }

    #[test]
    fn a_forged_or_altered_key_is_refused_without_its_object() {
        let (app, id) = (AppId::generate(), KeyId::generate());
        let key = generate(SECRET, &app, &id);
        assert_eq!(authentic(b"another worker's secret", &key), None, "tag under another secret");
        let last = key.chars().last().unwrap();
        let flipped = format!("{}{}", &key[..key.len() - 1], if last == '0' { '1' } else { '0' });
        assert_eq!(authentic(SECRET, &flipped), None, "one hex digit of the tag changed");
        let other_app = key.replacen(app.body(), AppId::generate().body(), 1);
        assert_eq!(authentic(SECRET, &other_app), None, "the tag binds the app id");
        let forged = format!("{}{}", prefix(&app, &id), random_hex(NONCE_BYTES + TAG_BYTES));
        assert_eq!(authentic(SECRET, &forged), None, "well-formed, random tag");
        let not_hex = format!("{}{}", prefix(&app, &id), "g".repeat(2 * (NONCE_BYTES + TAG_BYTES)));
        assert_eq!(authentic(SECRET, &not_hex), None);
    }

    #[test]
    fn untagged_keys_from_before_tags_are_passed_on_marked() {
        let (app, id) = (AppId::generate(), KeyId::generate());
        let old = format!("{}{}", prefix(&app, &id), random_hex(UNTAGGED_SECRET_BYTES));
        assert_eq!(authentic(SECRET, &old), Some(ParsedKey { app_id: app, key_id: id, tagged: false }));
    }

    #[test]
    fn hash_is_stable_and_distinguishes_keys() {
        let key = generate(SECRET, &AppId::generate(), &KeyId::generate());
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
