"""Drive the pure replay engine turn by turn, in memory, without a database or a clock.

:class:`Harness` plays the part of the runtime for one instance: it hands the engine the
accumulated history plus the messages you give it, appends the turn's new events, and follows
continue-as-new into the next execution. Nothing runs on its own: activities complete, timers fire
and events arrive only when a test passes the matching message, so every interleaving is explicit::

    h = Harness({"Greet": greet})
    r = h.start("Greet", "ada")                      # turn 1: schedules activity event 2
    r = h.turn(activity_done(2, "hello ada"))        # turn 2: completes
    assert r.status is TurnStatus.COMPLETED and output_of(r) == "hello ada"

:func:`replay_history` checks that orchestration code still produces a recorded history, turn by
turn — the way to keep captured (golden) histories replaying after code changes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from duroxide.history import (
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
    SystemCall,
    TimerFired,
    event_to_record,
)
from duroxide.registry import Registry
from duroxide.replay import HandlerLookup, TurnInput, TurnResult, TurnStatus, run_turn
from duroxide.testing.events import start_msg
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

__all__ = [
    "Harness", "ReplayMismatchError", "kinds", "output_of", "replay_history",
    "scheduled_activities", "timers_of",
]  # fmt: skip

#: What a Harness accepts as orchestrations: a registry (anything with ``resolve_orchestration``)
#: or a mapping of name (or ``(name, version)``) to function.
Orchestrations = HandlerLookup | Mapping[str | tuple[str, str], Callable[..., Any]]

_ANY: Any = object()

#: Turn statuses after which the runtime writes nothing: the harness does not commit them either.
_NOT_COMMITTED = (
    TurnStatus.DROPPED, TurnStatus.UNREGISTERED, TurnStatus.NEEDS_READ, TurnStatus.ENGINE_ERROR,
)  # fmt: skip


def as_handler_lookup(orchestrations: Orchestrations) -> HandlerLookup:
    """A registry for ``orchestrations``; a mapping is registered (unversioned keys at 1.0.0)."""
    if hasattr(orchestrations, "resolve_orchestration"):
        return orchestrations  # type: ignore[return-value]
    registry = Registry()
    for key, fn in orchestrations.items():  # type: ignore[union-attr]
        if isinstance(key, tuple):
            registry.add_orchestration(key[0], fn, key[1])
        else:
            registry.add_orchestration(key, fn)
    return registry


def sequential_guids() -> Callable[[], str]:
    """A ``new_guid`` source giving ``00000000-0000-0000-0000-000000000001``, ``…02`` …"""
    counter = 0

    def next_guid() -> str:
        nonlocal counter
        counter += 1
        return str(uuid.UUID(int=counter))

    return next_guid


class Harness:
    """One orchestration instance, driven turn by turn through :func:`run_turn`.

    Attributes:
        history: the current execution's events, as persisted so far.
        executions: every execution's history by execution id (``executions[1]`` …).
        execution_id: the current execution.
        results: every turn's ``TurnResult``, in order (``last`` is the latest).
        now_ms: the clock handed to the next turn; ``turn(now_ms=…)`` moves it.
    """

    def __init__(
        self,
        orchestrations: Orchestrations,
        instance_id: str = "i",
        *,
        now_ms: int = 0,
        new_guid: Callable[[], str] | None = None,
    ) -> None:
        self.handlers = as_handler_lookup(orchestrations)
        self.instance_id = instance_id
        self.now_ms = now_ms
        self.execution_id = 1
        self.history: list[Event] = []
        self.executions: dict[int, list[Event]] = {1: self.history}
        self.results: list[TurnResult] = []
        self.new_guid = new_guid or sequential_guids()
        self._pending: list[Message] = []

    @property
    def last(self) -> TurnResult:
        return self.results[-1]

    def activity_id(self, name: str, input: Any = _ANY) -> int:
        """The event id of the latest ``ActivityScheduled`` of ``name`` (and decoded ``input``,
        when given) in the current execution: what its completion message must name."""
        for event in reversed(self.history):
            if (
                isinstance(event, ActivityScheduled)
                and event.name == name
                and (
                    input is _ANY or (event.input is not None and json.loads(event.input) == input)
                )
            ):
                return event.event_id
        raise LookupError(f"no activity {name!r} with input {input!r} was scheduled")

    def start(
        self, name: str = "O", input: Any = None, *, version: str | None = None,
        now_ms: int | None = None,
    ) -> TurnResult:  # fmt: skip
        """Start the instance (``client.start_orchestration``) and run its first turn."""
        return self.turn(start_msg(name, input, version=version), now_ms=now_ms)

    def turn(
        self,
        *messages: Message,
        now_ms: int | None = None,
        kv_reads: Mapping[tuple[str, str], str | None] | None = None,
        commit: bool = True,
    ) -> TurnResult:
        """Run one turn over ``messages`` and, unless ``commit=False``, persist its events.

        After a continue-as-new the next call starts the new execution: the self-addressed
        ``ContinueAsNew`` message is handed to the engine before ``messages``. A turn that
        writes nothing (dropped, unregistered, needs a read, engine error) leaves the state
        untouched, as the runtime does.
        """
        if now_ms is not None:
            self.now_ms = now_ms
        pending = list(self._pending)
        result = run_turn(
            TurnInput(
                instance_id=self.instance_id,
                execution_id=self.execution_id,
                history=list(self.history),
                messages=[*pending, *messages],
                now_ms=self.now_ms,
                handlers=self.handlers,
                kv_reads=dict(kv_reads or {}),
                new_guid=self.new_guid,
            )
        )
        self.results.append(result)
        if not commit or result.status in _NOT_COMMITTED:
            return result
        self._pending.clear()
        self.history.extend(result.new_events)
        if result.status is TurnStatus.CONTINUED_AS_NEW:
            self._pending = [
                item.message
                for item in result.orchestrator_items
                if item.instance_id == self.instance_id and isinstance(item.message, ContinueAsNew)
            ]
            assert result.next_execution_id is not None
            self.execution_id = result.next_execution_id
            self.history = self.executions[self.execution_id] = []
        return result


def output_of(result: TurnResult) -> Any:
    """The decoded output of a completed (or continued-as-new) turn."""
    return None if result.output is None else json.loads(result.output)


def kinds(events: Iterable[Event]) -> list[str]:
    """Event kinds, e.g. ``["OrchestrationStarted", "ActivityScheduled"]``."""
    return [event.kind for event in events]


def scheduled_activities(result: TurnResult) -> list[tuple[int, str, Any]]:
    """The activities a turn enqueued, as ``(activity_id, name, decoded input)``."""
    return [(w.activity_id, w.name, None if w.input is None else json.loads(w.input))
            for w in result.worker_items]  # fmt: skip


def timers_of(result: TurnResult) -> list[TimerFiredMsg]:
    """The timer messages a turn scheduled for its own instance (to pass to a later turn)."""
    return [item.message for item in result.orchestrator_items
            if isinstance(item.message, TimerFiredMsg)]  # fmt: skip


# --- replaying recorded histories --------------------------------------------------------------


class ReplayMismatchError(AssertionError):
    """The orchestration code no longer produces the recorded history."""


_ARRIVALS = (
    ActivityCompleted, ActivityFailed, TimerFired, SubOrchestrationCompleted,
    SubOrchestrationFailed, ExternalEvent, QueueEventDelivered, OrchestrationCancelRequested,
)  # fmt: skip


def replay_history(
    history: Sequence[Event],
    orchestrations: Orchestrations,
    *,
    instance_id: str = "i",
    execution_id: int = 1,
    strict: bool = True,
) -> TurnResult:
    """Re-run ``orchestrations`` over a recorded execution, turn by turn, and check every turn
    writes exactly the recorded events (kinds, ids, payloads, timestamps).

    With ``strict=False`` only what an instance in flight needs is checked: replaying each
    recorded prefix must not hit nondeterminism (or an engine error). Changes the engine
    tolerates — a timer's delay, an output's shape — then pass.

    Turns are recovered from the history itself: a turn writes the events of the messages it
    consumed (completions, events, cancellation — all stamped with the turn's time) and then the
    code's new decisions, so an arrival after a decision, or at a new time, starts a new turn.
    Each turn is re-run with those arrivals turned back into messages and with the recorded
    ``new_guid``/KV-read values. Raises :class:`ReplayMismatchError` on the first difference;
    returns the last turn's result.
    """
    if not history or not isinstance(history[0], OrchestrationStarted):
        raise ValueError("a recorded execution starts with OrchestrationStarted")
    handlers = as_handler_lookup(orchestrations)
    result: TurnResult | None = None
    for start, end in _turn_spans(history):
        segment = history[start:end]
        n_arrivals = next((i for i, e in enumerate(segment) if not _is_arrival(e, i)), len(segment))
        messages = [_message_for(e, execution_id) for e in segment[:n_arrivals]]
        guids = iter([e.value for e in segment if isinstance(e, SystemCall) and e.op == "new_guid"])
        reads = {(e.args[0], e.args[1]): e.value for e in segment
                 if isinstance(e, SystemCall) and e.op == "kv_read"}  # fmt: skip
        result = run_turn(
            TurnInput(
                instance_id=instance_id, execution_id=execution_id, history=list(history[:start]),
                messages=messages, now_ms=segment[0].timestamp_ms, handlers=handlers,
                kv_reads=reads, new_guid=guids.__next__,
            )
        )  # fmt: skip
        if strict:
            _compare(segment, result, start)
        else:
            _check_replayable(result, start)
    assert result is not None
    return result


def _is_arrival(event: Event, index_in_segment: int) -> bool:
    if isinstance(event, OrchestrationStarted):
        return index_in_segment == 0
    return isinstance(event, _ARRIVALS)


def _turn_spans(history: Sequence[Event]) -> Iterable[tuple[int, int]]:
    start = 0
    for i in range(1, len(history)):
        event, previous = history[i], history[i - 1]
        if isinstance(event, _ARRIVALS) and (
            not isinstance(previous, (*_ARRIVALS, OrchestrationStarted))
            or previous.timestamp_ms != event.timestamp_ms
        ):
            yield start, i
            start = i
    yield start, len(history)


def _message_for(event: Event, execution_id: int) -> Message:
    match event:
        case OrchestrationStarted() if execution_id == 1:
            return StartOrchestration(
                name=event.name, version=event.version, input=event.input,
                parent_instance_id=event.parent_instance_id,
                parent_execution_id=event.parent_execution_id,
                parent_event_id=event.parent_event_id, trace_context=event.trace_context,
            )  # fmt: skip
        case OrchestrationStarted():
            return ContinueAsNew(
                execution_id=execution_id, name=event.name, version=event.version,
                input=event.input, parent_instance_id=event.parent_instance_id,
                parent_execution_id=event.parent_execution_id,
                parent_event_id=event.parent_event_id, carried_queue=event.carried_queue,
                custom_status=event.custom_status, kv=event.kv, trace_context=event.trace_context,
            )  # fmt: skip
        case ActivityCompleted():
            return ActivityCompletedMsg(execution_id=execution_id, activity_id=_source(event),
                                        result=event.result)  # fmt: skip
        case ActivityFailed():
            return ActivityFailedMsg(execution_id=execution_id, activity_id=_source(event),
                                     error=event.error)  # fmt: skip
        case TimerFired():
            return TimerFiredMsg(execution_id=execution_id, timer_id=_source(event),
                                 fire_at_ms=event.fire_at_ms)  # fmt: skip
        case SubOrchestrationCompleted():
            return SubOrchCompletedMsg(execution_id=execution_id, event_id=_source(event),
                                       result=event.result)  # fmt: skip
        case SubOrchestrationFailed():
            return SubOrchFailedMsg(execution_id=execution_id, event_id=_source(event),
                                    error=event.error)  # fmt: skip
        case ExternalEvent():
            return EventRaised(name=event.name, data=event.data)
        case QueueEventDelivered():
            return QueueMessage(queue=event.name, data=event.data)
        case OrchestrationCancelRequested():
            return CancelRequested(reason=event.reason)
    raise AssertionError(f"not an arrival event: {event.kind}")  # pragma: no cover


def _source(event: Event) -> int:
    assert event.source_event_id is not None
    return event.source_event_id


def _compare(recorded: Sequence[Event], result: TurnResult, offset: int) -> None:
    if result.status in _NOT_COMMITTED:
        detail = result.internal_error or result.missing_handler or result.pending_read
        raise ReplayMismatchError(
            f"turn starting at event {offset + 1}: the engine returned {result.status.value}"
            f" ({detail})"
        )
    want = [event_to_record(e) for e in recorded]
    got = [event_to_record(e) for e in result.new_events]
    if want == got:
        return
    for i, (w, g) in enumerate(zip(want, got, strict=False)):
        if w != g:
            raise ReplayMismatchError(
                f"event {offset + i + 1}: history recorded {w}, the code now writes {g}"
                + _error_hint(result)
            )
    if len(got) < len(want):
        raise ReplayMismatchError(
            f"event {offset + len(got) + 1}: history recorded {want[len(got)]}, the code now "
            "writes nothing more" + _error_hint(result)
        )
    raise ReplayMismatchError(
        f"event {offset + len(want) + 1}: the code now writes {got[len(want)]}, which history "
        "does not have" + _error_hint(result)
    )


def _check_replayable(result: TurnResult, offset: int) -> None:
    if result.status in _NOT_COMMITTED:
        _compare([], result, offset)  # reports the status
    if result.error is not None and result.error.kind == "nondeterminism":
        raise ReplayMismatchError(f"turn starting at event {offset + 1}: {result.error.message}")


def _error_hint(result: TurnResult) -> str:
    return f" (turn error: {result.error.message})" if result.error is not None else ""
