//! WhatsApp message bodies: assembling what we send, reading what arrives.
//!
//! whatsapp-rust uploads media (encrypting it on the way) but leaves building
//! the message to the caller: the CDN location and the keys of the upload have
//! to land in the matching fields of an `ImageMessage`, `VideoMessage`, … or the
//! recipient's phone shows a broken attachment. [`media_message`] is that step.

use wagate_contract::wire::{Content, MediaKind};
use whatsapp_rust::download::MediaType;
use whatsapp_rust::upload::UploadResponse;
use whatsapp_rust::wacore::download::Downloadable;
use whatsapp_rust::wacore::proto_helpers::{MessageBuilderExt, MessageExt};
use whatsapp_rust::waproto::buffa::MessageField;
use whatsapp_rust::waproto::whatsapp as wa;

/// The result of an upload, as a media message needs it. Mirrors
/// whatsapp-rust's `UploadResponse`, which cannot be built outside that crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedMedia {
    pub url: String,
    pub direct_path: String,
    pub media_key: [u8; 32],
    pub file_enc_sha256: [u8; 32],
    pub file_sha256: [u8; 32],
    pub file_length: u64,
    /// Unix seconds when the media key was made.
    pub media_key_timestamp: i64,
    /// Seek table for progressive playback (audio and video only).
    pub streaming_sidecar: Option<Vec<u8>>,
}

impl From<UploadResponse> for UploadedMedia {
    fn from(r: UploadResponse) -> Self {
        Self {
            url: r.url,
            direct_path: r.direct_path,
            media_key: r.media_key,
            file_enc_sha256: r.file_enc_sha256,
            file_sha256: r.file_sha256,
            file_length: r.file_length,
            media_key_timestamp: r.media_key_timestamp,
            streaming_sidecar: r.streaming_sidecar,
        }
    }
}

/// What the bytes are uploaded as: it selects the encryption keys and the CDN path.
pub fn upload_type(kind: MediaKind) -> MediaType {
    match kind {
        MediaKind::Image => MediaType::Image,
        MediaKind::Video => MediaType::Video,
        MediaKind::Audio => MediaType::Audio,
        MediaKind::Document => MediaType::Document,
        MediaKind::Sticker => MediaType::Sticker,
    }
}

/// Describes uploaded media to its recipient. Audio and stickers carry no
/// caption on WhatsApp, so one given for them is dropped.
pub fn media_message(
    kind: MediaKind,
    upload: UploadedMedia,
    mime_type: &str,
    caption: Option<&str>,
    file_name: Option<&str>,
) -> wa::Message {
    let u = upload;
    let mimetype = Some(mime_type.to_owned());
    let caption = caption.filter(|c| !c.is_empty()).map(str::to_owned);
    let mut message = wa::Message::default();
    match kind {
        MediaKind::Image => {
            message.image_message = MessageField::some(wa::message::ImageMessage {
                url: Some(u.url),
                direct_path: Some(u.direct_path),
                media_key: Some(u.media_key.to_vec()),
                file_enc_sha256: Some(u.file_enc_sha256.to_vec()),
                file_sha256: Some(u.file_sha256.to_vec()),
                file_length: Some(u.file_length),
                media_key_timestamp: Some(u.media_key_timestamp),
                mimetype,
                caption,
                ..Default::default()
            });
        }
        MediaKind::Video => {
            message.video_message = MessageField::some(wa::message::VideoMessage {
                url: Some(u.url),
                direct_path: Some(u.direct_path),
                media_key: Some(u.media_key.to_vec()),
                file_enc_sha256: Some(u.file_enc_sha256.to_vec()),
                file_sha256: Some(u.file_sha256.to_vec()),
                file_length: Some(u.file_length),
                media_key_timestamp: Some(u.media_key_timestamp),
                streaming_sidecar: u.streaming_sidecar,
                mimetype,
                caption,
                ..Default::default()
            });
        }
        MediaKind::Audio => {
            message.audio_message = MessageField::some(wa::message::AudioMessage {
                url: Some(u.url),
                direct_path: Some(u.direct_path),
                media_key: Some(u.media_key.to_vec()),
                file_enc_sha256: Some(u.file_enc_sha256.to_vec()),
                file_sha256: Some(u.file_sha256.to_vec()),
                file_length: Some(u.file_length),
                media_key_timestamp: Some(u.media_key_timestamp),
                streaming_sidecar: u.streaming_sidecar,
                mimetype,
                ..Default::default()
            });
        }
        MediaKind::Document => {
            let file_name = file_name.filter(|n| !n.is_empty()).unwrap_or("file").to_owned();
            message.document_message = MessageField::some(wa::message::DocumentMessage {
                url: Some(u.url),
                direct_path: Some(u.direct_path),
                media_key: Some(u.media_key.to_vec()),
                file_enc_sha256: Some(u.file_enc_sha256.to_vec()),
                file_sha256: Some(u.file_sha256.to_vec()),
                file_length: Some(u.file_length),
                media_key_timestamp: Some(u.media_key_timestamp),
                mimetype,
                title: Some(file_name.clone()),
                file_name: Some(file_name),
                caption,
                ..Default::default()
            });
        }
        MediaKind::Sticker => {
            message.sticker_message = MessageField::some(wa::message::StickerMessage {
                url: Some(u.url),
                direct_path: Some(u.direct_path),
                media_key: Some(u.media_key.to_vec()),
                file_enc_sha256: Some(u.file_enc_sha256.to_vec()),
                file_sha256: Some(u.file_sha256.to_vec()),
                file_length: Some(u.file_length),
                media_key_timestamp: Some(u.media_key_timestamp),
                mimetype,
                ..Default::default()
            });
        }
    }
    message
}

pub fn text_message(text: &str) -> wa::Message {
    wa::Message::text(text)
}

pub fn location_message(latitude: f64, longitude: f64, name: Option<&str>, address: Option<&str>) -> wa::Message {
    wa::Message {
        location_message: MessageField::some(wa::message::LocationMessage {
            degrees_latitude: Some(latitude),
            degrees_longitude: Some(longitude),
            name: name.map(str::to_owned),
            address: address.map(str::to_owned),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What an inbound message carries, as far as wagate forwards it.
#[derive(Debug, Clone, PartialEq)]
pub enum InboundBody {
    /// Complete as it is.
    Ready(Content),
    /// Media whose bytes still have to be downloaded (and decrypted) first.
    Media(InboundMedia),
    /// A message a person sent that wagate does not forward (a poll, a contact
    /// card, …), by name: it is refused and counted at the bridge boundary.
    Unsupported(&'static str),
}

#[derive(Debug, Clone, PartialEq)]
pub struct InboundMedia {
    pub kind: MediaKind,
    pub mime_type: String,
    pub caption: Option<String>,
    pub file_name: Option<String>,
    /// Plaintext size as the sender declared it.
    pub declared_size: Option<u64>,
    pub source: MediaSource,
}

/// The proto a download needs (CDN path and keys), per kind.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaSource {
    Image(Box<wa::message::ImageMessage>),
    Video(Box<wa::message::VideoMessage>),
    Audio(Box<wa::message::AudioMessage>),
    Document(Box<wa::message::DocumentMessage>),
    Sticker(Box<wa::message::StickerMessage>),
}

impl MediaSource {
    pub fn downloadable(&self) -> &dyn Downloadable {
        match self {
            Self::Image(m) => m.as_ref(),
            Self::Video(m) => m.as_ref(),
            Self::Audio(m) => m.as_ref(),
            Self::Document(m) => m.as_ref(),
            Self::Sticker(m) => m.as_ref(),
        }
    }
}

/// Reads the body of an inbound message through its wrappers (ephemeral,
/// view-once, device-sent, document-with-caption, edit). `None` for what wagate
/// does not forward (polls, contacts, calls, protocol messages, …).
pub fn inbound_body(message: &wa::Message) -> Option<InboundBody> {
    let base = message.get_base_message();
    if let Some(text) = message.text_content() {
        return Some(InboundBody::Ready(Content::Text { text: text.to_owned() }));
    }
    if let Some(m) = base.image_message.as_option() {
        return Some(media(MediaKind::Image, &m.mimetype, "image/jpeg", &m.caption, &None, m.file_length, || {
            MediaSource::Image(Box::new(m.clone()))
        }));
    }
    if let Some(m) = base.video_message.as_option() {
        return Some(media(MediaKind::Video, &m.mimetype, "video/mp4", &m.caption, &None, m.file_length, || {
            MediaSource::Video(Box::new(m.clone()))
        }));
    }
    if let Some(m) = base.audio_message.as_option() {
        return Some(media(MediaKind::Audio, &m.mimetype, "audio/ogg", &None, &None, m.file_length, || {
            MediaSource::Audio(Box::new(m.clone()))
        }));
    }
    if let Some(m) = base.document_message.as_option() {
        let mime = "application/octet-stream";
        return Some(media(MediaKind::Document, &m.mimetype, mime, &m.caption, &m.file_name, m.file_length, || {
            MediaSource::Document(Box::new(m.clone()))
        }));
    }
    if let Some(m) = base.sticker_message.as_option() {
        return Some(media(MediaKind::Sticker, &m.mimetype, "image/webp", &None, &None, m.file_length, || {
            MediaSource::Sticker(Box::new(m.clone()))
        }));
    }
    if let Some(m) = base.location_message.as_option() {
        return location(m.degrees_latitude, m.degrees_longitude, m.name.clone(), m.address.clone());
    }
    if let Some(m) = base.live_location_message.as_option() {
        return location(m.degrees_latitude, m.degrees_longitude, None, m.caption.clone());
    }
    if let Some(m) = base.reaction_message.as_option() {
        let target = m.key.as_option().and_then(|key| key.id.clone()).filter(|id| !id.is_empty())?;
        return Some(InboundBody::Ready(Content::Reaction {
            target_external_id: target,
            emoji: m.text.clone().unwrap_or_default(),
        }));
    }
    // What a person wrote that wagate does not forward; protocol traffic (keys,
    // edits, deletions) stays `None`: it is no message and counts as no refusal.
    if base.poll_creation_message.is_set() {
        return Some(InboundBody::Unsupported("poll"));
    }
    if base.contact_message.is_set() || base.contacts_array_message.is_set() {
        return Some(InboundBody::Unsupported("contact"));
    }
    None
}

fn media(
    kind: MediaKind,
    mimetype: &Option<String>,
    default_mime: &str,
    caption: &Option<String>,
    file_name: &Option<String>,
    declared_size: Option<u64>,
    source: impl FnOnce() -> MediaSource,
) -> InboundBody {
    InboundBody::Media(InboundMedia {
        kind,
        mime_type: mimetype.clone().filter(|m| !m.is_empty()).unwrap_or_else(|| default_mime.to_owned()),
        caption: caption.clone().filter(|c| !c.is_empty()),
        file_name: file_name.clone().filter(|n| !n.is_empty()),
        declared_size,
        source: source(),
    })
}

fn location(
    latitude: Option<f64>,
    longitude: Option<f64>,
    name: Option<String>,
    address: Option<String>,
) -> Option<InboundBody> {
    Some(InboundBody::Ready(Content::Location {
        latitude: latitude?,
        longitude: longitude?,
        name: name.filter(|n| !n.is_empty()),
        address: address.filter(|a| !a.is_empty()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload() -> UploadedMedia {
        UploadedMedia {
            url: "https://mmg.whatsapp.net/v/t62/abc?ccb=11".into(),
            direct_path: "/v/t62/abc?ccb=11".into(),
            media_key: [1; 32],
            file_enc_sha256: [2; 32],
            file_sha256: [3; 32],
            file_length: 4096,
            media_key_timestamp: 1_700_000_000,
            streaming_sidecar: Some(vec![9, 9, 9]),
        }
    }

    #[test]
    fn an_image_carries_every_field_of_its_upload() {
        let msg = media_message(MediaKind::Image, upload(), "image/png", Some("look"), Some("ignored.png"));
        let image = msg.image_message.as_option().expect("image_message set");
        assert_eq!(image.url.as_deref(), Some("https://mmg.whatsapp.net/v/t62/abc?ccb=11"));
        assert_eq!(image.direct_path.as_deref(), Some("/v/t62/abc?ccb=11"));
        assert_eq!(image.media_key.as_deref(), Some(&[1u8; 32][..]));
        assert_eq!(image.file_enc_sha256.as_deref(), Some(&[2u8; 32][..]));
        assert_eq!(image.file_sha256.as_deref(), Some(&[3u8; 32][..]));
        assert_eq!(image.file_length, Some(4096));
        assert_eq!(image.media_key_timestamp, Some(1_700_000_000));
        assert_eq!(image.mimetype.as_deref(), Some("image/png"));
        assert_eq!(image.caption.as_deref(), Some("look"));
        // Nothing else is set: the message is an image and only an image.
        assert!(msg.video_message.as_option().is_none() && msg.document_message.as_option().is_none());
        assert_eq!(msg.conversation, None);
    }

    #[test]
    fn video_and_audio_keep_the_streaming_sidecar() {
        let video = media_message(MediaKind::Video, upload(), "video/mp4", Some("clip"), None);
        let video = video.video_message.as_option().unwrap();
        assert_eq!(video.streaming_sidecar.as_deref(), Some(&[9u8, 9, 9][..]));
        assert_eq!(video.caption.as_deref(), Some("clip"));
        assert_eq!(video.media_key.as_deref(), Some(&[1u8; 32][..]));

        let audio = media_message(MediaKind::Audio, upload(), "audio/ogg; codecs=opus", Some("dropped"), None);
        let audio = audio.audio_message.as_option().unwrap();
        assert_eq!(audio.streaming_sidecar.as_deref(), Some(&[9u8, 9, 9][..]));
        assert_eq!(audio.mimetype.as_deref(), Some("audio/ogg; codecs=opus"));
        assert_eq!(audio.file_length, Some(4096));
        assert_eq!(audio.direct_path.as_deref(), Some("/v/t62/abc?ccb=11"));
    }

    #[test]
    fn a_document_is_named_and_a_sticker_is_plain() {
        let doc = media_message(MediaKind::Document, upload(), "application/pdf", Some("the report"), Some("q3.pdf"));
        let doc = doc.document_message.as_option().unwrap();
        assert_eq!(doc.file_name.as_deref(), Some("q3.pdf"));
        assert_eq!(doc.title.as_deref(), Some("q3.pdf"));
        assert_eq!(doc.caption.as_deref(), Some("the report"));
        assert_eq!(doc.mimetype.as_deref(), Some("application/pdf"));
        assert_eq!(doc.file_sha256.as_deref(), Some(&[3u8; 32][..]));

        let unnamed = media_message(MediaKind::Document, upload(), "application/pdf", None, None);
        assert_eq!(unnamed.document_message.as_option().unwrap().file_name.as_deref(), Some("file"));

        let sticker = media_message(MediaKind::Sticker, upload(), "image/webp", None, None);
        let sticker = sticker.sticker_message.as_option().unwrap();
        assert_eq!(sticker.mimetype.as_deref(), Some("image/webp"));
        assert_eq!(sticker.file_enc_sha256.as_deref(), Some(&[2u8; 32][..]));
    }

    #[test]
    fn every_kind_uploads_under_its_own_media_type() {
        assert_eq!(upload_type(MediaKind::Image), MediaType::Image);
        assert_eq!(upload_type(MediaKind::Video), MediaType::Video);
        assert_eq!(upload_type(MediaKind::Audio), MediaType::Audio);
        assert_eq!(upload_type(MediaKind::Document), MediaType::Document);
        assert_eq!(upload_type(MediaKind::Sticker), MediaType::Sticker);
    }

    #[test]
    fn text_and_location_round_trip_through_inbound_reading() {
        assert_eq!(
            inbound_body(&text_message("hi there")),
            Some(InboundBody::Ready(Content::Text { text: "hi there".into() }))
        );
        let loc = location_message(-6.2, 106.8, Some("Monas"), None);
        assert_eq!(
            inbound_body(&loc),
            Some(InboundBody::Ready(Content::Location {
                latitude: -6.2,
                longitude: 106.8,
                name: Some("Monas".into()),
                address: None
            }))
        );
    }

    #[test]
    fn inbound_media_reads_through_wrappers_and_keeps_what_a_download_needs() {
        let sent = media_message(MediaKind::Document, upload(), "application/pdf", Some("report"), Some("q3.pdf"));
        // Disappearing-message chats wrap every message.
        let wrapped = wa::Message {
            ephemeral_message: MessageField::some(wa::message::FutureProofMessage {
                message: MessageField::some(sent.clone()),
            }),
            ..Default::default()
        };
        let Some(InboundBody::Media(media)) = inbound_body(&wrapped) else { panic!("not media") };
        assert_eq!(media.kind, MediaKind::Document);
        assert_eq!(media.mime_type, "application/pdf");
        assert_eq!(media.caption.as_deref(), Some("report"));
        assert_eq!(media.file_name.as_deref(), Some("q3.pdf"));
        assert_eq!(media.declared_size, Some(4096));
        let d = media.source.downloadable();
        assert_eq!(d.direct_path(), Some("/v/t62/abc?ccb=11"));
        assert_eq!(d.media_key(), Some(&[1u8; 32][..]));
        assert_eq!(d.file_enc_sha256(), Some(&[2u8; 32][..]));
        assert_eq!(d.app_info(), MediaType::Document);

        let voice = wa::Message {
            audio_message: MessageField::some(wa::message::AudioMessage { ptt: Some(true), ..Default::default() }),
            ..Default::default()
        };
        let Some(InboundBody::Media(voice)) = inbound_body(&voice) else { panic!("not media") };
        assert_eq!((voice.kind, voice.mime_type.as_str()), (MediaKind::Audio, "audio/ogg"));
    }

    #[test]
    fn reactions_name_their_target_and_the_rest_is_skipped() {
        let reaction = |emoji: Option<&str>| wa::Message {
            reaction_message: MessageField::some(wa::message::ReactionMessage {
                key: MessageField::some(wa::MessageKey { id: Some("3EB0ABC".into()), ..Default::default() }),
                text: emoji.map(str::to_owned),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            inbound_body(&reaction(Some("👍"))),
            Some(InboundBody::Ready(Content::Reaction { target_external_id: "3EB0ABC".into(), emoji: "👍".into() }))
        );
        assert_eq!(
            inbound_body(&reaction(None)),
            Some(InboundBody::Ready(Content::Reaction { target_external_id: "3EB0ABC".into(), emoji: String::new() }))
        );
        assert_eq!(inbound_body(&wa::Message::default()), None);
        let poll = wa::Message { poll_creation_message: MessageField::some(Default::default()), ..Default::default() };
        assert_eq!(inbound_body(&poll), Some(InboundBody::Unsupported("poll")));
    }
}
