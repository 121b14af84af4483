//! Hands sends to the engine exactly once. A new send is journaled before the
//! engine sees it. A send a crash interrupted (still pending in the journal at
//! startup) is handed over again: once at startup, and otherwise when its device
//! connects; the engine's idempotency by message id makes that safe whether or
//! not it got out before the crash.
//!
//! A one-time code carries its expiry: from then on it is handed to no engine,
//! whether it arrives late (a retry) or waited here (for its device, after a
//! crash), and ends failed with `expired` instead, as the worker's queue ends it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use wagate_contract::wire::{error_code, EventKind, SendResponse};

use crate::clock::now_ms;
use crate::db::Db;
use crate::engine::message::InvalidContent;
use crate::engine::{DeviceStatus, Engine, EngineError, EngineEvent, OutgoingMessage, Payload};
use crate::ids::{DeviceId, MessageId};
use crate::journal::{self, Claim, Keep, PendingSend};
use crate::media::MediaStore;
use crate::metrics::Metrics;
use crate::outbox::Outbox;

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("journal storage failed: {0}")]
    Journal(#[from] rusqlite::Error),
}

pub struct Dispatcher {
    engine: Arc<dyn Engine>,
    journal: Db,
    outbox: Outbox,
    media: MediaStore,
    metrics: Arc<Metrics>,
    /// Sends that were pending when the process started, by device, oldest first.
    interrupted: Mutex<HashMap<DeviceId, Vec<PendingSend>>>,
}

impl Dispatcher {
    /// Must run before the engine's first `Connected` event is consumed, so that
    /// every interrupted send still waiting for its device is found.
    pub fn new(
        engine: Arc<dyn Engine>,
        journal: Db,
        outbox: Outbox,
        media: MediaStore,
        metrics: Arc<Metrics>,
    ) -> rusqlite::Result<Self> {
        let mut interrupted: HashMap<DeviceId, Vec<PendingSend>> = HashMap::new();
        journal::migrate(&journal.lock())?;
        let pending = journal::pending(&journal.lock())?;
        if !pending.is_empty() {
            tracing::info!(
                count = pending.len(),
                "sends interrupted by the last stop resume when their devices connect"
            );
        }
        for send in pending {
            interrupted.entry(send.device_id.clone()).or_default().push(send);
        }
        let withheld = journal::withheld(&journal.lock())?;
        let dispatcher = Self { engine, journal, outbox, media, metrics, interrupted: Mutex::new(interrupted) };
        for (device_id, message_id) in withheld {
            // The engine had it, so it may well have gone out; but what it said is
            // gone by design, and the worker must hear an outcome.
            let reason =
                "the bridge stopped before WhatsApp's answer; the content was not kept, so it is not sent again";
            dispatcher.fail(&device_id, &message_id, "outcome_unknown", reason.into())?;
        }
        Ok(dispatcher)
    }

    /// Sends a message unless its id was journaled before, in which case the
    /// journaled state is the answer and nothing is sent. `keep` says how long
    /// the journal holds its content; past `expires_at_ms` nothing is sent and
    /// the message fails `expired`.
    pub async fn submit(
        &self,
        device_id: &DeviceId,
        message: OutgoingMessage,
        keep: Keep,
        expires_at_ms: Option<u64>,
    ) -> Result<SendResponse, DispatchError> {
        let journaled = journal::state(&self.journal.lock(), &message.message_id)?;
        if let Some(state) = journaled {
            if state == SendResponse::Accepted && expired(expires_at_ms) {
                // The worker's retry of a send still waiting here for its device: the
                // retries stand in for a timer, so it fails when due, not at reconnection.
                if let Some(send) = self.take_interrupted(device_id, &message.message_id) {
                    return Ok(self.expire(&send.device_id, &send.message_id)?);
                }
            }
            return Ok(state);
        }
        if expired(expires_at_ms) {
            // Journaled (before any device check: offline or not, it is over) so that
            // a retry answers the same failure.
            let claim = journal::claim(&self.journal.lock(), device_id, &message, expires_at_ms)?;
            return match claim {
                Claim::Existing(state) => Ok(state),
                Claim::New => Ok(self.expire(device_id, &message.message_id)?),
            };
        }
        // Refuse before journaling: the worker keeps an offline device's messages
        // queued and retries them, so they must not be recorded as ours yet.
        match self.engine.status(device_id).await? {
            None => return Err(EngineError::DeviceNotFound.into()),
            Some(DeviceStatus::Connected) => {}
            Some(DeviceStatus::Pairing | DeviceStatus::Connecting | DeviceStatus::Disconnected) => {
                return Err(EngineError::DeviceOffline.into())
            }
        }
        let claim = journal::claim(&self.journal.lock(), device_id, &message, expires_at_ms)?;
        if let Claim::Existing(state) = claim {
            return Ok(state);
        }
        self.metrics.sent();
        match self.engine.send(device_id, &message).await {
            Ok(()) => {
                if keep == Keep::UntilHandedOver {
                    journal::withhold(&self.journal.lock(), &message.message_id)?;
                }
                Ok(SendResponse::Accepted)
            }
            Err(e @ (EngineError::DeviceNotFound | EngineError::DeviceOffline)) => {
                // The device went away after the check; nothing was sent.
                journal::release(&self.journal.lock(), &message.message_id)?;
                Err(e.into())
            }
            Err(e) => Ok(self.fail(device_id, &message.message_id, "engine_error", e.to_string())?),
        }
    }

    /// Tries every interrupted send once. Called before the engine restores its
    /// devices, so that an engine able to send already (the simulator) reports
    /// each outcome before the receipts that `restore` resumes.
    pub async fn resume_all(&self) {
        let devices: Vec<DeviceId> = self.interrupted().keys().cloned().collect();
        for device_id in devices {
            self.resume(&device_id).await;
        }
    }

    /// Hands the device's interrupted sends to the engine again.
    pub async fn resume(&self, device_id: &DeviceId) {
        let Some(sends) = self.interrupted().remove(device_id) else {
            return;
        };
        let mut queue = sends.into_iter();
        while let Some(send) = queue.next() {
            let handed_over = if expired(send.expires_at_ms) {
                // It waited here past its code's expiry: the engine never sees it.
                Err(Resend::Expired)
            } else {
                self.resend(&send).await
            };
            let outcome = match handed_over {
                Ok(()) => {
                    tracing::info!(device_id = %device_id, message_id = %send.message_id, "resumed an interrupted send");
                    continue;
                }
                Err(Resend::Engine(EngineError::DeviceOffline)) => {
                    // Gone again: the rest waits for the next connection, order kept.
                    let mut waiting = vec![send];
                    waiting.extend(queue);
                    self.interrupted().entry(device_id.clone()).or_default().splice(0..0, waiting);
                    return;
                }
                Err(Resend::Engine(EngineError::DeviceNotFound)) => self.fail(
                    device_id,
                    &send.message_id,
                    "device_not_found",
                    "device was logged out before the send went out".into(),
                ),
                Err(Resend::Engine(e)) => self.fail(device_id, &send.message_id, "engine_error", e.to_string()),
                // Its media vanished from the store (or never passed today's checks).
                Err(Resend::Content(e)) => self.fail(device_id, &send.message_id, e.code(), e.to_string()),
                Err(Resend::Expired) => self.expire(device_id, &send.message_id),
            };
            if let Err(e) = outcome {
                // Still pending in the journal: the next start tries again.
                tracing::error!(message_id = %send.message_id, error = %e, "cannot record the failure of an interrupted send");
            }
        }
    }

    async fn resend(&self, send: &PendingSend) -> Result<(), Resend> {
        let message = OutgoingMessage {
            message_id: send.message_id.clone(),
            to: send.to.clone(),
            payload: Payload::resolve(&send.content, &self.media).map_err(Resend::Content)?,
        };
        self.engine.send(&send.device_id, &message).await.map_err(Resend::Engine)
    }

    /// Records a send that failed without the engine reporting it: journal and
    /// event in one transaction, as for engine-reported outcomes.
    fn fail(
        &self,
        device_id: &DeviceId,
        message_id: &MessageId,
        code: &str,
        reason: String,
    ) -> rusqlite::Result<SendResponse> {
        tracing::warn!(device_id = %device_id, message_id = %message_id, code, reason, "send failed");
        let kind = EventKind::MessageFailed {
            message_id: message_id.to_string(),
            code: code.to_owned(),
            reason: reason.clone(),
        };
        self.outbox.record(&EngineEvent::now(device_id, kind))?;
        Ok(SendResponse::Failed { code: code.to_owned(), reason })
    }

    /// Fails a one-time code whose expiry passed before it was handed to the engine.
    fn expire(&self, device_id: &DeviceId, message_id: &MessageId) -> rusqlite::Result<SendResponse> {
        let reason = "the one-time code expired before the bridge could hand it to WhatsApp";
        self.fail(device_id, message_id, error_code::EXPIRED, reason.into())
    }

    /// Takes one send out of its device's interrupted ones, so that it is resolved only once.
    fn take_interrupted(&self, device_id: &DeviceId, message_id: &MessageId) -> Option<PendingSend> {
        let mut interrupted = self.interrupted();
        let sends = interrupted.get_mut(device_id)?;
        let send = sends.remove(sends.iter().position(|send| send.message_id == *message_id)?);
        if sends.is_empty() {
            interrupted.remove(device_id);
        }
        Some(send)
    }

    fn interrupted(&self) -> MutexGuard<'_, HashMap<DeviceId, Vec<PendingSend>>> {
        self.interrupted.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A code is not handed over from the instant it expires, as the worker's queue reckons it.
fn expired(expires_at_ms: Option<u64>) -> bool {
    expires_at_ms.is_some_and(|at| now_ms() >= at)
}

/// Why an interrupted send could not be handed over again.
enum Resend {
    Expired,
    Content(InvalidContent),
    Engine(EngineError),
}
