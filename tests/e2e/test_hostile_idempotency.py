"""An Idempotency-Key cannot send a message twice: not while its first request is still running,
not after that request failed between the app's and the device's objects, not after its lease ran
out. Faults are injected with the development-only `X-Wagate-Fault` header (the stack sets
`FAULT_INJECTION=on`); the lease is `IDEMPOTENCY_LEASE_MS` (1.5 s here, 60 s in production)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import IDEMPOTENCY_LEASE_MS, eventually, fresh_phone, inbox, statuses

SEND = "/api/v1/messages/send"


@pytest.fixture
def sender(new_tenant):
    tenant = new_tenant(monthly_messages=100)
    tenant.device_id = tenant.link_device(fresh_phone("62841"))
    return tenant


def quota_used(tenant) -> int:
    status, body, _ = tenant.stack.admin("GET", f"/admin/v1/apps/{tenant.app_id}")
    assert status == 200, body
    return body["quota"]["used"]


def delivered_once(stack, tenant, to: str, text: str, message_id: str):
    eventually(lambda: statuses(tenant, [message_id]) == ["READ"])
    time.sleep(1)  # a second copy would have arrived by now (pace 20 ms, delivery 50 ms)
    assert [m["text"] for m in inbox(stack, to)] == [text], "exactly one message on the phone"
    assert quota_used(tenant) == 1, "quota charged once"


def faulted_then_retried(sender, text: str, fault: str):
    """Sends `text` to a fresh phone under a fresh key with `fault`, then again under the same key
    without it; returns the phone and both answers."""
    to = fresh_phone()
    body, key = {"phone": to, "message": text}, {"Idempotency-Key": f"{fault}-{to}"}
    first = sender.post(SEND, body, headers={**key, "X-Wagate-Fault": fault})
    return to, first, sender.post(SEND, body, headers=key)


def test_retry_while_the_first_request_is_in_flight(stack, sender):
    """Before: answered 409 `conflict` (the generic one). Now 409 `idempotency_key_in_use` (SPWP
    `IDEMPOTENCY_KEY_IN_USE`), as Stripe answers, and the first request's message goes out once."""
    to = fresh_phone()
    body = {"phone": to, "message": "in flight"}
    key = f"inflight-{to}"
    slow = {"Idempotency-Key": key, "X-Wagate-Fault": "delay-enqueue=3000"}
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(sender.post, SEND, body, headers=slow)
        time.sleep(0.5)
        retry = sender.post(SEND, body, headers={"Idempotency-Key": key})
        assert retry.status_code == 409 and retry.json()["error"] == "idempotency_key_in_use", retry.text
        first = first.result()
    assert first.status_code == 200, first.text
    # The SPWP wording of the same refusal.
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(sender.post, "/api/v1/public/messages/text", {"to": to, "text": "spwp"}, headers={"Idempotency-Key": f"p{key}", "X-Wagate-Fault": "delay-enqueue=2000"})
        time.sleep(0.5)
        refused = sender.post("/api/v1/public/messages/text", {"to": to, "text": "spwp"}, headers={"Idempotency-Key": f"p{key}"})
        assert refused.status_code == 409 and refused.json()["code"] == "IDEMPOTENCY_KEY_IN_USE", refused.text
        assert pending.result().status_code == 202
    eventually(lambda: len(inbox(stack, to)) == 2)
    time.sleep(1)
    assert sorted(m["text"] for m in inbox(stack, to)) == ["in flight", "spwp"], "one per key"
    assert quota_used(sender) == 2


def test_retry_after_the_lease_ran_out_under_a_slow_first_request(stack, sender):
    """Before: a retry after the lease (60 s) minted a new message id and sent the message a
    second time, charging twice, while the first request still sent its own. Now the retry
    re-drives the key's message id: both answers carry one id, the phone gets one message."""
    to = fresh_phone()
    body = {"phone": to, "message": "slow one"}
    key = f"lease-{to}"
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(sender.post, SEND, body, headers={"Idempotency-Key": key, "X-Wagate-Fault": f"delay-enqueue={IDEMPOTENCY_LEASE_MS + 2500}"})
        time.sleep(IDEMPOTENCY_LEASE_MS / 1000 + 0.5)
        retry = sender.post(SEND, body, headers={"Idempotency-Key": key})
        first = first.result()
    assert retry.status_code == 200 and first.status_code == 200, (retry.text, first.text)
    assert retry.json()["message_id"] == first.json()["message_id"]
    delivered_once(stack, sender, to, "slow one", first.json()["message_id"])


def test_retry_after_the_devices_answer_was_lost(stack, sender):
    """Before: the device stored the message, its answer was lost, the worker refunded the unit
    and freed the key (500); the retry sent a second copy, so two messages went out for one unit.
    Now the worker asks the device, which holds the message: the first request answers 200 and
    the retry replays it."""
    to, first, retry = faulted_then_retried(sender, "answer lost", "enqueue-answer-lost")
    assert first.status_code == 200, first.text
    assert retry.status_code == 200 and retry.json()["message_id"] == first.json()["message_id"]
    delivered_once(stack, sender, to, "answer lost", first.json()["message_id"])


def test_retry_after_the_device_became_unreachable_mid_send(stack, sender):
    """Before: the device stored the message, then could not be reached; the worker refunded the
    unit and freed the key, and the retry sent a second copy. Now nothing is refunded without the
    device's word, the first request fails (500), and the retry re-drives the same message id,
    which the device's queue takes once."""
    to, first, retry = faulted_then_retried(sender, "device lost", "device-lost-after-enqueue")
    assert first.status_code == 500, first.text
    assert retry.status_code == 200, retry.text
    delivered_once(stack, sender, to, "device lost", retry.json()["message_id"])


def test_fault_header_without_a_key_still_sends_once_and_charges_once(stack, sender):
    """Before: with no key, a lost device answer refunded the unit of a message that was sent.
    Now the device's word decides: it holds the message, so the send answers 200, charged once."""
    to = fresh_phone()
    r = sender.post(SEND, {"phone": to, "message": "no key"}, headers={"X-Wagate-Fault": "enqueue-answer-lost"})
    assert r.status_code == 200, r.text
    delivered_once(stack, sender, to, "no key", r.json()["message_id"])
