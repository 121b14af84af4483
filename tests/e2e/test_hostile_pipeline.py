"""Hostile input against the event pipeline (issue 15, part 1): what a modified WhatsApp client sends
cannot stop the bridge's events, an event the worker refuses for good becomes a dead letter the
operator can list and replay, and one device's stuck events do not hold up another device.

The simulator's `unchecked` inbound hands content to the bridge as the real engine decodes it. For
the refusals and stalls the worker itself would have to produce, a stack of its own puts a small
forwarding proxy between the bridge and the worker (the worker still applies every event it gets)."""

import hashlib
import hmac
import json
import re
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from conftest import ARTIFACTS, Tenant, eventually, fresh_phone
from stack import Stack

PROMPTLY_S = 5.0


def incoming(tenant: Tenant, external_id: str) -> list:
    return [e for e in tenant.events("message.incoming") if e["data"]["external_id"] == external_id]


def inbound(stack: Stack, body: dict) -> str:
    status, answer, _ = stack.sim("POST", "/sim/inbound", body)
    assert status == 200, answer
    return answer["external_id"]


def metric(stack: Stack, name: str) -> float:
    text = requests.get(f"{stack.bridge_url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_nan_location_is_refused_at_the_bridge_and_what_follows_arrives_promptly(stack, new_tenant):
    """Before: the sim refused "NaN"; the real engine passed it on, serde_json wrote it as null, the worker
    answered 422 and the bridge retried that event forever, holding every event of every device behind it."""
    tenant = new_tenant()
    sender = fresh_phone("14155")
    device = tenant.link_device(fresh_phone("62898"))
    refused_before = metric(stack, 'wagate_bridge_inbound_refusals_total{reason="coordinates"}')
    nan = inbound(stack, {"device_id": device, "from": sender, "unchecked": True, "location": {"latitude": "NaN", "longitude": 10}})
    far = inbound(stack, {"device_id": device, "from": sender, "unchecked": True, "location": {"latitude": 91, "longitude": "-Infinity"}})
    started = time.monotonic()
    hello = inbound(stack, {"device_id": device, "from": sender, "text": "right after"})
    sent = tenant.post("/api/v1/messages/send", {"phone": fresh_phone(), "message": "and a receipt"})
    assert sent.status_code == 200, sent.text
    [event] = eventually(lambda: incoming(tenant, hello), timeout=PROMPTLY_S)
    assert event["data"]["body"] == "right after"
    eventually(lambda: tenant.get(f"/api/v1/public/messages/{sent.json()['message_id']}").json()["data"]["status"] == "READ", timeout=PROMPTLY_S)
    assert time.monotonic() - started < PROMPTLY_S
    assert incoming(tenant, nan) == [] and incoming(tenant, far) == []
    assert metric(stack, 'wagate_bridge_inbound_refusals_total{reason="coordinates"}') == refused_before + 2


def test_unknown_kinds_oversized_texts_and_bad_senders_are_refused_and_decoration_is_trimmed(stack, new_tenant):
    """Before: the sim had no way to send them; from the real engine, an unbounded name or text went to the
    worker as it came and an unknown kind was silently skipped."""
    tenant = new_tenant()
    sender = fresh_phone("14155")
    device = tenant.link_device(fresh_phone("62898"))
    poll = inbound(stack, {"device_id": device, "from": sender, "unchecked": True, "kind": "poll"})
    huge = inbound(stack, {"device_id": device, "from": sender, "unchecked": True, "text": "x" * 70_000})
    lid = inbound(stack, {"device_id": device, "from": "98765432101234@lid", "unchecked": True, "text": "who am I"})
    bad_id = inbound(stack, {"device_id": device, "from": sender, "unchecked": True, "external_id": "3EB0 bad\n", "text": "hi"})
    named = inbound(stack, {"device_id": device, "from": sender, "unchecked": True, "name": "N" * 100_000, "text": "named"})
    [event] = eventually(lambda: incoming(tenant, named), timeout=PROMPTLY_S)
    assert len(event["data"]["name"]) == 256
    assert all(incoming(tenant, i) == [] for i in (poll, huge, lid)), "refused at the bridge"
    assert bad_id == "3EB0 bad\n" and not [e for e in tenant.events("message.incoming") if e["data"]["body"] == "hi"]
    assert metric(stack, 'wagate_bridge_inbound_refusals_total{reason="unsupported_kind"}') >= 1
    assert metric(stack, 'wagate_bridge_inbound_refusals_total{reason="text"}') >= 1
    assert metric(stack, 'wagate_bridge_inbound_refusals_total{reason="sender"}') >= 1


def sign(secret: str, ts: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{ts}.POST./bridge/v1/events.".encode() + body, hashlib.sha256).hexdigest()


def test_the_worker_refuses_an_unreadable_event_for_good(stack, new_tenant):
    """What made the pipeline stop, shown on the worker: a location whose latitude serde_json wrote as
    null (NaN) is answered 422, every time; the bridge used to retry it forever."""
    tenant = new_tenant()
    device = tenant.link_device(fresh_phone("62898"))
    body = json.dumps({"event_id": "evt_" + "0" * 31 + "1", "device_id": device, "at_ms": int(time.time() * 1000), "type": "inbound",
                       "external_id": "3EB0NAN", "from": "14155552671@s.whatsapp.net",
                       "content": {"type": "location", "latitude": None, "longitude": 10.0}}).encode()
    for _ in range(2):
        ts = int(time.time())
        r = requests.post(f"{stack.api}/bridge/v1/events", data=body, timeout=10,
                          headers={"x-wagate-timestamp": str(ts), "x-wagate-signature": sign(stack.bridge_secret, ts, body)})
        assert r.status_code == 422, r.text


class WorkerProxy:
    """Forwards the bridge's event posts to the worker, except those it is told to refuse (422, as the
    worker answers an event it cannot read) or to fail (503) for one device."""

    def __init__(self, target: str):
        self.target, self.refuse_marker, self.failing_device = target, None, None
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if proxy.refuse_marker and proxy.refuse_marker.encode() in body:
                    return self.answer(422, b'{"error":"validation_failed","message":"Invalid request parameters"}')
                if proxy.failing_device and proxy.failing_device.encode() in body:
                    return self.answer(503, b'{"error":"unavailable"}')
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "x-wagate-timestamp", "x-wagate-signature")}
                request = urllib.request.Request(proxy.target + self.path, data=body, method="POST", headers=headers)
                try:
                    with urllib.request.urlopen(request, timeout=15) as r:
                        self.answer(r.status, r.read())
                except urllib.error.HTTPError as e:
                    self.answer(e.code, e.read())

            def answer(self, status: int, body: bytes):
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture(scope="module")
def proxied():
    s = Stack.throwaway(ARTIFACTS / time.strftime("pipeline-%Y%m%d-%H%M%S"), worker_vars={"DEVICE_PACE_MS": "20"})
    proxy = WorkerProxy(s.api)
    s.bridge_env["WAGATE_WORKER_URL"] = proxy.url
    try:
        s.start()
        yield s, proxy
    finally:
        s.stop()
        proxy.server.shutdown()


def tenant_on(s: Stack) -> Tenant:
    status, created, _ = s.admin("POST", "/admin/v1/apps", {"name": "pipeline", "api_rpm": 10**6})
    assert status == 201, created
    return Tenant(s, created["app_id"], created["api_key"])


def dead_letters(s: Stack) -> list:
    status, body, _ = s.admin("GET", "/admin/v1/bridge/dead-letters")
    assert status == 200, body
    return body["dead_letters"]


def test_an_event_the_worker_refuses_for_good_becomes_a_dead_letter_that_can_be_replayed(proxied):
    """Before: the bridge retried the refused event forever and every later event of every device waited."""
    s, proxy = proxied
    tenant = tenant_on(s)
    sender = fresh_phone("14155")
    device = tenant.link_device(fresh_phone("62898"))
    proxy.refuse_marker = "refuse me"
    counted = metric(s, 'wagate_bridge_events_dead_lettered_total{status="422"}')
    refused = inbound(s, {"device_id": device, "from": sender, "text": "refuse me"})
    after = inbound(s, {"device_id": device, "from": sender, "text": "after it"})
    eventually(lambda: incoming(tenant, after), timeout=PROMPTLY_S)
    [dead] = eventually(lambda: [d for d in dead_letters(s) if d["device_id"] == device], timeout=PROMPTLY_S)
    assert (dead["type"], dead["status"], dead["error"]) == ("inbound", 422, "validation_failed")
    assert re.fullmatch(r"evt_[0-9a-f]{32}", dead["id"]) and "refuse me" not in json.dumps(dead), "no message text"
    assert metric(s, 'wagate_bridge_events_dead_lettered_total{status="422"}') == counted + 1
    assert metric(s, "wagate_bridge_dead_letters") >= 1
    assert incoming(tenant, refused) == []

    proxy.refuse_marker = None  # the cause is fixed
    status, body, _ = s.admin("POST", f"/admin/v1/bridge/dead-letters/{dead['id']}/replay")
    assert (status, body) == (202, {"replayed": dead["id"]})
    [event] = eventually(lambda: incoming(tenant, refused), timeout=PROMPTLY_S)
    assert event["data"]["body"] == "refuse me"
    assert not [d for d in dead_letters(s) if d["id"] == dead["id"]]
    status, body, _ = s.admin("POST", f"/admin/v1/bridge/dead-letters/{dead['id']}/replay")
    assert (status, body["error"]) == (404, "not_found"), "replayed once"
    status, body, _ = s.admin("POST", "/admin/v1/bridge/dead-letters/../../v1/devices/replay")
    assert status == 404, body


def test_dead_letters_need_the_admin_token(proxied):
    """Before: there were no dead letters to list."""
    s, _ = proxied
    r = requests.get(f"{s.api}/admin/v1/bridge/dead-letters", headers={"authorization": "Bearer wrong"}, timeout=10)
    assert r.status_code == 401, r.text
    r = requests.get(f"{s.bridge_url}/v1/dead-letters", timeout=10)
    assert r.status_code == 401, "the bridge's own route is signed"
    status, body, _ = s.admin("GET", "/admin/v1/bridge/dead-letters?limit=0")
    assert status == 422, body


def test_one_devices_stuck_events_do_not_delay_another_devices(proxied):
    """Before: the outbox was one global queue; a device whose event the worker kept failing (5xx) held up
    every other device's events until it went through."""
    s, proxy = proxied
    tenant = tenant_on(s)
    sender = fresh_phone("14155")
    stuck, free = tenant.link_device(fresh_phone("62898")), tenant.link_device(fresh_phone("62898"))
    proxy.failing_device = stuck
    try:
        waiting = inbound(s, {"device_id": stuck, "from": sender, "text": "stuck"})
        started = time.monotonic()
        goes = [inbound(s, {"device_id": free, "from": sender, "text": f"free {i}"}) for i in range(3)]
        for external_id in goes:
            eventually(lambda: incoming(tenant, external_id), timeout=PROMPTLY_S)
        assert time.monotonic() - started < PROMPTLY_S
        assert incoming(tenant, waiting) == [], "still retried, not dropped"
    finally:
        proxy.failing_device = None
    eventually(lambda: incoming(tenant, waiting), timeout=15)
    assert not [d for d in dead_letters(s) if d["device_id"] == stuck], "a 5xx is retried, not dead-lettered"
