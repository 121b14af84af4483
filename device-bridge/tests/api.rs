//! The worker API and the simulator's control API, driven over real HTTP.

mod common;

use axum::http::StatusCode;
use common::{config, now_secs, Auth, FakeWorker, TestBridge, DEAD_WORKER, SECRET};
use serde_json::{json, Value};
use wagate_contract::wire::EventKind;

const PHONE: &str = "6281234567890";
const FRIEND: &str = "14155552671";

fn send_body(message_id: &str, to: &str) -> Option<Value> {
    Some(json!({ "message_id": message_id, "to": to, "content": { "type": "text", "text": "halo" } }))
}

fn jid(number: &str) -> String {
    format!("{number}@s.whatsapp.net")
}

async fn bridge(worker_url: &str) -> (TestBridge, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (TestBridge::start(config(dir.path(), worker_url)).await, dir)
}

#[tokio::test]
async fn healthz_needs_no_signature() {
    let (bridge, _dir) = bridge(DEAD_WORKER).await;
    assert_eq!(bridge.call("GET", "/healthz", Auth::None, None).await, (StatusCode::OK, json!({ "status": "ok" })));
}

#[tokio::test]
async fn worker_calls_must_be_signed_over_method_path_query_and_body() {
    let (bridge, _dir) = bridge(DEAD_WORKER).await;
    let link = Some(json!({ "device_id": "dev_a" }));
    let now = now_secs();
    let refused = [
        Auth::None,
        Auth::Signed { secret: "not-the-secret", ts: now, path: None },
        Auth::Signed { secret: SECRET, ts: now - 301, path: None },
        Auth::Signed { secret: SECRET, ts: now, path: Some("/v1/devices?x=1") },
        Auth::Bearer(SECRET),
    ];
    for auth in refused {
        let (status, body) = bridge.call("POST", "/v1/devices", auth, link.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["code"], "unauthorized");
        assert!(body["message"].is_string());
    }
    // The query string is part of what is signed, exactly as sent.
    let (status, _) = bridge.call("POST", "/v1/devices?x=1", Auth::signed(), link.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = bridge
        .call("POST", "/v1/devices?x=2", Auth::Signed { secret: SECRET, ts: now, path: Some("/v1/devices?x=1") }, link)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Unknown routes are 404 whether signed or not; errors are always BridgeError JSON.
    let (status, body) = bridge.call("GET", "/v2/nothing", Auth::None, None).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (status, body) = bridge.signed("GET", "/v1/devices", None).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed")));
}

#[tokio::test]
async fn a_message_id_is_sent_exactly_once() {
    let worker = FakeWorker::start(0).await;
    let (bridge, _dir) = bridge(&worker.url).await;
    bridge.connect("dev_a", PHONE).await;
    let path = "/v1/devices/dev_a/messages";

    // Concurrent duplicates: one send, every caller told it is accepted (or already sent).
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let client = bridge.client.clone();
        attempts.spawn(async move { client.signed("POST", path, send_body("msg_1", &jid(FRIEND))).await });
    }
    for (status, body) in attempts.join_all().await {
        assert_eq!(status, StatusCode::ACCEPTED);
        assert!(matches!(body["state"].as_str(), Some("accepted" | "sent")), "{body}");
    }
    let sent = worker.wait_sent("msg_1").await;
    let EventKind::MessageSent { external_id, .. } = sent.kind else { unreachable!() };
    assert_eq!(sent.device_id, "dev_a");

    let (status, body) = bridge.signed("POST", path, send_body("msg_1", &jid(FRIEND))).await;
    assert_eq!((status, body), (StatusCode::ACCEPTED, json!({ "state": "sent", "external_id": external_id })));

    worker.wait_read("msg_1").await;
    let for_msg_1: Vec<EventKind> = worker
        .kinds()
        .into_iter()
        .filter(|k| {
            matches!(
                k,
                EventKind::MessageSent { .. } | EventKind::MessageDelivered { .. } | EventKind::MessageRead { .. }
            )
        })
        .collect();
    assert_eq!(
        for_msg_1,
        [
            EventKind::MessageSent { message_id: "msg_1".into(), external_id: external_id.clone() },
            EventKind::MessageDelivered { message_id: "msg_1".into() },
            EventKind::MessageRead { message_id: "msg_1".into() },
        ]
    );

    let inbox = bridge.inbox(FRIEND).await;
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert_eq!(inbox[0]["message_id"], "msg_1");
    assert_eq!(inbox[0]["external_id"], external_id.as_str());
    assert_eq!(inbox[0]["from"], PHONE);
    assert_eq!(inbox[0]["type"], "text");
    assert_eq!(inbox[0]["text"], "halo");
    for absent in ["caption", "media", "location"] {
        assert_eq!(inbox[0][absent], Value::Null, "{absent}");
    }
}

#[tokio::test]
async fn failed_sends_are_journaled_with_their_reason() {
    let worker = FakeWorker::start(0).await;
    let (bridge, _dir) = bridge(&worker.url).await;
    bridge.connect("dev_a", PHONE).await;
    let path = "/v1/devices/dev_a/messages";
    let (status, body) = bridge.signed("POST", path, send_body("msg_x", &jid("9990001112"))).await;
    assert_eq!((status, body["state"].as_str()), (StatusCode::ACCEPTED, Some("accepted")));
    worker.wait_for("MessageFailed", |e| matches!(&e.kind, EventKind::MessageFailed { .. })).await;

    let (status, body) = bridge.signed("POST", path, send_body("msg_x", &jid("9990001112"))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["state"], "failed");
    assert_eq!(body["code"], "not_on_whatsapp");
    assert!(bridge.inbox("9990001112").await.is_empty());
}

#[tokio::test]
async fn sends_are_refused_without_journaling_when_they_cannot_go_out() {
    let (bridge, _dir) = bridge(DEAD_WORKER).await;
    let path = "/v1/devices/dev_a/messages";

    let (status, body) = bridge.signed("POST", path, send_body("msg_1", &jid(FRIEND))).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("device_not_found")));

    bridge.signed("POST", "/v1/devices", Some(json!({ "device_id": "dev_a" }))).await;
    let (status, body) = bridge.signed("POST", path, send_body("msg_1", &jid(FRIEND))).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("device_offline")));

    for bad in [
        send_body("msg_1", FRIEND),
        send_body("msg_1", "14155552671@c.us"),
        send_body("msg 1", &jid(FRIEND)),
        Some(json!({ "message_id": "msg_1", "to": jid(FRIEND), "content": { "type": "text", "text": "" } })),
        Some(json!({ "message_id": "msg_1", "to": jid(FRIEND), "content": { "type": "sticker" } })),
        Some(json!("not an object")),
    ] {
        let (status, body) = bridge.signed("POST", path, bad.clone()).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{bad:?}");
    }

    // Nothing was journaled: once the device is connected the same id goes out.
    bridge.sim("POST", "/sim/devices/dev_a/scan", Some(json!({ "phone": PHONE }))).await;
    let (status, body) = bridge.signed("POST", path, send_body("msg_1", &jid(FRIEND))).await;
    assert_eq!((status, body), (StatusCode::ACCEPTED, json!({ "state": "accepted" })));
    assert_eq!(bridge.inbox(FRIEND).await.len(), 1);
}

#[tokio::test]
async fn logout_forgets_the_device() {
    let (bridge, _dir) = bridge(DEAD_WORKER).await;
    let (status, body) = bridge.signed("DELETE", "/v1/devices/dev_a", None).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("device_not_found")));

    bridge.connect("dev_a", PHONE).await;
    assert_eq!(bridge.signed("DELETE", "/v1/devices/dev_a", None).await, (StatusCode::NO_CONTENT, Value::Null));
    let (status, _) = bridge.signed("POST", "/v1/devices/dev_a/messages", send_body("msg_1", &jid(FRIEND))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = bridge.signed("POST", "/v1/devices", Some(json!({ "device_id": "dev_a" }))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["qr"].is_string(), "a fresh pairing: {body}");
}

#[tokio::test]
async fn sim_control_api_plays_the_phones() {
    let worker = FakeWorker::start(0).await;
    let (bridge, _dir) = bridge(&worker.url).await;

    for auth in [Auth::None, Auth::Bearer("wrong"), Auth::signed()] {
        let (status, body) = bridge.call("GET", "/sim/phones/14155552671/messages", auth, None).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    }

    let scan = |phone: &str| Some(json!({ "phone": phone }));
    let (status, body) = bridge.sim("POST", "/sim/devices/dev_a/scan", scan(PHONE)).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("device_not_found")));
    bridge.signed("POST", "/v1/devices", Some(json!({ "device_id": "dev_a" }))).await;
    for bad in ["123456", "1234567890123456", "+6281234567890", "62812345678a"] {
        let (status, _) = bridge.sim("POST", "/sim/devices/dev_a/scan", scan(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (status, body) = bridge.sim("POST", "/sim/devices/dev_a/disconnect", None).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("device_offline")));
    let inbound = Some(json!({ "device_id": "dev_a", "from": FRIEND, "text": "hi" }));
    assert_eq!(bridge.sim("POST", "/sim/inbound", inbound.clone()).await.0, StatusCode::CONFLICT);

    let (status, body) = bridge.sim("POST", "/sim/devices/dev_a/scan", scan(PHONE)).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("connected")));
    let (status, _) = bridge.sim("POST", "/sim/devices/dev_a/scan", scan(PHONE)).await;
    assert_eq!(status, StatusCode::CONFLICT);

    let (status, body) = bridge.sim("POST", "/sim/inbound", inbound.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let external_id = body["external_id"].as_str().unwrap().to_owned();
    let event = worker.wait_for("Inbound", |e| matches!(e.kind, EventKind::Inbound { .. })).await;
    assert_eq!(
        event.kind,
        EventKind::Inbound {
            external_id,
            from: jid(FRIEND),
            push_name: None,
            content: wagate_contract::wire::Content::Text { text: "hi".into() },
            participant: None,
        }
    );
    let bad_inbound = Some(json!({ "device_id": "dev_a", "from": "14155552671@s.whatsapp.net", "text": "hi" }));
    assert_eq!(bridge.sim("POST", "/sim/inbound", bad_inbound).await.0, StatusCode::BAD_REQUEST);

    // A group message, as CONTRACT.md has the simulator take it: the group and its author.
    let group = |participant: Value| {
        Some(
            json!({ "device_id": "dev_a", "from": "120363025246125486@g.us", "participant": participant, "text": "hi all" }),
        )
    };
    let (status, body) = bridge.sim("POST", "/sim/inbound", group(json!("447911123456"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let external_id = body["external_id"].as_str().unwrap().to_owned();
    let event = worker
        .wait_for(
            "group Inbound",
            |e| matches!(&e.kind, EventKind::Inbound { external_id: id, .. } if *id == external_id),
        )
        .await;
    let EventKind::Inbound { from, participant, .. } = event.kind else { unreachable!() };
    assert_eq!(
        (from.as_str(), participant.as_deref()),
        ("120363025246125486@g.us", Some("447911123456@s.whatsapp.net"))
    );
    for bad in [json!(null), json!("12"), json!("120363025246125486@g.us"), json!(5)] {
        assert_eq!(bridge.sim("POST", "/sim/inbound", group(bad.clone())).await.0, StatusCode::BAD_REQUEST, "{bad}");
    }
    let direct_with_author =
        Some(json!({ "device_id": "dev_a", "from": FRIEND, "participant": "447911123456", "text": "hi" }));
    assert_eq!(bridge.sim("POST", "/sim/inbound", direct_with_author).await.0, StatusCode::BAD_REQUEST);

    assert_eq!(bridge.sim("POST", "/sim/devices/dev_a/disconnect", None).await.0, StatusCode::OK);
    let event = worker.wait_for("Disconnected", |e| matches!(e.kind, EventKind::Disconnected { .. })).await;
    assert_eq!(event.kind, EventKind::Disconnected { reason: "unlinked from phone".into(), logged_out: true });
    let (status, body) = bridge.signed("POST", "/v1/devices/dev_a/messages", send_body("msg_1", &jid(FRIEND))).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("device_offline")));

    assert_eq!(bridge.sim("GET", "/sim/phones/not-a-phone/messages", None).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(bridge.inbox("120363025246125486").await, Vec::<Value>::new());

    let kinds: Vec<&str> = worker
        .events()
        .iter()
        .map(|e| match e.kind {
            EventKind::QrUpdated { .. } => "qr_updated",
            EventKind::Connected { .. } => "connected",
            EventKind::Inbound { .. } => "inbound",
            EventKind::Disconnected { .. } => "disconnected",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["qr_updated", "connected", "inbound", "inbound", "disconnected"]);
}

#[tokio::test]
async fn metrics_need_no_signature_and_follow_sends() {
    let worker = FakeWorker::start(0).await;
    let (bridge, _dir) = bridge(&worker.url).await;
    bridge.connect("dev_a", PHONE).await;
    bridge.signed("POST", "/v1/devices", Some(json!({ "device_id": "dev_b" }))).await;
    let path = "/v1/devices/dev_a/messages";
    bridge.signed("POST", path, send_body("msg_1", &jid(FRIEND))).await;
    bridge.signed("POST", path, send_body("msg_2", &jid("9990001112"))).await;
    worker.wait_for("MessageRead", |e| matches!(e.kind, EventKind::MessageRead { .. })).await;

    let (status, body) = bridge.raw("GET", "/metrics", Auth::None, Vec::new(), None).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    for line in [
        "wagate_bridge_sends_total 2",
        "wagate_bridge_send_failures_total{code=\"not_on_whatsapp\"} 1",
        "wagate_bridge_devices{state=\"connected\"} 1",
        "wagate_bridge_devices{state=\"pairing\"} 1",
        "wagate_bridge_devices{state=\"disconnected\"} 0",
        "wagate_bridge_journal_pending 0",
        "wagate_bridge_reconnects_total 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    let posted = |text: &str| -> u64 {
        let line = text.lines().find(|l| l.starts_with("wagate_bridge_events_posted_total ")).expect("events posted");
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(posted(&text) >= 5, "{text}");
    assert!(text.lines().any(|l| l.starts_with("wagate_bridge_outbox_depth ")), "{text}");
}
