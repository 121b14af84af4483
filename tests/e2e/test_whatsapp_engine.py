"""The real WhatsApp engine (`WAGATE_ENGINE=whatsapp`) on a machine that cannot reach WhatsApp:
the bridge starts, a link request is accepted, and the log says plainly that the servers are
unreachable and when it retries — rather than crashing or hanging."""

import hashlib
import hmac
import json
import os
import secrets
import signal
import subprocess
import time

import requests

from conftest import ROOT, eventually
from stack import BRIDGE_BIN, free_port


def signed(secret: str, method: str, path: str, body: bytes) -> dict:
    ts = str(int(time.time()))
    message = f"{ts}.{method}.{path}.".encode() + body
    return {"x-wagate-timestamp": ts, "x-wagate-signature": hmac.new(secret.encode(), message, hashlib.sha256).hexdigest(), "content-type": "application/json"}


def test_whatsapp_engine_reports_that_it_needs_the_network(tmp_path):
    port, secret = free_port(), secrets.token_hex(16)
    log = open(tmp_path / "bridge.log", "wb")
    env = {**os.environ, "BRIDGE_PORT": str(port), "BRIDGE_SECRET": secret, "WAGATE_ENGINE": "whatsapp",
           "WAGATE_DATA_DIR": str(tmp_path / "data"), "WAGATE_WORKER_URL": "http://127.0.0.1:9"}
    bridge = subprocess.Popen([str(BRIDGE_BIN)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        eventually(lambda: _healthy(base))
        body = json.dumps({"device_id": "dev_00112233445566aa"}).encode()
        r = requests.post(f"{base}/v1/devices", data=body, headers=signed(secret, "POST", "/v1/devices", body), timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["phone"] is None, "pairing has started; the QR comes from WhatsApp later"
        text = eventually(lambda: "cannot reach WhatsApp servers" in (t := (tmp_path / "bridge.log").read_text()) and t, timeout=30)
        assert "retrying in" in text
        body = json.dumps({"message_id": "msg_00112233445566aa0011223344556677", "to": "6281234567890@s.whatsapp.net", "content": {"type": "text", "text": "hi"}}).encode()
        path = "/v1/devices/dev_00112233445566aa/messages"
        r = requests.post(f"{base}{path}", data=body, headers=signed(secret, "POST", path, body), timeout=30)
        assert r.status_code == 409 and r.json()["code"] == "device_offline", "nothing is sent while unlinked"
        assert bridge.poll() is None, "the bridge keeps running"
    finally:
        os.killpg(bridge.pid, signal.SIGTERM)
        bridge.wait(timeout=30)


def _healthy(base: str) -> bool:
    try:
        return requests.get(f"{base}/healthz", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False
