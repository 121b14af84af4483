//! Messages in and out of a connected session: sends (in order, idempotent by
//! wagate's message id, retried when a disconnect cut them off) and inbound
//! media (downloaded into the bridge's media store).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use wagate_contract::wire::{Content, EventKind, MediaRef, MAX_MEDIA_BYTES};
use whatsapp_rust::send::{SendError, SendOptions};
use whatsapp_rust::upload::UploadOptions;
use whatsapp_rust::{Client, ClientError, Jid as WaJid};

use super::events::Incoming;
use super::media::{self, InboundMedia, UploadedMedia};
use super::session::Session;
use super::store;
use super::Inner;
use crate::engine::{OutgoingMessage, Payload};
use crate::ids::{DeviceId, MessageId};

/// Longest wait for WhatsApp to take a message.
const SEND_TIMEOUT: Duration = Duration::from_secs(90);
/// Longest wait for an upload or download of up to 16 MiB.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(600);

/// How a send ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Sent,
    /// The connection went away before WhatsApp took it: sent again, under the
    /// same WhatsApp id, when the device is back.
    Interrupted(String),
    Failed {
        code: &'static str,
        reason: String,
    },
}

impl Inner {
    /// Queues the send behind the device's earlier ones and hands it to WhatsApp.
    /// The caller has recorded it (`begin_send`) and marked it in flight; this
    /// clears the mark when the send has ended.
    pub(super) fn start_send(self: &Arc<Self>, session: &Arc<Session>, message: OutgoingMessage, external_id: String) {
        let (previous, done) = session.queue_send();
        let engine = self.clone();
        let session = session.clone();
        tokio::spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            // A send cut off by a disconnect waits for the next connect, unless
            // that connect already happened while it was failing.
            for _ in 0..3 {
                let interrupted = engine.deliver(&session, &message, &external_id).await;
                if !interrupted || session.connected_client().is_none() {
                    break;
                }
            }
            // Only now: until its outcome is recorded, a repeated send must not start another.
            engine.in_flight().remove(&message.message_id);
            let _ = done.send(());
        });
    }

    /// True when the send was interrupted and waits for the next connection.
    async fn deliver(&self, session: &Session, message: &OutgoingMessage, external_id: &str) -> bool {
        let device_id = &session.device_id;
        let message_id = &message.message_id;
        let outcome = match session.connected_client() {
            Some(client) => transmit(&client, message, external_id).await,
            None => Outcome::Interrupted("not connected".into()),
        };
        let interrupted = matches!(outcome, Outcome::Interrupted(_));
        match outcome {
            Outcome::Sent => match self.store.mark_sent(message_id) {
                Ok(early) => {
                    let id = message_id.to_string();
                    self.events.emit(
                        device_id,
                        EventKind::MessageSent { message_id: id.clone(), external_id: external_id.to_owned() },
                    );
                    if early.delivered {
                        self.events.emit(device_id, EventKind::MessageDelivered { message_id: id.clone() });
                    }
                    if early.read {
                        self.events.emit(device_id, EventKind::MessageRead { message_id: id });
                    }
                }
                Err(e) => {
                    // Still `sending`: the next connect sends it again under the same
                    // WhatsApp id, which recipients drop as a duplicate, and reports it.
                    tracing::error!(device_id = %device_id, message_id = %message_id, error = %e, "sent, but cannot record it");
                }
            },
            Outcome::Interrupted(reason) => {
                if matches!(self.store.send(message_id), Ok(None)) {
                    // The device was logged out meanwhile and its unsent messages dropped.
                    self.fail(
                        device_id,
                        message_id,
                        "device_not_found",
                        "device was logged out before the send went out",
                    );
                } else {
                    tracing::info!(
                        device_id = %device_id,
                        message_id = %message_id,
                        reason,
                        "send interrupted; it goes out when the device is connected again"
                    );
                }
            }
            Outcome::Failed { code, reason } => {
                if let Err(e) = self.store.forget_send(message_id) {
                    tracing::error!(message_id = %message_id, error = %e, "cannot forget a failed send");
                }
                self.fail(device_id, message_id, code, &reason);
            }
        }
        interrupted
    }

    /// Sends what a disconnect (or a crash) left unsent, oldest first. Runs when
    /// the device connects.
    pub(super) async fn resume_sends(self: &Arc<Self>, session: &Arc<Session>) {
        let device_id = &session.device_id;
        let pending = match self.store.pending_sends(device_id) {
            Ok(pending) => pending,
            Err(e) => {
                tracing::error!(device_id = %device_id, error = %e, "cannot read unsent messages");
                return;
            }
        };
        for send in pending {
            if !self.in_flight().insert(send.message_id.clone()) {
                continue;
            }
            match Payload::resolve(&send.content, &self.media) {
                Ok(payload) => {
                    tracing::info!(device_id = %device_id, message_id = %send.message_id, "resending an unsent message");
                    let external_id = store::external_id(device_id, &send.message_id);
                    let message = OutgoingMessage { message_id: send.message_id, to: send.to, payload };
                    self.start_send(session, message, external_id);
                }
                Err(e) => {
                    self.in_flight().remove(&send.message_id);
                    let _ = self.store.forget_send(&send.message_id);
                    self.fail(device_id, &send.message_id, e.code(), &e.to_string());
                }
            }
        }
    }

    /// Reports sends that will never go out because their device is gone;
    /// those still in flight report themselves when they end.
    pub(super) fn fail_abandoned(&self, device_id: &DeviceId, abandoned: Vec<MessageId>) {
        for message_id in abandoned {
            if !self.in_flight().contains(&message_id) {
                self.fail(device_id, &message_id, "device_not_found", "device was logged out before the send went out");
            }
        }
    }

    fn fail(&self, device_id: &DeviceId, message_id: &MessageId, code: &str, reason: &str) {
        tracing::warn!(device_id = %device_id, message_id = %message_id, code, reason, "send failed");
        self.events.emit(
            device_id,
            EventKind::MessageFailed { message_id: message_id.to_string(), code: code.into(), reason: reason.into() },
        );
    }

    /// Downloads (and decrypts) inbound media into the media store, then reports the message.
    pub(super) async fn receive_media(
        &self,
        device_id: &DeviceId,
        client: &Client,
        message: &Incoming,
        media: &InboundMedia,
    ) {
        let external_id = &message.external_id;
        if media.declared_size.is_some_and(|size| size > MAX_MEDIA_BYTES) {
            tracing::warn!(device_id = %device_id, external_id, size = media.declared_size, "inbound media over the size limit dropped");
            return;
        }
        let bytes = match tokio::time::timeout(MEDIA_TIMEOUT, client.download(media.source.downloadable())).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => {
                tracing::warn!(device_id = %device_id, external_id, error = %format!("{e:#}"), "inbound media could not be downloaded; dropped");
                return;
            }
            Err(_) => {
                tracing::warn!(device_id = %device_id, external_id, "inbound media download timed out; dropped");
                return;
            }
        };
        if bytes.len() as u64 > MAX_MEDIA_BYTES {
            tracing::warn!(device_id = %device_id, external_id, size = bytes.len(), "inbound media over the size limit dropped");
            return;
        }
        let stored = match self.media.put(Bytes::from(bytes), None).await {
            Ok(stored) => stored,
            Err(e) => {
                tracing::error!(device_id = %device_id, external_id, error = %e, "cannot store inbound media; dropped");
                return;
            }
        };
        let content = Content::Media {
            kind: media.kind,
            media: MediaRef {
                sha256: stored.sha256().to_string(),
                size: stored.size(),
                mime_type: media.mime_type.clone(),
                file_name: media.file_name.clone(),
            },
            caption: media.caption.clone(),
        };
        self.events.receive(device_id, message.received(content));
    }
}

/// Builds the WhatsApp message (uploading media first) and sends it under `external_id`.
async fn transmit(client: &Client, message: &OutgoingMessage, external_id: &str) -> Outcome {
    let to: WaJid = match message.to.to_string().parse() {
        Ok(jid) => jid,
        Err(e) => return Outcome::Failed { code: "invalid_request", reason: format!("recipient: {e}") },
    };
    let body = match &message.payload {
        Payload::Text { text } => media::text_message(text),
        Payload::Location(l) => {
            media::location_message(l.latitude, l.longitude, l.name.as_deref(), l.address.as_deref())
        }
        Payload::Media(m) => {
            let bytes = match m.file.read().await {
                Ok(bytes) => bytes,
                Err(e) => {
                    return Outcome::Failed { code: "engine_error", reason: format!("cannot read the media file: {e}") }
                }
            };
            let upload = client.upload(bytes, media::upload_type(m.kind), UploadOptions::default());
            let uploaded = match tokio::time::timeout(MEDIA_TIMEOUT, upload).await {
                Ok(Ok(uploaded)) => UploadedMedia::from(uploaded),
                Ok(Err(e)) => return interrupted_or(client, "media_upload_failed", format!("upload failed: {e:#}")),
                Err(_) => return Outcome::Failed { code: "media_upload_failed", reason: "upload timed out".into() },
            };
            media::media_message(m.kind, uploaded, &m.mime_type, m.caption.as_deref(), m.file_name.as_deref())
        }
    };
    let options = SendOptions::default().with_message_id(external_id);
    match tokio::time::timeout(SEND_TIMEOUT, client.send_message_with_options(to, body, options)).await {
        Ok(Ok(_)) => Outcome::Sent,
        Ok(Err(SendError::NotLoggedIn | SendError::Client(ClientError::NotConnected | ClientError::NotLoggedIn))) => {
            Outcome::Interrupted("not connected".into())
        }
        Ok(Err(SendError::InvalidRequest(reason))) => Outcome::Failed { code: "invalid_request", reason },
        Ok(Err(e)) => interrupted_or(client, "engine_error", e.to_string()),
        Err(_) => Outcome::Failed { code: "engine_error", reason: "WhatsApp did not take the message in time".into() },
    }
}

/// An error while the connection dropped is the drop's, and worth a retry; otherwise the send failed.
fn interrupted_or(client: &Client, code: &'static str, reason: String) -> Outcome {
    if client.is_connected() && client.is_logged_in() {
        Outcome::Failed { code, reason }
    } else {
        Outcome::Interrupted(reason)
    }
}
