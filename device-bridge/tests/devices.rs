//! The device lifecycle over HTTP: pairing by QR and by code, refreshing a QR,
//! linking again after an unlink, and number checks.

mod common;

use axum::http::StatusCode;
use common::{config, FakeWorker, TestBridge, DEAD_WORKER};
use serde_json::{json, Value};
use wagate_contract::wire::EventKind;

const PHONE: &str = "6281234567890";

async fn bridge(worker_url: &str) -> (TestBridge, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (TestBridge::start(config(dir.path(), worker_url)).await, dir)
}

async fn link(bridge: &TestBridge, body: Value) -> (StatusCode, Value) {
    bridge.signed("POST", "/v1/devices", Some(body)).await
}

#[tokio::test]
async fn linking_again_refreshes_the_qr_until_scanned_then_reports_the_phone() {
    let (bridge, _dir) = bridge(DEAD_WORKER).await;
    let (status, first) = link(&bridge, json!({ "device_id": "dev_a" })).await;
    assert_eq!(status, StatusCode::OK);
    let qr = first["qr"].as_str().expect("a QR while pairing");
    assert!(qr.starts_with("2@"), "{qr}");
    assert_eq!((&first["phone"], &first["pair_code"]), (&Value::Null, &Value::Null));

    let (status, again) = link(&bridge, json!({ "device_id": "dev_a" })).await;
    assert_eq!(status, StatusCode::OK);
    assert!(again["qr"].as_str().is_some_and(|again| again != qr), "a refresh gives a new QR: {again}");

    bridge.sim("POST", "/sim/devices/dev_a/scan", Some(json!({ "phone": PHONE }))).await;
    assert_eq!(
        link(&bridge, json!({ "device_id": "dev_a" })).await,
        (StatusCode::OK, json!({ "qr": null, "pair_code": null, "phone": PHONE }))
    );

    for bad in [
        json!({ "device_id": "dev a" }),
        json!({ "device": "dev_a" }),
        json!([]),
        json!({ "device_id": "dev_b", "pair_phone": "+6281234567890" }),
        json!({ "device_id": "dev_b", "pair_phone": "123456" }),
        json!({ "device_id": "dev_b", "pair_phone": 6281234567890u64 }),
    ] {
        let (status, body) = link(&bridge, bad.clone()).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{bad}");
    }
}

#[tokio::test]
async fn an_unlinked_device_pairs_afresh_when_linked_again() {
    let worker = FakeWorker::start(0).await;
    let (bridge, _dir) = bridge(&worker.url).await;
    bridge.connect("dev_a", PHONE).await;
    let (_, before) = link(&bridge, json!({ "device_id": "dev_a" })).await;
    assert_eq!(before["phone"], PHONE);

    assert_eq!(bridge.sim("POST", "/sim/devices/dev_a/disconnect", None).await.0, StatusCode::OK);
    let (status, after) = link(&bridge, json!({ "device_id": "dev_a" })).await;
    assert_eq!(status, StatusCode::OK);
    let qr = after["qr"].as_str().expect("a fresh QR").to_owned();
    assert_eq!(after["phone"], Value::Null);
    worker.wait_for("the new QR", |e| e.kind == EventKind::QrUpdated { qr: qr.clone() }).await;

    let other_phone = "14155552671";
    let (status, body) = bridge.sim("POST", "/sim/devices/dev_a/scan", Some(json!({ "phone": other_phone }))).await;
    assert_eq!((status, body["phone"].as_str()), (StatusCode::OK, Some(other_phone)));
}

#[tokio::test]
async fn a_pairing_code_typed_on_the_phone_links_the_device() {
    let worker = FakeWorker::start(0).await;
    let (bridge, _dir) = bridge(&worker.url).await;
    let (status, linked) = link(&bridge, json!({ "device_id": "dev_a", "pair_phone": PHONE })).await;
    assert_eq!(status, StatusCode::OK);
    assert!(linked["qr"].is_string());
    let code = linked["pair_code"].as_str().expect("a pairing code").to_owned();
    assert!(code.len() == 9 && code.as_bytes()[4] == b'-', "{code}");
    let event = worker.wait_for("PairCode", |e| matches!(e.kind, EventKind::PairCode { .. })).await;
    assert_eq!(event.kind, EventKind::PairCode { code: code.clone() });
    assert_eq!(event.device_id, "dev_a");

    let pair = |code: &str| Some(json!({ "code": code }));
    let wrong = if code.starts_with('A') { "BBBB-BBBB" } else { "AAAA-AAAA" };
    for (path, body, expected) in [
        ("/sim/devices/dev_a/pair", pair(wrong), (StatusCode::BAD_REQUEST, "wrong_pair_code")),
        ("/sim/devices/dev_a/pair", pair("not-a-code"), (StatusCode::BAD_REQUEST, "invalid_request")),
        ("/sim/devices/dev_nobody/pair", pair(&code), (StatusCode::NOT_FOUND, "device_not_found")),
    ] {
        let (status, body) = bridge.sim("POST", path, body).await;
        assert_eq!((status, body["code"].as_str().unwrap()), expected, "{path} {body}");
    }

    let (status, body) = bridge.sim("POST", "/sim/devices/dev_a/pair", pair(&code.replace('-', ""))).await;
    assert_eq!((status, body["phone"].as_str()), (StatusCode::OK, Some(PHONE)), "{body}");
    let event = worker.wait_for("Connected", |e| matches!(e.kind, EventKind::Connected { .. })).await;
    assert_eq!(event.kind, EventKind::Connected { phone: PHONE.into() });
    let (status, body) = bridge.sim("POST", "/sim/devices/dev_a/pair", pair(&code)).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("not_waiting_for_scan")));

    // A device paired by QR has no code to type.
    link(&bridge, json!({ "device_id": "dev_b" })).await;
    let (status, body) = bridge.sim("POST", "/sim/devices/dev_b/pair", pair(&code)).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("no_pair_code")));
}

#[tokio::test]
async fn check_reports_which_numbers_are_on_whatsapp() {
    let (bridge, _dir) = bridge(DEAD_WORKER).await;
    let check = |phones: Value| Some(json!({ "phones": phones }));
    let path = "/v1/devices/dev_a/check";

    let (status, body) = bridge.signed("POST", path, check(json!(["14155552671"]))).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("device_not_found")));
    link(&bridge, json!({ "device_id": "dev_a" })).await;
    let (status, body) = bridge.signed("POST", path, check(json!(["14155552671"]))).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("device_offline")));

    bridge.sim("POST", "/sim/devices/dev_a/scan", Some(json!({ "phone": PHONE }))).await;
    let (status, body) = bridge.signed("POST", path, check(json!(["14155552671", "9990001112"]))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({ "results": [
            { "phone": "14155552671", "exists": true, "jid": "14155552671@s.whatsapp.net" },
            { "phone": "9990001112", "exists": false, "jid": null },
        ] })
    );

    let too_many: Vec<String> = (0..101).map(|i| format!("62812000{i:05}")).collect();
    for bad in [check(json!([])), check(json!(["+14155552671"])), check(json!(too_many)), Some(json!({}))] {
        let (status, body) = bridge.signed("POST", path, bad.clone()).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{bad:?}");
    }
    let (status, _) = bridge.call("POST", path, common::Auth::None, check(json!(["14155552671"]))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
