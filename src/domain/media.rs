//! Media sources of send requests: data URLs and URLs wagate fetches, and deciding what a
//! file really is before WhatsApp sees it.

use base64::Engine as _;
use wagate_contract::wire::{MediaKind, MAX_MEDIA_BYTES};

/// Where a media file comes from.
#[derive(Debug, PartialEq, Eq)]
pub enum Source {
    Url(String),
    Inline { mime_type: Option<String>, bytes: Vec<u8> },
}

/// Why a source is refused before or after fetching; worded as a predicate on the source.
#[derive(Debug, PartialEq, Eq)]
pub struct MediaError(pub String);

impl std::fmt::Display for MediaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn refuse<T>(why: impl Into<String>) -> Result<T, MediaError> {
    Err(MediaError(why.into()))
}

/// Parses `source`: an `https://` URL (or, when `allow_loopback_http`, `http://127.0.0.1…` for
/// local development) or a base64 `data:` URL.
pub fn parse_source(source: &str, allow_loopback_http: bool) -> Result<Source, MediaError> {
    let source = source.trim();
    if let Some(data) = source.strip_prefix("data:") {
        let Some((header, payload)) = data.split_once(',') else {
            return refuse("must be a data URL of the form data:<mime>;base64,<data>");
        };
        let Some(mime) = header.strip_suffix(";base64") else {
            return refuse("must be a base64 data URL (data:<mime>;base64,…)");
        };
        // Base64 inflates by 4/3: reject before decoding what could not fit anyway.
        if payload.len() as u64 > MAX_MEDIA_BYTES / 3 * 4 + 4 {
            return refuse(format!("must decode to at most {} MB", MAX_MEDIA_BYTES / (1024 * 1024)));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(payload.trim())
            .map_err(|_| MediaError("is not valid base64 after the comma".into()))?;
        if bytes.is_empty() {
            return refuse("is an empty file");
        }
        return Ok(Source::Inline { mime_type: (!mime.is_empty()).then(|| mime.to_owned()), bytes });
    }
    check_url(source, allow_loopback_http)?;
    Ok(Source::Url(source.to_owned()))
}

/// Only public `https` URLs are fetched (media) or called (webhooks): no credentials, no literal
/// private, link-local, CGNAT or loopback address, no `localhost`. Local development may use
/// `http://127.0.0.1…` when `allow_loopback_http`.
/// The host of an absolute URL, lower-cased, without port or IPv6 brackets.
pub fn url_host(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(host, _port)| host),
    };
    Some(host.to_ascii_lowercase())
}

pub fn check_url(url: &str, allow_loopback_http: bool) -> Result<(), MediaError> {
    let (scheme, rest) =
        url.split_once("://").ok_or_else(|| MediaError("must be an https:// URL or a data: URL".into()))?;
    if rest.split(['/', '?', '#']).next().unwrap_or_default().contains('@') {
        return refuse("must not carry credentials");
    }
    let host = url_host(url).unwrap_or_default();
    if host.is_empty() {
        return refuse("must name a host");
    }
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match scheme.to_ascii_lowercase().as_str() {
        "http" if loopback && allow_loopback_http => Ok(()),
        "https" if loopback && allow_loopback_http => Ok(()),
        "https" if loopback || is_private(&host) => refuse("must be publicly reachable"),
        "https" => Ok(()),
        _ => refuse("must be an https:// URL or a data: URL"),
    }
}

fn is_private(host: &str) -> bool {
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            ip.is_private()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast()
                || ip.octets()[0] == 100 && (ip.octets()[1] & 0xC0) == 64
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            ip.is_unspecified()
                || (ip.segments()[0] & 0xfe00) == 0xfc00
                || (ip.segments()[0] & 0xffc0) == 0xfe80
                || ip.to_ipv4_mapped().is_some_and(|v4| is_private(&v4.to_string()) || v4.is_loopback())
        }
        Err(_) => host.ends_with(".localhost") || host.ends_with(".internal") || host.ends_with(".local"),
    }
}

fn essence(mime: &str) -> String {
    mime.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

fn top_level(mime: &str) -> String {
    essence(mime).split('/').next().unwrap_or_default().to_owned()
}

/// The MIME type a file is sent with. The client's `mimeType` wins, then what the server said
/// it served, then what the bytes look like. A file whose bytes contradict the claim (an HTML
/// page where a JPEG was promised) is refused rather than sent as garbage.
pub fn settle_mime(
    kind: MediaKind,
    declared: Option<&str>,
    served: Option<&str>,
    bytes: &[u8],
) -> Result<String, MediaError> {
    if bytes.is_empty() {
        return refuse("is an empty file");
    }
    if bytes.len() as u64 > MAX_MEDIA_BYTES {
        return refuse(format!("is larger than {} MB", MAX_MEDIA_BYTES / (1024 * 1024)));
    }
    let served = served.filter(|m| !m.is_empty() && essence(m) != "application/octet-stream");
    if served.is_some_and(|m| essence(m) == "text/html") {
        return refuse("returned an HTML page, not a file");
    }
    let sniffed = infer::get(bytes).map(|t| t.mime_type());
    let claimed = declared.or(served);
    if let (Some(claimed), Some(sniffed)) = (claimed, sniffed) {
        let container = |m: &str| matches!(top_level(m).as_str(), "audio" | "video") || essence(m) == "application/ogg";
        // Audio and video share containers (ogg, mp4, webm), so either reading of one is fine.
        if top_level(claimed) != top_level(sniffed) && !(container(claimed) && container(sniffed)) {
            return refuse(format!("is a {sniffed} file, not {}", essence(claimed)));
        }
    }
    let mime = claimed.or(sniffed).unwrap_or("application/octet-stream").trim().to_owned();
    let expected = match kind {
        MediaKind::Image | MediaKind::Sticker => Some("image"),
        MediaKind::Video => Some("video"),
        MediaKind::Audio => Some("audio"),
        MediaKind::Document => None,
    };
    match expected {
        Some(top) if top_level(&mime) != top && !(top == "audio" && essence(&mime) == "application/ogg") => {
            refuse(format!("is {}, not a {top} file", essence(&mime)))
        }
        _ => Ok(mime),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
    const PDF: &[u8] = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n";

    #[test]
    fn data_urls_decode() {
        assert_eq!(
            parse_source("data:image/png;base64,aGk=", false),
            Ok(Source::Inline { mime_type: Some("image/png".into()), bytes: b"hi".to_vec() })
        );
        assert_eq!(
            parse_source("data:;base64,aGk=", false),
            Ok(Source::Inline { mime_type: None, bytes: b"hi".to_vec() })
        );
        assert!(parse_source("data:image/png,hi", false).is_err(), "only base64 data URLs");
        assert!(parse_source("data:image/png;base64,@@@", false).is_err());
        assert!(parse_source("data:image/png;base64,", false).is_err());
    }

    #[test]
    fn only_public_https_urls_are_fetched() {
        assert_eq!(
            parse_source("https://cdn.example.com/a.jpg", false),
            Ok(Source::Url("https://cdn.example.com/a.jpg".into()))
        );
        for bad in [
            "http://cdn.example.com/a.jpg",
            "ftp://x/y",
            "https://user:pw@cdn.example.com/a.jpg",
            "https://127.0.0.1/a.jpg",
            "https://localhost/a.jpg",
            "https://10.1.2.3/a.jpg",
            "https://192.168.0.1:8443/a.jpg",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/a",
            "https://[::1]/a",
            "https://[fd00::1]/a",
            "https://[::ffff:10.0.0.1]/a",
            "https:///a",
            "not a url",
        ] {
            assert!(parse_source(bad, false).is_err(), "{bad} must be refused");
        }
        assert!(parse_source("http://127.0.0.1:9000/a.jpg", true).is_ok(), "local development");
        assert!(parse_source("http://10.0.0.1/a.jpg", true).is_err(), "only loopback, even in development");
    }

    #[test]
    fn mime_follows_the_claim_when_the_bytes_agree() {
        assert_eq!(settle_mime(MediaKind::Image, None, Some("image/png"), PNG), Ok("image/png".into()));
        assert_eq!(settle_mime(MediaKind::Image, None, None, PNG), Ok("image/png".into()));
        assert_eq!(settle_mime(MediaKind::Document, Some("application/pdf"), None, PDF), Ok("application/pdf".into()));
        assert_eq!(
            settle_mime(MediaKind::Document, None, Some("application/octet-stream"), b"plain text, no magic"),
            Ok("application/octet-stream".into())
        );
        assert_eq!(
            settle_mime(MediaKind::Audio, Some("audio/ogg; codecs=opus"), None, b"OggS\0\x02rest-of-page"),
            Ok("audio/ogg; codecs=opus".into())
        );
    }

    #[test]
    fn contradictions_are_refused() {
        assert!(settle_mime(MediaKind::Image, Some("image/jpeg"), None, PDF)
            .unwrap_err()
            .0
            .contains("application/pdf"));
        assert!(settle_mime(MediaKind::Image, None, Some("text/html; charset=utf-8"), b"<html>")
            .unwrap_err()
            .0
            .contains("HTML"));
        assert!(settle_mime(MediaKind::Video, None, None, PNG).unwrap_err().0.contains("not a video"));
        assert!(settle_mime(MediaKind::Image, None, None, b"").is_err());
    }
}
