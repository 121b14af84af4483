"""Production mode on the real stack: webhook URLs must be public https, checked when an
endpoint is saved and again at every delivery; one-time codes are never echoed."""

import time

import pytest

from conftest import ARTIFACTS, Receiver, Tenant, eventually, fresh_phone
from stack import Stack

REFUSED = [
    "http://127.0.0.1:9/hook",
    "https://127.0.0.1/hook",
    "https://localhost/hook",
    "https://api.localhost/hook",
    "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://10.1.2.3/hook",
    "https://172.16.0.1/hook",
    "https://192.168.1.1/hook",
    "https://100.64.0.1/hook",
    "https://169.254.169.254/latest/meta-data",
    "https://[fe80::1]/hook",
    "https://[fd00::1]/hook",
    "https://user:pw@example.com/hook",
    "http://example.com/hook",
]


@pytest.fixture(scope="module")
def dev_then_production():
    s = Stack.throwaway(ARTIFACTS / time.strftime("production-%Y%m%d-%H%M%S"))
    try:
        yield s.start()
    finally:
        s.stop()


def test_private_webhook_urls_are_refused_at_save_and_at_delivery(dev_then_production):
    stack = dev_then_production
    status, body, _ = stack.admin("POST", "/admin/v1/apps", {"name": "prod"})
    assert status == 201, body
    tenant = Tenant(stack, body["app_id"], body["api_key"])
    receiver = Receiver()
    try:
        # Saved while in development, where a loopback receiver is allowed…
        r = tenant.post("/api/v1/webhooks", {"url": receiver.url("/hook"), "retry_count": 0})
        assert r.status_code == 201, r.text
        hook = r.json()["id"]
        tenant.post(f"/api/v1/webhooks/{hook}/test")
        eventually(lambda: receiver.delivered("/hook"))

        stack.worker_vars["ENVIRONMENT"] = "production"
        stack.restart_worker()
        # …refused at delivery once the same state runs in production.
        tenant.post(f"/api/v1/webhooks/{hook}/test")
        [failed] = eventually(lambda: tenant.get(f"/api/v1/webhooks/{hook}/deliveries?status=failed").json()["deliveries"])
        assert failed["last_error"].startswith("URL refused") and failed["last_status_code"] is None
        assert len(receiver.requests) == 1

        for url in REFUSED:
            r = tenant.post("/api/v1/webhooks", {"url": url})
            assert r.status_code == 422 and list(r.json()["errors"]) == ["url"], (url, r.text)
            r = tenant.patch(f"/api/v1/webhooks/{hook}", {"url": url})
            assert r.status_code == 422, (url, r.text)
        assert tenant.post("/api/v1/webhooks", {"url": "https://hooks.example.com/wagate"}).status_code == 201

        tenant.link_device(fresh_phone("62837"))
        start = tenant.post("/api/auth/start", {"phone": fresh_phone()})
        assert start.status_code == 200 and start.json()["session_id"], start.text
        assert start.json()["debug_code"] is None, "always null in production (LoginWA reference)"
    finally:
        receiver.stop()
