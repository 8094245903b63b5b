"""First step of a turn: find the execution to run and turn new messages into history events.

Dropped here, never recorded: a second start of a running or finished instance; messages for an
instance that was never started; completions for an older execution (after continue-as-new);
duplicate completions; completions of work that was cancelled; a second cancellation request.
A completion whose scheduling event is not in the history is nondeterminism.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from duroxide.errors import ErrorDetails
from duroxide.history import (
    TERMINAL_KINDS,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    Event,
    ExternalEvent,
    OrchestrationCancelRequested,
    OrchestrationStarted,
    QueueEventDelivered,
    SubOrchestrationCompleted,
    SubOrchestrationFailed,
    SubOrchestrationScheduled,
    TimerCreated,
    TimerFired,
)
from duroxide.replay.turn import TurnResult, TurnStatus
from duroxide.work_items import (
    ActivityCompletedMsg,
    ActivityFailedMsg,
    CancelRequested,
    ContinueAsNew,
    EventRaised,
    Message,
    QueueMessage,
    StartOrchestration,
    SubOrchCompletedMsg,
    SubOrchFailedMsg,
    TimerFiredMsg,
)

if TYPE_CHECKING:
    from duroxide.replay.engine import Turn


def prepare(turn: Turn) -> TurnResult | None:
    """Set up ``turn`` (started event, handler, converted events). Returns a final result when
    there is nothing to run; None when the replay should go ahead."""
    inp = turn.inp
    messages = list(inp.messages)
    history = turn.events
    if history:
        started = history[0]
        if not isinstance(started, OrchestrationStarted):
            raise ValueError(f"history of {inp.instance_id!r} does not begin with a start event")
        if any(e.KIND in TERMINAL_KINDS for e in history):
            return _dropped(turn, len(messages))
        name, version = started.name, started.version
    else:
        start = next((m for m in messages if _starts_execution(m, inp.execution_id)), None)
        if start is None:
            return _dropped(turn, len(messages))
        assert isinstance(start, StartOrchestration | ContinueAsNew)
        messages.remove(start)
        name, version = start.name, start.version
    resolved = inp.handlers.resolve_orchestration(name, version)
    if resolved is not None:
        turn.version, turn.handler = resolved
    elif inp.fail_with is not None:
        turn.version = version or "0.0.0"  # failing it anyway: no handler needed
    else:
        return TurnResult(
            status=TurnStatus.UNREGISTERED, execution_id=turn.execution_id,
            orchestration_name=name, missing_handler=(name, version),
        )  # fmt: skip
    if history:
        assert isinstance(history[0], OrchestrationStarted)
        turn.started = history[0]
    else:
        turn.started = _started_event(turn, start)
        turn.add_event(turn.started)
        turn.result.started = True
    convert_all(turn, messages)
    if inp.fail_with is not None:
        turn.pending_failure = inp.fail_with
    return None


def _starts_execution(message: Message, execution_id: int) -> bool:
    if isinstance(message, StartOrchestration):
        return execution_id == 1
    return isinstance(message, ContinueAsNew) and message.execution_id == execution_id


def _started_event(turn: Turn, start: StartOrchestration | ContinueAsNew) -> OrchestrationStarted:
    common = {
        "event_id": 1, "timestamp_ms": turn.now_ms, "name": start.name, "version": turn.version,
        "input": start.input, "parent_instance_id": start.parent_instance_id,
        "parent_execution_id": start.parent_execution_id,
        "parent_event_id": start.parent_event_id, "trace_context": start.trace_context,
    }  # fmt: skip
    if isinstance(start, ContinueAsNew):
        return OrchestrationStarted(
            **common, carried_queue=start.carried_queue, custom_status=start.custom_status,
            kv=start.kv,
        )  # fmt: skip
    return OrchestrationStarted(**common)


def _dropped(turn: Turn, count: int) -> TurnResult:
    return TurnResult(
        status=TurnStatus.DROPPED, execution_id=turn.execution_id, dropped_messages=count
    )


def convert_all(turn: Turn, messages: list[Message]) -> None:
    """Append an event for each message that is not dropped (uses the turn's indexes)."""
    for message in messages:
        eid, ts = len(turn.events) + 1, turn.now_ms
        event: Event | None = None
        if isinstance(message, ActivityCompletedMsg | ActivityFailedMsg | TimerFiredMsg |
                      SubOrchCompletedMsg | SubOrchFailedMsg):  # fmt: skip
            event = _completion(turn, message, eid, ts)
        elif isinstance(message, EventRaised):
            event = ExternalEvent(event_id=eid, timestamp_ms=ts, name=message.name,
                                  data=message.data)  # fmt: skip
        elif isinstance(message, QueueMessage):
            event = QueueEventDelivered(event_id=eid, timestamp_ms=ts, name=message.queue,
                                        data=message.data)  # fmt: skip
        elif isinstance(message, CancelRequested) and not turn.cancel_requested:
            event = OrchestrationCancelRequested(event_id=eid, timestamp_ms=ts,
                                                 reason=message.reason)  # fmt: skip
        if event is None:
            turn.result.dropped_messages += 1
        else:
            turn.add_event(event)


def _completion(
    turn: Turn,
    message: ActivityCompletedMsg | ActivityFailedMsg | TimerFiredMsg | SubOrchCompletedMsg
    | SubOrchFailedMsg,
    eid: int,
    ts: int,
) -> Event | None:  # fmt: skip
    if message.execution_id != turn.execution_id:
        return None  # for an older execution: it continued as new meanwhile
    if isinstance(message, ActivityCompletedMsg | ActivityFailedMsg):
        source, expected = message.activity_id, ActivityScheduled
    elif isinstance(message, TimerFiredMsg):
        source, expected = message.timer_id, TimerCreated
    else:
        source, expected = message.event_id, SubOrchestrationScheduled
    if source in turn.completion_sources or source in turn.cancelled_sources:
        return None  # duplicate, or the work was cancelled
    if not isinstance(turn.scheduled.get(source), expected):
        turn.pending_failure = ErrorDetails.configuration(
            f"nondeterministic orchestration: received {message.kind} for event {source}, but "
            f"history has no {expected.__name__} with that id",
            "nondeterminism",
        )
        return None
    if isinstance(message, ActivityCompletedMsg):
        return ActivityCompleted(event_id=eid, timestamp_ms=ts, source_event_id=source,
                                 result=message.result)  # fmt: skip
    if isinstance(message, ActivityFailedMsg):
        return ActivityFailed(event_id=eid, timestamp_ms=ts, source_event_id=source,
                              error=message.error)  # fmt: skip
    if isinstance(message, TimerFiredMsg):
        return TimerFired(event_id=eid, timestamp_ms=ts, source_event_id=source,
                          fire_at_ms=message.fire_at_ms)  # fmt: skip
    if isinstance(message, SubOrchCompletedMsg):
        return SubOrchestrationCompleted(event_id=eid, timestamp_ms=ts, source_event_id=source,
                                         result=message.result)  # fmt: skip
    return SubOrchestrationFailed(event_id=eid, timestamp_ms=ts, source_event_id=source,
                                  error=message.error)  # fmt: skip
