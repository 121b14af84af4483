//! One-time codes (NIST SP 800-63B out-of-band authenticators, OWASP OTP guidance): uniform
//! digits from the CSPRNG, only a keyed hash stored, constant-time checks, five attempts,
//! a fixed lifetime, and a session that verifies at most once.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub const DEFAULT_LENGTH: usize = 6;
pub const MIN_LENGTH: usize = 4;
pub const MAX_LENGTH: usize = 8;
pub const DEFAULT_TTL_SECS: u64 = 300;
pub const MAX_ATTEMPTS: u32 = 5;
pub const TEMPLATE_MAX_CHARS: usize = 1024;
pub const CODE_PLACEHOLDER: &str = "{code}";
pub const DEFAULT_TEMPLATE: &str = "Your verification code is {code}. Do not share this code with anyone.";

/// A code of `length` uniformly random digits. Bytes of 250 and above are rejected, so every
/// digit is equally likely (250 is the largest multiple of 10 that fits a byte).
pub fn generate_code(length: usize) -> String {
    let mut code = String::with_capacity(length);
    let mut pool = [0u8; 32];
    while code.len() < length {
        getrandom::getrandom(&mut pool).expect("the platform CSPRNG is available");
        for b in pool.iter().filter(|&&b| b < 250) {
            if code.len() == length {
                break;
            }
            code.push(char::from(b'0' + b % 10));
        }
    }
    code
}

/// The stored form of a code: HMAC-SHA256 under a server secret, bound to its session, so a
/// leaked table reveals nothing and one session's hash is useless for another.
pub fn hash_code(secret: &[u8], session_id: &str, code: &str) -> Vec<u8> {
    mac(secret, session_id, code).finalize().into_bytes().to_vec()
}

fn mac(secret: &[u8], session_id: &str, code: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(session_id.as_bytes());
    mac.update(b"\0");
    mac.update(code.as_bytes());
    mac
}

/// Names the object that holds one phone's sessions for one app. Keyed, so the name reveals
/// neither the phone nor the app, and cannot be derived by a client.
pub fn phone_key(secret: &[u8], app_id: &str, phone: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(b"otp-phone\0");
    mac.update(app_id.as_bytes());
    mac.update(b"\0");
    mac.update(phone.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..8])
}

/// A UUID-shaped session id: the phone key (16 hex, routing) then 64 random bits, so the id
/// finds its object with no lookup and cannot be guessed.
pub fn new_session_id(phone_key: &str) -> String {
    let h = format!("{phone_key}{}", super::ids::random_hex(8));
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// The phone key a session id routes to, if it is shaped like one of ours.
pub fn phone_key_of(session_id: &str) -> Option<String> {
    let parts: Vec<&str> = session_id.split('-').collect();
    let shaped = parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    shaped.then(|| parts.concat()[..16].to_owned())
}

/// Renders the message; the template was checked to hold `{code}`.
pub fn render(template: &str, code: &str) -> String {
    template.replace(CODE_PLACEHOLDER, code)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Pending,
    Verified,
    /// Locked after the last allowed wrong attempt.
    Locked,
    /// Replaced by a newer `start` for the same phone.
    Superseded,
    /// Past its expiry, as the object's alarm found it.
    Expired,
}

impl SessionState {
    pub const ALL: [Self; 5] = [Self::Pending, Self::Verified, Self::Locked, Self::Superseded, Self::Expired];

    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Verified => "verified",
            Self::Locked => "locked",
            Self::Superseded => "superseded",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

/// Ended sessions and send records are kept this long after they end, then purged.
pub const KEEP_MS: u64 = 24 * 60 * 60 * 1000;

/// When a phone's object has work again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// An ended session's event is still to be recorded: retry shortly.
    Soon,
    At(u64),
}

/// The next alarm, from what the object still holds: an unrecorded ended session, the
/// earliest expiry of a pending one, the oldest send record (purged `KEEP_MS` after it);
/// none when nothing is left.
pub fn next_wake(unrecorded: bool, next_expiry: Option<u64>, oldest_send: Option<u64>) -> Option<Wake> {
    if unrecorded {
        return Some(Wake::Soon);
    }
    next_expiry.or(oldest_send.map(|at| at + KEEP_MS)).map(Wake::At)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub code_hash: Vec<u8>,
    pub attempts: u32,
    pub state: SessionState,
    pub expires_at_ms: u64,
}

/// What a verification attempt comes to. Each failure is final for that attempt only;
/// `Expired` and `MaxAttempts` are final for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Verified,
    InvalidCode { attempts_left: u32 },
    Expired,
    MaxAttempts,
}

impl Session {
    /// Checks `code` and returns the session as it stands afterwards. A verified, superseded
    /// or expired session never verifies again, whatever the code.
    pub fn verify(&self, secret: &[u8], session_id: &str, code: &str, now_ms: u64) -> (Verdict, Session) {
        let mut next = self.clone();
        let verdict = match self.state {
            SessionState::Locked => Verdict::MaxAttempts,
            SessionState::Verified | SessionState::Superseded | SessionState::Expired => Verdict::Expired,
            SessionState::Pending if now_ms >= self.expires_at_ms => Verdict::Expired,
            SessionState::Pending => {
                next.attempts += 1;
                if mac(secret, session_id, code).verify_slice(&self.code_hash).is_ok() {
                    next.state = SessionState::Verified;
                    Verdict::Verified
                } else if next.attempts >= MAX_ATTEMPTS {
                    next.state = SessionState::Locked;
                    Verdict::MaxAttempts
                } else {
                    Verdict::InvalidCode { attempts_left: MAX_ATTEMPTS - next.attempts }
                }
            }
        };
        (verdict, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"otp-secret";
    const SID: &str = "3bbaaf0b-3c11-44a2-8a7e-4edc426c5fcd";

    fn session(code: &str) -> Session {
        Session {
            code_hash: hash_code(SECRET, SID, code),
            attempts: 0,
            state: SessionState::Pending,
            expires_at_ms: 1_000,
        }
    }

    #[test]
    fn codes_have_the_asked_length_and_only_digits() {
        for length in MIN_LENGTH..=MAX_LENGTH {
            let code = generate_code(length);
            assert_eq!(code.len(), length);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn digits_are_uniform() {
        // 400,000 digits. Chi-square with 9 degrees of freedom exceeds 45 with probability about
        // one in a million for uniform digits; the modulo bias of `byte % 10` (digits 0-5 at
        // 26/256, 6-9 at 25/256) gives about 146 here, so the test tells the two apart surely.
        let mut counts = [0u64; 10];
        for _ in 0..50_000 {
            for b in generate_code(8).bytes() {
                counts[(b - b'0') as usize] += 1;
            }
        }
        let expected = 40_000.0;
        let chi2: f64 = counts.iter().map(|&c| (c as f64 - expected).powi(2) / expected).sum();
        assert!(chi2 < 45.0, "digit counts {counts:?} (chi-square {chi2:.1}) are not uniform");
    }

    #[test]
    fn the_hash_is_keyed_and_bound_to_its_session() {
        let h = hash_code(SECRET, SID, "123456");
        assert_eq!(h, hash_code(SECRET, SID, "123456"));
        assert_ne!(h, hash_code(b"other", SID, "123456"));
        assert_ne!(h, hash_code(SECRET, "another-session", "123456"));
        assert_ne!(h, hash_code(SECRET, SID, "123457"));
    }

    #[test]
    fn right_code_verifies_once() {
        let (verdict, after) = session("123456").verify(SECRET, SID, "123456", 10);
        assert_eq!(verdict, Verdict::Verified);
        assert_eq!(after.state, SessionState::Verified);
        assert_eq!(after.verify(SECRET, SID, "123456", 11).0, Verdict::Expired, "a session verifies at most once");
    }

    #[test]
    fn five_wrong_attempts_lock_the_session_even_for_the_right_code() {
        let mut s = session("123456");
        for left in (1..MAX_ATTEMPTS).rev() {
            let (verdict, next) = s.verify(SECRET, SID, "000000", 10);
            assert_eq!(verdict, Verdict::InvalidCode { attempts_left: left });
            s = next;
        }
        let (verdict, s) = s.verify(SECRET, SID, "000000", 10);
        assert_eq!((verdict, s.state), (Verdict::MaxAttempts, SessionState::Locked));
        assert_eq!(s.verify(SECRET, SID, "123456", 10).0, Verdict::MaxAttempts);
    }

    #[test]
    fn expired_and_superseded_sessions_never_verify() {
        assert_eq!(session("123456").verify(SECRET, SID, "123456", 1_000).0, Verdict::Expired);
        let superseded = Session { state: SessionState::Superseded, ..session("123456") };
        assert_eq!(superseded.verify(SECRET, SID, "123456", 10).0, Verdict::Expired);
        let expired = Session { state: SessionState::Expired, ..session("123456") };
        assert_eq!(expired.verify(SECRET, SID, "123456", 10), (Verdict::Expired, expired.clone()));
    }

    #[test]
    fn states_keep_their_stored_names() {
        let names: Vec<&str> = SessionState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["pending", "verified", "locked", "superseded", "expired"]);
        for state in SessionState::ALL {
            assert_eq!(SessionState::parse(state.as_str()), Some(state));
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
        assert_eq!(SessionState::parse("gone"), None);
    }

    #[test]
    fn the_alarm_comes_back_for_what_is_left() {
        assert_eq!(next_wake(true, Some(5), Some(1)), Some(Wake::Soon), "an unrecorded event first");
        assert_eq!(next_wake(false, Some(5), Some(1)), Some(Wake::At(5)), "then the next expiry");
        assert_eq!(next_wake(false, None, Some(1)), Some(Wake::At(1 + KEEP_MS)), "then the purge of the oldest send");
        assert_eq!(next_wake(false, None, None), None);
    }

    #[test]
    fn session_ids_route_to_their_phone_and_are_unguessable() {
        let key = phone_key(SECRET, "app_1", "6281234567890");
        assert_eq!(key.len(), 16);
        assert_ne!(key, phone_key(SECRET, "app_2", "6281234567890"), "apps never share an object");
        assert_ne!(key, phone_key(b"other", "app_1", "6281234567890"));
        let id = new_session_id(&key);
        assert_eq!(id.len(), 36);
        assert_eq!(phone_key_of(&id), Some(key.clone()));
        assert_ne!(new_session_id(&key), id);
        assert_eq!(phone_key_of("3bbaaf0b-3c11-44a2-8a7e-4edc426c5fcd").map(|k| k.len()), Some(16));
        assert_eq!(phone_key_of("3BBAAF0B-3C11-44A2-8A7E-4EDC426C5FCD"), None);
        assert_eq!(phone_key_of("not-a-session"), None);
    }

    #[test]
    fn templates_render_the_code() {
        assert_eq!(
            render(DEFAULT_TEMPLATE, "4821"),
            "Your verification code is 4821. Do not share this code with anyone."
        );
        assert_eq!(render("{code} is your code ({code})", "12"), "12 is your code (12)");
    }
}

pub const DEFAULT_RESEND_COOLDOWN_SECS: u64 = 30;
pub const DEFAULT_HOURLY_CAP: usize = 5;
const HOUR_MS: u64 = 60 * 60 * 1000;

/// Per-phone limits on sending codes, on top of the per-key rate limit: a phone cannot be
/// flooded, and codes cannot be farmed by asking again and again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    pub resend_cooldown_ms: u64,
    pub hourly_cap: usize,
}

impl Throttle {
    /// `Ok` if a code may go to a phone that was sent codes at `recent` (ms, any order);
    /// else the seconds to wait.
    pub fn check(&self, recent: &[u64], now_ms: u64) -> Result<(), u64> {
        let within_hour: Vec<u64> = recent.iter().copied().filter(|&t| now_ms < t + HOUR_MS).collect();
        let wait_cooldown =
            within_hour.iter().max().map_or(0, |&last| (last + self.resend_cooldown_ms).saturating_sub(now_ms));
        let wait_cap = if within_hour.len() >= self.hourly_cap {
            // The oldest send in the window must age out before another fits.
            let mut sorted = within_hour.clone();
            sorted.sort_unstable();
            (sorted[within_hour.len() - self.hourly_cap] + HOUR_MS).saturating_sub(now_ms)
        } else {
            0
        };
        match wait_cooldown.max(wait_cap) {
            0 => Ok(()),
            wait_ms => Err(wait_ms.div_ceil(1000)),
        }
    }
}

#[cfg(test)]
mod throttle_tests {
    use super::*;

    const T: Throttle = Throttle { resend_cooldown_ms: 30_000, hourly_cap: 3 };
    const NOW: u64 = 10 * HOUR_MS;

    #[test]
    fn first_code_goes_at_once() {
        assert_eq!(T.check(&[], NOW), Ok(()));
    }

    #[test]
    fn resend_waits_for_the_cooldown() {
        assert_eq!(T.check(&[NOW - 10_000], NOW), Err(20));
        assert_eq!(T.check(&[NOW - 29_500], NOW), Err(1), "rounded up, never 0");
        assert_eq!(T.check(&[NOW - 30_000], NOW), Ok(()));
    }

    #[test]
    fn hourly_cap_waits_for_the_oldest_to_age_out() {
        let sent = [NOW - 50 * 60_000, NOW - 20 * 60_000, NOW - 10 * 60_000];
        assert_eq!(T.check(&sent, NOW), Err(10 * 60));
        assert_eq!(T.check(&sent, NOW + 10 * 60_000), Ok(()));
        let old = [NOW - 2 * HOUR_MS, NOW - 90 * 60_000, NOW - 61 * 60_000];
        assert_eq!(T.check(&old, NOW), Ok(()), "sends older than an hour do not count");
    }
}
