"""Runtime lifecycle: start/shutdown timing, releasing in-flight work at shutdown, role split
(activity-only / orchestration-only runtimes) and ``metrics_snapshot()``.

Every wait has a deadline; the few "nothing happens" checks use a bounded client wait that must
time out, followed by a positive check that the work does happen once the missing piece exists.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from duroxide import Client, Runtime, RuntimeOptions, SqliteProvider

from .support import eventually


def _history_kinds(client: Client, instance_id: str, execution_id: int = 1) -> list[str]:
    return [e.kind for e in client.read_execution_history(instance_id, execution_id)]


def _echo_orchestration(activity: str) -> Callable[[Any, Any], Any]:
    def orchestration(ctx: Any, inp: Any) -> Any:
        return (yield ctx.schedule_activity(activity, inp))

    return orchestration


# --- start / shutdown ------------------------------------------------------------------------


def test_start_returns_at_once_and_idle_shutdown_returns_early(make_runtime, client):
    runtime = make_runtime()
    runtime.register_activity("Echo", lambda ctx, x: x)
    runtime.register_orchestration("EchoFlow", _echo_orchestration("Echo"))

    @runtime.register_orchestration("Sleeper")
    def sleeper(ctx, _):
        yield ctx.schedule_timer(60_000)

    t0 = time.monotonic()
    runtime.start()
    assert time.monotonic() - t0 < 0.5, "start() must not block"

    client.start_orchestration("echo", "EchoFlow", {"x": 1})
    assert client.wait_for_orchestration("echo", 5_000).output == {"x": 1}
    # An instance parked on a long durable timer is not in-flight work.
    client.start_orchestration("sleeper", "Sleeper")
    eventually(lambda: client.get_status("sleeper").status == "Running", 5)

    t0 = time.monotonic()
    runtime.shutdown(5_000)
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0, f"idle shutdown(5000) took {elapsed:.2f}s"
    assert client.get_status("sleeper").status == "Running"


def test_shutdown_abandons_running_activity_so_another_runtime_takes_it_at_once(
    provider, make_runtime, client
):
    """Runtime A is shut down while its activity is still running (and ignores cancellation).
    Its lock (30 s) is released, so runtime B finishes the workflow within a few seconds; A's
    late result is refused and dropped: history holds exactly one completion, B's."""
    runs: list[str] = []
    a_started = threading.Event()
    a_release = threading.Event()
    a_saw_cancel: list[bool] = []

    def slow_on_a(ctx, _):
        runs.append("A")
        a_started.set()
        a_release.wait(10)
        a_saw_cancel.append(ctx.is_cancelled())
        return "from-A"

    def quick_on_b(ctx, _):
        runs.append("B")
        return "from-B"

    a = make_runtime(worker_lock_timeout_ms=30_000)
    a.register_activity("Work", slow_on_a)
    a.register_orchestration("Flow", _echo_orchestration("Work"))
    a.start()
    client.start_orchestration("handover", "Flow", None)
    assert a_started.wait(5)

    try:
        t0 = time.monotonic()
        a.shutdown(300)
        elapsed = time.monotonic() - t0
        assert 0.25 <= elapsed < 1.2, f"shutdown(300) with a busy activity took {elapsed:.2f}s"

        # max_attempts=1: the attempt A abandoned at shutdown must not count against B.
        b = make_runtime(worker_lock_timeout_ms=30_000, max_attempts=1)
        b.register_activity("Work", quick_on_b)
        b.register_orchestration("Flow", _echo_orchestration("Work"))
        t0 = time.monotonic()
        b.start()
        result = client.wait_for_orchestration("handover", 5_000)
        assert result.status == "Completed"
        assert result.output == "from-B"
        assert time.monotonic() - t0 < 3.0, "B had to wait for A's lock to expire"
    finally:
        a_release.set()

    # A's activity returns late; its ack must be refused (lock lost / cancelled) and dropped.
    eventually(
        lambda: (
            a.metrics_snapshot().activity_cancelled + a.metrics_snapshot().activity_lock_lost == 1
        ),
        5,
    )
    assert a_saw_cancel == [True], "shutdown should signal cancellation to abandoned activities"
    assert runs == ["A", "B"]
    history = client.read_execution_history("handover", 1)
    completions = [e for e in history if e.kind == "ActivityCompleted"]
    assert len(completions) == 1
    assert json.loads(completions[0].data) == "from-B"
    assert client.get_queue_depths().orchestrator_queue == 0
    assert client.get_status("handover").output == "from-B"


def test_activity_finishing_within_shutdown_grace_period_keeps_its_result(make_runtime, client):
    """shutdown(timeout_ms) promises to let in-flight activities finish for up to timeout_ms.
    An activity that outlives its lock timeout but finishes inside that window must still have
    its lock renewed, so its result is committed and it never runs again. (Regression: the
    lease keeper used to stop when shutdown began.)"""
    runs: list[str] = []
    started = threading.Event()

    def slow(ctx, _):
        runs.append("A")
        started.set()
        time.sleep(1.2)  # twice the lock timeout, well inside the 3 s grace period
        return "from-A"

    a = make_runtime(worker_lock_timeout_ms=600)
    a.register_activity("Work", slow)
    a.register_orchestration("Flow", _echo_orchestration("Work"))
    a.start()
    client.start_orchestration("grace", "Flow", None)
    assert started.wait(5)
    t0 = time.monotonic()
    a.shutdown(3_000)
    assert time.monotonic() - t0 < 2.5, "shutdown should return once the activity finished"

    b = make_runtime()
    b.register_activity("Work", lambda ctx, _: runs.append("B") or "from-B")
    b.register_orchestration("Flow", _echo_orchestration("Work"))
    b.start()
    result = client.wait_for_orchestration("grace", 5_000)
    assert a.metrics_snapshot().activity_lock_lost == 0
    assert runs == ["A"]
    assert result.output == "from-A"


def test_shutdown_releases_an_in_flight_turn_so_another_runtime_runs_it_at_once(
    make_runtime, client
):
    """A turn still running at the end of the grace period is abandoned: its instance lock
    (30 s here) is released, another runtime replays the instance immediately, and the late
    ack of the first runtime is refused, so history is written once."""
    in_turn = threading.Event()
    release = threading.Event()

    def slow_first_turn(ctx, _):
        if not release.is_set():  # only the first runtime's turn is slow
            in_turn.set()
            release.wait(5)
        return ctx.orchestration_version

    a = make_runtime(orchestrator_lock_timeout_ms=30_000)
    a.register_orchestration("SlowTurn", slow_first_turn)
    a.start()
    client.start_orchestration("slow-turn", "SlowTurn")
    assert in_turn.wait(5)
    try:
        t0 = time.monotonic()
        a.shutdown(200)
        assert time.monotonic() - t0 < 1.0
        assert a.metrics_snapshot().orch_abandoned == 1
    finally:
        release.set()
    eventually(lambda: a.metrics_snapshot().orch_lock_lost == 1, 5)  # the late ack is refused

    # max_attempts=1: the turn A abandoned at shutdown must not count as an attempt.
    b = make_runtime(orchestrator_lock_timeout_ms=30_000, max_attempts=1)
    b.register_orchestration("SlowTurn", slow_first_turn)
    t0 = time.monotonic()
    b.start()
    result = client.wait_for_orchestration("slow-turn", 3_000)
    assert result.status == "Completed"
    assert time.monotonic() - t0 < 1.0
    assert _history_kinds(client, "slow-turn") == ["OrchestrationStarted", "OrchestrationCompleted"]


def test_a_runtime_starts_once(make_runtime):
    runtime = make_runtime()
    runtime.start()
    with pytest.raises(RuntimeError):
        runtime.start()
    runtime.shutdown(1_000)
    with pytest.raises(RuntimeError):
        runtime.start()
    runtime.shutdown(1_000)  # a second shutdown is harmless


def test_worker_concurrency_bounds_parallel_activities(make_runtime, client):
    lock = threading.Lock()
    state = {"running": 0, "peak": 0}

    def work(ctx, x):
        with lock:
            state["running"] += 1
            state["peak"] = max(state["peak"], state["running"])
        time.sleep(0.05)
        with lock:
            state["running"] -= 1
        return x

    runtime = make_runtime(worker_concurrency=2)
    runtime.register_activity("Work", work)

    @runtime.register_orchestration("Wide")
    def wide(ctx, n):
        return (yield ctx.all_typed([ctx.schedule_activity("Work", i) for i in range(n)]))

    runtime.start()
    client.start_orchestration("wide", "Wide", 8)
    assert client.wait_for_orchestration("wide", 5_000).output == list(range(8))
    assert state["peak"] == 2


def test_activity_context_fields_client_and_async_activities(make_runtime, client):
    seen: dict[str, Any] = {}

    def inspect_ctx(ctx, inp):
        seen.update(
            instance_id=ctx.instance_id,
            execution_id=ctx.execution_id,
            orchestration_name=ctx.orchestration_name,
            orchestration_version=ctx.orchestration_version,
            activity_name=ctx.activity_name,
            activity_id=ctx.activity_id,
            worker_id=ctx.worker_id,
            session_id=ctx.session_id,
            tag=ctx.tag(),
            cancelled=ctx.is_cancelled(),
        )
        ctx.trace_info("inspecting")
        # An activity may use a client, e.g. to signal another instance.
        ctx.get_client().raise_event(inp, "signal", {"from": ctx.instance_id})
        return "inspected"

    async def async_double(ctx, x):
        return x * 2

    runtime = make_runtime(worker_node_id="node-7")
    runtime.register_activity("Inspect", inspect_ctx)
    runtime.register_activity("AsyncDouble", async_double)

    @runtime.register_orchestration("Listener")
    def listener(ctx, _):
        return (yield ctx.wait_for_event("signal"))

    @runtime.register_orchestration_versioned("Inspector", "1.4.0")
    def inspector(ctx, target):
        doubled = yield ctx.schedule_activity("AsyncDouble", 21)
        inspected = yield ctx.schedule_activity("Inspect", target)
        return [doubled, inspected]

    runtime.start()
    client.start_orchestration("listener", "Listener")
    client.start_orchestration("inspector", "Inspector", "listener")
    assert client.wait_for_orchestration("inspector", 5_000).output == [42, "inspected"]
    assert client.wait_for_orchestration("listener", 5_000).output == {"from": "inspector"}
    scheduled = [
        e.event_id
        for e in client.read_execution_history("inspector", 1)
        if e.kind == "ActivityScheduled"
    ]
    assert seen == {
        "instance_id": "inspector",
        "execution_id": 1,
        "orchestration_name": "Inspector",
        "orchestration_version": "1.4.0",
        "activity_name": "Inspect",
        "activity_id": scheduled[1],
        "worker_id": "node-7",
        "session_id": None,
        "tag": None,
        "cancelled": False,
    }


class _GatedProvider(SqliteProvider):
    """Holds ``fetch_work_items`` calls while ``gate_closed`` is set (widens a real race)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.gate_closed = threading.Event()
        self.gate_open = threading.Event()
        self.held = threading.Event()
        self.claimed_late = threading.Event()

    def fetch_work_items(self, *args: Any, **kwargs: Any) -> Any:
        if self.gate_closed.is_set():
            self.held.set()
            self.gate_open.wait(10)
            items = super().fetch_work_items(*args, **kwargs)
            if items:
                self.claimed_late.set()
            return items
        return super().fetch_work_items(*args, **kwargs)


def test_item_claimed_by_fetch_in_flight_at_shutdown_is_released():
    """Regression: an item returned by a fetch that was still running when shutdown() ended
    was queued behind the slot threads' stop markers, never run nor abandoned, and stayed
    locked for worker_lock_timeout_ms. It must be released (or run) at once."""
    provider = _GatedProvider.in_memory()
    client = Client(provider)
    opts = {"dispatcher_poll_interval_ms": 50}
    worker = Runtime(provider, RuntimeOptions(orchestration_concurrency=0, **opts))
    worker.register_activity("Echo", lambda ctx, x: x)
    orchestrator = Runtime(provider, RuntimeOptions(worker_concurrency=0, **opts))
    orchestrator.register_orchestration("Flow", _echo_orchestration("Echo"))
    second = Runtime(provider, RuntimeOptions(orchestration_concurrency=0, **opts))
    second.register_activity("Echo", lambda ctx, x: x)
    try:
        provider.gate_closed.set()
        worker.start()
        assert provider.held.wait(5), "the worker's claim loop never fetched"
        worker.shutdown(300)  # returns with the fetch still in flight (held by the gate)

        provider.gate_closed.clear()
        orchestrator.start()
        client.start_orchestration("late-claim", "Flow", 7)
        eventually(lambda: client.get_queue_depths().worker_queue == 1, 5)
        provider.gate_open.set()
        assert provider.claimed_late.wait(5)

        second.start()
        result = client.wait_for_orchestration("late-claim", 2_000)
        assert result.output == 7
    finally:
        provider.gate_open.set()
        for runtime in (orchestrator, second):
            runtime.shutdown(500)
        provider.close()


# --- role split ------------------------------------------------------------------------------


def test_orchestration_concurrency_zero_is_an_activity_only_runtime(make_runtime, client):
    ran_on: list[str] = []
    worker = make_runtime(orchestration_concurrency=0)
    worker.register_activity("Work", lambda ctx, x: ran_on.append("worker") or x + 1)
    worker.register_orchestration("Flow", _echo_orchestration("Work"))
    worker.start()

    client.start_orchestration("split-1", "Flow", 1)
    with pytest.raises(TimeoutError):
        client.wait_for_orchestration("split-1", 400)
    assert client.get_status("split-1").status == "NotFound"
    snap = worker.metrics_snapshot()
    assert snap.orch_turns == 0
    assert snap.orch_dispatcher_items_fetched == 0

    orchestrator = make_runtime(worker_concurrency=0)
    orchestrator.register_activity("Work", lambda ctx, x: ran_on.append("orchestrator") or -1)
    orchestrator.register_orchestration("Flow", _echo_orchestration("Work"))
    orchestrator.start()
    result = client.wait_for_orchestration("split-1", 5_000)
    assert result.output == 2
    assert ran_on == ["worker"]
    assert worker.metrics_snapshot().orch_turns == 0


def test_worker_concurrency_zero_is_an_orchestration_only_runtime(make_runtime, client):
    ran_on: list[str] = []
    orchestrator = make_runtime(worker_concurrency=0)
    orchestrator.register_activity("Work", lambda ctx, x: ran_on.append("orchestrator") or -1)
    orchestrator.register_orchestration("Flow", _echo_orchestration("Work"))
    orchestrator.start()

    client.start_orchestration("split-2", "Flow", 1)
    eventually(lambda: client.get_queue_depths().worker_queue == 1, 5)
    assert client.get_status("split-2").status == "Running"
    with pytest.raises(TimeoutError):
        client.wait_for_orchestration("split-2", 400)
    assert ran_on == []
    assert orchestrator.metrics_snapshot().worker_dispatcher_items_fetched == 0

    worker = make_runtime(orchestration_concurrency=0)
    worker.register_activity("Work", lambda ctx, x: ran_on.append("worker") or x + 1)
    worker.start()
    assert client.wait_for_orchestration("split-2", 5_000).output == 2
    assert ran_on == ["worker"]


def test_two_runtimes_split_the_roles_and_complete_workflows_together(make_runtime, client):
    worker_ids: set[str] = set()
    lock = threading.Lock()

    def work(ctx, x):
        with lock:
            worker_ids.add(ctx.worker_id)
        return x * 10

    def fan_out(ctx, n):
        results = yield ctx.all([ctx.schedule_activity("Work", i) for i in range(n)])
        total = sum(r["ok"] for r in results)
        again = yield ctx.schedule_activity("Work", total)
        return again

    orchestrator = make_runtime(worker_concurrency=0)
    orchestrator.register_orchestration("FanOut", fan_out)
    worker = make_runtime(orchestration_concurrency=0, worker_node_id="workers")
    worker.register_activity("Work", work)
    orchestrator.start()
    worker.start()

    for i in range(5):
        client.start_orchestration(f"split-many-{i}", "FanOut", 4)
    for i in range(5):
        result = client.wait_for_orchestration(f"split-many-{i}", 5_000)
        assert result.status == "Completed"
        assert result.output == (0 + 10 + 20 + 30) * 10
    assert worker_ids == {"workers"}
    eventually(lambda: orchestrator.metrics_snapshot().orch_completions == 5, 5)
    assert orchestrator.metrics_snapshot().activity_success == 0
    assert worker.metrics_snapshot().activity_success == 5 * 5
    assert worker.metrics_snapshot().orch_turns == 0


# --- metrics ---------------------------------------------------------------------------------


def test_metrics_snapshot_counts_starts_completions_failures_and_activity_outcomes(
    make_runtime, client
):
    runtime = make_runtime()
    runtime.register_activity("Ok", lambda ctx, x: x)

    def boom(ctx, x):
        raise ValueError(f"boom {x}")

    runtime.register_activity("Boom", boom)

    @runtime.register_orchestration("Good")
    def good(ctx, _):
        a = yield ctx.schedule_activity("Ok", 1)
        b = yield ctx.schedule_activity("Ok", 2)
        return a + b

    @runtime.register_orchestration("Caught")
    def caught(ctx, _):
        try:
            yield ctx.schedule_activity("Boom", 1)
        except Exception as exc:
            return str(exc)

    @runtime.register_orchestration("Bad")
    def bad(ctx, _):
        yield ctx.schedule_activity("Boom", 2)

    before = runtime.metrics_snapshot()
    assert (before.orch_starts, before.orch_completions, before.activity_success) == (0, 0, 0)
    runtime.start()
    client.start_orchestration("m-good", "Good")
    client.start_orchestration("m-caught", "Caught")
    client.start_orchestration("m-bad", "Bad")
    assert client.wait_for_orchestration("m-good", 5_000).output == 3
    assert client.wait_for_orchestration("m-caught", 5_000).output == "boom 1"
    bad_result = client.wait_for_orchestration("m-bad", 5_000)
    assert bad_result.status == "Failed"
    assert bad_result.error == "boom 2"

    def settled():
        s = runtime.metrics_snapshot()
        return s if s.orch_completions + s.orch_failures == 3 else None

    snap = eventually(settled, 5)
    assert snap.orch_starts == 3
    assert snap.orch_completions == 2
    assert snap.orch_failures == 1
    assert snap.orch_application_errors == 1
    assert snap.activity_success == 2
    assert snap.activity_errors == 2
    assert snap.orch_poison == 0
