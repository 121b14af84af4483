"""The references' own webhook checks as real receivers of real deliveries: LoginWA's PHP/Laravel
`hash_hmac` check under `php -S`, SPWP's express verifier under node. Every event type is driven;
each delivery must pass the snippet's own check, and one signed with another secret must not."""

import json
import os
import socket
import subprocess
import time

import pytest

from conftest import OTP_TTL_S, Tenant, eventually, fresh_phone, inbox
from snippets import LOGINWA, SPWP, block
from stack import free_port

# The secret the reference's PHP check hard-codes; the LoginWA API lets an endpoint choose its own.
REFERENCE_SECRET = "your_webhook_secret"

LOGINWA_EVENTS = {
    "message.sent", "message.delivered", "message.read", "message.failed", "message.incoming",
    "device.connected", "device.disconnected", "device.qr_ready", "otp.verified", "otp.expired",
    "campaign.completed", "webhook.test",
}
SPWP_EVENTS = {"MESSAGE_STATUS", "MESSAGE_RECEIVED", "ACCOUNT_CONNECTED", "ACCOUNT_DISCONNECTED", "WEBHOOK_TEST"}

# Laravel's part, around the snippet: `$request` and `abort()`. Each answer is logged for the test.
PHP_FRAME = """<?php
$request = new class {
    public function header($name) { return $_SERVER['HTTP_' . strtoupper(str_replace('-', '_', $name))] ?? null; }
    public function getContent() { return file_get_contents('php://input'); }
};
function abort($code, $message = '') { http_response_code($code); echo $message; exit; }
register_shutdown_function(function () {
    $answer = ['url' => $_SERVER['REQUEST_URI'], 'event' => $_SERVER['HTTP_X_LOGINWA_EVENT'] ?? null, 'status' => http_response_code()];
    file_put_contents(getenv('ANSWERS'), json_encode($answer) . "\\n", FILE_APPEND | LOCK_EX);
});
"""

# The reference's app never listens: the rest of its server. Each answer is logged for the test.
NODE_TAIL = """
import { appendFileSync } from "node:fs";
app.listen(Number(process.env.PORT)).on("request", (req, res) => res.on("finish", () => appendFileSync(
  process.env.ANSWERS, JSON.stringify({ url: req.url, event: req.headers["x-wa-event"] ?? null, status: res.statusCode }) + "\\n")));
"""


def answers(path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def hook(tenant, url: str, **fields) -> dict:
    r = tenant.post("/api/v1/webhooks", {"url": url, **fields})
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture(scope="module")
def deliveries(stack, workdir):
    """Both receivers, each behind a `good` endpoint (the right secret) and a `tampered` one
    (another secret); then every event type, once, on one app."""
    status, body, _ = stack.admin("POST", "/admin/v1/apps", {"name": "webhook receivers", "api_rpm": 1_000_000, "auth_rpm": 1_000_000})
    assert status == 201, body
    tenant = Tenant(stack, body["app_id"], body["api_key"])
    php_port, node_port = free_port(), free_port()
    php_url, node_url = f"http://127.0.0.1:{php_port}/webhooks/loginwa", f"http://127.0.0.1:{node_port}/webhooks/spwp"
    hooks = [
        hook(tenant, f"{php_url}?endpoint=good", format="loginwa", secret=REFERENCE_SECRET),
        hook(tenant, f"{php_url}?endpoint=tampered", format="loginwa", secret="not_the_reference_secret", retry_count=0),
        spwp := hook(tenant, f"{node_url}?endpoint=good", format="spwp"),
        hook(tenant, f"{node_url}?endpoint=tampered", format="spwp", retry_count=0),
    ]

    folder = workdir / "webhook-receivers"
    folder.mkdir(exist_ok=True)
    (folder / "router.php").write_text(PHP_FRAME + block(LOGINWA, "// PHP/Laravel example", "}"))
    (folder / "server.mjs").write_text(block(SPWP, 'import crypto from "node:crypto";', ");") + NODE_TAIL)
    logs = {"loginwa": folder / "php-answers.jsonl", "spwp": folder / "node-answers.jsonl"}
    servers = [
        subprocess.Popen(["php", "-S", f"127.0.0.1:{php_port}", str(folder / "router.php")], stdout=subprocess.DEVNULL,
                         stderr=open(folder / "php.log", "w"), env={"ANSWERS": str(logs["loginwa"]), "PHP_CLI_SERVER_WORKERS": "4", "PATH": os.environ["PATH"]}),
        subprocess.Popen(["node", str(folder / "server.mjs")], stdout=subprocess.DEVNULL, stderr=open(folder / "node.log", "w"),
                         env={"ANSWERS": str(logs["spwp"]), "PORT": str(node_port), "SPWP_WEBHOOK_SECRET": spwp["secret"], "PATH": os.environ["PATH"]}),
    ]
    try:
        eventually(lambda: listening(php_port) and listening(node_port), timeout=15)
        drive_every_event(stack, tenant, hooks, logs)
        deadline = time.monotonic() + OTP_TTL_S + 30
        while time.monotonic() < deadline and not (
            LOGINWA_EVENTS <= events(logs["loginwa"], "good") and SPWP_EVENTS <= events(logs["spwp"], "good")
        ):
            time.sleep(0.5)
        yield {format: answers(path) for format, path in logs.items()}
    finally:
        for server in servers:
            server.terminate()
            server.wait(10)


def events(log, endpoint: str) -> set:
    return {a["event"] for a in answers(log) if a["url"].endswith(f"endpoint={endpoint}") and 200 <= a["status"] < 300}


def drive_every_event(stack, tenant, hooks, logs):
    device = tenant.link_device(fresh_phone("62856"))  # device.qr_ready, device.connected
    to = fresh_phone()
    assert tenant.post("/api/v1/messages/send", {"phone": to, "message": "hello"}).status_code == 200  # sent, delivered, read
    assert tenant.post("/api/v1/messages/send", {"phone": fresh_phone("997"), "message": "doomed"}).status_code == 502  # failed
    status, body, _ = stack.sim("POST", "/sim/inbound", {"device_id": device, "from": "14155552671", "text": "hi there"})
    assert status == 200, body
    started = tenant.post("/api/auth/start", {"phone": to}).json()
    r = tenant.post("/api/auth/verify", {"session_id": started["session_id"], "otp_code": started["debug_code"]})
    assert r.status_code == 200, r.text  # otp.verified
    assert tenant.post("/api/auth/start", {"phone": fresh_phone()}).status_code == 200  # left to expire: otp.expired
    r = tenant.post("/api/v1/broadcast/campaigns", {"name": "hooks", "message": "Hi {name}", "contacts": [{"phone": fresh_phone(), "name": "Budi"}], "delay_seconds": 1})
    assert r.status_code == 201, r.text
    assert tenant.post(f"/api/v1/broadcast/campaigns/{r.json()['data']['id']}/send").status_code < 300  # campaign.completed
    for h in hooks:
        r = tenant.post(f"/api/v1/webhooks/{h['id']}/test")
        assert r.status_code < 300, r.text  # webhook.test
    # Unlinking last, once what needs the device is through.
    eventually(lambda: len(inbox(stack, to)) == 2 and {"message.read", "campaign.completed"} <= events(logs["loginwa"], "good"), timeout=30)
    status, body, _ = stack.sim("POST", f"/sim/devices/{device}/disconnect")  # device.disconnected
    assert status == 200, body


# The reference's two checks: LoginWA's Laravel one answers 403 to a bad signature, SPWP's express one 401.
CHECKS = [("loginwa", LOGINWA_EVENTS, 403), ("spwp", SPWP_EVENTS, 401)]
CHECK_IDS = ["laravel", "express"]


@pytest.mark.parametrize("fmt, expected, _refusal", CHECKS, ids=CHECK_IDS)
def test_the_check_accepts_every_event(deliveries, fmt, expected, _refusal):
    good = [a for a in deliveries[fmt] if a["url"].endswith("endpoint=good")]
    assert [a for a in good if not 200 <= a["status"] < 300] == [], "refused by the reference's own check"
    assert expected - {a["event"] for a in good} == set(), "never delivered"


@pytest.mark.parametrize("fmt, _expected, refusal", CHECKS, ids=CHECK_IDS)
def test_the_check_refuses_another_secret(deliveries, fmt, _expected, refusal):
    tampered = [a for a in deliveries[fmt] if a["url"].endswith("endpoint=tampered")]
    assert tampered and {a["status"] for a in tampered} == {refusal}, tampered
