"""Every message type in both dialects, media checked byte for byte on the virtual phone,
check-phone, and a paced burst that arrives in order, each message exactly once."""

import base64
import hashlib
import io
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from conftest import PACE_MS, SEND_WAIT_MS, burst, eventually, fresh_phone, inbox, settled, statuses


def png_bytes(color=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(out, format="PNG")
    return out.getvalue()


def jpeg_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (0, 90, 200)).save(out, format="JPEG")
    return out.getvalue()


MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(range(256)) * 8
OGG = b"OggS\x00\x02" + b"\x00" * 20 + b"OpusHead" + bytes(range(200))
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF\n"


@pytest.fixture(scope="module")
def files():
    """A local web server the worker fetches media from (loopback http is allowed in development)."""
    served = {
        "/photo.png": (200, "image/png", png_bytes()),
        "/voice": (200, "application/octet-stream", OGG),
        "/page.html": (200, "text/html; charset=utf-8", b"<html><body>login</body></html>"),
        "/invoice.pdf": (200, "application/pdf", PDF),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            status, content_type, body = served.get(self.path, (404, "text/plain", b"not found"))
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served
    server.shutdown()


@pytest.fixture(scope="module")
def sender(stack):
    """One app with one linked number for the whole module."""
    from conftest import Tenant

    status, body, _ = stack.admin("POST", "/admin/v1/apps", {"name": "messaging", "api_rpm": 1_000_000, "auth_rpm": 1_000_000, "monthly_messages": 10_000})
    assert status == 201
    tenant = Tenant(stack, body["app_id"], body["api_key"])
    tenant.device_id = tenant.link_device(fresh_phone("62822"))
    return tenant


def sent_media(stack, to: str) -> dict:
    [message] = eventually(lambda: inbox(stack, to))
    return message


def expect_media(stack, to: str, kind: str, mime: str, body: bytes, caption=None, file_name=None):
    message = sent_media(stack, to)
    assert message["type"] == kind
    assert message["media"]["mime_type"] == mime
    assert message["media"]["size"] == len(body)
    assert message["media"]["sha256"] == hashlib.sha256(body).hexdigest()
    assert message["caption"] == caption
    if file_name:
        assert message["media"]["file_name"] == file_name


def test_image_from_a_url(stack, sender, files):
    base, served = files
    to = fresh_phone()
    r = sender.post("/api/v1/public/messages/image", {"to": to, "source": f"{base}/photo.png", "caption": "Today's preview"})
    assert r.status_code == 202, r.text
    data = r.json()["data"]
    assert data["type"] == "IMAGE" and data["payload"]["mimeType"] == "image/png" and data["payload"]["caption"] == "Today's preview"
    expect_media(stack, to, "image", "image/png", served["/photo.png"][2], caption="Today's preview")


def test_image_and_video_from_data_urls(stack, sender):
    jpeg, to = jpeg_bytes(), fresh_phone()
    source = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    assert sender.post("/api/v1/public/messages/image", {"to": to, "source": source}).status_code == 202
    expect_media(stack, to, "image", "image/jpeg", jpeg)

    to = fresh_phone()
    source = "data:video/mp4;base64," + base64.b64encode(MP4).decode()
    r = sender.post("/api/v1/public/messages/video", {"to": to, "source": source, "caption": "Onboarding tour"})
    assert r.status_code == 202 and r.json()["data"]["type"] == "VIDEO"
    expect_media(stack, to, "video", "video/mp4", MP4, caption="Onboarding tour")


def test_audio_with_a_forced_mime_type(stack, sender, files):
    base, _ = files
    to = fresh_phone()
    body = {"to": to, "source": f"{base}/voice", "mimeType": "audio/ogg; codecs=opus"}
    assert sender.post("/api/v1/public/messages/audio", body).status_code == 202
    expect_media(stack, to, "audio", "audio/ogg; codecs=opus", OGG)


def test_document_keeps_its_file_name(stack, sender, files):
    base, _ = files
    to = fresh_phone()
    body = {"to": to, "source": f"{base}/invoice.pdf", "fileName": "invoice-3214.pdf", "mimeType": "application/pdf", "caption": "Your invoice for May"}
    r = sender.post("/api/v1/public/messages/document", body)
    assert r.status_code == 202 and r.json()["data"]["payload"]["fileName"] == "invoice-3214.pdf"
    expect_media(stack, to, "document", "application/pdf", PDF, caption="Your invoice for May", file_name="invoice-3214.pdf")


def test_location(stack, sender):
    to = fresh_phone()
    body = {"to": to, "latitude": 36.1911, "longitude": 44.0094, "name": "Erbil Citadel", "address": "Erbil, Kurdistan Region, Iraq"}
    r = sender.post("/api/v1/public/messages/location", body)
    assert r.status_code == 202
    assert r.json()["data"]["type"] == "LOCATION" and r.json()["data"]["payload"]["latitude"] == 36.1911
    [message] = eventually(lambda: inbox(stack, to))
    assert message["type"] == "location"
    assert message["location"] == {"latitude": 36.1911, "longitude": 44.0094, "name": "Erbil Citadel", "address": "Erbil, Kurdistan Region, Iraq"}


def test_media_that_cannot_be_fetched_or_lies_about_itself(stack, sender, files):
    base, _ = files
    cases = [
        ("image", {"source": f"{base}/missing.png"}, "404"),
        ("image", {"source": f"{base}/page.html"}, "HTML"),
        ("image", {"source": f"{base}/invoice.pdf", "mimeType": "image/jpeg"}, "application/pdf"),
        ("video", {"source": f"{base}/photo.png"}, "video"),
    ]
    for kind, fields, hint in cases:
        r = sender.post(f"/api/v1/public/messages/{kind}", {"to": fresh_phone(), **fields})
        assert r.status_code == 400, (fields, r.text)
        assert r.json()["code"] == "MEDIA_FETCH_FAILED" and hint in r.json()["message"], r.json()


def test_invalid_fields_are_validation_errors(stack, sender):
    cases = [
        ("location", {"latitude": 91, "longitude": 0}, "latitude"),
        ("location", {"latitude": 10}, "longitude"),
        ("image", {"source": "data:image/png;base64,aGk=", "caption": "x" * 1025}, "caption"),
        ("image", {}, "source"),
        ("image", {"source": "ftp://example.com/a.png"}, "source"),
        ("document", {"source": "https://10.0.0.1/secret.pdf"}, "source"),
    ]
    for kind, fields, field in cases:
        r = sender.post(f"/api/v1/public/messages/{kind}", {"to": fresh_phone(), **fields})
        assert r.status_code == 400 and r.json()["code"] == "VALIDATION_FAILED", r.text
        assert [d["field"] for d in r.json()["details"]] == [field], r.json()


def test_loginwa_country_code_completes_a_national_number(stack, sender):
    """The reference's `{"phone": "81234567890", "country_code": "62"}` goes to 6281234567890."""
    for given, national in (("62", lambda p: p[2:]), ("+62", lambda p: "0" + p[2:]), ("+62", lambda p: p)):
        to = fresh_phone()
        r = sender.post("/api/v1/messages/send", {"phone": national(to), "country_code": given, "message": "hi"})
        assert r.status_code == 200 and r.json()["phone"] == to, (given, national(to), r.text)
        eventually(lambda: [m["text"] for m in inbox(stack, to)] == ["hi"])
    r = sender.post("/api/v1/messages/send", {"phone": "8123456789", "country_code": "abc", "message": "hi"})
    assert r.status_code == 422 and r.json()["error"] == "validation_failed" and list(r.json()["errors"]) == ["country_code"], r.text
    r = sender.post("/api/v1/messages/send", {"phone": "081234567890123", "country_code": "62", "message": "hi"})
    assert r.status_code == 422 and list(r.json()["errors"]) == ["phone"], "the completed number is too long"


def test_check_phone(stack, sender, new_tenant):
    r = sender.post("/api/v1/public/messages/check-phone", {"phone": "9647507644809"})
    assert r.status_code == 200
    assert r.json()["data"] == {"phone": "9647507644809", "exists": True, "jid": "9647507644809@s.whatsapp.net"}
    r = sender.post("/api/v1/public/messages/check-phone", {"phone": "99912345678"})
    assert r.json()["data"]["exists"] is False
    offline = new_tenant()
    r = offline.post("/api/v1/public/messages/check-phone", {"phone": "9647507644809"})
    assert r.status_code == 200 and r.json()["data"] == {"phone": "9647507644809", "exists": False, "reason": "NOT_CONNECTED"}
    r = sender.post("/api/v1/public/messages/check-phone", {"phone": "12"})
    assert r.status_code == 400 and r.json()["code"] == "VALIDATION_FAILED"


def test_a_burst_is_accepted_at_once_and_sent_in_order_at_the_pace(stack, new_tenant):
    tenant = new_tenant(monthly_messages=1000)
    tenant.link_device(fresh_phone("62823"))
    to = fresh_phone()
    count = 500
    ids = burst(tenant, to, count)
    received = eventually(lambda: len(m := inbox(stack, to)) >= count and m, timeout=180, interval=1)
    assert [m["text"] for m in received] == [f"burst {i:03d}" for i in range(count)], "in order, each exactly once"
    times = [datetime.fromisoformat(m["at"].replace("Z", "+00:00")) for m in received]
    gaps_ms = [(b - a).total_seconds() * 1000 for a, b in zip(times, times[1:])]
    # A lower bound only: the pace is a ceiling on speed, never a promise of it. 5 ms covers clock rounding.
    assert min(gaps_ms) >= PACE_MS - 5, f"sent faster than the pace: {min(gaps_ms):.1f} ms"
    eventually(lambda: tenant.get(f"/api/v1/public/messages/{ids[-1]}").json()["data"]["status"] == "READ", timeout=30)


def test_a_bridge_crash_mid_burst_loses_and_duplicates_nothing(stack, new_tenant):
    tenant = new_tenant(monthly_messages=1000)
    tenant.link_device(fresh_phone("62824"))
    to = fresh_phone()
    ids = burst(tenant, to, 150, prefix="crash")
    eventually(lambda: len(inbox(stack, to)) >= 20)
    stack.kill_bridge()
    stack.start_bridge()
    stack.wait_healthy()
    final = settled(tenant, ids, timeout=120)
    assert final == ["READ"] * 150
    texts = [m["text"] for m in inbox(stack, to)]
    assert sorted(texts) == [f"crash {i:03d}" for i in range(150)], "each message exactly once"


def test_idempotency_key_replays_the_answer_and_refuses_reuse(stack, sender):
    to = fresh_phone()
    key = {"Idempotency-Key": f"order-{to}"}
    first = sender.post("/api/v1/messages/send", {"phone": to, "message": "once"}, headers=key)
    again = sender.post("/api/v1/messages/send", {"phone": to, "message": "once"}, headers=key)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again.headers.get("idempotent-replayed") == "true"
    other = sender.post("/api/v1/messages/send", {"phone": to, "message": "twice"}, headers=key)
    assert other.status_code == 422 and other.json()["error"] == "idempotency_key_reused"
    eventually(lambda: statuses(sender, [first.json()["message_id"]]) == ["READ"])
    assert [m["text"] for m in inbox(stack, to)] == ["once"]

    key = {"Idempotency-Key": f"spwp-{to}"}
    body = {"to": to, "text": "spwp once"}
    first = sender.post("/api/v1/public/messages/text", body, headers=key)
    again = sender.post("/api/v1/public/messages/text", body, headers=key)
    assert first.status_code == again.status_code == 202 and again.json()["data"]["id"] == first.json()["data"]["id"]
    other = sender.post("/api/v1/public/messages/text", {**body, "text": "changed"}, headers=key)
    assert other.status_code == 422 and other.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    failed = sender.post("/api/v1/messages/send", {"phone": "123"}, headers={"Idempotency-Key": f"bad-{to}"})
    fixed = sender.post("/api/v1/messages/send", {"phone": to, "message": "fixed"}, headers={"Idempotency-Key": f"bad-{to}"})
    assert failed.status_code == 422 and fixed.status_code == 200, "a refused request does not burn its key"


def test_messages_wait_for_a_reconnect_and_expire_without_one(stack, new_tenant):
    tenant = new_tenant(monthly_messages=1000)
    phone = fresh_phone("62825")
    device_id = tenant.link_device(phone)

    # Unlinked mid-burst, linked again in time: everything still goes out, once. Receipts owed to
    # the old session are lost with it (as on WhatsApp), so SENT and DELIVERED are final here too.
    to = fresh_phone()
    ids = burst(tenant, to, 80, prefix="resume", parallel=8)
    assert stack.sim("POST", f"/sim/devices/{device_id}/disconnect")[0] == 200
    eventually(lambda: tenant.device(device_id)["status"] == "offline")
    assert tenant.post(f"/api/v1/devices/{device_id}/refresh-qr").status_code == 202
    eventually(lambda: tenant.device(device_id)["status"] == "qr_waiting")
    assert stack.sim("POST", f"/sim/devices/{device_id}/scan", {"phone": phone})[0] == 200
    eventually(lambda: len(inbox(stack, to)) >= 80, timeout=60, interval=0.5)
    assert sorted(m["text"] for m in inbox(stack, to)) == [f"resume {i:03d}" for i in range(80)]
    assert set(eventually(lambda: (st := set(statuses(tenant, ids))) <= {"SENT", "DELIVERED", "READ"} and st))

    # Unlinked for good: what did not go out fails with a reason once the expiry passes.
    to = fresh_phone()
    ids = burst(tenant, to, 80, prefix="expire", parallel=8)
    assert stack.sim("POST", f"/sim/devices/{device_id}/disconnect")[0] == 200

    def final():
        current = statuses(tenant, ids)
        return not {"QUEUED", "SENDING"} & set(current) and current

    final = eventually(final, timeout=60, interval=0.5)
    failed = [i for i, s in zip(ids, final) if s == "FAILED"]
    assert failed, "the device went offline before the burst drained"
    for message_id in failed:
        data = tenant.get(f"/api/v1/public/messages/{message_id}").json()["data"]
        assert data["errorCode"] == "expired" and "offline" in data["errorReason"]
    assert len(inbox(stack, to)) == len(ids) - len(failed)


SEND_FAILED = "WhatsApp engine failed to send the message"


def used(stack, tenant) -> int:
    return stack.admin("GET", f"/admin/v1/apps/{tenant.app_id}")[1]["quota"]["used"]


def test_loginwa_answers_once_whatsapp_took_or_refused_the_message(stack, new_tenant):
    tenant = new_tenant(monthly_messages=100)
    device_id = tenant.link_device(fresh_phone("62829"))
    to = fresh_phone()
    r = tenant.post("/api/v1/messages/send", {"phone": to, "message": "Hello from LoginWA!"})
    assert r.status_code == 200, r.text
    sent = r.json()
    assert set(sent) == {"success", "message_id", "trace_id", "device_id", "phone", "quota_remaining"}, "the reference's body"
    assert (sent["success"], sent["device_id"], sent["phone"], sent["quota_remaining"]) == (True, device_id, to, 99)
    assert statuses(tenant, [sent["message_id"]])[0] in ("SENT", "DELIVERED", "READ"), "answered once WhatsApp took it"

    # Not on WhatsApp, and an engine error: the reference's 502, with what the message log says.
    for prefix, code in (("999", "not_on_whatsapp"), ("997", "engine_error")):
        phone = fresh_phone(prefix)
        r = tenant.post("/api/v1/messages/send", {"phone": phone, "message": "doomed"})
        assert r.status_code == 502, r.text
        body = r.json()
        assert set(body) == {"error", "message", "message_id", "error_code", "error_reason"}, body
        assert (body["error"], body["message"], body["error_code"]) == ("send_failed", SEND_FAILED, code)
        logged = tenant.get(f"/api/v1/public/messages/{body['message_id']}").json()["data"]
        assert (logged["status"], logged["errorCode"], logged["errorReason"]) == ("FAILED", code, body["error_reason"])
        assert inbox(stack, phone) == []
    eventually(lambda: used(stack, tenant) == 1)  # failed sends give their quota unit back

    # A refusal is the key's final answer: replayed, not sent again.
    key = {"Idempotency-Key": f"refused-{to}"}
    body = {"phone": fresh_phone("999"), "message": "once"}
    first = tenant.post("/api/v1/messages/send", body, headers=key)
    again = tenant.post("/api/v1/messages/send", body, headers=key)
    assert first.status_code == again.status_code == 502 and again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"

    # Hostile: another app's device named, or a huge body, are refused as before, never waited on.
    stranger = new_tenant()
    r = stranger.post("/api/v1/messages/send", {"phone": fresh_phone("999"), "message": "x", "device_id": device_id})
    assert r.status_code in (404, 503) and r.json()["error"] != "send_failed", r.text


def test_a_send_still_queued_at_the_bound_answers_200_and_carries_on(stack, new_tenant):
    tenant = new_tenant(monthly_messages=1000)
    tenant.link_device(fresh_phone("62830"))
    bulk_to = fresh_phone()
    count = 400
    burst(tenant, bulk_to, count, prefix="ahead", parallel=8)
    # At least this many wait ahead, at no more than one per PACE_MS: longer than the bound.
    assert count - len(inbox(stack, bulk_to)) > SEND_WAIT_MS // PACE_MS
    to = fresh_phone()
    started = time.monotonic()
    r = tenant.post("/api/v1/messages/send", {"phone": to, "message": "behind the burst"})
    took = time.monotonic() - started
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"success", "message_id", "trace_id", "device_id", "phone", "quota_remaining"}
    assert SEND_WAIT_MS / 1000 - 0.2 <= took < SEND_WAIT_MS / 1000 + 5, f"answered after {took:.1f} s"
    assert statuses(tenant, [r.json()["message_id"]])[0] in ("QUEUED", "SENDING")
    eventually(lambda: [m["text"] for m in inbox(stack, to)] == ["behind the burst"], timeout=60, interval=0.5)


def test_a_send_while_the_device_is_offline_answers_as_before(stack, new_tenant):
    tenant = new_tenant(monthly_messages=100)
    device_id = tenant.link_device(fresh_phone("62831"))
    assert stack.sim("POST", f"/sim/devices/{device_id}/disconnect")[0] == 200
    eventually(lambda: tenant.device(device_id)["status"] == "offline")
    started = time.monotonic()
    r = tenant.post("/api/v1/messages/send", {"phone": fresh_phone(), "message": "nobody home"})
    assert time.monotonic() - started < SEND_WAIT_MS / 1000, "nothing to wait for"
    assert r.status_code == 503 and r.json()["error"] == "no_device_available", r.text
    r = tenant.post("/api/v1/messages/send", {"phone": fresh_phone(), "message": "x", "device_id": device_id})
    assert r.status_code == 503 and r.json()["error"] == "no_device_connected", r.text
