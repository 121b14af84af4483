"""Auto-replies cannot be farmed or loop: a cooldown per (rule, sender), a cap per sender per
hour (both operator settings per app) and a stop to conversations that look like two programs
answering each other (`domain::autoreply`). A suppressed reply is noted on `message.incoming`."""

from __future__ import annotations

import threading
import time

from conftest import eventually, fresh_phone, inbox


def quota_used(tenant) -> int:
    status, body, _ = tenant.stack.admin("GET", f"/admin/v1/apps/{tenant.app_id}")
    assert status == 200, body
    return body["quota"]["used"]


def limits(tenant, **settings) -> dict:
    status, body, _ = tenant.stack.admin("PATCH", f"/admin/v1/apps/{tenant.app_id}", settings)
    assert status == 200, body
    return body["governor"]["auto_reply"]


def incoming(tenant, sender: str, count: int) -> list:
    return eventually(lambda: len(found := [e["data"] for e in tenant.events("message.incoming") if e["data"]["from"] == sender]) >= count and found)


def rule(tenant, pattern: str, reply: str, match: str = "exact") -> str:
    r = tenant.post("/api/v1/auto-replies", {"match": match, "pattern": pattern, "reply": reply})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_a_stranger_repeating_a_keyword_gets_one_reply(stack, new_tenant):
    """Before: eight "price" messages drew eight replies and spent eight units of quota. Now the
    rule's cooldown (60 s by default) answers once; the other seven events say `suppressed`."""
    tenant = new_tenant(monthly_messages=100)
    device = tenant.link_device(fresh_phone("62861"))
    price = rule(tenant, "price", "Prices are at example.com")
    stranger = fresh_phone("1417")
    for _ in range(8):
        stack.sim("POST", "/sim/inbound", {"device_id": device, "from": stranger, "text": "price"})
    events = incoming(tenant, stranger, 8)
    time.sleep(1.5)
    assert [m["text"] for m in inbox(stack, stranger)] == ["Prices are at example.com"]
    assert quota_used(tenant) == 1
    suppressed = [e["auto_reply"] for e in events if "suppressed" in e.get("auto_reply", {})]
    assert len(suppressed) == 7 and {s["rule_id"] for s in suppressed} == {price}
    assert {s["suppressed"] for s in suppressed} <= {"cooldown", "loop"}


def test_a_stranger_gets_at_most_the_hourly_cap_over_all_rules(stack, new_tenant):
    """Before: a stranger could draw one reply per rule per message without end. Now, with the
    cap set to 2 an hour, the third rule's match is suppressed as `hourly_cap` and not charged."""
    tenant = new_tenant(monthly_messages=100)
    device = tenant.link_device(fresh_phone("62862"))
    for bad in ({"auto_reply_cooldown_s": -1}, {"auto_reply_hourly_cap": 3601}, {"auto_reply_hourly_cap": "many"}):
        status, body, _ = stack.admin("PATCH", f"/admin/v1/apps/{tenant.app_id}", bad)
        assert status == 422 and list(body["errors"]) == list(bad), (bad, body)
    assert limits(tenant) == {"cooldown_secs": 60, "hourly_cap": 5}, "the defaults"
    assert limits(tenant, auto_reply_hourly_cap=2) == {"cooldown_secs": 60, "hourly_cap": 2}
    for word in ("alpha", "beta", "gamma"):
        rule(tenant, word, f"about {word}")
    stranger = fresh_phone("1418")
    for n, word in enumerate(("alpha", "beta", "gamma"), 1):
        stack.sim("POST", "/sim/inbound", {"device_id": device, "from": stranger, "text": word})
        incoming(tenant, stranger, n)
    time.sleep(1.5)
    assert sorted(m["text"] for m in inbox(stack, stranger)) == ["about alpha", "about beta"]
    assert quota_used(tenant) == 2
    gamma = next(e for e in incoming(tenant, stranger, 3) if e["body"] == "gamma")
    assert gamma["auto_reply"]["suppressed"] == "hourly_cap"


def test_two_gateways_answering_each_other_stop(stack, new_tenant):
    """Before: two numbers with catch-all auto-replies answered each other for as long as the
    quota lasted. Now, even with no cooldown and a high cap, each stops once the other has
    answered it faster than a person types three times in a row (`suppressed: loop`).
    The simulator does not route device to device, so the test relays each side's replies."""
    phones = [fresh_phone("62863"), fresh_phone("62864")]
    sides = []
    for phone, reply in zip(phones, ("Thanks, {name}! We will get back to you.", "Auto-reply: we got '{message}'")):
        tenant = new_tenant(monthly_messages=1000)
        device = tenant.link_device(phone)
        assert limits(tenant, auto_reply_cooldown_s=0, auto_reply_hourly_cap=1000)["cooldown_secs"] == 0
        rule(tenant, ".", reply, match="regex")
        sides.append((tenant, device, phone))
    (a, device_a, phone_a), (b, device_b, phone_b) = sides
    stop, relayed = threading.Event(), {phone_a: 0, phone_b: 0}

    def relay():
        # What reaches one side's number is handed to that side's device, from the other number.
        while not stop.is_set():
            for to, device, sender in ((phone_b, device_b, phone_a), (phone_a, device_a, phone_b)):
                for message in inbox(stack, to)[relayed[to]:]:
                    stack.sim("POST", "/sim/inbound", {"device_id": device, "from": sender, "text": message["text"]})
                    relayed[to] += 1
            time.sleep(0.1)

    thread = threading.Thread(target=relay, daemon=True)
    thread.start()
    try:
        stack.sim("POST", "/sim/inbound", {"device_id": device_a, "from": phone_b, "text": "hello"})
        quiet_since, last = time.monotonic(), None
        deadline = time.monotonic() + 60
        while time.monotonic() - quiet_since < 5:
            assert time.monotonic() < deadline, "the exchange did not stop"
            now = (len(inbox(stack, phone_a)), len(inbox(stack, phone_b)))
            if now != last:
                quiet_since, last = time.monotonic(), now
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join()
    from_a, from_b = len(inbox(stack, phone_b)), len(inbox(stack, phone_a))
    assert 1 <= from_a <= 4 and from_b <= 4, (from_a, from_b)
    assert quota_used(a) == from_a and quota_used(b) == from_b
    events = [e["data"] for t in (a, b) for e in t.events("message.incoming")]
    assert any(e.get("auto_reply", {}).get("suppressed") == "loop" for e in events)
