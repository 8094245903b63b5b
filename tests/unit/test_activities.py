"""Activities scheduled one after another: work items, results, failures."""

import json

from duroxide.errors import ActivityFailedError, ErrorCategory, TaskFailedError
from duroxide.replay import TurnStatus
from duroxide.testing import (
    Harness,
    Raw,
    activity_done,
    activity_error,
    kinds,
    output_of,
    scheduled_activities,
)
from duroxide.work_items import ActivityWorkItem


def checkout(ctx, order):
    total = yield ctx.schedule_activity("Price", order)
    receipt = yield ctx.schedule_activity("Charge", {"amount": total})
    return {"total": total, "receipt": receipt}


def test_first_turn_records_the_start_and_schedules_only_the_first_activity():
    r = Harness({"Checkout": checkout}).start("Checkout", {"id": 7})

    assert r.status is TurnStatus.RUNNING
    assert r.started
    assert kinds(r.new_events) == ["OrchestrationStarted", "ActivityScheduled"]
    assert scheduled_activities(r) == [(2, "Price", {"id": 7})]


def test_each_result_feeds_the_next_activity_and_the_last_one_the_output():
    h = Harness({"Checkout": checkout})
    h.start("Checkout", {"id": 7})

    r = h.turn(activity_done(2, 30))
    assert r.status is TurnStatus.RUNNING
    assert scheduled_activities(r) == [(4, "Charge", {"amount": 30})]

    r = h.turn(activity_done(4, "rcpt-1"))
    assert r.status is TurnStatus.COMPLETED
    assert output_of(r) == {"total": 30, "receipt": "rcpt-1"}
    assert kinds(h.history) == [
        "OrchestrationStarted",
        "ActivityScheduled", "ActivityCompleted",
        "ActivityScheduled", "ActivityCompleted",
        "OrchestrationCompleted",
    ]  # fmt: skip


def test_a_completed_activity_is_replayed_from_history_not_scheduled_again():
    h = Harness({"Checkout": checkout})
    h.start("Checkout", {"id": 7})
    h.turn(activity_done(2, 30))

    r = h.turn(activity_done(4, "rcpt-1"))

    assert r.worker_items == []  # Price and Charge are not enqueued a second time


def test_work_item_carries_the_instance_and_orchestration_identity():
    r = Harness({"Checkout": checkout}, instance_id="order-7").start("Checkout", {"id": 7})

    assert r.worker_items == [
        ActivityWorkItem(
            instance_id="order-7", execution_id=1, activity_id=2, name="Price",
            input='{"id":7}', orchestration_name="Checkout", orchestration_version="1.0.0",
        )
    ]  # fmt: skip


def test_session_and_tag_go_into_history_and_the_work_item():
    def orch(ctx, _):
        yield ctx.schedule_activity_on_session("Train", 1, "gpu-session").with_tag("gpu")

    r = Harness({"O": orch}).start()

    (item,) = r.worker_items
    assert (item.session_id, item.tag) == ("gpu-session", "gpu")
    scheduled = r.new_events[1]
    assert (scheduled.session_id, scheduled.tag) == ("gpu-session", "gpu")


def test_activity_failure_is_raised_at_the_yield_and_can_be_handled():
    def orch(ctx, order):
        try:
            yield ctx.schedule_activity("Charge", order)
        except Exception as e:
            yield ctx.schedule_activity("Refund", str(e))
            return {"status": "refunded", "reason": str(e)}

    h = Harness({"O": orch})
    h.start("O", 1)

    r = h.turn(activity_error(2, "card declined"))
    assert scheduled_activities(r) == [(4, "Refund", "card declined")]

    r = h.turn(activity_done(4))
    assert output_of(r) == {"status": "refunded", "reason": "card declined"}


def test_activity_failure_is_an_activity_failed_error_carrying_the_message():
    seen = []

    def orch(ctx, _):
        try:
            yield ctx.schedule_activity("Charge", 1)
        except TaskFailedError as e:
            seen.append(e)
        return "handled"

    h = Harness({"O": orch})
    h.start()
    h.turn(activity_error(2, "card declined"))

    (error,) = seen
    assert isinstance(error, ActivityFailedError)
    assert str(error) == "card declined"
    assert error.category == "application"


def test_uncaught_activity_failure_fails_the_orchestration_with_the_activity_message():
    h = Harness({"Checkout": checkout})
    h.start("Checkout", {"id": 7})

    r = h.turn(activity_error(2, "price service down"))

    assert r.status is TurnStatus.FAILED
    assert r.error.message == "price service down"
    assert r.error.category is ErrorCategory.APPLICATION
    assert kinds(r.new_events) == ["ActivityFailed", "OrchestrationFailed"]


def test_a_result_that_is_not_json_arrives_as_the_raw_string():
    """As in the reference SDK: payloads that are not JSON are delivered as they are (this is
    how a ``*_typed`` call's raw ``str`` input reaches its activity)."""

    def orch(ctx, _):
        return (yield ctx.schedule_activity("Raw", None))

    h = Harness({"O": orch})
    h.start()

    r = h.turn(activity_done(2, Raw("{not json")))

    assert r.status is TurnStatus.COMPLETED
    assert output_of(r) == "{not json"


def test_a_typed_call_takes_a_str_input_as_already_encoded_json():
    def orch(ctx, _):
        yield ctx.schedule_activity_typed("A", '{"x": 1}')
        yield ctx.schedule_activity_typed("A", "hello")
        yield ctx.schedule_activity("A", '{"x": 1}')

    h = Harness({"O": orch})
    inputs = [h.start().worker_items[0].input]
    inputs.append(h.turn(activity_done(2, None)).worker_items[0].input)
    inputs.append(h.turn(activity_done(4, None)).worker_items[0].input)
    assert inputs == ['{"x": 1}', "hello", '"{\\"x\\": 1}"']


def test_activity_input_and_result_are_json_values_in_user_code():
    def orch(ctx, payload):
        result = yield ctx.schedule_activity("Echo", payload)
        return {"got": result, "type": type(result).__name__}

    h = Harness({"O": orch})
    r = h.start("O", [1, "two", {"three": 3.5}, None])
    assert json.loads(r.worker_items[0].input) == [1, "two", {"three": 3.5}, None]

    r = h.turn(activity_done(2, {"nested": [True, None]}))
    assert output_of(r) == {"got": {"nested": [True, None]}, "type": "dict"}
