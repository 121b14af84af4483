//! One device's WhatsApp session, kept alive by a supervisor task.
//!
//! The supervisor builds a whatsapp-rust bot from the device's session store,
//! runs it until its connection ends, tears it down and decides what comes
//! next: rebuild at once (after pairing), rebuild after a jittered backoff
//! (network trouble), or stop (logged out, banned, replaced, QR codes used up).
//!
//! Two traps of whatsapp-rust 0.7.0 shape this:
//! - a client that was disconnected and connected again silently stops
//!   processing, so a client is never reused: the library's own reconnect loop
//!   is switched off (`enable_auto_reconnect`) and every retry builds a new bot
//!   on the same store;
//! - calls made before `Connected` fail with `NotConnected`, so a client is only
//!   handed out (for sends and checks) while the session is `Connected`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use wagate_contract::wire::EventKind;
use whatsapp_rust::bot::{Bot, BotHandle};
use whatsapp_rust::pair_code::PairCodeOptions;
use whatsapp_rust::store::SqliteStore;
use whatsapp_rust::transport::{TokioWebSocketTransportFactory, Transport, TransportEvent, TransportFactory};
use whatsapp_rust::types::events::{Event, EventHandler, EventInterest};
use whatsapp_rust::wacore::store::DevicePropsOverride;
use whatsapp_rust::Client;

use super::events::{classify, phone_of, Signal, INTEREST};
use super::media::InboundBody;
use super::store::{self, Registration};
use super::Inner;
use crate::ids::DeviceId;
use crate::jid::PhoneNumber;
use crate::pair_code::PairCode;

/// A connection that stayed up this long resets the backoff.
const STABLE_CONNECTION: Duration = Duration::from_secs(60);
/// How long a stopping client gets to flush its state and end its run loop.
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// What linked devices are called in the phone's "Linked devices" list.
const DEVICE_OS: &str = "wagate";

/// Where a session stands, as the engine answers for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Building the client or connecting; nothing heard from WhatsApp yet.
    Starting,
    /// Connected without an account: waiting for a phone to scan or type a code.
    Pairing,
    /// Pairing stopped because WhatsApp's QR references ran out; linking again restarts it.
    PairingIdle,
    Connected {
        phone: String,
    },
    /// Linked, but the connection is down; the supervisor is retrying.
    Reconnecting {
        reason: String,
    },
    /// Linked, but retrying would not help (ban, another client took over, a
    /// refused login): nothing happens until the device is linked again or the
    /// bridge restarts.
    Halted {
        reason: String,
    },
    /// WhatsApp ended the session: it needs pairing again.
    LoggedOut,
}

/// What `link` answers with, and what it waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub phase: Phase,
    pub qr: Option<String>,
    pub pair_code: Option<PairCode>,
    /// The pairing code request failed; none is coming on this connection.
    pub pair_code_failed: bool,
    /// Connection attempts that failed before reaching WhatsApp, and why the last did.
    pub failed_attempts: u32,
    pub last_error: Option<String>,
}

struct State {
    view: View,
    /// Present while a bot runs; handed out only while `Connected`.
    client: Option<Arc<Client>>,
    /// The caller asked for this logout: the `LoggedOut` it causes is not news.
    user_logout: bool,
    /// What the worker was last told: `Some(true)` after `Connected`, `Some(false)`
    /// after `Disconnected`. `None` after a restart, when the worker still
    /// believes what it heard before the bridge went down.
    reported_online: Option<bool>,
    /// Completion of the last send handed to WhatsApp: sends go out in order.
    send_chain: Option<oneshot::Receiver<()>>,
}

pub struct Session {
    pub device_id: DeviceId,
    /// Link by pairing code on this number, as well as by QR.
    pub pair_phone: Option<PhoneNumber>,
    state: Mutex<State>,
    /// Bumped on every change of `state.view`, for `link` to wait on.
    changes: watch::Sender<u64>,
    stop: watch::Sender<bool>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

impl Session {
    pub fn new(device_id: DeviceId, pair_phone: Option<PhoneNumber>) -> Arc<Self> {
        Arc::new(Self {
            device_id,
            pair_phone,
            state: Mutex::new(State {
                view: View {
                    phase: Phase::Starting,
                    qr: None,
                    pair_code: None,
                    pair_code_failed: false,
                    failed_attempts: 0,
                    last_error: None,
                },
                client: None,
                user_logout: false,
                reported_online: None,
                send_chain: None,
            }),
            changes: watch::channel(0).0,
            stop: watch::channel(false).0,
            supervisor: Mutex::new(None),
        })
    }

    pub fn view(&self) -> View {
        self.lock().view.clone()
    }

    /// The client, while the session is connected and logged in.
    pub fn connected_client(&self) -> Option<Arc<Client>> {
        let state = self.lock();
        match state.view.phase {
            Phase::Connected { .. } => state.client.clone(),
            _ => None,
        }
    }

    pub fn is_running(&self) -> bool {
        self.supervisor.lock().unwrap_or_else(|p| p.into_inner()).as_ref().is_some_and(|task| !task.is_finished())
    }

    fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }

    pub fn mark_user_logout(&self) {
        self.lock().user_logout = true;
    }

    /// Waits until `ready` holds for the view, or `timeout` passes; returns the view either way.
    pub async fn wait_for(&self, timeout: Duration, ready: impl Fn(&View) -> bool) -> View {
        let mut changes = self.changes.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let view = self.view();
            if ready(&view) {
                return view;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return self.view(),
            }
        }
    }

    /// Stops the supervisor and waits until its client is torn down.
    pub async fn stop(&self) {
        self.stop.send_replace(true);
        let task = self.supervisor.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut task) = task {
            if tokio::time::timeout(TEARDOWN_TIMEOUT * 2, &mut task).await.is_err() {
                tracing::warn!(device_id = %self.device_id, "session did not stop in time; aborting it");
                task.abort();
            }
        }
        let mut state = self.lock();
        state.client = None;
    }

    /// Takes a place in the device's send order: the returned receiver completes
    /// when the previous send is done, the sender marks this one done.
    pub fn queue_send(&self) -> (Option<oneshot::Receiver<()>>, oneshot::Sender<()>) {
        let (done, next) = oneshot::channel();
        let previous = self.lock().send_chain.replace(next);
        (previous, done)
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.lock());
        self.changes.send_modify(|version| *version = version.wrapping_add(1));
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Starts the session's supervisor.
pub fn start(engine: &Arc<Inner>, session: &Arc<Session>) {
    let task = tokio::spawn(supervise(Arc::downgrade(engine), session.clone()));
    *session.supervisor.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
}

/// How one bot's life ended, when it ended for a reason other than its
/// connection. When several apply, the greatest wins: running out of QR codes
/// does not matter once a phone typed the pairing code, and nothing matters
/// once WhatsApp logged the device out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ending {
    QrExhausted,
    /// A phone completed pairing; WhatsApp restarts the stream for the new identity.
    Paired,
    Halted,
    LoggedOut,
}

/// What happened during one bot's life, written by its event handler and
/// transport, read by the supervisor when the bot has stopped.
#[derive(Default)]
struct Attempt {
    client: OnceLock<Weak<Client>>,
    connected_at: Mutex<Option<Instant>>,
    connect_error: Mutex<Option<String>>,
    ending: Mutex<Option<Ending>>,
}

impl Attempt {
    fn client(&self) -> Option<Arc<Client>> {
        self.client.get().and_then(Weak::upgrade)
    }

    fn end(&self, ending: Ending) {
        let mut current = self.ending.lock().unwrap_or_else(|p| p.into_inner());
        *current = (*current).max(Some(ending));
    }

    fn ending(&self) -> Option<Ending> {
        *self.ending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record_connect_error(&self, error: String) {
        *self.connect_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
    }

    fn connect_error(&self) -> Option<String> {
        self.connect_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn connected(&self) {
        self.connected_at.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(Instant::now);
    }

    /// How long the connection was up, if it ever came up.
    fn uptime(&self) -> Option<Duration> {
        self.connected_at.lock().unwrap_or_else(|p| p.into_inner()).map(|at| at.elapsed())
    }
}

async fn supervise(engine: Weak<Inner>, session: Arc<Session>) {
    let device_id = session.device_id.clone();
    let mut stop = session.stop.subscribe();
    let mut failures: u32 = 0;
    loop {
        if *stop.borrow() {
            break;
        }
        let Some(inner) = engine.upgrade() else { break };
        let attempt = Arc::new(Attempt::default());
        match build_bot(&inner, &session, &attempt).await {
            Ok(bot) => run_bot(&inner, &session, &attempt, bot, &mut stop).await,
            Err(e) => attempt.record_connect_error(e),
        }
        if *stop.borrow() || session.lock().user_logout {
            break;
        }
        match attempt.ending() {
            Some(Ending::Paired) => {
                failures = 0;
                continue;
            }
            Some(Ending::LoggedOut) => {
                inner.forget_session(&session);
                break;
            }
            Some(Ending::Halted | Ending::QrExhausted) => break,
            None => {}
        }
        let uptime = attempt.uptime();
        if uptime.is_some_and(|up| up >= STABLE_CONNECTION) {
            failures = 0;
        }
        let delay = inner.config.backoff.jittered(failures);
        failures = failures.saturating_add(1);
        let secs = delay.as_secs_f64().ceil();
        if uptime.is_some() {
            tracing::info!(device_id = %device_id, "reconnecting to WhatsApp in {secs}s");
        } else {
            let reason = attempt.connect_error().unwrap_or_else(|| "the connection closed during the handshake".into());
            tracing::warn!(
                device_id = %device_id,
                attempt = failures,
                "cannot reach WhatsApp servers ({reason}): retrying in {secs}s"
            );
            inner.connect_failed(&session, reason, failures);
        }
        drop(inner);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
    }
}

/// Runs one bot until its connection ends or the session is stopped, then tears it down.
async fn run_bot(
    inner: &Arc<Inner>,
    session: &Arc<Session>,
    attempt: &Arc<Attempt>,
    bot: Bot,
    stop: &mut watch::Receiver<bool>,
) {
    let client = bot.client();
    // One connection per client: the supervisor, not the library, reconnects.
    client.enable_auto_reconnect.store(false, Ordering::SeqCst);
    let _ = attempt.client.set(Arc::downgrade(&client));
    if let Ok(Some(Registration::Linked { .. })) = inner.store.device(&session.device_id) {
        if client.pn().is_none() {
            // The registry says linked but the store holds no account: it was lost
            // or deleted. Pairing again is the only way back.
            attempt.end(Ending::LoggedOut);
            inner.on_signal(session, attempt, Signal::LoggedOut { reason: "session store lost".into() });
            teardown(&client, None).await;
            return;
        }
    }
    session.update(|state| state.client = Some(client.clone()));
    let mut handle = bot.spawn();
    tokio::select! {
        () = &mut handle => {}
        _ = stop.wait_for(|stopped| *stopped) => {}
    }
    session.update(|state| state.client = None);
    teardown(&client, Some(handle)).await;
}

/// Flushes and closes a client whose run loop ended (or must end). It is never connected again.
async fn teardown(client: &Arc<Client>, handle: Option<BotHandle>) {
    if let Some(handle) = handle.as_ref().filter(|_| !client.is_connected()) {
        // Still dialing (which can take the library 20 s to give up): nothing to close gracefully.
        handle.abort();
    }
    if tokio::time::timeout(TEARDOWN_TIMEOUT, client.disconnect()).await.is_err() {
        tracing::warn!("WhatsApp client did not disconnect in time");
    }
    if let Some(mut handle) = handle {
        if tokio::time::timeout(TEARDOWN_TIMEOUT, &mut handle).await.is_err() {
            handle.abort();
        }
    }
}

/// Builds a bot on the device's session store; nothing touches the network yet.
async fn build_bot(inner: &Arc<Inner>, session: &Arc<Session>, attempt: &Arc<Attempt>) -> Result<Bot, String> {
    let handler = SessionEvents { engine: Arc::downgrade(inner), session: session.clone(), attempt: attempt.clone() };
    let transport = ReportingTransport { ws_url: inner.config.ws_url.clone(), attempt: attempt.clone() };
    let mut builder = open_bot(&inner.config.sessions_dir, &session.device_id)
        .await?
        .with_transport_factory(transport)
        .with_event_handler(handler);
    if let Some(version) = inner.config.version {
        builder = builder.with_version(version);
    }
    // Only while pairing: after a phone linked the device, the rebuilt bot must not ask for a code again.
    let pairing = matches!(inner.store.device(&session.device_id), Ok(Some(Registration::Pairing { .. })));
    if let Some(phone) = session.pair_phone.as_ref().filter(|_| pairing) {
        builder = builder.with_pair_code(PairCodeOptions { phone_number: phone.to_string(), ..Default::default() });
    }
    builder.build().await.map_err(|e| format!("cannot build the WhatsApp client: {e}"))
}

type Builder = whatsapp_rust::bot::BotBuilder<
    whatsapp_rust::bot::Provided,
    whatsapp_rust::bot::Provided,
    whatsapp_rust::bot::Provided,
    whatsapp_rust::bot::Provided,
>;

/// A bot builder on the device's session store, configured as every session is.
pub(super) async fn open_bot(sessions_dir: &std::path::Path, device_id: &DeviceId) -> Result<Builder, String> {
    std::fs::create_dir_all(sessions_dir)
        .map_err(|e| format!("cannot create the session directory {}: {e}", sessions_dir.display()))?;
    let path = store::session_path(sessions_dir, device_id);
    let url = path.to_str().ok_or_else(|| format!("session path {} is not UTF-8", path.display()))?;
    let backend = SqliteStore::new(url).await.map_err(|e| format!("cannot open session store {url}: {e}"))?;
    Ok(Bot::builder()
        .with_backend(backend)
        // wagate forwards new messages only; a phone's history is not downloaded.
        .skip_history_sync()
        .with_device_props(DevicePropsOverride::new().with_os(DEVICE_OS)))
}

/// The library's WebSocket transport, remembering why a connection could not be opened.
struct ReportingTransport {
    ws_url: Option<String>,
    attempt: Arc<Attempt>,
}

#[async_trait::async_trait]
impl TransportFactory for ReportingTransport {
    async fn create_transport(
        &self,
    ) -> Result<
        (Arc<dyn Transport>, whatsapp_rust::async_channel::Receiver<TransportEvent>),
        whatsapp_rust::anyhow::Error,
    > {
        let mut factory = TokioWebSocketTransportFactory::new();
        if let Some(url) = &self.ws_url {
            factory = factory.with_url(url.clone());
        }
        factory.create_transport().await.inspect_err(|e| self.attempt.record_connect_error(format!("{e:#}")))
    }
}

/// Receives the bot's events on the library's dispatch path (in order, without
/// a task per event); anything slow is spawned off.
struct SessionEvents {
    engine: Weak<Inner>,
    session: Arc<Session>,
    attempt: Arc<Attempt>,
}

impl EventHandler for SessionEvents {
    fn handle_event(&self, event: Arc<Event>) {
        let Some(signal) = classify(&event) else { return };
        if self.session.is_stopping() {
            tracing::debug!(device_id = %self.session.device_id, ?event, "event after stop ignored");
            return;
        }
        if let Some(engine) = self.engine.upgrade() {
            engine.on_signal(&self.session, &self.attempt, signal);
        }
    }

    fn interest(&self) -> EventInterest {
        EventInterest::of(INTEREST)
    }
}

impl Inner {
    /// Acts on one signal of a session's bot and reports what the worker must hear.
    fn on_signal(self: &Arc<Self>, session: &Arc<Session>, attempt: &Attempt, signal: Signal) {
        let device_id = &session.device_id;
        let mut phone = String::new();
        match &signal {
            Signal::Qr(qr) => session.update(|s| {
                s.view.phase = Phase::Pairing;
                s.view.qr = Some(qr.clone());
                s.view.failed_attempts = 0;
                s.view.last_error = None;
            }),
            Signal::PairCode(code) => {
                let parsed = PairCode::parse(code).ok();
                if parsed.is_none() {
                    tracing::warn!(device_id = %device_id, code, "WhatsApp sent a pairing code of an unexpected shape");
                }
                session.update(|s| s.view.pair_code = parsed);
            }
            Signal::PairCodeFailed(error) => {
                tracing::warn!(device_id = %device_id, error, "WhatsApp gave no pairing code; the QR still works");
                session.update(|s| s.view.pair_code_failed = true);
            }
            Signal::Paired { phone } => {
                tracing::info!(device_id = %device_id, phone, "a phone completed linking; reconnecting as the linked device");
                if let Err(e) = self.store.set_linked(device_id, phone) {
                    tracing::error!(device_id = %device_id, error = %e, "cannot record the link");
                }
                attempt.end(Ending::Paired);
                session.update(|s| {
                    s.view.phase = Phase::Starting;
                    s.view.qr = None;
                    s.view.pair_code = None;
                });
            }
            Signal::PairFailed(error) => tracing::warn!(device_id = %device_id, error, "linking failed"),
            Signal::Connected => {
                let Some(client) = attempt.client() else { return };
                phone = match client.pn() {
                    Some(jid) => phone_of(&jid),
                    None => match self.store.device(device_id) {
                        Ok(Some(Registration::Linked { phone })) => phone,
                        _ => String::new(),
                    },
                };
                if let Err(e) = self.store.set_linked(device_id, &phone) {
                    tracing::error!(device_id = %device_id, error = %e, "cannot record the link");
                }
                attempt.connected();
                session.update(|s| {
                    s.view = View {
                        phase: Phase::Connected { phone: phone.clone() },
                        qr: None,
                        pair_code: None,
                        pair_code_failed: false,
                        failed_attempts: 0,
                        last_error: None,
                    };
                    s.reported_online = Some(true);
                });
                tracing::info!(device_id = %device_id, phone, "connected to WhatsApp");
            }
            Signal::ConnectionLost { reason } => {
                let mut was_connected = false;
                session.update(|s| {
                    if let Phase::Connected { .. } = s.view.phase {
                        was_connected = true;
                        s.view.phase = Phase::Reconnecting { reason: reason.clone() };
                        s.reported_online = Some(false);
                    }
                });
                tracing::warn!(device_id = %device_id, reason, "WhatsApp connection lost");
                if !was_connected {
                    return;
                }
            }
            Signal::LoggedOut { reason } => {
                let mut asked_for = false;
                session.update(|s| {
                    asked_for = s.user_logout;
                    s.view.phase = Phase::LoggedOut;
                    s.reported_online = Some(false);
                });
                if asked_for {
                    return;
                }
                attempt.end(Ending::LoggedOut);
                tracing::warn!(device_id = %device_id, reason, "logged out by WhatsApp; the device must be linked again");
            }
            Signal::Halted { reason } => {
                attempt.end(Ending::Halted);
                session.update(|s| {
                    s.view.phase = Phase::Halted { reason: reason.clone() };
                    s.reported_online = Some(false);
                });
                tracing::error!(device_id = %device_id, reason, "WhatsApp session stopped; not retrying");
            }
            Signal::RetryableFailure { reason } => attempt.record_connect_error(reason.clone()),
            Signal::QrExhausted => {
                attempt.end(Ending::QrExhausted);
                session.update(|s| {
                    s.view.phase = Phase::PairingIdle;
                    s.view.qr = None;
                });
                tracing::info!(device_id = %device_id, "no phone scanned the QR codes; linking again shows new ones");
            }
            Signal::Receipt { kind, external_ids } => {
                for external_id in external_ids {
                    match self.store.receipt(device_id, external_id, *kind) {
                        Ok(events) => events.into_iter().for_each(|kind| self.events.emit(device_id, kind)),
                        Err(e) => {
                            tracing::warn!(device_id = %device_id, external_id, error = %e, "receipt not recorded")
                        }
                    }
                }
            }
            Signal::Messages(messages) => {
                for message in messages {
                    match &message.body {
                        InboundBody::Ready(content) => {
                            self.events.receive(device_id, message.received(content.clone()))
                        }
                        InboundBody::Unsupported(kind) => self.events.receive(device_id, message.unsupported(kind)),
                        InboundBody::Media(media) => match attempt.client() {
                            Some(client) => {
                                let engine = self.clone();
                                let (device_id, message, media) = (device_id.clone(), message.clone(), media.clone());
                                tokio::spawn(async move {
                                    engine.receive_media(&device_id, &client, &message, &media).await;
                                });
                            }
                            None => tracing::warn!(device_id = %device_id, "inbound media dropped: client gone"),
                        },
                    }
                }
            }
        }
        if let Some(kind) = signal.report(&phone) {
            self.events.emit(device_id, kind);
        }
        if let Signal::Connected = signal {
            let engine = self.clone();
            let session = session.clone();
            tokio::spawn(async move { engine.resume_sends(&session).await });
        }
    }

    /// A connection attempt never reached WhatsApp. The worker hears of it once
    /// per outage, and only for a linked device (a pairing one was never online).
    fn connect_failed(&self, session: &Session, reason: String, failures: u32) {
        let linked = matches!(self.store.device(&session.device_id), Ok(Some(Registration::Linked { .. })));
        let mut announce = false;
        session.update(|s| {
            s.view.failed_attempts = failures;
            s.view.last_error = Some(reason.clone());
            if linked {
                if !matches!(s.view.phase, Phase::Halted { .. } | Phase::LoggedOut) {
                    s.view.phase = Phase::Reconnecting { reason: reason.clone() };
                }
                announce = s.reported_online != Some(false);
                s.reported_online = Some(false);
            }
        });
        if announce {
            self.events.emit(
                &session.device_id,
                EventKind::Disconnected {
                    reason: format!("cannot reach WhatsApp servers: {reason}"),
                    logged_out: false,
                },
            );
        }
    }

    /// WhatsApp ended the session: drop its store, keep the device as logged out,
    /// and fail the sends that can no longer go out.
    fn forget_session(&self, session: &Session) {
        let device_id = &session.device_id;
        if let Err(e) = store::delete_session(&self.config.sessions_dir, device_id) {
            tracing::error!(device_id = %device_id, error = %e, "cannot delete the ended session's store");
        }
        match self.store.set_logged_out(device_id) {
            Ok(abandoned) => self.fail_abandoned(device_id, abandoned),
            Err(e) => tracing::error!(device_id = %device_id, error = %e, "cannot record the logout"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tokio::sync::mpsc::UnboundedReceiver;
    use wagate_contract::wire::Content;

    use super::super::events::Incoming;
    use super::super::{WhatsappConfig, WhatsappEngine};
    use super::*;
    use crate::engine::{EngineEvent, EventSink, OutgoingMessage, Payload};
    use crate::ids::MessageId;
    use crate::jid::Jid;
    use crate::media::MediaStore;

    fn engine(dir: &Path) -> (Arc<Inner>, UnboundedReceiver<EngineEvent>) {
        let (sink, events) = EventSink::channel(Arc::default());
        let media = MediaStore::open(dir.join("media")).unwrap();
        let engine = WhatsappEngine::open(WhatsappConfig::new(dir), media, sink).unwrap();
        (engine.inner, events)
    }

    fn drain(events: &mut UnboundedReceiver<EngineEvent>) -> Vec<EventKind> {
        std::iter::from_fn(|| events.try_recv().ok()).map(|e| e.kind).collect()
    }

    #[test]
    fn the_most_final_ending_wins() {
        let attempt = Attempt::default();
        assert_eq!(attempt.ending(), None);
        attempt.end(Ending::QrExhausted);
        attempt.end(Ending::Paired);
        assert_eq!(attempt.ending(), Some(Ending::Paired));
        attempt.end(Ending::LoggedOut);
        attempt.end(Ending::Halted);
        assert_eq!(attempt.ending(), Some(Ending::LoggedOut));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn signals_drive_the_session_and_reach_the_worker() {
        let dir = tempfile::tempdir().unwrap();
        let (inner, mut events) = engine(dir.path());
        let device = DeviceId::parse("dev_a").unwrap();
        inner.store.start_pairing(&device, None).unwrap();
        let session = Session::new(device.clone(), None);
        let attempt = Attempt::default();

        inner.on_signal(&session, &attempt, Signal::Qr("2@ref,noise,identity,adv".into()));
        inner.on_signal(&session, &attempt, Signal::PairCode("ABCD1234".into()));
        // A pairing connection dropping is the supervisor's business, not the worker's.
        inner.on_signal(&session, &attempt, Signal::ConnectionLost { reason: "connection lost: x".into() });
        assert_eq!(
            drain(&mut events),
            [
                EventKind::QrUpdated { qr: "2@ref,noise,identity,adv".into() },
                EventKind::PairCode { code: "ABCD-1234".into() },
            ]
        );
        let view = session.view();
        assert_eq!((view.phase, view.qr.is_some()), (Phase::Pairing, true));
        assert_eq!(view.pair_code.map(|c| c.to_string()).as_deref(), Some("ABCD-1234"));

        inner.on_signal(&session, &attempt, Signal::Paired { phone: "6281234567890".into() });
        assert_eq!(attempt.ending(), Some(Ending::Paired));
        assert_eq!(inner.store.device(&device).unwrap(), Some(Registration::Linked { phone: "6281234567890".into() }));
        assert_eq!(drain(&mut events), []);

        // The rebuilt bot connects as the linked device.
        let bot = open_bot(&inner.config.sessions_dir, &device).await.unwrap().build().await.unwrap();
        let client = bot.client();
        let attempt = Attempt::default();
        let _ = attempt.client.set(Arc::downgrade(&client));
        session.update(|s| s.client = Some(client.clone()));
        inner.on_signal(&session, &attempt, Signal::Connected);
        assert_eq!(drain(&mut events), [EventKind::Connected { phone: "6281234567890".into() }]);
        assert!(session.connected_client().is_some());
        assert_eq!(session.view().qr, None);

        // Receipts find wagate's id through the send record.
        let message = OutgoingMessage {
            message_id: MessageId::parse("msg_1").unwrap(),
            to: Jid::parse("14155552671@s.whatsapp.net").unwrap(),
            payload: Payload::Text { text: "hi".into() },
        };
        let external_id = store::external_id(&device, &message.message_id);
        inner.store.begin_send(&device, &message, &external_id).unwrap();
        inner.store.mark_sent(&message.message_id).unwrap();
        let receipt = |kind| Signal::Receipt { kind, external_ids: vec![external_id.clone(), "3EB0NOTOURS".into()] };
        inner.on_signal(&session, &attempt, receipt(store::ReceiptKind::Delivered));
        inner.on_signal(&session, &attempt, receipt(store::ReceiptKind::Read));
        inner.on_signal(&session, &attempt, receipt(store::ReceiptKind::Read));
        assert_eq!(
            drain(&mut events),
            [
                EventKind::MessageDelivered { message_id: "msg_1".into() },
                EventKind::MessageRead { message_id: "msg_1".into() },
            ]
        );

        let hi_again = || Incoming {
            external_id: "3EB0IN".into(),
            from: "14155552671@s.whatsapp.net".into(),
            push_name: Some("Ana".into()),
            participant: None,
            body: InboundBody::Ready(Content::Text { text: "hello".into() }),
        };
        inner.on_signal(&session, &attempt, Signal::Messages(vec![hi_again()]));
        assert_eq!(
            drain(&mut events),
            [EventKind::Inbound {
                external_id: "3EB0IN".into(),
                from: "14155552671@s.whatsapp.net".into(),
                push_name: Some("Ana".into()),
                content: Content::Text { text: "hello".into() },
                participant: None,
            }]
        );
        // The bridge's checks apply to this engine's messages as to the simulator's.
        let nowhere = Incoming {
            external_id: "3EB0NAN".into(),
            body: InboundBody::Ready(Content::Location {
                latitude: f64::NAN,
                longitude: 0.0,
                name: None,
                address: None,
            }),
            ..hi_again()
        };
        let poll = Incoming { external_id: "3EB0POLL".into(), body: InboundBody::Unsupported("poll"), ..hi_again() };
        inner.on_signal(&session, &attempt, Signal::Messages(vec![nowhere, poll]));
        assert_eq!(drain(&mut events), []);

        inner.on_signal(
            &session,
            &attempt,
            Signal::ConnectionLost { reason: "connection lost: stream ended (EOF)".into() },
        );
        assert_eq!(
            drain(&mut events),
            [EventKind::Disconnected { reason: "connection lost: stream ended (EOF)".into(), logged_out: false }]
        );
        assert!(session.connected_client().is_none(), "no client is handed out while disconnected");

        // A logout the caller asked for is not reported; one WhatsApp decided is.
        session.mark_user_logout();
        inner.on_signal(&session, &attempt, Signal::LoggedOut { reason: "unlinked from the phone".into() });
        assert_eq!(drain(&mut events), []);
        assert_eq!(attempt.ending(), None);
        let other = Session::new(device.clone(), None);
        inner.on_signal(&other, &attempt, Signal::LoggedOut { reason: "unlinked from the phone".into() });
        assert_eq!(
            drain(&mut events),
            [EventKind::Disconnected { reason: "unlinked from the phone".into(), logged_out: true }]
        );
        assert_eq!(attempt.ending(), Some(Ending::LoggedOut));
        client.disconnect().await;
    }
}
