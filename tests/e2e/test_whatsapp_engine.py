"""The real WhatsApp engine (`WAGATE_ENGINE=whatsapp`) on a machine that cannot reach WhatsApp:
the bridge starts, a link request is accepted, and the log says plainly that the servers are
unreachable and when it retries — rather than crashing or hanging; and it has no `/sim` API."""

import hashlib
import hmac
import json
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from conftest import ROOT, eventually
from stack import BRIDGE_BIN, free_port


def signed(secret: str, method: str, path: str, body: bytes) -> dict:
    ts = str(int(time.time()))
    message = f"{ts}.{method}.{path}.".encode() + body
    return {"x-wagate-timestamp": ts, "x-wagate-signature": hmac.new(secret.encode(), message, hashlib.sha256).hexdigest(), "content-type": "application/json"}


@dataclass
class RunningBridge:
    base: str
    secret: str
    log: Path
    process: subprocess.Popen


@pytest.fixture
def whatsapp_bridge(tmp_path):
    """The bridge binary with the real engine, its events going nowhere."""
    port, secret = free_port(), secrets.token_hex(16)
    log = tmp_path / "bridge.log"
    env = {**os.environ, "BRIDGE_PORT": str(port), "BRIDGE_SECRET": secret, "WAGATE_ENGINE": "whatsapp",
           "WAGATE_DATA_DIR": str(tmp_path / "data"), "WAGATE_WORKER_URL": "http://127.0.0.1:9"}
    process = subprocess.Popen([str(BRIDGE_BIN)], cwd=ROOT, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        bridge = RunningBridge(f"http://127.0.0.1:{port}", secret, log, process)
        eventually(lambda: _healthy(bridge.base))
        yield bridge
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_whatsapp_engine_reports_that_it_needs_the_network(whatsapp_bridge):
    base, secret = whatsapp_bridge.base, whatsapp_bridge.secret
    body = json.dumps({"device_id": "dev_00112233445566aa"}).encode()
    r = requests.post(f"{base}/v1/devices", data=body, headers=signed(secret, "POST", "/v1/devices", body), timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["phone"] is None, "pairing has started; the QR comes from WhatsApp later"
    text = eventually(lambda: "cannot reach WhatsApp servers" in (t := whatsapp_bridge.log.read_text()) and t, timeout=30)
    assert "retrying in" in text
    body = json.dumps({"message_id": "msg_00112233445566aa0011223344556677", "to": "6281234567890@s.whatsapp.net", "content": {"type": "text", "text": "hi"}}).encode()
    path = "/v1/devices/dev_00112233445566aa/messages"
    r = requests.post(f"{base}{path}", data=body, headers=signed(secret, "POST", path, body), timeout=30)
    assert r.status_code == 409 and r.json()["code"] == "device_offline", "nothing is sent while unlinked"
    assert whatsapp_bridge.process.poll() is None, "the bridge keeps running"


def test_the_sim_control_api_does_not_exist_under_the_whatsapp_engine(whatsapp_bridge):
    """Kept true (it was already): a whatsapp-engine bridge has no `/sim` routes, so nobody holding
    the bridge secret can fake a scan, an inbound message or a phone's inbox on a real deployment."""
    auth = {"authorization": f"Bearer {whatsapp_bridge.secret}"}
    for method, path, body in [
        ("POST", "/sim/devices/dev_00112233445566aa/scan", {"phone": "6281234567890"}),
        ("POST", "/sim/inbound", {"device_id": "dev_00112233445566aa", "from": "14155552671", "text": "hi"}),
        ("GET", "/sim/phones/6281234567890/messages", None),
    ]:
        r = requests.request(method, whatsapp_bridge.base + path, json=body, headers=auth, timeout=10)
        assert r.status_code == 404, (path, r.status_code, r.text)


def _healthy(base: str) -> bool:
    try:
        return requests.get(f"{base}/healthz", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False
