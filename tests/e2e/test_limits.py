"""Per-key request limits (GCRA in the app's object) with IETF RateLimit headers."""

import re

import requests


def test_per_minute_limit_with_headers_and_no_effect_on_other_apps(stack, new_tenant):
    limited, other = new_tenant(api_rpm=5, auth_rpm=2), new_tenant(api_rpm=5)
    for remaining in (4, 3, 2, 1, 0):
        r = limited.get("/api/v1/devices")
        assert r.status_code == 200
        assert r.headers["RateLimit-Policy"] == '"default";q=5;w=60'
        assert re.fullmatch(rf'"default";r={remaining};t=\d+', r.headers["RateLimit"]), r.headers["RateLimit"]
    r = limited.get("/api/v1/devices")
    assert r.status_code == 429 and r.json()["error"] == "rate_limited"
    assert int(r.headers["Retry-After"]) >= 1 and r.headers["RateLimit"].startswith('"default";r=0;')
    r = limited.post("/api/v1/public/messages/text", {"to": "6281234567890", "text": "x"})
    assert r.status_code == 429 and r.json()["code"] == "RATE_LIMITED" and r.headers["Retry-After"]
    assert other.get("/api/v1/devices").status_code == 200, "another app's key is unaffected"

    # /api/auth/* counts separately, against auth_rpm.
    for _ in range(2):
        assert limited.post("/api/auth/verify", {"session_id": "x", "otp_code": "1"}).status_code == 422
    r = limited.post("/api/auth/verify", {"session_id": "x", "otp_code": "1"})
    assert r.status_code == 429 and r.headers["RateLimit-Policy"] == '"default";q=2;w=60'


def test_unauthenticated_requests_carry_no_rate_headers(stack):
    r = requests.get(f"{stack.api}/api/v1/devices", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and "RateLimit" not in r.headers
