//! What an engine sends: a message checked at the edge, with its media resolved
//! to a file in the bridge's [`MediaStore`].
//!
//! The journal keeps the worker's [`Content`] (small, and what the worker asked
//! for); [`Payload::resolve`] turns it into a [`Payload`] both for a new send and
//! for one a crash interrupted, so both are checked the same way.

use std::io;

use wagate_contract::wire::{error_code, Content, MediaKind, MediaRef, SendRequest};

use crate::ids::MessageId;
use crate::jid::Jid;
use crate::media::{parse_mime_type, MediaStore, Sha256Hex, StoredMedia, MEDIA_NOT_FOUND};

/// WhatsApp refuses longer texts.
pub const MAX_TEXT_CHARS: usize = 65_536;
/// What file systems (and so the phones saving a document) accept.
pub const MAX_FILE_NAME_CHARS: usize = 255;
/// Generous for a place name or a street address, small enough to fit any screen.
pub const MAX_PLACE_CHARS: usize = 1_024;

#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingMessage {
    pub message_id: MessageId,
    pub to: Jid,
    pub payload: Payload,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Text { text: String },
    Media(OutgoingMedia),
    Location(Location),
}

/// A file to upload to WhatsApp, then send as a message.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingMedia {
    /// Image, video, audio or document: stickers are refused at the edge.
    pub kind: MediaKind,
    /// As the worker gave it, e.g. `audio/ogg; codecs=opus`.
    pub mime_type: String,
    /// What the recipient sees for a document.
    pub file_name: Option<String>,
    /// Never blank.
    pub caption: Option<String>,
    /// The bytes, present in the store.
    pub file: StoredMedia,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
    pub name: Option<String>,
    pub address: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InvalidContent {
    #[error("{0}")]
    Invalid(String),
    #[error("media_not_found: no media with sha256 {0} in the store; PUT it to /v1/media/{0} first")]
    MediaNotFound(Sha256Hex),
    #[error("media storage failed: {0}")]
    Storage(#[from] io::Error),
}

impl InvalidContent {
    /// The code a send that fails this way is reported with.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => error_code::INVALID_REQUEST,
            Self::MediaNotFound(_) => MEDIA_NOT_FOUND,
            Self::Storage(_) => "engine_error",
        }
    }
}

impl OutgoingMessage {
    /// Parses a send request from the worker; its media must already be in `media`.
    pub fn parse(req: &SendRequest, media: &MediaStore) -> Result<Self, InvalidContent> {
        Ok(Self {
            message_id: MessageId::parse(&req.message_id).map_err(|e| InvalidContent::Invalid(e.to_string()))?,
            to: Jid::parse(&req.to).map_err(|e| InvalidContent::Invalid(e.to_string()))?,
            payload: Payload::resolve(&req.content, media)?,
        })
    }
}

impl Payload {
    pub fn resolve(content: &Content, media: &MediaStore) -> Result<Self, InvalidContent> {
        match content {
            Content::Text { text } => {
                check_text("text", text).map_err(InvalidContent::Invalid)?;
                Ok(Self::Text { text: text.clone() })
            }
            Content::Media { kind: MediaKind::Sticker, .. } => {
                Err(InvalidContent::Invalid("stickers cannot be sent; send the picture as an image".into()))
            }
            Content::Media { kind, media: reference, caption } => {
                let sha256 = Sha256Hex::parse(&reference.sha256).map_err(|e| InvalidContent::Invalid(e.to_string()))?;
                let mime_type = parse_mime_type(&reference.mime_type).map_err(InvalidContent::Invalid)?;
                let file_name = reference.file_name.as_deref().map(parse_file_name).transpose()?;
                let caption = caption.as_deref().filter(|c| !c.trim().is_empty());
                if let Some(caption) = caption {
                    check_text("caption", caption).map_err(InvalidContent::Invalid)?;
                }
                let file = media.find(&sha256)?.ok_or(InvalidContent::MediaNotFound(sha256))?;
                Ok(Self::Media(OutgoingMedia {
                    kind: *kind,
                    mime_type,
                    file_name,
                    caption: caption.map(str::to_owned),
                    file,
                }))
            }
            Content::Location { latitude, longitude, name, address } => {
                Location::parse(*latitude, *longitude, name.clone(), address.clone())
                    .map(Self::Location)
                    .map_err(InvalidContent::Invalid)
            }
            Content::Reaction { .. } => Err(InvalidContent::Invalid("reactions are inbound only".into())),
        }
    }

    /// The worker's form, as the journal keeps it; media size is the stored file's.
    pub fn to_content(&self) -> Content {
        match self {
            Self::Text { text } => Content::Text { text: text.clone() },
            Self::Media(media) => Content::Media {
                kind: media.kind,
                media: MediaRef {
                    sha256: media.file.sha256().to_string(),
                    size: media.file.size(),
                    mime_type: media.mime_type.clone(),
                    file_name: media.file_name.clone(),
                },
                caption: media.caption.clone(),
            },
            Self::Location(location) => location.clone().into(),
        }
    }
}

impl Location {
    pub fn parse(latitude: f64, longitude: f64, name: Option<String>, address: Option<String>) -> Result<Self, String> {
        if !(-90.0..=90.0).contains(&latitude) {
            return Err(format!("latitude must be between -90 and 90, not {latitude}"));
        }
        if !(-180.0..=180.0).contains(&longitude) {
            return Err(format!("longitude must be between -180 and 180, not {longitude}"));
        }
        for (field, value) in [("name", &name), ("address", &address)] {
            if value.as_ref().is_some_and(|v| v.chars().count() > MAX_PLACE_CHARS) {
                return Err(format!("location {field} must be at most {MAX_PLACE_CHARS} characters"));
            }
        }
        let present = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        Ok(Self { latitude, longitude, name: present(name), address: present(address) })
    }
}

impl From<Location> for Content {
    fn from(l: Location) -> Self {
        Content::Location { latitude: l.latitude, longitude: l.longitude, name: l.name, address: l.address }
    }
}

/// A message text or caption: not blank, and not longer than WhatsApp takes.
pub fn check_text(field: &str, text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        Err(format!("{field} must not be empty"))
    } else if text.chars().count() > MAX_TEXT_CHARS {
        Err(format!("{field} must be at most {MAX_TEXT_CHARS} characters"))
    } else {
        Ok(())
    }
}

fn parse_file_name(name: &str) -> Result<String, InvalidContent> {
    let length = name.chars().count();
    if name.trim().is_empty() || length > MAX_FILE_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(InvalidContent::Invalid(format!("file_name must be 1-{MAX_FILE_NAME_CHARS} printable characters")));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;

    const TO: &str = "6281234567890@s.whatsapp.net";

    fn request(content: Content) -> SendRequest {
        SendRequest { message_id: "msg_1".into(), to: TO.into(), content, sensitive: false, expires_at_ms: None }
    }

    fn text(text: &str) -> Content {
        Content::Text { text: text.into() }
    }

    fn media(kind: MediaKind, sha256: &str, mime_type: &str, caption: Option<&str>) -> Content {
        Content::Media {
            kind,
            media: MediaRef { sha256: sha256.into(), size: 0, mime_type: mime_type.into(), file_name: None },
            caption: caption.map(Into::into),
        }
    }

    fn store() -> (MediaStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (MediaStore::open(dir.path().to_owned()).unwrap(), dir)
    }

    fn invalid(req: SendRequest, store: &MediaStore) -> String {
        match OutgoingMessage::parse(&req, store) {
            Err(InvalidContent::Invalid(why)) => why,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn texts_ids_and_recipients_are_checked() {
        let (store, _dir) = store();
        let ok = OutgoingMessage::parse(&request(text("hi")), &store).unwrap();
        assert_eq!((ok.to.user(), ok.payload), ("6281234567890", Payload::Text { text: "hi".into() }));
        assert!(invalid(SendRequest { to: "6281234567890".into(), ..request(text("hi")) }, &store).contains("JID"));
        assert!(
            invalid(SendRequest { message_id: "msg 1".into(), ..request(text("hi")) }, &store).contains("message_id")
        );
        assert!(invalid(request(text(" ")), &store).contains("empty"));
        assert!(invalid(request(text(&"x".repeat(MAX_TEXT_CHARS + 1))), &store).contains("at most"));
    }

    #[tokio::test]
    async fn media_must_be_in_the_store_and_round_trips_to_content() {
        let (store, _dir) = store();
        let sha = Sha256Hex::of(b"png bytes");
        let content = media(MediaKind::Image, sha.as_str(), "image/PNG", Some("look"));
        match OutgoingMessage::parse(&request(content.clone()), &store) {
            Err(e @ InvalidContent::MediaNotFound(_)) => {
                assert_eq!(e.code(), "media_not_found");
                assert!(e.to_string().starts_with("media_not_found: "), "{e}");
            }
            other => panic!("{other:?}"),
        }

        store.put(Bytes::from_static(b"png bytes"), None).await.unwrap();
        let message = OutgoingMessage::parse(&request(content), &store).unwrap();
        let Payload::Media(m) = &message.payload else { panic!("{message:?}") };
        assert_eq!((m.kind, m.mime_type.as_str(), m.caption.as_deref()), (MediaKind::Image, "image/png", Some("look")));
        assert_eq!(m.file.read().await.unwrap(), b"png bytes");
        // The size journaled is the stored file's, whatever the request said.
        let journaled = Content::Media {
            kind: MediaKind::Image,
            media: MediaRef { sha256: sha.to_string(), size: 9, mime_type: "image/png".into(), file_name: None },
            caption: Some("look".into()),
        };
        assert_eq!(message.payload.to_content(), journaled);

        let blank_caption = OutgoingMessage::parse(
            &request(media(MediaKind::Document, sha.as_str(), "application/pdf", Some(" "))),
            &store,
        )
        .unwrap();
        assert!(matches!(blank_caption.payload, Payload::Media(OutgoingMedia { caption: None, .. })));
        for (bad, why) in [
            (media(MediaKind::Sticker, sha.as_str(), "image/webp", None), "stickers"),
            (media(MediaKind::Image, "abc", "image/png", None), "sha256"),
            (media(MediaKind::Image, sha.as_str(), "png", None), "MIME"),
            (media(MediaKind::Image, sha.as_str(), "image/png", Some(&"x".repeat(MAX_TEXT_CHARS + 1))), "caption"),
            (Content::Reaction { target_external_id: "3EB0".into(), emoji: "👍".into() }, "inbound only"),
        ] {
            assert!(invalid(request(bad), &store).contains(why), "{why}");
        }
        let Content::Media { kind, media: mut reference, caption } =
            media(MediaKind::Document, sha.as_str(), "application/pdf", None)
        else {
            unreachable!()
        };
        reference.file_name = Some("a\nb.pdf".into());
        assert!(invalid(request(Content::Media { kind, media: reference, caption }), &store).contains("file_name"));
    }

    #[test]
    fn locations_must_be_on_earth() {
        let (store, _dir) = store();
        let location = |latitude, longitude| Content::Location {
            latitude,
            longitude,
            name: Some("Monas".into()),
            address: Some(" ".into()),
        };
        let ok = OutgoingMessage::parse(&request(location(-6.1754, 106.8272)), &store).unwrap();
        assert_eq!(
            ok.payload,
            Payload::Location(Location {
                latitude: -6.1754,
                longitude: 106.8272,
                name: Some("Monas".into()),
                address: None
            })
        );
        for (lat, long) in [(90.1, 0.0), (0.0, -180.5), (f64::NAN, 0.0), (0.0, f64::INFINITY)] {
            assert!(invalid(request(location(lat, long)), &store).contains("itude"), "{lat},{long}");
        }
        let long_name = Content::Location {
            latitude: 0.0,
            longitude: 0.0,
            name: Some("x".repeat(MAX_PLACE_CHARS + 1)),
            address: None,
        };
        assert!(invalid(request(long_name), &store).contains("name"));
    }
}
