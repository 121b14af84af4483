"""The OpenAPI documents the worker serves: identical to what scripts/openapi.py writes, served as
static assets, and true of the running stack, as Schemathesis (a fuzzer nobody here wrote) finds
when it throws generated and invalid requests at every documented operation."""

import importlib.util
import json
import subprocess

import pytest
import requests

from conftest import ARTIFACTS, ROOT, fresh_phone

spec = importlib.util.spec_from_file_location("openapi", ROOT / "scripts" / "openapi.py")
openapi = importlib.util.module_from_spec(spec)
spec.loader.exec_module(openapi)


@pytest.mark.parametrize("name", sorted(openapi.DOCUMENTS))
def test_committed_documents_are_current_and_served(stack, name):
    committed = json.loads((ROOT / "public" / "openapi" / f"{name}.json").read_text())
    assert committed == openapi.DOCUMENTS[name](), "run scripts/openapi.py and commit the result"
    served = requests.get(f"{stack.api}/openapi/{name}.json")
    assert served.status_code == 200 and served.json() == committed


@pytest.mark.parametrize("name", sorted(openapi.DOCUMENTS))
def test_the_stack_keeps_to_the_document_under_fuzzing(stack, new_tenant, name):
    tenant = new_tenant()
    tenant.link_device(fresh_phone("62860"))
    report = ARTIFACTS / "schemathesis" / name
    result = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "schemathesis"), "--config-file", str(ROOT / "tests" / "e2e" / "schemathesis.toml"), "run", str(ROOT / "public" / "openapi" / f"{name}.json"),
            "--url", stack.api, "--header", f"X-API-Key: {tenant.key}",
            "--checks", "all", "--max-examples", "25", "--seed", "7", "--request-timeout", "20",
            "--report", "junit", "--report-dir", str(report),
        ],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
