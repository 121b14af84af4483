"""The devices API over the bridge's simulated network: pairing by QR (as a picture) and by
code, unlinking, refreshing, deleting, and a bridge crash with messages in flight."""

import io
import re

import zxingcpp
from PIL import Image

from conftest import eventually, fresh_phone, inbox


def decode_qr(png: bytes) -> str:
    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert len(results) == 1, f"expected one QR code in the picture, found {len(results)}"
    return results[0].text


def test_qr_rotates_renders_and_links(stack, new_tenant):
    tenant = new_tenant()
    device_id = tenant.post("/api/v1/devices", {"label": "Reception"}).json()["device_id"]
    first = eventually(lambda: tenant.device(device_id)["qr_code"])
    rotated = eventually(lambda: (qr := tenant.device(device_id)["qr_code"]) != first and qr, timeout=10)
    assert rotated.startswith("2@")

    png = tenant.get(f"/api/v1/devices/{device_id}/qr.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    current = tenant.device(device_id)["qr_code"]
    assert decode_qr(png.content) in (rotated, current), "the picture encodes the device's QR reference"
    svg = tenant.get(f"/api/v1/devices/{device_id}/qr.svg")
    assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml" and b"<svg" in svg.content

    phone = fresh_phone("62818")
    assert stack.sim("POST", f"/sim/devices/{device_id}/scan", {"phone": phone})[0] == 200
    online = eventually(lambda: (d := tenant.device(device_id))["status"] == "online" and d)
    assert online["phone_number"] == phone and online["qr_code"] is None
    gone = tenant.get(f"/api/v1/devices/{device_id}/qr.png")
    assert gone.status_code == 409 and gone.json()["error"] == "conflict"

    ready = tenant.events("device.qr_ready")
    assert len(ready) >= 2 and all(e["device_id"] == device_id and e["data"]["qr_code"] for e in ready)
    connected = tenant.events("device.connected")
    assert [e["data"]["phone_number"] for e in connected] == [phone]


def test_device_times_are_the_references_offset_form(stack, new_tenant):
    """`"last_seen_at": "2026-06-01T10:00:00+00:00"`: whole seconds, `+00:00`, in the list and the view."""
    tenant = new_tenant()
    device_id = tenant.link_device(fresh_phone("62829"))
    offset = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00")
    [listed] = tenant.get("/api/v1/devices").json()["devices"]
    viewed = tenant.get(f"/api/v1/devices/{device_id}").json()
    for shown in (listed, viewed):
        assert offset.fullmatch(shown["created_at"]), shown
        assert shown["last_seen_at"] is None or offset.fullmatch(shown["last_seen_at"]), shown
    stack.sim("POST", f"/sim/devices/{device_id}/disconnect")
    seen = eventually(lambda: tenant.get(f"/api/v1/devices/{device_id}").json()["last_seen_at"])
    assert offset.fullmatch(seen), seen


def test_pairing_by_phone_code(stack, new_tenant):
    tenant = new_tenant()
    phone = fresh_phone("62819")
    bad = tenant.post("/api/v1/devices", {"pair_phone": "not a phone"})
    assert bad.status_code == 422 and "pair_phone" in bad.json()["errors"]
    device_id = tenant.post("/api/v1/devices", {"label": "By code", "pair_phone": phone}).json()["device_id"]
    code = eventually(lambda: tenant.device(device_id)["pair_code"])
    assert len(code.replace("-", "")) == 8
    status, _, _ = stack.sim("POST", f"/sim/devices/{device_id}/pair", {"code": "AAAA-AAAA" if code != "AAAA-AAAA" else "BBBB-BBBB"})
    assert status in (400, 409)
    assert stack.sim("POST", f"/sim/devices/{device_id}/pair", {"code": code})[0] == 200
    online = eventually(lambda: (d := tenant.device(device_id))["status"] == "online" and d)
    assert online["phone_number"] == phone and online["pair_code"] is None


def test_unlinked_device_goes_offline_refreshes_and_is_deleted(stack, new_tenant):
    tenant = new_tenant()
    device_id = tenant.link_device(fresh_phone("62820"))
    scoped = tenant.scoped_to(device_id)
    assert scoped.post("/api/v1/public/messages/text", {"to": fresh_phone(), "text": "hi"}).status_code == 202
    assert tenant.post(f"/api/v1/devices/{device_id}/refresh-qr").status_code == 409

    assert stack.sim("POST", f"/sim/devices/{device_id}/disconnect")[0] == 200
    offline = eventually(lambda: (d := tenant.device(device_id))["status"] == "offline" and d)
    assert offline["is_online"] is False and offline["disconnect_reason"]
    r = scoped.post("/api/v1/public/messages/text", {"to": fresh_phone(), "text": "hi"})
    assert r.status_code == 409 and r.json()["code"] == "ACCOUNT_NOT_CONNECTED"
    r = tenant.post("/api/v1/messages/send", {"phone": fresh_phone(), "message": "x", "device_id": device_id})
    assert r.status_code == 503 and r.json()["error"] == "no_device_connected"
    disconnected = tenant.events("device.disconnected")
    assert len(disconnected) == 1, disconnected
    assert disconnected[0]["device_id"] == device_id and disconnected[0]["data"]["logged_out"] is True

    refreshed = tenant.post(f"/api/v1/devices/{device_id}/refresh-qr")
    assert refreshed.status_code == 202 and refreshed.json()["status"] == "qr_waiting"
    assert refreshed.json()["qr_code"]

    assert tenant.delete(f"/api/v1/devices/{device_id}").status_code == 200
    assert tenant.get(f"/api/v1/devices/{device_id}").status_code == 404
    assert tenant.delete(f"/api/v1/devices/{device_id}").status_code == 404
    assert tenant.get("/api/v1/devices").json()["count"] == 0
    assert scoped.post("/api/v1/public/messages/text", {"to": fresh_phone(), "text": "x"}).status_code in (404, 409)


def test_bridge_crash_loses_and_duplicates_nothing(stack, new_tenant):
    tenant = new_tenant()
    device_id = tenant.link_device(fresh_phone("62821"))
    recipients = [fresh_phone() for _ in range(6)]
    ids = []
    # SPWP answers once queued, so the crash comes while these are still on their way.
    for i, to in enumerate(recipients):
        r = tenant.post("/api/v1/public/messages/text", {"to": to, "text": f"in flight {i}"})
        assert r.status_code == 202, r.text
        ids.append(r.json()["data"]["id"])
    stack.kill_bridge()
    stack.start_bridge()
    stack.wait_healthy()

    eventually(lambda: tenant.device(device_id)["status"] == "online")
    statuses = lambda: [tenant.get(f"/api/v1/public/messages/{i}").json()["data"]["status"] for i in ids]
    eventually(lambda: all(s == "READ" for s in statuses()), timeout=60)
    for i, to in enumerate(recipients):
        assert [m["text"] for m in inbox(stack, to)] == [f"in flight {i}"], "each message arrives exactly once"

    after = fresh_phone()
    assert tenant.post("/api/v1/messages/send", {"phone": after, "message": "after restart"}).status_code == 200
    eventually(lambda: [m["text"] for m in inbox(stack, after)] == ["after restart"])
