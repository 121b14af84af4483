"""Production is the default: a worker run with the configuration that is deployed (no
`ENVIRONMENT` set by a local runner) hands out no `debug_code` and refuses loopback webhook and
media URLs; a bridge without an explicit engine does not start (that `/sim` exists only under
`sim` is tested in test_whatsapp_engine.py, on its bridge)."""

import os
import subprocess
import time

import pytest

from conftest import ARTIFACTS, ROOT, Tenant, fresh_phone
from stack import BRIDGE_BIN, Stack, free_port


@pytest.fixture(scope="module")
def deployed():
    """The worker as wrangler.toml deploys it: the runner leaves ENVIRONMENT alone."""
    s = Stack.throwaway(ARTIFACTS / time.strftime("deployed-%Y%m%d-%H%M%S"), environment=None)
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
