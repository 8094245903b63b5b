"""Activity lock renewal and cooperative cancellation (``ctx.is_cancelled()``), including the
cross-process path where the cancelling runtime uses a different provider object on the same
SQLite file and the worker only learns of it when its lock renewal fails; plus instance
cancellation cascading to sub-orchestrations.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from duroxide import Client, Runtime, RuntimeOptions, SqliteProvider

from .support import eventually

#: How quickly a running activity must notice it is no longer wanted.
CANCEL_LATENCY_S = 1.0


class Watch:
    """An activity that runs until it is cancelled (or released, or 5 s pass) and records when
    it noticed the cancellation."""

    def __init__(self) -> None:
        self.runs = 0
        self.started = threading.Event()
        self.release = threading.Event()
        self.cancelled = threading.Event()
        self.cancelled_at: float | None = None
        self.contexts: list[Any] = []

    def __call__(self, ctx: Any, _inp: Any) -> str:
        self.runs += 1
        self.contexts.append(ctx)
        self.started.set()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not self.release.is_set():
            if ctx.is_cancelled():
                self.cancelled_at = time.monotonic()
                self.cancelled.set()
                return "noticed cancellation"
            time.sleep(0.005)
        return "finished"

    def latency_since(self, t0: float, timeout_s: float = 3.0) -> float:
        assert self.cancelled.wait(timeout_s), "the activity never saw ctx.is_cancelled()"
        assert self.cancelled_at is not None
        return self.cancelled_at - t0


# --- lock renewal ----------------------------------------------------------------------------


def test_long_activity_keeps_its_lock_and_runs_once(make_runtime, client):
    runs: list[float] = []

    def long_running(ctx, _):
        runs.append(time.monotonic())
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            time.sleep(0.02)
        return len(runs)

    runtime = make_runtime(worker_lock_timeout_ms=600, worker_concurrency=4)
    runtime.register_activity("Long", long_running)

    @runtime.register_orchestration("LongFlow")
    def flow(ctx, _):
        return (yield ctx.schedule_activity("Long", None))

    runtime.start()
    client.start_orchestration("renew", "LongFlow")
    result = client.wait_for_orchestration("renew", 5_000)
    assert result.status == "Completed", result.error
    assert result.output == 1
    assert len(runs) == 1, "the activity was re-executed while it was still running"
    snap = runtime.metrics_snapshot()
    assert snap.activity_lock_renewals >= 3
    assert snap.activity_lock_lost == 0


# --- cooperative cancellation (same provider object) -----------------------------------------


def test_activity_that_lost_a_race_to_a_timer_sees_cancellation(make_runtime, client):
    watch = Watch()
    runtime = make_runtime()
    runtime.register_activity("Watch", watch)

    @runtime.register_orchestration("RaceTimer")
    def flow(ctx, _):
        return (yield ctx.race(ctx.schedule_activity("Watch", None), ctx.schedule_timer(200)))

    runtime.start()
    client.start_orchestration("cancel-race", "RaceTimer")
    assert watch.started.wait(5)
    result = client.wait_for_orchestration("cancel-race", 5_000)
    done_at = time.monotonic()
    assert result.output == {"index": 1, "value": None}
    assert watch.latency_since(done_at) < CANCEL_LATENCY_S
    eventually(lambda: runtime.metrics_snapshot().activity_cancelled == 1, 5)
    kinds = [e.kind for e in client.read_execution_history("cancel-race", 1)]
    assert "ActivityCancelRequested" in kinds
    assert "ActivityCompleted" not in kinds


def test_cancel_instance_cancels_its_running_activity(make_runtime, client):
    watch = Watch()
    runtime = make_runtime()
    runtime.register_activity("Watch", watch)

    @runtime.register_orchestration("Cancellable")
    def flow(ctx, _):
        return (yield ctx.schedule_activity("Watch", None))

    runtime.start()
    client.start_orchestration("cancel-inst", "Cancellable")
    assert watch.started.wait(5)
    t0 = time.monotonic()
    client.cancel_instance("cancel-inst", "user asked")
    assert watch.latency_since(t0) < CANCEL_LATENCY_S
    result = client.wait_for_orchestration("cancel-inst", 5_000)
    assert result.status == "Failed"
    assert result.error == "canceled: user asked"
    assert result.error_category == "application"


def test_orchestration_completing_cancels_its_outstanding_activity(make_runtime, client):
    watch = Watch()
    runtime = make_runtime()
    runtime.register_activity("Watch", watch)
    runtime.register_activity("Quick", lambda ctx, x: x)

    @runtime.register_orchestration("FastWins")
    def flow(ctx, _):
        winner = yield ctx.race(
            ctx.schedule_activity("Watch", None), ctx.schedule_activity("Quick", "fast")
        )
        return winner

    runtime.start()
    client.start_orchestration("cancel-done", "FastWins")
    result = client.wait_for_orchestration("cancel-done", 5_000)
    done_at = time.monotonic()
    assert result.output == {"index": 1, "value": "fast"}
    assert watch.started.wait(5)
    assert watch.latency_since(done_at) < CANCEL_LATENCY_S


def test_orchestration_failing_cancels_its_outstanding_activity(make_runtime, client):
    """The instance fails while its activity runs: an incompatible code change is deployed (a
    new orchestrator runtime replays the old history with the new code -> nondeterminism). The
    activity the failed instance will never collect is cancelled."""
    watch = Watch()
    worker = make_runtime(orchestration_concurrency=0)
    worker.register_activity("Watch", watch)
    worker.register_activity("Other", lambda ctx, x: x)

    def old_code(ctx, _):
        return (yield ctx.schedule_activity("Watch", None))

    def new_code(ctx, _):
        return (yield ctx.schedule_activity("Other", None))

    old = make_runtime(worker_concurrency=0)
    old.register_orchestration("Changes", old_code)
    worker.start()
    old.start()
    client.start_orchestration("cancel-failed", "Changes")
    assert watch.started.wait(5)
    old.shutdown(1_000)

    new = make_runtime(worker_concurrency=0)
    new.register_orchestration("Changes", new_code)
    new.start()
    t0 = time.monotonic()
    client.raise_event("cancel-failed", "poke", None)  # the new runtime replays the history
    result = client.wait_for_orchestration("cancel-failed", 5_000)
    assert result.status == "Failed"
    assert result.error_category == "configuration"
    assert "nondetermin" in result.error
    assert watch.latency_since(t0) < CANCEL_LATENCY_S
    eventually(lambda: worker.metrics_snapshot().activity_cancelled == 1, 5)


def test_orchestration_raising_cancels_the_race_loser(make_runtime, client):
    watch = Watch()
    runtime = make_runtime()
    runtime.register_activity("Watch", watch)

    def boom(ctx, _):
        raise RuntimeError("kaput")

    runtime.register_activity("Boom", boom)

    @runtime.register_orchestration("BoomWins")
    def flow(ctx, _):
        yield ctx.race(ctx.schedule_activity("Watch", None), ctx.schedule_activity("Boom", None))

    runtime.start()
    client.start_orchestration("cancel-boom", "BoomWins")
    result = client.wait_for_orchestration("cancel-boom", 5_000)
    done_at = time.monotonic()
    assert result.status == "Failed"
    assert result.error == "kaput"
    assert watch.started.wait(5)
    assert watch.latency_since(done_at) < CANCEL_LATENCY_S


# --- cooperative cancellation across provider objects (renewal failure) ----------------------


class _TwoProviders:
    """A worker runtime and an orchestrator runtime on two provider objects opening one file."""

    def __init__(self, tmp_path: Any, worker_lock_timeout_ms: int) -> None:
        url = f"sqlite:{tmp_path}/db.sqlite"
        self.worker_side = SqliteProvider.open(url)
        self.orchestrator_side = SqliteProvider.open(url)
        self.client = Client(self.orchestrator_side)
        self.watch = Watch()
        self.worker = Runtime(
            self.worker_side,
            RuntimeOptions(
                orchestration_concurrency=0,
                worker_lock_timeout_ms=worker_lock_timeout_ms,
                dispatcher_poll_interval_ms=50,
            ),
        )
        self.worker.register_activity("Watch", self.watch)
        self.orchestrator = Runtime(
            self.orchestrator_side,
            RuntimeOptions(worker_concurrency=0, dispatcher_poll_interval_ms=50),
        )
        self.orchestrator.register_orchestration("Remote", _remote_flow)

    def close(self) -> None:
        self.watch.release.set()
        self.worker.shutdown(500)
        self.orchestrator.shutdown(500)
        self.worker_side.close()
        self.orchestrator_side.close()


def _remote_flow(ctx, _):
    return (yield ctx.schedule_activity("Watch", None))


def test_cancellation_by_a_runtime_on_another_provider_object_is_noticed(tmp_path):
    """Worker and orchestrator each open the same database file (as two processes would), so
    the in-process cancel notification cannot reach the worker: it notices at its next lock
    renewal (every min(1 s, lock/3)) that the work item was deleted."""
    pair = _TwoProviders(tmp_path, worker_lock_timeout_ms=3_000)
    client, watch = pair.client, pair.watch
    try:
        pair.worker.start()
        pair.orchestrator.start()
        client.start_orchestration("cancel-remote", "Remote")
        assert watch.started.wait(5)
        # Cancel once the lease keeper is renewing this activity (steady state).
        eventually(lambda: pair.worker.metrics_snapshot().activity_lock_renewals >= 1, 5)
        t0 = time.monotonic()
        client.cancel_instance("cancel-remote", "from elsewhere")
        result = client.wait_for_orchestration("cancel-remote", 5_000)
        assert result.status == "Failed"
        assert result.error == "canceled: from elsewhere"
        assert watch.latency_since(t0) < CANCEL_LATENCY_S + 0.3  # one renewal period + slack
        eventually(lambda: pair.worker.metrics_snapshot().activity_cancelled == 1, 5)
        assert watch.runs == 1
    finally:
        pair.close()


def test_cross_process_cancellation_of_a_just_started_activity_within_a_second(tmp_path):
    """Regression: the lease keeper used to look at activities only on its own 1 s ticks, so
    an activity claimed between two ticks was first renewed (and its cancellation noticed)
    almost 2 s after its claim."""
    pair = _TwoProviders(tmp_path, worker_lock_timeout_ms=3_000)
    client, watch = pair.client, pair.watch
    try:
        pair.orchestrator.start()
        pair.worker.start()
        # Setup, not an assertion: let the worker's lease keeper start ticking before the
        # activity is claimed, so the claim falls between two ticks.
        time.sleep(0.3)
        client.start_orchestration("cancel-remote-early", "Remote")
        assert watch.started.wait(5)
        t0 = time.monotonic()
        client.cancel_instance("cancel-remote-early", "right away")
        assert client.wait_for_orchestration("cancel-remote-early", 5_000).status == "Failed"
        assert watch.latency_since(t0) < CANCEL_LATENCY_S + 0.3
    finally:
        pair.close()


# --- cancelling instances --------------------------------------------------------------------


def test_cancel_cascades_to_sub_orchestrations_and_their_activities(make_runtime, client):
    watch = Watch()
    runtime = make_runtime()
    runtime.register_activity("Watch", watch)

    @runtime.register_orchestration("Parent")
    def parent(ctx, _):
        return (yield ctx.schedule_sub_orchestration_with_id("Child", "cascade-child", None))

    @runtime.register_orchestration("Child")
    def child(ctx, _):
        return (
            yield ctx.all(
                [
                    ctx.schedule_sub_orchestration_with_id("Grandchild", "cascade-grand", None),
                    ctx.schedule_activity("Watch", None),
                ]
            )
        )

    @runtime.register_orchestration("Grandchild")
    def grandchild(ctx, _):
        return (yield ctx.wait_for_event("never"))

    runtime.start()
    client.start_orchestration("cascade", "Parent")
    eventually(lambda: client.get_status("cascade-grand").status == "Running", 5)
    assert watch.started.wait(5)

    t0 = time.monotonic()
    client.cancel_instance("cascade", "stop all")
    parent_result = client.wait_for_orchestration("cascade", 5_000)
    assert parent_result.status == "Failed"
    assert parent_result.error == "canceled: stop all"
    for instance in ("cascade-child", "cascade-grand"):
        result = client.wait_for_orchestration(instance, 5_000)
        assert result.status == "Failed", instance
        assert result.error.startswith("canceled"), result.error
        assert "stop all" in result.error
    assert watch.latency_since(t0) < 2 * CANCEL_LATENCY_S
    tree = client.get_instance_tree("cascade")
    assert sorted(tree.all_ids) == ["cascade", "cascade-child", "cascade-grand"]


def test_cancelling_a_completed_instance_leaves_it_completed(make_runtime, client):
    runtime = make_runtime()

    @runtime.register_orchestration("Done")
    def done(ctx, inp):
        return inp * 2

    runtime.start()
    client.start_orchestration("cancel-late", "Done", 21)
    assert client.wait_for_orchestration("cancel-late", 5_000).output == 42
    events_before = len(client.read_execution_history("cancel-late", 1))

    client.cancel_instance("cancel-late", "too late")
    # The cancel message is consumed (and dropped) by a turn.
    eventually(lambda: client.get_queue_depths().orchestrator_queue == 0, 5)
    result = client.get_status("cancel-late")
    assert result.status == "Completed"
    assert result.output == 42
    assert result.error is None
    assert len(client.read_execution_history("cancel-late", 1)) == events_before


@pytest.mark.parametrize("reason", ["", "with reason"])
def test_cancel_reason_shapes_the_error(make_runtime, client, reason):
    runtime = make_runtime()

    @runtime.register_orchestration("Waits")
    def waits(ctx, _):
        return (yield ctx.wait_for_event("go"))

    runtime.start()
    client.start_orchestration("cancel-reason", "Waits")
    eventually(lambda: client.get_status("cancel-reason").status == "Running", 5)
    client.cancel_instance("cancel-reason", reason)
    result = client.wait_for_orchestration("cancel-reason", 5_000)
    assert result.status == "Failed"
    assert result.error == (f"canceled: {reason}" if reason else "canceled")


def test_force_deleting_an_instance_cancels_its_running_activity(make_runtime, client):
    watch = Watch()
    runtime = make_runtime()
    runtime.register_activity("Watch", watch)

    @runtime.register_orchestration("Deletable")
    def flow(ctx, _):
        return (yield ctx.schedule_activity("Watch", None))

    runtime.start()
    client.start_orchestration("cancel-deleted", "Deletable")
    assert watch.started.wait(5)
    t0 = time.monotonic()
    assert client.delete_instance("cancel-deleted", True).instances_deleted == 1
    assert watch.latency_since(t0) < CANCEL_LATENCY_S
    # The activity's late result is refused: it can neither resurrect the instance nor leave
    # a stray completion message behind.
    eventually(lambda: runtime.metrics_snapshot().activity_cancelled == 1, 5)
    assert client.get_status("cancel-deleted").status == "NotFound"
    assert client.get_queue_depths().orchestrator_queue == 0
    assert client.list_all_instances() == []
