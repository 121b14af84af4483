"""Access control on the real stack: the IP allow-list (single addresses and CIDR ranges, v4 and
v6), per-address throttling of failed authentications, key expiry and listing, the audit trail.

Locally, wrangler dev sets `CF-Connecting-IP` from the socket unless the request already carries
one, so these tests present client addresses by sending the header (Cloudflare's edge overwrites it)."""

import time
from datetime import datetime, timedelta, timezone

import requests

from conftest import Tenant, fresh_phone

WHITELIST = "/api/v1/ip-whitelist"


def from_ip(ip: str) -> dict:
    return {"CF-Connecting-IP": ip}


def test_allow_list_admits_listed_addresses_and_ranges_only(stack, new_tenant):
    tenant = new_tenant()
    r = tenant.put(f"{WHITELIST}/restriction", {"enabled": True})
    assert r.status_code == 422 and "enabled" in r.json()["errors"], "cannot enable an empty list"
    for entry in ("203.0.113.7", "198.51.100.0/24", "2001:db8::/32"):
        added = tenant.post(WHITELIST, {"ip_address": entry, "label": "office"})
        assert added.status_code == 201 and added.json()["ip_address"] == entry, "answers what it was given"
    for same in ("203.0.113.7", "203.0.113.7/32"):
        r = tenant.post(WHITELIST, {"ip_address": same})
        assert r.status_code == 409 and r.json()["error"] == "conflict", same
    r = tenant.post(WHITELIST, {"ip_address": "10.1.2.3/8"})
    assert r.status_code == 422 and "host bits" in r.json()["errors"]["ip_address"][0]
    r = tenant.put(f"{WHITELIST}/restriction", {"enabled": True})
    assert r.status_code == 200 and r.json()["restriction_enabled"] is True and r.json()["count"] == 3

    for inside in ("203.0.113.7", "198.51.100.42", "2001:db8:5::1"):
        assert tenant.get("/api/v1/devices", headers=from_ip(inside)).status_code == 200, inside
    outside = tenant.get("/api/v1/devices", headers=from_ip("203.0.113.8"))
    assert outside.status_code == 403 and outside.json() == {
        "error": "ip_not_allowed", "message": "Your IP address is not whitelisted for this API key.", "ip": "203.0.113.8"}
    spwp = tenant.post("/api/v1/public/messages/text", {"to": fresh_phone(), "text": "x"}, headers=from_ip("2001:db9::1"))
    assert spwp.status_code == 403 and spwp.json()["code"] == "IP_NOT_ALLOWED"
    # The list's own endpoints stay reachable from anywhere, so a client can fix its list.
    listed = tenant.get(WHITELIST, headers=from_ip("192.0.2.1"))
    assert listed.status_code == 200 and {e["ip_address"] for e in listed.json()["ips"]} == {
        "203.0.113.7", "198.51.100.0/24", "2001:db8::/32"}
    single = next(e["id"] for e in listed.json()["ips"] if e["ip_address"] == "203.0.113.7")
    assert tenant.delete(f"{WHITELIST}/{single}").status_code == 200
    assert tenant.get("/api/v1/devices", headers=from_ip("203.0.113.7")).status_code == 403
    assert tenant.put(f"{WHITELIST}/restriction", {"enabled": False}, headers=from_ip("192.0.2.1")).status_code == 200
    assert tenant.get("/api/v1/devices", headers=from_ip("192.0.2.1")).status_code == 200

    _, audit, _ = stack.admin("GET", f"/admin/v1/apps/{tenant.app_id}/audit")
    actions = [a["action"] for a in audit["audit"]]
    assert actions[:3] == ["ip_whitelist.restriction", "ip_whitelist.removed", "ip_whitelist.restriction"]
    assert actions.count("ip_whitelist.added") == 3
    assert all(a["actor"].startswith("key:key_") for a in audit["audit"] if a["action"].startswith("ip_"))


def test_a_single_address_answers_bare_however_it_was_written(stack, new_tenant):
    tenant = new_tenant()
    for given, shown in (("203.0.113.5/32", "203.0.113.5"), ("2001:db8::1/128", "2001:db8::1"), ("2001:db8:0::2", "2001:db8::2")):
        r = tenant.post(WHITELIST, {"ip_address": given})
        assert r.status_code == 201 and r.json()["ip_address"] == shown, r.text
    assert tenant.post(WHITELIST, {"ip_address": "203.0.113.5"}).status_code == 409
    assert {e["ip_address"] for e in tenant.get(WHITELIST).json()["ips"]} == {"203.0.113.5", "2001:db8::1", "2001:db8::2"}
    for hostile in ("203.0.113.5/33", "x" * 5000, "203.0.113.5/32/1", ""):
        r = tenant.post(WHITELIST, {"ip_address": hostile})
        assert r.status_code == 422 and r.json()["error"] == "validation_failed" and "ip_address" in r.json()["errors"], hostile
    other = new_tenant()
    assert other.get(WHITELIST).json()["ips"] == [], "another tenant's list is its own"


def test_guessing_keys_from_one_address_is_throttled_for_every_key(stack, new_tenant):
    tenant = new_tenant()
    attacker = from_ip("198.18.0.7")
    guesses = [requests.get(f"{stack.api}/api/v1/devices", headers={**attacker, "Authorization": f"Bearer wg_live_guess{i}"}) for i in range(25)]
    codes = [r.status_code for r in guesses]
    assert codes[:20] == [401] * 20 and set(codes[20:]) == {429}, codes
    assert int(guesses[-1].headers["Retry-After"]) >= 1
    assert guesses[-1].json()["error"] == "rate_limited"
    # Over budget, the address is refused before any key is checked (test_hostile_input.py).
    assert tenant.get("/api/v1/devices", headers=attacker).status_code == 429, "not even a valid key is tested"
    r = requests.get(f"{stack.api}/api/v1/devices", headers={**from_ip("198.18.0.8"), "Authorization": "Bearer wg_live_nope"})
    assert r.status_code == 401, "other addresses are not affected"


def test_guessing_the_admin_token_is_throttled_the_same_way(stack):
    attacker = from_ip("198.18.0.9")
    guesses = [requests.get(f"{stack.api}/admin/v1/apps", headers={**attacker, "Authorization": f"Bearer guess{i}"}) for i in range(25)]
    codes = [r.status_code for r in guesses]
    assert codes[:20] == [401] * 20 and set(codes[20:]) == {429}, codes
    assert guesses[-1].json()["error"] == "rate_limited" and int(guesses[-1].headers["Retry-After"]) >= 1
    right = requests.get(f"{stack.api}/admin/v1/apps", headers={**attacker, "Authorization": f"Bearer {stack.admin_token}"})
    assert right.status_code == 429, "the token is not compared while the address is over budget"
    assert stack.admin("GET", "/admin/v1/apps")[0] == 200, "from another address it works"


def test_keys_expire_by_themselves_and_are_listed_without_secrets(stack, new_tenant):
    tenant = new_tenant()
    soon = (datetime.now(timezone.utc) + timedelta(seconds=2)).isoformat()
    status, created, _ = stack.admin("POST", f"/admin/v1/apps/{tenant.app_id}/keys", {"expires_at": soon})
    assert status == 201 and created["expires_at"], created
    short = Tenant(stack, tenant.app_id, created["api_key"])
    assert short.get("/api/v1/devices").status_code == 200
    status, _, _ = stack.admin("POST", f"/admin/v1/apps/{tenant.app_id}/keys", {"expires_at": "2020-01-01T00:00:00Z"})
    assert status == 422
    time.sleep(2.5)
    assert short.get("/api/v1/devices").status_code == 401
    assert tenant.get("/api/v1/devices").status_code == 200, "the app's other key is unaffected"

    status, listed, _ = stack.admin("GET", f"/admin/v1/apps/{tenant.app_id}/keys")
    assert status == 200
    by_id = {k["key_id"]: k for k in listed["keys"]}
    expired = by_id[created["key_id"]]
    assert expired["state"] == "expired" and expired["last_used_at"] and created["api_key"].startswith(expired["prefix"])
    assert all("api_key" not in k and "hash" not in k for k in listed["keys"])
    assert sum(k["state"] == "active" for k in listed["keys"]) == 1

    stack.admin("DELETE", f"/admin/v1/apps/{tenant.app_id}/keys/{created['key_id']}")
    stack.admin("PATCH", f"/admin/v1/apps/{tenant.app_id}", {"suspended": True})
    stack.admin("PATCH", f"/admin/v1/apps/{tenant.app_id}", {"suspended": False, "quota_used": 7})
    _, app, _ = stack.admin("GET", f"/admin/v1/apps/{tenant.app_id}")
    assert app["quota"]["used"] == 7, "the operator can correct usage"
    _, audit, _ = stack.admin("GET", f"/admin/v1/apps/{tenant.app_id}/audit")
    trail = [(a["action"], a["actor"]) for a in audit["audit"]]
    assert trail[:4] == [("app.unsuspended", "operator"), ("app.suspended", "operator"), ("key.revoked", "operator"), ("key.created", "operator")]
    assert audit["audit"][0]["detail"] == {"suspended": False, "quota_used": 7} and audit["audit"][0]["at"]
