"""The OpenAPI documents the worker serves: identical to what scripts/openapi.py writes, served as
static assets, and true of the running stack, as Schemathesis (a fuzzer nobody here wrote) finds
when it throws generated and invalid requests at every documented operation. Where validity
depends on more than a schema can say, tests/e2e/schemathesis.toml says which answers are
expected and why."""

import importlib.util
import json
import subprocess
import time

import pytest
import requests

from conftest import ARTIFACTS, ROOT, Tenant, fresh_phone
from stack import Stack

spec = importlib.util.spec_from_file_location("openapi", ROOT / "scripts" / "openapi.py")
openapi = importlib.util.module_from_spec(spec)
spec.loader.exec_module(openapi)


@pytest.fixture(scope="module")
def fuzzed():
    """A stack of its own: the fuzzer probes thousands of times without a key, which the
    brute-force defence would otherwise (rightly) answer with 429 from the first minute on; and
    the webhooks it registers may only point at this machine, since this sandbox resolves no
    other names (local workerd does not take unresolvable fetches gracefully)."""
    settings = {"AUTH_FAILURES_PER_MIN": "1000000", "WEBHOOK_HOSTS": "127.0.0.1"}
    s = Stack.throwaway(ARTIFACTS / time.strftime("fuzz-%Y%m%d-%H%M%S"), worker_vars=settings)
    try:
        yield s.start()
    finally:
        s.stop()


@pytest.mark.parametrize("name", sorted(openapi.DOCUMENTS))
def test_committed_documents_are_current_and_served(fuzzed, name):
    committed = json.loads((ROOT / "public" / "openapi" / f"{name}.json").read_text())
    assert committed == openapi.DOCUMENTS[name](), "run scripts/openapi.py and commit the result"
    served = requests.get(f"{fuzzed.api}/openapi/{name}.json")
    assert served.status_code == 200 and served.json() == committed


@pytest.mark.parametrize("name", sorted(openapi.DOCUMENTS))
def test_the_stack_keeps_to_the_document_under_fuzzing(fuzzed, name):
    status, app, _ = fuzzed.admin("POST", "/admin/v1/apps", {"name": "fuzz", "api_rpm": 10**9, "auth_rpm": 10**9})
    assert status == 201, app
    tenant = Tenant(fuzzed, app["app_id"], app["api_key"])
    tenant.link_device(fresh_phone("62860"))
    # Each document's own way of presenting its credential.
    header = {"admin": f"Authorization: Bearer {fuzzed.admin_token}", "loginwa": f"Authorization: Bearer {tenant.key}",
              "spwp": f"X-API-Key: {tenant.key}"}[name]
    result = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "schemathesis"), "--config-file", str(ROOT / "tests" / "e2e" / "schemathesis.toml"),
            "run", str(ROOT / "public" / "openapi" / f"{name}.json"), "--url", fuzzed.api, "--header", header,
            "--checks", "all", "--max-examples", "25", "--seed", "7", "--request-timeout", "20",
            "--report", "junit", "--report-dir", str(ARTIFACTS / "schemathesis" / name),
        ],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
