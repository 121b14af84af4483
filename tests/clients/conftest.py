"""The reference's client code, run by its own runtimes (curl, node, php, python) against the one
stack of the end-to-end suite: its fixtures are loaded from tests/e2e/conftest.py, not repeated."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Loaded under its own name: both folders' conftest.py would otherwise be the module `conftest`.
_spec = importlib.util.spec_from_file_location("e2e_conftest", ROOT / "tests" / "e2e" / "conftest.py")
e2e = importlib.util.module_from_spec(_spec)
sys.modules["e2e_conftest"] = e2e
_spec.loader.exec_module(e2e)

stack = e2e.stack
new_tenant = e2e.new_tenant
Tenant, eventually, fresh_phone, inbox, OTP_TTL_S = e2e.Tenant, e2e.eventually, e2e.fresh_phone, e2e.inbox, e2e.OTP_TTL_S

# Debian's php-guzzlehttp-guzzle (scripts/bootstrap.sh installs it).
GUZZLE_AUTOLOAD = "/usr/share/php/GuzzleHttp/autoload.php"


@pytest.fixture(scope="session")
def workdir() -> Path:
    """Where the wrappers are written: inside the repository, so `import express` resolves to its node_modules."""
    path = ROOT / "tests" / "artifacts" / time.strftime("clients-%Y%m%d-%H%M%S")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def scratch(workdir, request) -> Path:
    path = workdir / re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
    path.mkdir(exist_ok=True)
    return path


def run(argv: list, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Runs a client as a user would, with the reference's environment variables set."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


class Client:
    """A fresh app with a linked simulated phone, and the environment the reference's snippets read."""

    def __init__(self, tenant, device_id: str, phone: str):
        self.tenant, self.device_id, self.phone = tenant, device_id, phone
        self.spwp = tenant.scoped_to(device_id)  # SPWP keys belong to one WhatsApp account
        self.env = {"LOGINWA_API_KEY": tenant.key, "SPWP_API_KEY": self.spwp.key}

    def received(self, to: str, predicate=lambda m: True, count: int = 1) -> list:
        """The messages `to` got from this client's number (the recipients are shared by every test)."""
        mine = lambda: [m for m in inbox(self.tenant.stack, to) if m["from"] == self.phone and predicate(m)]
        return eventually(lambda: len(mine()) >= count and mine())


@pytest.fixture
def client(stack, new_tenant) -> Client:
    tenant = new_tenant()
    phone = fresh_phone("62855")
    return Client(tenant, tenant.link_device(phone), phone)
