//! The engine without a network: WhatsApp's servers are replaced by a closed
//! local port, so every connection attempt fails at once, the way it does on a
//! machine that cannot reach them.

use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use wagate_contract::wire::EventKind;
use whatsapp_rust::store::commands::DeviceCommand;

use super::*;
use crate::engine::{EngineEvent, Payload};
use crate::jid::Jid;

/// A WhatsApp Web version to present, so that no test fetches the current one.
const VERSION: (u32, u32, u32) = (2, 3000, 1_026_131_876);

struct Net {
    engine: WhatsappEngine,
    events: UnboundedReceiver<EngineEvent>,
    _dir: tempfile::TempDir,
}

fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("ws://127.0.0.1:{port}/ws/chat")
}

fn offline_config(data_dir: &Path) -> WhatsappConfig {
    WhatsappConfig {
        link_wait: Duration::from_secs(5),
        backoff: Backoff { first: Duration::from_millis(100), max: Duration::from_millis(200) },
        ws_url: Some(closed_port_url()),
        version: Some(VERSION),
        ..WhatsappConfig::new(data_dir)
    }
}

impl Net {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (sink, events) = EventSink::channel(Arc::default());
        let media = MediaStore::open(dir.path().join("media")).unwrap();
        let engine = WhatsappEngine::open(offline_config(dir.path()), media, sink).unwrap();
        Self { engine, events, _dir: dir }
    }

    fn sessions_dir(&self) -> PathBuf {
        self.engine.inner.config.sessions_dir.clone()
    }

    async fn next(&mut self) -> EventKind {
        let event = tokio::time::timeout(Duration::from_secs(5), self.events.recv()).await;
        event.expect("no event within 5 s").expect("channel closed").kind
    }

    async fn quiet(&mut self, wait: Duration) {
        let event = tokio::time::timeout(wait, self.events.recv()).await;
        assert!(event.is_err(), "unexpected event {event:?}");
    }

    async fn session_view(&self, device_id: &DeviceId, ready: impl Fn(&View) -> bool) -> View {
        let session = self.engine.inner.session(device_id).expect("no session");
        session.wait_for(Duration::from_secs(5), ready).await
    }
}

pub(super) fn id(s: &str) -> DeviceId {
    DeviceId::parse(s).unwrap()
}

pub(super) fn text(message_id: &str) -> OutgoingMessage {
    OutgoingMessage {
        message_id: MessageId::parse(message_id).unwrap(),
        to: Jid::parse("6281234567890@s.whatsapp.net").unwrap(),
        payload: Payload::Text { text: "hello".into() },
    }
}

/// Builds a bot on a device's store the way a session does, with nowhere to connect to.
async fn offline_bot(sessions_dir: &Path, device_id: &DeviceId) -> whatsapp_rust::bot::Bot {
    session::open_bot(sessions_dir, device_id)
        .await
        .unwrap()
        .with_transport_factory(
            whatsapp_rust::transport::TokioWebSocketTransportFactory::new().with_url(closed_port_url()),
        )
        .with_version(VERSION)
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_store_builds_a_client_offline_and_its_identity_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let device = id("dev_a");
    let (registration_id, identity, noise) = {
        let bot = offline_bot(dir.path(), &device).await;
        let client = bot.client();
        assert!(client.pn().is_none(), "a fresh store holds no account");
        assert!(!client.is_connected());
        let snapshot = client.persistence_manager().get_device_snapshot();
        let keys = (snapshot.registration_id, snapshot.identity_key.public_key, snapshot.noise_key.public_key);
        client.disconnect().await;
        keys
    };
    assert!(store::session_path(dir.path(), &device).exists());

    let bot = offline_bot(dir.path(), &device).await;
    let client = bot.client();
    let snapshot = client.persistence_manager().get_device_snapshot();
    assert_eq!(snapshot.registration_id, registration_id);
    assert_eq!(snapshot.identity_key.public_key, identity);
    assert_eq!(snapshot.noise_key.public_key, noise);
    client.disconnect().await;

    // Another device's store is another identity.
    let other = offline_bot(dir.path(), &id("dev_b")).await.client();
    assert_ne!(other.persistence_manager().get_device_snapshot().identity_key.public_key, identity);
    other.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linking_without_a_network_keeps_the_device_pairing_and_retrying() {
    let mut net = Net::new();
    let device = id("dev_a");
    let state = net.engine.link(&device, None).await.unwrap();
    // No QR can be known before WhatsApp answers.
    assert_eq!(state, LinkState::Pairing { qr: String::new(), pair_code: None });
    assert_eq!(net.engine.status(&device).await.unwrap(), Some(DeviceStatus::Pairing));

    // The supervisor keeps trying, with the reason at hand, and the bridge keeps serving.
    let view = net.session_view(&device, |v| v.failed_attempts >= 3).await;
    assert!(view.failed_attempts >= 3, "{view:?}");
    assert!(view.last_error.as_deref().unwrap_or_default().contains("WebSocket connect failed"), "{view:?}");
    assert_eq!(view.phase, Phase::Starting);
    assert_eq!(net.engine.status(&device).await.unwrap(), Some(DeviceStatus::Pairing));
    // A device that was never online is not reported as going offline.
    net.quiet(Duration::from_millis(300)).await;

    assert!(matches!(net.engine.send(&device, &text("msg_1")).await, Err(EngineError::DeviceOffline)));
    let phones = [PhoneNumber::parse("14155552671").unwrap()];
    assert!(matches!(net.engine.check(&device, &phones).await, Err(EngineError::DeviceOffline)));
    let counts = net.engine.count_by_status().await.unwrap();
    assert_eq!(counts, HashMap::from([(DeviceStatus::Pairing, 1)]));

    // Logging out stops the retries and forgets the session store.
    assert!(store::session_path(&net.sessions_dir(), &device).exists());
    net.engine.logout(&device).await.unwrap();
    assert_eq!(net.engine.status(&device).await.unwrap(), None);
    assert!(!store::session_path(&net.sessions_dir(), &device).exists());
    assert!(matches!(net.engine.logout(&device).await, Err(EngineError::DeviceNotFound)));
    net.quiet(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pairing_device_asked_for_a_code_remembers_the_number_across_restarts() {
    let mut net = Net::new();
    let device = id("dev_a");
    let phone = PhoneNumber::parse("6281234567890").unwrap();
    let state = net.engine.link(&device, Some(&phone)).await.unwrap();
    assert_eq!(state, LinkState::Pairing { qr: String::new(), pair_code: None });
    assert_eq!(
        net.engine.inner.store.device(&device).unwrap(),
        Some(Registration::Pairing { pair_phone: Some("6281234567890".into()) })
    );
    // Linking again without a number keeps asking for a code for the earlier one.
    net.engine.link(&device, None).await.unwrap();
    assert_eq!(net.engine.inner.session(&device).unwrap().pair_phone, Some(phone));
    net.engine.shutdown().await;
    net.quiet(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_device_restored_offline_is_reported_disconnected_once() {
    let mut net = Net::new();
    let device = id("dev_a");
    // A store holding an account, as pairing leaves it.
    {
        let client = offline_bot(&net.sessions_dir(), &device).await.client();
        let pm = client.persistence_manager();
        pm.process_command(DeviceCommand::SetId(Some("14155552671:5@s.whatsapp.net".parse().unwrap()))).await;
        pm.flush().await.unwrap();
        client.disconnect().await;
    }
    net.engine.inner.store.set_linked(&device, "14155552671").unwrap();

    net.engine.restore().await.unwrap();
    match net.next().await {
        EventKind::Disconnected { reason, logged_out: false } => {
            assert!(reason.starts_with("cannot reach WhatsApp servers: "), "{reason}")
        }
        other => panic!("expected Disconnected, got {other:?}"),
    }
    assert_eq!(net.engine.status(&device).await.unwrap(), Some(DeviceStatus::Connecting));
    // Later failures of the same outage stay in the log.
    let view = net.session_view(&device, |v| v.failed_attempts >= 3).await;
    assert!(matches!(view.phase, Phase::Reconnecting { .. }), "{view:?}");
    net.quiet(Duration::from_millis(300)).await;

    // Linking a linked device just reports it.
    assert_eq!(net.engine.link(&device, None).await.unwrap(), LinkState::Linked { phone: "14155552671".into() });
    assert!(matches!(net.engine.send(&device, &text("msg_1")).await, Err(EngineError::DeviceOffline)));
    net.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_device_whose_store_was_lost_must_pair_again() {
    let mut net = Net::new();
    let device = id("dev_a");
    net.engine.inner.store.set_linked(&device, "14155552671").unwrap();
    net.engine.restore().await.unwrap();
    assert_eq!(net.next().await, EventKind::Disconnected { reason: "session store lost".into(), logged_out: true });
    let registration = || net.engine.inner.store.device(&device).unwrap();
    for _ in 0..50 {
        if registration() == Some(Registration::LoggedOut) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(registration(), Some(Registration::LoggedOut));
    assert_eq!(net.engine.status(&device).await.unwrap(), Some(DeviceStatus::Disconnected));
    assert!(matches!(net.engine.send(&device, &text("msg_1")).await, Err(EngineError::DeviceOffline)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whatsapp_already_has_is_reported_again_not_resent() {
    let mut net = Net::new();
    let device = id("dev_a");
    let message = text("msg_1");
    let external_id = store::external_id(&device, &message.message_id);
    net.engine.inner.store.set_linked(&device, "14155552671").unwrap();
    net.engine.inner.store.begin_send(&device, &message, &external_id).unwrap();
    net.engine.inner.store.mark_sent(&message.message_id).unwrap();

    // No session, no connection: the record alone answers.
    net.engine.send(&device, &message).await.unwrap();
    assert_eq!(net.next().await, EventKind::MessageSent { message_id: "msg_1".into(), external_id });

    assert!(matches!(net.engine.send(&id("dev_x"), &text("msg_2")).await, Err(EngineError::DeviceNotFound)));
    assert!(matches!(net.engine.send(&device, &text("msg_2")).await, Err(EngineError::DeviceOffline)));
    assert!(matches!(net.engine.check(&id("dev_x"), &[]).await, Err(EngineError::DeviceNotFound)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_fails_the_sends_that_never_went_out() {
    let mut net = Net::new();
    let device = id("dev_a");
    net.engine.inner.store.set_linked(&device, "14155552671").unwrap();
    let message = text("msg_1");
    net.engine.inner.store.begin_send(&device, &message, &store::external_id(&device, &message.message_id)).unwrap();
    net.engine.logout(&device).await.unwrap();
    match net.next().await {
        EventKind::MessageFailed { message_id, code, .. } => {
            assert_eq!((message_id.as_str(), code.as_str()), ("msg_1", "device_not_found"))
        }
        other => panic!("expected MessageFailed, got {other:?}"),
    }
    // The caller asked for the logout: no Disconnected follows.
    net.quiet(Duration::from_millis(200)).await;
    assert_eq!(net.engine.status(&device).await.unwrap(), None);
}

/// The real engine's per-device footprint for a client loaded from its store,
/// without a network. Run with
/// `cargo test -p wagate-bridge --release -- --ignored --nocapture whatsapp_footprint`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints numbers, asserts nothing"]
async fn whatsapp_footprint() {
    let devices: usize = std::env::var("WAGATE_FOOTPRINT_DEVICES").ok().and_then(|n| n.parse().ok()).unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<DeviceId> = (0..devices).map(|n| id(&format!("dev_{n:04}"))).collect();

    // Create every store once (fresh identity keys, as linking does), then close it.
    let started = std::time::Instant::now();
    for device in &ids {
        let client = offline_bot(dir.path(), device).await.client();
        client.disconnect().await;
    }
    let created = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let before = vm_rss_kib();
    let started = std::time::Instant::now();
    let mut bots = Vec::with_capacity(devices);
    for device in &ids {
        bots.push(offline_bot(dir.path(), device).await);
    }
    let loaded = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = vm_rss_kib();

    let one = store::session_path(dir.path(), &ids[0]);
    let sizes: Vec<u64> = ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| std::fs::metadata(format!("{}{suffix}", one.display())).map_or(0, |m| m.len()))
        .collect();
    let on_disk: u64 = sizes.iter().sum();
    println!("whatsapp_footprint: {devices} devices");
    println!("  created {devices} stores in {created:?}; loaded {devices} clients from them in {loaded:?}");
    println!("  VmRSS before {before} KiB, after {after} KiB");
    println!("  per device: {:.1} KiB resident", (after.saturating_sub(before)) as f64 / devices as f64);
    println!(
        "  one session store on disk: {on_disk} bytes (db {} + wal {} + shm {}), while its client is open",
        sizes[0], sizes[1], sizes[2]
    );
    for bot in bots {
        bot.client().disconnect().await;
    }
}

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Memory across rebuilds: an offline device's supervisor rebuilds its bot on
/// every retry, so a leak per rebuild would grow without bound over an outage.
/// Run with `cargo test -p wagate-bridge --release -- --ignored --nocapture whatsapp_rebuild_churn`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints numbers, asserts nothing"]
async fn whatsapp_rebuild_churn() {
    let dir = tempfile::tempdir().unwrap();
    let (sink, _events) = EventSink::channel(Arc::default());
    let media = MediaStore::open(dir.path().join("media")).unwrap();
    let config = WhatsappConfig {
        backoff: Backoff { first: Duration::from_millis(1), max: Duration::from_millis(1) },
        link_wait: Duration::from_millis(10),
        ..offline_config(dir.path())
    };
    let engine = WhatsappEngine::open(config, media, sink).unwrap();
    let device = id("dev_a");
    engine.link(&device, None).await.unwrap();
    let session = engine.inner.session(&device).unwrap();
    let mut last = 0;
    for target in [100, 500, 1000, 1500, 2000] {
        let view = session.wait_for(Duration::from_secs(120), |v| v.failed_attempts >= target).await;
        let rss = vm_rss_kib();
        println!(
            "whatsapp_rebuild_churn: {} rebuilds, VmRSS {rss} KiB ({:+} KiB since the last line)",
            view.failed_attempts,
            rss as i64 - last as i64
        );
        last = rss;
    }
    engine.shutdown().await;
}
