"""Resuming a cached turn must produce exactly what a full replay produces.

The dispatcher keeps the live engine state of running instances and feeds it only the new
messages (``resume_turn``). These tests drive each orchestration twice — once replaying the
whole history every turn, once resuming — with an autopilot that answers every piece of
outstanding work, and require identical results turn by turn.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from duroxide.errors import ErrorDetails
from duroxide.registry import Registry
from duroxide.replay import Turn, TurnInput, TurnResult, TurnStatus, resume_turn, start_turn
from duroxide.work_items import (
    ActivityCompletedMsg,
    ActivityFailedMsg,
    EventRaised,
    Message,
    QueueMessage,
    StartOrchestration,
    SubOrchCompletedMsg,
    TimerFiredMsg,
)


def sequential(ctx: Any, n: int) -> Any:
    out = []
    for i in range(n):
        out.append((yield ctx.schedule_activity("Step", i)))
    return out


def fan_out_and_race(ctx: Any, _: Any) -> Any:
    results = yield ctx.all([ctx.schedule_activity("Step", i) for i in range(4)])
    winner = yield ctx.race(ctx.schedule_activity("Slow", 1), ctx.schedule_timer(50))
    return [results, winner]


def retries_and_timers(ctx: Any, _: Any) -> Any:
    try:
        yield ctx.schedule_activity_with_retry(
            "FailStep", 1, {"max_attempts": 3, "backoff": "fixed", "delay_ms": 10}
        )
    except Exception as exc:
        ctx.trace_warn(f"gave up: {exc}")
    yield ctx.schedule_timer(5)
    return (yield ctx.schedule_activity("Step", "after"))


def status_kv_and_events(ctx: Any, _: Any) -> Any:
    count = int(ctx.get_kv_value("count") or 0)
    for round_ in range(3):
        ctx.set_custom_status(f"round {round_}")
        count += 1
        ctx.set_kv_value("count", str(count))
        event = yield ctx.wait_for_event("go")
        item = yield ctx.dequeue_event("work")
        guid = yield ctx.new_guid()
        ctx.set_kv_value(f"seen-{round_}", f"{event}-{item}-{len(guid)}")
    return count


def children(ctx: Any, _: Any) -> Any:
    first = yield ctx.schedule_sub_orchestration("Child", 1)
    both = yield ctx.all(
        [ctx.schedule_sub_orchestration("Child", 2), ctx.schedule_activity("Step", 3)]
    )
    yield ctx.start_orchestration("Child", "detached-1", 4)
    return [first, both]


def loops_with_continue_as_new(ctx: Any, n: int) -> Any:
    yield ctx.schedule_activity("Step", n)
    if n < 2:
        yield ctx.continue_as_new(n + 1)
    return n


ORCHESTRATIONS: dict[str, tuple[Callable[..., Any], Any]] = {
    "sequential": (sequential, 5),
    "fan_out_and_race": (fan_out_and_race, None),
    "retries_and_timers": (retries_and_timers, None),
    "status_kv_and_events": (status_kv_and_events, None),
    "children": (children, None),
    "loops_with_continue_as_new": (loops_with_continue_as_new, 0),
}


def _answers(result: TurnResult, turn_no: int) -> list[Message]:
    """Respond to every piece of work a turn started, plus an event and a queue message."""
    out: list[Message] = []
    for work in result.worker_items:
        if work.name == "FailStep":
            out.append(ActivityFailedMsg(execution_id=work.execution_id,
                                         activity_id=work.activity_id,
                                         error=ErrorDetails.application("flaky")))  # fmt: skip
        elif work.name != "Slow":  # "Slow" never answers: it loses its race to the timer
            out.append(ActivityCompletedMsg(execution_id=work.execution_id,
                                            activity_id=work.activity_id,
                                            result=f'"r{work.activity_id}"'))  # fmt: skip
    for outbound in result.orchestrator_items:
        msg = outbound.message
        if isinstance(msg, TimerFiredMsg):
            out.append(msg)
        elif isinstance(msg, StartOrchestration) and msg.parent_event_id is not None:
            out.append(SubOrchCompletedMsg(execution_id=msg.parent_execution_id or 1,
                                           event_id=msg.parent_event_id,
                                           result=f'"child-{msg.input}"'))  # fmt: skip
        elif outbound.message.kind == "ContinueAsNew":
            out.append(msg)
    kinds = {e.kind for e in result.new_events}
    if "ExternalSubscribed" in kinds:
        out.append(EventRaised(name="go", data=f'"e{turn_no}"'))
    if "QueueSubscribed" in kinds or "ExternalSubscribed" in kinds:
        out.append(QueueMessage(queue="work", data=f'"q{turn_no}"'))
    return out


def _drive(fn: Callable[..., Any], arg: Any, *, resume: bool, batch: int) -> list[Any]:
    registry = Registry()
    registry.add_orchestration("O", fn)
    guids = (f"00000000-0000-4000-8000-{n:012d}" for n in itertools.count())
    history: list[Any] = []
    execution = 1
    pending: list[Message] = [StartOrchestration(name="O", input=_json(arg))]
    live: Turn | None = None
    trace: list[Any] = []
    for turn_no in range(60):
        if not pending:
            break
        messages, pending = pending[:batch], pending[batch:]
        inp = TurnInput(instance_id="i", execution_id=execution, history=list(history),
                        messages=messages, now_ms=1_000 * (turn_no + 1), handlers=registry,
                        new_guid=lambda: next(guids))  # fmt: skip
        if resume and live is not None:
            result, live = resume_turn(live, inp)
        else:
            result, live = start_turn(inp)
        assert result.status is not TurnStatus.ENGINE_ERROR, result.internal_error
        trace.append(_observable(result))
        history += result.new_events
        if result.next_execution_id:
            execution, history, live = result.next_execution_id, [], None
        if result.status in (TurnStatus.COMPLETED, TurnStatus.FAILED):
            break
        pending += _answers(result, turn_no)
    return trace


def _observable(result: TurnResult) -> tuple[Any, ...]:
    return (result.status, result.new_events, result.worker_items, result.orchestrator_items,
            result.cancelled_activities, result.output, result.error, result.custom_status,
            result.custom_status_changed, result.kv_upserts, result.kv_deletes, result.logs,
            result.dropped_messages)  # fmt: skip


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


@pytest.mark.parametrize("batch", [1, 3, 100])
@pytest.mark.parametrize("name", list(ORCHESTRATIONS))
def test_resuming_a_cached_turn_equals_replaying_the_history(name: str, batch: int) -> None:
    fn, arg = ORCHESTRATIONS[name]
    replayed = _drive(fn, arg, resume=False, batch=batch)
    resumed = _drive(fn, arg, resume=True, batch=batch)
    assert replayed[-1][0] in (TurnStatus.COMPLETED, TurnStatus.FAILED), "scenario must finish"
    assert resumed == replayed


def test_a_resumed_turn_never_rescans_history() -> None:
    """A turn resumed after 2,000 steps touches only the new events."""
    registry = Registry()
    registry.add_orchestration("O", sequential)
    start = StartOrchestration(name="O", input="3000")
    result, live = start_turn(TurnInput(instance_id="i", execution_id=1, history=[],
                                        messages=[start], now_ms=1, handlers=registry))  # fmt: skip
    history = list(result.new_events)
    for step in range(2_000):
        assert live is not None
        work = result.worker_items[0]
        inp = TurnInput(instance_id="i", execution_id=1, history=(), now_ms=step + 2,
                        handlers=registry, messages=[ActivityCompletedMsg(
                            execution_id=1, activity_id=work.activity_id, result="1")])  # fmt: skip
        result, live = resume_turn(live, inp)
        history += result.new_events
        assert [e.kind for e in result.new_events] == ["ActivityCompleted", "ActivityScheduled"]
    assert len(history) == 1 + 2 * 2_000 + 1
    assert [e.event_id for e in history] == list(range(1, len(history) + 1))
