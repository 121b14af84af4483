"""History is trimmed past its retention (`RETENTION_DAYS`): an app's recorded events and settled
webhook deliveries, a device's finished messages; deliveries still being retried stay. A stack of
its own keeps history for five seconds."""

import time

import pytest

from conftest import ARTIFACTS, Tenant, eventually, fresh_phone
from stack import Stack

KEEP_S = 5


@pytest.fixture(scope="module")
def brief():
    s = Stack.throwaway(ARTIFACTS / time.strftime("retention-%Y%m%d-%H%M%S"),
                        worker_vars={"RETENTION_DAYS": str(KEEP_S / 86400), "DEVICE_PACE_MS": "20"})
    try:
        yield s.start()
    finally:
        s.stop()


def test_old_events_and_settled_deliveries_are_trimmed_pending_ones_stay(brief, receiver):
    status, created, _ = brief.admin("POST", "/admin/v1/apps", {"name": "retention", "api_rpm": 10**6})
    assert status == 201, created
    tenant = Tenant(brief, created["app_id"], created["api_key"])
    ok = tenant.post("/api/v1/webhooks", {"url": receiver.url("/hook"), "events": ["message.sent"]}).json()
    # Nothing listens there: its deliveries fail and wait minutes for their next attempt.
    dead = tenant.post("/api/v1/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["message.sent"], "retry_count": 10}).json()
    tenant.link_device(fresh_phone("62897"))
    sent = tenant.post("/api/v1/messages/send", {"phone": fresh_phone(), "message": "kept a while"})
    assert sent.status_code == 200, sent.text
    message = f"/api/v1/public/messages/{sent.json()['message_id']}"
    eventually(lambda: tenant.get(message).json()["data"]["status"] == "READ")

    def deliveries(hook: dict) -> list:
        return tenant.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()["deliveries"]

    [old] = eventually(lambda: [d for d in deliveries(ok) if d["status"] == "succeeded"])
    [pending] = eventually(lambda: [d for d in deliveries(dead) if d["attempts"] >= 1])
    old_events = {e["id"] for e in tenant.events("device.connected") + tenant.events("message.sent")}
    assert len(old_events) == 2

    time.sleep(KEEP_S + 1)
    # Any alarm of the app trims; a test delivery sets one.
    assert tenant.post(f"/api/v1/webhooks/{ok['id']}/test").status_code == 200
    eventually(lambda: not any(d["id"] == old["id"] for d in deliveries(ok)))
    status, events, _ = brief.admin("GET", f"/admin/v1/apps/{tenant.app_id}/events?limit=1000")
    assert status == 200 and not old_events & {e["id"] for e in events["events"]}, events
    assert [d["id"] for d in deliveries(dead)] == [pending["id"]], "a delivery still being retried stays"
    assert [d["status"] for d in deliveries(dead)] == ["pending"]
    # The device trims when it next sends; what happens now is kept and delivered as before.
    after = tenant.post("/api/v1/messages/send", {"phone": fresh_phone(), "message": "after"}).json()["message_id"]
    eventually(lambda: tenant.get(f"/api/v1/public/messages/{after}").json()["data"]["status"] == "READ")
    assert tenant.get(message).status_code == 404, "the finished message is gone, its text with it"
    eventually(lambda: [d for d in deliveries(ok) if d["event"] == "message.sent" and d["status"] == "succeeded"])
