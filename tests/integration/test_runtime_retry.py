"""``schedule_activity_with_retry`` end to end: attempts, durable backoff timers, per-attempt
``timeout_ms`` and ``total_timeout_ms``."""

from __future__ import annotations

import json
import threading
import time

import pytest

from .support import eventually


class Flaky:
    """Fails the first ``failures`` calls, then returns ``"ok after N"``; records call times."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, ctx, _inp):
        with self._lock:
            self.calls.append(time.monotonic())
            n = len(self.calls)
        if n <= self.failures:
            raise RuntimeError(f"boom {n}")
        return f"ok after {n}"


def _retry_flow(policy):
    def flow(ctx, _):
        return (yield ctx.schedule_activity_with_retry("Flaky", None, policy))

    return flow


def _kinds(client, instance_id):
    return [e.kind for e in client.read_execution_history(instance_id, 1)]


def test_retry_counts_attempts_until_success(make_runtime, client):
    flaky = Flaky(failures=2)
    runtime = make_runtime()
    runtime.register_activity("Flaky", flaky)
    runtime.register_orchestration(
        "Retry", _retry_flow({"max_attempts": 3, "backoff": "fixed", "delay_ms": 50})
    )
    runtime.start()
    client.start_orchestration("retry-ok", "Retry")
    result = client.wait_for_orchestration("retry-ok", 5_000)
    assert result.status == "Completed", result.error
    assert result.output == "ok after 3"
    assert len(flaky.calls) == 3
    kinds = _kinds(client, "retry-ok")
    assert kinds.count("ActivityScheduled") == 3
    assert kinds.count("ActivityFailed") == 2
    assert kinds.count("ActivityCompleted") == 1
    assert kinds.count("TimerCreated") == 2  # one durable backoff timer per retry


def test_retry_gives_up_after_max_attempts_with_the_last_error(make_runtime, client):
    flaky = Flaky(failures=100)
    runtime = make_runtime()
    runtime.register_activity("Flaky", flaky)
    runtime.register_orchestration("Retry", _retry_flow({"max_attempts": 3, "backoff": "none"}))
    runtime.start()
    client.start_orchestration("retry-exhausted", "Retry")
    result = client.wait_for_orchestration("retry-exhausted", 5_000)
    assert result.status == "Failed"
    assert result.error == "boom 3"
    assert len(flaky.calls) == 3
    eventually(lambda: runtime.metrics_snapshot().activity_errors == 3, 5)


@pytest.mark.parametrize(
    ("backoff", "delays_ms"),
    [
        ("exponential", [100, 200, 400]),
        ("linear", [100, 200, 300]),
        ("fixed", [100, 100, 100]),
    ],
)
def test_backoff_delays_are_durable_timers(make_runtime, client, backoff, delays_ms):
    flaky = Flaky(failures=3)
    runtime = make_runtime()
    runtime.register_activity("Flaky", flaky)
    runtime.register_orchestration(
        "Retry", _retry_flow({"max_attempts": 4, "backoff": backoff, "delay_ms": 100})
    )
    runtime.start()
    instance = f"retry-backoff-{backoff}"
    client.start_orchestration(instance, "Retry")
    result = client.wait_for_orchestration(instance, 5_000)
    assert result.output == "ok after 4"

    history = client.read_execution_history(instance, 1)
    timers = [e for e in history if e.kind == "TimerCreated"]
    assert len(timers) == 3
    recorded = [json.loads(t.data)["fire_at_ms"] - t.timestamp_ms for t in timers]
    assert recorded == delays_ms
    gaps = [b - a for a, b in zip(flaky.calls, flaky.calls[1:], strict=False)]
    for gap, delay in zip(gaps, delays_ms, strict=True):
        # An attempt never starts before its backoff timer fired (2 ms for clock granularity).
        assert gap >= delay / 1000 - 0.002, (gaps, delays_ms)
        assert gap < delay / 1000 + 0.5, (gaps, delays_ms)


def test_per_attempt_timeout_fails_without_retrying(make_runtime, client):
    calls: list[float] = []
    cancelled = threading.Event()

    def hangs(ctx, _):
        calls.append(time.monotonic())
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if ctx.is_cancelled():
                cancelled.set()
                return "gave up"
            time.sleep(0.005)
        return "finished"

    runtime = make_runtime()
    runtime.register_activity("Hangs", hangs)

    @runtime.register_orchestration("Timeout")
    def flow(ctx, _):
        try:
            yield ctx.schedule_activity_with_retry(
                "Hangs", None, {"max_attempts": 3, "timeout_ms": 200}
            )
        except Exception as exc:
            return {"caught": str(exc)}
        return "no timeout"

    runtime.start()
    t0 = time.monotonic()
    client.start_orchestration("retry-timeout", "Timeout")
    result = client.wait_for_orchestration("retry-timeout", 5_000)
    elapsed = time.monotonic() - t0
    assert result.status == "Completed"
    assert "timed out" in result.output["caught"]
    assert 0.19 <= elapsed < 1.5
    assert len(calls) == 1, "a timed-out attempt must not be retried"
    assert cancelled.wait(1.0), "the timed-out attempt was not cancelled"
    kinds = _kinds(client, "retry-timeout")
    assert kinds.count("ActivityScheduled") == 1


def test_total_timeout_stops_retrying(make_runtime, client):
    flaky = Flaky(failures=100)
    runtime = make_runtime()
    runtime.register_activity("Flaky", flaky)
    runtime.register_orchestration(
        "Retry",
        _retry_flow(
            {"max_attempts": 10, "backoff": "fixed", "delay_ms": 200, "total_timeout_ms": 500}
        ),
    )
    runtime.start()
    t0 = time.monotonic()
    client.start_orchestration("retry-total", "Retry")
    result = client.wait_for_orchestration("retry-total", 5_000)
    assert result.status == "Failed"
    assert result.error.startswith("boom")
    # Attempts at ~0, ~200 and ~400 ms; the next one would start past the 500 ms budget.
    assert 2 <= len(flaky.calls) <= 3, flaky.calls
    assert time.monotonic() - t0 < 1.5


def test_cancel_during_a_retry_backoff_stops_retrying(make_runtime, client):
    flaky = Flaky(failures=100)
    runtime = make_runtime()
    runtime.register_activity("Flaky", flaky)
    runtime.register_orchestration(
        "Retry", _retry_flow({"max_attempts": 5, "backoff": "fixed", "delay_ms": 60_000})
    )
    runtime.start()
    client.start_orchestration("retry-cancel", "Retry")
    eventually(lambda: "TimerCreated" in _kinds(client, "retry-cancel"), 5)
    client.cancel_instance("retry-cancel", "enough")
    result = client.wait_for_orchestration("retry-cancel", 5_000)
    assert result.status == "Failed"
    assert result.error == "canceled: enough"
    assert len(flaky.calls) == 1
    assert _kinds(client, "retry-cancel").count("ActivityScheduled") == 1


def test_timeout_timer_of_a_finished_attempt_fires_harmlessly(make_runtime, client):
    """The attempt finishes before its 150 ms timeout; that timer still fires later, while the
    orchestration waits on something else, and must simply be ignored."""
    runtime = make_runtime()
    runtime.register_activity("Quick", lambda ctx, x: x)

    @runtime.register_orchestration("EarlyFinish")
    def flow(ctx, _):
        value = yield ctx.schedule_activity_with_retry(
            "Quick", "v", {"max_attempts": 2, "timeout_ms": 150}
        )
        yield ctx.schedule_timer(400)
        after = yield ctx.schedule_activity("Quick", "after")
        return [value, after]

    runtime.start()
    client.start_orchestration("retry-early", "EarlyFinish")
    result = client.wait_for_orchestration("retry-early", 5_000)
    assert result.status == "Completed", result.error
    assert result.output == ["v", "after"]
    assert _kinds(client, "retry-early").count("TimerFired") == 2
