"""Which messages a turn records and which it drops, cancellation, and missing handlers."""

from duroxide.errors import ErrorCategory
from duroxide.registry import Registry
from duroxide.replay import TurnInput, TurnStatus, run_turn
from duroxide.testing import (
    Harness,
    activity_done,
    as_handler_lookup,
    cancel_msg,
    enqueue_msg,
    kinds,
    output_of,
    raise_msg,
    start_msg,
    sub_done,
    timer_created,
    timer_msg,
)
from duroxide.work_items import ActivityKey, CancelRequested, OutboundMessage


def two_steps(ctx, _):
    a = yield ctx.schedule_activity("A", None)
    b = yield ctx.schedule_activity("B", None)
    return [a, b]


# --- duplicates and stale messages ---------------------------------------------------------------


def test_a_duplicate_completion_in_the_same_turn_is_recorded_once():
    h = Harness({"O": two_steps})
    h.start()

    r = h.turn(activity_done(2, "a"), activity_done(2, "a again"))

    assert r.dropped_messages == 1
    assert kinds(r.new_events) == ["ActivityCompleted", "ActivityScheduled"]
    assert h.history[2].result == '"a"'


def test_a_completion_delivered_again_in_a_later_turn_is_dropped():
    h = Harness({"O": two_steps})
    h.start()
    h.turn(activity_done(2, "a"))

    r = h.turn(activity_done(2, "redelivered"))

    assert r.status is TurnStatus.DROPPED
    assert (r.new_events, r.worker_items, r.dropped_messages) == ([], [], 1)


def test_a_second_start_of_a_running_instance_is_dropped():
    h = Harness({"O": two_steps})
    h.start("O", "first")

    r = h.turn(start_msg("O", "second"))

    assert r.status is TurnStatus.DROPPED
    assert (r.new_events, r.dropped_messages) == ([], 1)
    assert h.history[0].input == '"first"'


def test_messages_for_an_instance_that_was_never_started_are_dropped():
    h = Harness({"O": two_steps})

    r = h.turn(activity_done(2), raise_msg("e"), enqueue_msg("q"), cancel_msg())

    assert r.status is TurnStatus.DROPPED
    assert r.dropped_messages == 4
    assert h.history == []


def test_messages_for_a_finished_instance_are_dropped():
    h = Harness({"O": two_steps})
    h.start()
    h.turn(activity_done(2))
    assert h.turn(activity_done(4)).status is TurnStatus.COMPLETED

    r = h.turn(raise_msg("late"), start_msg(), activity_done(4))

    assert r.status is TurnStatus.DROPPED
    assert r.dropped_messages == 3
    assert kinds(h.history)[-1] == "OrchestrationCompleted"


def test_only_the_new_events_of_a_turn_are_returned():
    h = Harness({"O": two_steps})
    h.start()
    before = list(h.history)

    r = h.turn(activity_done(2))

    assert h.history[: len(before)] == before
    assert [e.event_id for e in r.new_events] == [3, 4]


# --- cancellation --------------------------------------------------------------------------------


def fan_out(ctx, _):
    return (
        yield ctx.all([
            ctx.schedule_activity("Work", 1),
            ctx.schedule_sub_orchestration_with_id("Child", "child-1", None),
            ctx.schedule_timer(60_000),
        ])
    )  # fmt: skip


def test_cancel_fails_the_instance_with_the_reason():
    h = Harness({"O": fan_out})
    h.start()

    r = h.turn(cancel_msg("user asked"))

    assert r.status is TurnStatus.FAILED
    assert r.error.message == "canceled: user asked"
    assert r.error.category is ErrorCategory.APPLICATION
    assert r.error.kind == "cancelled"
    assert kinds(r.new_events) == ["OrchestrationCancelRequested", "OrchestrationFailed"]


def test_cancel_without_a_reason_says_canceled():
    h = Harness({"O": fan_out})
    h.start()

    assert h.turn(cancel_msg()).error.message == "canceled"


def test_cancel_cancels_outstanding_activities_and_cascades_to_children():
    h = Harness({"O": fan_out})
    h.start()

    r = h.turn(cancel_msg("shutdown"))

    assert r.cancelled_activities == [ActivityKey(instance_id="i", execution_id=1, activity_id=2)]
    cascade = CancelRequested(reason="parent canceled: shutdown")
    assert r.orchestrator_items == [OutboundMessage(instance_id="child-1", message=cascade)]


def test_work_that_already_finished_is_not_cancelled():
    h = Harness({"O": fan_out})
    h.start()
    h.turn(activity_done(2), sub_done(3))

    r = h.turn(cancel_msg())

    assert r.cancelled_activities == []
    assert r.orchestrator_items == []


def test_a_cancelled_child_reports_the_failure_to_its_parent():
    h = Harness({"Child": two_steps}, instance_id="child-1")
    h.turn(start_msg("Child", parent_instance_id="p", parent_execution_id=1, parent_event_id=3))

    r = h.turn(cancel_msg("parent canceled: shutdown"))

    ((target, message),) = [(m.instance_id, m.message) for m in r.orchestrator_items]
    assert (target, message.kind, message.event_id) == ("p", "SubOrchFailed", 3)
    assert message.error.message == "canceled: parent canceled: shutdown"


def test_a_cancel_arriving_with_the_last_completion_comes_too_late():
    h = Harness({"O": two_steps})
    h.start()
    h.turn(activity_done(2, "a"))

    r = h.turn(activity_done(4, "b"), cancel_msg("too late"))

    assert r.status is TurnStatus.COMPLETED
    assert output_of(r) == ["a", "b"]


def test_a_second_cancel_in_the_same_turn_is_dropped():
    h = Harness({"O": fan_out})
    h.start()

    r = h.turn(cancel_msg("first"), cancel_msg("second"))

    assert r.error.message == "canceled: first"
    assert r.dropped_messages == 1


# --- handlers and versions -----------------------------------------------------------------------


def test_an_unregistered_orchestration_is_reported_not_failed():
    h = Harness({"O": two_steps})

    r = h.start("Missing", 1)

    assert r.status is TurnStatus.UNREGISTERED
    assert r.missing_handler == ("Missing", None)
    assert h.history == []  # the start stays queued for a node that has the handler


def test_an_unregistered_pinned_version_is_reported():
    h = Harness({"O": two_steps})

    r = h.start("O", version="9.0.0")

    assert r.status is TurnStatus.UNREGISTERED
    assert r.missing_handler == ("O", "9.0.0")


def test_a_start_without_a_version_runs_the_latest_and_replay_keeps_the_recorded_one():
    def v1(ctx, _):
        yield ctx.wait_for_event("go")
        return "v1"

    def v2(ctx, _):
        yield ctx.wait_for_event("go")
        return "v2"

    registry = Registry()
    registry.add_orchestration("O", v1, "1.0.0")
    h = Harness(registry)
    assert h.start().orchestration_version == "1.0.0"

    registry.add_orchestration("O", v2, "1.1.0")  # deployed while the instance runs
    r = h.turn(raise_msg("go"))

    assert output_of(r) == "v1"
    assert r.orchestration_version == "1.0.0"


def test_a_history_that_does_not_begin_with_a_start_is_an_engine_error_not_an_exception():
    r = run_turn(TurnInput(
        instance_id="i", execution_id=1, history=[timer_created(1, 0)], messages=[timer_msg(1)],
        now_ms=0, handlers=as_handler_lookup({"O": two_steps}),
    ))  # fmt: skip

    assert r.status is TurnStatus.ENGINE_ERROR
    assert "does not begin with a start event" in r.internal_error


def test_a_cancel_in_the_start_turn_enqueues_no_activity():
    def orch(ctx, _):
        yield ctx.all([ctx.schedule_activity("A", 1), ctx.schedule_timer(10)])

    h = Harness({"O": orch})

    r = h.turn(start_msg(), cancel_msg("changed my mind"))

    assert r.status is TurnStatus.FAILED
    assert r.error.message == "canceled: changed my mind"
    assert r.worker_items == [] and r.cancelled_activities == []
