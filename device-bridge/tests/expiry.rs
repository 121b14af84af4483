//! A one-time code is never handed to the engine after its expiry: neither when
//! the worker's request arrives late nor when it waited at the bridge for its
//! device. Either way it ends failed with `expired`, once, and a retry answers the same.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::{config, process, text_message, FakeWorker, TestBridge, DEAD_WORKER};
use serde_json::{json, Value};
use wagate_bridge::clock::now_ms;
use wagate_bridge::db::Db;
use wagate_bridge::ids::DeviceId;
use wagate_bridge::{journal, outbox};
use wagate_contract::wire::EventKind;

const PHONE: &str = "6281234567890";
const FRIEND: &str = "14155552671";
const SEND: &str = "/v1/devices/dev_a/messages";

fn otp(message_id: &str, expires_at_ms: u64) -> Value {
    json!({ "message_id": message_id, "to": format!("{FRIEND}@s.whatsapp.net"),
            "content": { "type": "text", "text": "Your code is 123456" },
            "sensitive": true, "expires_at_ms": expires_at_ms })
}

fn expired() -> Value {
    json!({ "state": "failed", "code": "expired",
            "reason": "the one-time code expired before the bridge could hand it to WhatsApp" })
}

/// The `MessageFailed` codes the worker heard for `message_id`.
fn failures(worker: &FakeWorker, message_id: &str) -> Vec<String> {
    worker
        .kinds()
        .into_iter()
        .filter_map(|kind| match kind {
            EventKind::MessageFailed { message_id: id, code, .. } if id == message_id => Some(code),
            _ => None,
        })
        .collect()
}

fn inbox_ids(inbox: &[Value]) -> Vec<String> {
    inbox.iter().map(|m| m["message_id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_code_that_arrives_expired_fails_expired_and_a_retry_answers_the_same() {
    let worker = FakeWorker::start(0).await;
    let dir = tempfile::tempdir().unwrap();
    let bridge = TestBridge::start(config(dir.path(), &worker.url)).await;
    bridge.connect("dev_a", PHONE).await;

    let late = otp("msg_late", now_ms() - 1);
    for _ in 0..2 {
        assert_eq!(bridge.signed("POST", SEND, Some(late.clone())).await, (StatusCode::ACCEPTED, expired()));
    }
    // A code still valid goes out as before.
    let (status, state) = bridge.signed("POST", SEND, Some(otp("msg_valid", now_ms() + 60_000))).await;
    assert_eq!((status, state), (StatusCode::ACCEPTED, json!({ "state": "accepted" })));

    worker.wait_sent("msg_valid").await;
    worker.wait_failed("msg_late").await;
    assert_eq!(failures(&worker, "msg_late"), ["expired"]);
    assert_eq!(inbox_ids(&bridge.inbox(FRIEND).await), ["msg_valid"]);
    bridge.stop().await;
}

#[test]
fn a_code_that_expires_while_waiting_for_its_device_never_reaches_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let device = DeviceId::parse("dev_a").unwrap();
    let message = |id: &str| text_message(id, FRIEND);

    // The device is linked, then unlinked from the phone: it is gone when the bridge comes back.
    process(async {
        let bridge = TestBridge::start(config(dir.path(), DEAD_WORKER)).await;
        bridge.connect("dev_a", PHONE).await;
        assert_eq!(bridge.sim("POST", "/sim/devices/dev_a/disconnect", None).await.0, StatusCode::OK);
        bridge.stop().await;
    });

    // The crash left three sends accepted but not yet handed to the engine: two codes
    // valid for a moment longer, and a plain message that does not expire.
    let expires_at_ms = now_ms() + 500;
    {
        let bridge_db =
            Db::open(&dir.path().join("bridge.db"), &format!("{}{}", journal::SCHEMA, outbox::SCHEMA)).unwrap();
        for (id, expiry) in
            [("msg_retried", Some(expires_at_ms)), ("msg_waits", Some(expires_at_ms)), ("msg_plain", None)]
        {
            journal::claim(&bridge_db.lock(), &device, &message(id), expiry).unwrap();
        }
    }

    process(async {
        let worker = FakeWorker::start(0).await;
        let bridge = TestBridge::start(config(dir.path(), &worker.url)).await;
        // Still valid, but the device is offline: the worker's retry is told it was accepted.
        let (status, state) = bridge.signed("POST", SEND, Some(otp("msg_retried", expires_at_ms))).await;
        assert_eq!((status, state), (StatusCode::ACCEPTED, json!({ "state": "accepted" })));

        tokio::time::sleep(Duration::from_millis(expires_at_ms.saturating_sub(now_ms()) + 50)).await;
        // The worker's retry after the expiry ends the one it names, device offline or not.
        assert_eq!(
            bridge.signed("POST", SEND, Some(otp("msg_retried", expires_at_ms))).await,
            (StatusCode::ACCEPTED, expired())
        );

        // The device comes back: what expired meanwhile fails, the rest goes out.
        bridge.connect("dev_a", PHONE).await;
        worker.wait_sent("msg_plain").await;
        worker.wait_failed("msg_waits").await;
        for id in ["msg_retried", "msg_waits"] {
            assert_eq!(
                bridge.signed("POST", SEND, Some(otp(id, expires_at_ms))).await,
                (StatusCode::ACCEPTED, expired())
            );
        }
        // Give a stray second outcome time to show up before counting.
        tokio::time::sleep(Duration::from_millis(100)).await;
        for id in ["msg_retried", "msg_waits"] {
            assert_eq!(failures(&worker, id), ["expired"], "{id}: exactly one failure");
        }
        assert_eq!(inbox_ids(&bridge.inbox(FRIEND).await), ["msg_plain"]);
        bridge.stop().await;
    });
}
