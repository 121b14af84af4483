//! Media and locations over HTTP: the content-addressed store, sends that refer
//! to it, and what the simulated phones send the devices.

mod common;

use axum::http::StatusCode;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use common::{config, Auth, FakeWorker, TestBridge, DEAD_WORKER};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use wagate_contract::wire::{Content, EventKind, MediaKind, MediaRef, MAX_MEDIA_BYTES};

const PHONE: &str = "6281234567890";
const FRIEND: &str = "14155552671";

async fn bridge(worker_url: &str) -> (TestBridge, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (TestBridge::start(config(dir.path(), worker_url)).await, dir)
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn put(bridge: &TestBridge, sha: &str, bytes: &[u8], content_type: Option<&str>) -> (StatusCode, Value) {
    let (status, body) =
        bridge.raw("PUT", &format!("/v1/media/{sha}"), Auth::signed(), bytes.to_vec(), content_type).await;
    (status, serde_json::from_slice(&body).expect("JSON body"))
}

fn send_media(message_id: &str, kind: &str, sha: &str, mime_type: &str) -> Option<Value> {
    Some(json!({
        "message_id": message_id,
        "to": format!("{FRIEND}@s.whatsapp.net"),
        "content": { "type": "media", "kind": kind, "caption": "for you",
                     "media": { "sha256": sha, "size": 1, "mime_type": mime_type, "file_name": "a.jpg" } },
    }))
}

#[tokio::test]
async fn media_is_stored_under_its_hash_and_read_back() {
    let (bridge, dir) = bridge(DEAD_WORKER).await;
    let bytes = b"\x89PNG\r\n\x1a\n not really a png".to_vec();
    let sha = sha256(&bytes);
    let path = format!("/v1/media/{sha}");

    let (status, body) = bridge.raw("GET", &path, Auth::signed(), Vec::new(), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["code"], "media_not_found");

    for _ in 0..2 {
        let (status, body) = put(&bridge, &sha, &bytes, Some("image/png")).await;
        assert_eq!(status, StatusCode::CREATED);
        let media: MediaRef = serde_json::from_value(body).unwrap();
        assert_eq!(
            media,
            MediaRef { sha256: sha.clone(), size: bytes.len() as u64, mime_type: "image/png".into(), file_name: None }
        );
    }
    assert_eq!(std::fs::read(dir.path().join("media").join(&sha)).unwrap(), bytes);
    assert_eq!(bridge.raw("GET", &path, Auth::signed(), Vec::new(), None).await, (StatusCode::OK, bytes.clone()));

    let (status, body) = put(&bridge, &sha256(b"x"), b"x", None).await;
    assert_eq!((status, body["mime_type"].as_str()), (StatusCode::CREATED, Some("application/octet-stream")));

    // Every media call is signed over its body, like every other worker call.
    let (status, _) = bridge.raw("GET", &path, Auth::None, Vec::new(), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = bridge
        .raw("PUT", &path, Auth::Signed { secret: "nope", ts: common::now_secs(), path: None }, bytes, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn media_that_does_not_match_its_name_or_is_too_big_is_refused() {
    let (bridge, dir) = bridge(DEAD_WORKER).await;
    let claimed = sha256(b"the real file");
    let (status, body) = put(&bridge, &claimed, b"something else", Some("image/png")).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
    assert!(body["message"].as_str().unwrap().contains(&sha256(b"something else")), "{body}");
    assert!(!dir.path().join("media").join(&claimed).exists());

    for (sha, bytes, content_type) in [
        ("ABC", b"x".as_slice(), None),
        (sha256(b"x").to_uppercase().as_str(), b"x", None),
        (sha256(b"").as_str(), b"", None),
        (sha256(b"x").as_str(), b"x", Some("not a mime type")),
    ] {
        let (status, body) = put(&bridge, sha, bytes, content_type).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{sha}");
    }

    let limit = usize::try_from(MAX_MEDIA_BYTES).unwrap();
    let oversized = vec![7u8; limit + 1];
    let (status, body) = put(&bridge, &sha256(&oversized), &oversized, Some("video/mp4")).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("invalid_request")));
    let largest = vec![7u8; limit];
    assert_eq!(put(&bridge, &sha256(&largest), &largest, Some("video/mp4")).await.0, StatusCode::CREATED);

    // The larger limit is for media only.
    let big_json = json!({ "device_id": "dev_a", "padding": "x".repeat(2 << 20) });
    let (status, _) = bridge.signed("POST", "/v1/devices", Some(big_json)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn sent_media_and_locations_arrive_on_the_phone() {
    let worker = FakeWorker::start(0).await;
    let (bridge, _dir) = bridge(&worker.url).await;
    bridge.connect("dev_a", PHONE).await;
    let path = "/v1/devices/dev_a/messages";
    let photo = vec![0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3];
    let sha = sha256(&photo);

    // Media the store does not have is refused before anything is journaled.
    let (status, body) = bridge.signed("POST", path, send_media("msg_photo", "image", &sha, "image/jpeg")).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
    assert!(body["message"].as_str().unwrap().starts_with("media_not_found"), "{body}");

    put(&bridge, &sha, &photo, Some("image/jpeg")).await;
    let (status, body) = bridge.signed("POST", path, send_media("msg_photo", "image", &sha, "image/jpeg")).await;
    assert_eq!((status, body), (StatusCode::ACCEPTED, json!({ "state": "accepted" })));
    let location = json!({ "message_id": "msg_place", "to": format!("{FRIEND}@s.whatsapp.net"),
        "content": { "type": "location", "latitude": -6.1754, "longitude": 106.8272, "name": "Monas",
                     "address": "Gambir, Jakarta" } });
    assert_eq!(bridge.signed("POST", path, Some(location)).await.0, StatusCode::ACCEPTED);
    worker.wait_read("msg_place").await;

    let inbox = bridge.inbox(FRIEND).await;
    assert_eq!(inbox.len(), 2, "{inbox:?}");
    assert_eq!((inbox[0]["type"].as_str(), inbox[0]["from"].as_str()), (Some("image"), Some(PHONE)));
    assert_eq!((&inbox[0]["caption"], &inbox[0]["text"]), (&json!("for you"), &Value::Null));
    assert_eq!(
        inbox[0]["media"],
        json!({ "mime_type": "image/jpeg", "sha256": sha, "size": photo.len(), "file_name": "a.jpg" })
    );
    assert_eq!(inbox[1]["type"], "location");
    assert_eq!(
        inbox[1]["location"],
        json!({ "latitude": -6.1754, "longitude": 106.8272, "name": "Monas", "address": "Gambir, Jakarta" })
    );
    assert_eq!(inbox[1]["media"], Value::Null);

    for bad in [
        send_media("msg_x", "sticker", &sha, "image/webp"),
        send_media("msg_x", "image", &sha, "jpeg"),
        Some(json!({ "message_id": "msg_x", "to": format!("{FRIEND}@s.whatsapp.net"),
                     "content": { "type": "location", "latitude": 91.0, "longitude": 0.0 } })),
        Some(json!({ "message_id": "msg_x", "to": format!("{FRIEND}@s.whatsapp.net"),
                     "content": { "type": "reaction", "target_external_id": "3EB0", "emoji": "👍" } })),
    ] {
        let (status, body) = bridge.signed("POST", path, bad.clone()).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{bad:?}");
    }
}

#[tokio::test]
async fn phones_send_media_locations_and_reactions() {
    let worker = FakeWorker::start(0).await;
    let (bridge, _dir) = bridge(&worker.url).await;
    bridge.connect("dev_a", PHONE).await;
    let voice = b"OggS voice note".to_vec();
    let inbound = |extra: Value| {
        let mut body = json!({ "device_id": "dev_a", "from": FRIEND });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        Some(body)
    };
    let received = |external_id: String| {
        let worker = worker.clone();
        async move {
            let event = worker
                .wait_for(
                    "Inbound",
                    |e| matches!(&e.kind, EventKind::Inbound { external_id: id, .. } if *id == external_id),
                )
                .await;
            match event.kind {
                EventKind::Inbound { from, content, .. } => {
                    assert_eq!(from, format!("{FRIEND}@s.whatsapp.net"));
                    content
                }
                other => unreachable!("{other:?}"),
            }
        }
    };

    let media = json!({ "media": { "mime_type": "audio/ogg; codecs=opus", "data_base64": BASE64.encode(&voice) } });
    let (status, body) = bridge.sim("POST", "/sim/inbound", inbound(media)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let content = received(body["external_id"].as_str().unwrap().to_owned()).await;
    let sha = sha256(&voice);
    assert_eq!(
        content,
        Content::Media {
            kind: MediaKind::Audio,
            media: MediaRef {
                sha256: sha.clone(),
                size: voice.len() as u64,
                mime_type: "audio/ogg; codecs=opus".into(),
                file_name: None
            },
            caption: None,
        }
    );
    // The worker fetches what arrived from the store.
    let fetched = bridge.raw("GET", &format!("/v1/media/{sha}"), Auth::signed(), Vec::new(), None).await;
    assert_eq!(fetched, (StatusCode::OK, voice));

    let document = json!({ "media": { "mime_type": "application/pdf", "data_base64": BASE64.encode(b"%PDF"),
                                      "file_name": "cv.pdf", "caption": "my cv" } });
    let (_, body) = bridge.sim("POST", "/sim/inbound", inbound(document)).await;
    let Content::Media { kind, media, caption } = received(body["external_id"].as_str().unwrap().to_owned()).await
    else {
        panic!("not media")
    };
    assert_eq!(
        (kind, media.file_name.as_deref(), caption.as_deref()),
        (MediaKind::Document, Some("cv.pdf"), Some("my cv"))
    );

    let place = json!({ "location": { "latitude": 1.5, "longitude": -2.25, "name": "Here" } });
    let (_, body) = bridge.sim("POST", "/sim/inbound", inbound(place)).await;
    assert_eq!(
        received(body["external_id"].as_str().unwrap().to_owned()).await,
        Content::Location { latitude: 1.5, longitude: -2.25, name: Some("Here".into()), address: None }
    );

    let reaction = json!({ "reaction": { "external_id": "3EB0AABBCC", "emoji": "❤️" } });
    let (_, body) = bridge.sim("POST", "/sim/inbound", inbound(reaction)).await;
    assert_eq!(
        received(body["external_id"].as_str().unwrap().to_owned()).await,
        Content::Reaction { target_external_id: "3EB0AABBCC".into(), emoji: "❤️".into() }
    );

    for bad in [
        json!({}),
        json!({ "text": "hi", "location": { "latitude": 0.0, "longitude": 0.0 } }),
        json!({ "media": { "mime_type": "image/png", "data_base64": "%%%" } }),
        json!({ "media": { "mime_type": "image/png", "data_base64": "" } }),
        json!({ "media": { "mime_type": "png", "data_base64": "AAAA" } }),
        json!({ "location": { "latitude": 0.0, "longitude": 181.0 } }),
        json!({ "reaction": { "external_id": " ", "emoji": "👍" } }),
    ] {
        let (status, body) = bridge.sim("POST", "/sim/inbound", inbound(bad.clone())).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{bad}");
    }
}
