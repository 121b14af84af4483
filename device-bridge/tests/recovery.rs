//! Durability: the outbox across worker outages and restarts, and sends a crash
//! interrupted. Each bridge "process" runs on its own runtime; dropping the
//! runtime kills all of its tasks mid-flight, as a crash would.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use common::{config, process, text_message, Auth, FakeWorker, TestBridge, DEAD_WORKER};
use serde_json::json;
use wagate_bridge::db::Db;
use wagate_bridge::engine::sim::{SimEngine, SimTimings};
use wagate_bridge::engine::{Engine, EventSink};
use wagate_bridge::ids::DeviceId;
use wagate_bridge::{journal, outbox};
use wagate_contract::wire::EventKind;

const PHONE: &str = "6281234567890";
const FRIEND: &str = "14155552671";

fn label(kind: &EventKind) -> String {
    match kind {
        EventKind::QrUpdated { .. } => "qr_updated".into(),
        EventKind::Connected { .. } => "connected".into(),
        EventKind::MessageSent { message_id, .. } => format!("sent {message_id}"),
        EventKind::MessageDelivered { message_id } => format!("delivered {message_id}"),
        EventKind::MessageRead { message_id } => format!("read {message_id}"),
        other => format!("{other:?}"),
    }
}

#[tokio::test]
async fn the_outbox_retries_until_the_worker_accepts_and_keeps_order() {
    let worker = FakeWorker::start(3).await;
    let dir = tempfile::tempdir().unwrap();
    let bridge = TestBridge::start(config(dir.path(), &worker.url)).await;
    bridge.connect("dev_a", PHONE).await;

    worker.wait_for("Connected", |e| matches!(e.kind, EventKind::Connected { .. })).await;
    assert_eq!(worker.refused(), 3);
    assert_eq!(worker.bad_signatures(), 0);
    let labels: Vec<String> = worker.kinds().iter().map(label).collect();
    assert_eq!(labels, ["qr_updated", "connected"]);
}

#[test]
fn events_written_while_the_worker_was_down_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    process(async {
        let bridge = TestBridge::start(config(dir.path(), DEAD_WORKER)).await;
        bridge.connect("dev_a", PHONE).await;
        let body = json!({ "message_id": "msg_1", "to": format!("{FRIEND}@s.whatsapp.net"),
                           "content": { "type": "text", "text": "hi" } });
        assert_eq!(bridge.signed("POST", "/v1/devices/dev_a/messages", Some(body)).await.0, StatusCode::ACCEPTED);
        // Let the receipts happen (and be stored) before the "crash".
        tokio::time::sleep(Duration::from_millis(150)).await;
    });

    process(async {
        let worker = FakeWorker::start(0).await;
        let bridge = TestBridge::start(config(dir.path(), &worker.url)).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while worker.events().len() < 6 {
            assert!(tokio::time::Instant::now() < deadline, "{:#?}", worker.events());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let labels: Vec<String> = worker.kinds().iter().map(label).collect();
        assert_eq!(labels, ["qr_updated", "connected", "sent msg_1", "delivered msg_1", "read msg_1", "connected"]);
        let ids: HashSet<String> = worker.events().into_iter().map(|e| e.event_id).collect();
        assert_eq!(ids.len(), 6, "event ids are unique");
        assert_eq!(worker.bad_signatures(), 0);
        // The device came back without pairing again: a reconnect.
        let (_, metrics) = bridge.raw("GET", "/metrics", Auth::None, Vec::new(), None).await;
        let metrics = String::from_utf8(metrics).unwrap();
        assert!(metrics.lines().any(|l| l == "wagate_bridge_reconnects_total 1"), "{metrics}");
    });
}

#[test]
fn sends_interrupted_by_a_crash_are_resolved_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let device = DeviceId::parse("dev_a").unwrap();
    let message = |id: &str| text_message(id, FRIEND);

    process(async {
        let bridge = TestBridge::start(config(dir.path(), DEAD_WORKER)).await;
        bridge.connect("dev_a", PHONE).await;
    });

    // The crash: both sends journaled as pending; msg_out reached the network
    // (the phone has it) but its outcome was never recorded; msg_held never left.
    let out_external_id = process(async {
        let bridge_db =
            Db::open(&dir.path().join("bridge.db"), &format!("{}{}", journal::SCHEMA, outbox::SCHEMA)).unwrap();
        for id in ["msg_out", "msg_held"] {
            journal::claim(&bridge_db.lock(), &device, &message(id), None).unwrap();
        }
        let (sink, mut lost) = EventSink::channel(Arc::default());
        // Receipts must not fire before the crash: their events would be lost with it.
        let before_crash = SimTimings {
            deliver: Duration::from_secs(3600),
            read: Duration::from_secs(3600),
            ..config(dir.path(), DEAD_WORKER).sim
        };
        let sim = SimEngine::open(&dir.path().join("sim.db"), before_crash, sink).unwrap();
        sim.send(&device, &message("msg_out")).await.unwrap();
        match lost.recv().await.unwrap().kind {
            EventKind::MessageSent { external_id, .. } => external_id,
            other => panic!("{other:?}"),
        }
    });

    // Downtime: msg_out's receipts (timed by the restarted bridge's settings) fall due while it is down.
    std::thread::sleep(Duration::from_millis(100));

    process(async {
        let worker = FakeWorker::start(0).await;
        let bridge = TestBridge::start(config(dir.path(), &worker.url)).await;
        for id in ["msg_out", "msg_held"] {
            worker.wait_read(id).await;
        }

        // Each message: one outcome, then its receipts, in order.
        for id in ["msg_out", "msg_held"] {
            let labels: Vec<String> = worker.kinds().iter().map(label).filter(|l| l.ends_with(id)).collect();
            assert_eq!(labels, [format!("sent {id}"), format!("delivered {id}"), format!("read {id}")]);
        }
        let out_sent = EventKind::MessageSent { message_id: "msg_out".into(), external_id: out_external_id.clone() };
        assert!(worker.kinds().contains(&out_sent));

        let inbox = bridge.inbox(FRIEND).await;
        let ids: Vec<&str> = inbox.iter().map(|m| m["message_id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["msg_out", "msg_held"]);
        assert_eq!(inbox[0]["external_id"], out_external_id.as_str());

        // The journal agrees with what the worker was told.
        let body = json!({ "message_id": "msg_out", "to": format!("{FRIEND}@s.whatsapp.net"),
                           "content": { "type": "text", "text": "text of msg_out" } });
        let (status, state) = bridge.signed("POST", "/v1/devices/dev_a/messages", Some(body)).await;
        assert_eq!((status, state), (StatusCode::ACCEPTED, json!({ "state": "sent", "external_id": out_external_id })));
        assert_eq!(bridge.inbox(FRIEND).await.len(), 2);
    });
}
