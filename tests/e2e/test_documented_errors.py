"""Every error the OpenAPI documents promise is one the running stack gives.

For each documented (operation, error status), `provoke` sets up the situation that should cause
it and makes the request; the test checks the status, that the body matches the documented
schema, and that the error code in the body is one the documented description names. An error
documented with no known way to reach it fails here, so the documents cannot promise what no one
has seen; Schemathesis (test_openapi.py) covers the converse, that nothing undocumented comes back.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from itertools import count

import jsonschema_rs
import pytest
import requests

from conftest import ROOT, Tenant, eventually, fresh_phone

DOCUMENTS = {name: json.loads((ROOT / "public" / "openapi" / f"{name}.json").read_text()) for name in ("loginwa", "spwp", "admin")}
PIXEL = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
# Sources a media send of each kind accepts: the type is declared, the bytes carry no signature
# that contradicts it.
SOURCES = {"image": PIXEL, "video": "data:video/mp4;base64,AAAAAAAA", "audio": "data:audio/ogg;base64,AAAAAAAA",
           "document": "data:application/pdf;base64,JVBERi0xLjQK"}
UNKNOWN = {"dev": "dev_0000000000000000", "app": "app_0000000000000000"}
WALLED_OFF_IP = "192.0.2.77"
GUESSING_IP = "10.78.0.1"
_addresses = count(1)
# Their 502 is WhatsApp refusing the message (send_failed), with the bridge up.
REFUSED_BY_WHATSAPP = ("sendMessage", "startOtp")


@dataclass
class Case:
    document: str
    method: str
    path: str
    operation: dict
    status: str

    @property
    def op_id(self) -> str:
        return self.operation["operationId"]

    def __str__(self) -> str:
        return f"{self.document}-{self.op_id}-{self.status}"


def documented_errors() -> list[Case]:
    cases = [Case(doc, method.upper(), path, op, status)
             for doc, document in DOCUMENTS.items()
             for path, ops in document["paths"].items()
             for method, op in ops.items()
             for status in op["responses"] if int(status) >= 400]
    # Those that need the bridge down go last, so it is stopped once.
    return sorted(cases, key=lambda c: c.status == "502" and c.op_id not in REFUSED_BY_WHATSAPP)


@dataclass
class World:
    """Apps in the states the errors need, created once for the module."""

    stack: object
    rich: Tenant  # an online device, a pending one, a webhook, a rule, campaigns, an inbound file
    deviceless: Tenant
    suspended: Tenant
    walled: Tenant  # its allow-list admits someone else
    throttled: Tenant  # one request a minute
    scoped: Tenant | None = None  # the rich app through a key bound to its online device
    ids: dict = field(default_factory=dict)
    bridge_down: bool = False

    def stop_bridge(self) -> None:
        if not self.bridge_down:
            self.stack.kill_bridge()
            self.bridge_down = True


def app(stack, **plan) -> Tenant:
    status, body, _ = stack.admin("POST", "/admin/v1/apps", {"name": "errors", "api_rpm": 10**6, "auth_rpm": 10**6, **plan})
    assert status == 201, body
    return Tenant(stack, body["app_id"], body["api_key"])


def created(response: requests.Response) -> dict:
    assert response.status_code in (200, 201, 202), response.text
    body = response.json()
    return body.get("data", body)


@pytest.fixture(scope="module")
def world(stack):
    rich, deviceless, suspended, walled = app(stack), app(stack), app(stack), app(stack)
    throttled = app(stack, api_rpm=1, auth_rpm=1)
    w = World(stack, rich, deviceless, suspended, walled, throttled)
    ids = w.ids
    ids["device"] = rich.link_device(fresh_phone("62890"))
    w.scoped = rich.scoped_to(ids["device"])
    ids["pending"] = created(rich.post("/api/v1/devices", {"label": "never scanned"}))["device_id"]
    ids["webhook"] = created(rich.post("/api/v1/webhooks", {"url": "http://127.0.0.1:9/hook"}))["id"]
    ids["rule"] = created(rich.post("/api/v1/auto-replies", {"match": "exact", "pattern": "hi", "reply": "hello"}))["id"]
    contacts = [{"phone": fresh_phone("62891")} for _ in range(2)]
    ids["draft"] = created(rich.post("/api/v1/broadcast/campaigns", {"name": "draft", "message": "hi", "contacts": contacts}))["id"]
    # A campaign kept busy: many contacts at the longest delay.
    busy = [{"phone": fresh_phone("62892")} for _ in range(200)]
    ids["sending"] = created(rich.post("/api/v1/broadcast/campaigns", {"name": "busy", "message": "hi", "contacts": busy, "delay_seconds": 60}))["id"]
    assert rich.post(f"/api/v1/broadcast/campaigns/{ids['sending']}/send").status_code == 200
    ids["deviceless_draft"] = created(deviceless.post("/api/v1/broadcast/campaigns", {"name": "d", "message": "hi", "contacts": contacts}))["id"]
    ids["link"] = {d: created(rich.post(f"/api/v1/devices/{ids[d]}/link-token"))["token"] for d in ("device", "pending")}
    assert rich.post("/api/v1/ip-whitelist", {"ip_address": "198.51.100.9"}).status_code == 201

    photo = bytes.fromhex("ffd8ffe000104a46494600") + b"a documented error" * 20
    media = {"mime_type": "image/jpeg", "data_base64": base64.b64encode(photo).decode()}
    stack.sim("POST", "/sim/inbound", {"device_id": ids["device"], "from": "14155552671", "media": media})
    ids["media_url"] = eventually(lambda: next((e["data"]["media"]["url"] for e in rich.events("message.incoming")), None))

    assert stack.admin("PATCH", f"/admin/v1/apps/{suspended.app_id}", {"suspended": True})[0] == 200
    assert walled.post("/api/v1/ip-whitelist", {"ip_address": "203.0.113.7"}).status_code == 201
    assert walled.put("/api/v1/ip-whitelist/restriction", {"enabled": True}).status_code == 200
    try:
        yield w
    finally:
        rich.post(f"/api/v1/broadcast/campaigns/{ids['sending']}/pause")
        if w.bridge_down:
            stack.start_bridge()
            stack.wait_healthy()


@dataclass
class Probe:
    method: str
    path: str
    headers: dict = field(default_factory=dict)
    body: object = None
    params: dict = field(default_factory=dict)


def credentials(case: Case, tenant: Tenant | None, stack) -> dict:
    """How each document presents its credential; none for routes whose link is the credential."""
    if case.operation.get("security") == []:
        return {}
    if case.document == "admin":
        return {"Authorization": f"Bearer {stack.admin_token}"}
    if case.document == "spwp":
        return {"X-API-Key": tenant.key}
    return {"Authorization": f"Bearer {tenant.key}"}


def path_for(case: Case, w: World, known: bool) -> str:
    """The operation's path with its parameters filled: existing resources of the rich app where
    `known`, well-formed ids that name nothing otherwise."""
    real = {
        "/api/v1/devices/": w.ids["device"], "/api/v1/link/": w.ids["device"], "/api/v1/webhooks/": w.ids["webhook"],
        "/api/v1/auto-replies/": w.ids["rule"], "/api/v1/broadcast/campaigns/": w.ids["draft"],
        "/admin/v1/apps/": w.rich.app_id,
    }
    unknown = {
        "/api/v1/devices/": UNKNOWN["dev"], "/api/v1/link/": "not-a-device", "/api/v1/webhooks/": "wh_0000000000000000",
        "/api/v1/auto-replies/": "ar_0000000000000000", "/api/v1/broadcast/campaigns/": "camp_0000000000000000",
        "/api/v1/opt-outs/": "6281999999999", "/api/v1/ip-whitelist/": "ip_0000000000000000",
        "/api/v1/public/messages/": "msg_0000000000000000", "/admin/v1/apps/": UNKNOWN["app"],
    }
    path = case.path
    for prefix in real | unknown:
        if path.startswith(prefix + "{"):
            value = (real if known and prefix in real else unknown)[prefix]
            path = prefix + value + path[path.index("}") + 1:]
    path = path.replace("{delivery_id}", "dlv_0000000000000000").replace("{key_id}", "key_0000000000000000")
    path = path.replace("{event_id}", "evt_" + "0" * 32)
    return path.replace("{sha256}", "0" * 64)


def valid_body(case: Case):
    """A body the operation accepts in shape, from the document's own examples where it has them."""
    body = case.operation.get("requestBody")
    if not body:
        return None
    media = body["content"]["application/json"]
    if "example" in media:
        return media["example"] | {"to": fresh_phone()}
    schema = media["schema"]
    return {k: sample(schema["properties"][k]) for k in schema["required"]}


def sample(schema: dict):
    schema = schema.get("anyOf", [schema])[0]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "array":
        return [sample(schema["items"])]
    if kind == "object":
        return {k: sample(schema["properties"][k]) for k in schema.get("required", [])}
    if kind == "integer":
        return schema.get("minimum", 1)
    if kind == "boolean":
        return False
    # The only required strings with a digit pattern in these documents are phone numbers.
    if "pattern" in schema and "[0-9]" in schema["pattern"]:
        return fresh_phone()
    if schema.get("format") == "date-time":
        return "2030-01-01T00:00:00Z"
    return "x" * max(1, schema.get("minLength", 1))


def invalid(case: Case, probe: Probe) -> Probe:
    """A request the operation refuses as invalid: its body without the required fields, or with
    a wrongly typed field when none is required, or a query parameter out of its range."""
    body = case.operation.get("requestBody")
    if body:
        schema = body["content"]["application/json"]["schema"]
        if schema["required"]:
            probe.body = {}
        else:
            name, prop = next(iter(schema["properties"].items()))
            wrong = [] if prop.get("anyOf", [prop])[0].get("type") != "array" else "not a list"
            probe.body = {name: wrong}
        return probe
    for param in case.operation.get("parameters", []):
        if param.get("in") != "query":
            continue
        if param.get("required"):
            probe.params = {}  # left out
            return probe
        schema = param["schema"]
        probe.params = {param["name"]: schema["minimum"] - 1 if "minimum" in schema else "no-such-value"}
        return probe
    raise AssertionError(f"{case}: no way to make an invalid request")


def link_params(case: Case, w: World, device: str = "device") -> dict:
    return {"token": w.ids["link"][device]} if "/link/" in case.path else {}


def provoke(case: Case, w: World) -> requests.Response:
    stack, status = w.stack, case.status
    tenant = w.rich
    probe = Probe(case.method, path_for(case, w, known=True), body=valid_body(case), params=link_params(case, w))
    if case.document == "spwp" and "source" in (probe.body or {}):
        probe.body["source"] = SOURCES[case.path.rsplit("/", 1)[1]]

    if status == "401":
        # Each from an address of its own: many failures from one would be throttled (429).
        n = next(_addresses)
        probe.headers = {"CF-Connecting-IP": f"10.77.{n // 250}.{n % 250 + 1}"}
        if case.document == "admin":
            probe.headers["Authorization"] = "Bearer not-the-admin-token"
        return send(probe, stack)
    if status == "402":
        tenant = w.suspended
    elif status == "413":
        # One byte over the route's cap, refused by its Content-Length before it is read.
        oversized = b" " * (body_cap(probe.path) + 1)
        return requests.request(probe.method, stack.api + probe.path, params=probe.params, data=oversized,
                                headers={**credentials(case, tenant, stack), "Content-Type": "application/json"}, timeout=60)
    elif status == "403" and case.path.startswith("/api/v1/ip-whitelist"):
        tenant = w.scoped  # the list's own endpoints skip the allow-list; a scoped key may not change it
    elif status == "403" and case.operation.get("security") != []:
        tenant = w.walled
        probe.headers["CF-Connecting-IP"] = WALLED_OFF_IP
    elif status == "429" and case.document == "admin":
        # Wrong tokens from one address until it is refused; the probe is one more.
        probe.headers = {"CF-Connecting-IP": GUESSING_IP, "Authorization": "Bearer a-guess"}
        eventually(lambda: send(Probe("GET", "/admin/v1/apps"), stack, probe.headers).status_code == 429, interval=0)
        return send(probe, stack)
    elif status == "429":
        tenant = w.throttled
        # Spend the minute's one request of the operation's class; the probe is then one too many.
        spend = Probe("POST", "/api/auth/verify", body={}) if case.path.startswith("/api/auth/") else Probe("GET", "/api/v1/devices")
        send(spend, stack, {"X-API-Key": tenant.key})
    elif status == "403" and case.op_id.startswith("link"):
        probe.params = {"token": w.ids["link"]["pending"]}  # another device's token
    elif case.op_id == "downloadMedia":
        # The link as the webhook carried it (already encoded, so sent as it is).
        url, probe.params = w.ids["media_url"].removeprefix(stack.api), {}
        probe.path = url
        if status == "403":
            probe.path = url.replace("expires=", "expires=9")
        elif status == "404":
            sha256 = url.split("?")[0].rsplit("/", 1)[1]
            (stack.bridge_data / "media" / sha256).unlink()  # the bridge no longer holds the file
        elif status == "422":
            probe.path = url.split("?")[0]
        elif status == "502":
            w.stop_bridge()
    elif status == "404":
        probe.path = path_for(case, w, known=False)
        if case.op_id == "sendMessage":
            probe.body |= {"device_id": UNKNOWN["dev"]}
    elif status in ("422", "400"):
        if case.op_id == "verifyOtp":
            probe.body = {"session_id": "otp_0000000000000000", "otp_code": "123456"}
        elif case.document == "spwp" and status == "422":
            # An Idempotency-Key used again with another body.
            key = f"reuse-{time.time_ns()}"
            first = Probe(probe.method, probe.path, {"Idempotency-Key": key}, probe.body)
            assert send(first, stack, credentials(case, tenant, stack)).status_code == 202
            probe.headers["Idempotency-Key"] = key
            probe.body = probe.body | {"to": fresh_phone()}
        else:
            invalid(case, probe)
    elif status == "409":
        ids = w.ids
        if case.document == "spwp":
            tenant = w.deviceless
        elif case.op_id in ("deleteCampaign", "sendCampaign"):
            probe.path = probe.path.replace(ids["draft"], ids["sending"])
        elif case.op_id == "addIp":
            probe.body = {"ip_address": "198.51.100.9"}
        elif case.op_id == "sendMessage":
            # A retry while the first request under its Idempotency-Key is still running
            # (held by the development-only fault header).
            key = f"busy-{time.time_ns()}"
            first = Probe(probe.method, probe.path, {"Idempotency-Key": key, "X-Wagate-Fault": "delay-enqueue=2000"}, probe.body)
            threading.Thread(target=send, args=(first, stack, credentials(case, tenant, stack)), daemon=True).start()
            time.sleep(0.5)
            probe.headers["Idempotency-Key"] = key
        # Otherwise: pausing or resuming a draft, or a QR, a refresh or a pair code for an online device.
    elif status == "502" and case.op_id in REFUSED_BY_WHATSAPP:
        probe.body["phone"] = fresh_phone("999")  # not on WhatsApp
    elif status == "502":
        w.stop_bridge()
        if case.op_id in ("refreshQr", "deleteDevice", "linkPairCode"):
            probe.path = probe.path.replace(w.ids["device"], w.ids["pending"])
            probe.params = link_params(case, w, "pending")
        if case.op_id == "createCampaign":
            probe.body |= {"media_url": PIXEL, "media_type": "image"}
    elif status == "503":
        tenant = w.deviceless
        probe.path = probe.path.replace(w.ids["draft"], w.ids["deviceless_draft"])
    return send(probe, stack, credentials(case, tenant, stack))


def send(probe: Probe, stack, auth: dict | None = None) -> requests.Response:
    return requests.request(probe.method, stack.api + probe.path, params=probe.params, json=probe.body,
                            headers={**(auth or {}), **probe.headers}, timeout=30)


def body_cap(path: str) -> int:
    """What a route's body may weigh (README "Body size")."""
    if path.startswith("/api/v1/public/messages/") and path.rsplit("/", 1)[1] in SOURCES:
        return 24 * 1024 * 1024
    return 10 * 1024 * 1024 if path == "/api/v1/broadcast/campaigns" else 256 * 1024


def error_code(case: Case, body: dict) -> str:
    return body["code"] if case.document == "spwp" else body["error"]


@pytest.mark.parametrize("case", documented_errors(), ids=str)
def test_every_documented_error_is_reachable(world, case):
    response = provoke(case, world)
    assert response.status_code == int(case.status), f"{case}: {response.status_code} {response.text[:500]}"
    documented = case.operation["responses"][case.status]
    schema = documented["content"]["application/json"]["schema"] | {"components": DOCUMENTS[case.document]["components"]}
    body = response.json()
    jsonschema_rs.validator_for(schema).validate(body)
    assert error_code(case, body) in documented["description"], f"{case}: {body} is not what the document says: {documented['description']!r}"
    for header in documented.get("headers", {}):
        assert header in response.headers, f"{case}: no {header} header"
