"""``ctx.all`` and ``ctx.race`` over every task type, winners, and what happens to race losers.

Each task kind below is made at a position ``p`` with its own name, so the completion message of
a task is unambiguous. In ``all``/``race`` the tasks' decisions are recorded in task order, so with
the start at event 1 the task at position ``p`` is event ``2 + p``.
"""

import pytest

from duroxide.errors import TaskFailedError
from duroxide.history import (
    ActivityCancelRequested,
    ExternalSubscribedCancelled,
    QueueSubscriptionCancelled,
    SubOrchestrationCancelRequested,
)
from duroxide.replay import TurnStatus
from duroxide.testing import (
    Harness,
    activity_done,
    activity_error,
    enqueue_msg,
    kinds,
    output_of,
    raise_msg,
    replay_history,
    scheduled_activities,
    sub_done,
    sub_error,
    timer_msg,
)
from duroxide.work_items import ActivityKey, CancelRequested, OutboundMessage

KINDS = ["activity", "timer", "event", "queue", "sub"]


def make_task(ctx, kind, p):
    if kind == "activity":
        return ctx.schedule_activity(f"Act{p}", p)
    if kind == "timer":
        return ctx.schedule_timer(1000 * (p + 1))
    if kind == "event":
        return ctx.wait_for_event(f"event{p}")
    if kind == "queue":
        return ctx.dequeue_event(f"queue{p}")
    assert kind == "sub"
    return ctx.schedule_sub_orchestration(f"Child{p}", p)


def completion(kind, p, value):
    """The message that completes the task of ``kind`` at position ``p`` (event ``2 + p``)."""
    eid = 2 + p
    return {
        "activity": lambda: activity_done(eid, value),
        "timer": lambda: timer_msg(eid, 1000 * (p + 1)),
        "event": lambda: raise_msg(f"event{p}", value),
        "queue": lambda: enqueue_msg(f"queue{p}", value),
        "sub": lambda: sub_done(eid, value),
    }[kind]()


def result_value(kind, value):
    return None if kind == "timer" else value


# --- all -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_all_waits_for_every_task_of_a_kind_and_returns_results_in_task_order(kind):
    def orch(ctx, _):
        return (yield ctx.all([make_task(ctx, kind, 0), make_task(ctx, kind, 1)]))

    h = Harness({"O": orch})
    h.start()

    r = h.turn(completion(kind, 1, "second"))  # the later task finishes first
    assert r.status is TurnStatus.RUNNING
    assert r.worker_items == []

    r = h.turn(completion(kind, 0, "first"))
    assert r.status is TurnStatus.COMPLETED
    assert output_of(r) == [
        {"ok": result_value(kind, "first")},
        {"ok": result_value(kind, "second")},
    ]


def test_all_over_mixed_task_types_resolves_when_the_last_one_completes():
    def orch(ctx, _):
        return (yield ctx.all([make_task(ctx, kind, p) for p, kind in enumerate(KINDS)]))

    h = Harness({"O": orch})
    r = h.start()
    assert kinds(r.new_events) == [
        "OrchestrationStarted", "ActivityScheduled", "TimerCreated", "ExternalSubscribed",
        "QueueSubscribed", "SubOrchestrationScheduled",
    ]  # fmt: skip

    assert h.turn(completion("sub", 4, "s"), completion("queue", 3, "q")).status == "running"
    assert h.turn(completion("event", 2, "e"), completion("timer", 1, None)).status == "running"
    r = h.turn(completion("activity", 0, "a"))

    assert output_of(r) == [{"ok": "a"}, {"ok": None}, {"ok": "e"}, {"ok": "q"}, {"ok": "s"}]


def test_all_reports_failures_as_err_entries_without_raising():
    def orch(ctx, _):
        return (
            yield ctx.all([
                ctx.schedule_activity("Ok", 1),
                ctx.schedule_activity("Bad", 2),
                ctx.schedule_sub_orchestration("Child", 3),
            ])
        )  # fmt: skip

    h = Harness({"O": orch})
    h.start()

    r = h.turn(activity_done(2, "fine"), activity_error(3, "boom"), sub_error(4, "child broke"))

    assert r.status is TurnStatus.COMPLETED
    assert output_of(r) == [{"ok": "fine"}, {"err": "boom"}, {"err": "child broke"}]


def test_all_typed_returns_plain_values():
    def orch(ctx, _):
        return (yield ctx.all_typed([ctx.schedule_activity("A", 1), ctx.wait_for_event("e")]))

    h = Harness({"O": orch})
    h.start()

    r = h.turn(raise_msg("e", {"approved": True}), activity_done(2, 10))

    assert output_of(r) == [10, {"approved": True}]


def test_all_typed_unwraps_values_and_keeps_failures_as_err_entries():
    """The reference SDK's shape: ``[value, {"err": message}, …]`` in task order."""

    def orch(ctx, _):
        return (yield ctx.all_typed([ctx.schedule_activity("A", 1), ctx.schedule_activity("B", 2)]))

    h = Harness({"O": orch})
    h.start()

    r = h.turn(activity_error(3, "b failed"), activity_done(2, {"a": 1}))

    assert output_of(r) == [{"a": 1}, {"err": "b failed"}]


def test_all_of_no_tasks_resolves_at_once():
    def orch(ctx, _):
        return (yield ctx.all([]))

    assert output_of(Harness({"O": orch}).start()) == []


# --- race: winner and loser of every kind --------------------------------------------------------


def race_orch(loser_kind, winner_kind):
    def orch(ctx, _):
        result = yield ctx.race(make_task(ctx, loser_kind, 0), make_task(ctx, winner_kind, 1))
        after = yield ctx.wait_for_event("done")  # keep the instance running afterwards
        return [result, after]

    return orch


def assert_loser_cancelled(kind, r):
    """The loser is the task at position 0, event 2."""
    if kind == "activity":
        assert r.cancelled_activities == [
            ActivityKey(instance_id="i", execution_id=1, activity_id=2)
        ]
        assert [type(e) for e in r.new_events if e.BREADCRUMB] == [ActivityCancelRequested]
    elif kind == "sub":
        cancel = CancelRequested(reason="parent no longer needs the result")
        assert OutboundMessage(instance_id="i::sub::2", message=cancel) in r.orchestrator_items
        assert [type(e) for e in r.new_events if e.BREADCRUMB] == [SubOrchestrationCancelRequested]
    elif kind == "event":
        assert [type(e) for e in r.new_events if e.BREADCRUMB] == [ExternalSubscribedCancelled]
    elif kind == "queue":
        assert [type(e) for e in r.new_events if e.BREADCRUMB] == [QueueSubscriptionCancelled]
    else:
        assert kind == "timer"  # a losing timer is just ignored
        assert [e for e in r.new_events if e.BREADCRUMB] == []
    if kind != "activity":
        assert r.cancelled_activities == []
    assert all(e.source_event_id == 2 for e in r.new_events if e.BREADCRUMB)


@pytest.mark.parametrize("loser", KINDS)
@pytest.mark.parametrize("winner", KINDS)
def test_race_returns_the_winner_and_cancels_the_loser(winner, loser):
    h = Harness({"O": race_orch(loser, winner)})
    h.start()

    r = h.turn(completion(winner, 1, "won"))

    assert r.status is TurnStatus.RUNNING
    assert_loser_cancelled(loser, r)
    r = h.turn(raise_msg("done", "bye"))
    assert output_of(r) == [{"index": 1, "value": result_value(winner, "won")}, "bye"]


@pytest.mark.parametrize("loser", KINDS)
def test_replaying_a_race_does_not_cancel_the_loser_again(loser):
    h = Harness({"O": race_orch(loser, "timer")})
    h.start()
    h.turn(completion("timer", 1, None))

    r = h.turn(raise_msg("done", "bye"))  # replays the race

    assert r.status is TurnStatus.COMPLETED
    assert kinds(r.new_events) == ["ExternalEvent", "OrchestrationCompleted"]
    assert r.cancelled_activities == []
    assert not any(isinstance(m.message, CancelRequested) for m in r.orchestrator_items)


def test_winner_at_index_zero_is_reported_as_index_zero():
    def orch(ctx, _):
        return (yield ctx.race(ctx.schedule_activity("Fast", 1), ctx.schedule_timer(5000)))

    h = Harness({"O": orch})
    h.start()

    r = h.turn(activity_done(2, "quick"))

    assert output_of(r) == {"index": 0, "value": "quick"}


def test_race_typed_has_the_same_shape():
    def orch(ctx, _):
        return (yield ctx.race_typed(ctx.wait_for_event("a"), ctx.wait_for_event("b")))

    h = Harness({"O": orch})
    h.start()

    assert output_of(h.turn(raise_msg("b", [1, 2]))) == {"index": 1, "value": [1, 2]}


def test_a_failing_winner_raises_in_the_orchestration():
    def orch(ctx, _):
        try:
            yield ctx.race(ctx.schedule_activity("Flaky", 1), ctx.schedule_timer(5000))
        except TaskFailedError as e:
            return f"caught: {e}"

    h = Harness({"O": orch})
    h.start()

    assert output_of(h.turn(activity_error(2, "flaked"))) == "caught: flaked"


def test_a_late_completion_of_a_cancelled_activity_is_dropped():
    h = Harness({"O": race_orch("activity", "timer")})
    h.start()
    h.turn(completion("timer", 1, None))

    r = h.turn(activity_done(2, "too late"))

    assert r.status is TurnStatus.DROPPED
    assert r.new_events == []
    assert r.dropped_messages == 1
    assert "ActivityCompleted" not in kinds(h.history)


def test_a_late_timer_of_a_lost_race_is_recorded_but_wakes_nothing():
    h = Harness({"O": race_orch("timer", "activity")})
    h.start()
    h.turn(completion("activity", 1, "won"))

    r = h.turn(timer_msg(2, 1000))

    assert r.status is TurnStatus.RUNNING
    assert kinds(r.new_events) == ["TimerFired"]
    assert r.worker_items == [] and r.orchestrator_items == []


@pytest.mark.parametrize("kind", ["event", "queue"])
def test_after_a_lost_wait_the_next_message_goes_to_the_next_waiter(kind):
    def orch(ctx, _):
        first = yield ctx.race(make_task(ctx, kind, 0), ctx.schedule_timer(10))
        second = yield make_task(ctx, kind, 0)  # the same name as the cancelled one
        return [first, second]

    h = Harness({"O": orch})
    h.start()
    h.turn(timer_msg(3, 10))

    r = h.turn(completion(kind, 0, "for the second wait"))

    assert output_of(r) == [{"index": 1, "value": None}, "for the second wait"]


def test_an_activity_losing_at_once_to_a_buffered_event_is_never_enqueued():
    def orch(ctx, _):
        yield ctx.schedule_timer(10)
        return (yield ctx.race(ctx.schedule_activity("Slow", 1), ctx.wait_for_event("go")))

    h = Harness({"O": orch})
    h.start()
    h.turn(raise_msg("go", "early"))  # buffered: nobody waits yet

    r = h.turn(timer_msg(2, 10))

    assert output_of(r) == {"index": 1, "value": "early"}
    assert r.worker_items == []  # scheduled and cancelled in the same turn
    assert r.cancelled_activities == []
    assert "ActivityCancelRequested" in kinds(r.new_events)


@pytest.mark.parametrize(("first_queue", "winner_index"), [("high", 1), ("low", 0)])
def test_with_two_buffered_messages_the_earlier_arrival_wins_and_the_other_stays_queued(
    first_queue, winner_index
):
    def orch(ctx, _):
        yield ctx.schedule_timer(10)
        first = yield ctx.race(ctx.dequeue_event("low"), ctx.dequeue_event("high"))
        other = "low" if first["index"] == 1 else "high"
        rest = yield ctx.dequeue_event(other)
        return [first, rest]

    h = Harness({"O": orch})
    h.start()
    second_queue = "low" if first_queue == "high" else "high"
    h.turn(enqueue_msg(first_queue, f"{first_queue}-msg"), enqueue_msg(second_queue, "later"))

    r = h.turn(timer_msg(2, 10))

    assert r.status is TurnStatus.COMPLETED  # the loser's message was not lost
    assert output_of(r) == [{"index": winner_index, "value": f"{first_queue}-msg"}, "later"]
    assert "QueueSubscriptionCancelled" in kinds(r.new_events)
    replay_history(h.history, {"O": orch})


# --- race: deterministic winners -----------------------------------------------------------------


def race_then_act(ctx, _):
    won = yield ctx.race(ctx.schedule_activity("A", 1), ctx.schedule_activity("B", 2))
    follow_up = yield ctx.schedule_activity("After", won["index"])
    return [won, follow_up]


@pytest.mark.parametrize(("first", "expected_index"), [(2, 0), (3, 1)])
def test_two_completions_in_one_turn_the_first_in_message_order_wins(first, expected_index):
    h = Harness({"O": race_then_act})
    h.start()
    second = 5 - first

    r = h.turn(activity_done(first, f"from {first}"), activity_done(second, f"from {second}"))

    assert scheduled_activities(r) == [(6, "After", expected_index)]
    assert r.cancelled_activities == []  # the loser had already completed


@pytest.mark.parametrize("first", [2, 3])
def test_replaying_the_history_picks_the_same_winner(first):
    h = Harness({"O": race_then_act})
    h.start()
    h.turn(activity_done(first, "first"), activity_done(5 - first, "second"))

    r = h.turn(activity_done(6, "ok"))  # replays the race from history

    assert r.status is TurnStatus.COMPLETED
    assert output_of(r) == [{"index": first - 2, "value": "first"}, "ok"]
    replay_history(h.history, {"O": race_then_act})
