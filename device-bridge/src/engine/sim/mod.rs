//! The simulated WhatsApp network of CONTRACT.md: it stands in for WhatsApp's
//! servers and for the phones on the other side, so the whole stack can run and
//! be tested on a machine that cannot reach WhatsApp.
//!
//! Its state lives in its own SQLite file (`sim.db`) so that a bridge restart
//! looks to the worker like a real reconnect: linked devices come back, the
//! phones keep what they received, and receipts still due are still sent.

mod devices;
mod inbox;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use tokio::task::AbortHandle;
use wagate_contract::wire::{CheckResult, EventKind};

use self::devices::{CodePairing, DeviceState};
use self::inbox::{Arrival, Receipt};
pub use self::inbox::{PhoneLocation, PhoneMedia, PhoneMessage};
use super::{DeviceStatus, Engine, EngineError, EventSink, LinkState, OutgoingMessage};
use crate::clock::now_ms;
use crate::db::Db;
use crate::ids::DeviceId;
use crate::inbound::{Received, ReceivedBody};
use crate::jid::{Jid, PhoneNumber};
use crate::pair_code::PairCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimTimings {
    /// From send to the delivery receipt.
    pub deliver: Duration,
    /// From send to the read receipt (never before delivery).
    pub read: Duration,
    /// How long each QR reference stays valid before the next one replaces it.
    pub qr_ttl: Duration,
}

/// Errors of the simulator's control API (the phone side of the network).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("device not found")]
    DeviceNotFound,
    #[error("device is not waiting for a QR scan or a pairing code")]
    NotWaitingForScan,
    #[error("no pairing code was asked for this device: link it with pair_phone first")]
    NoPairCode,
    #[error("pairing code does not match the one shown for this device")]
    WrongPairCode,
    #[error("device is not connected")]
    NotConnected,
    #[error("simulator storage failed: {0}")]
    Storage(#[from] rusqlite::Error),
}

/// CONTRACT.md: a number is on WhatsApp unless its digits start with 999.
fn on_whatsapp(number: &str) -> bool {
    !number.starts_with("999")
}

/// What the network does with a message, decided by the recipient (CONTRACT.md's number rules).
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Refuse { code: &'static str, reason: String },
    Deposit { receipts: bool },
}

impl Route {
    fn of(to: &Jid) -> Self {
        let Jid::User(phone) = to else {
            return Self::Deposit { receipts: true };
        };
        let number = phone.as_str();
        if !on_whatsapp(number) {
            Self::Refuse { code: "not_on_whatsapp", reason: format!("{number} is not on WhatsApp") }
        } else if number.starts_with("997") {
            Self::Refuse {
                code: "engine_error",
                reason: "simulated engine error: numbers starting with 997 always fail".into(),
            }
        } else {
            Self::Deposit { receipts: !number.starts_with("998") }
        }
    }
}

/// Cheap to clone: every clone drives the same network.
#[derive(Clone)]
pub struct SimEngine {
    db: Db,
    timings: SimTimings,
    events: EventSink,
    /// The QR rotation task of each device waiting for a scan.
    pairings: Arc<Mutex<HashMap<DeviceId, AbortHandle>>>,
}

impl SimEngine {
    pub fn open(path: &Path, timings: SimTimings, events: EventSink) -> rusqlite::Result<Self> {
        let db = Db::open(path, &format!("{}{}", devices::SCHEMA, inbox::SCHEMA))?;
        Ok(Self { db, timings, events, pairings: Arc::default() })
    }

    /// The phone scans the device's current QR.
    pub fn scan(&self, device_id: &DeviceId, phone: &PhoneNumber) -> Result<(), SimError> {
        self.complete_pairing(device_id, |_| Ok(phone.to_string())).map(drop)
    }

    /// The phone that a pairing code was asked for enters `code`; returns its number.
    pub fn pair(&self, device_id: &DeviceId, code: &PairCode) -> Result<String, SimError> {
        self.complete_pairing(device_id, |asked| match asked {
            None => Err(SimError::NoPairCode),
            Some(CodePairing { phone, code: shown }) if shown == *code => Ok(phone),
            Some(_) => Err(SimError::WrongPairCode),
        })
    }

    /// The phone removes the linked device.
    pub fn unlink(&self, device_id: &DeviceId) -> Result<(), SimError> {
        {
            let conn = self.db.lock();
            match devices::state(&conn, device_id)? {
                None => return Err(SimError::DeviceNotFound),
                Some(DeviceState::Connected { .. }) => {}
                Some(_) => return Err(SimError::NotConnected),
            }
            devices::unlink(&conn, device_id)?;
        }
        self.events.emit(device_id, EventKind::Disconnected { reason: "unlinked from phone".into(), logged_out: true });
        Ok(())
    }

    /// A phone sends the device a message from `from` (a JID), decoded as `body`;
    /// returns the message's WhatsApp id (`external_id`, or a new one). It goes
    /// through the bridge's checks as the real engine's inbound messages do.
    pub fn inbound(
        &self,
        device_id: &DeviceId,
        from: String,
        participant: Option<String>,
        external_id: Option<String>,
        push_name: Option<String>,
        body: ReceivedBody,
    ) -> Result<String, SimError> {
        match devices::state(&self.db.lock(), device_id)? {
            None => return Err(SimError::DeviceNotFound),
            Some(DeviceState::Connected { .. }) => {}
            Some(_) => return Err(SimError::NotConnected),
        }
        let external_id = external_id.unwrap_or_else(new_external_id);
        self.events
            .receive(device_id, Received { external_id: external_id.clone(), from, push_name, participant, body });
        Ok(external_id)
    }

    /// What a phone (or group) has received, oldest first.
    pub fn phone_messages(&self, phone: &str) -> rusqlite::Result<Vec<PhoneMessage>> {
        inbox::messages(&self.db.lock(), phone)
    }

    /// Connects a waiting device to the number `phone_for` picks from the pairing
    /// code asked for it (if any).
    fn complete_pairing(
        &self,
        device_id: &DeviceId,
        phone_for: impl FnOnce(Option<CodePairing>) -> Result<String, SimError>,
    ) -> Result<String, SimError> {
        let phone = {
            let conn = self.db.lock();
            let asked = match devices::state(&conn, device_id)? {
                None => return Err(SimError::DeviceNotFound),
                Some(DeviceState::Waiting { code, .. }) => code,
                Some(_) => return Err(SimError::NotWaitingForScan),
            };
            let phone = phone_for(asked)?;
            devices::connect(&conn, device_id, &phone)?;
            phone
        };
        self.stop_pairing(device_id);
        self.events.emit(device_id, EventKind::Connected { phone: phone.clone() });
        Ok(phone)
    }

    /// Rotates the device's QR every TTL until it is scanned or logged out.
    fn start_pairing(&self, device_id: &DeviceId, first_rotation_in: Duration) {
        let engine = self.clone();
        let id = device_id.clone();
        let task = tokio::spawn(async move {
            let mut wait = first_rotation_in;
            loop {
                tokio::time::sleep(wait).await;
                wait = engine.timings.qr_ttl;
                let qr = new_qr();
                match devices::rotate_qr(&engine.db.lock(), &id, &qr) {
                    Ok(false) => return,
                    Ok(true) => engine.events.emit(&id, EventKind::QrUpdated { qr }),
                    Err(e) => tracing::warn!(device_id = %id, error = %e, "QR rotation failed; retrying next period"),
                }
            }
        });
        if let Some(previous) = self.pairings_lock().insert(device_id.clone(), task.abort_handle()) {
            previous.abort();
        }
    }

    fn stop_pairing(&self, device_id: &DeviceId) {
        if let Some(task) = self.pairings_lock().remove(device_id) {
            task.abort();
        }
    }

    fn pairings_lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceId, AbortHandle>> {
        self.pairings.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends the receipts still due for a message, timed from when it was sent.
    fn schedule_receipts(&self, device_id: DeviceId, message_id: String, sent_ms: u64, delivered: bool) {
        let engine = self.clone();
        let deliver_at = sent_ms.saturating_add(duration_ms(self.timings.deliver));
        let read_at = sent_ms.saturating_add(duration_ms(self.timings.read)).max(deliver_at);
        tokio::spawn(async move {
            if !delivered {
                sleep_until_ms(deliver_at).await;
                if !engine.mark(Receipt::Delivered, &message_id) {
                    return;
                }
                engine.events.emit(&device_id, EventKind::MessageDelivered { message_id: message_id.clone() });
            }
            sleep_until_ms(read_at).await;
            if engine.mark(Receipt::Read, &message_id) {
                engine.events.emit(&device_id, EventKind::MessageRead { message_id });
            }
        });
    }

    /// True when the receipt is new and should be emitted.
    fn mark(&self, receipt: Receipt, message_id: &str) -> bool {
        inbox::mark(&self.db.lock(), receipt, message_id).unwrap_or_else(|e| {
            tracing::warn!(message_id, ?receipt, error = %e, "could not record receipt; skipping it");
            false
        })
    }
}

#[async_trait]
impl Engine for SimEngine {
    async fn restore(&self) -> Result<(), EngineError> {
        let (connected, waiting, owed) = {
            let conn = self.db.lock();
            (devices::connected(&conn)?, devices::waiting(&conn)?, inbox::owed(&conn)?)
        };
        for (device_id, phone) in connected {
            self.events.emit(&device_id, EventKind::Connected { phone });
        }
        for (device_id, code_phone) in &waiting {
            // The old QR and pairing code died with the previous process, as a real
            // pairing session would; the phone a code was asked for gets a new one.
            if let Some(phone) = code_phone {
                let code = devices::new_pair_code(&self.db.lock(), device_id, phone)?;
                self.events.emit(device_id, EventKind::PairCode { code: code.to_string() });
            }
            self.start_pairing(device_id, Duration::ZERO);
        }
        for o in owed {
            self.schedule_receipts(o.device_id, o.message_id, o.sent_ms, o.delivered);
        }
        Ok(())
    }

    async fn link(&self, device_id: &DeviceId, pair_phone: Option<&PhoneNumber>) -> Result<LinkState, EngineError> {
        let (qr, pair_code, new_code) = {
            let conn = self.db.lock();
            let previous = devices::state(&conn, device_id)?;
            if let Some(DeviceState::Connected { phone }) = previous {
                return Ok(LinkState::Linked { phone });
            }
            let qr = new_qr();
            devices::wait_for_scan(&conn, device_id, &qr)?;
            match (pair_phone, previous) {
                (Some(phone), _) => {
                    let code = devices::new_pair_code(&conn, device_id, phone)?;
                    (qr, Some(code), true)
                }
                (None, Some(DeviceState::Waiting { code: Some(asked), .. })) => (qr, Some(asked.code), false),
                (None, _) => (qr, None, false),
            }
        };
        self.events.emit(device_id, EventKind::QrUpdated { qr: qr.clone() });
        if let Some(code) = pair_code.as_ref().filter(|_| new_code) {
            self.events.emit(device_id, EventKind::PairCode { code: code.to_string() });
        }
        // The fresh QR lives a full period, whenever the previous one was due.
        self.start_pairing(device_id, self.timings.qr_ttl);
        Ok(LinkState::Pairing { qr, pair_code })
    }

    async fn logout(&self, device_id: &DeviceId) -> Result<(), EngineError> {
        if !devices::delete(&self.db.lock(), device_id)? {
            return Err(EngineError::DeviceNotFound);
        }
        self.stop_pairing(device_id);
        Ok(())
    }

    async fn status(&self, device_id: &DeviceId) -> Result<Option<DeviceStatus>, EngineError> {
        Ok(devices::state(&self.db.lock(), device_id)?.map(|state| match state {
            DeviceState::Waiting { .. } => DeviceStatus::Pairing,
            DeviceState::Connected { .. } => DeviceStatus::Connected,
            DeviceState::Unlinked => DeviceStatus::Disconnected,
        }))
    }

    async fn count_by_status(&self) -> Result<HashMap<DeviceStatus, u64>, EngineError> {
        Ok(devices::count_by_status(&self.db.lock())?)
    }

    async fn check(&self, device_id: &DeviceId, phones: &[PhoneNumber]) -> Result<Vec<CheckResult>, EngineError> {
        devices::connected_phone(&self.db.lock(), device_id)?;
        Ok(phones
            .iter()
            .map(|phone| {
                let exists = on_whatsapp(phone.as_str());
                CheckResult { phone: phone.to_string(), exists, jid: exists.then(|| phone.jid().to_string()) }
            })
            .collect())
    }

    async fn send(&self, device_id: &DeviceId, message: &OutgoingMessage) -> Result<(), EngineError> {
        let message_id = message.message_id.to_string();
        match Route::of(&message.to) {
            Route::Refuse { code, reason } => {
                devices::connected_phone(&self.db.lock(), device_id)?;
                self.events.emit(device_id, EventKind::MessageFailed { message_id, code: code.into(), reason });
            }
            Route::Deposit { receipts } => {
                let arrival = Arrival::of(&message.payload).await?;
                let deposit = {
                    let conn = self.db.lock();
                    let sender = devices::connected_phone(&conn, device_id)?;
                    inbox::deposit(&conn, device_id, &sender, message, &arrival, receipts)?
                };
                self.events.emit(
                    device_id,
                    EventKind::MessageSent { message_id: message_id.clone(), external_id: deposit.external_id },
                );
                // A repeated send reports the original outcome; its receipts are
                // already scheduled (or were resumed by `restore`).
                if deposit.fresh && receipts {
                    self.schedule_receipts(device_id.clone(), message_id, deposit.sent_ms, false);
                }
            }
        }
        Ok(())
    }
}

/// Shaped like WhatsApp's pairing references: `2@<ref>,<noise key>,<identity key>,<adv secret>`.
fn new_qr() -> String {
    format!(
        "2@{},{},{},{}",
        BASE64.encode(rand::random::<[u8; 30]>()),
        BASE64.encode(rand::random::<[u8; 32]>()),
        BASE64.encode(rand::random::<[u8; 32]>()),
        BASE64.encode(rand::random::<[u8; 32]>()),
    )
}

/// Shaped like the ids WhatsApp Web gives its messages: `3EB0` and 18 hex digits.
fn new_external_id() -> String {
    format!("3EB0{}", hex::encode_upper(rand::random::<[u8; 9]>()))
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn sleep_until_ms(at_ms: u64) {
    tokio::time::sleep(Duration::from_millis(at_ms.saturating_sub(now_ms()))).await;
}

#[cfg(test)]
mod tests;
