"""The operator CLI (`wagate`, crate `cli/`) run as a subprocess against the real stack: apps, keys,
linking a device from the terminal, sending, webhook replay, `--json`, and the exit codes scripts
rely on (1 API error, 2 usage, 3 unreachable, 4 timed out)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from conftest import eventually, fresh_phone, inbox

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(os.environ.get("WAGATE_CLI", ROOT / "target" / "release" / "wagate"))
# The CLI reads these; the tests pass everything as flags, so none may leak in from the shell.
CLI_ENV = {k: v for k, v in os.environ.items() if k not in ("WAGATE_URL", "ADMIN_TOKEN", "WAGATE_API_KEY")}
PER_PAGE = 50
QR_BLOCKS = re.compile("[█▀▄]")


@pytest.fixture(scope="module", autouse=True)
def cli_binary():
    assert CLI.is_file(), f"{CLI} is missing: build it with `cargo build --release -p wagate-cli` or set WAGATE_CLI"


def command(stack, *args: str, api_key: str | None = None) -> list[str]:
    key = ["--api-key", api_key] if api_key else []
    return [str(CLI), "--url", stack.api, "--admin-token", stack.admin_token, *key, *args]


def wagate(stack, *args: str, api_key: str | None = None, env=None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(stack, *args, api_key=api_key), capture_output=True, text=True, timeout=timeout, env=env or CLI_ENV
    )


def ok_json(stack, *args: str, api_key: str | None = None):
    r = wagate(stack, "--json", *args, api_key=api_key)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


class Background:
    """A CLI command left running, its stdout and stderr collected line by line as they come."""

    def __init__(self, args: list[str]):
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CLI_ENV)
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [self._read(self.proc.stdout, self.out), self._read(self.proc.stderr, self.err)]

    @staticmethod
    def _read(stream, into: list) -> threading.Thread:
        def drain():
            for line in stream:
                into.append(line)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        return reader

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        for reader in self.readers:
            reader.join(5)
        return code

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stdout(self) -> str:
        return "".join(self.out)


def created_app(stack, name: str) -> tuple[str, str]:
    r = wagate(stack, "apps", "create", "--name", name, "--api-rpm", "1000000", "--auth-rpm", "1000000")
    assert r.returncode == 0, r.stderr
    app_id = re.search(r"\bapp_[0-9a-f]+", r.stdout).group(0)
    key = re.search(r"\bwg_live_\S+", r.stdout).group(0)
    return app_id, key


def tenant_status(stack, key: str) -> int:
    return requests.get(f"{stack.api}/api/v1/devices", headers={"Authorization": f"Bearer {key}"}, timeout=30).status_code


def test_apps_create_list_show_suspend_resume(stack):
    # Enough apps before ours that it lands past the first page of the listing.
    total = ok_json(stack, "apps", "list")["total"]
    for i in range(max(0, PER_PAGE - total)):
        assert stack.admin("POST", "/admin/v1/apps", {"name": f"cli-filler-{i}"})[0] == 201

    name = f"cli-{uuid.uuid4().hex[:8]}"
    r = wagate(stack, "apps", "create", "--name", name, "--monthly-messages", "7", "--max-devices", "3")
    assert r.returncode == 0, r.stderr
    assert "shown only this once" in r.stdout
    app_id = re.search(r"\bapp_[0-9a-f]{16}\b", r.stdout).group(0)
    key = re.search(r"\bwg_live_\S+", r.stdout).group(0)
    assert tenant_status(stack, key) == 200, "the printed key is the app's working key"

    page, found = 1, []
    while True:
        listed = ok_json(stack, "apps", "list", "--page", str(page))
        assert listed["page"] == page and listed["per_page"] == PER_PAGE
        found = [a for a in listed["apps"] if a["app_id"] == app_id]
        if found or page >= listed["last_page"]:
            break
        page += 1
    assert found, f"{app_id} is on none of the {listed['last_page']} pages"
    assert page >= 2 and found[0]["name"] == name
    human = wagate(stack, "apps", "list", "--page", str(page))
    assert human.returncode == 0, human.stderr
    row = next(line for line in human.stdout.splitlines() if line.startswith(app_id))
    assert name in row and "active" in row and "0/7" in row
    assert f"page {page} of {listed['last_page']}" in human.stdout

    shown = ok_json(stack, "apps", "show", app_id)
    assert shown["app_id"] == app_id and shown["plan"]["monthly_messages"] == 7 and shown["plan"]["max_devices"] == 3
    human = wagate(stack, "apps", "show", app_id)
    assert human.returncode == 0, human.stderr
    assert name in human.stdout and "7 messages/month" in human.stdout and shown["keys"][0]["key_id"] in human.stdout
    assert key not in human.stdout, "a key is shown only when created"

    r = wagate(stack, "apps", "suspend", app_id)
    assert r.returncode == 0 and "Suspended" in r.stdout, r.stderr
    assert tenant_status(stack, key) == 402
    assert ok_json(stack, "apps", "show", app_id)["suspended"] is True
    assert ok_json(stack, "apps", "resume", app_id)["suspended"] is False
    assert tenant_status(stack, key) == 200


def test_keys_create_list_revoke(stack):
    app_id, first_key = created_app(stack, "cli keys")
    created = ok_json(stack, "keys", "create", app_id, "--expires-at", "2099-01-31T00:00:00Z")
    key_id, key = created["key_id"], created["api_key"]
    assert key != first_key and tenant_status(stack, key) == 200

    listed = ok_json(stack, "keys", "list", app_id)["keys"]
    mine = next(k for k in listed if k["key_id"] == key_id)
    assert mine["state"] == "active" and key.startswith(mine["prefix"]) and mine["expires_at"].startswith("2099-01-31")
    human = wagate(stack, "keys", "list", app_id)
    assert human.returncode == 0, human.stderr
    row = next(line for line in human.stdout.splitlines() if line.startswith(key_id))
    assert "active" in row and "2099-01-31" in row
    assert key not in human.stdout and first_key not in human.stdout

    r = wagate(stack, "keys", "revoke", app_id, key_id)
    assert r.returncode == 0 and key_id in r.stdout, r.stderr
    assert tenant_status(stack, key) == 401
    assert tenant_status(stack, first_key) == 200, "revoking one key leaves the others working"
    assert next(k for k in ok_json(stack, "keys", "list", app_id)["keys"] if k["key_id"] == key_id)["state"] == "revoked"

    r = wagate(stack, "keys", "create", app_id, "--expires-at", "2001-01-01T00:00:00Z")
    assert r.returncode == 1 and "422" in r.stderr and "expires_at: " in r.stderr


def test_devices_link_by_qr_then_send(stack):
    app_id, key = created_app(stack, "cli devices")
    phone = fresh_phone("62821")
    link = Background(command(stack, "devices", "link", "--label", "cli phone", "--timeout", "60", api_key=key))
    try:
        device_id = eventually(lambda: (m := re.search(r"\bdev_[0-9a-f]+", link.stdout())) and m.group(0))
        # The simulator rotates QR codes every 2 s here: the CLI shows each new one.
        eventually(lambda: link.stdout().count("Scan with WhatsApp") >= 2, timeout=15)
        assert QR_BLOCKS.search(link.stdout()), "the QR is drawn in the terminal"
        assert link.proc.poll() is None, "still waiting for the phone"
        status, body, _ = stack.sim("POST", f"/sim/devices/{device_id}/scan", {"phone": phone})
        assert status == 200, body
        assert link.wait(30) == 0, "".join(link.err)
    finally:
        link.stop()
    assert f"device {device_id} is online as {phone}" in link.stdout()

    listed = wagate(stack, "devices", "list", api_key=key)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith(device_id))
    assert "cli phone" in row and "online" in row and phone in row

    to, text = fresh_phone(), f"hello from the cli {uuid.uuid4().hex[:6]}"
    sent = wagate(stack, "send", "--to", to, "--text", text, api_key=key)
    assert sent.returncode == 0, sent.stderr
    assert re.match(r"msg_[0-9a-f]+\s+queued\b", sent.stdout) and to in sent.stdout
    eventually(lambda: [m for m in inbox(stack, to) if m["text"] == text and m["from"] == phone])

    answer = ok_json(stack, "send", "--to", to, "--text", "second", "--device", device_id, api_key=key)
    assert answer["message_id"].startswith("msg_") and answer["device_id"] == device_id
    eventually(lambda: [m for m in inbox(stack, to) if m["text"] == "second"])


def test_devices_link_by_pairing_code(stack):
    _, key = created_app(stack, "cli pairing")
    phone = fresh_phone("62822")
    link = Background(command(stack, "devices", "link", "--pair-phone", phone, "--timeout", "60", api_key=key))
    try:
        device_id = eventually(lambda: (m := re.search(r"\bdev_[0-9a-f]+", link.stdout())) and m.group(0))
        code = eventually(lambda: (m := re.search(r"enter (\S+)", link.stdout())) and m.group(1))
        assert not QR_BLOCKS.search(link.stdout()), "pairing by code shows no QR"
        status, body, _ = stack.sim("POST", f"/sim/devices/{device_id}/pair", {"code": code})
        assert status == 200, body
        assert link.wait(30) == 0, "".join(link.err)
    finally:
        link.stop()
    assert f"is online as {phone}" in link.stdout()


def test_devices_link_times_out_with_exit_code_4(stack):
    _, key = created_app(stack, "cli timeout")
    started = time.monotonic()
    link = Background(command(stack, "--json", "devices", "link", "--timeout", "2", api_key=key))
    try:
        assert link.wait(30) == 4
    finally:
        link.stop()
    assert 2 <= time.monotonic() - started < 15
    # With --json, stdout holds only JSON (the new device); the QR went to stderr for a person.
    [created] = [json.loads(line) for line in link.out]
    assert created["device_id"].startswith("dev_") and created["status"] in ("registering", "qr_waiting")
    errors = "".join(link.err)
    assert "timed out" in errors and created["device_id"] in errors
    assert QR_BLOCKS.search(errors)


def test_webhook_deliveries_and_replay(stack):
    _, key = created_app(stack, "cli webhooks")
    headers = {"Authorization": f"Bearer {key}"}
    # Nothing listens on port 9: every attempt fails, and with no retries it is `failed` at once.
    hook = requests.post(
        f"{stack.api}/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "retry_count": 0}, headers=headers, timeout=30
    )
    assert hook.status_code == 201, hook.text
    hook_id = hook.json()["id"]
    assert requests.post(f"{stack.api}/api/v1/webhooks/{hook_id}/test", headers=headers, timeout=30).status_code == 200

    def failed():
        return ok_json(stack, "webhooks", "deliveries", hook_id, "--status", "failed", api_key=key)["deliveries"]

    [delivery] = eventually(failed)
    human = wagate(stack, "webhooks", "deliveries", hook_id, api_key=key)
    assert human.returncode == 0, human.stderr
    row = next(line for line in human.stdout.splitlines() if line.startswith(delivery["id"]))
    assert "webhook.test" in row and "failed" in row
    assert ok_json(stack, "webhooks", "deliveries", hook_id, "--status", "succeeded", api_key=key)["deliveries"] == []

    replayed = ok_json(stack, "webhooks", "replay", hook_id, "--since", "2020-01-01T00:00:00Z", api_key=key)
    assert replayed["replayed"] == 1
    [again] = eventually(failed)
    assert again["id"] == delivery["id"], "a replay keeps the delivery's id"
    r = wagate(stack, "webhooks", "replay", hook_id, "--delivery", delivery["id"], api_key=key)
    assert r.returncode == 0 and "Replaying 1 deliveries" in r.stdout, r.stderr

    r = wagate(stack, "webhooks", "replay", hook_id, "--delivery", "dlv_0000000000000000", api_key=key)
    assert r.returncode == 1 and "404" in r.stderr
    r = wagate(stack, "webhooks", "replay", hook_id, api_key=key)
    assert r.returncode == 2, "one of --delivery and --since is required"


def test_exit_codes_and_secrets(stack):
    r = wagate(stack, "apps", "show", "app_0000000000000000")
    assert r.returncode == 1 and r.stdout == ""
    assert "404" in r.stderr and "not_found" in r.stderr and "App not found" in r.stderr

    secret = f"wrong-token-{uuid.uuid4().hex}"
    r = subprocess.run([str(CLI), "--url", stack.api, "--admin-token", secret, "apps", "list"], capture_output=True, text=True, timeout=60, env=CLI_ENV)
    assert r.returncode == 1 and "401" in r.stderr and secret not in r.stdout + r.stderr

    r = subprocess.run([str(CLI), "--url", "http://127.0.0.1:9", "apps", "list"], capture_output=True, text=True, timeout=60, env=CLI_ENV)
    assert r.returncode == 3 and "could not reach http://127.0.0.1:9" in r.stderr

    r = wagate(stack, "devices", "list")
    assert r.returncode == 2 and "WAGATE_API_KEY" in r.stderr
    assert wagate(stack, "apps", "list", "--page", "0").returncode == 2
    assert wagate(stack, "apps", "frobnicate").returncode == 2

    help_text = wagate(stack, "--help", env={**CLI_ENV, "ADMIN_TOKEN": secret, "WAGATE_API_KEY": secret})
    assert help_text.returncode == 0 and secret not in help_text.stdout
    assert all(f"  {code}  " in help_text.stdout for code in "01234"), "exit codes are documented in --help"


def test_environment_configures_and_flags_override(stack):
    _, key = created_app(stack, "cli env")
    env = {**CLI_ENV, "WAGATE_URL": stack.api, "ADMIN_TOKEN": stack.admin_token, "WAGATE_API_KEY": key}
    r = subprocess.run([str(CLI), "--json", "devices", "list"], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["devices"] == [], r.stderr
    r = subprocess.run([str(CLI), "apps", "list", "--url", "http://127.0.0.1:9"], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 3, "--url wins over WAGATE_URL"
