"""Continue-as-new: a fresh execution with a new input, the version it runs, and what it carries
(custom status, KV values, queued messages — see test_timers_events_queues for the queue)."""

from duroxide.registry import Registry
from duroxide.replay import TurnStatus
from duroxide.testing import Harness, activity_done, kinds, output_of, timer_msg
from duroxide.work_items import ContinueAsNew, OutboundMessage


def countdown(ctx, n):
    if n == 0:
        return {"execution": ctx.execution_id}
    yield ctx.schedule_timer(10)
    yield ctx.continue_as_new(n - 1)


def test_continue_as_new_ends_the_execution_and_sends_the_next_start_to_itself():
    h = Harness({"Countdown": countdown}, instance_id="c")
    h.start("Countdown", 2)

    r = h.turn(timer_msg(2, 10))

    assert r.status is TurnStatus.CONTINUED_AS_NEW
    assert r.next_execution_id == 2
    assert r.output == "1"
    assert kinds(r.new_events)[-1] == "OrchestrationContinuedAsNew"
    assert h.executions[1][-1].input == "1"
    assert r.orchestrator_items == [
        OutboundMessage(
            instance_id="c",
            message=ContinueAsNew(execution_id=2, name="Countdown", version=None, input="1"),
        )
    ]


def test_the_next_execution_starts_a_fresh_history_with_the_new_input():
    h = Harness({"Countdown": countdown})
    h.start("Countdown", 2)
    h.turn(timer_msg(2, 10))

    r = h.turn()

    assert r.status is TurnStatus.RUNNING
    assert r.execution_id == 2
    assert kinds(h.executions[2]) == ["OrchestrationStarted", "TimerCreated"]
    assert h.executions[2][0].input == "1"
    assert r.orchestrator_items[0].message.execution_id == 2  # its timer targets execution 2


def test_executions_chain_until_the_orchestration_returns():
    h = Harness({"Countdown": countdown})
    h.start("Countdown", 2)
    h.turn(timer_msg(2, 10))
    h.turn()
    h.turn(timer_msg(2, 10, execution_id=2))

    r = h.turn()

    assert r.status is TurnStatus.COMPLETED
    assert output_of(r) == {"execution": 3}
    assert sorted(h.executions) == [1, 2, 3]


def test_a_message_for_the_previous_execution_is_dropped():
    def orch(ctx, n):
        if n == 0:
            yield ctx.race(ctx.schedule_activity("Slow", None), ctx.schedule_timer(10))
            yield ctx.continue_as_new(1)
        return (yield ctx.wait_for_event("go"))

    h = Harness({"O": orch})
    h.start("O", 0)
    h.turn(timer_msg(3, 10))
    h.turn()

    r = h.turn(activity_done(2, "from execution 1", execution_id=1))

    assert r.status is TurnStatus.DROPPED
    assert r.dropped_messages == 1
    assert r.new_events == []


def versioned_registry():
    def v1(ctx, hops):
        if hops:
            yield ctx.continue_as_new(hops - 1)
        return ctx.orchestration_version

    def v1_pinned(ctx, hops):
        if hops:
            yield ctx.continue_as_new_versioned(hops - 1, "1.0.0")
        return ctx.orchestration_version

    registry = Registry()
    registry.add_orchestration("Plain", v1, "1.0.0")
    registry.add_orchestration("Plain", v1, "2.0.0")
    registry.add_orchestration("Pinned", v1_pinned, "1.0.0")
    registry.add_orchestration("Pinned", v1_pinned, "2.0.0")
    return registry


def test_continue_as_new_without_a_version_runs_the_latest_version():
    h = Harness(versioned_registry())
    r = h.start("Plain", 1, version="1.0.0")
    assert r.orchestration_version == "1.0.0"

    r = h.turn()

    assert output_of(r) == "2.0.0"
    assert h.executions[2][0].version == "2.0.0"


def test_continue_as_new_versioned_pins_the_version():
    h = Harness(versioned_registry())
    h.start("Pinned", 1, version="1.0.0")

    r = h.turn()

    assert output_of(r) == "1.0.0"
    assert h.executions[1][-1].version == "1.0.0"  # recorded on OrchestrationContinuedAsNew


def test_custom_status_and_kv_values_are_carried_into_the_next_execution():
    def orch(ctx, n):
        if n == 0:
            ctx.set_custom_status("phase 1 done")
            ctx.set_kv_value("cursor", "42")
            yield ctx.continue_as_new(1)
        return {"status": ctx.get_custom_status(), "cursor": ctx.get_kv_value("cursor")}

    h = Harness({"O": orch})
    h.start("O", 0)

    r = h.turn()

    assert output_of(r) == {"status": "phase 1 done", "cursor": "42"}
    assert r.custom_status == "phase 1 done"
    assert not r.custom_status_changed  # carried, not set again
    assert h.executions[2][0].custom_status == "phase 1 done"
