"""OTP verification end to end: the code travels over (simulated) WhatsApp to the virtual phone,
is read from there and verified; wrong codes, expiry, throttling and priority over bulk traffic."""

import re
import time

import pytest

from conftest import OTP_COOLDOWN_S, OTP_TTL_S, burst, eventually, fresh_phone, inbox


def code_on(stack, phone: str, nth: int = 1) -> str:
    """The code in the `nth` message the phone received, as its owner would read it."""
    texts = eventually(lambda: len(m := inbox(stack, phone)) >= nth and m)
    match = re.search(r"\b(\d{4,8})\b", texts[nth - 1]["text"])
    assert match, texts[nth - 1]
    return match.group(1)


@pytest.fixture(scope="module")
def login(stack):
    """An app with a linked number, as a product's login backend."""
    from conftest import Tenant

    status, body, _ = stack.admin("POST", "/admin/v1/apps", {"name": "otp", "api_rpm": 1_000_000, "auth_rpm": 1_000_000, "monthly_messages": 5000})
    assert status == 201
    tenant = Tenant(stack, body["app_id"], body["api_key"])
    tenant.link_device(fresh_phone("62826"))
    return tenant


def test_code_arrives_on_the_phone_and_verifies_once(stack, login):
    phone = fresh_phone()
    r = login.post("/api/auth/start", {"phone": phone})
    assert r.status_code == 200, r.text
    started = r.json()
    assert started["expires_in"] == OTP_TTL_S and re.fullmatch(r"[0-9a-f-]{36}", started["session_id"])
    code = code_on(stack, phone)
    assert len(code) == 6 and started["debug_code"] == code, "debug_code is shown in development only"
    assert "Do not share" in inbox(stack, phone)[0]["text"]

    r = login.post("/api/auth/verify", {"session_id": started["session_id"], "otp_code": code})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "verified" and r.json()["phone_number"] == phone
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", r.json()["verified_at"]), "the reference's 2026-06-01T12:00:00Z"
    again = login.post("/api/auth/verify", {"session_id": started["session_id"], "otp_code": code})
    assert again.status_code == 422 and again.json()["status"] == "expired", "a session verifies at most once"
    [event] = eventually(lambda: [e for e in login.events("otp.verified") if e["data"]["session_id"] == started["session_id"]])
    assert event["data"]["phone_number"] == phone


def test_custom_length_and_template(stack, login):
    phone = fresh_phone()
    r = login.post("/api/auth/start", {"phone": phone, "otp_length": 4, "message_template": "Kode masuk Anda: {code}"})
    assert r.status_code == 200
    code = code_on(stack, phone)
    assert inbox(stack, phone)[0]["text"] == f"Kode masuk Anda: {code}" and len(code) == 4


def test_invalid_requests(login):
    cases = [
        ({}, "phone"),
        ({"phone": "6281234567890", "otp_length": 9}, "otp_length"),
        ({"phone": "6281234567890", "otp_length": 3}, "otp_length"),
        ({"phone": "6281234567890", "message_template": "no placeholder"}, "message_template"),
        ({"phone": "6281234567890", "message_template": "{code}" + "x" * 1024}, "message_template"),
        ({"phone": "12"}, "phone"),
    ]
    for body, field in cases:
        r = login.post("/api/auth/start", body)
        assert r.status_code == 422 and list(r.json()["errors"]) == [field], (body, r.text)
    r = login.post("/api/auth/verify", {"session_id": "nope", "otp_code": "123456"})
    assert r.status_code == 422 and r.json()["status"] == "expired"


def test_country_code_completes_a_national_number(stack, login):
    """The reference's `country_code`: "default country code if not in phone"."""
    for given, national in (("62", lambda p: p[2:]), ("+62", lambda p: "0" + p[2:]), ("62", lambda p: p), ("+62", lambda p: "+" + p)):
        phone = fresh_phone()
        r = login.post("/api/auth/start", {"phone": national(phone), "country_code": given})
        assert r.status_code == 200, (given, national(phone), r.text)
        code = code_on(stack, phone)
        verified = login.post("/api/auth/verify", {"session_id": r.json()["session_id"], "otp_code": code})
        assert verified.status_code == 200 and verified.json()["phone_number"] == phone, (given, national(phone))
    abroad = fresh_phone("1415")
    r = login.post("/api/auth/start", {"phone": "+" + abroad, "country_code": "62"})
    assert r.status_code == 200 and code_on(stack, abroad), "a number written with + keeps its own country code"


def test_an_invalid_country_code_is_a_validation_error(login):
    for bad in ("6a", "12345", "+", "0", "062", "６２", "6" * 10_000):
        r = login.post("/api/auth/start", {"phone": "81234567890", "country_code": bad})
        assert r.status_code == 422, (bad, r.text)
        assert r.json() == {"error": "validation_failed", "message": "Invalid request parameters",
                            "errors": {"country_code": [r.json()["errors"]["country_code"][0]]}}, r.text
        assert r.json()["errors"]["country_code"][0].startswith("The country code field must "), r.text
    r = login.post("/api/auth/start", {"phone": "81234567890", "country_code": 62})
    assert r.status_code == 422 and r.json()["errors"] == {"country_code": ["The country code field must be a string."]}


def test_five_wrong_codes_lock_the_session(stack, login):
    phone = fresh_phone()
    session = login.post("/api/auth/start", {"phone": phone}).json()["session_id"]
    code = code_on(stack, phone)
    wrong = "000000" if code != "000000" else "111111"
    for left in (4, 3, 2, 1):
        r = login.post("/api/auth/verify", {"session_id": session, "otp_code": wrong})
        assert r.status_code == 422 and r.json()["status"] == "invalid_code" and r.json()["attempts_remaining"] == left
    r = login.post("/api/auth/verify", {"session_id": session, "otp_code": wrong})
    assert r.status_code == 422 and r.json()["status"] == "max_attempts"
    r = login.post("/api/auth/verify", {"session_id": session, "otp_code": code})
    assert r.status_code == 422 and r.json()["status"] == "max_attempts", "even the right code, after five failures"


def test_codes_expire(stack, login):
    phone = fresh_phone()
    session = login.post("/api/auth/start", {"phone": phone}).json()["session_id"]
    code = code_on(stack, phone)
    [event] = eventually(
        lambda: [e for e in login.events("otp.expired") if e["data"]["session_id"] == session],
        timeout=OTP_TTL_S + 20,
        interval=0.5,
    )
    assert event["data"]["phone_number"] == phone
    r = login.post("/api/auth/verify", {"session_id": session, "otp_code": code})
    assert r.status_code == 422 and r.json()["status"] == "expired"


def test_resend_cooldown_and_a_new_code_replaces_the_old(stack, login):
    phone = fresh_phone()
    first = login.post("/api/auth/start", {"phone": phone}).json()["session_id"]
    old_code = code_on(stack, phone)
    r = login.post("/api/auth/start", {"phone": phone})
    assert r.status_code == 429 and r.json()["error"] == "rate_limited"
    assert 1 <= int(r.headers["Retry-After"]) <= OTP_COOLDOWN_S
    time.sleep(int(r.headers["Retry-After"]))
    second = login.post("/api/auth/start", {"phone": phone})
    assert second.status_code == 200, second.text
    new_code = code_on(stack, phone, nth=2)
    r = login.post("/api/auth/verify", {"session_id": first, "otp_code": old_code})
    assert r.status_code == 422 and r.json()["status"] == "expired", "the newer code invalidates the older session"
    r = login.post("/api/auth/verify", {"session_id": second.json()["session_id"], "otp_code": new_code})
    assert r.status_code == 200


def test_a_code_overtakes_a_queued_burst(stack, new_tenant):
    tenant = new_tenant(monthly_messages=1000)
    tenant.link_device(fresh_phone("62827"))
    bulk_to = fresh_phone()
    burst(tenant, bulk_to, 500, prefix="bulk", parallel=8)
    queued_before = 500 - len(inbox(stack, bulk_to))
    phone = fresh_phone()
    assert tenant.post("/api/auth/start", {"phone": phone}).status_code == 200
    code_on(stack, phone)
    delivered_bulk = len(inbox(stack, bulk_to))
    assert queued_before > 100, "the burst was still queued when the code was asked for"
    assert delivered_bulk < 500, "the code arrived before the burst drained"


def test_a_code_whatsapp_refuses_answers_502_and_leaves_no_session(stack, new_tenant):
    tenant = new_tenant(monthly_messages=100)
    tenant.link_device(fresh_phone("62832"))
    phone = fresh_phone("999")  # not on WhatsApp
    r = tenant.post("/api/auth/start", {"phone": phone})
    assert r.status_code == 502, r.text
    body = r.json()
    assert set(body) == {"error", "message", "message_id", "error_code", "error_reason"}, body
    assert (body["error"], body["message"], body["error_code"]) == (
        "send_failed", "WhatsApp engine failed to send the message", "not_on_whatsapp")
    assert tenant.get(f"/api/v1/public/messages/{body['message_id']}").json()["data"]["status"] == "FAILED"
    # The session ended with its send: no cooldown holds the number, and no code of it verifies.
    again = tenant.post("/api/auth/start", {"phone": phone})
    assert again.status_code == 502, "not throttled: the refused code never counted"
    assert tenant.post("/api/auth/start", {"phone": fresh_phone("997")}).status_code == 502
    eventually(lambda: stack.admin("GET", f"/admin/v1/apps/{tenant.app_id}")[1]["quota"]["used"] == 0)
    # A session still held would expire, and say so: these were ended when their send failed.
    time.sleep(OTP_TTL_S + 2)
    assert tenant.events("otp.expired") == []
