"""`make run`: start the local stack in the foreground, make sure a demo app with a linked
(simulated) WhatsApp number exists, print its API key and a curl that works; Ctrl-C stops both."""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack import ROOT, Stack, http  # noqa: E402

DEV_VARS = ROOT / ".dev.vars"
DATA = ROOT / ".data"
DEMO = DATA / "demo.json"
DEMO_PHONE = "6281100000001"
RECIPIENT = "6281234567890"


def dev_vars() -> dict[str, str]:
    """The worker's local secrets; generated once (each one that is missing), never committed."""
    wanted = {
        "BRIDGE_URL": f"http://127.0.0.1:{os.environ.get('BRIDGE_PORT', '8788')}",
        "BRIDGE_SECRET": secrets.token_hex(32),
        "ADMIN_TOKEN": os.environ.get("ADMIN_TOKEN", "dev-admin-token"),
        "OTP_SECRET": secrets.token_hex(32),
        "WEBHOOK_KEY": secrets.token_hex(32),
        "KEY_SECRET": secrets.token_hex(32),
    }
    text = DEV_VARS.read_text() if DEV_VARS.exists() else ""
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    current = {k.strip(): v.strip() for k, v in pairs}
    missing = {k: v for k, v in wanted.items() if k not in current}
    if missing:
        DEV_VARS.write_text(text + "".join(f"{k}={v}\n" for k, v in missing.items()))
        DEV_VARS.chmod(0o600)
    return {**current, **missing}


def demo(stack: Stack) -> dict:
    """The demo app and device from an earlier run if they still work, else new ones."""
    saved = json.loads(DEMO.read_text()) if DEMO.exists() else {}
    key = saved.get("api_key")
    auth = {"authorization": f"Bearer {key}"}
    if not key or http("GET", f"{stack.api}/api/v1/devices", headers=auth)[0] != 200:
        status, app, _ = stack.admin("POST", "/admin/v1/apps", {"name": "Demo app"})
        if status != 201:
            raise SystemExit(f"could not create the demo app: {status} {app}")
        saved = {"app_id": app["app_id"], "api_key": app["api_key"]}
        key, auth = app["api_key"], {"authorization": f"Bearer {app['api_key']}"}
    device_id = saved.get("device_id")
    device = http("GET", f"{stack.api}/api/v1/devices/{device_id}", headers=auth)[1] if device_id else None
    if not isinstance(device, dict) or "status" not in device:
        status, created, _ = http("POST", f"{stack.api}/api/v1/devices", {"label": "Demo phone"}, auth)
        if status != 202:
            raise SystemExit(f"could not create the demo device: {status} {created}")
        device_id = saved["device_id"] = created["device_id"]
    if stack.engine == "sim":
        deadline = time.monotonic() + 30
        while http("GET", f"{stack.api}/api/v1/devices/{device_id}", headers=auth)[1].get("status") != "online":
            stack.sim("POST", f"/sim/devices/{device_id}/scan", {"phone": DEMO_PHONE})
            if time.monotonic() > deadline:
                raise SystemExit("the demo device did not come online")
            time.sleep(0.5)
    DATA.mkdir(exist_ok=True)
    DEMO.write_text(json.dumps(saved, indent=2))
    DEMO.chmod(0o600)
    return saved


def main() -> None:
    secrets_ = dev_vars()
    stack = Stack(
        worker_port=int(os.environ.get("WAGATE_PORT", "8787")),
        bridge_port=int(os.environ.get("BRIDGE_PORT", "8788")),
        # The default places, so state survives a restart of `make run`.
        run_dir=DATA,
        worker_state=ROOT / ".wrangler" / "state",
        bridge_data=DATA / "bridge",
        bridge_secret=secrets_["BRIDGE_SECRET"],
        admin_token=os.environ.get("ADMIN_TOKEN", secrets_["ADMIN_TOKEN"]),
        otp_secret=secrets_["OTP_SECRET"],
        webhook_key=secrets_["WEBHOOK_KEY"],
        key_secret=secrets_["KEY_SECRET"],
        env_files=[DEV_VARS],
        engine=os.environ.get("WAGATE_ENGINE", "sim"),
        quiet=False,
    )
    stopping = False

    def stop(*_):
        nonlocal stopping
        if not stopping:
            stopping = True
            print("\nstopping wagate…", flush=True)
            stack.stop()
            sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        stack.start()
        d = demo(stack)
    except BaseException:
        stack.stop()
        raise
    print(
        f"""
wagate is running (Ctrl-C stops it)
  API        {stack.api}   worker under wrangler dev (local workerd)
  bridge     {stack.bridge_url}   engine: {stack.engine}
  demo app   {d['app_id']}
  API key    {d['api_key']}
  device     {d['device_id']} (linked to the simulated phone +{DEMO_PHONE})

Send a WhatsApp message:
  curl -X POST {stack.api}/api/v1/messages/send \\
    -H "Authorization: Bearer {d['api_key']}" -H "Content-Type: application/json" \\
    -d '{{"phone":"{RECIPIENT}","message":"Hello from wagate!"}}'

See it arrive on the simulated phone:
  curl -H "Authorization: Bearer {stack.bridge_secret}" {stack.bridge_url}/sim/phones/{RECIPIENT}/messages
""",
        flush=True,
    )
    while True:
        for name, proc in (("worker", stack.worker), ("bridge", stack.bridge)):
            if proc.poll() is not None:
                print(f"the {name} exited with {proc.returncode}; stopping", flush=True)
                stack.stop()
                sys.exit(1)
        time.sleep(1)


if __name__ == "__main__":
    main()
