"""Handlers missing on a node (rolling deploys) and poison messages.

A node that lacks an orchestration or activity abandons the work with exponential backoff
(1 s, 2 s, 4 s …, not configurable) instead of failing it, so a node that has the handler can
take it. Poison: a message fetched more than ``max_attempts`` times fails its instance.
"""

from __future__ import annotations

import time

from .support import eventually


def test_orchestration_registered_only_on_a_later_runtime_is_picked_up(make_runtime, client):
    """Rolling deploy: the old node parks the instance (it does not fail it), is replaced, and
    the new node runs it as soon as the 1 s backoff has passed. (Were the old node kept alive,
    it could win the next fetch and park the message again for 2 s, 4 s …: by design, but it
    makes the pickup time random, so the old node is stopped here.)"""
    old = make_runtime()
    old.register_orchestration("Known", lambda ctx, _: "known")
    old.start()
    client.start_orchestration("late-orch", "Late", 5)
    eventually(lambda: old.metrics_snapshot().orch_abandoned >= 1, 5)
    assert client.get_status("late-orch").status == "NotFound"
    assert old.metrics_snapshot().orch_failures == 0
    old.shutdown(1_000)

    new = make_runtime()
    new.register_orchestration("Late", lambda ctx, inp: {"doubled": inp * 2})
    t0 = time.monotonic()
    new.start()
    result = client.wait_for_orchestration("late-orch", 3_000)
    assert result.status == "Completed", result.error
    assert result.output == {"doubled": 10}
    assert time.monotonic() - t0 < 1.5  # at most the first backoff step
    assert client.get_instance_info("late-orch").orchestration_name == "Late"


def test_activity_registered_only_on_a_later_runtime_is_picked_up(make_runtime, client):
    ran_on: list[str] = []
    orchestrator = make_runtime(worker_concurrency=0)

    @orchestrator.register_orchestration("NeedsLate")
    def flow(ctx, inp):
        return (yield ctx.schedule_activity("LateActivity", inp))

    old_worker = make_runtime(orchestration_concurrency=0)
    old_worker.register_activity("Other", lambda ctx, x: x)
    orchestrator.start()
    old_worker.start()
    client.start_orchestration("late-act", "NeedsLate", 3)
    eventually(lambda: old_worker.metrics_snapshot().worker_dispatcher_items_fetched >= 1, 5)
    old_worker.shutdown(1_000)
    assert client.get_status("late-act").status == "Running"
    assert old_worker.metrics_snapshot().activity_errors == 0
    assert client.get_queue_depths().worker_queue == 1  # parked, not failed

    new_worker = make_runtime(orchestration_concurrency=0)
    new_worker.register_activity("LateActivity", lambda ctx, x: ran_on.append("new") or x + 1)
    t0 = time.monotonic()
    new_worker.start()
    result = client.wait_for_orchestration("late-act", 3_000)
    assert result.status == "Completed", result.error
    assert result.output == 4
    assert time.monotonic() - t0 < 1.5
    assert ran_on == ["new"]
    kinds = [e.kind for e in client.read_execution_history("late-act", 1)]
    assert kinds.count("ActivityFailed") == 0


def test_unknown_orchestration_does_not_block_other_instances(make_runtime, client):
    runtime = make_runtime(orchestration_concurrency=1)
    runtime.register_activity("Echo", lambda ctx, x: x)

    @runtime.register_orchestration("Known")
    def known(ctx, inp):
        return (yield ctx.schedule_activity("Echo", inp))

    runtime.start()
    client.start_orchestration("blocker", "NoSuchOrchestration")
    eventually(lambda: runtime.metrics_snapshot().orch_abandoned >= 1, 5)
    t0 = time.monotonic()
    for i in range(5):
        client.start_orchestration(f"unblocked-{i}", "Known", i)
    for i in range(5):
        assert client.wait_for_orchestration(f"unblocked-{i}", 5_000).output == i
    assert time.monotonic() - t0 < 1.0
    assert client.get_status("blocker").status == "NotFound"


def test_poison_unregistered_orchestration_fails_after_max_attempts(make_runtime, client):
    """max_attempts=1: fetch #1 finds no handler and parks the message for 1 s (the first
    backoff step); fetch #2 exceeds max_attempts and fails the instance. ~1 s in total."""
    runtime = make_runtime(max_attempts=1)
    runtime.start()
    client.start_orchestration("poison-unregistered", "Ghost", None)
    result = client.wait_for_orchestration("poison-unregistered", 4_000)
    assert result.status == "Failed"
    assert result.error.startswith("poison")
    assert result.error_category == "poison"
    eventually(lambda: runtime.metrics_snapshot().orch_poison == 1, 5)


def test_poison_after_max_attempts_2_when_every_turn_outlives_its_lock(make_runtime, client):
    """max_attempts=2 kept fast: the turn itself takes 300 ms but the instance lock lasts only
    100 ms, so each attempt's ack is refused (lock lost) and the message is fetched again at
    once (no 1 s / 2 s handler backoff involved). Fetch #3 > max_attempts fails the instance
    with a poison error without running the code again. ~0.7 s in total."""
    turns: list[float] = []

    def slow_turn(ctx, _):
        turns.append(time.monotonic())
        time.sleep(0.3)
        return "never committed"

    runtime = make_runtime(max_attempts=2, orchestrator_lock_timeout_ms=100,
                           orchestration_concurrency=1)  # fmt: skip
    runtime.register_orchestration("TooSlow", slow_turn)
    runtime.start()
    client.start_orchestration("poison-slow", "TooSlow")
    result = client.wait_for_orchestration("poison-slow", 4_000)
    assert result.status == "Failed"
    assert result.error.startswith("poison")
    assert result.error_category == "poison"
    assert "3 times" in result.error
    assert len(turns) == 2
    snap = eventually(lambda: (s := runtime.metrics_snapshot()).orch_poison == 1 and s, 5)
    assert snap.orch_lock_lost == 2
    kinds = [e.kind for e in client.read_execution_history("poison-slow", 1)]
    assert kinds == ["OrchestrationStarted", "OrchestrationFailed"]


def test_poison_activity_fails_with_poison_error(make_runtime, client):
    """max_attempts=1 and no node has the activity: parked once for 1 s, then failed as poison;
    the orchestration sees the failure as an exception."""
    runtime = make_runtime(max_attempts=1)

    @runtime.register_orchestration("CallsGhost")
    def flow(ctx, _):
        try:
            yield ctx.schedule_activity("GhostActivity", None)
        except Exception as exc:
            return {"caught": str(exc)}
        return "ran"

    runtime.start()
    client.start_orchestration("poison-activity", "CallsGhost")
    result = client.wait_for_orchestration("poison-activity", 4_000)
    assert result.status == "Completed", result.error
    assert result.output["caught"].startswith("poison")
    eventually(lambda: runtime.metrics_snapshot().activity_poison == 1, 5)
