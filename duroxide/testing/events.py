"""Factories for history events and orchestrator-queue messages, for tests.

Every payload argument (inputs, results, event and queue data, outputs) takes a plain Python value
and JSON-encodes it, exactly as the SDK does before storing it. To store text that is *not* what
``json.dumps`` would produce (for example deliberately invalid JSON), wrap it in :class:`Raw`::

    activity_completed(3, source=2, result={"total": 5})     # stores '{"total":5}'
    activity_completed(3, source=2, result=Raw("not json"))  # stores 'not json' as is

Event factories take the ``event_id`` first (ids are dense and 1-based per execution) and, for
completions and cancellations, the ``source`` event id of the scheduling event. Timestamps
default to 0; pass ``timestamp_ms=`` when a test depends on them.

A small history, built by hand::

    history = [
        started("Greet", input="ada"),
        activity_scheduled(2, "Hello", "ada"),
        activity_completed(3, source=2, result="hello ada"),
    ]

Message factories (``start_msg``, ``activity_done``, ``timer_msg`` …) build what a turn consumes;
completion messages default to ``execution_id=1``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from duroxide.errors import ErrorCategory, ErrorDetails
from duroxide.history import (
    ActivityCancelRequested,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    CustomStatusUpdated,
    ExternalEvent,
    ExternalSubscribed,
    ExternalSubscribedCancelled,
    KeyValueCleared,
    KeyValuesCleared,
    KeyValueSet,
    OrchestrationCancelRequested,
    OrchestrationChained,
    OrchestrationCompleted,
    OrchestrationContinuedAsNew,
    OrchestrationFailed,
    OrchestrationStarted,
    QueueEventDelivered,
    QueueSubscribed,
    QueueSubscriptionCancelled,
    SubOrchestrationCancelRequested,
    SubOrchestrationCompleted,
    SubOrchestrationFailed,
    SubOrchestrationScheduled,
    SystemCall,
    TimerCreated,
    TimerFired,
)
from duroxide.serialization import encode
from duroxide.work_items import (
    ActivityCompletedMsg,
    ActivityFailedMsg,
    CancelRequested,
    ContinueAsNew,
    EventRaised,
    QueueMessage,
    StartOrchestration,
    SubOrchCompletedMsg,
    SubOrchFailedMsg,
    TimerFiredMsg,
)

__all__ = [
    "Raw",
    "activity_cancel_requested",
    "activity_completed",
    "activity_done",
    "activity_error",
    "activity_failed",
    "activity_scheduled",
    "app_error",
    "cancel_msg",
    "cancel_requested",
    "completed",
    "continue_msg",
    "continued_as_new",
    "custom_status_updated",
    "enqueue_msg",
    "external_event",
    "external_subscribed",
    "external_subscription_cancelled",
    "failed",
    "kv_cleared",
    "kv_set",
    "kvs_cleared",
    "new_guid_recorded",
    "orchestration_chained",
    "payload",
    "queue_delivered",
    "queue_subscribed",
    "queue_subscription_cancelled",
    "raise_msg",
    "start_msg",
    "started",
    "sub_done",
    "sub_error",
    "sub_orch_cancel_requested",
    "sub_orch_completed",
    "sub_orch_failed",
    "sub_orch_scheduled",
    "system_call",
    "timer_created",
    "timer_fired",
    "timer_msg",
    "utc_now_recorded",
]


@dataclass(frozen=True, slots=True)
class Raw:
    """Payload text stored exactly as given (``None`` stores no payload at all)."""

    text: str | None


def payload(value: Any) -> str | None:
    """The stored form of ``value``: its JSON text, or the text of a :class:`Raw` as is."""
    if isinstance(value, Raw):
        return value.text
    return encode(value)


def app_error(message: str, kind: str = "") -> ErrorDetails:
    """Error details of category ``application``, as an activity failure carries."""
    return ErrorDetails(category=ErrorCategory.APPLICATION, message=message, kind=kind)


# --- orchestration lifecycle -------------------------------------------------------------------


def started(
    name: str = "O",
    input: Any = None,
    *,
    version: str = "1.0.0",
    event_id: int = 1,
    timestamp_ms: int = 0,
    parent_instance_id: str | None = None,
    parent_execution_id: int | None = None,
    parent_event_id: int | None = None,
    carried_queue: Iterable[tuple[str, Any]] = (),
    custom_status: str | None = None,
    kv: Mapping[str, str | tuple[str, int]] | None = None,
    trace_context: str | None = None,
) -> OrchestrationStarted:
    """``OrchestrationStarted`` (always event 1 of an execution).

    ``carried_queue`` is ``[(queue, value), …]`` (values JSON-encoded); ``kv`` maps a key to its
    raw string value, or to ``(value, updated_at_ms)``.
    """
    return OrchestrationStarted(
        event_id=event_id,
        timestamp_ms=timestamp_ms,
        name=name,
        version=version,
        input=payload(input),
        parent_instance_id=parent_instance_id,
        parent_execution_id=parent_execution_id,
        parent_event_id=parent_event_id,
        carried_queue=[[queue, payload(value)] for queue, value in carried_queue],  # type: ignore[misc]
        custom_status=custom_status,
        kv=_kv_state(kv),
        trace_context=trace_context,
    )


def completed(
    event_id: int, output: Any = None, *, timestamp_ms: int = 0
) -> OrchestrationCompleted:
    return OrchestrationCompleted(
        event_id=event_id, timestamp_ms=timestamp_ms, output=payload(output)
    )


def failed(
    event_id: int, message: str, *, category: ErrorCategory = ErrorCategory.APPLICATION,
    kind: str = "", timestamp_ms: int = 0,
) -> OrchestrationFailed:  # fmt: skip
    error = ErrorDetails(category=category, message=message, kind=kind)
    return OrchestrationFailed(event_id=event_id, timestamp_ms=timestamp_ms, error=error)


def continued_as_new(
    event_id: int, input: Any = None, *, version: str | None = None, timestamp_ms: int = 0
) -> OrchestrationContinuedAsNew:
    return OrchestrationContinuedAsNew(
        event_id=event_id, timestamp_ms=timestamp_ms, input=payload(input), version=version
    )


def cancel_requested(
    event_id: int, reason: str = "", *, timestamp_ms: int = 0
) -> OrchestrationCancelRequested:
    return OrchestrationCancelRequested(event_id=event_id, timestamp_ms=timestamp_ms, reason=reason)


# --- activities --------------------------------------------------------------------------------


def activity_scheduled(
    event_id: int, name: str, input: Any = None, *, session_id: str | None = None,
    tag: str | None = None, timestamp_ms: int = 0,
) -> ActivityScheduled:  # fmt: skip
    return ActivityScheduled(
        event_id=event_id, timestamp_ms=timestamp_ms, name=name, input=payload(input),
        session_id=session_id, tag=tag,
    )  # fmt: skip


def activity_completed(
    event_id: int, source: int, result: Any = None, *, timestamp_ms: int = 0
) -> ActivityCompleted:
    return ActivityCompleted(
        event_id=event_id, timestamp_ms=timestamp_ms, source_event_id=source,
        result=payload(result),
    )  # fmt: skip


def activity_failed(
    event_id: int, source: int, message: str, *, kind: str = "", timestamp_ms: int = 0
) -> ActivityFailed:
    return ActivityFailed(
        event_id=event_id, timestamp_ms=timestamp_ms, source_event_id=source,
        error=app_error(message, kind),
    )  # fmt: skip


def activity_cancel_requested(
    event_id: int, source: int, reason: str = "lost a race", *, timestamp_ms: int = 0
) -> ActivityCancelRequested:
    return ActivityCancelRequested(
        event_id=event_id, timestamp_ms=timestamp_ms, source_event_id=source, reason=reason
    )


# --- timers ------------------------------------------------------------------------------------


def timer_created(event_id: int, fire_at_ms: int, *, timestamp_ms: int = 0) -> TimerCreated:
    return TimerCreated(event_id=event_id, timestamp_ms=timestamp_ms, fire_at_ms=fire_at_ms)


def timer_fired(
    event_id: int, source: int, fire_at_ms: int = 0, *, timestamp_ms: int = 0
) -> TimerFired:
    return TimerFired(
        event_id=event_id, timestamp_ms=timestamp_ms, source_event_id=source, fire_at_ms=fire_at_ms
    )


# --- external events and queues ----------------------------------------------------------------


def external_subscribed(event_id: int, name: str, *, timestamp_ms: int = 0) -> ExternalSubscribed:
    return ExternalSubscribed(event_id=event_id, timestamp_ms=timestamp_ms, name=name)


def external_event(
    event_id: int, name: str, data: Any = None, *, timestamp_ms: int = 0
) -> ExternalEvent:
    return ExternalEvent(
        event_id=event_id, timestamp_ms=timestamp_ms, name=name, data=payload(data)
    )


def external_subscription_cancelled(
    event_id: int, source: int, *, timestamp_ms: int = 0
) -> ExternalSubscribedCancelled:
    return ExternalSubscribedCancelled(
        event_id=event_id, timestamp_ms=timestamp_ms, source_event_id=source
    )


def queue_subscribed(event_id: int, name: str, *, timestamp_ms: int = 0) -> QueueSubscribed:
    return QueueSubscribed(event_id=event_id, timestamp_ms=timestamp_ms, name=name)


def queue_delivered(
    event_id: int, name: str, data: Any = None, *, timestamp_ms: int = 0
) -> QueueEventDelivered:
    return QueueEventDelivered(
        event_id=event_id, timestamp_ms=timestamp_ms, name=name, data=payload(data)
    )


def queue_subscription_cancelled(
    event_id: int, source: int, *, timestamp_ms: int = 0
) -> QueueSubscriptionCancelled:
    return QueueSubscriptionCancelled(
        event_id=event_id, timestamp_ms=timestamp_ms, source_event_id=source
    )


# --- sub-orchestrations and detached starts ----------------------------------------------------


def sub_orch_scheduled(
    event_id: int, name: str, input: Any = None, *, instance_id: str | None = None,
    parent: str = "i", version: str | None = None, timestamp_ms: int = 0,
) -> SubOrchestrationScheduled:  # fmt: skip
    """Without ``instance_id`` the child has the default id ``"{parent}::sub::{event_id}"``."""
    return SubOrchestrationScheduled(
        event_id=event_id, timestamp_ms=timestamp_ms, name=name,
        instance_id=instance_id if instance_id is not None else f"{parent}::sub::{event_id}",
        input=payload(input), version=version, explicit_id=instance_id is not None,
    )  # fmt: skip


def sub_orch_completed(
    event_id: int, source: int, result: Any = None, *, timestamp_ms: int = 0
) -> SubOrchestrationCompleted:
    return SubOrchestrationCompleted(
        event_id=event_id, timestamp_ms=timestamp_ms, source_event_id=source,
        result=payload(result),
    )  # fmt: skip


def sub_orch_failed(
    event_id: int, source: int, message: str, *, kind: str = "", timestamp_ms: int = 0
) -> SubOrchestrationFailed:
    return SubOrchestrationFailed(
        event_id=event_id, timestamp_ms=timestamp_ms, source_event_id=source,
        error=app_error(message, kind),
    )  # fmt: skip


def sub_orch_cancel_requested(
    event_id: int, source: int, reason: str = "lost a race", *, timestamp_ms: int = 0
) -> SubOrchestrationCancelRequested:
    return SubOrchestrationCancelRequested(
        event_id=event_id, timestamp_ms=timestamp_ms, source_event_id=source, reason=reason
    )


def orchestration_chained(
    event_id: int, name: str, instance_id: str, input: Any = None, *,
    version: str | None = None, timestamp_ms: int = 0,
) -> OrchestrationChained:  # fmt: skip
    return OrchestrationChained(
        event_id=event_id, timestamp_ms=timestamp_ms, name=name, instance_id=instance_id,
        input=payload(input), version=version,
    )  # fmt: skip


# --- custom status, KV, recorded values --------------------------------------------------------


def custom_status_updated(
    event_id: int, status: str | None, *, timestamp_ms: int = 0
) -> CustomStatusUpdated:
    """Custom status is a raw string (not JSON-encoded); ``None`` records a reset."""
    return CustomStatusUpdated(event_id=event_id, timestamp_ms=timestamp_ms, status=status)


def kv_set(event_id: int, key: str, value: str, *, timestamp_ms: int = 0) -> KeyValueSet:
    """KV values are raw strings (not JSON-encoded)."""
    return KeyValueSet(event_id=event_id, timestamp_ms=timestamp_ms, key=key, value=value)


def kv_cleared(event_id: int, key: str, *, timestamp_ms: int = 0) -> KeyValueCleared:
    return KeyValueCleared(event_id=event_id, timestamp_ms=timestamp_ms, key=key)


def kvs_cleared(event_id: int, *, timestamp_ms: int = 0) -> KeyValuesCleared:
    return KeyValuesCleared(event_id=event_id, timestamp_ms=timestamp_ms)


def system_call(
    event_id: int, op: str, value: Any, args: Iterable[str] = (), *, timestamp_ms: int = 0
) -> SystemCall:
    """A recorded nondeterministic value (``utc_now``, ``new_guid`` or ``kv_read``)."""
    return SystemCall(
        event_id=event_id, timestamp_ms=timestamp_ms, op=op, value=value, args=list(args)
    )


def utc_now_recorded(event_id: int, now_ms: int, *, timestamp_ms: int = 0) -> SystemCall:
    return system_call(event_id, "utc_now", now_ms, timestamp_ms=timestamp_ms)


def new_guid_recorded(event_id: int, guid: str, *, timestamp_ms: int = 0) -> SystemCall:
    return system_call(event_id, "new_guid", guid, timestamp_ms=timestamp_ms)


# --- messages ----------------------------------------------------------------------------------


def start_msg(
    name: str = "O", input: Any = None, *, version: str | None = None,
    parent_instance_id: str | None = None, parent_execution_id: int | None = None,
    parent_event_id: int | None = None, trace_context: str | None = None,
) -> StartOrchestration:  # fmt: skip
    """Start an instance; without ``version`` the latest registered version runs."""
    return StartOrchestration(
        name=name, version=version, input=payload(input), parent_instance_id=parent_instance_id,
        parent_execution_id=parent_execution_id, parent_event_id=parent_event_id,
        trace_context=trace_context,
    )  # fmt: skip


def continue_msg(
    execution_id: int, name: str = "O", input: Any = None, *, version: str | None = None,
    carried_queue: Iterable[tuple[str, Any]] = (), custom_status: str | None = None,
    kv: Mapping[str, str | tuple[str, int]] | None = None,
) -> ContinueAsNew:  # fmt: skip
    """Start execution ``execution_id`` of a continued-as-new instance."""
    return ContinueAsNew(
        execution_id=execution_id, name=name, version=version, input=payload(input),
        carried_queue=[[queue, payload(value)] for queue, value in carried_queue],  # type: ignore[misc]
        custom_status=custom_status, kv=_kv_state(kv),
    )  # fmt: skip


def activity_done(
    activity_id: int, result: Any = None, *, execution_id: int = 1
) -> ActivityCompletedMsg:
    """An activity's result; ``activity_id`` is the event id of its ``ActivityScheduled``."""
    return ActivityCompletedMsg(
        execution_id=execution_id, activity_id=activity_id, result=payload(result)
    )


def activity_error(
    activity_id: int, message: str, *, kind: str = "", execution_id: int = 1
) -> ActivityFailedMsg:
    """An activity raised: ``message`` is what ``str(exception)`` shows in the orchestration."""
    return ActivityFailedMsg(
        execution_id=execution_id, activity_id=activity_id, error=app_error(message, kind)
    )


def timer_msg(timer_id: int, fire_at_ms: int = 0, *, execution_id: int = 1) -> TimerFiredMsg:
    """A timer fired; ``timer_id`` is the event id of its ``TimerCreated``."""
    return TimerFiredMsg(execution_id=execution_id, timer_id=timer_id, fire_at_ms=fire_at_ms)


def raise_msg(name: str, data: Any = None) -> EventRaised:
    """``client.raise_event(instance, name, data)``."""
    return EventRaised(name=name, data=payload(data))


def enqueue_msg(queue: str, data: Any = None) -> QueueMessage:
    """``client.enqueue_event(instance, queue, data)``."""
    return QueueMessage(queue=queue, data=payload(data))


def cancel_msg(reason: str = "") -> CancelRequested:
    """``client.cancel_instance(instance, reason)`` (also what a parent sends its children)."""
    return CancelRequested(reason=reason)


def sub_done(event_id: int, result: Any = None, *, execution_id: int = 1) -> SubOrchCompletedMsg:
    """A child completed; ``event_id`` is the parent's ``SubOrchestrationScheduled`` event."""
    return SubOrchCompletedMsg(execution_id=execution_id, event_id=event_id, result=payload(result))


def sub_error(event_id: int, message: str, *, execution_id: int = 1) -> SubOrchFailedMsg:
    """A child failed with ``message``."""
    return SubOrchFailedMsg(execution_id=execution_id, event_id=event_id, error=app_error(message))


def _kv_state(kv: Mapping[str, str | tuple[str, int]] | None) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for key, entry in (kv or {}).items():
        value, updated = (entry, 0) if isinstance(entry, str) else entry
        out[key] = [value, updated]
    return out
