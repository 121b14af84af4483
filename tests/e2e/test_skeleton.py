"""The walking skeleton: pair a device through the simulator, send in both dialects through
worker → device object → bridge → virtual phone, and follow the status lifecycle back."""

import requests

from conftest import eventually, fresh_phone, inbox

LIFECYCLE = ["QUEUED", "SENDING", "SENT", "DELIVERED", "READ"]


def test_device_pairs_by_qr_scan(stack, new_tenant):
    tenant = new_tenant()
    created = tenant.post("/api/v1/devices", {"label": "Front desk"})
    assert created.status_code == 202
    body = created.json()
    device_id = body["device_id"]
    assert device_id.startswith("dev_") and body["engine_device_id"] == device_id
    assert body["label"] == "Front desk" and body["job_id"].startswith("job_")
    assert body["qr_status_url"].endswith(f"/api/v1/devices/{device_id}")
    assert body["status"] in ("qr_waiting", "registering")

    waiting = eventually(lambda: (d := tenant.get(f"/api/v1/devices/{device_id}").json())["status"] == "qr_waiting" and d)
    assert waiting["qr_code"] and waiting["is_online"] is False

    phone = fresh_phone("62812")
    status, scan, _ = stack.sim("POST", f"/sim/devices/{device_id}/scan", {"phone": phone})
    assert status == 200, scan
    online = eventually(lambda: (d := tenant.get(f"/api/v1/devices/{device_id}").json())["status"] == "online" and d)
    assert online["phone_number"] == phone and online["is_online"] is True and online["qr_code"] is None

    listed = tenant.get("/api/v1/devices").json()
    assert listed["count"] == 1
    assert listed["devices"][0]["id"] == device_id and listed["devices"][0]["phone_number"] == phone


def test_loginwa_send_reaches_the_virtual_phone_and_is_read(stack, new_tenant):
    tenant = new_tenant(monthly_messages=100)
    device_id = tenant.link_device(fresh_phone("62813"))
    to = fresh_phone()

    r = tenant.post("/api/v1/messages/send", {"phone": to, "message": "Hello from LoginWA!", "meta": {"order": 7}})
    assert r.status_code == 200, r.text
    sent = r.json()
    assert sent["success"] is True and sent["message_id"].startswith("msg_")
    assert sent["device_id"] == device_id and sent["phone"] == to and sent["quota_remaining"] == 99
    assert len(sent["trace_id"]) == 36 and r.headers["x-request-id"]

    received = eventually(lambda: inbox(stack, to))
    assert [(m["type"], m["text"]) for m in received] == [("text", "Hello from LoginWA!")]

    # The same message, looked up through the other dialect: one core beneath both.
    read = eventually(lambda: (m := tenant.get(f"/api/v1/public/messages/{sent['message_id']}").json()["data"])["status"] == "READ" and m)
    assert read["remoteJid"] == f"{to}@s.whatsapp.net" and read["payload"] == {"text": "Hello from LoginWA!"}
    assert read["externalId"] and read["sentAt"] <= read["deliveredAt"] <= read["readAt"]

    # Each status change is recorded once, in order, for webhook delivery.
    def recorded():
        mine = [e for name in ("message.sent", "message.delivered", "message.read") for e in tenant.events(name)]
        return sorted((e for e in mine if e["data"]["message_id"] == sent["message_id"]), key=lambda e: e["seq"])

    events = eventually(lambda: len(recorded()) == 3 and recorded())
    assert [e["event"] for e in events] == ["message.sent", "message.delivered", "message.read"]
    assert all(e["device_id"] == device_id and e["data"]["phone"] == to for e in events)
    assert events[0]["data"]["external_id"] == read["externalId"]


def test_spwp_send_walks_the_whole_lifecycle(stack, new_tenant):
    tenant = new_tenant()
    device_id = tenant.link_device(fresh_phone("62814"))
    to = fresh_phone()

    r = tenant.post("/api/v1/public/messages/text", {"to": to, "text": "Hello from SPWP 👋"}, style="x-api-key")
    assert r.status_code == 202, r.text
    body = r.json()
    assert set(body) == {"data", "meta"} and body["meta"]["requestId"] == r.headers["x-request-id"]
    msg = body["data"]
    assert msg["status"] == "QUEUED" and msg["direction"] == "OUT" and msg["type"] == "TEXT"
    assert msg["accountId"] == device_id and msg["remoteJid"] == f"{to}@s.whatsapp.net"
    assert msg["payload"] == {"text": "Hello from SPWP 👋"} and msg["createdAt"].endswith("Z")

    seen = []

    def read():
        data = tenant.get(f"/api/v1/public/messages/{msg['id']}").json()["data"]
        if not seen or seen[-1] != data["status"]:
            seen.append(data["status"])
        return data["status"] == "READ" and data

    final = eventually(read, interval=0.02)
    assert seen == sorted(seen, key=LIFECYCLE.index), f"statuses went backwards: {seen}"
    assert final["sentAt"] and final["deliveredAt"] and final["readAt"] and final["externalId"]
    assert [m["text"] for m in inbox(stack, to)] == ["Hello from SPWP 👋"]


def test_engine_failure_ends_failed_with_a_reason(stack, new_tenant):
    tenant = new_tenant()
    tenant.link_device(fresh_phone("62815"))
    to = fresh_phone("997")
    r = tenant.post("/api/v1/public/messages/text", {"to": to, "text": "doomed"})
    assert r.status_code == 202
    failed = eventually(lambda: (m := tenant.get(f"/api/v1/public/messages/{r.json()['data']['id']}").json()["data"])["status"] == "FAILED" and m)
    assert failed["errorCode"] and failed["errorReason"] and "sentAt" not in failed
    [event] = eventually(lambda: tenant.events("message.failed"))
    assert event["data"]["message_id"] == failed["id"] and event["data"]["error_code"] == failed["errorCode"]
    assert inbox(stack, to) == []


def test_bad_phone_is_rejected_in_each_dialects_shape(stack, new_tenant):
    tenant = new_tenant()
    tenant.link_device(fresh_phone("62816"))
    r = tenant.post("/api/v1/messages/send", {"phone": "62812abc4567", "message": "x"})
    assert r.status_code == 422
    assert r.json()["error"] == "validation_failed" and list(r.json()["errors"]) == ["phone"]
    r = tenant.post("/api/v1/messages/send", {"message": "x" * 4097})
    assert r.status_code == 422
    assert r.json()["errors"] == {
        "phone": ["The phone field is required."],
        "message": ["The message field must not be greater than 4096 characters."],
    }
    r = tenant.post("/api/v1/public/messages/text", {"to": "12345", "text": "x"})
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == "VALIDATION_FAILED" and body["statusCode"] == 400
    assert body["details"][0]["field"] == "to" and "digits" in body["message"]


def test_malformed_json_and_unknown_routes_get_the_dialects_error(stack, new_tenant):
    tenant = new_tenant()
    headers = {**tenant.headers(), "content-type": "application/json"}
    r = requests.post(f"{stack.api}/api/v1/messages/send", data=b'{"phone": ', headers=headers)
    assert r.status_code == 422 and r.json()["error"] == "validation_failed"
    r = requests.post(f"{stack.api}/api/v1/public/messages/text", data=b"[oops", headers=headers)
    assert r.status_code == 400 and r.json()["code"] == "VALIDATION_FAILED"
    r = requests.get(f"{stack.api}/api/v1/nothing-here", headers=headers)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = requests.get(f"{stack.api}/api/v1/public/nothing-here", headers=headers)
    assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
    r = requests.delete(f"{stack.api}/api/v1/messages/send", headers=headers)
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
    r = tenant.get("/api/v1/public/messages/msg_nope")
    assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
    for resp in (r, requests.get(f"{stack.api}/nowhere")):
        assert resp.headers.get("x-request-id")


def test_messages_are_private_to_their_app(stack, new_tenant):
    owner, stranger = new_tenant(), new_tenant()
    device_id = owner.link_device(fresh_phone("62817"))
    sent = owner.post("/api/v1/messages/send", {"phone": fresh_phone(), "message": "private"}).json()
    assert stranger.get(f"/api/v1/public/messages/{sent['message_id']}").status_code == 404
    assert stranger.get(f"/api/v1/devices/{device_id}").status_code == 404
    r = stranger.post("/api/v1/messages/send", {"phone": fresh_phone(), "message": "x", "device_id": device_id})
    assert r.status_code == 404


def test_no_device_answers_503_and_409(stack, new_tenant):
    tenant = new_tenant()
    r = tenant.post("/api/v1/messages/send", {"phone": "6281234567890", "message": "x"})
    assert r.status_code == 503 and r.json()["error"] == "no_device_available"
    r = tenant.post("/api/v1/public/messages/text", {"to": "6281234567890", "text": "x"})
    assert r.status_code == 409 and r.json()["code"] == "ACCOUNT_NOT_CONNECTED"
    status, app, _ = stack.admin("GET", f"/admin/v1/apps/{tenant.app_id}")
    assert app["quota"]["used"] == 0


def test_auto_selection_spreads_sends_over_online_devices(stack, new_tenant):
    tenant = new_tenant()
    first, second = tenant.link_device(fresh_phone("62829")), tenant.link_device(fresh_phone("62830"))
    used = [tenant.post("/api/v1/messages/send", {"phone": fresh_phone(), "message": "x"}).json()["device_id"] for _ in range(4)]
    assert sorted(used) == sorted([first, second] * 2), used
    assert used[0] != used[1] and used[2] != used[3], "least recently used first"
    stack.sim("POST", f"/sim/devices/{first}/disconnect")
    eventually(lambda: tenant.device(first)["status"] == "offline")
    used = {tenant.post("/api/v1/messages/send", {"phone": fresh_phone(), "message": "x"}).json()["device_id"] for _ in range(3)}
    assert used == {second}, "offline devices are skipped"
