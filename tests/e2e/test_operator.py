"""The operator API of CONTRACT.md: apps, keys shown once and stored hashed, revoke, suspend, quota."""

import requests

from conftest import Tenant, eventually, fresh_phone, inbox


def test_create_app_shows_the_key_once(stack):
    status, created, _ = stack.admin("POST", "/admin/v1/apps", {"name": "Acme", "monthly_messages": 10})
    assert status == 201
    tenant = Tenant(stack, created["app_id"], created["api_key"])
    assert tenant.app_id.startswith("app_") and tenant.key.startswith("wg_live_")
    status, app, _ = stack.admin("GET", f"/admin/v1/apps/{tenant.app_id}")
    assert status == 200
    assert app["app_id"] == tenant.app_id
    assert app["plan"] == {"monthly_messages": 10, "api_rpm": 120, "auth_rpm": 60, "max_devices": 10}
    assert app["quota"]["used"] == 0 and app["quota"]["remaining"] == 10
    assert app["suspended"] is False
    assert [k["revoked"] for k in app["keys"]] == [False]
    assert tenant.key not in str(app), "a key is shown only when created"


def test_admin_token_is_required(stack):
    r = requests.post(f"{stack.api}/admin/v1/apps", json={"name": "x"}, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    assert r.json()["error"] == "unauthorized"
    assert requests.get(f"{stack.api}/admin/v1/apps/app_0000000000000000").status_code == 401


def test_operator_validation_and_unknown_apps(stack):
    status, body, _ = stack.admin("POST", "/admin/v1/apps", {"monthly_messages": -1})
    assert status == 422
    assert body["errors"]["name"] == ["The name field is required."]
    assert "monthly_messages" in body["errors"]
    assert stack.admin("GET", "/admin/v1/apps/app_0000000000000000")[0] == 404
    assert stack.admin("GET", "/admin/v1/apps/not-an-id")[0] == 404
    status, body, _ = stack.admin("PATCH", "/admin/v1/apps/app_0000000000000000", {"suspended": True})
    assert status == 404 and body["error"] == "not_found"


def test_revoked_key_stops_at_once_in_both_dialects(stack, new_tenant):
    tenant = new_tenant()
    status, second, _ = stack.admin("POST", f"/admin/v1/apps/{tenant.app_id}/keys", {})
    assert status == 201 and second["api_key"] != tenant.key
    assert tenant.get("/api/v1/devices").status_code == 200

    status, _, _ = stack.admin("DELETE", f"/admin/v1/apps/{tenant.app_id}/keys/{second['key_id']}")
    assert status == 204
    assert tenant.get("/api/v1/devices").status_code == 200, "revoking one key leaves the others working"
    key_id = stack.admin("GET", f"/admin/v1/apps/{tenant.app_id}")[1]["keys"][0]["key_id"]
    assert stack.admin("DELETE", f"/admin/v1/apps/{tenant.app_id}/keys/{key_id}")[0] == 204

    loginwa = tenant.post("/api/v1/messages/send", {"phone": "6281234567890", "message": "hi"})
    assert loginwa.status_code == 401
    assert loginwa.json() == {"error": "unauthorized", "message": loginwa.json()["message"]}
    spwp = tenant.post("/api/v1/public/messages/text", {"to": "6281234567890", "text": "hi"}, style="x-api-key")
    assert spwp.status_code == 401
    body = spwp.json()
    assert body["statusCode"] == 401 and body["code"] == "INVALID_API_KEY"
    assert body["path"] == "/api/v1/public/messages/text" and body["timestamp"] and body["details"] == []
    status, app, _ = stack.admin("GET", f"/admin/v1/apps/{tenant.app_id}")
    assert [k["revoked"] for k in app["keys"]] == [True, True]


def test_suspension_answers_402_in_both_dialects(stack, new_tenant):
    tenant = new_tenant()
    assert stack.admin("PATCH", f"/admin/v1/apps/{tenant.app_id}", {"suspended": True})[1]["suspended"] is True
    r = tenant.get("/api/v1/devices")
    assert r.status_code == 402 and r.json()["error"] == "subscription_suspended"
    r = tenant.post("/api/v1/public/messages/text", {"to": "6281234567890", "text": "hi"})
    assert r.status_code == 402 and r.json()["code"] == "SUBSCRIPTION_SUSPENDED"
    stack.admin("PATCH", f"/admin/v1/apps/{tenant.app_id}", {"suspended": False})
    assert tenant.get("/api/v1/devices").status_code == 200


def test_monthly_quota_is_enforced_and_failed_sends_are_refunded(stack, new_tenant):
    tenant = new_tenant(monthly_messages=2)
    tenant.link_device(fresh_phone("62811"))

    # WhatsApp's refusal is the answer (502 send_failed), and its unit goes back.
    failing = tenant.post("/api/v1/messages/send", {"phone": fresh_phone("997"), "message": "x"})
    assert failing.status_code == 502 and failing.json()["error"] == "send_failed"
    message_id = failing.json()["message_id"]
    eventually(lambda: tenant.get(f"/api/v1/public/messages/{message_id}").json()["data"]["status"] == "FAILED")
    eventually(lambda: stack.admin("GET", f"/admin/v1/apps/{tenant.app_id}")[1]["quota"]["used"] == 0)

    first, second = fresh_phone(), fresh_phone()
    ok = tenant.post("/api/v1/messages/send", {"phone": first, "message": "one"})
    assert ok.status_code == 200 and ok.json()["quota_remaining"] == 1
    ok = tenant.post("/api/v1/messages/send", {"phone": second, "message": "two"})
    assert ok.status_code == 200 and ok.json()["quota_remaining"] == 0
    over = tenant.post("/api/v1/messages/send", {"phone": first, "message": "three"})
    assert over.status_code == 429
    assert over.json() == {"error": "quota_exceeded", "message": "Monthly message quota exceeded", "quota_remaining": 0}
    eventually(lambda: len(inbox(stack, first)) == 1 and len(inbox(stack, second)) == 1)
    status, app, _ = stack.admin("GET", f"/admin/v1/apps/{tenant.app_id}")
    assert app["quota"]["used"] == 2 and app["quota"]["remaining"] == 0


def test_max_devices_is_enforced(stack, new_tenant):
    tenant = new_tenant(max_devices=1)
    assert tenant.post("/api/v1/devices", {}).status_code == 202
    r = tenant.post("/api/v1/devices", {})
    assert r.status_code == 403 and r.json()["error"] == "device_limit_reached" and r.json()["max_devices"] == 1
    assert tenant.get("/api/v1/devices").json()["count"] == 1


def test_concurrent_sends_cannot_overdraw_the_quota(stack, new_tenant):
    from concurrent.futures import ThreadPoolExecutor

    tenant = new_tenant(monthly_messages=10)
    tenant.link_device(fresh_phone("62828"))
    to = fresh_phone()
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: tenant.post("/api/v1/messages/send", {"phone": to, "message": f"q{i}"}).status_code, range(30)))
    assert codes.count(200) == 10 and codes.count(429) == 20
    eventually(lambda: len(inbox(stack, to)) == 10)
    assert stack.admin("GET", f"/admin/v1/apps/{tenant.app_id}")[1]["quota"]["remaining"] == 0


def test_operator_lists_every_app(stack, new_tenant):
    mine = {new_tenant().app_id, new_tenant().app_id}
    seen, page = {}, 1
    while True:
        status, body, _ = stack.admin("GET", f"/admin/v1/apps?page={page}")
        assert status == 200 and body["per_page"] == 50 and len(body["apps"]) <= 50
        seen.update({a["app_id"]: a for a in body["apps"]})
        if page >= body["last_page"]:
            break
        page += 1
    assert mine <= set(seen) and len(seen) == body["total"]
    assert all("api_key" not in a and "quota" in a for a in seen.values())
