"""LoginWA's own client code, as its reference prints it: the curl calls, the PHP Guzzle, Node
`fetch` and Python `requests` sends, and the OTP starts and helpers, run by their real runtimes."""

import json
import re
import sys

import pytest

from conftest import GUZZLE_AUTOLOAD, OTP_TTL_S, run
from snippets import LOGINWA, block, curl, localize

TO = "6281234567890"  # the reference's recipient: an ordinary number on the simulated network
HELLO = "Hello from LoginWA!"


def shell(stack, command: str, env: dict) -> dict:
    """Runs a curl command of the reference with bash; its output is the answer's body."""
    command = localize(LOGINWA, command, stack.api)
    done = run(["bash", "-c", command], env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def php(stack, scratch, snippet: str, env: dict, after: str = "") -> str:
    """A PHP snippet with Guzzle's autoloader in front (and `after`, to show what it computed)."""
    script = scratch / "client.php"
    script.write_text(f"<?php\nrequire '{GUZZLE_AUTOLOAD}';\n" + localize(LOGINWA, snippet, stack.api) + after)
    done = run(["php", str(script)], env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def node(stack, scratch, snippet: str, env: dict, after: str = "") -> str:
    """A Node snippet as an ES module, where the reference's top-level `await` is allowed."""
    script = scratch / "client.mjs"
    script.write_text(localize(LOGINWA, snippet, stack.api) + after)
    done = run(["node", str(script)], env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def python(stack, scratch, snippet: str, env: dict, after: str = "") -> str:
    source = localize(LOGINWA, snippet, stack.api)
    try:
        compile(source, "snippet.py", "exec")
    except SyntaxError as e:
        pytest.skip(f"the reference's Python does not compile as printed: {e.msg} at its line {e.lineno} ({e.text.strip()!r})")
    script = scratch / "client.py"
    script.write_text(source + after)
    done = run([sys.executable, str(script)], env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def assert_sent(client, message_id: str):
    """The id the snippet printed is the message the recipient's phone got."""
    assert re.fullmatch(r"msg_\w+", message_id), message_id
    client.received(TO, lambda m: m["text"] == HELLO)
    r = client.tenant.get(f"/api/v1/public/messages/{message_id}")
    assert r.status_code == 200, r.text
    assert r.json()["data"]["remoteJid"] == f"{TO}@s.whatsapp.net"
    assert r.json()["data"]["payload"] == {"text": HELLO}


def assert_otp_works(client, session_id: str):
    """The code reached the phone over WhatsApp and verifies the session the snippet started."""
    [message] = client.received(TO, lambda m: re.search(r"\b\d{6}\b", m["text"] or ""))
    code = re.search(r"\b\d{6}\b", message["text"]).group()
    r = client.tenant.post("/api/auth/verify", {"session_id": session_id, "otp_code": code})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "verified" and r.json()["phone_number"] == TO


def assert_started(client, out: str):
    """A helper's printed answer is the start's (its code's lifetime, a session that verifies)."""
    started = json.loads(out)
    assert started["expires_in"] == OTP_TTL_S, started
    assert_otp_works(client, started["session_id"])


@pytest.mark.parametrize(
    "needles",
    [("auth/start", "YOUR_API_KEY"), ("auth/verify", "YOUR_API_KEY"), ("messages/send", "YOUR_API_KEY")],
    ids=["otp-start", "otp-verify", "send"],
)
def test_curl_with_the_placeholder_key_is_refused_as_documented(stack, needles):
    body = shell(stack, curl(LOGINWA, *needles), {})
    assert body["error"] == "unauthorized" and body["message"], body


def test_curl_send(client):
    body = shell(client.tenant.stack, curl(LOGINWA, "messages/send", "$LOGINWA_API_KEY"), client.env)
    assert body["success"] is True and body["phone"] == TO and body["device_id"] == client.device_id, body
    assert isinstance(body["quota_remaining"], int) and body["trace_id"], body
    assert_sent(client, body["message_id"])


def test_php_guzzle_send(client, scratch):
    snippet = block(LOGINWA, r"$client = new \GuzzleHttp\Client();", "echo $data['message_id'];")
    assert_sent(client, php(client.tenant.stack, scratch, snippet, client.env))


def test_node_fetch_send(client, scratch):
    snippet = block(LOGINWA, "const res = await fetch(", "console.log(data.message_id);")
    assert_sent(client, node(client.tenant.stack, scratch, snippet, client.env).strip())


def test_python_requests_send(client, scratch):
    snippet = block(LOGINWA, "import os, requests", "print(res.json()['message_id'])")
    assert_sent(client, python(client.tenant.stack, scratch, snippet, client.env).strip())


def test_curl_otp_start_and_verify(client):
    stack = client.tenant.stack
    started = shell(stack, curl(LOGINWA, "auth/start", "$LOGINWA_API_KEY"), client.env)
    assert set(started) == {"session_id", "expires_in", "debug_code"} and started["expires_in"] == OTP_TTL_S, started
    assert_otp_works(client, started["session_id"])
    # The reference's verify names a placeholder session ("xxx"): a failed check, in its documented shape.
    failed = shell(stack, curl(LOGINWA, "auth/verify", "$LOGINWA_API_KEY"), client.env)
    assert failed["status"] in ("invalid_code", "expired", "max_attempts"), failed


def test_php_guzzle_otp_start(client, scratch):
    snippet = block(LOGINWA, r"$client = new \GuzzleHttp\Client();", "$sessionId = $data['session_id'];")
    session_id = php(client.tenant.stack, scratch, snippet, client.env, after="echo $sessionId;\n")
    assert_otp_works(client, session_id)


def test_node_send_otp_helper(client, scratch):
    snippet = block(LOGINWA, "const BASE_URL = 'https://api.loginwa.com/api';", "}")
    out = node(client.tenant.stack, scratch, snippet, client.env, after=f"console.log(JSON.stringify(await sendOtp('{TO}')));\n")
    assert_started(client, out)


def test_python_send_otp_helper(client, scratch):
    snippet = block(LOGINWA, "import requests", "return res.json()")
    out = python(client.tenant.stack, scratch, snippet, client.env, after=f"import json\nprint(json.dumps(send_otp('{TO}')))\n")
    assert_started(client, out)
