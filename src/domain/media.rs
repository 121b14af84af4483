//! Media sources of send requests: data URLs and URLs wagate fetches, and deciding what a
//! file really is before WhatsApp sees it.

use base64::Engine as _;
use wagate_contract::wire::{MediaKind, MAX_MEDIA_BYTES};

use super::egress::Egress;

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

/// Parses `source`: a URL the worker may fetch under `egress`, or a base64 `data:` URL.
pub fn parse_source(source: &str, egress: &Egress) -> Result<Source, MediaError> {
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
    match egress.refusal(source) {
        Some(why) => Err(MediaError(why)),
        None => Ok(Source::Url(source.to_owned())),
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
/// page where a JPEG was promised) is refused rather than sent as garbage. Refusals name the
/// client's claim and what the bytes are (one of `infer`'s known types), never the server's
/// own words: nothing a fetched server says is echoed back.
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
    let shown = |m: &str| match declared.is_none() && served.is_some_and(|s| s.trim() == m.trim()) {
        true => "the type the server gave".to_owned(),
        false => essence(m),
    };
    if let (Some(claimed), Some(sniffed)) = (claimed, sniffed) {
        let container = |m: &str| matches!(top_level(m).as_str(), "audio" | "video") || essence(m) == "application/ogg";
        // Audio and video share containers (ogg, mp4, webm), so either reading of one is fine.
        if top_level(claimed) != top_level(sniffed) && !(container(claimed) && container(sniffed)) {
            return refuse(format!("is a {sniffed} file, not {}", shown(claimed)));
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
            refuse(format!("is {}, not a {top} file", shown(&mime)))
        }
        _ => Ok(mime),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::egress::ParsedUrl;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
    const PDF: &[u8] = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n";

    fn egress() -> Egress {
        let parse = |raw: &str| {
            raw.strip_prefix("https://").map(|rest| ParsedUrl {
                scheme: "https".into(),
                username: String::new(),
                password: String::new(),
                host: rest.split('/').next().unwrap_or_default().into(),
            })
        };
        Egress { parse, allow_loopback: false, hosts: vec![], hosts_setting: "MEDIA_HOSTS" }
    }

    #[test]
    fn data_urls_decode() {
        assert_eq!(
            parse_source("data:image/png;base64,aGk=", &egress()),
            Ok(Source::Inline { mime_type: Some("image/png".into()), bytes: b"hi".to_vec() })
        );
        assert_eq!(
            parse_source("data:;base64,aGk=", &egress()),
            Ok(Source::Inline { mime_type: None, bytes: b"hi".to_vec() })
        );
        assert!(parse_source("data:image/png,hi", &egress()).is_err(), "only base64 data URLs");
        assert!(parse_source("data:image/png;base64,@@@", &egress()).is_err());
        assert!(parse_source("data:image/png;base64,", &egress()).is_err());
    }

    #[test]
    fn other_sources_go_through_the_egress_rule() {
        let url = " https://cdn.example.com/a.jpg ";
        assert_eq!(parse_source(url, &egress()), Ok(Source::Url(url.trim().into())));
        assert!(parse_source("https://10.0.0.1/a.jpg", &egress()).unwrap_err().0.contains("public"));
        assert!(parse_source("ftp://cdn.example.com/a.jpg", &egress()).is_err());
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
        let served = "x/<script>alert(1)</script>";
        for refused in [
            settle_mime(MediaKind::Image, None, Some(served), PDF),
            settle_mime(MediaKind::Image, None, Some(served), b"?"),
        ] {
            assert!(!refused.unwrap_err().0.contains("script"), "the server's words are not echoed");
        }
    }
}
