//! The engine port: everything the bridge knows about WhatsApp.
//!
//! An engine owns the device sessions (pairing, connection, logout), sends
//! messages and looks numbers up. It answers calls only with what it knows at
//! once; everything that happens later on the network (QR rotation, a pairing
//! code becoming known, a phone scanning, send outcomes, receipts, inbound
//! messages) it reports as [`EngineEvent`]s through the [`EventSink`] it was
//! built with. The simulator implements it; so does the whatsapp-rust engine.
//!
//! Media travels by reference: the worker uploads bytes to the bridge's
//! [`MediaStore`](crate::media::MediaStore) first, a send names them by hash,
//! and the engine gets them as an [`OutgoingMedia`] whose file it reads to
//! upload. An engine that receives media stores it there too and reports it as
//! [`Content::Media`](wagate_contract::wire::Content::Media) with the hash.

pub mod message;
pub mod sim;
pub mod whatsapp;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;
use wagate_contract::wire::{CheckResult, EventKind};

pub use self::message::{Location, OutgoingMedia, OutgoingMessage, Payload};
use crate::clock::now_ms;
use crate::ids::DeviceId;
use crate::inbound::{self, Received};
use crate::jid::PhoneNumber;
use crate::metrics::Metrics;
use crate::pair_code::PairCode;

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
pub struct EventSink {
    events: mpsc::UnboundedSender<EngineEvent>,
    /// Counts the inbound messages [`Self::receive`] refuses.
    metrics: Arc<Metrics>,
}

impl EventSink {
    pub fn channel(metrics: Arc<Metrics>) -> (Self, mpsc::UnboundedReceiver<EngineEvent>) {
        let (events, rx) = mpsc::unbounded_channel();
        (Self { events, metrics }, rx)
    }

    pub fn emit(&self, device_id: &DeviceId, kind: EventKind) {
        if self.events.send(EngineEvent::now(device_id, kind)).is_err() {
            // Only during shutdown, after the consumer stopped.
            tracing::debug!(device_id = %device_id, "event dropped: no consumer");
        }
    }

    /// Reports an inbound message the engine decoded, if it passes the bridge's
    /// checks ([`inbound::screen`]); a refused one is counted and logged without
    /// its content, and nothing reaches the worker.
    pub fn receive(&self, device_id: &DeviceId, received: Received) {
        let external_id = received.external_id.clone();
        match inbound::screen(received) {
            Ok(kind) => self.emit(device_id, kind),
            Err(refusal) => {
                self.metrics.inbound_refused(refusal);
                // The id only as far as it is printable: it may be what was wrong.
                let external_id: String = external_id.chars().filter(char::is_ascii_graphic).take(64).collect();
                tracing::warn!(device_id = %device_id, external_id, reason = refusal.as_str(), "inbound message refused at the bridge boundary");
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Waiting for a phone to scan this QR reference, or to enter the pairing code.
    Pairing {
        qr: String,
        /// Set when a code was asked for and is already known; otherwise it follows
        /// as `EventKind::PairCode` (a real engine must first reach WhatsApp).
        pair_code: Option<PairCode>,
    },
    Linked {
        phone: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceStatus {
    /// Waiting for a QR scan or a pairing code.
    Pairing,
    /// Linked, but not connected right now (starting up, or the network dropped):
    /// sends are refused as offline until `Connected` is emitted again.
    Connecting,
    Connected,
    /// Linked once, but the session ended (unlinked from the phone); needs pairing again.
    Disconnected,
}

impl DeviceStatus {
    pub const ALL: [Self; 4] = [Self::Pairing, Self::Connecting, Self::Connected, Self::Disconnected];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pairing => "pairing",
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Disconnected => "disconnected",
        }
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
    #[error("cannot read the media file: {0}")]
    Media(#[from] std::io::Error),
    /// WhatsApp refused the request or did not answer in time.
    #[error("whatsapp: {0}")]
    Upstream(String),
}

#[async_trait]
pub trait Engine: Send + Sync {
    /// Called once at startup: reconnects every persisted linked device, emitting
    /// `Connected` for each (which also resumes its interrupted sends), resumes
    /// pairing for devices that were waiting (a fresh QR, and a fresh pairing code
    /// where one was asked for), and delivers receipts that fell due while the
    /// bridge was down.
    async fn restore(&self) -> Result<(), EngineError>;

    /// Starts pairing, or reports where an existing device stands:
    /// - unknown, or `Disconnected`: a fresh pairing;
    /// - `Pairing`: the QR is replaced at once by a fresh one (this is how a person
    ///   asks for a new QR), and the pairing continues;
    /// - `Connecting` or `Connected`: `Linked`, whatever `pair_phone` says.
    ///
    /// Every QR reference shown is emitted as `QrUpdated`, until one is scanned.
    /// With `pair_phone`, a pairing code for that number is asked for too and
    /// emitted as `PairCode` once known (a later call with another number replaces
    /// it); without, a code asked for earlier stays valid.
    async fn link(&self, device_id: &DeviceId, pair_phone: Option<&PhoneNumber>) -> Result<LinkState, EngineError>;

    /// Logs the device out of WhatsApp and forgets its session. The caller asked for
    /// it, so no `Disconnected` event follows.
    async fn logout(&self, device_id: &DeviceId) -> Result<(), EngineError>;

    /// `None` for a device the engine has no session for.
    async fn status(&self, device_id: &DeviceId) -> Result<Option<DeviceStatus>, EngineError>;

    /// How many devices are in each status; a status with none may be left out.
    async fn count_by_status(&self) -> Result<HashMap<DeviceStatus, u64>, EngineError>;

    /// Which of `phones` are on WhatsApp, one result per phone in the same order.
    /// `DeviceOffline` unless the device is connected: only a session can ask.
    async fn check(&self, device_id: &DeviceId, phones: &[PhoneNumber]) -> Result<Vec<CheckResult>, EngineError>;

    /// Hands a message to WhatsApp (for media: upload the file, then send); its
    /// outcome arrives as `MessageSent` or `MessageFailed`, then receipts. Must be
    /// idempotent by `message_id`: sending an id the network already has delivers
    /// nothing new and reports the original `MessageSent` again (crash recovery
    /// relies on this; a real engine can derive WhatsApp's message id from it, so
    /// that a repeat is the same message to the network).
    ///
    /// `DeviceNotFound` and `DeviceOffline` promise that nothing was sent; any
    /// other error is recorded as the message's failure (`engine_error`). May be
    /// called before `restore`; an engine that cannot send until then answers
    /// `DeviceOffline`.
    async fn send(&self, device_id: &DeviceId, message: &OutgoingMessage) -> Result<(), EngineError>;
}
