//! Signed, time-limited links that carry their own credential, so whoever holds one needs no
//! API key: downloads of inbound media (for webhook receivers) and device-linking pages (for a
//! phone's owner). Signed with a key only the API tier holds; each kind of link signs under its
//! own purpose, so a signature for one is never valid for another.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::ids::{AppId, DeviceId};

/// How long a media link stays valid by default: long enough for a webhook retried over days.
pub const MEDIA_TTL_S: u64 = 7 * 24 * 60 * 60;
/// How long a device-linking page works by default.
pub const LINK_PAGE_TTL_S: u64 = 15 * 60;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    BadSignature,
    Expired,
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::BadSignature => "This link is not valid",
            Self::Expired => "This link has expired",
        })
    }
}

fn mac(key: &[u8], purpose: &str, fields: &[&str], expires: u64) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(format!("wagate-{purpose}\n{}\n{expires}", fields.join("\n")).as_bytes());
    mac
}

fn sign(key: &[u8], purpose: &str, fields: &[&str], expires: u64) -> String {
    hex::encode(mac(key, purpose, fields, expires).finalize().into_bytes())
}

/// Checks a signature in constant time, then the expiry.
fn verify(
    key: &[u8],
    purpose: &str,
    fields: &[&str],
    expires: u64,
    signature: &str,
    now_s: u64,
) -> Result<(), LinkError> {
    let presented = hex::decode(signature).map_err(|_| LinkError::BadSignature)?;
    mac(key, purpose, fields, expires).verify_slice(&presented).map_err(|_| LinkError::BadSignature)?;
    if now_s >= expires {
        return Err(LinkError::Expired);
    }
    Ok(())
}

/// The query string of a media link, as signed and as parsed back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaQuery {
    pub mime: String,
    pub expires: u64,
    pub signature: String,
}

/// The path and query of a link to the file `sha256`, served as `mime` until `expires`.
pub fn media_path(key: &[u8], sha256: &str, mime: &str, expires: u64) -> String {
    let signature = sign(key, "media-link", &[sha256, mime], expires);
    let query = MediaQuery { mime: mime.to_owned(), expires, signature };
    format!("/api/v1/media/{sha256}?{}", serde_urlencoded::to_string(query).unwrap_or_default())
}

pub fn verify_media(key: &[u8], sha256: &str, query: &MediaQuery, now_s: u64) -> Result<(), LinkError> {
    verify(key, "media-link", &[sha256, &query.mime], query.expires, &query.signature, now_s)
}

/// A device-linking token: `<app id body>.<expires>.<signature>`; it names the app, so the
/// page's calls reach the device without a key.
pub fn device_token(key: &[u8], app_id: &AppId, device_id: &DeviceId, expires: u64) -> String {
    let signature = sign(key, "link-page", &[app_id.as_str(), device_id.as_str()], expires);
    format!("{}.{expires}.{signature}", app_id.body())
}

/// The app a device-linking token was issued by, if it is genuine and current.
pub fn verify_device_token(key: &[u8], device_id: &DeviceId, token: &str, now_s: u64) -> Result<AppId, LinkError> {
    let mut parts = token.split('.');
    let (Some(app), Some(expires), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(LinkError::BadSignature);
    };
    let app_id = AppId::parse(&format!("{}{app}", AppId::PREFIX)).ok_or(LinkError::BadSignature)?;
    let expires = expires.parse().map_err(|_| LinkError::BadSignature)?;
    verify(key, "link-page", &[app_id.as_str(), device_id.as_str()], expires, signature, now_s)?;
    Ok(app_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "ab12";

    fn parse(path: &str) -> MediaQuery {
        serde_urlencoded::from_str(path.split_once('?').unwrap().1).unwrap()
    }

    #[test]
    fn a_media_link_verifies_until_it_expires() {
        let link = media_path(b"k", SHA, "image/jpeg", 100);
        assert!(link.starts_with("/api/v1/media/ab12?mime=image%2Fjpeg&expires=100&signature="));
        let query = parse(&link);
        assert_eq!(verify_media(b"k", SHA, &query, 99), Ok(()));
        assert_eq!(verify_media(b"k", SHA, &query, 100), Err(LinkError::Expired));
    }

    #[test]
    fn any_change_to_a_media_link_breaks_it() {
        let query = parse(&media_path(b"k", SHA, "image/jpeg", 100));
        assert_eq!(verify_media(b"other", SHA, &query, 0), Err(LinkError::BadSignature));
        assert_eq!(verify_media(b"k", "cd34", &query, 0), Err(LinkError::BadSignature));
        let longer = MediaQuery { expires: 10_000, ..query.clone() };
        assert_eq!(verify_media(b"k", SHA, &longer, 0), Err(LinkError::BadSignature));
        let html = MediaQuery { mime: "text/html".into(), ..query.clone() };
        assert_eq!(verify_media(b"k", SHA, &html, 0), Err(LinkError::BadSignature));
        let garbage = MediaQuery { signature: "zz".into(), ..query };
        assert_eq!(verify_media(b"k", SHA, &garbage, 0), Err(LinkError::BadSignature));
    }

    #[test]
    fn a_device_token_names_its_app_and_fits_only_its_device() {
        let (app, device, other) = (
            AppId::parse("app_00112233aabbccdd").unwrap(),
            DeviceId::parse("dev_0011223344556677").unwrap(),
            DeviceId::parse("dev_8899aabbccddeeff").unwrap(),
        );
        let token = device_token(b"k", &app, &device, 500);
        assert!(token.starts_with("00112233aabbccdd.500."));
        assert_eq!(verify_device_token(b"k", &device, &token, 499), Ok(app.clone()));
        assert_eq!(verify_device_token(b"k", &device, &token, 500), Err(LinkError::Expired));
        assert_eq!(verify_device_token(b"k", &other, &token, 0), Err(LinkError::BadSignature));
        let later = token.replace(".500.", ".900.");
        assert_eq!(verify_device_token(b"k", &device, &later, 0), Err(LinkError::BadSignature));
        assert_eq!(verify_device_token(b"k", &device, "nonsense", 0), Err(LinkError::BadSignature));
        // A media signature over the same fields is no device token.
        let media = sign(b"k", "media-link", &[app.as_str(), device.as_str()], 500);
        let forged = format!("{}.500.{media}", app.body());
        assert_eq!(verify_device_token(b"k", &device, &forged, 0), Err(LinkError::BadSignature));
    }
}
