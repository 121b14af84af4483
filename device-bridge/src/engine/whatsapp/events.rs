//! What whatsapp-rust's events mean for wagate: a pure translation, so the
//! mapping can be tested with hand-built library events and no network.
//!
//! | whatsapp-rust event        | signal              | wagate event                                    |
//! |----------------------------|---------------------|-------------------------------------------------|
//! | `PairingQrCode`            | `Qr`                | `QrUpdated { qr }`                              |
//! | `PairingCode`              | `PairCode`          | `PairCode { code }`                             |
//! | `PairSuccess`              | `Paired`            | — (`Connected` follows the reconnect)           |
//! | `Connected`                | `Connected`         | `Connected { phone }`                           |
//! | `Disconnected`             | `ConnectionLost`    | `Disconnected { reason, logged_out: false }`    |
//! | `LoggedOut`                | `LoggedOut`         | `Disconnected { reason, logged_out: true }`     |
//! | `TemporaryBan`             | `Halted`            | `Disconnected { "temporarily banned: …", false }` |
//! | `StreamReplaced`, `ClientOutdated`, fatal `ConnectFailure` | `Halted` | `Disconnected { reason, false }` |
//! | retryable `ConnectFailure` | `RetryableFailure`  | — (the session retries)                         |
//! | `Receipt` delivered / read, played | `Receipt`   | `MessageDelivered` / `MessageRead` (via the send record) |
//! | `Messages`                 | `Messages`          | `Inbound { external_id, from, content }`        |

use std::time::Duration;

use wagate_contract::wire::{Content, EventKind};
use whatsapp_rust::types::events::{ConnectFailureReason, Event, EventKind as WaEventKind, LoggedOut, TemporaryBan};
use whatsapp_rust::types::message::MessageSource;
use whatsapp_rust::types::presence::ReceiptType;
use whatsapp_rust::wacore_binary::JidExt;
use whatsapp_rust::Jid;

use super::media::{inbound_body, InboundBody};
use super::store::ReceiptKind;
use crate::inbound::{Received, ReceivedBody};
use crate::pair_code::PairCode;

/// The library events a session listens to; the bus skips building the others.
pub const INTEREST: &[WaEventKind] = &[
    WaEventKind::PairingQrCode,
    WaEventKind::PairingCode,
    WaEventKind::PairingCodeError,
    WaEventKind::PairingQrCodesExhausted,
    WaEventKind::PairSuccess,
    WaEventKind::PairError,
    WaEventKind::Connected,
    WaEventKind::Disconnected,
    WaEventKind::LoggedOut,
    WaEventKind::TemporaryBan,
    WaEventKind::StreamReplaced,
    WaEventKind::ClientOutdated,
    WaEventKind::ConnectFailure,
    WaEventKind::Receipt,
    WaEventKind::Messages,
];

/// What a library event means for a device's session.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// A QR reference to show; WhatsApp rotates it every minute or so.
    Qr(String),
    /// The 8-character code to type on the phone when linking by phone number.
    PairCode(String),
    /// No pairing code is coming for this request.
    PairCodeFailed(String),
    /// A phone completed the link; WhatsApp restarts the stream next.
    Paired {
        phone: String,
    },
    PairFailed(String),
    /// Logged in and ready.
    Connected,
    /// An established connection dropped; the session reconnects.
    ConnectionLost {
        reason: String,
    },
    /// WhatsApp ended the session for good: it needs pairing again.
    LoggedOut {
        reason: String,
    },
    /// Ended until someone acts (a ban, another client took over, an outdated
    /// client, a refused login): no retry loop, the reason is reported.
    Halted {
        reason: String,
    },
    /// WhatsApp refused the login but asked to retry later (e.g. 503).
    RetryableFailure {
        reason: String,
    },
    /// No QR references left on this connection; linking again fetches new ones.
    QrExhausted,
    Receipt {
        kind: ReceiptKind,
        external_ids: Vec<String>,
    },
    Messages(Vec<Incoming>),
}

/// One inbound message worth forwarding.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// WhatsApp's id of the message.
    pub external_id: String,
    /// Where a reply goes: the sender's phone JID for a direct chat, the group's JID for a group.
    pub from: String,
    pub push_name: Option<String>,
    /// In a group, the member who wrote it, by phone JID when WhatsApp gave one.
    pub participant: Option<String>,
    pub body: InboundBody,
}

impl Incoming {
    /// The message with `content` as its body, for the bridge's checks.
    pub fn received(&self, content: Content) -> Received {
        self.with_body(ReceivedBody::Content(content))
    }

    /// The message as a kind wagate does not forward, for the bridge's checks to count.
    pub fn unsupported(&self, kind: &str) -> Received {
        self.with_body(ReceivedBody::Unsupported { kind: kind.to_owned() })
    }

    fn with_body(&self, body: ReceivedBody) -> Received {
        Received {
            external_id: self.external_id.clone(),
            from: self.from.clone(),
            push_name: self.push_name.clone(),
            participant: self.participant.clone(),
            body,
        }
    }
}

impl Signal {
    /// The wagate event this signal reports by itself, if any. `phone` is the
    /// device's own number, known to the session when it connects.
    pub fn report(&self, phone: &str) -> Option<EventKind> {
        match self {
            Self::Qr(qr) => Some(EventKind::QrUpdated { qr: qr.clone() }),
            // Shown as WhatsApp shows it on the phone (`XXXX-XXXX`), like the simulator's.
            Self::PairCode(code) => Some(EventKind::PairCode {
                code: PairCode::parse(code).map_or_else(|_| code.clone(), |c| c.to_string()),
            }),
            Self::Connected => Some(EventKind::Connected { phone: phone.to_owned() }),
            Self::ConnectionLost { reason } | Self::Halted { reason } => {
                Some(EventKind::Disconnected { reason: reason.clone(), logged_out: false })
            }
            Self::LoggedOut { reason } => Some(EventKind::Disconnected { reason: reason.clone(), logged_out: true }),
            Self::PairCodeFailed(_)
            | Self::Paired { .. }
            | Self::PairFailed(_)
            | Self::RetryableFailure { .. }
            | Self::QrExhausted
            | Self::Receipt { .. }
            | Self::Messages(_) => None,
        }
    }
}

/// `None` for events the session does not act on.
pub fn classify(event: &Event) -> Option<Signal> {
    Some(match event {
        Event::PairingQrCode(qr) => Signal::Qr(qr.code.clone()),
        Event::PairingCode(code) => Signal::PairCode(code.code.clone()),
        Event::PairingCodeError(e) => Signal::PairCodeFailed(e.error.clone()),
        Event::PairingQrCodesExhausted(_) => Signal::QrExhausted,
        Event::PairSuccess(p) => Signal::Paired { phone: p.id.user.to_string() },
        Event::PairError(e) => Signal::PairFailed(e.error.clone()),
        Event::Connected(_) => Signal::Connected,
        Event::Disconnected(d) => Signal::ConnectionLost { reason: format!("connection lost: {}", d.reason) },
        Event::LoggedOut(l) => Signal::LoggedOut { reason: logged_out_reason(l) },
        Event::TemporaryBan(ban) => Signal::Halted { reason: ban_reason(ban) },
        Event::StreamReplaced(_) => {
            Signal::Halted { reason: "replaced: another client connected with this device's session".into() }
        }
        Event::ClientOutdated(_) => {
            Signal::Halted { reason: "WhatsApp rejected this client version as outdated".into() }
        }
        Event::ConnectFailure(f) => {
            let detail = f.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
            let reason = format!("WhatsApp refused the login ({}{detail})", failure_name(f.reason));
            if f.reason.should_reconnect() {
                Signal::RetryableFailure { reason }
            } else {
                Signal::Halted { reason }
            }
        }
        Event::Receipt(r) => {
            let kind = match r.r#type {
                ReceiptType::Delivered => ReceiptKind::Delivered,
                ReceiptType::Read | ReceiptType::Played => ReceiptKind::Read,
                _ => return None,
            };
            Signal::Receipt { kind, external_ids: r.message_ids.clone() }
        }
        Event::Messages(batch) => {
            let incoming: Vec<Incoming> = batch
                .iter()
                .filter(|m| !m.info.source.is_from_me)
                .filter_map(|m| {
                    Some(Incoming {
                        external_id: m.info.id.clone(),
                        from: reply_address(&m.info.source)?,
                        push_name: Some(m.info.push_name.clone()).filter(|n| !n.is_empty()),
                        participant: author(&m.info.source),
                        body: inbound_body(&m.message)?,
                    })
                })
                .collect();
            if incoming.is_empty() {
                return None;
            }
            Signal::Messages(incoming)
        }
        _ => return None,
    })
}

/// Where a reply to this message goes, as a JID string; `None` for chats wagate
/// does not serve (status updates, channels, broadcast lists).
fn reply_address(source: &MessageSource) -> Option<String> {
    let chat = &source.chat;
    if chat.is_group() {
        return Some(chat.to_non_ad().to_string());
    }
    if chat.is_status_broadcast() || chat.is_newsletter() || chat.is_broadcast_list() {
        return None;
    }
    // WhatsApp addresses more and more direct chats by LID (a per-account alias);
    // the phone number then travels alongside as the sender's alternate JID.
    let phone_jid =
        [Some(chat), source.sender_alt.as_ref(), Some(&source.sender)].into_iter().flatten().find(|jid| jid.is_pn());
    Some(phone_jid.unwrap_or(chat).to_non_ad().to_string())
}

/// Who wrote a group message, as a JID string: the phone JID, which group members more and
/// more travel as the alternate of their LID; `None` outside groups.
fn author(source: &MessageSource) -> Option<String> {
    if !source.chat.is_group() {
        return None;
    }
    let sender = [Some(&source.sender), source.sender_alt.as_ref()].into_iter().flatten().find(|jid| jid.is_pn());
    Some(sender.unwrap_or(&source.sender).to_non_ad().to_string())
}

fn logged_out_reason(event: &LoggedOut) -> String {
    let what = match event.reason {
        ConnectFailureReason::LoggedOut if !event.on_connect => "unlinked from the phone".to_owned(),
        ConnectFailureReason::LoggedOut => "logged out by WhatsApp".to_owned(),
        ConnectFailureReason::AccountLocked => "account locked by WhatsApp".to_owned(),
        other => format!("logged out by WhatsApp ({})", failure_name(other)),
    };
    let message = event.logout_message.as_ref().and_then(|m| m.header.as_deref().or(m.subtext.as_deref()));
    match message {
        Some(message) => format!("{what}: {message}"),
        None => what,
    }
}

fn ban_reason(ban: &TemporaryBan) -> String {
    let lifted = ban.expire.to_std().map(|d| Duration::from_secs(d.as_secs())).unwrap_or_default();
    format!("temporarily banned: {}; lifted in {}", ban.code, humantime::format_duration(lifted))
}

fn failure_name(reason: ConnectFailureReason) -> String {
    format!("{reason:?} {}", reason.code())
}

/// The digits of a JID's user part (`6281234567890:12@s.whatsapp.net` → `6281234567890`).
pub fn phone_of(jid: &Jid) -> String {
    jid.user.to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use wagate_contract::wire::MediaKind;
    use whatsapp_rust::chrono;
    use whatsapp_rust::transport::DisconnectReason;
    use whatsapp_rust::types::events::{
        BatchOrigin, ClientOutdated, ConnectFailure, Connected, Disconnected, InboundMessage, MessageBatch,
        PairSuccess, PairingCode, PairingQrCode, PairingQrCodesExhausted, Receipt, StreamReplaced, TempBanReason,
    };
    use whatsapp_rust::types::message::MessageInfo;
    use whatsapp_rust::waproto::buffa::MessageField;
    use whatsapp_rust::waproto::whatsapp as wa;
    use whatsapp_rust::Server;

    use super::*;
    use crate::engine::whatsapp::media::text_message;

    fn jid(s: &str) -> Jid {
        s.parse().unwrap()
    }

    fn reported(event: Event) -> Option<EventKind> {
        classify(&event).and_then(|s| s.report("14155552671"))
    }

    #[test]
    fn pairing_events_become_qr_and_pair_code_updates() {
        let qr = "2@Xyz,noise,identity,adv";
        let event =
            Event::PairingQrCode(PairingQrCode::builder().code(qr.into()).timeout(Duration::from_secs(60)).build());
        assert_eq!(reported(event), Some(EventKind::QrUpdated { qr: qr.into() }));

        let event = Event::PairingCode(
            PairingCode::builder().code("ABCD1234".into()).timeout(Duration::from_secs(180)).build(),
        );
        assert_eq!(reported(event), Some(EventKind::PairCode { code: "ABCD-1234".into() }));

        let paired = Event::PairSuccess(
            PairSuccess::builder()
                .id(jid("6281234567890:7@s.whatsapp.net"))
                .lid(jid("123456789:7@lid"))
                .business_name(String::new())
                .platform("android".into())
                .build(),
        );
        assert_eq!(classify(&paired), Some(Signal::Paired { phone: "6281234567890".into() }));
        assert_eq!(reported(paired), None);

        let exhausted = Event::PairingQrCodesExhausted(PairingQrCodesExhausted::builder().disconnected(true).build());
        assert_eq!(classify(&exhausted), Some(Signal::QrExhausted));
    }

    #[test]
    fn connection_events_become_connected_and_disconnected() {
        assert_eq!(
            reported(Event::Connected(Connected::builder().build())),
            Some(EventKind::Connected { phone: "14155552671".into() })
        );
        let lost = Event::Disconnected(Disconnected::builder().reason(DisconnectReason::StreamEnded).build());
        assert_eq!(
            reported(lost),
            Some(EventKind::Disconnected { reason: "connection lost: stream ended (EOF)".into(), logged_out: false })
        );
    }

    #[test]
    fn a_logout_is_final_and_says_so() {
        let unlinked =
            Event::LoggedOut(LoggedOut::builder().on_connect(false).reason(ConnectFailureReason::LoggedOut).build());
        assert_eq!(
            reported(unlinked),
            Some(EventKind::Disconnected { reason: "unlinked from the phone".into(), logged_out: true })
        );
        let locked =
            Event::LoggedOut(LoggedOut::builder().on_connect(true).reason(ConnectFailureReason::AccountLocked).build());
        assert!(matches!(
            classify(&locked),
            Some(Signal::LoggedOut { reason }) if reason == "account locked by WhatsApp"
        ));
    }

    #[test]
    fn a_temporary_ban_is_reported_not_retried() {
        let ban = Event::TemporaryBan(
            TemporaryBan::builder()
                .code(TempBanReason::SentToTooManyPeople)
                .expire(chrono::Duration::seconds(3 * 3600 + 60))
                .build(),
        );
        let signal = classify(&ban).unwrap();
        assert!(matches!(signal, Signal::Halted { .. }), "{signal:?}");
        let Some(EventKind::Disconnected { reason, logged_out: false }) = signal.report("1") else {
            panic!("{signal:?} is not a Disconnected")
        };
        assert!(reason.starts_with("temporarily banned: 101: you sent too many messages"), "{reason}");
        assert!(reason.ends_with("lifted in 3h 1m"), "{reason}");
    }

    #[test]
    fn refusals_halt_unless_whatsapp_asks_to_retry() {
        let replaced = classify(&Event::StreamReplaced(StreamReplaced::builder().build())).unwrap();
        assert!(matches!(&replaced, Signal::Halted { reason } if reason.starts_with("replaced")));
        let outdated = classify(&Event::ClientOutdated(ClientOutdated::builder().build())).unwrap();
        assert!(matches!(outdated, Signal::Halted { .. }));

        let unavailable = ConnectFailure::builder().reason(ConnectFailureReason::ServiceUnavailable).build();
        assert!(matches!(
            classify(&Event::ConnectFailure(unavailable)),
            Some(Signal::RetryableFailure { reason }) if reason.contains("ServiceUnavailable 503")
        ));
        let refused =
            ConnectFailure::builder().reason(ConnectFailureReason::BadUserAgent).message("bad ua".into()).build();
        assert_eq!(
            reported(Event::ConnectFailure(refused)),
            Some(EventKind::Disconnected {
                reason: "WhatsApp refused the login (BadUserAgent 409: bad ua)".into(),
                logged_out: false
            })
        );
    }

    fn receipt(kind: ReceiptType) -> Event {
        let source = MessageSource { chat: jid("6281234567890@s.whatsapp.net"), ..Default::default() };
        Event::Receipt(
            Receipt::builder()
                .source(source)
                .message_ids(vec!["3EB0AAAA".into(), "3EB0BBBB".into()])
                .timestamp(chrono::Utc::now())
                .r#type(kind)
                .offline(false)
                .build(),
        )
    }

    #[test]
    fn receipts_name_the_whatsapp_ids_they_cover() {
        let ids = vec!["3EB0AAAA".to_owned(), "3EB0BBBB".to_owned()];
        assert_eq!(
            classify(&receipt(ReceiptType::Delivered)),
            Some(Signal::Receipt { kind: ReceiptKind::Delivered, external_ids: ids.clone() })
        );
        assert_eq!(
            classify(&receipt(ReceiptType::Read)),
            Some(Signal::Receipt { kind: ReceiptKind::Read, external_ids: ids.clone() })
        );
        assert_eq!(
            classify(&receipt(ReceiptType::Played)),
            Some(Signal::Receipt { kind: ReceiptKind::Read, external_ids: ids })
        );
        assert_eq!(classify(&receipt(ReceiptType::ReadSelf)), None);
        assert_eq!(classify(&receipt(ReceiptType::Retry)), None);
        // Receipts become events only through the send record (see store.rs).
        assert_eq!(classify(&receipt(ReceiptType::Read)).unwrap().report("1"), None);
    }

    fn inbound(id: &str, source: MessageSource, message: wa::Message) -> InboundMessage {
        let info = MessageInfo { id: id.into(), source, ..Default::default() };
        InboundMessage::builder().message(Arc::new(message)).info(Arc::new(info)).build()
    }

    fn batch(messages: Vec<InboundMessage>) -> Event {
        Event::Messages(MessageBatch::builder().messages(messages.into()).origin(BatchOrigin::Live).build())
    }

    #[test]
    fn inbound_messages_carry_id_reply_address_and_content() {
        let direct = MessageSource {
            chat: jid("6281234567890@s.whatsapp.net"),
            sender: jid("6281234567890@s.whatsapp.net"),
            ..Default::default()
        };
        // A LID-addressed chat: the phone number comes from the alternate JID.
        let by_lid = MessageSource {
            chat: jid("98765432101234@lid"),
            sender: jid("98765432101234@lid"),
            sender_alt: Some(jid("14155552671@s.whatsapp.net")),
            ..Default::default()
        };
        let group = MessageSource {
            chat: jid("120363025246125486@g.us"),
            sender: jid("6281234567890:3@s.whatsapp.net"),
            is_group: true,
            ..Default::default()
        };
        let mine = MessageSource { is_from_me: true, ..direct.clone() };
        let status = MessageSource { chat: Jid::new("status", Server::Broadcast), ..direct.clone() };
        let location = wa::Message {
            location_message: MessageField::some(wa::message::LocationMessage {
                degrees_latitude: Some(1.5),
                degrees_longitude: Some(2.5),
                ..Default::default()
            }),
            ..Default::default()
        };
        let event = batch(vec![
            inbound("3EB01", direct, text_message("hi")),
            inbound("3EB02", by_lid, text_message("hello")),
            inbound("3EB03", group, location),
            inbound("3EB04", mine, text_message("sent from my phone")),
            inbound("3EB05", status, text_message("status update")),
        ]);
        let Some(Signal::Messages(incoming)) = classify(&event) else { panic!("no messages") };
        let got: Vec<(&str, &str, &InboundBody)> =
            incoming.iter().map(|m| (m.external_id.as_str(), m.from.as_str(), &m.body)).collect();
        let authors: Vec<Option<&str>> = incoming.iter().map(|m| m.participant.as_deref()).collect();
        assert_eq!(authors, [None, None, Some("6281234567890@s.whatsapp.net")], "a group message names its author");
        assert_eq!(
            got,
            vec![
                ("3EB01", "6281234567890@s.whatsapp.net", &InboundBody::Ready(Content::Text { text: "hi".into() })),
                ("3EB02", "14155552671@s.whatsapp.net", &InboundBody::Ready(Content::Text { text: "hello".into() })),
                (
                    "3EB03",
                    "120363025246125486@g.us",
                    &InboundBody::Ready(Content::Location { latitude: 1.5, longitude: 2.5, name: None, address: None })
                ),
            ]
        );
        assert_eq!(classify(&batch(vec![])), None);
    }

    #[test]
    fn inbound_media_is_left_for_download() {
        let source = MessageSource { chat: jid("6281234567890@s.whatsapp.net"), ..Default::default() };
        let image = wa::Message {
            image_message: MessageField::some(wa::message::ImageMessage {
                mimetype: Some("image/png".into()),
                caption: Some("cat".into()),
                direct_path: Some("/v/t62/x".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let Some(Signal::Messages(incoming)) = classify(&batch(vec![inbound("3EB09", source, image)])) else {
            panic!("no messages")
        };
        let InboundBody::Media(media) = &incoming[0].body else { panic!("not media: {:?}", incoming[0].body) };
        assert_eq!((media.kind, media.mime_type.as_str()), (MediaKind::Image, "image/png"));
        assert_eq!(media.caption.as_deref(), Some("cat"));
        assert_eq!(media.source.downloadable().direct_path(), Some("/v/t62/x"));
    }

    #[test]
    fn the_own_phone_is_the_user_part_of_the_jid() {
        assert_eq!(phone_of(&jid("6281234567890:12@s.whatsapp.net")), "6281234567890");
    }
}
