//! The bridge boundary for what arrives from WhatsApp. Message content is
//! end-to-end encrypted, so WhatsApp's servers never check it: a modified client
//! can send a location at latitude NaN, a megabyte of display name, or a kind of
//! message nobody knows. Both engines hand what they decoded to [`screen`]
//! (through [`EventSink::receive`](crate::engine::EventSink::receive)), so one
//! set of rules decides what reaches the worker, whichever engine is running.
//!
//! Per field, what cannot be meaningful is refused (the message is dropped and
//! counted by [`Refusal`]): non-finite or off-Earth coordinates, texts longer
//! than WhatsApp itself carries, malformed addresses or ids, unknown kinds.
//! Decoration is trimmed instead, because the message still stands without it:
//! over-long sender names, place names, addresses and file names are cut, and
//! control characters removed from them.

use wagate_contract::wire::{Content, EventKind, MediaRef, MAX_MEDIA_BYTES};

use crate::engine::message::{MAX_FILE_NAME_CHARS, MAX_PLACE_CHARS, MAX_TEXT_CHARS};
use crate::engine::Location;
use crate::jid::Jid;
use crate::media::{parse_mime_type, Sha256Hex};

/// WhatsApp shows at most 25 characters of a display name; room for other clients' longer ones.
pub const MAX_NAME_CHARS: usize = 256;
/// WhatsApp's message ids are 16-32 hex digits; room for other clients' forms.
const MAX_EXTERNAL_ID_CHARS: usize = 128;
/// The longest emoji sequences (family ZWJ sequences, tag flags) are about ten code points.
const MAX_EMOJI_CHARS: usize = 32;

/// An inbound message as an engine decoded it, before the bridge's checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// WhatsApp's id of the message.
    pub external_id: String,
    /// Where a reply goes, as a JID string.
    pub from: String,
    pub push_name: Option<String>,
    /// In a group, the member who wrote it, as a JID string.
    pub participant: Option<String>,
    pub body: ReceivedBody,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReceivedBody {
    Content(Content),
    /// A kind of message wagate does not forward, by the name the engine knows it by.
    Unsupported {
        kind: String,
    },
}

/// Why an inbound message was dropped at the boundary; the label it is counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// `from` is not a person's or a group's JID.
    Sender,
    /// The message id (or a reaction's target id) is empty, too long or not printable ASCII.
    MessageId,
    /// A coordinate is not finite, or not on Earth.
    Coordinates,
    /// A text or caption is blank where it must not be, or longer than WhatsApp carries.
    Text,
    /// Media whose reference cannot be right: bad hash, MIME type or size.
    Media,
    /// A reaction whose emoji is longer than any emoji.
    Reaction,
    Unsupported,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sender => "sender",
            Self::MessageId => "message_id",
            Self::Coordinates => "coordinates",
            Self::Text => "text",
            Self::Media => "media",
            Self::Reaction => "reaction",
            Self::Unsupported => "unsupported_kind",
        }
    }
}

/// The event to forward for `received`, or why it is dropped.
pub fn screen(received: Received) -> Result<EventKind, Refusal> {
    let Received { external_id, from, push_name, participant, body } = received;
    if !is_message_id(&external_id) {
        return Err(Refusal::MessageId);
    }
    let from = Jid::parse(&from).map_err(|_| Refusal::Sender)?;
    // Only a group has members; an author that is not a person's number (a LID alias) is
    // left out rather than the message refused: the message stands without it.
    let participant = match from {
        Jid::Group(_) => participant.and_then(|p| match Jid::parse(&p) {
            Ok(author @ Jid::User(_)) => Some(author.to_string()),
            _ => None,
        }),
        Jid::User(_) => None,
    };
    let from = from.to_string();
    let content = match body {
        ReceivedBody::Content(content) => screen_content(content)?,
        ReceivedBody::Unsupported { .. } => return Err(Refusal::Unsupported),
    };
    let push_name = push_name.and_then(|name| trimmed(&name, MAX_NAME_CHARS));
    Ok(EventKind::Inbound { external_id, from, push_name, content, participant })
}

fn screen_content(content: Content) -> Result<Content, Refusal> {
    Ok(match content {
        Content::Text { text } => {
            check_text(&text)?;
            Content::Text { text }
        }
        Content::Media { kind, media, caption } => {
            let caption = caption.filter(|c| !c.trim().is_empty());
            if let Some(caption) = &caption {
                check_text(caption)?;
            }
            Content::Media { kind, media: screen_media(media)?, caption }
        }
        Content::Location { latitude, longitude, name, address } => {
            if !on_earth(latitude, longitude) {
                return Err(Refusal::Coordinates);
            }
            Content::Location {
                latitude,
                longitude,
                name: name.and_then(|n| trimmed(&n, MAX_PLACE_CHARS)),
                address: address.and_then(|a| trimmed(&a, MAX_PLACE_CHARS)),
            }
        }
        Content::Reaction { target_external_id, emoji } => {
            if !is_message_id(&target_external_id) {
                return Err(Refusal::MessageId);
            }
            // Empty means the reaction was removed.
            if emoji.chars().count() > MAX_EMOJI_CHARS || emoji.chars().any(char::is_control) {
                return Err(Refusal::Reaction);
            }
            Content::Reaction { target_external_id, emoji }
        }
    })
}

fn screen_media(media: MediaRef) -> Result<MediaRef, Refusal> {
    Sha256Hex::parse(&media.sha256).map_err(|_| Refusal::Media)?;
    let mime_type = parse_mime_type(&media.mime_type).map_err(|_| Refusal::Media)?;
    if media.size == 0 || media.size > MAX_MEDIA_BYTES {
        return Err(Refusal::Media);
    }
    let file_name = media.file_name.and_then(|n| trimmed(&n, MAX_FILE_NAME_CHARS));
    Ok(MediaRef { mime_type, file_name, ..media })
}

/// Finite, latitude within ±90 and longitude within ±180: the rule for sending one too.
pub fn on_earth(latitude: f64, longitude: f64) -> bool {
    Location::parse(latitude, longitude, None, None).is_ok()
}

/// Not blank, and not longer than WhatsApp carries.
fn check_text(text: &str) -> Result<(), Refusal> {
    if text.trim().is_empty() || text.chars().count() > MAX_TEXT_CHARS {
        return Err(Refusal::Text);
    }
    Ok(())
}

fn is_message_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_EXTERNAL_ID_CHARS
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// `text` without control characters and cut to `max` characters; `None` if nothing is left.
pub fn trimmed(text: &str, max: usize) -> Option<String> {
    let kept: String = text.chars().filter(|c| !c.is_control()).take(max).collect();
    let kept = kept.trim();
    (!kept.is_empty()).then(|| kept.to_owned())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use wagate_contract::wire::MediaKind;

    use super::*;

    const FROM: &str = "14155552671@s.whatsapp.net";

    fn received(body: Content) -> Received {
        Received {
            external_id: "3EB0A1B2C3D4E5F60718".into(),
            from: FROM.into(),
            push_name: Some("Ann".into()),
            participant: None,
            body: ReceivedBody::Content(body),
        }
    }

    fn location(latitude: f64, longitude: f64) -> Content {
        Content::Location { latitude, longitude, name: None, address: None }
    }

    fn content_of(kind: EventKind) -> Content {
        match kind {
            EventKind::Inbound { content, .. } => content,
            other => panic!("not inbound: {other:?}"),
        }
    }

    #[test]
    fn non_finite_and_off_earth_coordinates_are_refused() {
        for (lat, long) in [
            (f64::NAN, 0.0),
            (0.0, f64::NAN),
            (f64::INFINITY, 0.0),
            (0.0, f64::NEG_INFINITY),
            (90.000_001, 0.0),
            (0.0, -180.5),
        ] {
            assert_eq!(screen(received(location(lat, long))), Err(Refusal::Coordinates), "{lat},{long}");
        }
        assert_eq!(content_of(screen(received(location(-90.0, 180.0))).unwrap()), location(-90.0, 180.0));
    }

    #[test]
    fn senders_ids_and_kinds_are_checked() {
        let ok = received(Content::Text { text: "hi".into() });
        assert!(screen(ok.clone()).is_ok());
        for from in ["98765432101234@lid", "14155552671", "status@broadcast", "", "1415555267a@s.whatsapp.net"] {
            assert_eq!(screen(Received { from: from.into(), ..ok.clone() }), Err(Refusal::Sender), "{from:?}");
        }
        assert!(screen(Received { from: "120363025246125486@g.us".into(), ..ok.clone() }).is_ok());
        for id in ["", "3EB0 1", "3EB0\n", &"A".repeat(129)] {
            assert_eq!(screen(Received { external_id: id.into(), ..ok.clone() }), Err(Refusal::MessageId), "{id:?}");
        }
        let poll = Received { body: ReceivedBody::Unsupported { kind: "poll".into() }, ..ok };
        assert_eq!(screen(poll), Err(Refusal::Unsupported));
    }

    #[test]
    fn only_a_group_message_names_its_author_and_only_by_number() {
        let participant_of = |from: &str, participant: &str| {
            let received = Received {
                from: from.into(),
                participant: Some(participant.into()),
                ..received(Content::Text { text: "hi".into() })
            };
            let Ok(EventKind::Inbound { participant, .. }) = screen(received) else { panic!("refused") };
            participant
        };
        let group = "120363025246125486@g.us";
        assert_eq!(
            participant_of(group, "447911123456@s.whatsapp.net").as_deref(),
            Some("447911123456@s.whatsapp.net")
        );
        assert_eq!(participant_of(group, "98765432101234@lid"), None, "a LID alias is left out");
        assert_eq!(participant_of(group, "1@g.us"), None);
        assert_eq!(participant_of(FROM, "447911123456@s.whatsapp.net"), None, "a direct chat has no members");
    }

    #[test]
    fn texts_are_refused_when_blank_or_longer_than_whatsapp_carries_and_decoration_is_trimmed() {
        assert_eq!(screen(received(Content::Text { text: " \n".into() })), Err(Refusal::Text));
        let long = "x".repeat(MAX_TEXT_CHARS + 1);
        assert_eq!(screen(received(Content::Text { text: long.clone() })), Err(Refusal::Text));
        let media = |caption: Option<String>, file_name: Option<String>| Content::Media {
            kind: MediaKind::Document,
            media: MediaRef { sha256: "ab".repeat(32), size: 10, mime_type: "Application/PDF".into(), file_name },
            caption,
        };
        assert_eq!(screen(received(media(Some(long), None))), Err(Refusal::Text));

        let screened = screen(Received {
            push_name: Some(format!("\u{7}{}", "n".repeat(10_000))),
            ..received(media(Some(" ".into()), Some(format!("a\nb{}.pdf", "c".repeat(1000)))))
        })
        .unwrap();
        let EventKind::Inbound { push_name, content, .. } = screened else { unreachable!() };
        assert_eq!(push_name.map(|n| n.chars().count()), Some(MAX_NAME_CHARS));
        let Content::Media { media, caption, .. } = content else { unreachable!() };
        assert_eq!(caption, None);
        assert_eq!(media.mime_type, "application/pdf");
        let name = media.file_name.unwrap();
        assert!(name.starts_with("abccc") && name.chars().count() == MAX_FILE_NAME_CHARS, "{name}");
    }

    #[test]
    fn media_references_and_reactions_are_checked() {
        let media = |sha256: &str, size: u64, mime_type: &str| Content::Media {
            kind: MediaKind::Image,
            media: MediaRef { sha256: sha256.into(), size, mime_type: mime_type.into(), file_name: None },
            caption: None,
        };
        let sha = "ab".repeat(32);
        assert!(screen(received(media(&sha, 1, "image/png"))).is_ok());
        for bad in [
            media("ab", 1, "image/png"),
            media(&sha, 0, "image/png"),
            media(&sha, MAX_MEDIA_BYTES + 1, "image/png"),
            media(&sha, 1, "png"),
        ] {
            assert_eq!(screen(received(bad.clone())), Err(Refusal::Media), "{bad:?}");
        }
        let reaction =
            |target: &str, emoji: &str| Content::Reaction { target_external_id: target.into(), emoji: emoji.into() };
        assert!(screen(received(reaction("3EB0AB", ""))).is_ok());
        assert_eq!(screen(received(reaction("", "👍"))), Err(Refusal::MessageId));
        assert_eq!(screen(received(reaction("3EB0AB", &"👍".repeat(33)))), Err(Refusal::Reaction));
    }

    fn any_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            -200.0..200.0f64,
            any::<f64>(),
        ]
    }

    proptest! {
        /// Whatever the coordinates, what is forwarded is on Earth, and serialises
        /// as numbers (serde_json writes NaN as `null`, which the worker cannot read).
        #[test]
        fn forwarded_locations_are_finite_and_on_earth(lat in any_f64(), long in any_f64()) {
            match screen(received(location(lat, long))) {
                Ok(kind) => {
                    let Content::Location { latitude, longitude, .. } = content_of(kind.clone()) else { unreachable!() };
                    prop_assert!(latitude.is_finite() && longitude.is_finite());
                    prop_assert!(latitude.abs() <= 90.0 && longitude.abs() <= 180.0);
                    let json = serde_json::to_value(&kind).unwrap();
                    prop_assert!(json["content"]["latitude"].is_number() && json["content"]["longitude"].is_number());
                }
                Err(refusal) => {
                    prop_assert_eq!(refusal, Refusal::Coordinates);
                    prop_assert!(!on_earth(lat, long));
                }
            }
        }

        /// Any strings at all: the screen never panics, and what it forwards is bounded.
        #[test]
        fn forwarded_strings_are_bounded(
            text in ".{0,300}",
            name in proptest::option::of(".{0,2000}"),
            from in prop_oneof![Just(FROM.to_owned()), "[0-9]{0,20}@(s\\.whatsapp\\.net|g\\.us|lid)", ".{0,40}"],
            external_id in prop_oneof![Just("3EB0AB".to_owned()), ".{0,200}"],
        ) {
            let place = Content::Location { latitude: 1.0, longitude: 2.0, name: name.clone(), address: Some(text.clone()) };
            for body in [Content::Text { text: text.clone() }, place] {
                let forwarded = screen(Received {
                    external_id: external_id.clone(),
                    from: from.clone(),
                    push_name: name.clone(),
                    participant: None,
                    body: ReceivedBody::Content(body),
                });
                let Ok(EventKind::Inbound { external_id: id, from: sender, push_name, content, .. }) = forwarded else { continue };
                prop_assert!(Jid::parse(&sender).is_ok());
                prop_assert!(is_message_id(&id));
                let bounded = |s: &Option<String>, max: usize| {
                    s.as_ref().is_none_or(|s| !s.trim().is_empty() && s.chars().count() <= max && !s.chars().any(char::is_control))
                };
                prop_assert!(bounded(&push_name, MAX_NAME_CHARS));
                match content {
                    Content::Text { text } => prop_assert!(!text.trim().is_empty() && text.chars().count() <= MAX_TEXT_CHARS),
                    Content::Location { name, address, .. } => {
                        prop_assert!(bounded(&name, MAX_PLACE_CHARS) && bounded(&address, MAX_PLACE_CHARS));
                    }
                    other => prop_assert!(false, "{other:?}"),
                }
            }
        }

        #[test]
        fn trimming_is_bounded_and_idempotent(text in ".{0,400}", max in 1usize..300) {
            if let Some(kept) = trimmed(&text, max) {
                prop_assert!(kept.chars().count() <= max);
                prop_assert_eq!(trimmed(&kept, max), Some(kept.clone()));
            }
        }
    }
}
