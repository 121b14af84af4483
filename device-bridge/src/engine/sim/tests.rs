use super::*;
use tokio::sync::mpsc::UnboundedReceiver;

use wagate_contract::wire::{Content, MediaKind};

use crate::engine::{EngineEvent, Location, OutgoingMedia, Payload};
use crate::ids::MessageId;
use crate::inbound::ReceivedBody;
use crate::media::MediaStore;

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
        let (sink, events) = EventSink::channel(Arc::default());
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
        self.engine.link(&id, None).await.unwrap();
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
        payload: Payload::Text { text: format!("hello {message_id}") },
    }
}

fn hi() -> ReceivedBody {
    ReceivedBody::Content(Content::Text { text: "hi".into() })
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
    net.engine.link(&dev, None).await.unwrap();
    assert!(matches!(net.engine.send(&dev, &message).await, Err(EngineError::DeviceOffline)));
    assert!(matches!(net.next().await, EventKind::QrUpdated { .. }));
    assert!(net.engine.phone_messages("14155552671").unwrap().is_empty());
}

#[tokio::test]
async fn pairing_rotates_qr_until_scanned_and_linking_again_gives_a_fresh_qr() {
    let mut net = Net::new();
    let dev = DeviceId::parse("dev_a").unwrap();
    let LinkState::Pairing { qr: first, pair_code: None } = net.engine.link(&dev, None).await.unwrap() else {
        panic!("not pairing by QR")
    };
    assert!(first.starts_with("2@") && first.split(',').count() == 4, "{first}");
    assert_eq!(net.next().await, EventKind::QrUpdated { qr: first.clone() });

    let EventKind::QrUpdated { qr: rotated } = net.next().await else { panic!("no rotation") };
    assert_ne!(first, rotated);

    // Asking again (a "refresh") replaces the QR at once.
    let LinkState::Pairing { qr: refreshed, .. } = net.engine.link(&dev, None).await.unwrap() else { panic!() };
    assert!(![&first, &rotated].contains(&&refreshed));
    assert_eq!(net.next().await, EventKind::QrUpdated { qr: refreshed });

    let phone = PhoneNumber::parse("6281234567890").unwrap();
    net.engine.scan(&dev, &phone).unwrap();
    assert_eq!(net.next().await, EventKind::Connected { phone: phone.to_string() });
    let linked = LinkState::Linked { phone: phone.to_string() };
    assert_eq!(net.engine.link(&dev, None).await.unwrap(), linked);
    assert_eq!(net.engine.link(&dev, Some(&PhoneNumber::parse("14155552671").unwrap())).await.unwrap(), linked);
    assert!(matches!(net.engine.scan(&dev, &phone), Err(SimError::NotWaitingForScan)));
    net.quiet().await;
}

#[tokio::test]
async fn a_pairing_code_links_the_number_it_was_asked_for() {
    let mut net = Net::new();
    let dev = DeviceId::parse("dev_a").unwrap();
    let owner = PhoneNumber::parse("6281234567890").unwrap();
    assert!(matches!(net.engine.pair(&dev, &PairCode::generate()), Err(SimError::DeviceNotFound)));
    net.engine.link(&dev, None).await.unwrap();
    assert!(matches!(net.next().await, EventKind::QrUpdated { .. }));
    assert!(matches!(net.engine.pair(&dev, &PairCode::generate()), Err(SimError::NoPairCode)));

    let LinkState::Pairing { pair_code: Some(code), .. } = net.engine.link(&dev, Some(&owner)).await.unwrap() else {
        panic!("no pairing code")
    };
    assert!(matches!(net.next().await, EventKind::QrUpdated { .. }));
    assert_eq!(net.next().await, EventKind::PairCode { code: code.to_string() });
    // A refresh without a number keeps the code; the QR still changes.
    let LinkState::Pairing { pair_code: kept, .. } = net.engine.link(&dev, None).await.unwrap() else { panic!() };
    assert_eq!(kept.as_ref(), Some(&code));
    assert!(matches!(net.next().await, EventKind::QrUpdated { .. }));
    net.quiet().await;

    let wrong = std::iter::repeat_with(PairCode::generate).find(|c| *c != code).unwrap();
    assert!(matches!(net.engine.pair(&dev, &wrong), Err(SimError::WrongPairCode)));
    assert_eq!(net.engine.pair(&dev, &code).unwrap(), owner.as_str());
    assert_eq!(net.next().await, EventKind::Connected { phone: owner.to_string() });
    assert!(matches!(net.engine.pair(&dev, &code), Err(SimError::NotWaitingForScan)));

    // After an unlink, a new pairing starts without the old code.
    net.engine.unlink(&dev).unwrap();
    assert!(matches!(net.next().await, EventKind::Disconnected { .. }));
    let LinkState::Pairing { pair_code: None, .. } = net.engine.link(&dev, None).await.unwrap() else { panic!() };
    assert!(matches!(net.engine.pair(&dev, &code), Err(SimError::NoPairCode)));
}

#[tokio::test]
async fn check_says_which_numbers_are_on_whatsapp() {
    let mut net = Net::new();
    let dev = DeviceId::parse("dev_a").unwrap();
    let phones: Vec<PhoneNumber> =
        ["14155552671", "9991234567", "9971234567"].iter().map(|p| PhoneNumber::parse(p).unwrap()).collect();
    assert!(matches!(net.engine.check(&dev, &phones).await, Err(EngineError::DeviceNotFound)));
    net.engine.link(&dev, None).await.unwrap();
    assert!(matches!(net.engine.check(&dev, &phones).await, Err(EngineError::DeviceOffline)));
    net.next().await;

    let dev = net.connected("dev_b", "6281111111111").await;
    let results = net.engine.check(&dev, &phones).await.unwrap();
    let found: Vec<(&str, bool, Option<&str>)> =
        results.iter().map(|r| (r.phone.as_str(), r.exists, r.jid.as_deref())).collect();
    assert_eq!(
        found,
        [
            ("14155552671", true, Some("14155552671@s.whatsapp.net")),
            ("9991234567", false, None),
            ("9971234567", true, Some("9971234567@s.whatsapp.net")),
        ]
    );
}

#[tokio::test]
async fn phones_receive_media_bytes_and_locations() {
    let mut net = Net::new();
    let dev = net.connected("dev_a", "6281111111111").await;
    let dir = tempfile::tempdir().unwrap();
    let store = MediaStore::open(dir.path().to_owned()).unwrap();
    let file = store.put(axum::body::Bytes::from_static(b"%PDF-1.7 tiny"), None).await.unwrap();
    let document = OutgoingMessage {
        message_id: MessageId::parse("msg_doc").unwrap(),
        to: Jid::parse("14155552671@s.whatsapp.net").unwrap(),
        payload: Payload::Media(OutgoingMedia {
            kind: MediaKind::Document,
            mime_type: "application/pdf".into(),
            file_name: Some("invoice.pdf".into()),
            caption: Some("your invoice".into()),
            file: file.clone(),
        }),
    };
    let place = OutgoingMessage {
        message_id: MessageId::parse("msg_loc").unwrap(),
        payload: Payload::Location(Location {
            latitude: -6.1754,
            longitude: 106.8272,
            name: Some("Monas".into()),
            address: None,
        }),
        ..document.clone()
    };
    net.engine.send(&dev, &document).await.unwrap();
    net.engine.send(&dev, &place).await.unwrap();
    sent_id(net.next().await, "msg_doc");
    sent_id(net.next().await, "msg_loc");

    let inbox = net.engine.phone_messages("14155552671").unwrap();
    let kinds: Vec<&str> = inbox.iter().map(|m| m.kind.as_str()).collect();
    assert_eq!(kinds, ["document", "location"]);
    assert_eq!((inbox[0].text.as_deref(), inbox[0].caption.as_deref()), (None, Some("your invoice")));
    assert_eq!(
        inbox[0].media,
        Some(PhoneMedia {
            mime_type: "application/pdf".into(),
            sha256: file.sha256().to_string(),
            size: 13,
            file_name: Some("invoice.pdf".into()),
        })
    );
    assert_eq!(
        inbox[1].location,
        Some(PhoneLocation { latitude: -6.1754, longitude: 106.8272, name: Some("Monas".into()), address: None })
    );
    assert_eq!((&inbox[1].media, &inbox[1].text), (&None, &None));
}

#[tokio::test]
async fn unlink_inbound_and_logout() {
    let mut net = Net::new();
    let dev = net.connected("dev_a", "6281111111111").await;
    let from = "14155552671@s.whatsapp.net".to_owned();

    let external_id = net.engine.inbound(&dev, from.clone(), None, None, Some("Ana".into()), hi()).unwrap();
    assert_eq!(
        net.next().await,
        EventKind::Inbound {
            external_id,
            from: "14155552671@s.whatsapp.net".into(),
            push_name: Some("Ana".into()),
            content: Content::Text { text: "hi".into() },
            participant: None,
        }
    );
    let group = "120363025246125486@g.us".to_owned();
    let author = Some("447911123456@s.whatsapp.net".to_owned());
    let external_id = net.engine.inbound(&dev, group.clone(), author.clone(), None, None, hi()).unwrap();
    assert_eq!(
        net.next().await,
        EventKind::Inbound {
            external_id,
            from: group,
            push_name: None,
            content: Content::Text { text: "hi".into() },
            participant: author,
        }
    );

    // What the bridge's checks refuse never becomes an event.
    let unknown = ReceivedBody::Unsupported { kind: "poll".into() };
    net.engine.inbound(&dev, from.clone(), None, None, None, unknown).unwrap();
    net.engine.inbound(&dev, "98765432101234@lid".into(), None, None, None, hi()).unwrap();
    net.quiet().await;

    net.engine.unlink(&dev).unwrap();
    assert_eq!(net.next().await, EventKind::Disconnected { reason: "unlinked from phone".into(), logged_out: true });
    assert!(matches!(net.engine.inbound(&dev, from, None, None, None, hi()), Err(SimError::NotConnected)));
    assert!(matches!(net.engine.unlink(&dev), Err(SimError::NotConnected)));
    assert_eq!(net.engine.status(&dev).await.unwrap(), Some(DeviceStatus::Disconnected));

    // Linking again after an unlink starts a fresh pairing.
    assert!(matches!(net.engine.link(&dev, None).await.unwrap(), LinkState::Pairing { .. }));
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
    let waiting = DeviceId::parse("dev_waiting").unwrap();
    let owner = PhoneNumber::parse("6282222222222").unwrap();

    let old_code = runtime().block_on(async {
        let (sink, mut events) = EventSink::channel(Arc::default());
        let engine = SimEngine::open(&path, slow, sink).unwrap();
        let linked = DeviceId::parse("dev_linked").unwrap();
        engine.link(&linked, None).await.unwrap();
        engine.scan(&linked, &PhoneNumber::parse("6281111111111").unwrap()).unwrap();
        let LinkState::Pairing { pair_code: Some(code), .. } = engine.link(&waiting, Some(&owner)).await.unwrap()
        else {
            panic!("no pairing code")
        };
        engine.send(&linked, &text("msg_1", "14155552671@s.whatsapp.net")).await.unwrap();
        while events.try_recv().is_ok() {}
        code
    });

    runtime().block_on(async {
        let (sink, events) = EventSink::channel(Arc::default());
        let mut net = Net { engine: SimEngine::open(&path, TIMINGS, sink).unwrap(), events, _dir: dir };
        net.engine.restore().await.unwrap();
        assert_eq!(net.next().await, EventKind::Connected { phone: "6281111111111".into() });
        // The waiting device's code was renewed; its QR follows at once, as do the
        // receipts that fell due while the bridge was down.
        let EventKind::PairCode { code } = net.next().await else { panic!("no new pairing code") };
        assert_ne!(code, old_code.to_string());
        let (mut receipts, mut qrs) = (Vec::new(), 0);
        while receipts.len() < 2 || qrs == 0 {
            match net.next().await {
                EventKind::QrUpdated { .. } => qrs += 1,
                other => receipts.push(other),
            }
        }
        assert_eq!(
            receipts,
            [
                EventKind::MessageDelivered { message_id: "msg_1".into() },
                EventKind::MessageRead { message_id: "msg_1".into() }
            ]
        );
        assert!(matches!(net.engine.pair(&waiting, &old_code), Err(SimError::WrongPairCode)));
        assert_eq!(net.engine.pair(&waiting, &PairCode::parse(&code).unwrap()).unwrap(), owner.as_str());
    });
}
