//! The engine port: everything the bridge knows about WhatsApp.
//!
//! An engine owns the device sessions (pairing, connection, logout) and sends
//! messages. It answers calls synchronously only with what it knows at once;
//! everything that happens later on the network (QR rotation, a phone scanning,
//! send outcomes, receipts, inbound messages) it reports as [`EngineEvent`]s
//! through the [`EventSink`] it was built with. The simulator implements it
//! today; a whatsapp-rust engine will implement the same trait.

pub mod sim;

use async_trait::async_trait;
use tokio::sync::mpsc;
use wagate_contract::wire::{Content, EventKind, SendRequest};

use crate::clock::now_ms;
use crate::ids::{DeviceId, MessageId};
use crate::jid::Jid;

/// WhatsApp refuses longer texts.
const MAX_TEXT_CHARS: usize = 65_536;

/// Something that happened to a device, stamped when it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineEvent {
    pub device_id: DeviceId,
    pub at_ms: u64,
    pub kind: EventKind,
}

impl EngineEvent {
    pub fn now(device_id: &DeviceId, kind: EventKind) -> Self {
        Self { device_id: device_id.clone(), at_ms: now_ms(), kind }
    }
}

/// Where an engine reports events. Unbounded so that emitting never waits: an
/// engine may emit from callbacks, and the consumer can itself call the engine.
#[derive(Clone)]
pub struct EventSink(mpsc::UnboundedSender<EngineEvent>);

impl EventSink {
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<EngineEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self(tx), rx)
    }

    pub fn emit(&self, device_id: &DeviceId, kind: EventKind) {
        if self.0.send(EngineEvent::now(device_id, kind)).is_err() {
            // Only during shutdown, after the consumer stopped.
            tracing::debug!(device_id = %device_id, "event dropped: no consumer");
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Waiting for a phone to scan this QR reference.
    Pairing {
        qr: String,
    },
    Linked {
        phone: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceStatus {
    Pairing,
    Connected,
    /// Linked once, but the session ended (unlinked from the phone); needs pairing again.
    Disconnected,
}

/// A message to send, validated at the edge.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingMessage {
    pub message_id: MessageId,
    pub to: Jid,
    pub content: Content,
}

impl TryFrom<SendRequest> for OutgoingMessage {
    type Error = String;

    fn try_from(req: SendRequest) -> Result<Self, String> {
        let message_id = MessageId::parse(&req.message_id).map_err(|e| e.to_string())?;
        let to = Jid::parse(&req.to).map_err(|e| e.to_string())?;
        match &req.content {
            Content::Text { text } if text.trim().is_empty() => return Err("text must not be empty".into()),
            Content::Text { text } if text.chars().count() > MAX_TEXT_CHARS => {
                return Err(format!("text must be at most {MAX_TEXT_CHARS} characters"))
            }
            Content::Text { .. } => {}
        }
        Ok(Self { message_id, to, content: req.content })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("device not found")]
    DeviceNotFound,
    #[error("device is not connected")]
    DeviceOffline,
    #[error("engine storage failed: {0}")]
    Storage(#[from] rusqlite::Error),
}

#[async_trait]
pub trait Engine: Send + Sync {
    /// Called once at startup: reconnects every persisted linked device, emitting
    /// `Connected` for each (which also resumes its interrupted sends), resumes
    /// pairing for devices that were waiting for a scan, and delivers receipts
    /// that fell due while the bridge was down.
    async fn restore(&self) -> Result<(), EngineError>;

    /// Starts pairing, or reports where an existing device stands. Idempotent.
    /// Emits `QrUpdated` for every QR reference shown, until a phone scans one.
    async fn link(&self, device_id: &DeviceId) -> Result<LinkState, EngineError>;

    /// Logs the device out of WhatsApp and forgets its session. The caller asked for
    /// it, so no `Disconnected` event follows.
    async fn logout(&self, device_id: &DeviceId) -> Result<(), EngineError>;

    /// `None` for a device the engine has no session for.
    async fn status(&self, device_id: &DeviceId) -> Result<Option<DeviceStatus>, EngineError>;

    /// Hands a message to WhatsApp; its outcome arrives as `MessageSent` or
    /// `MessageFailed`, then receipts. Must be idempotent by `message_id`: sending an
    /// id the network already has delivers nothing new and reports the original
    /// `MessageSent` again (crash recovery relies on this).
    ///
    /// `DeviceNotFound` and `DeviceOffline` promise that nothing was sent. May be
    /// called before `restore`; an engine that cannot send until then answers
    /// `DeviceOffline`.
    async fn send(&self, device_id: &DeviceId, message: &OutgoingMessage) -> Result<(), EngineError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(to: &str, text: &str) -> SendRequest {
        SendRequest { message_id: "msg_1".into(), to: to.into(), content: Content::Text { text: text.into() } }
    }

    #[test]
    fn send_requests_are_parsed_at_the_edge() {
        let ok = OutgoingMessage::try_from(request("6281234567890@s.whatsapp.net", "hi")).unwrap();
        assert_eq!(ok.to.user(), "6281234567890");
        assert!(OutgoingMessage::try_from(request("6281234567890", "hi")).unwrap_err().contains("JID"));
        assert!(OutgoingMessage::try_from(request("6281234567890@s.whatsapp.net", " ")).is_err());
        let long = "x".repeat(MAX_TEXT_CHARS + 1);
        assert!(OutgoingMessage::try_from(request("6281234567890@s.whatsapp.net", &long)).is_err());
        let bad_id = SendRequest { message_id: "msg 1".into(), ..request("6281234567890@s.whatsapp.net", "hi") };
        assert!(OutgoingMessage::try_from(bad_id).unwrap_err().contains("message_id"));
    }
}
