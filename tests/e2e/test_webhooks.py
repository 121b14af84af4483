"""Webhooks: every event type in all three formats with verified signatures (Standard Webhooks by
the third-party `standardwebhooks` library), receiver outages, replay, and secret rotation."""

import base64
import hashlib
import hmac
import json
import re
import threading
import time

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from conftest import OTP_TTL_S, WEBHOOK_DISABLE_AFTER_S, eventually, fresh_phone, inbox


def create(tenant, url, **fields):
    r = tenant.post("/api/v1/webhooks", {"url": url, **fields})
    assert r.status_code == 201, r.text
    return r.json()


# The reference's `"timestamp": "2026-06-01T12:00:00+00:00"`: whole seconds and an offset.
OFFSET = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00")


def event_of(request) -> str:
    h = request["headers"]
    return h.get("x-loginwa-event") or h.get("x-wa-event") or json.loads(request["body"])["type"]


def test_every_event_in_three_formats_with_verified_signatures(stack, new_tenant, receiver):
    tenant = new_tenant()
    hooks = {fmt: create(tenant, receiver.url(f"/{fmt}"), format=fmt) for fmt in ("loginwa", "spwp", "standard")}
    assert all(h["secret"] for h in hooks.values())
    assert "secret" not in tenant.get(f"/api/v1/webhooks/{hooks['loginwa']['id']}").json(), "shown once"
    listed = tenant.get("/api/v1/webhooks").json()
    assert len(listed["webhooks"]) == 3 and "otp.expired" in listed["available_events"]

    device = tenant.link_device(fresh_phone("62831"))
    to = fresh_phone()
    sent = tenant.post("/api/v1/messages/send", {"phone": to, "message": "hello"}).json()["message_id"]
    tenant.post("/api/v1/messages/send", {"phone": fresh_phone("997"), "message": "doomed"})
    stack.sim("POST", "/sim/inbound", {"device_id": device, "from": "14155552671", "text": "hi there"})
    start = tenant.post("/api/auth/start", {"phone": to}).json()
    eventually(lambda: len(inbox(stack, to)) == 2)
    code = start["debug_code"]
    assert tenant.post("/api/auth/verify", {"session_id": start["session_id"], "otp_code": code}).status_code == 200
    time.sleep(2)
    other = fresh_phone()
    tenant.post("/api/auth/start", {"phone": other})  # left to expire
    stack.sim("POST", f"/sim/devices/{device}/disconnect")

    all_events = {"device.qr_ready", "device.connected", "message.sent", "message.delivered", "message.read",
                  "message.failed", "message.incoming", "otp.verified", "otp.expired", "device.disconnected"}
    eventually(lambda: {event_of(r) for r in receiver.delivered("/loginwa")} >= all_events, timeout=OTP_TTL_S + 30, interval=0.5)
    eventually(lambda: {event_of(r) for r in receiver.delivered("/standard")} >= all_events, timeout=10)
    spwp_events = {"MESSAGE_STATUS", "MESSAGE_RECEIVED", "ACCOUNT_CONNECTED", "ACCOUNT_DISCONNECTED"}
    eventually(lambda: {event_of(r) for r in receiver.delivered("/spwp")} >= spwp_events, timeout=10)

    for r in receiver.delivered("/loginwa"):
        expected = hmac.new(hooks["loginwa"]["secret"].encode(), r["body"], hashlib.sha256).hexdigest()
        assert hmac.compare_digest(r["headers"]["x-loginwa-signature"], expected)
        body = json.loads(r["body"])
        assert body["event"] == r["headers"]["x-loginwa-event"] and OFFSET.fullmatch(body["timestamp"]) and "data" in body
        if body["event"].startswith("message.") and body["event"] != "message.incoming":
            assert body["data"]["status"] == body["event"].removeprefix("message."), "the reference's lowercase statuses"
    for r in receiver.delivered("/spwp"):
        ts = r["headers"]["x-wa-timestamp"]
        expected = hmac.new(hooks["spwp"]["secret"].encode(), f"{ts}.".encode() + r["body"], hashlib.sha256).hexdigest()
        assert r["headers"]["x-wa-signature"] == f"t={ts},v1={expected}" and r["headers"]["x-wa-delivery-id"]
        body = json.loads(r["body"])
        assert body["event"] in spwp_events and body["accountId"] == device and body["occurredAt"]
    verifier = Webhook(hooks["standard"]["secret"])
    for r in receiver.delivered("/standard"):
        payload = verifier.verify(r["body"], r["headers"])  # raises on a bad signature
        assert payload["type"] == event_of(r)

    incoming = [json.loads(r["body"]) for r in receiver.delivered("/loginwa") if event_of(r) == "message.incoming"]
    assert incoming[0]["data"]["from"] == "14155552671" and incoming[0]["data"]["body"] == "hi there"
    read = [json.loads(r["body"]) for r in receiver.delivered("/loginwa") if event_of(r) == "message.read"]
    assert sent in {r["data"]["message_id"] for r in read}
    viewed = tenant.get(f"/api/v1/webhooks/{hooks['loginwa']['id']}").json()
    health = viewed["health"]
    assert health["successes"] >= len(all_events) and health["consecutive_failures"] == 0
    assert OFFSET.fullmatch(viewed["created_at"]) and OFFSET.fullmatch(health["last_success_at"]), viewed
    assert OFFSET.fullmatch(hooks["loginwa"]["created_at"])
    for r in receiver.delivered("/standard"):
        body = json.loads(r["body"])
        if body["type"] in ("message.sent", "message.delivered", "message.read", "message.failed"):
            assert body["data"]["status"] == body["type"].removeprefix("message.").upper(), "other formats keep theirs"


def test_a_receiver_outage_loses_nothing(stack, new_tenant, receiver):
    tenant = new_tenant()
    hook = create(tenant, receiver.url("/hook"), format="standard", retry_count=10, events=["message.sent"])
    device = tenant.link_device(fresh_phone("62832"))
    receiver.stop()
    ids = [tenant.post("/api/v1/messages/send", {"phone": fresh_phone(), "message": f"m{i}"}).json()["message_id"] for i in range(5)]
    time.sleep(1.5)  # connection refused meanwhile
    receiver.mode = "fail"
    receiver.start()
    time.sleep(1.5)  # 500s meanwhile
    receiver.mode = "ok"
    arrived = eventually(lambda: {json.loads(r["body"])["data"]["message_id"] for r in receiver.delivered("/hook")} >= set(ids) and receiver.delivered("/hook"), timeout=60, interval=0.5)
    by_id = {}
    for r in receiver.requests:
        by_id.setdefault(r["headers"]["webhook-id"], set()).add(r["body"])
    assert all(len(bodies) == 1 for bodies in by_id.values()), "a delivery keeps one payload for life"
    assert any(r["answered"] == 500 for r in receiver.requests), "the 500s were retried"
    assert len({r["headers"]["webhook-id"] for r in arrived}) == 5


def test_failed_deliveries_are_kept_and_replayed_with_their_id(stack, new_tenant, receiver):
    tenant = new_tenant()
    hook = create(tenant, receiver.url("/hook"), format="spwp", retry_count=0)
    receiver.mode = "fail"
    assert tenant.post(f"/api/v1/webhooks/{hook['id']}/test").status_code == 200
    failed = eventually(lambda: tenant.get(f"/api/v1/webhooks/{hook['id']}/deliveries?status=failed").json()["deliveries"])
    assert failed[0]["last_status_code"] == 500 and failed[0]["attempts"] == 1
    receiver.mode = "ok"
    r = tenant.post(f"/api/v1/webhooks/{hook['id']}/deliveries/{failed[0]['id']}/replay")
    assert r.status_code == 200
    [replayed] = eventually(lambda: receiver.delivered("/hook"))
    assert replayed["headers"]["x-wa-delivery-id"] == failed[0]["id"] and replayed["headers"]["x-wa-event"] == "WEBHOOK_TEST"
    assert tenant.get(f"/api/v1/webhooks/{hook['id']}/deliveries?status=succeeded").json()["deliveries"][0]["id"] == failed[0]["id"]

    receiver.mode = "fail"
    for _ in range(2):
        tenant.post(f"/api/v1/webhooks/{hook['id']}/test")
    eventually(lambda: len(tenant.get(f"/api/v1/webhooks/{hook['id']}/deliveries?status=failed").json()["deliveries"]) == 2)
    receiver.mode = "ok"
    r = tenant.post(f"/api/v1/webhooks/{hook['id']}/replay", {"since": "2020-01-01T00:00:00Z"})
    assert r.status_code == 200 and r.json()["replayed"] == 2
    eventually(lambda: len(receiver.delivered("/hook")) == 3)


def test_secret_rotation_signs_with_both_during_grace(stack, new_tenant, receiver):
    tenant = new_tenant()
    hook = create(tenant, receiver.url("/hook"), format="spwp")
    rotated = tenant.post(f"/api/v1/webhooks/{hook['id']}/regenerate-secret").json()
    assert rotated["secret"] != hook["secret"]
    tenant.post(f"/api/v1/webhooks/{hook['id']}/test")
    [r] = eventually(lambda: receiver.delivered("/hook"))
    ts = r["headers"]["x-wa-timestamp"]
    sig = lambda secret: hmac.new(secret.encode(), f"{ts}.".encode() + r["body"], hashlib.sha256).hexdigest()
    assert r["headers"]["x-wa-signature"] == f"t={ts},v1={sig(rotated['secret'])},v1={sig(hook['secret'])}"
    assert OFFSET.fullmatch(rotated["previous_secret_valid_until"]), rotated


def test_a_loginwa_endpoints_new_secret_signs_alone_at_once(stack, new_tenant, receiver):
    """`X-LoginWA-Signature` is one hex HMAC: after a rotation it is the new secret's, as the docs say."""
    tenant = new_tenant()
    hook = create(tenant, receiver.url("/hook"), format="loginwa")
    rotated = tenant.post(f"/api/v1/webhooks/{hook['id']}/regenerate-secret").json()
    assert rotated == {"id": hook["id"], "secret": rotated["secret"], "previous_secret_valid_until": None}
    assert rotated["secret"] != hook["secret"]
    tenant.post(f"/api/v1/webhooks/{hook['id']}/test")
    [r] = eventually(lambda: receiver.delivered("/hook"))
    expected = hmac.new(rotated["secret"].encode(), r["body"], hashlib.sha256).hexdigest()
    assert r["headers"]["x-loginwa-signature"] == expected
    assert OFFSET.fullmatch(json.loads(r["body"])["timestamp"])
    # A secret set by PUT takes over at once too.
    assert tenant.put(f"/api/v1/webhooks/{hook['id']}", {"secret": "mine"}).status_code == 200
    tenant.post(f"/api/v1/webhooks/{hook['id']}/test")
    [_, again] = eventually(lambda: len(d := receiver.delivered("/hook")) == 2 and d)
    assert again["headers"]["x-loginwa-signature"] == hmac.new(b"mine", again["body"], hashlib.sha256).hexdigest()


def test_put_updates_as_patch_does(stack, new_tenant):
    tenant = new_tenant()
    hook = create(tenant, "https://example.com/a", events=["message.sent"])
    put = tenant.put(f"/api/v1/webhooks/{hook['id']}", {"url": "https://example.com/b", "retry_count": 7, "active": False})
    assert put.status_code == 200, put.text
    assert put.json() == tenant.get(f"/api/v1/webhooks/{hook['id']}").json()
    assert (put.json()["url"], put.json()["retry_count"], put.json()["active"], put.json()["events"]) == ("https://example.com/b", 7, False, ["message.sent"])
    patched = tenant.patch(f"/api/v1/webhooks/{hook['id']}", {"url": "https://example.com/c"}).json()
    assert patched == {**put.json(), "url": "https://example.com/c"}
    bad = tenant.put(f"/api/v1/webhooks/{hook['id']}", {"retry_count": 11})
    assert bad.status_code == 422 and list(bad.json()["errors"]) == ["retry_count"]
    assert tenant.put("/api/v1/webhooks/wh_nope", {"active": True}).status_code == 404
    other = new_tenant()
    assert other.put(f"/api/v1/webhooks/{hook['id']}", {"url": "https://example.com/x"}).status_code == 404, "another tenant's"


def test_a_chosen_secret_of_any_sane_length(stack, new_tenant, receiver):
    tenant = new_tenant()
    short = create(tenant, receiver.url("/short"), secret="k")
    assert short["secret"] == "k"
    assert create(tenant, "https://example.com/long", secret="s" * 256)["secret"] == "s" * 256
    for bad in ("", "   ", "s" * 257, "s" * 100_000):
        r = tenant.post("/api/v1/webhooks", {"url": "https://example.com/x", "secret": bad})
        assert r.status_code == 422, (len(bad), r.text)
        assert r.json() == {"error": "validation_failed", "message": "Invalid request parameters",
                            "errors": {"secret": r.json()["errors"]["secret"]}} and len(r.json()["errors"]["secret"]) == 1
    r = tenant.patch(f"/api/v1/webhooks/{short['id']}", {"secret": ""})
    assert r.status_code == 422 and list(r.json()["errors"]) == ["secret"]
    tenant.post(f"/api/v1/webhooks/{short['id']}/test")
    [d] = eventually(lambda: receiver.delivered("/short"))
    assert d["headers"]["x-loginwa-signature"] == hmac.new(b"k", d["body"], hashlib.sha256).hexdigest()


def test_endpoint_validation(stack, new_tenant):
    tenant = new_tenant()
    cases = [
        ({"url": "https://10.0.0.1/hook"}, "url"),
        ({"url": "http://example.com/hook"}, "url"),
        ({"url": "https://user:pw@example.com/hook"}, "url"),
        ({"url": "https://example.com/hook", "events": ["nope"]}, "events"),
        ({"url": "https://example.com/hook", "retry_count": 11}, "retry_count"),
        ({"url": "https://example.com/hook", "format": "xml"}, "format"),
    ]
    for body, field in cases:
        r = tenant.post("/api/v1/webhooks", body)
        assert r.status_code == 422 and list(r.json()["errors"]) == [field], (body, r.text)
    for i in range(5):
        assert tenant.post("/api/v1/webhooks", {"url": f"https://example.com/{i}"}).status_code == 201
    r = tenant.post("/api/v1/webhooks", {"url": "https://example.com/6"})
    assert r.status_code == 422 and "at most 5" in r.json()["errors"]["url"][0]
    some = tenant.get("/api/v1/webhooks").json()["webhooks"][0]["id"]
    assert tenant.delete(f"/api/v1/webhooks/{some}").status_code == 200
    assert tenant.get(f"/api/v1/webhooks/{some}").status_code == 404


def test_an_endpoint_failing_for_long_is_disabled_and_loses_nothing_when_reenabled(stack, new_tenant, receiver):
    tenant = new_tenant()
    hook = create(tenant, receiver.url("/hook"), format="loginwa", retry_count=10)
    receiver.mode = "fail"
    tenant.post(f"/api/v1/webhooks/{hook['id']}/test")
    disabled = eventually(lambda: (h := tenant.get(f"/api/v1/webhooks/{hook['id']}").json())["active"] is False and h, timeout=WEBHOOK_DISABLE_AFTER_S + 30, interval=0.5)
    assert "disabled after failing" in disabled["disabled_reason"]
    tenant.post(f"/api/v1/webhooks/{hook['id']}/test")  # queued while disabled
    time.sleep(1)
    assert not receiver.delivered("/hook")
    receiver.mode = "ok"
    r = tenant.patch(f"/api/v1/webhooks/{hook['id']}", {"active": True})
    assert r.status_code == 200 and r.json()["active"] is True and r.json()["disabled_reason"] is None
    eventually(lambda: len({x["headers"]["x-loginwa-event"] for x in receiver.delivered("/hook")}) == 1 and len(receiver.delivered("/hook")) >= 2, timeout=30, interval=0.5)



def test_pending_deliveries_survive_a_worker_restart(stack, new_tenant, receiver):
    tenant = new_tenant()
    create(tenant, receiver.url("/hook"), format="loginwa", retry_count=10, events=["message.sent"])
    tenant.link_device(fresh_phone("62833"))
    receiver.stop()
    ids = [tenant.post("/api/v1/messages/send", {"phone": fresh_phone(), "message": f"r{i}"}).json()["message_id"] for i in range(3)]
    time.sleep(1)  # deliveries attempted and failing: connection refused
    stack.restart_worker()
    receiver.start()
    arrived = eventually(lambda: {json.loads(r["body"])["data"]["message_id"] for r in receiver.delivered("/hook")} >= set(ids), timeout=60, interval=0.5)
    assert arrived


def test_a_slow_endpoint_does_not_delay_another(stack, new_tenant, receiver):
    tenant = new_tenant()
    slow = create(tenant, receiver.url("/slow"), format="loginwa", events=["message.incoming"])
    create(tenant, receiver.url("/fast"), format="loginwa", events=["message.incoming"])
    receiver.holds["/slow"] = threading.Event()
    device = tenant.link_device(fresh_phone("62834"))
    # Twice the slow endpoint's 4 concurrent attempts: the rest wait for it, and must not hold up the other.
    texts = [f"ping {i}" for i in range(8)]
    for i, text in enumerate(texts):
        stack.sim("POST", "/sim/inbound", {"device_id": device, "from": "14155552671", "text": text})
        eventually(lambda: len(receiver.delivered("/fast")) == i + 1, interval=0.05)
    # Every event reached the fast endpoint while the slow one had not answered a single
    # attempt (it holds them until released; a timed-out attempt would count as one).
    assert [json.loads(r["body"])["data"]["body"] for r in receiver.delivered("/fast")] == texts
    assert tenant.get(f"/api/v1/webhooks/{slow['id']}").json()["health"]["attempts"] == 0
    receiver.holds["/slow"].set()
    eventually(lambda: {json.loads(r["body"])["data"]["body"] for r in receiver.delivered("/slow")} == set(texts), timeout=30)


def test_inbound_media_comes_with_a_time_limited_download_link(stack, new_tenant, receiver):
    tenant = new_tenant()
    create(tenant, receiver.url("/loginwa"), format="loginwa", events=["message.incoming"])
    create(tenant, receiver.url("/spwp"), format="spwp")
    device = tenant.link_device(fresh_phone("62835"))
    photo = bytes.fromhex("ffd8ffe000104a46494600") + b"wagate inbound photo" * 50
    media = {"mime_type": "image/jpeg", "data_base64": base64.b64encode(photo).decode(), "caption": "look"}
    stack.sim("POST", "/sim/inbound", {"device_id": device, "from": "14155552671", "media": media})
    [delivery] = eventually(lambda: receiver.delivered("/loginwa"))
    data = json.loads(delivery["body"])["data"]
    assert data["type"] == "image" and data["body"] == "look"
    link = data["media"]
    assert link["sha256"] == hashlib.sha256(photo).hexdigest() and link["size"] == len(photo)
    assert link["url"].startswith(stack.api) and link["url_expires_at"]

    got = requests.get(link["url"])  # no API key: the link is the credential
    assert got.status_code == 200 and got.content == photo
    assert got.headers["content-type"] == "image/jpeg" and got.headers["content-disposition"] == "attachment"
    tampered = link["url"].replace("expires=", "expires=9")
    r = requests.get(tampered)
    assert r.status_code == 403 and r.json()["error"] == "invalid_link"
    assert requests.get(link["url"].split("?")[0]).status_code == 422, "a link without its signature is refused"

    spwp = eventually(lambda: [json.loads(r["body"]) for r in receiver.delivered("/spwp") if event_of(r) == "MESSAGE_RECEIVED"])
    assert spwp[0]["data"]["type"] == "IMAGE"
    assert spwp[0]["data"]["payload"] == {"mimeType": "image/jpeg", "size": len(photo), "sha256": hashlib.sha256(photo).hexdigest(),
                                          "caption": "look", "mediaUrl": link["url"]}, "the camelCase shape of outbound payloads"


def test_a_group_message_reaches_spwp_with_its_group_jid_and_author(stack, new_tenant, receiver):
    """A group message's SPWP `remoteJid` is the group's JID and `participant` the member's, sent
    as CONTRACT.md has the simulator take it. (It once came out as `<group id>@s.whatsapp.net`,
    a chat that does not exist, and named nobody.)"""
    tenant = new_tenant()
    create(tenant, receiver.url("/loginwa"), format="loginwa", events=["message.incoming"])
    create(tenant, receiver.url("/spwp"), format="spwp")
    device = tenant.link_device(fresh_phone("62836"))
    group = fresh_phone("120363")
    sent = stack.sim("POST", "/sim/inbound", {"device_id": device, "from": f"{group}@g.us", "participant": "447911123456", "text": "hi all"})
    assert sent[0] == 200, sent
    spwp = eventually(lambda: [json.loads(r["body"]) for r in receiver.delivered("/spwp") if event_of(r) == "MESSAGE_RECEIVED"])
    data = spwp[0]["data"]
    assert list(data) == ["id", "direction", "type", "remoteJid", "participant", "externalId", "status", "payload"]
    assert data == {"id": data["id"], "direction": "IN", "type": "TEXT", "remoteJid": f"{group}@g.us",
                    "participant": "447911123456@s.whatsapp.net", "externalId": sent[1]["external_id"],
                    "status": "RECEIVED", "payload": {"text": "hi all"}}
    [delivery] = eventually(lambda: receiver.delivered("/loginwa"))
    loginwa = json.loads(delivery["body"])["data"]
    assert list(loginwa)[:4] == ["message_id", "from", "body", "device_id"], "the reference's fields first"
    assert (loginwa["group"], loginwa["from"], loginwa["participant"]) == (True, group, "447911123456")

    # A reply to the group's JID reaches the group.
    reply = tenant.post("/api/v1/public/messages/text", {"to": f"{group}@g.us", "text": "hello group"})
    assert reply.status_code == 202, reply.text
    assert [m["text"] for m in eventually(lambda: inbox(stack, group))] == ["hello group"]


def test_spwp_events_are_the_references_bodies_and_filters_take_its_names(stack, new_tenant, receiver):
    """MESSAGE_RECEIVED and MESSAGE_STATUS key for key as the reference prints them; an endpoint
    subscribed by SPWP names gets just those events."""
    tenant = new_tenant()
    hook = create(tenant, receiver.url("/spwp"), format="spwp", events=["MESSAGE_RECEIVED", "MESSAGE_STATUS"])
    assert hook["events"] == ["message.incoming", "message.sent", "message.delivered", "message.read", "message.failed"]
    device = tenant.link_device(fresh_phone("62837"))
    to = fresh_phone()
    sent = tenant.post("/api/v1/public/messages/text", {"to": to, "text": "Your verification code is 482310"})
    assert sent.status_code == 202, sent.text
    message_id = sent.json()["data"]["id"]
    inbound = stack.sim("POST", "/sim/inbound", {"device_id": device, "from": "9647507644809", "text": "Hi there!"})[1]

    def bodies(name):
        return [json.loads(r["body"]) for r in receiver.delivered("/spwp") if event_of(r) == name]

    statuses = eventually(lambda: {b["data"]["status"] for b in bodies("MESSAGE_STATUS")} >= {"SENT", "DELIVERED", "READ"} and bodies("MESSAGE_STATUS"))
    [received] = eventually(lambda: bodies("MESSAGE_RECEIVED"))
    assert list(received) == ["event", "accountId", "occurredAt", "data"] and received["accountId"] == device
    assert received["data"] == {"id": received["data"]["id"], "direction": "IN", "type": "TEXT",
                                "remoteJid": "9647507644809@s.whatsapp.net", "externalId": inbound["external_id"],
                                "status": "RECEIVED", "payload": {"text": "Hi there!"}}
    assert list(received["data"]) == ["id", "direction", "type", "remoteJid", "externalId", "status", "payload"]

    by_status = {b["data"]["status"]: b["data"] for b in statuses}
    delivered = by_status["DELIVERED"]
    assert list(delivered) == ["id", "externalId", "status", "sentAt", "deliveredAt"], delivered
    assert delivered["id"] == message_id and delivered["externalId"]
    looked_up = tenant.get(f"/api/v1/public/messages/{message_id}").json()["data"]
    assert (delivered["sentAt"], delivered["deliveredAt"]) == (looked_up["sentAt"], looked_up["deliveredAt"])
    assert list(by_status["SENT"]) == ["id", "externalId", "status", "sentAt"]
    assert list(by_status["READ"]) == ["id", "externalId", "status", "sentAt", "deliveredAt", "readAt"]

    doomed = tenant.post("/api/v1/public/messages/text", {"to": fresh_phone("997"), "text": "doomed"}).json()["data"]["id"]
    failed = eventually(lambda: [b["data"] for b in bodies("MESSAGE_STATUS") if b["data"]["id"] == doomed and b["data"]["status"] == "FAILED"])
    assert failed[0]["errorCode"] and failed[0]["errorReason"] and "deliveredAt" not in failed[0]
    stack.sim("POST", f"/sim/devices/{device}/disconnect")
    time.sleep(1)
    assert not bodies("ACCOUNT_CONNECTED") and not bodies("ACCOUNT_DISCONNECTED"), "not subscribed"

    mixed = create(tenant, receiver.url("/mixed"), format="spwp", events=["ACCOUNT_CONNECTED", "device.disconnected", "MESSAGE_RECEIVED", "message.incoming"])
    assert mixed["events"] == ["device.connected", "device.disconnected", "message.incoming"]
    for bad in [["MESSAGE_SENT"], ["message_received"], "MESSAGE_STATUS", [5], ["A" * 100_000]]:
        r = tenant.post("/api/v1/webhooks", {"url": receiver.url("/x"), "format": "spwp", "events": bad})
        assert r.status_code == 422 and list(r.json()["errors"]) == ["events"], (bad, r.text[:200])
    r = tenant.patch(f"/api/v1/webhooks/{hook['id']}", {"events": ["ACCOUNT_DISCONNECTED"]})
    assert r.status_code == 200 and r.json()["events"] == ["device.disconnected"], r.text


def test_an_spwp_test_delivery_is_an_spwp_event(stack, new_tenant, receiver):
    tenant = new_tenant()
    hook = create(tenant, receiver.url("/spwp"), format="spwp")
    loginwa = create(tenant, receiver.url("/loginwa"), format="loginwa")
    for h in (hook, loginwa):
        assert tenant.post(f"/api/v1/webhooks/{h['id']}/test").status_code in (200, 202)
    [r] = eventually(lambda: receiver.delivered("/spwp"))
    ts = r["headers"]["x-wa-timestamp"]
    expected = hmac.new(hook["secret"].encode(), f"{ts}.".encode() + r["body"], hashlib.sha256).hexdigest()
    assert r["headers"]["x-wa-signature"] == f"t={ts},v1={expected}" and r["headers"]["x-wa-event"] == "WEBHOOK_TEST"
    body = json.loads(r["body"])
    assert list(body) == ["event", "accountId", "occurredAt", "data"]
    assert (body["event"], body["accountId"]) == ("WEBHOOK_TEST", None) and body["occurredAt"].endswith("Z")
    assert body["data"] == {"webhookId": hook["id"], "message": "This is a test event from wagate"}
    [r] = eventually(lambda: receiver.delivered("/loginwa"))
    assert json.loads(r["body"])["event"] == "webhook.test" and r["headers"]["x-loginwa-event"] == "webhook.test"


def test_an_auto_reply_answers_on_the_virtual_phone_and_the_event_is_still_delivered(stack, new_tenant, receiver):
    tenant = new_tenant()
    create(tenant, receiver.url("/hook"), format="loginwa", events=["message.incoming"])
    device = tenant.link_device(fresh_phone("62836"))
    for body, field in [
        ({"match": "regex", "pattern": "(unclosed", "reply": "x"}, "pattern"),
        ({"match": "exact", "pattern": "hi", "reply": "Hi {city}"}, "reply"),
        ({"match": "glob", "pattern": "hi", "reply": "x"}, "match"),
        ({"match": "exact", "reply": "x"}, "pattern"),
    ]:
        r = tenant.post("/api/v1/auto-replies", body)
        assert r.status_code == 422 and list(r.json()["errors"]) == [field], (body, r.text)

    price = tenant.post("/api/v1/auto-replies", {"match": "regex", "pattern": r"^(price|harga)\b", "priority": 5,
                                                  "reply": "{Hi|Hello} {name}, prices are at example.com"})
    assert price.status_code == 201, price.text
    price = price.json()
    catch_all = tenant.post("/api/v1/auto-replies", {"match": "contains", "pattern": "price", "reply": "never: lower priority"}).json()
    off = tenant.post("/api/v1/auto-replies", {"match": "exact", "pattern": "menu", "reply": "never: inactive", "active": False}).json()
    assert [r["id"] for r in tenant.get("/api/v1/auto-replies").json()["auto_replies"]] == [price["id"], catch_all["id"], off["id"]]

    customer, quiet = fresh_phone("1415"), fresh_phone("1416")
    stack.sim("POST", "/sim/inbound", {"device_id": device, "from": customer, "name": "Budi", "text": "PRICE list please"})
    stack.sim("POST", "/sim/inbound", {"device_id": device, "from": quiet, "text": "menu"})
    [reply] = eventually(lambda: inbox(stack, customer))
    assert reply["text"] in ("Hi Budi, prices are at example.com", "Hello Budi, prices are at example.com")

    incoming = eventually(lambda: len(receiver.delivered("/hook")) == 2 and [json.loads(r["body"])["data"] for r in receiver.delivered("/hook")])
    answered = next(d for d in incoming if d["from"] == customer)
    assert answered["body"] == "PRICE list please" and answered["auto_reply"]["rule_id"] == price["id"]
    assert tenant.get(f"/api/v1/public/messages/{answered['auto_reply']['message_id']}").json()["data"]["status"] in ("SENT", "DELIVERED", "READ")
    assert "auto_reply" not in next(d for d in incoming if d["from"] == quiet)
    time.sleep(1)
    assert inbox(stack, quiet) == [], "an inactive rule does not answer"
    assert tenant.get(f"/api/v1/auto-replies/{price['id']}").json()["hits"] == 1

    r = tenant.patch(f"/api/v1/auto-replies/{off['id']}", {"active": True, "reply": "Menu for {phone}"})
    assert r.status_code == 200 and r.json()["active"] is True
    stack.sim("POST", "/sim/inbound", {"device_id": device, "from": quiet, "text": " Menu "})
    assert eventually(lambda: inbox(stack, quiet))[0]["text"] == f"Menu for {quiet}"
    assert tenant.delete(f"/api/v1/auto-replies/{off['id']}").status_code == 200
    assert tenant.get(f"/api/v1/auto-replies/{off['id']}").status_code == 404
