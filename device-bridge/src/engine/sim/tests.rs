use super::*;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::engine::EngineEvent;
use crate::ids::MessageId;

const TIMINGS: SimTimings = SimTimings {
    deliver: Duration::from_millis(10),
    read: Duration::from_millis(30),
    qr_ttl: Duration::from_millis(200),
};

struct Net {
    engine: SimEngine,
    events: UnboundedReceiver<EngineEvent>,
    _dir: tempfile::TempDir,
}

impl Net {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (sink, events) = EventSink::channel();
        let engine = SimEngine::open(&dir.path().join("sim.db"), TIMINGS, sink).unwrap();
        Self { engine, events, _dir: dir }
    }

    async fn next(&mut self) -> EventKind {
        let event = tokio::time::timeout(Duration::from_secs(2), self.events.recv()).await;
        event.expect("no event within 2 s").expect("channel closed").kind
    }

    /// Asserts nothing more arrives for a while (far longer than any sim timing).
    async fn quiet(&mut self) {
        let event = tokio::time::timeout(Duration::from_millis(150), self.events.recv()).await;
        assert!(event.is_err(), "unexpected event {event:?}");
    }

    async fn connected(&mut self, device: &str, phone: &str) -> DeviceId {
        let id = DeviceId::parse(device).unwrap();
        self.engine.link(&id).await.unwrap();
        assert!(matches!(self.next().await, EventKind::QrUpdated { .. }));
        self.engine.scan(&id, &PhoneNumber::parse(phone).unwrap()).unwrap();
        assert_eq!(self.next().await, EventKind::Connected { phone: phone.into() });
        id
    }
}

fn text(message_id: &str, to: &str) -> OutgoingMessage {
    OutgoingMessage {
        message_id: MessageId::parse(message_id).unwrap(),
        to: Jid::parse(to).unwrap(),
        content: Content::Text { text: format!("hello {message_id}") },
    }
}

fn sent_id(event: EventKind, message_id: &str) -> String {
    match event {
        EventKind::MessageSent { message_id: m, external_id } if m == message_id => external_id,
        other => panic!("expected MessageSent for {message_id}, got {other:?}"),
    }
}

#[tokio::test]
async fn ordinary_number_gets_sent_delivered_read_and_an_inbox_entry() {
    let mut net = Net::new();
    let dev = net.connected("dev_a", "6281111111111").await;
    net.engine.send(&dev, &text("msg_1", "14155552671@s.whatsapp.net")).await.unwrap();

    let external_id = sent_id(net.next().await, "msg_1");
    assert!(external_id.starts_with("3EB0") && external_id.len() == 22, "{external_id}");
    assert!(external_id[4..].bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()));
    assert_eq!(net.next().await, EventKind::MessageDelivered { message_id: "msg_1".into() });
    assert_eq!(net.next().await, EventKind::MessageRead { message_id: "msg_1".into() });
    net.quiet().await;

    let inbox = net.engine.phone_messages("14155552671").unwrap();
    assert_eq!(inbox.len(), 1);
    let m = &inbox[0];
    assert_eq!(m.external_id, external_id);
    assert_eq!((m.message_id.as_str(), m.from.as_str(), m.kind.as_str()), ("msg_1", "6281111111111", "text"));
    assert_eq!(m.text.as_deref(), Some("hello msg_1"));
    assert_eq!((&m.caption, &m.media, &m.location), (&None, &None, &None));
    assert!(humantime::parse_rfc3339(&m.at).is_ok(), "{}", m.at);
}

#[tokio::test]
async fn number_rules_999_998_997() {
    let mut net = Net::new();
    let dev = net.connected("dev_a", "6281111111111").await;

    net.engine.send(&dev, &text("msg_999", "9991234567@s.whatsapp.net")).await.unwrap();
    match net.next().await {
        EventKind::MessageFailed { message_id, code, .. } => {
            assert_eq!((message_id.as_str(), code.as_str()), ("msg_999", "not_on_whatsapp"))
        }
        other => panic!("{other:?}"),
    }

    net.engine.send(&dev, &text("msg_997", "9971234567@s.whatsapp.net")).await.unwrap();
    match net.next().await {
        EventKind::MessageFailed { message_id, code, reason } => {
            assert_eq!((message_id.as_str(), code.as_str()), ("msg_997", "engine_error"));
            assert!(!reason.is_empty());
        }
        other => panic!("{other:?}"),
    }

    net.engine.send(&dev, &text("msg_998", "9981234567@s.whatsapp.net")).await.unwrap();
    sent_id(net.next().await, "msg_998");
    net.quiet().await;

    assert!(net.engine.phone_messages("9991234567").unwrap().is_empty());
    assert!(net.engine.phone_messages("9971234567").unwrap().is_empty());
    assert_eq!(net.engine.phone_messages("9981234567").unwrap().len(), 1);
}

#[tokio::test]
async fn groups_are_recorded_under_their_id() {
    let mut net = Net::new();
    let dev = net.connected("dev_a", "6281111111111").await;
    net.engine.send(&dev, &text("msg_g", "6281234567-1546527040@g.us")).await.unwrap();
    sent_id(net.next().await, "msg_g");
    assert_eq!(net.engine.phone_messages("6281234567-1546527040").unwrap().len(), 1);
}

#[tokio::test]
async fn resending_a_message_id_delivers_nothing_new() {
    let mut net = Net::new();
    let dev = net.connected("dev_a", "6281111111111").await;
    let message = text("msg_1", "14155552671@s.whatsapp.net");
    net.engine.send(&dev, &message).await.unwrap();
    net.engine.send(&dev, &message).await.unwrap();

    let first = sent_id(net.next().await, "msg_1");
    let second = sent_id(net.next().await, "msg_1");
    assert_eq!(first, second);
    assert!(matches!(net.next().await, EventKind::MessageDelivered { .. }));
    assert!(matches!(net.next().await, EventKind::MessageRead { .. }));
    net.quiet().await;
    assert_eq!(net.engine.phone_messages("14155552671").unwrap().len(), 1);
}

#[tokio::test]
async fn only_connected_devices_send() {
    let mut net = Net::new();
    let dev = DeviceId::parse("dev_a").unwrap();
    let message = text("msg_1", "14155552671@s.whatsapp.net");
    assert!(matches!(net.engine.send(&dev, &message).await, Err(EngineError::DeviceNotFound)));
    net.engine.link(&dev).await.unwrap();
    assert!(matches!(net.engine.send(&dev, &message).await, Err(EngineError::DeviceOffline)));
    assert!(matches!(net.next().await, EventKind::QrUpdated { .. }));
    assert!(net.engine.phone_messages("14155552671").unwrap().is_empty());
}

#[tokio::test]
async fn pairing_rotates_qr_until_scanned_and_link_is_idempotent() {
    let mut net = Net::new();
    let dev = DeviceId::parse("dev_a").unwrap();
    let LinkState::Pairing { qr: first } = net.engine.link(&dev).await.unwrap() else { panic!("not pairing") };
    assert!(first.starts_with("2@") && first.split(',').count() == 4, "{first}");
    assert_eq!(net.next().await, EventKind::QrUpdated { qr: first.clone() });
    assert_eq!(net.engine.link(&dev).await.unwrap(), LinkState::Pairing { qr: first.clone() });

    let EventKind::QrUpdated { qr: second } = net.next().await else { panic!("no rotation") };
    assert_ne!(first, second);
    assert_eq!(net.engine.link(&dev).await.unwrap(), LinkState::Pairing { qr: second });

    let phone = PhoneNumber::parse("6281234567890").unwrap();
    net.engine.scan(&dev, &phone).unwrap();
    assert_eq!(net.next().await, EventKind::Connected { phone: phone.to_string() });
    assert_eq!(net.engine.link(&dev).await.unwrap(), LinkState::Linked { phone: phone.to_string() });
    assert!(matches!(net.engine.scan(&dev, &phone), Err(SimError::NotWaitingForScan)));
    net.quiet().await;
}

#[tokio::test]
async fn unlink_inbound_and_logout() {
    let mut net = Net::new();
    let dev = net.connected("dev_a", "6281111111111").await;
    let from = PhoneNumber::parse("14155552671").unwrap();

    let external_id = net.engine.inbound(&dev, &from, "hi".into()).unwrap();
    assert_eq!(
        net.next().await,
        EventKind::Inbound {
            external_id,
            from: "14155552671@s.whatsapp.net".into(),
            content: Content::Text { text: "hi".into() }
        }
    );

    net.engine.unlink(&dev).unwrap();
    assert_eq!(net.next().await, EventKind::Disconnected { reason: "unlinked from phone".into(), logged_out: true });
    assert!(matches!(net.engine.inbound(&dev, &from, "hi".into()), Err(SimError::NotConnected)));
    assert!(matches!(net.engine.unlink(&dev), Err(SimError::NotConnected)));
    assert_eq!(net.engine.status(&dev).await.unwrap(), Some(DeviceStatus::Disconnected));

    // Linking again after an unlink starts a fresh pairing.
    assert!(matches!(net.engine.link(&dev).await.unwrap(), LinkState::Pairing { .. }));
    assert!(matches!(net.next().await, EventKind::QrUpdated { .. }));
    net.engine.logout(&dev).await.unwrap();
    assert_eq!(net.engine.status(&dev).await.unwrap(), None);
    assert!(matches!(net.engine.logout(&dev).await, Err(EngineError::DeviceNotFound)));
    // Logging out stops the QR rotation too.
    net.quiet().await;
}

/// Each phase runs on its own runtime: dropping it kills every task, as a crash would.
#[test]
fn restart_reconnects_devices_resumes_pairing_and_due_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.db");
    let slow = SimTimings { deliver: Duration::from_millis(300), read: Duration::from_millis(400), ..TIMINGS };
    let runtime = || tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    runtime().block_on(async {
        let (sink, mut events) = EventSink::channel();
        let engine = SimEngine::open(&path, slow, sink).unwrap();
        let linked = DeviceId::parse("dev_linked").unwrap();
        engine.link(&linked).await.unwrap();
        engine.scan(&linked, &PhoneNumber::parse("6281111111111").unwrap()).unwrap();
        engine.link(&DeviceId::parse("dev_waiting").unwrap()).await.unwrap();
        engine.send(&linked, &text("msg_1", "14155552671@s.whatsapp.net")).await.unwrap();
        while events.try_recv().is_ok() {}
    });

    runtime().block_on(async {
        let (sink, events) = EventSink::channel();
        let mut net = Net { engine: SimEngine::open(&path, TIMINGS, sink).unwrap(), events, _dir: dir };
        net.engine.restore().await.unwrap();
        assert_eq!(net.next().await, EventKind::Connected { phone: "6281111111111".into() });
        // The receipts were due while the bridge was down, so they follow at once;
        // the waiting device gets a fresh QR meanwhile.
        let (mut receipts, mut qrs) = (Vec::new(), 0);
        while receipts.len() < 2 {
            match net.next().await {
                EventKind::QrUpdated { .. } => qrs += 1,
                other => receipts.push(other),
            }
        }
        assert!(qrs >= 1 || matches!(net.next().await, EventKind::QrUpdated { .. }));
        assert_eq!(
            receipts,
            [
                EventKind::MessageDelivered { message_id: "msg_1".into() },
                EventKind::MessageRead { message_id: "msg_1".into() }
            ]
        );
    });
}
