"""Hostile URLs on the real stack: webhook and media URLs are judged as the runtime's fetch reads
them (WHATWG), media fetches have a deadline, follow no redirect, stop at 16 MB while streaming,
echo nothing the server said, and are made only once the send is reserved.

The stack here is a development one (loopback receivers allowed, so the test's own servers can
be reached) with both egress lists set: `allowed.example` and 127.0.0.1."""

import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from PIL import Image

from conftest import ARTIFACTS, Tenant, fresh_phone
from stack import Stack

FETCH_TIMEOUT_S = 2
ENDLESS_LIMIT = 64 * 1024 * 1024

# Each of these reaches 127.0.0.1 (or, for the first, evil.example) when fetched, while a hand
# split of the string reads a harmless host, or an IP check of the text finds no IP.
SPELLINGS = [
    "https://evil.example\\.allowed.example/hook",
    "https://2130706433/hook",
    "https://0x7f.1/hook",
    "https://127.1/hook",
    "https://127.0.0.1./hook",
    "https://[::127.0.0.1]/hook",
]


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 120, 40)).save(out, format="PNG")
    return out.getvalue()


class MediaServer:
    """A hostile media host: counts what is asked of it and answers each path its own way."""

    def __init__(self):
        self.hits: dict[str, int] = {}
        self.written: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                getattr(server, "serve_" + self.path.strip("/").split(".")[0], server.serve_missing)(self)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    @staticmethod
    def _reply(h, status, body, **headers):
        h.send_response(status)
        for name, value in {"content-length": str(len(body)), **headers}.items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(body)

    def serve_missing(self, h):
        self._reply(h, 404, b"")

    def serve_image(self, h):
        self._reply(h, 200, png(), **{"content-type": "image/png"})

    def serve_internal(self, h):
        """Where the redirect points: what only the inside should see."""
        self._reply(h, 200, png(), **{"content-type": "image/png"})

    def serve_redirect(self, h):
        h.send_response(302)
        h.send_header("location", f"{self.base}/internal.png")
        h.send_header("content-length", "0")
        h.end_headers()

    def serve_leak(self, h):
        self._reply(h, 500, b"INTERNAL-SECRET-BODY", **{"x-internal-token": "INTERNAL-SECRET-HEADER"})

    def serve_liar(self, h):
        self._reply(h, 200, b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", **{"content-type": "image/INTERNAL-SECRET-TYPE"})

    def _chunked(self, h, path, chunk: bytes, pause: float, limit: int):
        h.send_response(200)
        h.send_header("content-type", "image/png")
        h.send_header("transfer-encoding", "chunked")
        h.end_headers()
        self.written[path] = 0
        try:
            while self.written[path] < limit:
                h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                h.wfile.flush()
                self.written[path] += len(chunk)
                time.sleep(pause)
            h.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the worker hung up: what the test wants

    def serve_drip(self, h):
        self._chunked(h, "/drip.png", b"\x89", pause=0.5, limit=60)

    def serve_endless(self, h):
        self._chunked(h, "/endless.png", b"\0" * 65536, pause=0, limit=ENDLESS_LIMIT)


@pytest.fixture(scope="module")
def egress_stack():
    s = Stack.throwaway(
        ARTIFACTS / time.strftime("hostile-urls-%Y%m%d-%H%M%S"),
        worker_vars={
            "WEBHOOK_HOSTS": "allowed.example,127.0.0.1",
            "MEDIA_HOSTS": "allowed.example,127.0.0.1",
            "MEDIA_FETCH_TIMEOUT_S": str(FETCH_TIMEOUT_S),
        },
    )
    try:
        yield s.start()
    finally:
        s.stop()


@pytest.fixture(scope="module")
def media():
    server = MediaServer()
    yield server
    server.stop()


def tenant_of(stack, **plan) -> Tenant:
    status, body, _ = stack.admin("POST", "/admin/v1/apps", {"name": "hostile-urls", "api_rpm": 1_000_000, **plan})
    assert status == 201, body
    return Tenant(stack, body["app_id"], body["api_key"])


@pytest.fixture(scope="module")
def sender(egress_stack):
    tenant = tenant_of(egress_stack)
    tenant.link_device(fresh_phone("62831"))
    return tenant


def send_image(tenant: Tenant, source: str) -> requests.Response:
    return requests.post(
        tenant.stack.api + "/api/v1/public/messages/image",
        json={"to": fresh_phone(), "source": source},
        headers=tenant.headers(),
        timeout=120,
    )


def test_webhook_urls_that_the_fetch_reads_as_loopback_or_elsewhere_are_refused(egress_stack, sender):
    """Before: each spelling was saved (201 on create, 200 on update): the backslash one passed the
    WEBHOOK_HOSTS list while the fetch would go to evil.example, the others passed the literal-IP
    checks while the fetch would go to 127.0.0.1."""
    r = sender.post("/api/v1/webhooks", {"url": "https://hooks.allowed.example/wagate"})
    assert r.status_code == 201, r.text
    hook = r.json()["id"]
    for url in SPELLINGS:
        r = sender.post("/api/v1/webhooks", {"url": url})
        assert r.status_code == 422 and list(r.json()["errors"]) == ["url"], (url, r.text)
        r = sender.patch(f"/api/v1/webhooks/{hook}", {"url": url})
        assert r.status_code == 422 and list(r.json()["errors"]) == ["url"], (url, r.text)
    assert sender.get(f"/api/v1/webhooks/{hook}").json()["url"] == "https://hooks.allowed.example/wagate"


def test_webhook_urls_off_the_egress_list_or_with_credentials_are_refused(egress_stack, sender):
    """Before: `https://allowed.example@evil.example/` was refused only because of its `@`; the host
    check split by hand and read hosts the fetch never would. Now the parsed host decides."""
    for url in ["https://evil.example/", "https://allowed.example.evil.example/", "https://allowed.example@evil.example/",
                "https://user:pw@hooks.allowed.example/", "https://notallowed.example/"]:
        r = sender.post("/api/v1/webhooks", {"url": url})
        assert r.status_code == 422 and list(r.json()["errors"]) == ["url"], (url, r.text)


def test_media_sources_that_the_fetch_reads_as_loopback_or_elsewhere_are_refused(egress_stack, sender, media):
    """Before: every spelling was fetched (the request went out, to 127.0.0.1 or evil.example);
    media sources had no egress list at all."""
    port = media.base.rsplit(":", 1)[1]
    spellings = [url.replace("/hook", "/image.png") for url in SPELLINGS]
    spellings += [f"http://2130706433:{port}/image.png", f"http://127.1:{port}/image.png", f"http://127.0.0.1.:{port}/image.png",
                  "https://cdn.elsewhere.example/image.png"]
    for source in spellings:
        r = send_image(sender, source)
        assert r.status_code == 400 and r.json()["code"] == "VALIDATION_FAILED", (source, r.text)
        assert [d["field"] for d in r.json()["details"]] == ["source"], r.json()
    assert media.hits.get("/image.png", 0) == 0
    assert send_image(sender, f"{media.base}/image.png").status_code == 202, "the listed host works"


def test_a_media_redirect_is_not_followed(egress_stack, sender, media):
    """Before: the fetch followed the 302 to the address behind it and sent what it found (202)."""
    r = send_image(sender, f"{media.base}/redirect.png")
    assert r.status_code == 400 and r.json()["code"] == "MEDIA_FETCH_FAILED", r.text
    assert "302" in r.json()["message"]
    assert media.hits.get("/internal.png", 0) == 0


def test_a_slow_drip_media_server_cannot_hold_the_request(egress_stack, sender, media):
    """Before: no deadline; the request waited as long as the server kept dripping (30 s here)."""
    started = time.monotonic()
    r = send_image(sender, f"{media.base}/drip.png")
    elapsed = time.monotonic() - started
    assert r.status_code == 400 and r.json()["code"] == "MEDIA_FETCH_FAILED", r.text
    assert f"within {FETCH_TIMEOUT_S} s" in r.json()["message"]
    assert elapsed < FETCH_TIMEOUT_S + 8, elapsed


def test_an_endless_chunked_media_body_is_cut_at_the_cap(egress_stack, sender, media):
    """Before: with no Content-Length the whole body was read into memory (64 MB here, or without
    end until the isolate ran out of memory) and only then found too large."""
    r = send_image(sender, f"{media.base}/endless.png")
    assert r.status_code == 400 and r.json()["code"] == "MEDIA_FETCH_FAILED", r.text
    assert "larger than 16 MB" in r.json()["message"]
    time.sleep(1)
    assert media.written["/endless.png"] < 40 * 1024 * 1024, media.written


def test_nothing_a_media_server_answers_is_echoed(egress_stack, sender, media):
    """Before: a file that contradicted the server's Content-Type named that header's value in the
    answer ("…not image/internal-secret-type"), and fetch failures quoted the runtime's error text."""
    for path in ["/leak.png", "/liar.png"]:
        r = send_image(sender, f"{media.base}{path}")
        assert r.status_code == 400 and r.json()["code"] == "MEDIA_FETCH_FAILED", r.text
        assert "internal-secret" not in r.text.lower(), r.text
    assert "500" in send_image(sender, f"{media.base}/leak.png").json()["message"]


def test_a_key_over_its_quota_sending_media_costs_no_fetch(egress_stack, media):
    """Before: the media was fetched and uploaded to the bridge first, and only then was the send
    refused for quota (429): any key over its quota could keep filling the bridge's disk."""
    tenant = tenant_of(egress_stack, monthly_messages=1)
    tenant.link_device(fresh_phone("62832"))
    assert send_image(tenant, f"{media.base}/image.png?first").status_code == 202
    r = send_image(tenant, f"{media.base}/quota.png")
    assert r.status_code == 429 and r.json()["code"] == "QUOTA_EXCEEDED", r.text
    assert media.hits.get("/quota.png", 0) == 0


def test_media_for_an_app_without_a_connected_number_costs_no_fetch(egress_stack, media):
    """Before: the media was fetched and uploaded, then the send refused (409 ACCOUNT_NOT_CONNECTED)."""
    tenant = tenant_of(egress_stack)
    r = send_image(tenant, f"{media.base}/offline.png")
    assert r.status_code == 409 and r.json()["code"] == "ACCOUNT_NOT_CONNECTED", r.text
    assert media.hits.get("/offline.png", 0) == 0
