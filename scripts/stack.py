"""The local wagate stack: the worker under `wrangler dev` (local workerd) and the device bridge.

One launcher for both users of the stack: `scripts/run.py` (the README's run command) and the
end-to-end suite's fixture, so that what the tests exercise is what a developer runs.
Standard library only, so `make run` needs no Python packages.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WRANGLER = ROOT / "node_modules" / ".bin" / "wrangler"
BRIDGE_BIN = ROOT / "target" / "release" / "wagate-bridge"


def dev_config(run_dir: Path) -> Path:
    """wrangler.toml as `wrangler dev` runs it here: without its `[build]` command, the bundle
    being built beforehand (`make build`, the tests' build step). With the command, wrangler
    builds on start and its watcher then reloads the worker once more, dropping any request
    made in between with 503 "Your worker restarted mid-request"; without it, ready is ready."""
    if not (ROOT / "build" / "worker" / "shim.mjs").exists():
        raise RuntimeError("the worker is not built: run `bash scripts/build-worker.sh` (or `make build`) first")
    config = tomllib.loads((ROOT / "wrangler.toml").read_text())
    config.pop("build", None)
    # Paths in a config resolve from its own directory: make them absolute.
    config["main"] = str(ROOT / config["main"])
    config["assets"]["directory"] = str(ROOT / config["assets"]["directory"])
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "wrangler.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body=None, headers=None, timeout: float = 30.0):
    """(status, parsed JSON or raw text, headers) of one request; never raises on HTTP errors."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw, hdrs = resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as e:
        status, raw, hdrs = e.code, e.read(), e.headers
    try:
        return status, json.loads(raw) if raw else None, hdrs
    except ValueError:
        return status, raw.decode(errors="replace"), hdrs


@dataclass
class Stack:
    worker_port: int
    bridge_port: int
    run_dir: Path
    """Runtime files: the generated wrangler env file and, when quiet, the processes' logs."""
    worker_state: Path
    """wrangler's local Durable Object storage (SQLite)."""
    bridge_data: Path
    """The bridge's SQLite files (sessions, journal, outbox, simulator)."""
    bridge_secret: str
    admin_token: str
    otp_secret: str
    webhook_key: str
    key_secret: str = field(default_factory=lambda: secrets.token_hex(32))
    """Tags the API keys the worker issues (`KEY_SECRET`)."""
    env_files: list[Path] = field(default_factory=list)
    """Extra wrangler env files, loaded before the one this stack writes (which wins)."""
    bridge_env: dict[str, str] = field(default_factory=dict)
    worker_vars: dict[str, str] = field(default_factory=dict)
    """Worker configuration overriding wrangler.toml's `[vars]` (e.g. a faster send pace for tests)."""
    engine: str = "sim"
    environment: str | None = "development"
    """The worker's `ENVIRONMENT`: a local stack is a development one (`debug_code`, loopback
    receivers); `None` leaves what wrangler.toml deploys (production)."""
    drain_request_bodies: bool = True
    """wrangler dev reads a body the worker left unread to its end before answering (Cloudflare does
    not), because its dev proxy would otherwise lose the next request; off only to see answers
    given from a request's head alone, as in production."""
    quiet: bool = True
    worker: subprocess.Popen | None = None
    bridge: subprocess.Popen | None = None

    @classmethod
    def throwaway(cls, run_dir: Path, **settings) -> "Stack":
        """A stack on free ports with fresh secrets and all its state under `run_dir`."""
        return cls(
            worker_port=free_port(),
            bridge_port=free_port(),
            run_dir=run_dir,
            worker_state=run_dir / "worker-state",
            bridge_data=run_dir / "bridge-data",
            bridge_secret=secrets.token_hex(32),
            admin_token=secrets.token_hex(16),
            otp_secret=secrets.token_hex(32),
            webhook_key=secrets.token_hex(32),
            **settings,
        )

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.worker_port}"

    @property
    def bridge_url(self) -> str:
        return f"http://127.0.0.1:{self.bridge_port}"

    def _log(self, name: str):
        if not self.quiet:
            return None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        return open(self.run_dir / f"{name}.log", "ab")

    def start(self, timeout: float = 180.0) -> "Stack":
        self.start_bridge()
        self.start_worker()
        self.wait_healthy(timeout)
        return self

    def start_worker(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        runtime_env = self.run_dir / "worker.env"
        runtime_env.touch(mode=0o600)
        values = {
            "BRIDGE_URL": self.bridge_url,
            "BRIDGE_SECRET": self.bridge_secret,
            "ADMIN_TOKEN": self.admin_token,
            "OTP_SECRET": self.otp_secret,
            "WEBHOOK_KEY": self.webhook_key,
            "KEY_SECRET": self.key_secret,
        }
        if self.environment:
            values["ENVIRONMENT"] = self.environment
        runtime_env.write_text("".join(f"{k}={v}\n" for k, v in {**values, **self.worker_vars}.items()))
        cmd = [
            str(WRANGLER), "dev", "--config", str(dev_config(self.run_dir)),
            "--ip", "127.0.0.1", "--port", str(self.worker_port),
            "--inspector-port", str(free_port()), "--persist-to", str(self.worker_state),
            "--show-interactive-dev-session=false",
        ]
        for env_file in [*self.env_files, runtime_env]:
            cmd += ["--env-file", str(env_file)]
        env = {**os.environ, "WRANGLER_SEND_METRICS": "false", "CLOUDFLARE_CF_FETCH_ENABLED": "false", "CI": "true"}
        if not self.drain_request_bodies:
            env["WRANGLER_DISABLE_REQUEST_BODY_DRAINING"] = "true"
        log = self._log("worker")
        self.worker = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def start_bridge(self) -> None:
        env = {
            **os.environ,
            "BRIDGE_PORT": str(self.bridge_port),
            "BRIDGE_SECRET": self.bridge_secret,
            "WAGATE_WORKER_URL": self.api,
            "WAGATE_DATA_DIR": str(self.bridge_data),
            "WAGATE_ENGINE": self.engine,
            **self.bridge_env,
        }
        log = self._log("bridge")
        self.bridge = subprocess.Popen([str(BRIDGE_BIN)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_healthy(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        for name, url, proc in (("bridge", self.bridge_url, self.bridge), ("worker", self.api, self.worker)):
            while True:
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode} before becoming healthy{self.log_hint(name)}")
                try:
                    if http("GET", f"{url}/healthz", timeout=2)[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not become healthy within {timeout:.0f}s{self.log_hint(name)}")
                time.sleep(0.25)

    def log_hint(self, name: str) -> str:
        log = self.run_dir / f"{name}.log"
        return f"; see {log}:\n{log.read_text()[-3000:]}" if self.quiet and log.exists() else ""

    def kill_bridge(self) -> None:
        """SIGKILL, as a crash: no graceful shutdown, nothing flushed beyond what is committed."""
        if self.bridge and self.bridge.poll() is None:
            os.killpg(self.bridge.pid, signal.SIGKILL)
            self.bridge.wait()

    def restart_worker(self) -> None:
        """Stops the worker (wrangler and workerd) and starts it again on the same state."""
        self._stop([self.worker])
        self.start_worker()
        self.wait_healthy()

    def stop(self) -> None:
        self._stop([self.worker, self.bridge])

    def _stop(self, procs) -> None:
        # SIGINT to the whole group: killing only wrangler's node wrapper would leave workerd running.
        for proc in procs:
            if proc and proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
        for proc in procs:
            if proc is None:
                continue
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group, if any
            except ProcessLookupError:
                pass
            proc.wait()

    # Clients of the stack's two control surfaces.

    def admin(self, method: str, path: str, body=None):
        return http(method, f"{self.api}{path}", body, {"authorization": f"Bearer {self.admin_token}"})

    def sim(self, method: str, path: str, body=None):
        return http(method, f"{self.bridge_url}{path}", body, {"authorization": f"Bearer {self.bridge_secret}"})
