"""``schedule_activity_with_retry``: attempts, durable backoff timers, per-attempt and total
timeouts. Every attempt is its own ``ActivityScheduled`` and every backoff a durable timer."""

import pytest

from duroxide.replay import TurnStatus
from duroxide.testing import (
    Harness,
    activity_done,
    activity_error,
    kinds,
    output_of,
    replay_history,
    scheduled_activities,
    timer_msg,
    timers_of,
)
from duroxide.work_items import ActivityKey


def with_retry(ctx, policy):
    return (yield ctx.schedule_activity_with_retry("Flaky", "payload", policy))


def fail_attempt(h, attempt_id, message, now_ms):
    """Fail the attempt scheduled as ``attempt_id``; return the backoff timer it started."""
    r = h.turn(activity_error(attempt_id, message), now_ms=now_ms)
    return r, timers_of(r)


def test_a_failed_attempt_is_retried_after_a_durable_backoff_timer():
    h = Harness({"O": with_retry}, now_ms=1000)
    r = h.start("O", {"max_attempts": 3, "backoff": "fixed", "delay_ms": 250})
    assert scheduled_activities(r) == [(2, "Flaky", "payload")]

    r, (backoff,) = fail_attempt(h, 2, "try again", now_ms=1100)
    assert r.status is TurnStatus.RUNNING
    assert r.worker_items == []  # nothing runs until the backoff timer fires
    assert backoff.fire_at_ms == 1350

    r = h.turn(backoff, now_ms=1350)
    assert scheduled_activities(r) == [(6, "Flaky", "payload")]

    r = h.turn(activity_done(6, "finally"), now_ms=1400)
    assert output_of(r) == "finally"
    assert kinds(h.history) == [
        "OrchestrationStarted",
        "ActivityScheduled", "ActivityFailed", "TimerCreated", "TimerFired",
        "ActivityScheduled", "ActivityCompleted",
        "OrchestrationCompleted",
    ]  # fmt: skip


def test_after_the_last_attempt_the_last_error_is_raised():
    h = Harness({"O": with_retry})
    h.start("O", {"max_attempts": 2, "backoff": "fixed", "delay_ms": 10})
    _, (backoff,) = fail_attempt(h, 2, "first failure", now_ms=0)
    h.turn(backoff, now_ms=10)

    r = h.turn(activity_error(6, "second failure"), now_ms=20)

    assert r.status is TurnStatus.FAILED
    assert r.error.message == "second failure"
    assert timers_of(r) == []


@pytest.mark.parametrize(
    ("policy", "delays"),
    [
        ({"backoff": "exponential"}, [100, 200, 400]),
        ({"backoff": "exponential", "delay_ms": 50, "multiplier": 3}, [50, 150, 450]),
        ({"backoff": "linear"}, [100, 200, 300]),
        ({"backoff": "fixed", "delay_ms": 70}, [70, 70, 70]),
        ({"backoff": "exponential", "max_delay_ms": 150}, [100, 150, 150]),
    ],
)
def test_backoff_delays_follow_the_policy(policy, delays):
    h = Harness({"O": with_retry})
    r = h.start("O", {"max_attempts": 4, **policy})
    attempt_id, now, seen = 2, 0, []
    for _ in delays:
        now += 1
        _, (backoff,) = fail_attempt(h, attempt_id, "again", now_ms=now)
        seen.append(backoff.fire_at_ms - now)
        now = backoff.fire_at_ms
        r = h.turn(backoff, now_ms=now)
        ((attempt_id, _, _),) = scheduled_activities(r)

    assert seen == delays


def test_backoff_none_retries_in_the_same_turn():
    h = Harness({"O": with_retry})
    h.start("O", {"max_attempts": 2, "backoff": "none"})

    r = h.turn(activity_error(2, "again"))

    assert timers_of(r) == []
    assert scheduled_activities(r) == [(4, "Flaky", "payload")]


def test_a_per_attempt_timeout_cancels_the_attempt_and_fails_without_retrying():
    h = Harness({"O": with_retry}, now_ms=1000)
    r = h.start("O", {"max_attempts": 3, "timeout_ms": 500})
    (timeout,) = timers_of(r)
    assert timeout.fire_at_ms == 1500

    r = h.turn(timeout, now_ms=1500)

    assert r.status is TurnStatus.FAILED
    assert r.error.message == "activity 'Flaky' timed out after 500 ms (attempt 1)"
    assert r.error.kind == "timeout"
    assert r.cancelled_activities == [ActivityKey(instance_id="i", execution_id=1, activity_id=2)]
    assert "ActivityScheduled" not in kinds(r.new_events)  # attempts were left, but no retry


def test_a_timeout_can_be_caught_like_any_activity_failure():
    def orch(ctx, _):
        try:
            yield ctx.schedule_activity_with_retry("Slow", None, {"timeout_ms": 10})
        except Exception as e:
            return f"gave up: {e}"

    h = Harness({"O": orch})
    h.start()

    r = h.turn(timer_msg(3, 10))

    assert output_of(r) == "gave up: activity 'Slow' timed out after 10 ms (attempt 1)"


def test_the_timeout_timer_firing_after_success_changes_nothing():
    def orch(ctx, _):
        result = yield ctx.schedule_activity_with_retry("Quick", None, {"timeout_ms": 500})
        return (yield ctx.wait_for_event("end")) + result

    h = Harness({"O": orch})
    h.start()
    h.turn(activity_done(2, "fast"))

    r = h.turn(timer_msg(3, 500))

    assert r.status is TurnStatus.RUNNING
    assert r.cancelled_activities == [] and r.worker_items == []


def test_total_timeout_stops_retrying_when_the_next_attempt_would_start_too_late():
    policy = {"max_attempts": 10, "backoff": "fixed", "delay_ms": 1000, "total_timeout_ms": 2500}
    h = Harness({"O": with_retry}, now_ms=0)
    h.start("O", policy)
    _, (backoff,) = fail_attempt(h, 2, "first", now_ms=100)  # 100 + 1000 < 2500: retry
    h.turn(backoff, now_ms=1100)

    r, timers = fail_attempt(h, 6, "second", now_ms=1600)  # 1600 + 1000 >= 2500: give up

    assert timers == []
    assert r.status is TurnStatus.FAILED
    assert r.error.message == "second"


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"max_attempts": 0}, "retry policy max_attempts must be >= 1, got 0"),
        ({"backoff": "random"}, "retry policy backoff must be one of"),
        ({"retries": 3}, "unknown retry policy keys: ['retries']"),
        ({"timeout_ms": "5s"}, "retry policy timeout_ms must be an int, got '5s'"),
    ],
)
def test_an_invalid_policy_is_rejected_at_the_call(policy, message):
    def orch(ctx, _):
        try:
            ctx.schedule_activity_with_retry("A", None, policy)
        except (TypeError, ValueError) as e:
            return str(e)

    assert output_of(Harness({"O": orch}).start()).startswith(message)


def test_a_retry_history_replays_and_logs_the_retry_warning_only_once():
    h = Harness({"O": with_retry})
    h.start("O", {"max_attempts": 3, "backoff": "fixed", "delay_ms": 5})
    r, (backoff,) = fail_attempt(h, 2, "boom", now_ms=1)
    assert r.logs == [("warn", "activity 'Flaky' attempt 1 failed, retrying in 5 ms: boom")]

    r = h.turn(backoff, now_ms=6)
    assert r.logs == []  # the failure is replayed: no second warning
    h.turn(activity_done(6, "ok"), now_ms=7)

    assert output_of(replay_history(h.history, {"O": with_retry})) == "ok"


def test_a_retried_activity_can_lose_a_race_during_its_backoff():
    def orch(ctx, _):
        policy = {"max_attempts": 3, "backoff": "fixed", "delay_ms": 10}
        return (
            yield ctx.race(
                ctx.schedule_activity_with_retry("Flaky", 1, policy), ctx.schedule_timer(1000)
            )
        )

    h = Harness({"O": orch})
    h.start()
    h.turn(activity_error(2, "first failure"))  # now waiting on the backoff timer

    r = h.turn(timer_msg(3, 1000))

    assert r.status is TurnStatus.COMPLETED
    assert output_of(r) == {"index": 1, "value": None}
    assert r.worker_items == [] and r.cancelled_activities == []
    replay_history(h.history, {"O": orch})


def test_retried_activities_inside_all_report_their_final_outcome():
    def orch(ctx, _):
        policy = {"max_attempts": 2, "backoff": "none"}
        return (
            yield ctx.all([
                ctx.schedule_activity_with_retry("Flaky", 1, policy),
                ctx.schedule_activity("Steady", 2),
            ])
        )  # fmt: skip

    h = Harness({"O": orch})
    h.start()
    r = h.turn(activity_error(2, "first"), activity_done(3, "steady"))
    assert scheduled_activities(r) == [(6, "Flaky", 1)]

    r = h.turn(activity_error(6, "second"))

    assert output_of(r) == [{"err": "second"}, {"ok": "steady"}]
