"""Broadcast campaigns on the real stack: rendered per contact, sent exactly once, progress that
adds up, pause/resume, schedule, the governor (opt-outs, warm-up, auto-pause), quota, crashes."""

import base64
import hashlib
import io
import re
import time
from datetime import datetime, timedelta, timezone

from PIL import Image

from conftest import eventually, fresh_phone, inbox

CAMPAIGNS = "/api/v1/broadcast/campaigns"


def picture() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 160, 90)).save(out, format="PNG")
    return out.getvalue()


def create(tenant, contacts, message="Hello {name}", **fields):
    r = tenant.post(CAMPAIGNS, {"name": "test", "message": message, "contacts": contacts, **fields})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["success"] is True
    return body["data"]


def get(tenant, campaign_id) -> dict:
    r = tenant.get(f"{CAMPAIGNS}/{campaign_id}")
    assert r.status_code == 200, r.text
    return r.json()["data"]


def consistent(view) -> dict:
    """Progress adds up at every moment: every contact is sent, failed or pending once."""
    p = view["progress"]
    assert p["sent"] + p["failed"] + p["pending"] == p["total"] == view["total_contacts"], p
    assert 0 <= p["delivered"] <= p["sent"], p
    return view


def until_status(tenant, campaign_id, status, timeout=60):
    return eventually(lambda: (v := consistent(get(tenant, campaign_id)))["status"] == status and v, timeout=timeout, interval=0.2)


def test_each_phone_gets_its_own_text_and_the_image_exactly_once(stack, new_tenant):
    tenant = new_tenant()
    tenant.link_device(fresh_phone("62840"))
    phones = [fresh_phone("62812") for _ in range(30)]
    contacts = [{"phone": p, "name": f"Name{i}", "variables": {"city": f"City{i}"}} for i, p in enumerate(phones)]
    absent = [fresh_phone("999") for _ in range(2)]
    contacts += [{"phone": p, "name": "Ghost", "variables": {"city": "Nowhere"}} for p in absent]
    # The same first number again, written locally with a leading zero: sent once.
    contacts.append({"phone": "0" + phones[0][2:], "name": "Again", "variables": {"city": "Twice"}})
    png = picture()
    campaign = create(tenant, contacts, message="{Hi|Hello} {name} from {city}!", delay_seconds=1,
                      media_url="data:image/png;base64," + base64.b64encode(png).decode(), media_type="image")
    assert campaign["status"] == "draft" and campaign["total_contacts"] == 32
    assert campaign["id"].startswith("camp_") and campaign["estimated_duration"] == "32 seconds"
    assert campaign["media"]["sha256"] == hashlib.sha256(png).hexdigest()

    r = tenant.post(f"{CAMPAIGNS}/{campaign['id']}/send")
    assert r.status_code == 200 and r.json()["data"]["status"] == "sending", r.text
    done = until_status(tenant, campaign["id"], "completed")
    assert done["progress"]["failed"] == 2 and done["progress"]["pending"] == 0 and done["progress"]["percentage"] == 100.0

    for i, phone in enumerate(phones):
        [got] = inbox(stack, phone)
        assert got["caption"] in (f"Hi Name{i} from City{i}!", f"Hello Name{i} from City{i}!")
        assert got["media"]["sha256"] == hashlib.sha256(png).hexdigest()
    greetings = {inbox(stack, p)[0]["caption"].split()[0] for p in phones}
    assert greetings == {"Hi", "Hello"}, "alternatives are chosen per contact"
    for phone in absent:
        assert inbox(stack, phone) == []
    failed = tenant.get(f"{CAMPAIGNS}/{campaign['id']}/contacts?status=failed").json()["data"]
    assert failed["total"] == 2 and {c["error"] for c in failed["data"]} == {"not_on_whatsapp"}
    sent = tenant.get(f"{CAMPAIGNS}/{campaign['id']}/contacts?status=sent").json()["data"]
    assert sent["total"] == 30 and all(c["message_id"].startswith("msg_") for c in sent["data"])
    assert [e["data"]["campaign_id"] for e in tenant.events("campaign.completed")] == [campaign["id"]]
    listed = tenant.get(CAMPAIGNS).json()["data"]
    assert listed["total"] == 1 and listed["data"][0]["id"] == campaign["id"]


def test_pause_stops_sends_and_resume_finishes(stack, new_tenant):
    tenant = new_tenant()
    tenant.link_device(fresh_phone("62841"))
    phones = [fresh_phone("62813") for _ in range(40)]
    campaign = create(tenant, [{"phone": p, "name": "x"} for p in phones], delay_seconds=10)  # ~200 ms apart
    tenant.post(f"{CAMPAIGNS}/{campaign['id']}/send")
    eventually(lambda: consistent(get(tenant, campaign["id"]))["progress"]["sent"] >= 5)
    r = tenant.post(f"{CAMPAIGNS}/{campaign['id']}/pause")
    assert r.status_code == 200 and r.json()["data"]["status"] == "paused"
    time.sleep(1)  # what was already handed to the device goes out
    received = sum(len(inbox(stack, p)) for p in phones)
    time.sleep(2)
    assert sum(len(inbox(stack, p)) for p in phones) == received < len(phones), "nothing new while paused"
    assert tenant.post(f"{CAMPAIGNS}/{campaign['id']}/pause").status_code == 409
    r = tenant.delete(f"{CAMPAIGNS}/{campaign['id']}")
    assert r.status_code == 200, "a paused campaign may be deleted…"
    campaign = create(tenant, [{"phone": p, "name": "x"} for p in phones], delay_seconds=10)
    tenant.post(f"{CAMPAIGNS}/{campaign['id']}/send")
    eventually(lambda: get(tenant, campaign["id"])["progress"]["sent"] >= 2)
    r = tenant.delete(f"{CAMPAIGNS}/{campaign['id']}")
    assert r.status_code == 409 and "pause it first" in r.json()["message"], "…a sending one may not"
    tenant.post(f"{CAMPAIGNS}/{campaign['id']}/pause")
    assert tenant.post(f"{CAMPAIGNS}/{campaign['id']}/resume").json()["data"]["status"] == "sending"
    until_status(tenant, campaign["id"], "completed")
    assert all(1 <= len(inbox(stack, p)) <= 2 for p in phones)
    assert all(len(inbox(stack, p)) == 1 for p in phones[received:]), "the second campaign sent each once"


def test_a_scheduled_campaign_starts_by_itself(stack, new_tenant):
    tenant = new_tenant()
    tenant.link_device(fresh_phone("62842"))
    phone = fresh_phone("62814")
    at = (datetime.now(timezone.utc) + timedelta(seconds=3)).isoformat()
    campaign = create(tenant, [{"phone": phone, "name": "Later"}], schedule_at=at)
    assert campaign["status"] == "queued"
    assert inbox(stack, phone) == []
    done = until_status(tenant, campaign["id"], "completed", timeout=30)
    assert [m["text"] for m in inbox(stack, phone)] == ["Hello Later"]
    # The reference's form, `2026-06-01T12:00:00Z`: whole seconds, `Z`.
    z = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
    for field in ("created_at", "schedule_at"):
        assert z.fullmatch(campaign[field]), campaign
    for field in ("created_at", "schedule_at", "started_at", "completed_at"):
        assert z.fullmatch(done[field]), done
    assert done["schedule_at"] == at[:19] + "Z", "the schedule as given, to the second"
    [listed] = tenant.get(CAMPAIGNS).json()["data"]["data"]
    assert z.fullmatch(listed["created_at"]) and z.fullmatch(listed["completed_at"]), listed


def test_invalid_campaigns_are_refused_with_the_field(stack, new_tenant):
    tenant = new_tenant(monthly_messages=3)
    ok = [{"phone": fresh_phone(), "name": "A"}]
    cases = [
        ({"message": "Hi {name} in {city}", "contacts": ok}, "message"),
        ({"contacts": [{"phone": fresh_phone(), "name": "A", "variables": {"city": "X"}}, {"phone": fresh_phone(), "name": "B"}],
          "message": "Hi {city}"}, "contacts.1"),
        ({"contacts": ok + [{"phone": "12ab"}]}, "contacts.1.phone"),
        ({"contacts": []}, "contacts"),
        ({"contacts": ok, "delay_seconds": 61}, "delay_seconds"),
        ({"contacts": ok, "schedule_at": "2020-01-01T00:00:00Z"}, "schedule_at"),
        ({"contacts": ok, "media_url": "https://example.com/a.png", "media_type": "gif"}, "media_type"),
        ({"contacts": ok, "device_ids": ["dev_0000000000000000"]}, "device_ids"),
    ]
    for body, field in cases:
        r = tenant.post(CAMPAIGNS, {"name": "bad", "message": "Hello {name}", **body})
        assert r.status_code == 422 and list(r.json()["errors"]) == [field], (body, r.text)
    r = tenant.post(CAMPAIGNS, {"name": "big", "message": "Hi", "contacts": [{"phone": fresh_phone()} for _ in range(4)]})
    assert r.status_code == 402 and r.json()["error"] == "quota_exceeded" and r.json()["quota_remaining"] == 3
    campaign = create(tenant, ok)
    r = tenant.post(f"{CAMPAIGNS}/{campaign['id']}/send")
    assert r.status_code == 503 and r.json()["error"] == "no_device_available", "no device is linked"
    assert tenant.get(f"{CAMPAIGNS}/camp_0000000000000000").status_code == 404


def test_opted_out_phones_receive_nothing(stack, new_tenant):
    tenant = new_tenant()
    device = tenant.link_device(fresh_phone("62843"))
    quitter, listed, keeper = fresh_phone("62815"), fresh_phone("62815"), fresh_phone("62815")
    stack.sim("POST", "/sim/inbound", {"device_id": device, "from": quitter, "text": " Stop! "})
    assert tenant.post("/api/v1/opt-outs", {"phone": listed}).status_code == 201
    eventually(lambda: {o["phone"] for o in tenant.get("/api/v1/opt-outs").json()["data"]["opt_outs"]} == {quitter, listed})
    campaign = create(tenant, [{"phone": p, "name": "x"} for p in (quitter, listed, keeper)], delay_seconds=1)
    tenant.post(f"{CAMPAIGNS}/{campaign['id']}/send")
    done = until_status(tenant, campaign["id"], "completed")
    assert done["progress"]["failed"] == 2
    assert inbox(stack, quitter) == [] and inbox(stack, listed) == [] and len(inbox(stack, keeper)) == 1
    failed = tenant.get(f"{CAMPAIGNS}/{campaign['id']}/contacts?status=failed").json()["data"]["data"]
    assert {c["error"] for c in failed} == {"opted_out"}
    assert tenant.delete(f"/api/v1/opt-outs/{listed}").status_code == 200
    assert tenant.delete(f"/api/v1/opt-outs/{listed}").status_code == 404


def test_new_numbers_warm_up_and_the_campaign_says_it_waits(stack, new_tenant):
    tenant = new_tenant()
    app = f"/admin/v1/apps/{tenant.app_id}"
    # A first day above the uncapped threshold would mean no warm-up at all: refused, nothing changed.
    status, refused, _ = stack.admin("PATCH", app, {"warm_up_first_day_cap": 3, "warm_up_uncapped_after": 2})
    assert status == 422 and list(refused["errors"]) == ["warm_up_uncapped_after"], refused
    assert stack.admin("GET", app)[1]["governor"]["warm_up"] == {"first_day_cap": 200, "growth_percent": 50, "uncapped_after": 5000}
    status, patched, _ = stack.admin("PATCH", app, {"warm_up_first_day_cap": 3, "warm_up_uncapped_after": 10})
    assert status == 200 and patched["governor"]["warm_up"]["uncapped_after"] == 10
    tenant.link_device(fresh_phone("62844"))
    phones = [fresh_phone("62816") for _ in range(5)]
    campaign = create(tenant, [{"phone": p, "name": "x"} for p in phones], delay_seconds=1)
    tenant.post(f"{CAMPAIGNS}/{campaign['id']}/send")
    # Three go out, then it waits for tomorrow's allowance (the third may still be on its way).
    waiting = eventually(lambda: (v := consistent(get(tenant, campaign["id"])))["waiting"] and v["progress"]["sent"] == 3 and v)
    assert waiting["status"] == "sending" and waiting["waiting"]["reason"] == "warm_up_cap"
    assert waiting["progress"]["pending"] == 2
    assert sum(len(inbox(stack, p)) for p in phones) == 3
    # A direct API send is paced but not capped.
    assert tenant.post("/api/v1/messages/send", {"phone": phones[4], "message": "direct"}).status_code == 200


def test_an_unlinked_device_auto_pauses_the_campaign(stack, new_tenant):
    tenant = new_tenant()
    device = tenant.link_device(fresh_phone("62845"))
    phones = [fresh_phone("62817") for _ in range(30)]
    campaign = create(tenant, [{"phone": p, "name": "x"} for p in phones], delay_seconds=10)
    tenant.post(f"{CAMPAIGNS}/{campaign['id']}/send")
    eventually(lambda: get(tenant, campaign["id"])["progress"]["sent"] >= 3)
    stack.sim("POST", f"/sim/devices/{device}/disconnect")
    paused = until_status(tenant, campaign["id"], "paused", timeout=20)
    assert paused["pause_reason"].startswith("device_offline")
    [event] = tenant.events("campaign.paused")
    assert event["data"]["campaign_id"] == campaign["id"] and event["data"]["reason"] == paused["pause_reason"]


def test_a_bridge_crash_mid_campaign_loses_and_duplicates_nothing(stack, new_tenant):
    tenant = new_tenant()
    device = tenant.link_device(fresh_phone("62846"))
    phones = [fresh_phone("62818") for _ in range(30)]
    campaign = create(tenant, [{"phone": p, "name": f"N{i}"} for i, p in enumerate(phones)], delay_seconds=5)
    tenant.post(f"{CAMPAIGNS}/{campaign['id']}/send")
    eventually(lambda: get(tenant, campaign["id"])["progress"]["sent"] >= 8)
    stack.kill_bridge()
    time.sleep(0.5)
    stack.start_bridge()
    stack.wait_healthy()
    eventually(lambda: tenant.device(device)["status"] == "online")
    until_status(tenant, campaign["id"], "completed", timeout=90)
    for i, phone in enumerate(phones):
        assert [m["text"] for m in inbox(stack, phone)] == [f"Hello N{i}"], phone


def test_a_run_of_failures_auto_pauses_and_checks_spend_no_quota(stack, new_tenant):
    tenant = new_tenant(monthly_messages=100)
    tenant.link_device(fresh_phone("62847"))
    doomed = [fresh_phone("997") for _ in range(14)]  # on WhatsApp, but every send fails
    absent = [fresh_phone("999") for _ in range(3)]
    campaign = create(tenant, [{"phone": p, "name": "x"} for p in absent + doomed], delay_seconds=1)
    tenant.post(f"{CAMPAIGNS}/{campaign['id']}/send")
    paused = until_status(tenant, campaign["id"], "paused")
    assert paused["pause_reason"].startswith("failure_rate") and paused["progress"]["pending"] > 0
    assert [e["data"]["reason"] for e in tenant.events("campaign.paused")] == [paused["pause_reason"]]
    failed = tenant.get(f"{CAMPAIGNS}/{campaign['id']}/contacts?status=failed").json()["data"]
    not_there = [c for c in failed["data"] if c["error"] == "not_on_whatsapp"]
    assert len(not_there) == 3
    # Failed sends give their unit back (the last one handed over may still be failing);
    # numbers not on WhatsApp never took one.
    eventually(lambda: stack.admin("GET", f"/admin/v1/apps/{tenant.app_id}")[1]["quota"]["used"] == 0)


def test_a_campaign_goes_round_robin_over_its_numbers(stack, new_tenant):
    tenant = new_tenant()
    first, second = tenant.link_device(fresh_phone("62848")), tenant.link_device(fresh_phone("62848"))
    phones = [fresh_phone("62819") for _ in range(10)]
    campaign = create(tenant, [{"phone": p, "name": "x"} for p in phones], delay_seconds=1, device_ids=[first, second])
    tenant.post(f"{CAMPAIGNS}/{campaign['id']}/send")
    until_status(tenant, campaign["id"], "completed")
    sent = tenant.get(f"{CAMPAIGNS}/{campaign['id']}/contacts?status=sent").json()["data"]["data"]
    by_device = [c["device_id"] for c in sent]
    assert by_device.count(first) == by_device.count(second) == 5
