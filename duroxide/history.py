"""History events: the append-only record of everything an orchestration decided or observed.

Each event has a dense, 1-based ``event_id`` per execution (assigned by the replay engine, never by
a provider), a ``timestamp_ms`` and, for completions and cancellations, the ``source_event_id`` of
the event that scheduled the work. Events are stored as ``(kind, source_event_id, data)`` where
``data`` is a JSON object of the kind-specific fields.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from typing import Any, ClassVar

from duroxide.errors import ErrorDetails


class EventKind(StrEnum):
    ORCHESTRATION_STARTED = "OrchestrationStarted"
    ORCHESTRATION_COMPLETED = "OrchestrationCompleted"
    ORCHESTRATION_FAILED = "OrchestrationFailed"
    ORCHESTRATION_CONTINUED_AS_NEW = "OrchestrationContinuedAsNew"
    ORCHESTRATION_CANCEL_REQUESTED = "OrchestrationCancelRequested"
    ACTIVITY_SCHEDULED = "ActivityScheduled"
    ACTIVITY_COMPLETED = "ActivityCompleted"
    ACTIVITY_FAILED = "ActivityFailed"
    ACTIVITY_CANCEL_REQUESTED = "ActivityCancelRequested"
    TIMER_CREATED = "TimerCreated"
    TIMER_FIRED = "TimerFired"
    EXTERNAL_SUBSCRIBED = "ExternalSubscribed"
    EXTERNAL_EVENT = "ExternalEvent"
    EXTERNAL_SUBSCRIBED_CANCELLED = "ExternalSubscribedCancelled"
    QUEUE_SUBSCRIBED = "QueueSubscribed"
    QUEUE_EVENT_DELIVERED = "QueueEventDelivered"
    QUEUE_SUBSCRIPTION_CANCELLED = "QueueSubscriptionCancelled"
    SUB_ORCHESTRATION_SCHEDULED = "SubOrchestrationScheduled"
    SUB_ORCHESTRATION_COMPLETED = "SubOrchestrationCompleted"
    SUB_ORCHESTRATION_FAILED = "SubOrchestrationFailed"
    SUB_ORCHESTRATION_CANCEL_REQUESTED = "SubOrchestrationCancelRequested"
    ORCHESTRATION_CHAINED = "OrchestrationChained"
    CUSTOM_STATUS_UPDATED = "CustomStatusUpdated"
    KEY_VALUE_SET = "KeyValueSet"
    KEY_VALUE_CLEARED = "KeyValueCleared"
    KEY_VALUES_CLEARED = "KeyValuesCleared"
    SYSTEM_CALL = "SystemCall"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every history event."""

    KIND: ClassVar[EventKind]
    #: True for events that record a decision of the orchestration code; replay matches them
    #: positionally against what the code does.
    DECISION: ClassVar[bool] = False
    #: True for events that complete the work started by ``source_event_id``.
    COMPLETION: ClassVar[bool] = False
    #: True for engine-written cancellation breadcrumbs (derived again on replay, never matched).
    BREADCRUMB: ClassVar[bool] = False

    event_id: int
    timestamp_ms: int
    source_event_id: int | None = None

    @property
    def kind(self) -> str:
        return self.KIND.value

    def data_json(self) -> str:
        """The kind-specific fields as stored (JSON object text)."""
        return json.dumps(_fields_to_json(self), ensure_ascii=True, separators=(",", ":"))

    def public_data(self) -> str | None:
        """The admin view of ``data``: a JSON string. For a completion it is the payload itself;
        otherwise an object of the event's fields with payloads (``input``, ``data``) embedded
        as JSON values, not as JSON text."""
        data = _fields_to_json(self)
        for name in _PAYLOAD_FIELDS.intersection(data):
            data[name] = _decoded(data[name])
        return json.dumps(data, separators=(",", ":")) if data else None


# --- orchestration lifecycle -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OrchestrationStarted(Event):
    KIND = EventKind.ORCHESTRATION_STARTED
    name: str
    version: str
    input: str | None = None
    parent_instance_id: str | None = None
    parent_execution_id: int | None = None
    parent_event_id: int | None = None
    #: Queue messages not yet dequeued when the previous execution continued as new: [queue, data].
    carried_queue: list[list[str]] = field(default_factory=list)
    custom_status: str | None = None
    #: KV state at the start of this execution: key -> [value, updated_at_ms].
    kv: dict[str, list[Any]] = field(default_factory=dict)
    trace_context: str | None = None

    def public_data(self) -> str | None:
        return json.dumps({"name": self.name, "version": self.version,
                           "input": _decoded(self.input)})  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class OrchestrationCompleted(Event):
    KIND = EventKind.ORCHESTRATION_COMPLETED
    output: str | None = None

    def public_data(self) -> str | None:
        return self.output


@dataclass(frozen=True, slots=True, kw_only=True)
class OrchestrationFailed(Event):
    KIND = EventKind.ORCHESTRATION_FAILED
    error: ErrorDetails


@dataclass(frozen=True, slots=True, kw_only=True)
class OrchestrationContinuedAsNew(Event):
    KIND = EventKind.ORCHESTRATION_CONTINUED_AS_NEW
    input: str | None = None
    version: str | None = None

    def public_data(self) -> str | None:
        return self.input


@dataclass(frozen=True, slots=True, kw_only=True)
class OrchestrationCancelRequested(Event):
    KIND = EventKind.ORCHESTRATION_CANCEL_REQUESTED
    reason: str = ""


# --- activities --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityScheduled(Event):
    KIND = EventKind.ACTIVITY_SCHEDULED
    DECISION = True
    name: str
    input: str | None = None
    session_id: str | None = None
    tag: str | None = None

    def public_data(self) -> str | None:
        data: dict[str, Any] = {"name": self.name, "input": _decoded(self.input)}
        if self.session_id is not None:
            data["session_id"] = self.session_id
        if self.tag is not None:
            data["tag"] = self.tag
        return json.dumps(data)


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityCompleted(Event):
    KIND = EventKind.ACTIVITY_COMPLETED
    COMPLETION = True
    result: str | None = None

    def public_data(self) -> str | None:
        return self.result


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityFailed(Event):
    KIND = EventKind.ACTIVITY_FAILED
    COMPLETION = True
    error: ErrorDetails


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityCancelRequested(Event):
    KIND = EventKind.ACTIVITY_CANCEL_REQUESTED
    BREADCRUMB = True
    reason: str = ""


# --- timers ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerCreated(Event):
    KIND = EventKind.TIMER_CREATED
    DECISION = True
    fire_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerFired(Event):
    KIND = EventKind.TIMER_FIRED
    COMPLETION = True
    fire_at_ms: int


# --- external events and event queues ----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ExternalSubscribed(Event):
    KIND = EventKind.EXTERNAL_SUBSCRIBED
    DECISION = True
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ExternalEvent(Event):
    KIND = EventKind.EXTERNAL_EVENT
    name: str
    data: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExternalSubscribedCancelled(Event):
    KIND = EventKind.EXTERNAL_SUBSCRIBED_CANCELLED
    BREADCRUMB = True


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueSubscribed(Event):
    KIND = EventKind.QUEUE_SUBSCRIBED
    DECISION = True
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueEventDelivered(Event):
    KIND = EventKind.QUEUE_EVENT_DELIVERED
    name: str
    data: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueSubscriptionCancelled(Event):
    KIND = EventKind.QUEUE_SUBSCRIPTION_CANCELLED
    BREADCRUMB = True


# --- sub-orchestrations and detached starts ----------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SubOrchestrationScheduled(Event):
    KIND = EventKind.SUB_ORCHESTRATION_SCHEDULED
    DECISION = True
    name: str
    instance_id: str
    input: str | None = None
    version: str | None = None
    #: True when the code chose the child's id (``schedule_sub_orchestration_with_id``).
    explicit_id: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SubOrchestrationCompleted(Event):
    KIND = EventKind.SUB_ORCHESTRATION_COMPLETED
    COMPLETION = True
    result: str | None = None

    def public_data(self) -> str | None:
        return self.result


@dataclass(frozen=True, slots=True, kw_only=True)
class SubOrchestrationFailed(Event):
    KIND = EventKind.SUB_ORCHESTRATION_FAILED
    COMPLETION = True
    error: ErrorDetails


@dataclass(frozen=True, slots=True, kw_only=True)
class SubOrchestrationCancelRequested(Event):
    KIND = EventKind.SUB_ORCHESTRATION_CANCEL_REQUESTED
    BREADCRUMB = True
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrchestrationChained(Event):
    KIND = EventKind.ORCHESTRATION_CHAINED
    DECISION = True
    name: str
    instance_id: str
    input: str | None = None
    version: str | None = None


# --- custom status, KV, system calls -----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomStatusUpdated(Event):
    KIND = EventKind.CUSTOM_STATUS_UPDATED
    DECISION = True
    status: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyValueSet(Event):
    KIND = EventKind.KEY_VALUE_SET
    DECISION = True
    key: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyValueCleared(Event):
    KIND = EventKind.KEY_VALUE_CLEARED
    DECISION = True
    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyValuesCleared(Event):
    KIND = EventKind.KEY_VALUES_CLEARED
    DECISION = True


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemCall(Event):
    """A recorded nondeterministic value: ``utc_now``, ``new_guid`` or a cross-instance KV read."""

    KIND = EventKind.SYSTEM_CALL
    DECISION = True
    op: str
    value: Any = None
    #: For ``kv_read``: [instance_id, key] that was read.
    args: list[str] = field(default_factory=list)


EVENT_TYPES: dict[str, type[Event]] = {
    cls.KIND.value: cls
    for cls in (
        OrchestrationStarted, OrchestrationCompleted, OrchestrationFailed,
        OrchestrationContinuedAsNew, OrchestrationCancelRequested,
        ActivityScheduled, ActivityCompleted, ActivityFailed, ActivityCancelRequested,
        TimerCreated, TimerFired,
        ExternalSubscribed, ExternalEvent, ExternalSubscribedCancelled,
        QueueSubscribed, QueueEventDelivered, QueueSubscriptionCancelled,
        SubOrchestrationScheduled, SubOrchestrationCompleted, SubOrchestrationFailed,
        SubOrchestrationCancelRequested, OrchestrationChained,
        CustomStatusUpdated, KeyValueSet, KeyValueCleared, KeyValuesCleared, SystemCall,
    )
}  # fmt: skip

TERMINAL_KINDS = frozenset(
    {
        EventKind.ORCHESTRATION_COMPLETED,
        EventKind.ORCHESTRATION_FAILED,
        EventKind.ORCHESTRATION_CONTINUED_AS_NEW,
    }
)


_PAYLOAD_FIELDS = frozenset({"input", "data"})


def _decoded(payload: str | None) -> Any:
    """A stored payload as a JSON value (the admin view embeds it, as the reference SDK)."""
    if payload is None:
        return None
    try:
        return json.loads(payload)
    except ValueError:
        return payload


@cache
def _payload_fields(cls: type[Event]) -> tuple[str, ...]:
    common = {"event_id", "timestamp_ms", "source_event_id"}
    return tuple(f.name for f in dataclasses.fields(cls) if f.name not in common)


def _fields_to_json(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _payload_fields(type(event)):
        value = getattr(event, name)
        out[name] = value.to_json() if isinstance(value, ErrorDetails) else value
    return out


def event_from_record(
    *, kind: str, event_id: int, timestamp_ms: int, source_event_id: int | None, data: str | None
) -> Event:
    """Rebuild an event from its stored columns."""
    cls = EVENT_TYPES.get(kind)
    if cls is None:
        raise ValueError(f"unknown history event kind {kind!r}")
    fields = json.loads(data) if data else {}
    if not isinstance(fields, dict):
        raise ValueError(f"{kind} event data is not a JSON object")
    known = _payload_fields(cls)
    fields = {k: v for k, v in fields.items() if k in known}  # a newer version may add fields
    if "error" in fields and isinstance(fields["error"], dict):
        fields["error"] = ErrorDetails.from_json(fields["error"])
    return cls(
        event_id=event_id, timestamp_ms=timestamp_ms, source_event_id=source_event_id, **fields
    )


def event_to_record(event: Event) -> tuple[str, int, int, int | None, str]:
    """``(kind, event_id, timestamp_ms, source_event_id, data)`` for storage."""
    return (event.kind, event.event_id, event.timestamp_ms, event.source_event_id,
            event.data_json())  # fmt: skip
