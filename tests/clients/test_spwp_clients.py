"""SPWP's own curl calls, as its reference prints them, run by bash and curl against the stack."""

import json

import pytest

from conftest import run
from snippets import SPWP, curl, localize

TO = "9647507644809"  # the reference's recipient: an ordinary number on the simulated network


def shell(stack, command: str, env: dict) -> dict:
    """Runs a curl command of the reference with bash; its output is the answer's body."""
    command = localize(SPWP, command, stack.api)
    checked = run(["bash", "-n", "-c", command])
    if checked.returncode != 0:
        pytest.skip(f"the reference's command is not valid shell as printed: {checked.stderr.strip().splitlines()[-1]}")
    done = run(["bash", "-c", command], env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("text", ["Hello from SPWP 👋", "Your verification code is 482310"])
def test_curl_text(client, text):
    body = shell(client.tenant.stack, curl(SPWP, "messages/text", text), client.env)
    data = body["data"]
    assert data["accountId"] == client.device_id and data["status"] == "QUEUED", body
    assert (data["direction"], data["type"], data["remoteJid"]) == ("OUT", "TEXT", f"{TO}@s.whatsapp.net"), body
    assert data["payload"] == {"text": text} and data["id"] and data["createdAt"] and body["meta"]["timestamp"], body
    client.received(TO, lambda m: m["text"] == text)


@pytest.mark.parametrize("kind", ["image", "video", "audio", "document"])
def test_curl_media_from_the_public_internet(client, kind):
    """These machines cannot reach the reference's media hosts (picsum.photos, example.com): the
    answer is the reference's one for a source it cannot download."""
    body = shell(client.tenant.stack, curl(SPWP, f"messages/{kind}"), client.env)
    assert body["statusCode"] == 400 and body["code"] == "MEDIA_FETCH_FAILED", body
    assert body["path"] == f"/api/v1/public/messages/{kind}" and body["message"] and body["timestamp"], body


def test_curl_location(client):
    body = shell(client.tenant.stack, curl(SPWP, "messages/location"), client.env)
    assert body["data"]["type"] == "LOCATION" and body["data"]["status"] == "QUEUED", body
    [message] = client.received(TO, lambda m: m["type"] == "location")
    assert message["location"] == {"latitude": 36.1911, "longitude": 44.0094, "name": "Erbil Citadel", "address": "Erbil, Kurdistan Region, Iraq"}


def test_curl_get_message_with_the_placeholder_id(client):
    """The reference's id ("9b1d7f6c-…") is elided: no such message, in the error shape."""
    body = shell(client.tenant.stack, curl(SPWP, "public/messages/9b1d7f6c"), client.env)
    assert body["statusCode"] == 404 and body["code"] and body["message"] and body["timestamp"], body
    assert body["path"].startswith("/api/v1/public/messages/9b1d7f6c-"), body


def test_curl_check_phone(client):
    body = shell(client.tenant.stack, curl(SPWP, "messages/check-phone"), client.env)
    assert body["data"] == {"phone": TO, "exists": True, "jid": f"{TO}@s.whatsapp.net"}, body
