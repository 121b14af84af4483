"""Benchmarks on the local stack; each writes its section of docs/BENCHMARKS.md.

    .venv/bin/python scripts/bench.py accept     # accepted sends/s and accept latency vs a trivial route
    .venv/bin/python scripts/bench.py otp        # OTP start → code on the virtual phone, p50/p99
    .venv/bin/python scripts/bench.py memory     # bridge resident memory with 1,000 linked simulated devices
    .venv/bin/python scripts/bench.py webhooks   # event → receiver latency, deliveries per second
    .venv/bin/python scripts/bench.py campaigns  # creating a 10,000-contact campaign; progress query latency
    .venv/bin/python scripts/bench.py auth       # added latency of key check + IP allow-list + rate limit

Numbers come from this machine (2 cores), the worker under `wrangler dev` (local workerd)
and the simulated engine, so they compare changes over time rather than promise production figures.
"""

from __future__ import annotations

import argparse
import platform
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack import ROOT, Stack  # noqa: E402

DOC = ROOT / "docs" / "BENCHMARKS.md"


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def load(requests_: int, concurrency: int, call) -> tuple[float, list[float]]:
    """Runs `call(i)` `requests_` times on `concurrency` threads; returns (requests/s, latencies in ms)."""
    latencies: list[float] = []

    def one(i: int) -> None:
        started = time.perf_counter()
        call(i)
        latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(requests_)))
    return requests_ / (time.perf_counter() - started), latencies


def write_section(name: str, body: str) -> None:
    """Replaces (or appends) the section between `<!-- bench:name -->` markers."""
    DOC.parent.mkdir(exist_ok=True)
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\nMeasured with `make bench`; see `scripts/bench.py`.\n"
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    section = f"{start}\n{body.strip()}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    DOC.write_text(text)


@contextmanager
def throwaway_stack():
    """A started stack with its state in a temporary directory, stopped and removed afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack.throwaway(Path(tmp))
        try:
            yield stack.start()
        finally:
            stack.stop()


def linked_app(stack: Stack, quota: int) -> tuple[str, str]:
    status, app, _ = stack.admin("POST", "/admin/v1/apps", {"name": "bench", "monthly_messages": quota, "api_rpm": 10**9, "auth_rpm": 10**9})
    assert status == 201, app
    auth = {"authorization": f"Bearer {app['api_key']}"}
    device = requests.post(f"{stack.api}/api/v1/devices", json={}, headers=auth, timeout=30).json()["device_id"]
    deadline = time.monotonic() + 30
    while requests.get(f"{stack.api}/api/v1/devices/{device}", headers=auth, timeout=30).json()["status"] != "qr_waiting":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    stack.sim("POST", f"/sim/devices/{device}/scan", {"phone": "6281100000099"})
    while requests.get(f"{stack.api}/api/v1/devices/{device}", headers=auth, timeout=30).json()["status"] != "online":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return app["api_key"], device


def bench_accept(count: int, concurrency: int) -> None:
    with throwaway_stack() as stack:
        key, _ = linked_app(stack, quota=count * 2)
        session = requests.Session()
        auth = {"authorization": f"Bearer {key}"}

        def trivial(_: int) -> None:
            assert session.get(f"{stack.api}/healthz", timeout=30).status_code == 200

        def send(i: int) -> None:
            body = {"phone": f"62877{i:08d}", "message": f"bench {i}"}
            r = session.post(f"{stack.api}/api/v1/messages/send", json=body, headers=auth, timeout=30)
            assert r.status_code == 200, r.text

        load(200, concurrency, trivial)  # warm-up
        base_rps, base = load(count, concurrency, trivial)
        send_rps, sends = load(count, concurrency, send)
    rows = [
        ("`GET /healthz` (trivial route, same worker)", base_rps, base),
        ("`POST /api/v1/messages/send` (accepted, queued)", send_rps, sends),
    ]
    table = "\n".join(
        f"| {name} | {rps:.0f} | {percentile(lat, 50):.1f} | {percentile(lat, 99):.1f} |" for name, rps, lat in rows
    )
    write_section(
        "accept",
        f"""
## Accepting sends

{count} requests per row, {concurrency} concurrent clients, one app with one linked (simulated) number,
{time.strftime('%Y-%m-%d')} on {platform.machine()} ({_cores()} cores), worker under `wrangler dev`.

| request | per second | p50 ms | p99 ms |
|---|---|---|---|
{table}

Ratio: a send is accepted at {send_rps / base_rps:.2f}× the rate of the trivial route; its p50 is
{percentile(sends, 50) / percentile(base, 50):.1f}× the trivial p50. A send costs an auth call to the app's
Durable Object, a quota reservation there and an insert into the device's object.
""",
    )
    print(f"trivial {base_rps:.0f}/s p50 {percentile(base, 50):.1f} ms; send {send_rps:.0f}/s p50 {percentile(sends, 50):.1f} ms p99 {percentile(sends, 99):.1f} ms")


def bench_otp(count: int) -> None:
    with throwaway_stack() as stack:
        key, _ = linked_app(stack, quota=count * 2)
        auth = {"authorization": f"Bearer {key}"}
        latencies = []
        for i in range(count):
            phone = f"62899{i:08d}"
            started = time.perf_counter()
            r = requests.post(f"{stack.api}/api/auth/start", json={"phone": phone}, headers=auth, timeout=30)
            assert r.status_code == 200, r.text
            while not stack.sim("GET", f"/sim/phones/{phone}/messages")[1]:
                time.sleep(0.005)
            latencies.append((time.perf_counter() - started) * 1000)
    write_section(
        "otp",
        f"""
## OTP: start → code on the phone

{count} sequential `POST /api/auth/start` calls, each to a new phone, timed until the code is in the
virtual phone's inbox (polled every 5 ms): worker → app and OTP objects → device queue (alarm) →
bridge → simulated WhatsApp. Production pacing (`DEVICE_PACE_MS=250`) applies; one linked number.
{time.strftime('%Y-%m-%d')} on {platform.machine()} ({_cores()} cores).

| p50 ms | p99 ms | max ms |
|---|---|---|
| {percentile(latencies, 50):.0f} | {percentile(latencies, 99):.0f} | {max(latencies):.0f} |

One number sends at most one message per pace interval, so back-to-back codes from a single number
are spaced by it; the figure above is that interval plus the code's own path. Codes go ahead of any
queued bulk traffic on the number (`tests/e2e/test_otp.py`).
""",
    )
    print(f"otp start→code p50 {percentile(latencies, 50):.0f} ms p99 {percentile(latencies, 99):.0f} ms")


class Receiver:
    """A local webhook receiver that notes when each delivery arrived."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        import threading

        arrivals = self.arrivals = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                arrivals.append((time.time(), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def bench_webhooks(count: int) -> None:
    import json
    from datetime import datetime

    receiver = Receiver()
    try:
        with throwaway_stack() as stack:
            key, _ = linked_app(stack, quota=count * 2)
            auth = {"authorization": f"Bearer {key}"}
            hook = requests.post(f"{stack.api}/api/v1/webhooks", json={"url": receiver.url, "events": ["message.sent"]}, headers=auth, timeout=30).json()
            for i in range(count):
                body = {"phone": f"62877{i:08d}", "message": f"bench {i}"}
                assert requests.post(f"{stack.api}/api/v1/messages/send", json=body, headers=auth, timeout=30).status_code == 200
            deadline = time.monotonic() + 300
            while len(receiver.arrivals) < count and time.monotonic() < deadline:
                time.sleep(0.1)
            latencies = []
            for arrived, body in receiver.arrivals:
                event = json.loads(body)
                occurred = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
                latencies.append((arrived - occurred) * 1000)
            receiver.arrivals.clear()
            started = time.perf_counter()
            for _ in range(count):
                requests.post(f"{stack.api}/api/v1/webhooks/{hook['id']}/test", headers=auth, timeout=30)
            while len(receiver.arrivals) < count and time.monotonic() < deadline:
                time.sleep(0.05)
            rate = len(receiver.arrivals) / (time.perf_counter() - started)
    finally:
        receiver.server.shutdown()
    write_section(
        "webhooks",
        f"""
## Webhooks: event → receiver, and delivery rate

Latency: {count} sends from one number (production pace), each `message.sent` event timed from the
event's own timestamp (when the bridge reported it) to its arrival at a local receiver — the path
bridge → worker → device object → app object (record + fan-out) → alarm → POST.
Rate: {count} `webhook.test` deliveries queued back to back, until the last arrived (this includes
the {count} API calls that queue them). {time.strftime('%Y-%m-%d')} on {platform.machine()} ({_cores()} cores).

| event → receiver p50 ms | p99 ms | deliveries per second |
|---|---|---|
| {percentile(latencies, 50):.0f} | {percentile(latencies, 99):.0f} | {rate:.0f} |
""",
    )
    print(f"webhooks p50 {percentile(latencies, 50):.0f} ms p99 {percentile(latencies, 99):.0f} ms, {rate:.0f}/s")


def bench_campaigns(contacts: int) -> None:
    with throwaway_stack() as stack:
        key, _ = linked_app(stack, quota=contacts * 2)
        auth = {"authorization": f"Bearer {key}"}
        body = {
            "name": "bench",
            "message": "{Hi|Hello} {name}, your code is {code}",
            "contacts": [{"phone": f"62878{i:08d}", "name": f"N{i}", "variables": {"code": str(i)}} for i in range(contacts)],
            "delay_seconds": 1,
        }
        creates = []
        for _ in range(3):
            started = time.perf_counter()
            r = requests.post(f"{stack.api}/api/v1/broadcast/campaigns", json=body, headers=auth, timeout=120)
            creates.append((time.perf_counter() - started) * 1000)
            assert r.status_code == 201 and r.json()["data"]["total_contacts"] == contacts, r.text
            campaign = r.json()["data"]["id"]
        assert requests.post(f"{stack.api}/api/v1/broadcast/campaigns/{campaign}/send", headers=auth, timeout=30).status_code == 200
        polls = []
        for _ in range(200):
            started = time.perf_counter()
            view = requests.get(f"{stack.api}/api/v1/broadcast/campaigns/{campaign}", headers=auth, timeout=30).json()["data"]
            polls.append((time.perf_counter() - started) * 1000)
            time.sleep(0.02)
        sent = view["progress"]["sent"]
    write_section(
        "campaigns",
        f"""
## Campaigns: creating {contacts:,} contacts, and progress while sending

Create: `POST /api/v1/broadcast/campaigns` with {contacts:,} contacts (name and one variable each,
spintax in the message), timed end to end (validation, phone normalisation, template checks,
quota, {contacts:,} rows into the campaign's object); best and worst of 3.
Progress: 200 `GET …/{{id}}` while the campaign sends at `delay_seconds` 1 ({sent} sent by the
last poll). {time.strftime('%Y-%m-%d')} on {platform.machine()} ({_cores()} cores), wrangler dev.

| create, best ms | create, worst ms | progress p50 ms | progress p99 ms |
|---|---|---|---|
| {min(creates):.0f} | {max(creates):.0f} | {percentile(polls, 50):.0f} | {percentile(polls, 99):.0f} |
""",
    )
    print(f"campaigns create {min(creates):.0f}-{max(creates):.0f} ms, progress p50 {percentile(polls, 50):.0f} ms p99 {percentile(polls, 99):.0f} ms")


def bench_auth(count: int, concurrency: int) -> None:
    with throwaway_stack() as stack:
        status, app, _ = stack.admin("POST", "/admin/v1/apps", {"name": "bench", "api_rpm": 10**9, "auth_rpm": 10**9})
        assert status == 201, app
        auth = {"authorization": f"Bearer {app['api_key']}", "cf-connecting-ip": "198.51.100.10"}
        # Past authentication, an unknown sub-path is the cheapest answer a tenant route gives.
        authed = f"{stack.api}/api/v1/webhooks/wh_x/nothing"

        def run(url: str, headers: dict) -> tuple[float, list[float]]:
            load(200, concurrency, lambda i: requests.get(url, headers=headers, timeout=30))  # warm-up
            return load(count, concurrency, lambda i: requests.get(url, headers=headers, timeout=30))

        rows = [("unauthenticated (`GET /healthz`)", *run(f"{stack.api}/healthz", {}))]
        rows.append(("key + rate limit", *run(authed, auth)))
        for entry in ("203.0.113.0/24", "2001:db8::/32", "198.51.100.0/24"):
            requests.post(f"{stack.api}/api/v1/ip-whitelist", json={"ip_address": entry}, headers=auth, timeout=30)
        assert requests.put(f"{stack.api}/api/v1/ip-whitelist/restriction", json={"enabled": True}, headers=auth, timeout=30).status_code == 200
        rows.append(("key + rate limit + allow-list (3 entries)", *run(authed, auth)))
    base = percentile(rows[0][2], 50)
    table = "\n".join(
        f"| {name} | {rate:.0f} | {percentile(lat, 50):.1f} | {percentile(lat, 99):.1f} | {percentile(lat, 50) - base:+.1f} |"
        for name, rate, lat in rows
    )
    write_section(
        "auth",
        f"""
## Access control: added latency per request

{count} requests per row from {concurrency} clients after 200 warm-up requests; the authenticated
rows call a path that answers 404 right after authentication, so they time exactly the key check
(hash, app object lookup), the per-key GCRA rate limit and, in the last row, the IP allow-list.
{time.strftime('%Y-%m-%d')} on {platform.machine()} ({_cores()} cores), wrangler dev.

| request | per second | p50 ms | p99 ms | p50 added ms |
|---|---|---|---|---|
{table}
""",
    )
    print(table)


def bench_memory(devices: int) -> None:
    out = subprocess.run(
        ["bash", str(ROOT / "device-bridge" / "benches" / "memory.sh"), str(devices)],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    print(out.strip())
    write_section(
        "memory",
        f"""
## Bridge memory with many linked devices

`device-bridge/benches/memory.sh {devices}`: one release bridge (simulated engine) links and scans
{devices} devices through its signed API and `/sim`, then reports its resident set (VmRSS).
{time.strftime('%Y-%m-%d')} on {platform.machine()}.

```
{out.strip()}
```
""",
    )


def _cores() -> int:
    import os

    return os.cpu_count() or 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=["accept", "otp", "memory", "webhooks", "campaigns", "auth"])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    if args.which == "accept":
        bench_accept(args.count, args.concurrency)
    elif args.which == "otp":
        bench_otp(min(args.count, 200))
    elif args.which == "webhooks":
        bench_webhooks(min(args.count, 200))
    elif args.which == "campaigns":
        bench_campaigns(10_000)
    elif args.which == "auth":
        bench_auth(args.count, args.concurrency)
    else:
        bench_memory(1000)


if __name__ == "__main__":
    main()
