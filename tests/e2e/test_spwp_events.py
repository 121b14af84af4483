"""SPWP's view of what a number received: an inbound message's id (from its MESSAGE_RECEIVED
webhook) is looked up like a sent one, by the app that received it only."""

import base64
import hashlib
import json

from conftest import eventually, fresh_phone


def received(receiver, path):
    return [json.loads(r["body"])["data"] for r in receiver.delivered(path) if r["headers"].get("x-wa-event") == "MESSAGE_RECEIVED"]


def test_an_inbound_message_is_looked_up_by_its_app_only(stack, new_tenant, receiver):
    tenant, other = new_tenant(), new_tenant()
    tenant.post("/api/v1/webhooks", {"url": receiver.url("/spwp"), "format": "spwp", "events": ["MESSAGE_RECEIVED"]})
    device = tenant.link_device(fresh_phone("62838"))
    group = fresh_phone("120363")
    photo = bytes.fromhex("ffd8ffe000104a46494600") + b"wagate looked-up photo" * 20
    media = {"mime_type": "image/jpeg", "data_base64": base64.b64encode(photo).decode(), "file_name": "p.jpg"}
    stack.sim("POST", "/sim/inbound", {"device_id": device, "from": "9647507644809", "text": "Hi there!"})
    stack.sim("POST", "/sim/inbound", {"device_id": device, "from": f"{group}@g.us", "participant": "447911123456", "text": "hi all"})
    stack.sim("POST", "/sim/inbound", {"device_id": device, "from": "9647507644809", "media": media})
    events = eventually(lambda: len(received(receiver, "/spwp")) == 3 and received(receiver, "/spwp"))

    for event in events:
        r = tenant.get(f"/api/v1/public/messages/{event['id']}")
        assert r.status_code == 200, r.text
        shown = r.json()["data"]
        assert (shown["direction"], shown["status"], shown["accountId"]) == ("IN", "RECEIVED", device)
        for field in ("id", "type", "remoteJid", "externalId"):
            assert shown[field] == event[field], field
        assert shown["createdAt"].endswith("Z") and "sentAt" not in shown and "deliveredAt" not in shown
        # The webhook's payload is the lookup's, plus the file's link.
        assert {k: v for k, v in event["payload"].items() if k != "mediaUrl"} == shown["payload"]
    text = next(e for e in events if e["payload"] == {"text": "Hi there!"})
    in_group = next(e for e in events if "participant" in e)
    image = next(e for e in events if e["type"] == "IMAGE")
    assert tenant.get(f"/api/v1/public/messages/{text['id']}").json()["data"]["payload"] == {"text": "Hi there!"}
    grouped = tenant.get(f"/api/v1/public/messages/{in_group['id']}").json()["data"]
    assert (grouped["remoteJid"], grouped["participant"]) == (f"{group}@g.us", "447911123456@s.whatsapp.net")
    shown = tenant.get(f"/api/v1/public/messages/{image['id']}").json()["data"]
    assert shown["payload"] == {"mimeType": "image/jpeg", "size": len(photo), "sha256": hashlib.sha256(photo).hexdigest(), "fileName": "p.jpg"}

    r = other.get(f"/api/v1/public/messages/{text['id']}")
    assert r.status_code == 404, r.text
    body = r.json()
    assert (body["statusCode"], body["code"], body["message"]) == (404, "NOT_FOUND", "message not found")
    assert body["path"] == f"/api/v1/public/messages/{text['id']}"
