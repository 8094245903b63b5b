"""Sub-orchestrations (awaited children), detached starts (fire and forget), and the messages a
child sends back to its parent."""

from duroxide.errors import ErrorCategory, SubOrchestrationFailedError, TaskFailedError
from duroxide.replay import TurnStatus
from duroxide.testing import (
    Harness,
    activity_done,
    activity_error,
    kinds,
    output_of,
    start_msg,
    sub_done,
    sub_error,
)
from duroxide.work_items import (
    OutboundMessage,
    StartOrchestration,
    SubOrchCompletedMsg,
    SubOrchFailedMsg,
)


def starts_of(result):
    return [(m.instance_id, m.message) for m in result.orchestrator_items
            if isinstance(m.message, StartOrchestration)]  # fmt: skip


def test_a_child_without_an_id_gets_parent_sub_event_id_and_knows_its_parent():
    def parent(ctx, _):
        yield ctx.schedule_activity("Prepare", None)
        return (yield ctx.schedule_sub_orchestration("Child", {"n": 1}))

    h = Harness({"Parent": parent}, instance_id="order-9")
    h.start("Parent")

    r = h.turn(activity_done(2))

    assert starts_of(r) == [
        ("order-9::sub::4", StartOrchestration(
            name="Child", input='{"n":1}', parent_instance_id="order-9",
            parent_execution_id=1, parent_event_id=4,
        ))
    ]  # fmt: skip
    assert h.history[3].instance_id == "order-9::sub::4"


def test_a_child_with_an_explicit_id_is_started_under_that_id():
    def parent(ctx, _):
        return (yield ctx.schedule_sub_orchestration_with_id("Child", "child-1", "x"))

    r = Harness({"Parent": parent}).start("Parent")

    ((instance, start),) = starts_of(r)
    assert instance == "child-1"
    assert (start.parent_instance_id, start.parent_event_id) == ("i", 2)


def test_a_versioned_child_start_pins_the_version():
    def parent(ctx, _):
        return (yield ctx.schedule_sub_orchestration_versioned("Child", "2.1.0", None))

    ((_, start),) = starts_of(Harness({"Parent": parent}).start("Parent"))

    assert start.version == "2.1.0"


def test_the_child_result_is_the_value_of_the_yield():
    def parent(ctx, _):
        result = yield ctx.schedule_sub_orchestration("Child", 1)
        return {"child said": result}

    h = Harness({"Parent": parent})
    h.start("Parent")

    r = h.turn(sub_done(2, [1, 2, 3]))

    assert output_of(r) == {"child said": [1, 2, 3]}


def test_a_child_failure_is_raised_in_the_parent():
    seen = []

    def parent(ctx, _):
        try:
            yield ctx.schedule_sub_orchestration("Child", 1)
        except TaskFailedError as e:
            seen.append(e)
            return "recovered"

    h = Harness({"Parent": parent})
    h.start("Parent")

    r = h.turn(sub_error(2, "child exploded"))

    assert output_of(r) == "recovered"
    (error,) = seen
    assert isinstance(error, SubOrchestrationFailedError)
    assert str(error) == "child exploded"


def test_an_unhandled_child_failure_fails_the_parent_with_the_child_message():
    def parent(ctx, _):
        return (yield ctx.schedule_sub_orchestration("Child", 1))

    h = Harness({"Parent": parent})
    h.start("Parent")

    r = h.turn(sub_error(2, "child exploded"))

    assert r.status is TurnStatus.FAILED
    assert r.error.message == "child exploded"
    assert r.error.category is ErrorCategory.APPLICATION


# --- the child's side ----------------------------------------------------------------------------


def child(ctx, n):
    doubled = yield ctx.schedule_activity("Double", n)
    return doubled


def start_child(h):
    return h.turn(
        start_msg("Child", 21, parent_instance_id="order-9", parent_execution_id=3,
                  parent_event_id=4)
    )  # fmt: skip


def test_a_completed_child_sends_its_result_to_the_parent_execution_and_event():
    h = Harness({"Child": child}, instance_id="order-9::sub::4")
    start_child(h)

    r = h.turn(activity_done(2, 42))

    assert r.status is TurnStatus.COMPLETED
    assert r.orchestrator_items == [
        OutboundMessage(
            instance_id="order-9",
            message=SubOrchCompletedMsg(execution_id=3, event_id=4, result="42"),
        )
    ]
    assert (r.parent_instance_id, r.parent_execution_id, r.parent_event_id) == ("order-9", 3, 4)


def test_a_failed_child_sends_its_error_to_the_parent():
    h = Harness({"Child": child}, instance_id="order-9::sub::4")
    start_child(h)

    r = h.turn(activity_error(2, "cannot double"))

    ((target, message),) = [(m.instance_id, m.message) for m in r.orchestrator_items]
    assert target == "order-9"
    assert isinstance(message, SubOrchFailedMsg)
    assert (message.execution_id, message.event_id) == (3, 4)
    assert message.error.message == "cannot double"


def test_a_top_level_orchestration_sends_nothing_when_it_ends():
    h = Harness({"Child": child})
    h.start("Child", 1)

    r = h.turn(activity_done(2, 2))

    assert r.orchestrator_items == []


# --- detached starts -----------------------------------------------------------------------------


def test_start_orchestration_takes_name_then_id_and_does_not_wait():
    def orch(ctx, _):
        started = yield ctx.start_orchestration("Report", "report-7", {"month": 5})
        return {"yield gave": started}

    r = Harness({"O": orch}).start()

    assert r.status is TurnStatus.COMPLETED
    assert output_of(r) == {"yield gave": None}
    assert starts_of(r) == [("report-7", StartOrchestration(name="Report", input='{"month":5}'))]
    assert kinds(r.new_events) == [
        "OrchestrationStarted", "OrchestrationChained", "OrchestrationCompleted",
    ]  # fmt: skip


def test_a_detached_start_is_not_sent_again_on_replay_nor_cancelled_when_the_parent_ends():
    def orch(ctx, _):
        yield ctx.start_orchestration_versioned("Report", "1.2.0", "report-7", None)
        yield ctx.schedule_activity("Work", None)
        return "done"

    h = Harness({"O": orch})
    ((_, start),) = starts_of(h.start())
    assert start.version == "1.2.0"

    r = h.turn(activity_done(3))

    assert r.status is TurnStatus.COMPLETED
    assert r.orchestrator_items == []
