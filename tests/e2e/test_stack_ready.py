"""Ready means ready: the first request after the launcher says the stack is up succeeds. Each
round starts a fresh stack, as `make run` does, and creates an app the moment it is ready."""

import time

from conftest import ARTIFACTS
from stack import Stack

ROUNDS = 3


def test_the_first_request_after_ready_succeeds():
    """Before: wrangler ran the `[build]` command on start, then its watcher reported "The file src
    changed, restarting build..." and built and reloaded the worker again, on every start; when
    the reload came after /healthz had answered, a request in that window got 503 "Your worker
    restarted mid-request" (seen creating the demo app)."""
    answers = []
    for n in range(ROUNDS):
        stack = Stack.throwaway(ARTIFACTS / time.strftime(f"ready-%Y%m%d-%H%M%S-{n}"))
        try:
            stack.start()
            status, body, _ = stack.admin("POST", "/admin/v1/apps", {"name": f"first {n}"})
            answers.append(status)
            assert status == 201, (n, status, body)
            time.sleep(3)  # a reload after ready would show in the log by now
            log = (stack.run_dir / "worker.log").read_text()
            assert "restarting build" not in log and "restarted mid-request" not in log, log[-3000:]
        finally:
            stack.stop()
    assert answers == [201] * ROUNDS
