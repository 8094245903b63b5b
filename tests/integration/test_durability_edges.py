"""Durability edge cases found in review: each test pins a bug that once existed."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from duroxide import ActivityFailedError, Client, Runtime, RuntimeOptions, SqliteProvider
from duroxide.errors import ProviderError

from .support import eventually


def test_an_event_queued_while_the_start_is_parked_is_kept(make_runtime, client):
    """The node that first sees a start cannot run it (rolling deploy) and parks it; a message
    enqueued meanwhile must reach the orchestration once a node that can run it takes over."""
    old = make_runtime()
    old.register_orchestration("Other", lambda ctx, x: x)
    old.start()
    client.start_orchestration("parked", "Worker")
    eventually(lambda: old.metrics_snapshot().orch_abandoned >= 1, 5)
    client.enqueue_event("parked", "jobs", {"job": 1})
    old.shutdown(1_000)

    def worker(ctx: Any, _: Any) -> Any:
        return (yield ctx.dequeue_event("jobs"))

    new = make_runtime()
    new.register_orchestration("Worker", worker)
    new.start()
    result = client.wait_for_orchestration("parked", 10_000)
    assert (result.status, result.output) == ("Completed", {"job": 1})


def test_a_turn_longer_than_its_lock_is_renewed_not_poisoned(make_runtime, client):
    def slow(ctx: Any, _: Any) -> Any:
        value = yield ctx.schedule_activity("A", 1)
        if not ctx.is_replaying:
            time.sleep(1.0)  # a slow (deterministic) step: 2.5x the lock timeout
        return value

    runtime = make_runtime(orchestrator_lock_timeout_ms=400, max_attempts=2)
    runtime.register_orchestration("Slow", slow)
    runtime.register_activity("A", lambda ctx, x: x)
    runtime.start()
    client.start_orchestration("slow", "Slow")
    result = client.wait_for_orchestration("slow", 10_000)
    assert (result.status, result.output) == ("Completed", 1)
    snapshot = runtime.metrics_snapshot()
    assert snapshot.orch_lock_lost == 0
    assert snapshot.orchestration_lock_renewals >= 1


def test_a_slot_survives_an_exception_whose_str_raises_system_exit(make_runtime, client):
    class Nasty(Exception):
        def __str__(self) -> str:
            raise SystemExit(3)

    def nasty(ctx: Any, _: Any) -> Any:
        raise Nasty

    def orch(ctx: Any, _: Any) -> Any:
        try:
            yield ctx.schedule_activity("Nasty", None)
        except ActivityFailedError as exc:
            return f"caught: {exc}"
        return "not raised"

    runtime = make_runtime(orchestration_concurrency=1, worker_concurrency=1)
    runtime.register_activity("Nasty", nasty)
    runtime.register_orchestration("O", orch)
    runtime.start()
    for i in range(3):  # one slot each: a dead slot would stall the second and third
        client.start_orchestration(f"nasty-{i}", "O")
        result = client.wait_for_orchestration(f"nasty-{i}", 5_000)
        assert result.status == "Completed"
        assert "Nasty" in result.output


class _Wrapped:
    """The runtime's provider, with the calls a subclass defines replaced."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _run_one(
    provider: Any,
    client: Client,
    instance_id: str,
    value: int,
    options: RuntimeOptions,
    activity: Callable[[Any, Any], Any] = lambda ctx, x: x,
    before_shutdown: Callable[[Runtime], None] | None = None,
) -> tuple[Runtime, Any]:
    """Run one orchestration of one activity on its own runtime: the runtime and the result."""
    runtime = Runtime(provider, options)
    runtime.register_activity("A", activity)
    runtime.register_orchestration("O", lambda ctx, x: (yield ctx.schedule_activity("A", x)))
    runtime.start()
    try:
        client.start_orchestration(instance_id, "O", value)
        result = client.wait_for_orchestration(instance_id, 30_000)
        if before_shutdown is not None:
            before_shutdown(runtime)
    finally:
        runtime.shutdown(1_000)
    return runtime, result


class _AckFailures(_Wrapped):
    """The runtime's provider, except that the first ``fail`` batch acks of activities (or of
    turns) fail with ``error`` (nothing of them is written)."""

    def __init__(self, inner: Any, error: ProviderError, fail: int, turns: bool = False) -> None:
        super().__init__(inner)
        self._error = error
        self.left = fail
        self._turns = turns
        self.abandoned_in: list[str] = []  # the thread of each abandon

    def abandon_orchestration_item(self, token: str, **options: Any) -> None:
        self.abandoned_in.append(threading.current_thread().name)
        self._inner.abandon_orchestration_item(token, **options)

    def abandon_work_item(self, token: str, **options: Any) -> None:
        self.abandoned_in.append(threading.current_thread().name)
        self._inner.abandon_work_item(token, **options)

    def _fail(self, acks: Any, commit: Any) -> list[ProviderError | None]:
        if self.left > 0:
            self.left -= 1
            return [self._error] * len(acks)
        return commit(acks)

    def ack_work_items(self, acks: Any) -> list[ProviderError | None]:
        commit = self._inner.ack_work_items
        return commit(acks) if self._turns else self._fail(acks, commit)

    def ack_orchestration_items(self, acks: Any) -> list[ProviderError | None]:
        commit = self._inner.ack_orchestration_items
        return self._fail(acks, commit) if self._turns else commit(acks)


@pytest.mark.parametrize("retryable", [True, False])
def test_an_activity_ack_that_fails_is_retried_or_the_activity_runs_again(
    provider: Any, client: Client, retryable: bool
) -> None:
    """A retryable storage error on an activity's ack is retried (the result is kept, the
    activity ran once); any other error abandons the activity, which runs again."""
    flaky = _AckFailures(provider, ProviderError("ack_work_item", "injected",
                                                 retryable=retryable), fail=2)  # fmt: skip
    runs: list[int] = []
    runtime, result = _run_one(flaky, client, "flaky-ack", 5,
                               RuntimeOptions(dispatcher_poll_interval_ms=50),
                               activity=lambda ctx, x: runs.append(x) or x)  # fmt: skip

    assert (result.status, result.output) == ("Completed", 5)
    assert flaky.left == 0
    assert runs == ([5] if retryable else [5, 5, 5])
    assert runtime.metrics_snapshot().provider_errors >= 2
    # handled off the thread that commits acks (its back-off would hold up every other ack)
    assert flaky.abandoned_in == ([] if retryable else ["duroxide-ack-retry"] * 2)


@pytest.mark.parametrize("retryable", [True, False])
def test_a_turn_whose_ack_fails_is_released_and_runs_again(
    provider: Any, client: Client, retryable: bool
) -> None:
    """A failed turn ack releases the instance at once (never waiting for its lock to expire),
    off the committing thread, and frees its slot: the turn runs again and commits."""
    error = ProviderError("ack_orchestration_item", "injected", retryable=retryable)
    flaky = _AckFailures(provider, error, fail=2, turns=True)

    def no_slot_left_held(runtime: Runtime) -> None:
        assert runtime._orchestrations.loop.wait_idle(time.monotonic() + 10)

    runtime, result = _run_one(flaky, client, "flaky-turn", 6,
                               RuntimeOptions(dispatcher_poll_interval_ms=50,
                                              orchestrator_lock_timeout_ms=60_000),
                               before_shutdown=no_slot_left_held)  # fmt: skip

    assert (result.status, result.output) == ("Completed", 6)
    assert flaky.left == 0
    snapshot = runtime.metrics_snapshot()
    assert snapshot.orch_abandoned >= 2 and snapshot.provider_errors >= 2
    assert flaky.abandoned_in == ["duroxide-ack-failed"] * 2  # not the committing thread


class _SlowAckReturn(_Wrapped):
    """The runtime's provider, except that an activity ack returns only a while after it
    committed (a slow network), and lock renewals are recorded."""

    def __init__(self, inner: Any, delay_s: float) -> None:
        super().__init__(inner)
        self._delay_s = delay_s
        self.acked: set[str] = set()
        self.renewed_after_ack: list[str] = []

    def ack_work_items(self, acks: Any) -> list[ProviderError | None]:
        results = self._inner.ack_work_items(acks)
        self.acked.update(token for token, _ in acks)
        time.sleep(self._delay_s)  # the reply is late: several renewal ticks pass
        return results

    def renew_work_item_lock(self, token: str, lock_timeout_ms: int) -> None:
        if token in self.acked:
            self.renewed_after_ack.append(token)
        self._inner.renew_work_item_lock(token, lock_timeout_ms)


def test_an_activity_lease_is_not_renewed_once_its_ack_is_on_its_way(
    provider: Any, client: Client
) -> None:
    """A renewal landing after the ack committed finds the row gone and reports the lock
    lost (cancelling an activity that is done): the lease stops before the ack is sent."""
    slow = _SlowAckReturn(provider, delay_s=0.8)
    _, result = _run_one(slow, client, "slow-ack", 7,
                         RuntimeOptions(dispatcher_poll_interval_ms=50,
                                        worker_lock_timeout_ms=300))  # fmt: skip

    assert (result.status, result.output) == ("Completed", 7)
    assert slow.acked and slow.renewed_after_ack == []


def _file_runtime(path: Path, **options: Any) -> tuple[SqliteProvider, Runtime, Client]:
    provider = SqliteProvider.open(f"sqlite:{path}")
    options.setdefault("dispatcher_poll_interval_ms", 20)
    return provider, Runtime(provider, RuntimeOptions(**options)), Client(provider)


@pytest.mark.slow
def test_an_undecodable_work_item_is_poisoned_after_max_attempts(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    provider, runtime, client = _file_runtime(db, max_attempts=1)

    def orch(ctx: Any, _: Any) -> Any:
        try:
            yield ctx.schedule_activity("A", 1)
        except ActivityFailedError as exc:
            return str(exc)
        return "ran"

    runtime.register_orchestration("O", orch)
    runtime.register_activity("A", lambda ctx, x: x)
    try:
        client.start_orchestration("corrupt", "O")
        # no runtime yet: corrupt the work item the first turn will enqueue, once it exists
        first = Runtime(provider, RuntimeOptions(worker_concurrency=0,
                                                 dispatcher_poll_interval_ms=20))  # fmt: skip
        first.register_orchestration("O", orch)
        first.start()
        with sqlite3.connect(db) as raw:
            eventually(lambda: raw.execute("SELECT count(*) FROM worker_queue").fetchone()[0], 5)
            raw.execute("UPDATE worker_queue SET payload = '{not json'")
        first.shutdown(1_000)
        runtime.start()
        result = client.wait_for_orchestration("corrupt", 10_000)
        assert result.status == "Completed"
        assert result.output.startswith("poison:") and "undecodable" in result.output
    finally:
        runtime.shutdown(1_000)
        provider.close()


@pytest.mark.slow
def test_an_undecodable_history_event_is_poisoned_after_max_attempts(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    provider, runtime, client = _file_runtime(db, max_attempts=1)

    def orch(ctx: Any, _: Any) -> Any:
        yield ctx.wait_for_event("go")
        return "ok"

    runtime.register_orchestration("O", orch)
    try:
        runtime.start()
        client.start_orchestration("corrupt", "O")
        eventually(lambda: client.get_status("corrupt").status == "Running", 5)
        runtime.shutdown(1_000)
        with sqlite3.connect(db) as raw:
            raw.execute("UPDATE history SET data = '{not json' WHERE event_id = 2")
        provider, runtime, client = _file_runtime(db, max_attempts=1)
        runtime.register_orchestration("O", orch)
        runtime.start()
        client.raise_event("corrupt", "go")
        result = client.wait_for_orchestration("corrupt", 10_000)
        assert (result.status, result.error_category) == ("Failed", "poison")
        assert "undecodable history" in (result.error or "")
        with sqlite3.connect(db) as raw:  # the corrupt row cannot be decoded: read columns
            rows = raw.execute("SELECT event_id, kind FROM history WHERE instance_id = ? "
                               "ORDER BY event_id", ("corrupt",)).fetchall()  # fmt: skip
        assert rows[-1][1] == "OrchestrationFailed"
        assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    finally:
        runtime.shutdown(1_000)
        provider.close()
