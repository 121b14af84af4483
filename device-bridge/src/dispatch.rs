//! Hands sends to the engine exactly once. A new send is journaled before the
//! engine sees it. A send a crash interrupted (still pending in the journal at
//! startup) is handed over again: once at startup, and otherwise when its device
//! connects; the engine's idempotency by message id makes that safe whether or
//! not it got out before the crash.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use wagate_contract::wire::{EventKind, SendResponse};

use crate::db::Db;
use crate::engine::{DeviceStatus, Engine, EngineError, EngineEvent, OutgoingMessage};
use crate::ids::DeviceId;
use crate::journal::{self, Claim};
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
    /// Sends that were pending when the process started, by device, oldest first.
    interrupted: Mutex<HashMap<DeviceId, Vec<OutgoingMessage>>>,
}

impl Dispatcher {
    /// Must run before the engine's first `Connected` event is consumed, so that
    /// every interrupted send still waiting for its device is found.
    pub fn new(engine: Arc<dyn Engine>, journal: Db, outbox: Outbox) -> rusqlite::Result<Self> {
        let mut interrupted: HashMap<DeviceId, Vec<OutgoingMessage>> = HashMap::new();
        let pending = journal::pending(&journal.lock())?;
        if !pending.is_empty() {
            tracing::info!(
                count = pending.len(),
                "sends interrupted by the last stop resume when their devices connect"
            );
        }
        for send in pending {
            interrupted.entry(send.device_id).or_default().push(send.message);
        }
        Ok(Self { engine, journal, outbox, interrupted: Mutex::new(interrupted) })
    }

    /// Sends a message unless its id was journaled before, in which case the
    /// journaled state is the answer and nothing is sent.
    pub async fn submit(&self, device_id: &DeviceId, message: OutgoingMessage) -> Result<SendResponse, DispatchError> {
        let journaled = journal::state(&self.journal.lock(), &message.message_id)?;
        if let Some(state) = journaled {
            return Ok(state);
        }
        // Refuse before journaling: the worker keeps an offline device's messages
        // queued and retries them, so they must not be recorded as ours yet.
        match self.engine.status(device_id).await? {
            None => return Err(EngineError::DeviceNotFound.into()),
            Some(DeviceStatus::Connected) => {}
            Some(DeviceStatus::Pairing | DeviceStatus::Disconnected) => return Err(EngineError::DeviceOffline.into()),
        }
        let claim = journal::claim(&self.journal.lock(), device_id, &message)?;
        if let Claim::Existing(state) = claim {
            return Ok(state);
        }
        match self.engine.send(device_id, &message).await {
            Ok(()) => Ok(SendResponse::Accepted),
            Err(e @ (EngineError::DeviceNotFound | EngineError::DeviceOffline)) => {
                // The device went away after the check; nothing was sent.
                journal::release(&self.journal.lock(), &message.message_id)?;
                Err(e.into())
            }
            Err(e) => Ok(self.fail(device_id, &message, "engine_error", e.to_string())?),
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
        let Some(messages) = self.interrupted().remove(device_id) else {
            return;
        };
        let mut queue = messages.into_iter();
        while let Some(message) = queue.next() {
            let outcome = match self.engine.send(device_id, &message).await {
                Ok(()) => {
                    tracing::info!(device_id = %device_id, message_id = %message.message_id, "resumed an interrupted send");
                    continue;
                }
                Err(EngineError::DeviceOffline) => {
                    // Gone again: the rest waits for the next connection, order kept.
                    let mut waiting = vec![message];
                    waiting.extend(queue);
                    self.interrupted().entry(device_id.clone()).or_default().splice(0..0, waiting);
                    return;
                }
                Err(EngineError::DeviceNotFound) => self.fail(
                    device_id,
                    &message,
                    "device_not_found",
                    "device was logged out before the send went out".into(),
                ),
                Err(e) => self.fail(device_id, &message, "engine_error", e.to_string()),
            };
            if let Err(e) = outcome {
                // Still pending in the journal: the next start tries again.
                tracing::error!(message_id = %message.message_id, error = %e, "cannot record the failure of an interrupted send");
            }
        }
    }

    /// Records a send that failed without the engine reporting it: journal and
    /// event in one transaction, as for engine-reported outcomes.
    fn fail(
        &self,
        device_id: &DeviceId,
        message: &OutgoingMessage,
        code: &str,
        reason: String,
    ) -> rusqlite::Result<SendResponse> {
        tracing::warn!(device_id = %device_id, message_id = %message.message_id, code, reason, "send failed");
        let kind = EventKind::MessageFailed {
            message_id: message.message_id.to_string(),
            code: code.to_owned(),
            reason: reason.clone(),
        };
        self.outbox.record(&EngineEvent::now(device_id, kind))?;
        Ok(SendResponse::Failed { code: code.to_owned(), reason })
    }

    fn interrupted(&self) -> MutexGuard<'_, HashMap<DeviceId, Vec<OutgoingMessage>>> {
        self.interrupted.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
