"""A one-time code is never delivered after it expired, and a new code leaves the pending one
valid until the new one is accepted for sending (OTP_TTL_S is 6 s on the test stack)."""

from __future__ import annotations

import time

from conftest import OTP_COOLDOWN_S, OTP_TTL_S, eventually, fresh_phone, inbox


def start(tenant, phone: str):
    return tenant.post("/api/auth/start", {"phone": phone})


def verify(tenant, session_id: str, code: str):
    return tenant.post("/api/auth/verify", {"session_id": session_id, "otp_code": code})


def test_a_code_queued_while_the_bridge_is_down_expires_with_the_code(stack, new_tenant):
    """Before: the message waited in the device's queue past the code's lifetime and was sent
    once the bridge came back, a dead code on the user's phone. Now the queue fails it as
    `expired` when the code expires, and the phone never gets it."""
    tenant = new_tenant(monthly_messages=10)
    tenant.link_device(fresh_phone("62851"))
    phone = fresh_phone("62852")
    stack.kill_bridge()
    try:
        started = start(tenant, phone)
        assert started.status_code == 200, started.text
        time.sleep(OTP_TTL_S + 1)
    finally:
        stack.start_bridge()
        stack.wait_healthy()
    [failed] = eventually(lambda: [e for e in tenant.events("message.failed") if e["data"]["phone"] == phone], timeout=20)
    assert failed["data"]["error_code"] == "expired" and "one-time code" in failed["data"]["error_reason"]
    message = tenant.get(f"/api/v1/public/messages/{failed['data']['message_id']}").json()["data"]
    assert message["status"] == "FAILED"
    time.sleep(16)  # past the send retries' backoff (2 s, 4 s, 8 s) after the bridge came back
    assert inbox(stack, phone) == [], "the expired code was never delivered"
    status, app, _ = stack.admin("GET", f"/admin/v1/apps/{tenant.app_id}")
    assert app["quota"]["used"] == 0, "the unsent code's unit is given back"
    assert verify(tenant, started.json()["session_id"], started.json()["debug_code"]).json()["status"] == "expired"


def test_a_new_code_that_cannot_be_sent_leaves_the_pending_one_valid(stack, new_tenant):
    """Before: starting a new code voided the pending one first, so a new code refused for want
    of quota (429) left the user with no working code at all. Now the pending code stays valid
    until a new one is accepted for sending, and only then stops working."""
    tenant = new_tenant(monthly_messages=1)
    tenant.link_device(fresh_phone("62853"))
    phone = fresh_phone("62854")
    first = start(tenant, phone)
    assert first.status_code == 200, first.text
    time.sleep(OTP_COOLDOWN_S + 0.5)
    refused = start(tenant, phone)
    assert refused.status_code == 429 and refused.json()["error"] == "quota_exceeded", refused.text
    wrong = verify(tenant, first.json()["session_id"], "000000" if first.json()["debug_code"] != "000000" else "111111")
    assert wrong.status_code == 422 and wrong.json()["status"] == "invalid_code", "still pending, not voided"

    status, body, _ = stack.admin("PATCH", f"/admin/v1/apps/{tenant.app_id}", {"monthly_messages": 10})
    assert status == 200, body
    time.sleep(OTP_COOLDOWN_S + 0.5)
    second = start(tenant, phone)
    assert second.status_code == 200, second.text
    assert verify(tenant, first.json()["session_id"], first.json()["debug_code"]).json()["status"] == "expired", "voided once the new code was accepted"
    assert verify(tenant, second.json()["session_id"], second.json()["debug_code"]).json()["status"] == "verified"
    eventually(lambda: len(inbox(stack, phone)) == 2)
