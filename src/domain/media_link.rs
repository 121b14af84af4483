//! Time-limited download links for the media of inbound messages. A webhook receiver fetches
//! the file without an API key: the link itself is the credential, signed with a key only the
//! API tier holds and valid until `expires` (Unix seconds).

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// How long a link stays valid by default: long enough for a webhook retried over days.
pub const DEFAULT_TTL_S: u64 = 7 * 24 * 60 * 60;

/// The query string of a link, as signed and as parsed back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkQuery {
    pub mime: String,
    pub expires: u64,
    pub signature: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    BadSignature,
    Expired,
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::BadSignature => "This media link is not valid",
            Self::Expired => "This media link has expired",
        })
    }
}

fn mac(key: &[u8], sha256: &str, mime: &str, expires: u64) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    // The purpose prefix keeps these signatures from being valid for anything else the key signs.
    mac.update(format!("wagate-media-link\n{sha256}\n{mime}\n{expires}").as_bytes());
    mac
}

/// The path and query of a link to the file `sha256`, served as `mime` until `expires`.
pub fn path(key: &[u8], sha256: &str, mime: &str, expires: u64) -> String {
    let signature = hex::encode(mac(key, sha256, mime, expires).finalize().into_bytes());
    let query = LinkQuery { mime: mime.to_owned(), expires, signature };
    format!("/api/v1/media/{sha256}?{}", serde_urlencoded::to_string(query).unwrap_or_default())
}

/// Checks a presented link in constant time, then its expiry.
pub fn verify(key: &[u8], sha256: &str, query: &LinkQuery, now_s: u64) -> Result<(), LinkError> {
    let presented = hex::decode(&query.signature).map_err(|_| LinkError::BadSignature)?;
    mac(key, sha256, &query.mime, query.expires).verify_slice(&presented).map_err(|_| LinkError::BadSignature)?;
    if now_s >= query.expires {
        return Err(LinkError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "ab12";

    fn parse(path: &str) -> LinkQuery {
        serde_urlencoded::from_str(path.split_once('?').unwrap().1).unwrap()
    }

    #[test]
    fn a_link_verifies_until_it_expires() {
        let link = path(b"k", SHA, "image/jpeg", 100);
        assert!(link.starts_with("/api/v1/media/ab12?mime=image%2Fjpeg&expires=100&signature="));
        let query = parse(&link);
        assert_eq!(verify(b"k", SHA, &query, 99), Ok(()));
        assert_eq!(verify(b"k", SHA, &query, 100), Err(LinkError::Expired));
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let query = parse(&path(b"k", SHA, "image/jpeg", 100));
        assert_eq!(verify(b"other", SHA, &query, 0), Err(LinkError::BadSignature));
        assert_eq!(verify(b"k", "cd34", &query, 0), Err(LinkError::BadSignature));
        let longer = LinkQuery { expires: 10_000, ..query.clone() };
        assert_eq!(verify(b"k", SHA, &longer, 0), Err(LinkError::BadSignature));
        let html = LinkQuery { mime: "text/html".into(), ..query.clone() };
        assert_eq!(verify(b"k", SHA, &html, 0), Err(LinkError::BadSignature));
        let garbage = LinkQuery { signature: "zz".into(), ..query };
        assert_eq!(verify(b"k", SHA, &garbage, 0), Err(LinkError::BadSignature));
    }
}
