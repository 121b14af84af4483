"""The pages the worker serves, in headless Chromium: the device-linking page (QR that decodes to
the device's reference, pair code, flip to connected) on a phone-sized screen, and the API docs.
Screenshots are kept under tests/artifacts/pages/."""

import html
import io
import json
import os
import re
import shutil
import subprocess

import pytest
import requests
import zxingcpp
from PIL import Image
from playwright.sync_api import sync_playwright

from conftest import ARTIFACTS, ROOT, eventually, fresh_phone

SHOTS = ARTIFACTS / "pages"
PHONE_SCREEN = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser():
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    assert executable, "Chromium is installed by scripts/bootstrap.sh"
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


def tooling_page(browser, **options):
    """A page the tests may inject their tools into (axe-core, polled predicates), which the
    page's own Content-Security-Policy rightly forbids; the CSP tests below use plain pages."""
    return browser.new_page(bypass_csp=True, **options)


def accessibility_violations(page, within: str = "body") -> list:
    """What axe-core (npm, run in the page) finds against WCAG 2 A and AA: labels, contrast, roles."""
    page.add_script_tag(path=str(ROOT / "node_modules" / "axe-core" / "axe.min.js"))
    result = page.evaluate("within => axe.run(within, {runOnly: ['wcag2a', 'wcag2aa']})", within)
    return [(v["id"], [n["target"] for n in v["nodes"]]) for v in result["violations"]]


def decode(png: bytes) -> str:
    [result] = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    return result.text


def test_link_page_shows_the_current_qr_and_turns_connected(stack, new_tenant, browser):
    tenant = new_tenant()
    device = tenant.post("/api/v1/devices", {"label": "Front desk"}).json()["device_id"]
    link = tenant.post(f"/api/v1/devices/{device}/link-token")
    assert link.status_code == 201, link.text
    link = link.json()
    assert link["url"] == f"{stack.api}/link/{device}?token={link['token']}" and link["expires_at"]

    page = tooling_page(browser, viewport=PHONE_SCREEN)
    page.goto(link["url"])
    page.wait_for_function("() => { const qr = document.getElementById('qr'); return qr.dataset.ref && qr.complete && qr.naturalWidth > 0 }")
    shown = page.get_attribute("#qr", "data-ref")
    decoded = decode(page.locator("#qr").screenshot(path=str(SHOTS / "link-waiting-qr.png")))
    page.screenshot(path=str(SHOTS / "link-waiting.png"), full_page=True)
    issued = {e["data"]["qr_code"] for e in tenant.events("device.qr_ready")}
    assert decoded == shown and decoded in issued, "the picture encodes a reference the device issued"
    # The page follows the rotation to the device's current code.
    eventually(lambda: page.get_attribute("#qr", "data-ref") == tenant.device(device)["qr_code"], timeout=10, interval=0.5)
    assert page.get_attribute("#status", "aria-live") == "polite" and page.get_attribute("#qr", "alt")
    assert page.locator("label[for=phone]").is_visible()
    assert accessibility_violations(page) == []

    phone = fresh_phone("62850")
    stack.sim("POST", f"/sim/devices/{device}/scan", {"phone": phone})
    page.wait_for_selector(f"#connected:has-text('Connected as +{phone}')", timeout=15_000)
    assert page.locator("#scan").is_hidden()
    page.screenshot(path=str(SHOTS / "link-connected.png"), full_page=True)
    assert accessibility_violations(page) == []


def test_link_page_pairs_by_code_and_refuses_a_bad_token(stack, new_tenant, browser):
    tenant = new_tenant()
    device = tenant.post("/api/v1/devices", {"label": "By code"}).json()["device_id"]
    url = tenant.post(f"/api/v1/devices/{device}/link-token").json()["url"]
    page = tooling_page(browser, viewport=PHONE_SCREEN)
    page.goto(url)
    phone = fresh_phone("62851")
    page.fill("#phone", phone)
    page.click("button[type=submit]")
    code = eventually(lambda: page.text_content("#code").strip(), timeout=15)
    page.screenshot(path=str(SHOTS / "link-pair-code.png"), full_page=True)
    assert code == tenant.device(device)["pair_code"]
    assert stack.sim("POST", f"/sim/devices/{device}/pair", {"code": code})[0] == 200
    page.wait_for_selector(f"#connected:has-text('Connected as +{phone}')", timeout=15_000)

    forged = url.replace("token=", "token=0")
    r = requests.get(forged.replace(f"/link/{device}", f"/api/v1/link/{device}"))
    assert r.status_code == 403 and r.json()["error"] == "invalid_link"
    bad = tooling_page(browser, viewport=PHONE_SCREEN)
    bad.goto(forged)
    bad.wait_for_selector("#status.error")
    assert "new link" in bad.text_content("#status")
    other = tenant.post("/api/v1/devices", {}).json()["device_id"]
    token = url.split("token=")[1]
    assert requests.get(f"{stack.api}/api/v1/link/{other}?token={token}").status_code == 403, "a token fits one device"


@pytest.mark.parametrize("spec", ["loginwa", "spwp", "admin"])
def test_docs_page_renders_every_operation(stack, browser, spec):
    document = requests.get(f"{stack.api}/openapi/{spec}.json").json()
    operations = {op["operationId"] for path in document["paths"].values() for op in path.values()}
    page = tooling_page(browser, viewport={"width": 1280, "height": 900})
    page.goto(f"{stack.api}/docs/?spec={spec}")
    page.wait_for_selector("[data-section-id^='operation/']", timeout=30_000)
    rendered = set(page.eval_on_selector_all(
        "[data-section-id^='operation/']", "els => els.map(e => e.dataset.sectionId.split('/').pop())"))
    assert operations <= rendered, operations - rendered
    assert page.get_attribute(f"nav a[data-spec={spec}]", "aria-current") == "page"
    # Our own part of the page; the reference below it is Redoc's.
    assert accessibility_violations(page, "header") == []
    page.screenshot(path=str(SHOTS / f"docs-{spec}.png"))


def commands(block: str) -> list[str]:
    """The shell commands of a `<pre>` block: comment lines dropped, continued lines joined."""
    out, current = [], ""
    for line in html.unescape(block).splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1]
            continue
        out.append(current + line)
        current = ""
    return out


def test_getting_started_commands_work_as_written(stack, receiver, tmp_path):
    """The docs page's getting-started block, run as written by bash and curl. The page is written
    for `make run`; this stack has its own port and admin token, and the webhook receiver listens
    where this test can read what it got."""
    [block] = re.findall(r"<pre>(.*?)</pre>", requests.get(f"{stack.api}/docs/").text, re.S)
    steps = commands(block)
    local = {"http://127.0.0.1:8787": stack.api, "dev-admin-token": stack.admin_token,
             "http://127.0.0.1:9000/hook": receiver.url("/hook"), "body.json": str(tmp_path / "body.json")}
    env = dict(os.environ)

    def run(command: str, **values) -> str:
        for name, value in (local | values).items():
            command = command.replace(name, value)
        done = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (command, done.stderr)
        return done.stdout

    def curl(command: str, status: int, **values) -> dict:
        # The status after the body; an inline comment would swallow the option, so it goes.
        out = run(re.sub(r"\s+#\s.*$", "", command) + " -sS -w '\\n%{http_code}'", **values)
        body, code = out.rsplit("\n", 1)
        assert int(code) == status, (command, code, body)
        return json.loads(body)

    curls = [s for s in steps if s.startswith("curl ")]
    [check_signature] = [s for s in steps if s.startswith("python3 ")]
    create_app, create_device, link_token, send_loginwa, send_spwp, create_webhook = curls
    env["KEY"] = curl(create_app, 201)["api_key"]
    device = curl(create_device, 202)["device_id"]
    assert curl(link_token, 201, DEVICE_ID=device)["url"].startswith(f"{stack.api}/link/{device}?token=")
    # The phone's owner scans the page's QR: here, a virtual phone.
    key = {"Authorization": f"Bearer {env['KEY']}"}
    device_status = lambda: requests.get(f"{stack.api}/api/v1/devices/{device}", headers=key).json()["status"]
    eventually(lambda: device_status() == "qr_waiting")
    assert stack.sim("POST", f"/sim/devices/{device}/scan", {"phone": fresh_phone("62899")})[0] == 200
    eventually(lambda: device_status() == "online")
    assert curl(send_loginwa, 200)["success"] is True
    assert curl(send_spwp, 202)["data"]["status"] == "QUEUED"

    secret = curl(create_webhook, 201)["secret"]
    curl(send_loginwa, 200)
    delivery = eventually(lambda: receiver.delivered("/hook"))[0]
    (tmp_path / "body.json").write_bytes(delivery["body"])
    assert run(check_signature, SECRET=secret).strip() == delivery["headers"]["x-loginwa-signature"]


def watched(browser, origin: str):
    """A page that records every request it makes and every CSP violation it reports."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.requests, page.violations = [], []
    page.on("request", lambda r: page.requests.append(r.url))
    page.on("console", lambda m: "Content Security Policy" in m.text and page.violations.append(m.text))
    page.add_init_script("document.addEventListener('securitypolicyviolation', e => console.error("
                         "'Content Security Policy violation: ' + e.violatedDirective + ' ' + e.blockedURI))")
    page.origin = origin
    return page


def foreign(page) -> list:
    return [u for u in page.requests if not (u.startswith(page.origin + "/") or u.startswith(("data:", "blob:")))]


@pytest.mark.parametrize("spec", ["loginwa", "admin"])
def test_docs_page_loads_nothing_from_elsewhere_under_its_csp(stack, browser, spec):
    """Before: no Content-Security-Policy, and Redoc fetched its logo from cdn.redoc.ly."""
    page = watched(browser, stack.api)
    response = page.goto(f"{stack.api}/docs/?spec={spec}")
    policy = response.headers.get("content-security-policy", "")
    assert "default-src 'none'" in policy and "script-src 'self'" in policy, policy
    page.wait_for_selector("[data-section-id^='operation/']", timeout=30_000)
    page.wait_for_load_state("networkidle")
    assert foreign(page) == [] and page.violations == [], (foreign(page), page.violations)


def test_link_page_loads_nothing_from_elsewhere_under_its_csp(stack, new_tenant, browser):
    """Before: no Content-Security-Policy on the link page the worker serves."""
    tenant = new_tenant()
    device = tenant.post("/api/v1/devices", {"label": "CSP"}).json()["device_id"]
    url = tenant.post(f"/api/v1/devices/{device}/link-token").json()["url"]
    page = watched(browser, stack.api)
    response = page.goto(url)
    policy = response.headers.get("content-security-policy", "")
    assert "default-src 'none'" in policy and "style-src 'self';" in policy, policy
    page.wait_for_selector("#qr[src]")
    page.wait_for_load_state("networkidle")
    assert page.evaluate("document.getElementById('qr').naturalWidth") > 0
    assert foreign(page) == [] and page.violations == [], (foreign(page), page.violations)
