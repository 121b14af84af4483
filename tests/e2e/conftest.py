"""One real stack per test session: the worker under `wrangler dev` and the bridge binary
(simulated WhatsApp engine), on free ports with their own state, always torn down."""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from stack import Stack  # noqa: E402

ARTIFACTS = ROOT / "tests" / "artifacts"
# Each number sends at most one message per PACE_MS; faster than production's default so bursts finish quickly.
PACE_MS = 20
# Messages wait this long for an offline device before they fail (production: a day).
QUEUE_EXPIRY_MS = 5000
# One-time codes live this long here (production: 300 s), and a phone gets a new one after the cooldown.
OTP_TTL_S = 6
OTP_COOLDOWN_S = 2
# A request holding an Idempotency-Key this long without answering is taken for dead (production: 60 s).
IDEMPOTENCY_LEASE_MS = 1500
# A LoginWA send waits this long for WhatsApp's outcome before answering as queued (production: 10 s).
SEND_WAIT_MS = 3000
# An endpoint failing without a break this long is disabled (production: 5 days).
WEBHOOK_DISABLE_AFTER_S = 8
CAMPAIGN_DELAY_SCALE = 0.02


@pytest.fixture(scope="session")
def stack():
    run_dir = ARTIFACTS / time.strftime("e2e-%Y%m%d-%H%M%S")
    s = Stack.throwaway(
        run_dir,
        # QR codes rotate fast enough to watch one rotate within a test.
        bridge_env={"WAGATE_SIM_QR_TTL_S": "2"},
        worker_vars={
            "DEVICE_PACE_MS": str(PACE_MS),
            "QUEUE_EXPIRY_MS": str(QUEUE_EXPIRY_MS),
            "OTP_TTL_S": str(OTP_TTL_S),
            "OTP_RESEND_COOLDOWN_S": str(OTP_COOLDOWN_S),
            # Webhook retries at 1/1000 of the production schedule: 5 ms, 300 ms, 1.8 s, 7.2 s, …
            "WEBHOOK_RETRY_SCALE": "0.001",
            "WEBHOOK_DISABLE_AFTER_S": str(WEBHOOK_DISABLE_AFTER_S),
            # Campaign delays at 1/50: `delay_seconds` 5 waits about 100 ms.
            "CAMPAIGN_DELAY_SCALE": str(CAMPAIGN_DELAY_SCALE),
            "IDEMPOTENCY_LEASE_MS": str(IDEMPOTENCY_LEASE_MS),
            "SEND_WAIT_MS": str(SEND_WAIT_MS),
            # Honours the `X-Wagate-Fault` header (development only), to break a send mid-way.
            "FAULT_INJECTION": "on",
        },
    )
    try:
        s.start()
        yield s
    finally:
        s.stop()


def eventually(probe, timeout: float = 20.0, interval: float = 0.1):
    """Polls `probe` until it returns something truthy; fails with its last value otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


class Tenant:
    """An app on the stack, seen through its API key."""

    def __init__(self, stack: Stack, app_id: str, key: str):
        self.stack, self.app_id, self.key = stack, app_id, key

    def headers(self, style: str = "bearer") -> dict:
        return {"X-API-Key": self.key} if style == "x-api-key" else {"Authorization": f"Bearer {self.key}"}

    def get(self, path: str, headers=None, **kw) -> requests.Response:
        return requests.get(self.stack.api + path, headers={**self.headers(), **(headers or {})}, timeout=30, **kw)

    def put(self, path: str, body, headers=None) -> requests.Response:
        return requests.put(self.stack.api + path, json=body, headers={**self.headers(), **(headers or {})}, timeout=30)

    def patch(self, path: str, body) -> requests.Response:
        return requests.patch(self.stack.api + path, json=body, headers=self.headers(), timeout=30)

    def delete(self, path: str) -> requests.Response:
        return requests.delete(self.stack.api + path, headers=self.headers(), timeout=30)

    def device(self, device_id: str) -> dict:
        return self.get(f"/api/v1/devices/{device_id}").json()

    def scoped_to(self, device_id: str) -> "Tenant":
        """The same app through a new key bound to one device, as SPWP keys are."""
        status, body, _ = self.stack.admin("POST", f"/admin/v1/apps/{self.app_id}/keys", {"device_id": device_id})
        assert status == 201, body
        return Tenant(self.stack, self.app_id, body["api_key"])

    def events(self, name: str) -> list:
        status, body, _ = self.stack.admin("GET", f"/admin/v1/apps/{self.app_id}/events?limit=1000")
        assert status == 200, body
        return [e for e in body["events"] if e["event"] == name]

    def post(self, path: str, body=None, style: str = "bearer", headers=None, **kw) -> requests.Response:
        return requests.post(self.stack.api + path, json=body, headers={**self.headers(style), **(headers or {})}, timeout=30, **kw)

    def link_device(self, phone: str, label: str = "test phone") -> str:
        created = self.post("/api/v1/devices", {"label": label})
        assert created.status_code == 202, created.text
        device_id = created.json()["device_id"]
        eventually(lambda: self.get(f"/api/v1/devices/{device_id}").json()["status"] == "qr_waiting")
        status, body, _ = self.stack.sim("POST", f"/sim/devices/{device_id}/scan", {"phone": phone})
        assert status == 200, body
        eventually(lambda: self.get(f"/api/v1/devices/{device_id}").json()["status"] == "online")
        return device_id


@pytest.fixture
def new_tenant(stack):
    def make(**plan) -> Tenant:
        # Tests poll a lot; the per-minute limits get their own test (test_limits.py).
        plan = {"api_rpm": 1_000_000, "auth_rpm": 1_000_000, **plan}
        status, body, _ = stack.admin("POST", "/admin/v1/apps", {"name": "e2e", **plan})
        assert status == 201, body
        return Tenant(stack, body["app_id"], body["api_key"])

    return make


def statuses(tenant: Tenant, ids: list) -> list:
    return [tenant.get(f"/api/v1/public/messages/{i}").json()["data"]["status"] for i in ids]


def settled(tenant: Tenant, ids: list, timeout: float = 60.0) -> list:
    """The final statuses of `ids`, once every one is READ or FAILED."""

    def probe():
        current = statuses(tenant, ids)
        return all(s in ("READ", "FAILED") for s in current) and current

    return eventually(probe, timeout=timeout, interval=0.5)


def burst(tenant: Tenant, to: str, count: int, prefix: str = "burst", parallel: int = 1) -> list:
    """Sends `count` numbered texts to `to` through SPWP, which answers once queued (LoginWA waits
    for each message's outcome); returns their ids in text order. With `parallel` > 1 the requests
    overlap, so the queue fills faster than it drains."""

    def send(i: int) -> str:
        r = tenant.post("/api/v1/public/messages/text", {"to": to, "text": f"{prefix} {i:03d}"})
        assert r.status_code == 202, r.text
        return r.json()["data"]["id"]

    if parallel == 1:
        return [send(i) for i in range(count)]
    with ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(send, range(count)))


def inbox(stack: Stack, phone: str) -> list:
    status, body, _ = stack.sim("GET", f"/sim/phones/{phone}/messages")
    assert status == 200, body
    return body


_phone_counter = iter(range(10**6))


def fresh_phone(prefix: str = "62877") -> str:
    """A recipient number no other test uses, so inbox assertions are exact."""
    return f"{prefix}{int(time.time()) % 100000:05d}{next(_phone_counter):03d}"


class Receiver:
    """A local webhook receiver that records every request and can be told to fail or vanish."""

    def __init__(self):
        self.requests, self.mode, self.server = [], "ok", None
        self.holds = {}  # path -> threading.Event: requests to that path wait for it before answering
        probe = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
        self.port = probe.server_address[1]
        probe.server_close()
        self.start()

    def start(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path in receiver.holds:
                    receiver.holds[self.path].wait(30)
                receiver.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body, "answered": 500 if receiver.mode == "fail" else 200})
                self.send_response(500 if receiver.mode == "fail" else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        """Connection refused from now on."""
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def delivered(self, path: str) -> list:
        return [r for r in self.requests if r["path"] == path and r["answered"] == 200]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    try:
        r.stop()
    except Exception:
        pass
