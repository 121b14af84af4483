//! The real engine: WhatsApp through whatsapp-rust, one client per device.
//!
//! Layout under `$WAGATE_DATA_DIR`:
//! - `whatsapp-engine.db`: the device registry and the send record ([`store`]);
//! - `whatsapp/<device_id>.db`: one whatsapp-rust session store per device
//!   (identity keys, Signal sessions, app state), deleted when the device logs out.
//!
//! Each device's session runs under a supervisor ([`session`]) that rebuilds
//! its bot whenever the connection ends; library events are translated in
//! [`events`], messages assembled and read in [`media`], sends and inbound
//! media handled in [`traffic`].

pub mod backoff;
pub mod events;
pub mod media;
mod session;
pub mod store;
mod traffic;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use wagate_contract::wire::{CheckResult, EventKind};
use whatsapp_rust::Jid as WaJid;

use self::backoff::Backoff;
use self::session::{Phase, Session, View};
use self::store::{EngineStore, Registration, SendState};
use super::{DeviceStatus, Engine, EngineError, EventSink, LinkState, OutgoingMessage};
use crate::ids::{DeviceId, MessageId};
use crate::jid::PhoneNumber;
use crate::media::MediaStore;

/// Longest a number check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a logout waits for WhatsApp to confirm the device is removed.
const LOGOUT_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct WhatsappConfig {
    /// The registry: `$WAGATE_DATA_DIR/whatsapp-engine.db`.
    pub registry_path: PathBuf,
    /// One session store per device: `$WAGATE_DATA_DIR/whatsapp/`.
    pub sessions_dir: PathBuf,
    /// How long `link` waits for WhatsApp's first QR reference (and the pairing
    /// code, when one was asked for) before answering without it.
    pub link_wait: Duration,
    pub backoff: Backoff,
    /// WhatsApp's WebSocket endpoint; `None` is the library's default. Tests
    /// point it at a closed local port.
    pub ws_url: Option<String>,
    /// Pins the WhatsApp Web version instead of fetching the current one from
    /// web.whatsapp.com (refreshed daily). Tests pin it to stay off the network.
    pub version: Option<(u32, u32, u32)>,
}

impl WhatsappConfig {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            registry_path: data_dir.join("whatsapp-engine.db"),
            sessions_dir: data_dir.join("whatsapp"),
            link_wait: Duration::from_secs(10),
            backoff: Backoff::RECONNECT,
            ws_url: None,
            version: None,
        }
    }
}

/// Cheap to clone: every clone drives the same sessions.
#[derive(Clone)]
pub struct WhatsappEngine {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    config: WhatsappConfig,
    store: EngineStore,
    media: MediaStore,
    events: EventSink,
    /// The running session of each device that has one.
    sessions: Mutex<HashMap<DeviceId, Arc<Session>>>,
    /// Sends handed to WhatsApp whose outcome is not recorded yet.
    in_flight: Mutex<HashSet<MessageId>>,
    /// Serializes link and logout per device.
    lifecycle: Mutex<HashMap<DeviceId, Arc<tokio::sync::Mutex<()>>>>,
}

impl WhatsappEngine {
    pub fn open(config: WhatsappConfig, media: MediaStore, events: EventSink) -> rusqlite::Result<Self> {
        let store = EngineStore::open(&config.registry_path)?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                store,
                media,
                events,
                sessions: Mutex::default(),
                in_flight: Mutex::default(),
                lifecycle: Mutex::default(),
            }),
        })
    }

    /// Stops every session, flushing its state (for an orderly shutdown).
    pub async fn shutdown(&self) {
        let sessions: Vec<Arc<Session>> = self.inner.sessions().drain().map(|(_, s)| s).collect();
        for session in sessions {
            session.stop().await;
        }
    }
}

impl Inner {
    fn sessions(&self) -> MutexGuard<'_, HashMap<DeviceId, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn session(&self, device_id: &DeviceId) -> Option<Arc<Session>> {
        self.sessions().get(device_id).cloned()
    }

    fn in_flight(&self) -> MutexGuard<'_, HashSet<MessageId>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lifecycle_lock(&self, device_id: &DeviceId) -> Arc<tokio::sync::Mutex<()>> {
        self.lifecycle.lock().unwrap_or_else(|p| p.into_inner()).entry(device_id.clone()).or_default().clone()
    }

    /// Replaces the device's session (if any) with a fresh one and starts it.
    async fn restart(self: &Arc<Self>, device_id: &DeviceId, pair_phone: Option<PhoneNumber>) -> Arc<Session> {
        let old = self.sessions().remove(device_id);
        if let Some(old) = old {
            // Two clients on one identity would knock each other off WhatsApp.
            old.stop().await;
        }
        let session = Session::new(device_id.clone(), pair_phone);
        self.sessions().insert(device_id.clone(), session.clone());
        session::start(self, &session);
        session
    }

    fn delete_session_store(&self, device_id: &DeviceId) {
        if let Err(e) = store::delete_session(&self.config.sessions_dir, device_id) {
            tracing::error!(device_id = %device_id, error = %e, "cannot delete the session store");
        }
    }

    /// The device's client, if it may be used now.
    fn connected_client(&self, device_id: &DeviceId) -> Result<Arc<whatsapp_rust::Client>, EngineError> {
        if let Some(client) = self.session(device_id).and_then(|s| s.connected_client()) {
            return Ok(client);
        }
        match self.store.device(device_id)? {
            None => Err(EngineError::DeviceNotFound),
            Some(_) => Err(EngineError::DeviceOffline),
        }
    }

    fn status(&self, registration: &Registration, session: Option<&Arc<Session>>) -> DeviceStatus {
        match registration {
            Registration::Pairing { .. } => DeviceStatus::Pairing,
            Registration::LoggedOut => DeviceStatus::Disconnected,
            Registration::Linked { .. } => match session.map(|s| s.view().phase) {
                Some(Phase::Connected { .. }) => DeviceStatus::Connected,
                Some(Phase::LoggedOut) => DeviceStatus::Disconnected,
                _ => DeviceStatus::Connecting,
            },
        }
    }
}

/// Whether `link` has what it waits for: a QR (and the code, if one was asked
/// for), or word that it is not coming soon.
fn link_ready(view: &View, wants_code: bool) -> bool {
    let gave_up = view.failed_attempts > 0 || matches!(view.phase, Phase::Connected { .. } | Phase::Halted { .. });
    let code_settled = !wants_code || view.pair_code.is_some() || view.pair_code_failed;
    gave_up || (view.qr.is_some() && code_settled)
}

#[async_trait]
impl Engine for WhatsappEngine {
    async fn restore(&self) -> Result<(), EngineError> {
        let inner = &self.inner;
        match inner.store.prune_sends() {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "forgot sends older than the retention period"),
            Err(e) => tracing::warn!(error = %e, "cannot prune old sends"),
        }
        let devices = inner.store.devices()?;
        let (mut linked, mut pairing) = (0, 0);
        for (device_id, registration) in devices {
            let pair_phone = match registration {
                Registration::Linked { .. } => {
                    linked += 1;
                    None
                }
                Registration::Pairing { pair_phone } => {
                    pairing += 1;
                    pair_phone.and_then(|p| PhoneNumber::parse(&p).ok())
                }
                Registration::LoggedOut => continue,
            };
            inner.restart(&device_id, pair_phone).await;
        }
        tracing::info!(linked, pairing, "whatsapp engine restored its devices; connecting in the background");
        Ok(())
    }

    async fn link(&self, device_id: &DeviceId, pair_phone: Option<&PhoneNumber>) -> Result<LinkState, EngineError> {
        let inner = &self.inner;
        let lock = inner.lifecycle_lock(device_id);
        let _guard = lock.lock().await;
        let earlier_phone = match inner.store.device(device_id)? {
            Some(Registration::Linked { phone }) => {
                let running = inner.session(device_id).is_some_and(|s| s.is_running());
                if !running {
                    // Halted (a ban, a takeover) or never started: try again now.
                    inner.restart(device_id, None).await;
                }
                return Ok(LinkState::Linked { phone });
            }
            Some(Registration::Pairing { pair_phone }) => pair_phone.and_then(|p| PhoneNumber::parse(&p).ok()),
            Some(Registration::LoggedOut) | None => {
                // Whatever identity a previous pairing left behind is stale.
                let old = inner.sessions().remove(device_id);
                if let Some(old) = old {
                    old.stop().await;
                }
                inner.delete_session_store(device_id);
                None
            }
        };
        // A fresh QR needs a fresh connection; a pairing code belongs to the
        // connection that asked for it, so one asked for earlier is asked for again.
        let pair_phone = pair_phone.cloned().or(earlier_phone);
        inner.store.start_pairing(device_id, pair_phone.as_ref().map(PhoneNumber::as_str))?;
        let wants_code = pair_phone.is_some();
        let session = inner.restart(device_id, pair_phone).await;
        let view = session.wait_for(inner.config.link_wait, |view| link_ready(view, wants_code)).await;
        if let Phase::Connected { phone } = view.phase {
            return Ok(LinkState::Linked { phone });
        }
        if view.qr.is_none() {
            tracing::warn!(
                device_id = %device_id,
                last_error = view.last_error.as_deref().unwrap_or("no answer yet"),
                "no QR from WhatsApp yet; it follows as an event once WhatsApp is reached"
            );
        }
        // The QR is only known once WhatsApp answered; until then the reference is empty
        // and the first one arrives as `QrUpdated`.
        Ok(LinkState::Pairing { qr: view.qr.unwrap_or_default(), pair_code: view.pair_code })
    }

    async fn logout(&self, device_id: &DeviceId) -> Result<(), EngineError> {
        let inner = &self.inner;
        let lock = inner.lifecycle_lock(device_id);
        let _guard = lock.lock().await;
        let Some(registration) = inner.store.device(device_id)? else {
            return Err(EngineError::DeviceNotFound);
        };
        let session = inner.sessions().remove(device_id);
        if let Some(session) = &session {
            session.mark_user_logout();
            if let Some(client) = session.connected_client() {
                // Removes the device from the phone's list, then disconnects.
                if tokio::time::timeout(LOGOUT_TIMEOUT, client.logout()).await.is_err() {
                    tracing::warn!(device_id = %device_id, "WhatsApp did not confirm the logout in time");
                }
            } else if matches!(registration, Registration::Linked { .. }) {
                tracing::warn!(
                    device_id = %device_id,
                    "logged out while not connected: the phone lists the device until it is removed there"
                );
            }
            session.stop().await;
        }
        inner.delete_session_store(device_id);
        let (_, abandoned) = inner.store.remove_device(device_id)?;
        inner.fail_abandoned(device_id, abandoned);
        Ok(())
    }

    async fn status(&self, device_id: &DeviceId) -> Result<Option<DeviceStatus>, EngineError> {
        let inner = &self.inner;
        let registration = inner.store.device(device_id)?;
        Ok(registration.map(|r| inner.status(&r, inner.session(device_id).as_ref())))
    }

    async fn count_by_status(&self) -> Result<HashMap<DeviceStatus, u64>, EngineError> {
        let inner = &self.inner;
        let mut counts = HashMap::new();
        for (device_id, registration) in inner.store.devices()? {
            *counts.entry(inner.status(&registration, inner.session(&device_id).as_ref())).or_default() += 1;
        }
        Ok(counts)
    }

    async fn check(&self, device_id: &DeviceId, phones: &[PhoneNumber]) -> Result<Vec<CheckResult>, EngineError> {
        let client = self.inner.connected_client(device_id)?;
        if phones.is_empty() {
            return Ok(Vec::new());
        }
        let jids: Vec<WaJid> = phones.iter().map(|p| WaJid::pn(p.as_str())).collect();
        let found = match tokio::time::timeout(CHECK_TIMEOUT, client.contacts().is_on_whatsapp(&jids)).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => return Err(EngineError::Upstream(format!("number check failed: {e}"))),
            Err(_) => return Err(EngineError::Upstream("number check timed out".into())),
        };
        Ok(phones
            .iter()
            .map(|phone| {
                let hit = found.iter().find(|r| {
                    r.jid.user == phone.as_str() || r.pn_jid.as_ref().is_some_and(|pn| pn.user == phone.as_str())
                });
                match hit {
                    Some(r) if r.is_registered => {
                        let jid = [Some(&r.jid), r.pn_jid.as_ref()].into_iter().flatten().find(|j| j.is_pn());
                        CheckResult {
                            phone: phone.to_string(),
                            exists: true,
                            jid: Some(jid.map_or_else(|| phone.jid().to_string(), |j| j.to_non_ad().to_string())),
                        }
                    }
                    _ => CheckResult { phone: phone.to_string(), exists: false, jid: None },
                }
            })
            .collect())
    }

    async fn send(&self, device_id: &DeviceId, message: &OutgoingMessage) -> Result<(), EngineError> {
        let inner = &self.inner;
        let message_id = &message.message_id;
        if let Some(record) = inner.store.send(message_id)? {
            match record.state {
                SendState::Sent => {
                    // WhatsApp has it: report the original outcome, send nothing.
                    inner.events.emit(
                        device_id,
                        EventKind::MessageSent { message_id: message_id.to_string(), external_id: record.external_id },
                    );
                    return Ok(());
                }
                // Its outcome follows from the send already under way.
                SendState::Sending if inner.in_flight().contains(message_id) => return Ok(()),
                // Cut off by a crash or a disconnect: send again, under the same WhatsApp id.
                SendState::Sending => {}
            }
        }
        let session = inner.session(device_id);
        let Some(session) = session.filter(|s| s.connected_client().is_some()) else {
            return match inner.store.device(device_id)? {
                None => Err(EngineError::DeviceNotFound),
                Some(_) => Err(EngineError::DeviceOffline),
            };
        };
        if !inner.in_flight().insert(message_id.clone()) {
            return Ok(());
        }
        let external_id = store::external_id(device_id, message_id);
        if let Err(e) = inner.store.begin_send(device_id, message, &external_id) {
            inner.in_flight().remove(message_id);
            return Err(e.into());
        }
        inner.start_send(&session, message.clone(), external_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
