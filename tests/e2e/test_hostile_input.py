"""Hostile input on the real stack: what an attacker can send cannot break the gateway or reach
past what it is allowed. The attackers are a stranger on WhatsApp (a modified client, a keyword
farmer, another gateway's auto-replies), a key scoped to one device of an app, an anonymous client
(guessing keys, forging them, sending huge or endless bodies, hostile URLs and media hosts) and an
operator's plain deploy, which must be production by default.

One section per area, in this order: the event pipeline (bridge boundary, dead letters, per-device
order), device-scoped keys, the production default, URLs and egress, idempotency, anonymous traffic
(budget, forged keys, body caps), auto-replies. Most tests use the session's stack; a section whose
worker or bridge must be set up otherwise starts a stack of its own (module-scoped, started by the
first test that needs it and torn down with the module)."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import io
import json
import os
import re
import secrets
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from PIL import Image

from conftest import ARTIFACTS, IDEMPOTENCY_LEASE_MS, ROOT, Tenant, eventually, fresh_phone, inbox, statuses
from stack import BRIDGE_BIN, Stack, free_port


def tenant_on(stack: Stack, name: str, **plan) -> Tenant:
    """A new app on `stack` (any stack, not only the session's) with a key that is never rate limited."""
    status, body, _ = stack.admin("POST", "/admin/v1/apps", {"name": name, "api_rpm": 10**6, **plan})
    assert status == 201, body
    return Tenant(stack, body["app_id"], body["api_key"])


def quota_used(tenant: Tenant) -> int:
    status, body, _ = tenant.stack.admin("GET", f"/admin/v1/apps/{tenant.app_id}")
    assert status == 200, body
    return body["quota"]["used"]


# -------------------------------------- pipeline: bridge boundary, dead letters, per-device order
# What a modified WhatsApp client sends cannot stop the bridge's events, an event the worker
# refuses for good becomes a dead letter the operator can list and replay, and one device's stuck
# events do not hold up another device (issue 15, part 1). The simulator's `unchecked` inbound hands
# content to the bridge as the real engine decodes it. For the refusals and stalls the worker itself
# would have to produce, a stack of its own (`proxied`) puts a small forwarding proxy between the
# bridge and the worker (the worker still applies every event it gets).

PROMPTLY_S = 5.0


def incoming_by_id(tenant: Tenant, external_id: str) -> list:
    """The `message.incoming` events of the inbound message `external_id` (none while it is refused or waits)."""
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
    [event] = eventually(lambda: incoming_by_id(tenant, hello), timeout=PROMPTLY_S)
    assert event["data"]["body"] == "right after"
    eventually(lambda: tenant.get(f"/api/v1/public/messages/{sent.json()['message_id']}").json()["data"]["status"] == "READ", timeout=PROMPTLY_S)
    assert time.monotonic() - started < PROMPTLY_S
    assert incoming_by_id(tenant, nan) == [] and incoming_by_id(tenant, far) == []
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
    [event] = eventually(lambda: incoming_by_id(tenant, named), timeout=PROMPTLY_S)
    assert len(event["data"]["name"]) == 256
    assert all(incoming_by_id(tenant, i) == [] for i in (poll, huge, lid)), "refused at the bridge"
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


def dead_letters(s: Stack) -> list:
    status, body, _ = s.admin("GET", "/admin/v1/bridge/dead-letters")
    assert status == 200, body
    return body["dead_letters"]


def test_an_event_the_worker_refuses_for_good_becomes_a_dead_letter_that_can_be_replayed(proxied):
    """Before: the bridge retried the refused event forever and every later event of every device waited."""
    s, proxy = proxied
    tenant = tenant_on(s, "pipeline")
    sender = fresh_phone("14155")
    device = tenant.link_device(fresh_phone("62898"))
    proxy.refuse_marker = "refuse me"
    counted = metric(s, 'wagate_bridge_events_dead_lettered_total{status="422"}')
    refused = inbound(s, {"device_id": device, "from": sender, "text": "refuse me"})
    after = inbound(s, {"device_id": device, "from": sender, "text": "after it"})
    eventually(lambda: incoming_by_id(tenant, after), timeout=PROMPTLY_S)
    [dead] = eventually(lambda: [d for d in dead_letters(s) if d["device_id"] == device], timeout=PROMPTLY_S)
    assert (dead["type"], dead["status"], dead["error"]) == ("inbound", 422, "validation_failed")
    assert re.fullmatch(r"evt_[0-9a-f]{32}", dead["id"]) and "refuse me" not in json.dumps(dead), "no message text"
    assert metric(s, 'wagate_bridge_events_dead_lettered_total{status="422"}') == counted + 1
    assert metric(s, "wagate_bridge_dead_letters") >= 1
    assert incoming_by_id(tenant, refused) == []

    proxy.refuse_marker = None  # the cause is fixed
    status, body, _ = s.admin("POST", f"/admin/v1/bridge/dead-letters/{dead['id']}/replay")
    assert (status, body) == (202, {"replayed": dead["id"]})
    [event] = eventually(lambda: incoming_by_id(tenant, refused), timeout=PROMPTLY_S)
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
    tenant = tenant_on(s, "pipeline")
    sender = fresh_phone("14155")
    stuck, free = tenant.link_device(fresh_phone("62898")), tenant.link_device(fresh_phone("62898"))
    proxy.failing_device = stuck
    try:
        waiting = inbound(s, {"device_id": stuck, "from": sender, "text": "stuck"})
        started = time.monotonic()
        goes = [inbound(s, {"device_id": free, "from": sender, "text": f"free {i}"}) for i in range(3)]
        for external_id in goes:
            eventually(lambda: incoming_by_id(tenant, external_id), timeout=PROMPTLY_S)
        assert time.monotonic() - started < PROMPTLY_S
        assert incoming_by_id(tenant, waiting) == [], "still retried, not dropped"
    finally:
        proxy.failing_device = None
    eventually(lambda: incoming_by_id(tenant, waiting), timeout=15)
    assert not [d for d in dead_letters(s) if d["device_id"] == stuck], "a 5xx is retried, not dead-lettered"


# ----------------------------------------------------------------------------- device-scoped keys
# A key scoped to one device of an app must not see, change or receive anything of the app's
# other device (issue 15, part 2).

@pytest.fixture(scope="module")
def two_numbers(stack):
    """One app with two linked numbers, A and B; `scoped` is a key bound to B only."""
    owner = tenant_on(stack, "two numbers", auth_rpm=10**6)
    phone_a, phone_b = fresh_phone("62831"), fresh_phone("62832")
    a, b = owner.link_device(phone_a, "A"), owner.link_device(phone_b, "B")
    return {"owner": owner, "a": a, "b": b, "phone_a": phone_a, "phone_b": phone_b, "scoped": owner.scoped_to(b)}


def campaign_body(device_ids=None, contacts=1) -> dict:
    body = {"name": "scoped", "message": "hello {name}", "contacts": [{"phone": fresh_phone("62833"), "name": "x"} for _ in range(contacts)]}
    return body | ({"device_ids": device_ids} if device_ids is not None else {})


def test_scoped_key_webhook_is_forced_to_its_device_and_gets_no_other_numbers_inbound(stack, two_numbers, receiver):
    """Before: a B-scoped key created an endpoint with `device_id: null`, which received A's inbound messages too."""
    n, scoped = two_numbers, two_numbers["scoped"]
    created = scoped.post("/api/v1/webhooks", {"url": receiver.url("/b"), "events": ["message.incoming"]})
    assert created.status_code == 201, created.text
    assert created.json()["device_id"] == n["b"], "the endpoint is for the key's own device"
    stack.sim("POST", "/sim/inbound", {"device_id": n["a"], "from": "14155550001", "text": "to A, secret"})
    stack.sim("POST", "/sim/inbound", {"device_id": n["b"], "from": "14155550002", "text": "to B"})
    eventually(lambda: receiver.delivered("/b"))
    time.sleep(1)  # A's event was recorded first; had it matched, it would have been delivered by now
    bodies = [r["body"].decode() for r in receiver.delivered("/b")]
    assert len(bodies) == 1 and "to B" in bodies[0] and "to A" not in bodies[0], bodies
    assert scoped.delete(f"/api/v1/webhooks/{created.json()['id']}").status_code == 200


def test_scoped_key_cannot_see_or_change_another_devices_webhooks(two_numbers):
    """Before: a B-scoped key listed, read, changed, tested, re-keyed and deleted A's endpoints and the app-wide ones."""
    n, owner, scoped = two_numbers, two_numbers["owner"], two_numbers["scoped"]
    of_a = owner.post("/api/v1/webhooks", {"url": "http://127.0.0.1:9/a", "device_id": n["a"]}).json()["id"]
    app_wide = owner.post("/api/v1/webhooks", {"url": "http://127.0.0.1:9/all"}).json()["id"]
    assert scoped.get("/api/v1/webhooks").json()["webhooks"] == []
    for wh in (of_a, app_wide):
        assert scoped.get(f"/api/v1/webhooks/{wh}").status_code == 404
        assert scoped.patch(f"/api/v1/webhooks/{wh}", {"url": "http://127.0.0.1:9/stolen"}).status_code == 404
        assert scoped.post(f"/api/v1/webhooks/{wh}/test").status_code == 404
        assert scoped.post(f"/api/v1/webhooks/{wh}/regenerate-secret").status_code == 404
        assert scoped.get(f"/api/v1/webhooks/{wh}/deliveries").status_code == 404
        assert scoped.post(f"/api/v1/webhooks/{wh}/replay", {"since": "2020-01-01T00:00:00Z"}).status_code == 404
        assert scoped.post(f"/api/v1/webhooks/{wh}/deliveries/dlv_0000000000000000/replay").status_code == 404
        assert scoped.delete(f"/api/v1/webhooks/{wh}").status_code == 404
        assert owner.get(f"/api/v1/webhooks/{wh}").json()["url"].startswith("http://127.0.0.1:9/"), "unchanged"
    r = scoped.post("/api/v1/webhooks", {"url": "http://127.0.0.1:9/x", "device_id": n["a"]})
    assert r.status_code == 404 and r.json()["error"] == "not_found", "cannot create one for A"
    own = scoped.post("/api/v1/webhooks", {"url": "http://127.0.0.1:9/b", "device_id": n["b"]}).json()["id"]
    assert [w["id"] for w in scoped.get("/api/v1/webhooks").json()["webhooks"]] == [own], "its own still works"
    assert scoped.post(f"/api/v1/webhooks/{own}/test").status_code == 200
    for wh in (of_a, app_wide, own):
        assert owner.delete(f"/api/v1/webhooks/{wh}").status_code == 200


def test_scoped_key_auto_replies_are_its_devices_only(two_numbers):
    """Before: a B-scoped key created app-wide rules (answering A's customers) and read, changed and deleted A's rules."""
    n, owner, scoped = two_numbers, two_numbers["owner"], two_numbers["scoped"]
    of_a = owner.post("/api/v1/auto-replies", {"match": "exact", "pattern": "price", "reply": "from A", "device_id": n["a"]}).json()["id"]
    assert scoped.get("/api/v1/auto-replies").json()["auto_replies"] == []
    assert scoped.get(f"/api/v1/auto-replies/{of_a}").status_code == 404
    assert scoped.patch(f"/api/v1/auto-replies/{of_a}", {"reply": "hijacked"}).status_code == 404
    assert scoped.delete(f"/api/v1/auto-replies/{of_a}").status_code == 404
    assert owner.get(f"/api/v1/auto-replies/{of_a}").json()["reply"] == "from A"
    created = scoped.post("/api/v1/auto-replies", {"match": "exact", "pattern": "hours", "reply": "9 to 5"})
    assert created.status_code == 201 and created.json()["device_id"] == n["b"], created.text
    own = created.json()["id"]
    r = scoped.post("/api/v1/auto-replies", {"match": "exact", "pattern": "x", "reply": "y", "device_id": n["a"]})
    assert r.status_code == 404
    assert scoped.patch(f"/api/v1/auto-replies/{own}", {"device_id": n["a"]}).status_code == 404, "cannot move it to A"
    assert scoped.patch(f"/api/v1/auto-replies/{own}", {"reply": "10 to 6"}).json()["reply"] == "10 to 6"
    assert [r["id"] for r in scoped.get("/api/v1/auto-replies").json()["auto_replies"]] == [own]
    for rule in (of_a, own):
        assert owner.delete(f"/api/v1/auto-replies/{rule}").status_code == 200


def test_scoped_key_campaigns_go_out_from_its_device_and_others_are_not_found(stack, two_numbers):
    """Before: a B-scoped key listed and ran campaigns from A, and its own campaigns went out from every number."""
    n, owner, scoped = two_numbers, two_numbers["owner"], two_numbers["scoped"]
    of_a = owner.post("/api/v1/broadcast/campaigns", campaign_body([n["a"]])).json()["data"]["id"]
    app_wide = owner.post("/api/v1/broadcast/campaigns", campaign_body()).json()["data"]["id"]
    listed = scoped.get("/api/v1/broadcast/campaigns").json()["data"]
    assert listed["data"] == [] and listed["total"] == 0
    for camp in (of_a, app_wide):
        base = f"/api/v1/broadcast/campaigns/{camp}"
        assert scoped.get(base).status_code == 404
        assert scoped.get(f"{base}/contacts").status_code == 404
        for action in ("send", "pause", "resume"):
            assert scoped.post(f"{base}/{action}").status_code == 404, action
        assert scoped.delete(base).status_code == 404
        assert owner.get(base).json()["data"]["status"] == "draft", "untouched"
    r = scoped.post("/api/v1/broadcast/campaigns", campaign_body([n["a"]]))
    assert r.status_code == 404, "cannot send from A"
    r = scoped.post("/api/v1/broadcast/campaigns", campaign_body([n["a"], n["b"]]))
    assert r.status_code == 404
    body = campaign_body(contacts=3)
    created = scoped.post("/api/v1/broadcast/campaigns", body)
    assert created.status_code == 201 and created.json()["data"]["device_ids"] == [n["b"]], created.text
    own = created.json()["data"]["id"]
    assert [c["id"] for c in scoped.get("/api/v1/broadcast/campaigns").json()["data"]["data"]] == [own]
    assert scoped.post(f"/api/v1/broadcast/campaigns/{own}/send").status_code == 200
    for contact in body["contacts"]:
        received = eventually(lambda: inbox(stack, contact["phone"]), timeout=30)
        assert [m["from"] for m in received] == [n["phone_b"]], "sent from B, never from A"
    for camp in (of_a, app_wide):
        owner.delete(f"/api/v1/broadcast/campaigns/{camp}")


def test_scoped_key_sees_and_acts_on_its_own_device_only(two_numbers):
    """Before (already so): a B-scoped key saw only B; creating a new device, though, was allowed and is now 403."""
    n, scoped = two_numbers, two_numbers["scoped"]
    assert [d["id"] for d in scoped.get("/api/v1/devices").json()["devices"]] == [n["b"]]
    a = n["a"]
    for path in (f"/api/v1/devices/{a}", f"/api/v1/devices/{a}/qr.svg", f"/api/v1/devices/{a}/qr.png"):
        assert scoped.get(path).status_code == 404, path
    for path in (f"/api/v1/devices/{a}/refresh-qr", f"/api/v1/devices/{a}/link-token"):
        assert scoped.post(path).status_code == 404, path
    assert scoped.delete(f"/api/v1/devices/{a}").status_code == 404
    assert n["owner"].device(a)["status"] == "online", "A untouched"
    created = scoped.post("/api/v1/devices", {"label": "sneaky"})
    assert created.status_code == 403 and created.json()["error"] == "key_scoped_to_device", created.text
    assert len(n["owner"].get("/api/v1/devices").json()["devices"]) == 2, "no device was added"
    assert scoped.get(f"/api/v1/devices/{n['b']}").json()["status"] == "online"
    assert scoped.post(f"/api/v1/devices/{n['b']}/link-token").status_code == 201


def test_scoped_key_sends_only_from_its_device(stack, two_numbers):
    """Before (already so): a B-scoped key could not send from A nor read A's messages; kept here for every route."""
    n, owner, scoped = two_numbers, two_numbers["owner"], two_numbers["scoped"]
    r = scoped.post("/api/v1/messages/send", {"phone": fresh_phone(), "message": "x", "device_id": n["a"]})
    assert r.status_code == 404
    of_a = owner.post("/api/v1/messages/send", {"phone": fresh_phone(), "message": "x", "device_id": n["a"]}).json()["message_id"]
    assert scoped.get(f"/api/v1/public/messages/{of_a}").status_code == 404
    to = fresh_phone()
    sent = scoped.post("/api/v1/messages/send", {"phone": to, "message": "from B"})
    assert sent.status_code == 200 and sent.json()["device_id"] == n["b"]
    assert scoped.get(f"/api/v1/public/messages/{sent.json()['message_id']}").status_code == 200
    assert eventually(lambda: inbox(stack, to))[0]["from"] == n["phone_b"]
    checked = scoped.post("/api/v1/public/messages/check-phone", {"phone": fresh_phone()})
    assert checked.status_code == 200 and checked.json()["data"]["exists"] is True
    otp_to = fresh_phone()
    assert scoped.post("/api/auth/start", {"phone": otp_to}).status_code == 200
    assert eventually(lambda: inbox(stack, otp_to))[0]["from"] == n["phone_b"], "codes go out from B too"


def test_scoped_key_may_not_change_app_wide_settings(two_numbers):
    """Before: a B-scoped key could enable the IP whitelist (locking out every other key of the app) and read,
    add and remove opt-outs of the whole app (messaging someone who said STOP)."""
    owner, scoped = two_numbers["owner"], two_numbers["scoped"]
    phone = fresh_phone()
    assert owner.post("/api/v1/opt-outs", {"phone": phone}).status_code == 201
    refused = [
        scoped.get("/api/v1/opt-outs"),
        scoped.post("/api/v1/opt-outs", {"phone": fresh_phone()}),
        scoped.delete(f"/api/v1/opt-outs/{phone}"),
        scoped.post("/api/v1/ip-whitelist", {"ip_address": "203.0.113.1"}),
        scoped.put("/api/v1/ip-whitelist/restriction", {"enabled": True}),
        scoped.delete("/api/v1/ip-whitelist/ip_0000000000000000"),
    ]
    for r in refused:
        assert r.status_code == 403 and r.json()["error"] == "key_scoped_to_device", (r.request.method, r.request.url, r.text)
        assert two_numbers["b"] in r.json()["message"]
    assert [o["phone"] for o in owner.get("/api/v1/opt-outs").json()["data"]["opt_outs"]] == [phone], "still listed"
    listed = scoped.get("/api/v1/ip-whitelist")
    assert listed.status_code == 200 and listed.json()["restriction_enabled"] is False, "readable, unchanged"


# ----------------------------------------------------------------------------- production default
# A worker run with the configuration that is deployed (no `ENVIRONMENT` set by a local runner,
# its own stack `deployed`) hands out no `debug_code` and refuses loopback webhook and media URLs; a
# bridge without an explicit engine does not start (that `/sim` exists only under `sim` is tested in
# test_whatsapp_engine.py, on its bridge).

@pytest.fixture(scope="module")
def deployed():
    """The worker as wrangler.toml deploys it: the runner leaves ENVIRONMENT alone. Fault
    injection is switched on too, as an operator might by mistake: production must ignore it."""
    s = Stack.throwaway(ARTIFACTS / time.strftime("deployed-%Y%m%d-%H%M%S"), environment=None,
                        worker_vars={"FAULT_INJECTION": "on"})
    try:
        yield s.start()
    finally:
        s.stop()


def test_the_deployed_configuration_returns_no_debug_code(deployed):
    """Before: wrangler.toml said `development`, so a plain `wrangler deploy` returned each
    one-time code in `debug_code` to whoever asked for it."""
    status, body, _ = deployed.admin("POST", "/admin/v1/apps", {"name": "deployed"})
    assert status == 201, body
    tenant = Tenant(deployed, body["app_id"], body["api_key"])
    tenant.link_device(fresh_phone("62838"))
    start = tenant.post("/api/auth/start", {"phone": fresh_phone()})
    assert start.status_code == 200 and start.json()["session_id"], start.text
    assert start.json()["debug_code"] is None


def test_the_deployed_configuration_ignores_the_fault_header_even_with_fault_injection_on(deployed):
    """New with the header: the test suite's faults are honoured only in development, so a
    production worker whose FAULT_INJECTION was set answers a send asking for one as usual."""
    status, body, _ = deployed.admin("POST", "/admin/v1/apps", {"name": "faults"})
    assert status == 201, body
    tenant = Tenant(deployed, body["app_id"], body["api_key"])
    tenant.link_device(fresh_phone("62839"))
    # In development this fault answers 500: the device's answer is lost and it cannot be asked again.
    r = tenant.post("/api/v1/messages/send", {"phone": fresh_phone(), "message": "no fault here"},
                    headers={"X-Wagate-Fault": "device-lost-after-enqueue"})
    assert r.status_code == 200 and r.json()["success"] is True, r.text


def test_the_deployed_configuration_refuses_loopback_webhooks_and_media(deployed, receiver):
    """Before: a plain deploy accepted `http://127.0.0.1:…` webhook receivers and media sources."""
    status, body, _ = deployed.admin("POST", "/admin/v1/apps", {"name": "deployed"})
    tenant = Tenant(deployed, body["app_id"], body["api_key"])
    r = tenant.post("/api/v1/webhooks", {"url": receiver.url("/hook")})
    assert r.status_code == 422 and list(r.json()["errors"]) == ["url"], r.text
    r = tenant.post("/api/v1/public/messages/image", {"to": fresh_phone(), "source": receiver.url("/a.png")})
    assert r.status_code == 400 and [d["field"] for d in r.json()["details"]] == ["source"], r.text
    assert receiver.requests == []


def test_a_bridge_without_an_engine_refuses_to_start(tmp_path):
    """Before: with WAGATE_ENGINE unset the bridge ran the simulator, reporting messages
    delivered while sending nothing."""
    env = {k: v for k, v in os.environ.items() if k != "WAGATE_ENGINE"}
    env |= {"BRIDGE_SECRET": "s3cret", "BRIDGE_PORT": str(free_port()), "WAGATE_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([str(BRIDGE_BIN)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert "WAGATE_ENGINE is required" in done.stderr, done.stderr
    assert not (tmp_path / "data").exists(), "nothing was started"


# -------------------------------------------------------------------------------- URLs and egress
# Webhook and media URLs are judged as the runtime's fetch reads them (WHATWG), media fetches have
# a deadline, follow no redirect, stop at 16 MB while streaming, echo nothing the server said, and
# are made only once the send is reserved. Their stack (`egress_stack`) is a development one
# (loopback receivers allowed, so the test's own servers can be reached) with both egress lists
# set: `allowed.example` and 127.0.0.1.

FETCH_TIMEOUT_S = 2
ENDLESS_LIMIT = 64 * 1024 * 1024

# Each of these reaches 127.0.0.1 (or, for the first, evil.example) when fetched, while a hand
# split of the string reads a harmless host, or an IP check of the text finds no IP.
SPELLINGS = [
    "https://evil.example\\.allowed.example/hook",
    "https://2130706433/hook",
    "https://0x7f.1/hook",
    "https://127.1/hook",
    "https://127.0.0.1./hook",
    "https://[::127.0.0.1]/hook",
]


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 120, 40)).save(out, format="PNG")
    return out.getvalue()


class MediaServer:
    """A hostile media host: counts what is asked of it and answers each path its own way."""

    def __init__(self):
        self.hits: dict[str, int] = {}
        self.written: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                getattr(server, "serve_" + self.path.strip("/").split(".")[0], server.serve_missing)(self)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    @staticmethod
    def _reply(h, status, body, **headers):
        h.send_response(status)
        for name, value in {"content-length": str(len(body)), **headers}.items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(body)

    def serve_missing(self, h):
        self._reply(h, 404, b"")

    def serve_image(self, h):
        self._reply(h, 200, png(), **{"content-type": "image/png"})

    def serve_internal(self, h):
        """Where the redirect points: what only the inside should see."""
        self._reply(h, 200, png(), **{"content-type": "image/png"})

    def serve_redirect(self, h):
        h.send_response(302)
        h.send_header("location", f"{self.base}/internal.png")
        h.send_header("content-length", "0")
        h.end_headers()

    def serve_leak(self, h):
        self._reply(h, 500, b"INTERNAL-SECRET-BODY", **{"x-internal-token": "INTERNAL-SECRET-HEADER"})

    def serve_liar(self, h):
        self._reply(h, 200, b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", **{"content-type": "image/INTERNAL-SECRET-TYPE"})

    def _chunked(self, h, path, chunk: bytes, pause: float, limit: int):
        h.send_response(200)
        h.send_header("content-type", "image/png")
        h.send_header("transfer-encoding", "chunked")
        h.end_headers()
        self.written[path] = 0
        try:
            while self.written[path] < limit:
                h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                h.wfile.flush()
                self.written[path] += len(chunk)
                time.sleep(pause)
            h.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the worker hung up: what the test wants

    def serve_drip(self, h):
        self._chunked(h, "/drip.png", b"\x89", pause=0.5, limit=60)

    def serve_endless(self, h):
        self._chunked(h, "/endless.png", b"\0" * 65536, pause=0, limit=ENDLESS_LIMIT)


@pytest.fixture(scope="module")
def egress_stack():
    s = Stack.throwaway(
        ARTIFACTS / time.strftime("hostile-urls-%Y%m%d-%H%M%S"),
        worker_vars={
            "WEBHOOK_HOSTS": "allowed.example,127.0.0.1",
            "MEDIA_HOSTS": "allowed.example,127.0.0.1",
            "MEDIA_FETCH_TIMEOUT_S": str(FETCH_TIMEOUT_S),
        },
    )
    try:
        yield s.start()
    finally:
        s.stop()


@pytest.fixture(scope="module")
def media():
    server = MediaServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def egress_sender(egress_stack):
    tenant = tenant_on(egress_stack, "hostile-urls")
    tenant.link_device(fresh_phone("62831"))
    return tenant


def send_image(tenant: Tenant, source: str) -> requests.Response:
    return requests.post(
        tenant.stack.api + "/api/v1/public/messages/image",
        json={"to": fresh_phone(), "source": source},
        headers=tenant.headers(),
        timeout=120,
    )


def test_webhook_urls_that_the_fetch_reads_as_loopback_or_elsewhere_are_refused(egress_stack, egress_sender):
    """Before: each spelling was saved (201 on create, 200 on update): the backslash one passed the
    WEBHOOK_HOSTS list while the fetch would go to evil.example, the others passed the literal-IP
    checks while the fetch would go to 127.0.0.1."""
    r = egress_sender.post("/api/v1/webhooks", {"url": "https://hooks.allowed.example/wagate"})
    assert r.status_code == 201, r.text
    hook = r.json()["id"]
    for url in SPELLINGS:
        r = egress_sender.post("/api/v1/webhooks", {"url": url})
        assert r.status_code == 422 and list(r.json()["errors"]) == ["url"], (url, r.text)
        r = egress_sender.patch(f"/api/v1/webhooks/{hook}", {"url": url})
        assert r.status_code == 422 and list(r.json()["errors"]) == ["url"], (url, r.text)
    assert egress_sender.get(f"/api/v1/webhooks/{hook}").json()["url"] == "https://hooks.allowed.example/wagate"


def test_webhook_urls_off_the_egress_list_or_with_credentials_are_refused(egress_stack, egress_sender):
    """Before: `https://allowed.example@evil.example/` was refused only because of its `@`; the host
    check split by hand and read hosts the fetch never would. Now the parsed host decides."""
    for url in ["https://evil.example/", "https://allowed.example.evil.example/", "https://allowed.example@evil.example/",
                "https://user:pw@hooks.allowed.example/", "https://notallowed.example/"]:
        r = egress_sender.post("/api/v1/webhooks", {"url": url})
        assert r.status_code == 422 and list(r.json()["errors"]) == ["url"], (url, r.text)


def test_media_sources_that_the_fetch_reads_as_loopback_or_elsewhere_are_refused(egress_stack, egress_sender, media):
    """Before: every spelling was fetched (the request went out, to 127.0.0.1 or evil.example);
    media sources had no egress list at all."""
    port = media.base.rsplit(":", 1)[1]
    spellings = [url.replace("/hook", "/image.png") for url in SPELLINGS]
    spellings += [f"http://2130706433:{port}/image.png", f"http://127.1:{port}/image.png", f"http://127.0.0.1.:{port}/image.png",
                  "https://cdn.elsewhere.example/image.png"]
    for source in spellings:
        r = send_image(egress_sender, source)
        assert r.status_code == 400 and r.json()["code"] == "VALIDATION_FAILED", (source, r.text)
        assert [d["field"] for d in r.json()["details"]] == ["source"], r.json()
    assert media.hits.get("/image.png", 0) == 0
    assert send_image(egress_sender, f"{media.base}/image.png").status_code == 202, "the listed host works"


def test_a_media_redirect_is_not_followed(egress_stack, egress_sender, media):
    """Before: the fetch followed the 302 to the address behind it and sent what it found (202)."""
    r = send_image(egress_sender, f"{media.base}/redirect.png")
    assert r.status_code == 400 and r.json()["code"] == "MEDIA_FETCH_FAILED", r.text
    assert "302" in r.json()["message"]
    assert media.hits.get("/internal.png", 0) == 0


def test_a_slow_drip_media_server_cannot_hold_the_request(egress_stack, egress_sender, media):
    """Before: no deadline; the request waited as long as the server kept dripping (30 s here)."""
    started = time.monotonic()
    r = send_image(egress_sender, f"{media.base}/drip.png")
    elapsed = time.monotonic() - started
    assert r.status_code == 400 and r.json()["code"] == "MEDIA_FETCH_FAILED", r.text
    assert f"within {FETCH_TIMEOUT_S} s" in r.json()["message"]
    assert elapsed < FETCH_TIMEOUT_S + 8, elapsed


def test_an_endless_chunked_media_body_is_cut_at_the_cap(egress_stack, egress_sender, media):
    """Before: with no Content-Length the whole body was read into memory (64 MB here, or without
    end until the isolate ran out of memory) and only then found too large."""
    r = send_image(egress_sender, f"{media.base}/endless.png")
    assert r.status_code == 400 and r.json()["code"] == "MEDIA_FETCH_FAILED", r.text
    assert "larger than 16 MB" in r.json()["message"]
    time.sleep(1)
    assert media.written["/endless.png"] < 40 * 1024 * 1024, media.written


def test_nothing_a_media_server_answers_is_echoed(egress_stack, egress_sender, media):
    """Before: a file that contradicted the server's Content-Type named that header's value in the
    answer ("…not image/internal-secret-type"), and fetch failures quoted the runtime's error text."""
    for path in ["/leak.png", "/liar.png"]:
        r = send_image(egress_sender, f"{media.base}{path}")
        assert r.status_code == 400 and r.json()["code"] == "MEDIA_FETCH_FAILED", r.text
        assert "internal-secret" not in r.text.lower(), r.text
    assert "500" in send_image(egress_sender, f"{media.base}/leak.png").json()["message"]


def test_a_key_over_its_quota_sending_media_costs_no_fetch(egress_stack, media):
    """Before: the media was fetched and uploaded to the bridge first, and only then was the send
    refused for quota (429): any key over its quota could keep filling the bridge's disk."""
    tenant = tenant_on(egress_stack, "hostile-urls", monthly_messages=1)
    tenant.link_device(fresh_phone("62832"))
    assert send_image(tenant, f"{media.base}/image.png?first").status_code == 202
    r = send_image(tenant, f"{media.base}/quota.png")
    assert r.status_code == 429 and r.json()["code"] == "QUOTA_EXCEEDED", r.text
    assert media.hits.get("/quota.png", 0) == 0


def test_media_for_an_app_without_a_connected_number_costs_no_fetch(egress_stack, media):
    """Before: the media was fetched and uploaded, then the send refused (409 ACCOUNT_NOT_CONNECTED)."""
    tenant = tenant_on(egress_stack, "hostile-urls")
    r = send_image(tenant, f"{media.base}/offline.png")
    assert r.status_code == 409 and r.json()["code"] == "ACCOUNT_NOT_CONNECTED", r.text
    assert media.hits.get("/offline.png", 0) == 0


# ------------------------------------------------------------------------------------ idempotency
# An Idempotency-Key cannot send a message twice: not while its first request is still running,
# not after that request failed between the app's and the device's objects, not after its lease
# ran out. Faults are injected with the development-only `X-Wagate-Fault` header (the stack sets
# `FAULT_INJECTION=on`); the lease is `IDEMPOTENCY_LEASE_MS` (1.5 s here, 60 s in production).

SEND = "/api/v1/messages/send"


@pytest.fixture
def metered_sender(new_tenant):
    tenant = new_tenant(monthly_messages=100)
    tenant.device_id = tenant.link_device(fresh_phone("62841"))
    return tenant


def delivered_once(stack, tenant, to: str, text: str, message_id: str):
    eventually(lambda: statuses(tenant, [message_id]) == ["READ"])
    time.sleep(1)  # a second copy would have arrived by now (pace 20 ms, delivery 50 ms)
    assert [m["text"] for m in inbox(stack, to)] == [text], "exactly one message on the phone"
    assert quota_used(tenant) == 1, "quota charged once"


def faulted_then_retried(sender, text: str, fault: str):
    """Sends `text` to a fresh phone under a fresh key with `fault`, then again under the same key
    without it; returns the phone and both answers."""
    to = fresh_phone()
    body, key = {"phone": to, "message": text}, {"Idempotency-Key": f"{fault}-{to}"}
    first = sender.post(SEND, body, headers={**key, "X-Wagate-Fault": fault})
    return to, first, sender.post(SEND, body, headers=key)


def test_retry_while_the_first_request_is_in_flight(stack, metered_sender):
    """Before: answered 409 `conflict` (the generic one). Now 409 `idempotency_key_in_use` (SPWP
    `IDEMPOTENCY_KEY_IN_USE`), as Stripe answers, and the first request's message goes out once."""
    to = fresh_phone()
    body = {"phone": to, "message": "in flight"}
    key = f"inflight-{to}"
    slow = {"Idempotency-Key": key, "X-Wagate-Fault": "delay-enqueue=3000"}
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(metered_sender.post, SEND, body, headers=slow)
        time.sleep(0.5)
        retry = metered_sender.post(SEND, body, headers={"Idempotency-Key": key})
        assert retry.status_code == 409 and retry.json()["error"] == "idempotency_key_in_use", retry.text
        first = first.result()
    assert first.status_code == 200, first.text
    # The SPWP wording of the same refusal.
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(metered_sender.post, "/api/v1/public/messages/text", {"to": to, "text": "spwp"}, headers={"Idempotency-Key": f"p{key}", "X-Wagate-Fault": "delay-enqueue=2000"})
        time.sleep(0.5)
        refused = metered_sender.post("/api/v1/public/messages/text", {"to": to, "text": "spwp"}, headers={"Idempotency-Key": f"p{key}"})
        assert refused.status_code == 409 and refused.json()["code"] == "IDEMPOTENCY_KEY_IN_USE", refused.text
        assert pending.result().status_code == 202
    eventually(lambda: len(inbox(stack, to)) == 2)
    time.sleep(1)
    assert sorted(m["text"] for m in inbox(stack, to)) == ["in flight", "spwp"], "one per key"
    assert quota_used(metered_sender) == 2


def test_retry_after_the_lease_ran_out_under_a_slow_first_request(stack, metered_sender):
    """Before: a retry after the lease (60 s) minted a new message id and sent the message a
    second time, charging twice, while the first request still sent its own. Now the retry
    re-drives the key's message id: both answers carry one id, the phone gets one message."""
    to = fresh_phone()
    body = {"phone": to, "message": "slow one"}
    key = f"lease-{to}"
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(metered_sender.post, SEND, body, headers={"Idempotency-Key": key, "X-Wagate-Fault": f"delay-enqueue={IDEMPOTENCY_LEASE_MS + 2500}"})
        time.sleep(IDEMPOTENCY_LEASE_MS / 1000 + 0.5)
        retry = metered_sender.post(SEND, body, headers={"Idempotency-Key": key})
        first = first.result()
    assert retry.status_code == 200 and first.status_code == 200, (retry.text, first.text)
    assert retry.json()["message_id"] == first.json()["message_id"]
    delivered_once(stack, metered_sender, to, "slow one", first.json()["message_id"])


def test_retry_after_the_devices_answer_was_lost(stack, metered_sender):
    """Before: the device stored the message, its answer was lost, the worker refunded the unit
    and freed the key (500); the retry sent a second copy, so two messages went out for one unit.
    Now the worker asks the device, which holds the message: the first request answers 200 and
    the retry replays it."""
    to, first, retry = faulted_then_retried(metered_sender, "answer lost", "enqueue-answer-lost")
    assert first.status_code == 200, first.text
    assert retry.status_code == 200 and retry.json()["message_id"] == first.json()["message_id"]
    delivered_once(stack, metered_sender, to, "answer lost", first.json()["message_id"])


def test_retry_after_the_device_became_unreachable_mid_send(stack, metered_sender):
    """Before: the device stored the message, then could not be reached; the worker refunded the
    unit and freed the key, and the retry sent a second copy. Now nothing is refunded without the
    device's word, the first request fails (500), and the retry re-drives the same message id,
    which the device's queue takes once."""
    to, first, retry = faulted_then_retried(metered_sender, "device lost", "device-lost-after-enqueue")
    assert first.status_code == 500, first.text
    assert retry.status_code == 200, retry.text
    delivered_once(stack, metered_sender, to, "device lost", retry.json()["message_id"])


def test_fault_header_without_a_key_still_sends_once_and_charges_once(stack, metered_sender):
    """Before: with no key, a lost device answer refunded the unit of a message that was sent.
    Now the device's word decides: it holds the message, so the send answers 200, charged once."""
    to = fresh_phone()
    r = metered_sender.post(SEND, {"phone": to, "message": "no key"}, headers={"X-Wagate-Fault": "enqueue-answer-lost"})
    assert r.status_code == 200, r.text
    delivered_once(stack, metered_sender, to, "no key", r.json()["message_id"])


# ---------------------------------------------- anonymous traffic: budget, forged keys, body caps
# Anonymous traffic must cost nothing and guess nothing (issue 15, part 6). Client addresses are
# presented with `CF-Connecting-IP`, which wrangler dev honours locally (see the README); the guard
# counts per address, an IPv6 client per /64.

def from_ip(ip: str) -> dict:
    return {"CF-Connecting-IP": ip}


def guess(stack, ip: str, path: str = "/api/v1/devices", token: str | None = None) -> requests.Response:
    token = token or f"wg_live_{secrets.token_hex(8)}_{secrets.token_hex(8)}_{secrets.token_hex(32)}"
    return requests.get(f"{stack.api}{path}", headers={**from_ip(ip), "Authorization": f"Bearer {token}"}, timeout=30)


def last_used(stack, tenant: Tenant) -> list:
    _, body, _ = stack.admin("GET", f"/admin/v1/apps/{tenant.app_id}/keys")
    return [k["last_used_at"] for k in body["keys"]]


def test_over_budget_address_is_refused_before_its_key_is_checked(stack, new_tenant):
    """Before: past the budget only failures got 429; a key from that address was still checked by its app's
    object (and a correct one answered 200), so guessing could go on testing credentials."""
    tenant, ip = new_tenant(), "198.18.5.1"
    codes = [guess(stack, ip).status_code for _ in range(20)]
    assert codes == [401] * 20, codes
    used_before = last_used(stack, tenant)
    r = tenant.get("/api/v1/devices", headers=from_ip(ip))
    assert r.status_code == 429 and r.json()["error"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1
    assert "RateLimit" not in r.headers, "the app's object, which sets the key's rate headers, was not asked"
    assert last_used(stack, tenant) == used_before, "the key was not looked at (its last use is unchanged)"
    assert tenant.get("/api/v1/devices", headers=from_ip("198.18.5.2")).status_code == 200, "other addresses unaffected"


def test_over_budget_address_is_refused_before_the_admin_token_is_compared(stack):
    """Before: the right admin token from a throttled address answered 200."""
    ip = "198.18.5.3"
    codes = [guess(stack, ip, "/admin/v1/apps", "wrong").status_code for _ in range(21)]
    assert codes[:20] == [401] * 20 and codes[20] == 429, codes
    right = requests.get(f"{stack.api}/admin/v1/apps", headers={**from_ip(ip), "Authorization": f"Bearer {stack.admin_token}"}, timeout=30)
    assert right.status_code == 429
    assert stack.admin("GET", "/admin/v1/apps")[0] == 200, "from another address the token works"


def test_ipv6_clients_share_one_budget_per_64(stack):
    """Before: each IPv6 address had a budget of its own, so a client with a /64 had 2^64 budgets."""
    codes = [guess(stack, f"2001:db8:77:1::{i + 1:x}").status_code for i in range(20)]
    assert codes == [401] * 20, codes
    assert guess(stack, "2001:db8:77:1:ffff:ffff:ffff:ffff").status_code == 429, "the same /64"
    assert guess(stack, "2001:db8:77:2::1").status_code == 401, "the next /64 is someone else"


def object_files(stack) -> set:
    return {p.relative_to(stack.worker_state) for p in stack.worker_state.rglob("*.sqlite")}


def test_forged_key_for_an_app_that_does_not_exist_leaves_no_storage(stack):
    """Before: every well-formed key naming an unknown app created that app's Durable Object with all its tables
    (a new SQLite file per guess)."""
    ip = "198.18.5.4"
    assert guess(stack, ip).status_code == 401  # the address's guard has its storage from here on
    before = object_files(stack)
    app, key = secrets.token_hex(8), secrets.token_hex(8)
    forged = [
        f"wg_live_{app}_{key}_{secrets.token_hex(32)}",  # today's shape, a tag that is not the worker's
        f"wg_live_{secrets.token_hex(8)}_{key}_{secrets.token_hex(24)}",  # untagged, as keys before tags
    ]
    for token in forged:
        for path in ("/api/v1/devices", "/api/v1/public/messages/msg_0000000000000000"):
            assert guess(stack, ip, path, token).status_code == 401
    time.sleep(0.5)
    assert object_files(stack) - before == set(), "no object storage was created"


def test_anonymous_request_from_a_new_address_leaves_no_storage(stack, new_tenant):
    """Consulting the budget first must not itself cost storage: an address that never failed has none."""
    tenant = new_tenant()
    before = object_files(stack)
    assert tenant.get("/api/v1/devices", headers=from_ip("198.18.5.5")).status_code == 200
    time.sleep(0.5)
    assert object_files(stack) - before == set()


@pytest.fixture(scope="module")
def undrained():
    """A stack answering as Cloudflare does: wrangler dev's local habit of reading every unread body
    to its end before answering is off, so an answer given from a request's head alone shows."""
    s = Stack.throwaway(ARTIFACTS / time.strftime("e2e-undrained-%Y%m%d-%H%M%S"), drain_request_bodies=False)
    try:
        s.start()
        yield s
    finally:
        s.stop()


def head_only(stack, method: str, path: str, headers: dict, timeout: float = 5.0) -> tuple[int, dict]:
    """Sends a request's head declaring a body that never comes; the answer, which must not wait for it."""
    conn = http.client.HTTPConnection("127.0.0.1", stack.worker_port, timeout=timeout)
    try:
        conn.putrequest(method, path)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def test_oversized_body_is_refused_by_its_length_without_being_read(undrained):
    """Before: the worker waited for (and would have buffered) a declared 1 GB body; now 413 from the head alone."""
    stack = undrained
    status, body, _ = stack.admin("POST", "/admin/v1/apps", {"name": "big bodies"})
    tenant = Tenant(stack, body["app_id"], body["api_key"])
    started = time.monotonic()
    status, body = head_only(stack, "POST", "/api/v1/messages/send", {**tenant.headers(), "Content-Length": str(10**9)})
    assert status == 413 and body["error"] == "payload_too_large" and body["max_bytes"] == 256 * 1024
    status, body = head_only(stack, "POST", "/api/v1/public/messages/text", {"X-API-Key": tenant.key, "Content-Length": str(300 * 1024)})
    assert status == 413 and body["code"] == "PAYLOAD_TOO_LARGE", "in SPWP's shape"
    status, _ = head_only(stack, "POST", "/api/v1/public/messages/image", {"Content-Length": str(25 * 1024 * 1024)})
    assert status == 413, "a file route allows 24 MiB, no more; refused before the key is even looked at"
    assert time.monotonic() - started < 5


def test_chunked_body_over_the_cap_is_refused_while_reading(stack, new_tenant):
    """Before: a body without Content-Length was held whole, however large, then handled (here 422, unterminated
    text aside). Now nothing past the cap is kept, and the answer is 413; the connection's next request still works."""
    tenant = new_tenant()

    def chunks():
        yield b'{"phone": "6281234567890", "message": "'
        for _ in range(64):
            yield b"x" * 8192
        yield b'"}'

    r = requests.post(f"{stack.api}/api/v1/messages/send", data=chunks(), headers=tenant.headers(), timeout=30)
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large", r.text
    small = requests.post(f"{stack.api}/api/v1/messages/send", data=iter([b'{"phone": "x"}']), headers=tenant.headers(), timeout=30)
    assert small.status_code == 422, "a small chunked body is read as usual"


def test_bridge_callback_is_refused_before_its_body_when_unsigned_or_huge(undrained):
    """Before: the event callback read the whole body (any size) before looking at its signature headers."""
    stack = undrained
    started = time.monotonic()
    status, body = head_only(stack, "POST", "/bridge/v1/events", {"Content-Length": str(50 * 1024 * 1024)})
    assert status == 413 and body["error"] == "payload_too_large"
    # Under the cap but unsigned: refused from the headers while the body has not been sent.
    status, body = head_only(stack, "POST", "/bridge/v1/events", {"Content-Length": "1000"})
    assert status == 401 and body["error"] == "unauthorized"
    stale = {"Content-Length": "1000", "X-Wagate-Timestamp": "1000000000", "X-Wagate-Signature": "00" * 32}
    assert head_only(stack, "POST", "/bridge/v1/events", stale)[0] == 401
    assert time.monotonic() - started < 5, "none of them waited for a body"
    # A fresh timestamp but a wrong signature: the body is read (1 KB), checked, refused, never parsed.
    forged = {"X-Wagate-Timestamp": str(int(time.time())), "X-Wagate-Signature": "00" * 32}
    r = requests.post(f"{stack.api}/bridge/v1/events", data=b"{" * 1000, headers=forged, timeout=30)
    assert r.status_code == 401


# ----------------------------------------------------------------------------------- auto-replies
# Auto-replies cannot be farmed or loop: a cooldown per (rule, sender), a cap per sender per hour
# (both operator settings per app) and a stop to conversations that look like two programs
# answering each other (`domain::autoreply`). A suppressed reply is noted on `message.incoming`.

def limits(tenant, **settings) -> dict:
    status, body, _ = tenant.stack.admin("PATCH", f"/admin/v1/apps/{tenant.app_id}", settings)
    assert status == 200, body
    return body["governor"]["auto_reply"]


def incoming_from(tenant, sender: str, count: int) -> list:
    """Waits for at least `count` `message.incoming` events from `sender`; their data."""
    return eventually(lambda: len(found := [e["data"] for e in tenant.events("message.incoming") if e["data"]["from"] == sender]) >= count and found)


def rule(tenant, pattern: str, reply: str, match: str = "exact") -> str:
    r = tenant.post("/api/v1/auto-replies", {"match": match, "pattern": pattern, "reply": reply})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_a_stranger_repeating_a_keyword_gets_one_reply(stack, new_tenant):
    """Before: eight "price" messages drew eight replies and spent eight units of quota. Now the
    rule's cooldown (60 s by default) answers once; the other seven events say `suppressed`."""
    tenant = new_tenant(monthly_messages=100)
    device = tenant.link_device(fresh_phone("62861"))
    price = rule(tenant, "price", "Prices are at example.com")
    stranger = fresh_phone("1417")
    for _ in range(8):
        stack.sim("POST", "/sim/inbound", {"device_id": device, "from": stranger, "text": "price"})
    events = incoming_from(tenant, stranger, 8)
    time.sleep(1.5)
    assert [m["text"] for m in inbox(stack, stranger)] == ["Prices are at example.com"]
    assert quota_used(tenant) == 1
    suppressed = [e["auto_reply"] for e in events if "suppressed" in e.get("auto_reply", {})]
    assert len(suppressed) == 7 and {s["rule_id"] for s in suppressed} == {price}
    assert {s["suppressed"] for s in suppressed} <= {"cooldown", "loop"}


def test_a_stranger_gets_at_most_the_hourly_cap_over_all_rules(stack, new_tenant):
    """Before: a stranger could draw one reply per rule per message without end. Now, with the
    cap set to 2 an hour, the third rule's match is suppressed as `hourly_cap` and not charged."""
    tenant = new_tenant(monthly_messages=100)
    device = tenant.link_device(fresh_phone("62862"))
    for bad in ({"auto_reply_cooldown_s": -1}, {"auto_reply_hourly_cap": 3601}, {"auto_reply_hourly_cap": "many"}):
        status, body, _ = stack.admin("PATCH", f"/admin/v1/apps/{tenant.app_id}", bad)
        assert status == 422 and list(body["errors"]) == list(bad), (bad, body)
    assert limits(tenant) == {"cooldown_secs": 60, "hourly_cap": 5}, "the defaults"
    assert limits(tenant, auto_reply_hourly_cap=2) == {"cooldown_secs": 60, "hourly_cap": 2}
    for word in ("alpha", "beta", "gamma"):
        rule(tenant, word, f"about {word}")
    stranger = fresh_phone("1418")
    for n, word in enumerate(("alpha", "beta", "gamma"), 1):
        stack.sim("POST", "/sim/inbound", {"device_id": device, "from": stranger, "text": word})
        incoming_from(tenant, stranger, n)
    time.sleep(1.5)
    assert sorted(m["text"] for m in inbox(stack, stranger)) == ["about alpha", "about beta"]
    assert quota_used(tenant) == 2
    gamma = next(e for e in incoming_from(tenant, stranger, 3) if e["body"] == "gamma")
    assert gamma["auto_reply"]["suppressed"] == "hourly_cap"


def test_two_gateways_answering_each_other_stop(stack, new_tenant):
    """Before: two numbers with catch-all auto-replies answered each other for as long as the
    quota lasted. Now, even with no cooldown and a high cap, each stops once the other has
    answered it faster than a person types three times in a row (`suppressed: loop`).
    The simulator does not route device to device, so the test relays each side's replies."""
    phones = [fresh_phone("62863"), fresh_phone("62864")]
    sides = []
    for phone, reply in zip(phones, ("Thanks, {name}! We will get back to you.", "Auto-reply: we got '{message}'")):
        tenant = new_tenant(monthly_messages=1000)
        device = tenant.link_device(phone)
        assert limits(tenant, auto_reply_cooldown_s=0, auto_reply_hourly_cap=1000)["cooldown_secs"] == 0
        rule(tenant, ".", reply, match="regex")
        sides.append((tenant, device, phone))
    (a, device_a, phone_a), (b, device_b, phone_b) = sides
    stop, relayed = threading.Event(), {phone_a: 0, phone_b: 0}

    def relay():
        # What reaches one side's number is handed to that side's device, from the other number.
        while not stop.is_set():
            for to, device, sender in ((phone_b, device_b, phone_a), (phone_a, device_a, phone_b)):
                for message in inbox(stack, to)[relayed[to]:]:
                    stack.sim("POST", "/sim/inbound", {"device_id": device, "from": sender, "text": message["text"]})
                    relayed[to] += 1
            time.sleep(0.1)

    thread = threading.Thread(target=relay, daemon=True)
    thread.start()
    try:
        stack.sim("POST", "/sim/inbound", {"device_id": device_a, "from": phone_b, "text": "hello"})
        quiet_since, last = time.monotonic(), None
        deadline = time.monotonic() + 60
        while time.monotonic() - quiet_since < 5:
            assert time.monotonic() < deadline, "the exchange did not stop"
            now = (len(inbox(stack, phone_a)), len(inbox(stack, phone_b)))
            if now != last:
                quiet_since, last = time.monotonic(), now
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join()
    from_a, from_b = len(inbox(stack, phone_b)), len(inbox(stack, phone_a))
    assert 1 <= from_a <= 4 and from_b <= 4, (from_a, from_b)
    assert quota_used(a) == from_a and quota_used(b) == from_b
    events = [e["data"] for t in (a, b) for e in t.events("message.incoming")]
    assert any(e.get("auto_reply", {}).get("suppressed") == "loop" for e in events)
