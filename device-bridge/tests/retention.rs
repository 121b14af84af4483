//! Nothing kept longer than it must be: the journal's recipients and contents
//! are blanked once a send is resolved (a one-time code's once the engine has
//! it), and `RETENTION_DAYS` prunes resolved tombstones, dead letters and media
//! nothing refers to, while exactly-once holds for as long as a tombstone does.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::http::StatusCode;
use common::{config, FakeWorker, TestBridge};
use rusqlite::Connection;
use serde_json::json;
use wagate_bridge::db::Db;
use wagate_bridge::engine::{EngineEvent, OutgoingMessage, Payload};
use wagate_bridge::ids::{DeviceId, MessageId};
use wagate_bridge::jid::Jid;
use wagate_bridge::journal::{self, Claim};
use wagate_bridge::media::{MediaStore, Sha256Hex};
use wagate_bridge::outbox::{self, Outbox};
use wagate_bridge::retention::{sweep, Swept};
use wagate_contract::wire::{EventKind, SendResponse};

const PHONE: &str = "6281234567890";
const FRIEND: &str = "14155552671";
const DAY: Duration = Duration::from_secs(86_400);

/// The journal row of a message as it is on disk: (state, recipient, content).
fn row(dir: &std::path::Path, message_id: &str) -> (String, String, String) {
    let conn = Connection::open(dir.join("bridge.db")).unwrap();
    conn.query_row("SELECT state, recipient, content FROM journal WHERE message_id = ?1", [message_id], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
    .unwrap()
}

fn text(message_id: &str, text: &str, sensitive: bool) -> Option<serde_json::Value> {
    Some(json!({ "message_id": message_id, "to": format!("{FRIEND}@s.whatsapp.net"),
                 "content": { "type": "text", "text": text }, "sensitive": sensitive }))
}

#[tokio::test]
async fn resolved_sends_keep_neither_recipient_nor_content_and_a_repeat_still_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let worker = FakeWorker::start(0).await;
    let bridge = TestBridge::start(config(dir.path(), &worker.url)).await;
    bridge.connect("dev_a", PHONE).await;

    for (id, body, sensitive) in [("msg_plain", "hello there", false), ("msg_otp", "Your code is 493817", true)] {
        let (status, _) = bridge.signed("POST", "/v1/devices/dev_a/messages", text(id, body, sensitive)).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        worker.wait_sent(id).await;
    }
    for id in ["msg_plain", "msg_otp"] {
        let (state, recipient, content) = row(dir.path(), id);
        assert_eq!((state.as_str(), recipient.as_str(), content.as_str()), ("sent", "", ""), "{id}");
    }

    // The tombstone still answers a repeated id: nothing is sent twice.
    let (status, state) = bridge.signed("POST", "/v1/devices/dev_a/messages", text("msg_otp", "again", true)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(state["state"], "sent");
    assert_eq!(bridge.inbox(FRIEND).await.len(), 2);
    bridge.stop().await;
}

#[tokio::test]
async fn a_one_time_code_interrupted_after_the_hand_over_is_failed_not_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let device = DeviceId::parse("dev_a").unwrap();
    let otp = OutgoingMessage {
        message_id: MessageId::parse("msg_otp").unwrap(),
        to: Jid::parse(&format!("{FRIEND}@s.whatsapp.net")).unwrap(),
        payload: Payload::Text { text: "Your code is 493817".into() },
    };
    {
        let bridge = TestBridge::start(config(dir.path(), common::DEAD_WORKER)).await;
        bridge.connect("dev_a", PHONE).await;
        bridge.stop().await;
    }
    // The crash: the engine had the code (its content already withheld), its outcome was never stored.
    {
        let db = Db::open(&dir.path().join("bridge.db"), &format!("{}{}", journal::SCHEMA, outbox::SCHEMA)).unwrap();
        assert_eq!(journal::claim(&db.lock(), &device, &otp, None).unwrap(), Claim::New);
        journal::withhold(&db.lock(), &otp.message_id).unwrap();
        assert!(journal::pending(&db.lock()).unwrap().is_empty(), "nothing left to send again");
    }
    let worker = FakeWorker::start(0).await;
    let bridge = TestBridge::start(config(dir.path(), &worker.url)).await;
    let failed = worker.wait_failed("msg_otp").await;
    assert!(matches!(failed.kind, EventKind::MessageFailed { code, .. } if code == "outcome_unknown"));
    assert!(bridge.inbox(FRIEND).await.is_empty(), "not sent again");
    assert_eq!(row(dir.path(), "msg_otp").0, "failed");
    bridge.stop().await;
}

#[tokio::test]
async fn retention_prunes_what_is_settled_and_keeps_what_is_pending_or_referenced() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("bridge.db"), &format!("{}{}", journal::SCHEMA, outbox::SCHEMA)).unwrap();
    let outbox = Outbox::new(db.clone(), Arc::default()).unwrap();
    let media = MediaStore::open(dir.path().join("media")).unwrap();
    let device = DeviceId::parse("dev_a").unwrap();

    let kept_file = media.put(Bytes::from_static(b"still to send"), None).await.unwrap();
    let loose_file = media.put(Bytes::from_static(b"sent long ago"), None).await.unwrap();
    let send = |id: &str, payload: Payload| OutgoingMessage {
        message_id: MessageId::parse(id).unwrap(),
        to: Jid::parse(&format!("{FRIEND}@s.whatsapp.net")).unwrap(),
        payload,
    };
    let pending_media = Payload::resolve(
        &wagate_contract::wire::Content::Media {
            kind: wagate_contract::wire::MediaKind::Image,
            media: wagate_contract::wire::MediaRef {
                sha256: kept_file.sha256().to_string(),
                size: kept_file.size(),
                mime_type: "image/png".into(),
                file_name: None,
            },
            caption: None,
        },
        &media,
    )
    .unwrap();
    journal::claim(&db.lock(), &device, &send("msg_pending", pending_media), None).unwrap();
    journal::claim(&db.lock(), &device, &send("msg_done", Payload::Text { text: "done".into() }), None).unwrap();
    let sent = EventKind::MessageSent { message_id: "msg_done".into(), external_id: "3EB0DONE".into() };
    outbox.record(&EngineEvent::now(&device, sent)).unwrap();

    // Nothing is old yet.
    let now = SystemTime::now();
    assert_eq!(sweep(&db, &outbox, &media, now, 30 * DAY).unwrap(), Swept::default());
    assert!(matches!(
        journal::claim(&db.lock(), &device, &send("msg_done", Payload::Text { text: "again".into() }), None).unwrap(),
        Claim::Existing(SendResponse::Sent { .. })
    ));

    // 31 days on: the resolved tombstone and the loose file go; the pending send and its file stay.
    let later = now + 31 * DAY;
    let swept = sweep(&db, &outbox, &media, later, 30 * DAY).unwrap();
    assert_eq!(swept, Swept { journal: 1, dead_letters: 0, media: 1 });
    assert_eq!(journal::state(&db.lock(), &MessageId::parse("msg_done").unwrap()).unwrap(), None);
    assert_eq!(journal::pending(&db.lock()).unwrap().len(), 1);
    assert!(media.find(kept_file.sha256()).unwrap().is_some());
    assert!(media.find(loose_file.sha256()).unwrap().is_none());

    // A file stored again is fresh again: an upload for a new send is not pruned under it.
    let old = media.put(Bytes::from_static(b"sent long ago"), None).await.unwrap();
    let path = dir.path().join("media").join(old.sha256().as_str());
    std::fs::File::options().write(true).open(&path).unwrap().set_modified(now - 40 * DAY).unwrap();
    let again = media.put(Bytes::from_static(b"sent long ago"), None).await.unwrap();
    assert_eq!(again.sha256(), &Sha256Hex::of(b"sent long ago"));
    assert_eq!(sweep(&db, &outbox, &media, SystemTime::now(), 30 * DAY).unwrap().media, 0);
    assert!(media.find(again.sha256()).unwrap().is_some());
}
