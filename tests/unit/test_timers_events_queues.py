"""Durable timers, external events (``wait_for_event``) and event queues (``dequeue_event``).

What happens to an event raised before anyone waits for it: it is **buffered** — recorded in
history as it arrives — and handed to the first later ``wait_for_event`` of that name in the same
execution. Events of one name go to waits of that name in arrival order. Buffered external events
are not carried across continue-as-new; queue messages are (the queue is a mailbox that survives
continue-as-new).
"""

from duroxide.replay import TurnStatus
from duroxide.testing import (
    Harness,
    activity_done,
    enqueue_msg,
    kinds,
    output_of,
    raise_msg,
    start_msg,
    timer_msg,
    timers_of,
)
from duroxide.work_items import OutboundMessage, TimerFiredMsg

# --- timers --------------------------------------------------------------------------------------


def nap(ctx, ms):
    yield ctx.schedule_timer(ms)
    return "woke"


def test_timer_fires_at_now_plus_delay_via_a_delayed_message_to_itself():
    r = Harness({"O": nap}, instance_id="sleeper", now_ms=50_000).start("O", 1500)

    (created,) = [e for e in r.new_events if e.kind == "TimerCreated"]
    assert created.fire_at_ms == 51_500
    assert r.orchestrator_items == [
        OutboundMessage(
            instance_id="sleeper",
            message=TimerFiredMsg(execution_id=1, timer_id=created.event_id, fire_at_ms=51_500),
            visible_at_ms=51_500,
        )
    ]


def test_orchestration_waits_until_the_timer_fires():
    h = Harness({"O": nap})
    r = h.start("O", 100)
    assert r.status is TurnStatus.RUNNING

    r = h.turn(*timers_of(r), now_ms=100)

    assert r.status is TurnStatus.COMPLETED
    assert output_of(r) == "woke"
    assert kinds(r.new_events) == ["TimerFired", "OrchestrationCompleted"]


def test_replaying_a_timer_keeps_its_recorded_fire_time_and_does_not_reschedule_it():
    def orch(ctx, _):
        yield ctx.schedule_timer(1000)
        return (yield ctx.wait_for_event("go"))

    h = Harness({"O": orch}, now_ms=0)
    h.start()
    h.turn(timer_msg(2, 1000), now_ms=1000)

    r = h.turn(raise_msg("go", 1), now_ms=99_000)

    assert r.orchestrator_items == []
    assert h.history[1].fire_at_ms == 1000


def test_a_zero_delay_timer_is_still_durable():
    r = Harness({"O": nap}).start("O", 0)

    assert r.status is TurnStatus.RUNNING
    assert [m.visible_at_ms for m in r.orchestrator_items] == [0]


def test_a_negative_delay_is_rejected_at_the_call():
    r = Harness({"O": nap}).start("O", -1)

    assert r.status is TurnStatus.FAILED
    assert r.error.message == "timer delay must not be negative"


# --- external events -----------------------------------------------------------------------------


def approval(ctx, _):
    decision = yield ctx.wait_for_event("approval")
    return decision


def test_a_raised_event_resumes_the_waiting_orchestration_with_its_data():
    h = Harness({"O": approval})
    r = h.start()
    assert kinds(r.new_events) == ["OrchestrationStarted", "ExternalSubscribed"]

    r = h.turn(raise_msg("approval", {"by": "ada", "ok": True}))

    assert output_of(r) == {"by": "ada", "ok": True}


def test_an_event_raised_before_anyone_waits_is_buffered_for_the_first_later_wait():
    def orch(ctx, _):
        yield ctx.schedule_activity("Prepare", None)
        return (yield ctx.wait_for_event("approval"))

    h = Harness({"O": orch})
    h.start()
    r = h.turn(raise_msg("approval", "early yes"))
    assert r.status is TurnStatus.RUNNING
    assert kinds(r.new_events) == ["ExternalEvent"]  # recorded, waiting for a subscriber

    r = h.turn(activity_done(2))

    assert r.status is TurnStatus.COMPLETED
    assert output_of(r) == "early yes"


def test_an_event_raised_in_the_start_turn_reaches_a_wait_made_in_that_turn():
    h = Harness({"O": approval})

    r = h.turn(start_msg(), raise_msg("approval", "same turn"))

    assert output_of(r) == "same turn"


def test_events_of_one_name_go_to_waits_in_arrival_order():
    def orch(ctx, _):
        first = yield ctx.wait_for_event("step")
        second = yield ctx.wait_for_event("step")
        return [first, second]

    h = Harness({"O": orch})
    h.start()

    r = h.turn(raise_msg("step", 1), raise_msg("step", 2))

    assert output_of(r) == [1, 2]


def test_an_event_of_another_name_does_not_wake_a_wait():
    h = Harness({"O": approval})
    h.start()

    r = h.turn(raise_msg("rejection", "no"))

    assert r.status is TurnStatus.RUNNING
    r = h.turn(raise_msg("approval", "yes"))
    assert output_of(r) == "yes"


def test_a_queue_message_does_not_satisfy_an_event_wait_of_the_same_name():
    h = Harness({"O": approval})
    h.start()

    assert h.turn(enqueue_msg("approval", "queued")).status is TurnStatus.RUNNING
    assert output_of(h.turn(raise_msg("approval", "raised"))) == "raised"


def test_a_buffered_external_event_is_not_carried_across_continue_as_new():
    def orch(ctx, n):
        if n == 0:
            yield ctx.schedule_timer(10)
            yield ctx.continue_as_new(1)
        got = yield ctx.race(ctx.wait_for_event("e"), ctx.schedule_timer(10))
        return got

    h = Harness({"O": orch})
    h.start("O", 0)
    h.turn(raise_msg("e", "in execution 1"))
    assert h.turn(timer_msg(2, 10)).status is TurnStatus.CONTINUED_AS_NEW

    r = h.turn()
    assert r.status is TurnStatus.RUNNING  # the event did not come along
    r = h.turn(*timers_of(r))
    assert output_of(r) == {"index": 1, "value": None}


# --- event queues --------------------------------------------------------------------------------


def drain(count):
    def orch(ctx, _):
        items = []
        for _ in range(count):
            items.append((yield ctx.dequeue_event("jobs")))
        return items

    return orch


def test_queue_messages_enqueued_before_the_first_dequeue_are_kept_in_fifo_order():
    def orch(ctx, _):
        yield ctx.schedule_timer(10)
        return (yield from drain(3)(ctx, None))

    h = Harness({"O": orch})
    h.start()
    h.turn(enqueue_msg("jobs", "a"), enqueue_msg("jobs", "b"))
    h.turn(enqueue_msg("jobs", "c"))

    r = h.turn(timer_msg(2, 10))

    assert output_of(r) == ["a", "b", "c"]


def test_dequeue_waits_for_the_next_message_when_the_queue_is_empty():
    h = Harness({"O": drain(2)})
    r = h.start()
    assert kinds(r.new_events) == ["OrchestrationStarted", "QueueSubscribed"]

    r = h.turn(enqueue_msg("jobs", {"n": 1}))
    assert r.status is TurnStatus.RUNNING
    r = h.turn(enqueue_msg("jobs", {"n": 2}))

    assert output_of(r) == [{"n": 1}, {"n": 2}]


def take_one_then_continue(ctx, state):
    got = yield ctx.dequeue_event("jobs")
    seen = [*state["seen"], got]
    if len(seen) == 3:
        return seen
    yield ctx.continue_as_new({"seen": seen})


def test_unconsumed_queue_messages_are_carried_into_the_next_execution_in_order():
    h = Harness({"O": take_one_then_continue})
    h.start("O", {"seen": []})

    r = h.turn(enqueue_msg("jobs", "a"), enqueue_msg("jobs", "b"), enqueue_msg("jobs", "c"))
    assert r.status is TurnStatus.CONTINUED_AS_NEW

    r = h.turn()
    assert h.executions[2][0].carried_queue == [["jobs", '"b"'], ["jobs", '"c"']]
    assert r.status is TurnStatus.CONTINUED_AS_NEW  # "b" was dequeued at once

    r = h.turn()
    assert h.executions[3][0].carried_queue == [["jobs", '"c"']]
    assert r.status is TurnStatus.COMPLETED
    assert output_of(r) == ["a", "b", "c"]


def test_queue_messages_buffered_in_earlier_turns_are_carried_too():
    def orch(ctx, n):
        if n == 0:
            yield ctx.schedule_timer(10)
            yield ctx.continue_as_new(1)
        return [(yield ctx.dequeue_event("q")), (yield ctx.dequeue_event("q"))]

    h = Harness({"O": orch})
    h.start("O", 0)
    h.turn(enqueue_msg("q", "first"))
    h.turn(timer_msg(2, 10), enqueue_msg("q", "second"))  # arrives in the continuing turn

    r = h.turn()

    assert output_of(r) == ["first", "second"]
