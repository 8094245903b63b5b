"""Messages on the two queues.

The **orchestrator queue** holds messages addressed to an instance (start, completions, timers,
events, cancellation, continue-as-new); a turn consumes all visible messages of one instance. The
**worker queue** holds one ``ActivityWorkItem`` per scheduled activity.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from typing import Any, ClassVar

from duroxide.errors import ErrorDetails


class MessageKind(StrEnum):
    START = "StartOrchestration"
    CONTINUE_AS_NEW = "ContinueAsNew"
    ACTIVITY_COMPLETED = "ActivityCompleted"
    ACTIVITY_FAILED = "ActivityFailed"
    TIMER_FIRED = "TimerFired"
    EVENT_RAISED = "ExternalRaised"
    QUEUE_MESSAGE = "QueueMessage"
    SUB_ORCHESTRATION_COMPLETED = "SubOrchCompleted"
    SUB_ORCHESTRATION_FAILED = "SubOrchFailed"
    CANCEL = "CancelInstance"


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    KIND: ClassVar[MessageKind]

    @property
    def kind(self) -> str:
        return self.KIND.value

    def to_json(self) -> str:
        return json.dumps(_to_json_fields(self), ensure_ascii=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True, kw_only=True)
class StartOrchestration(Message):
    KIND = MessageKind.START
    name: str
    version: str | None = None
    input: str | None = None
    parent_instance_id: str | None = None
    parent_execution_id: int | None = None
    parent_event_id: int | None = None
    trace_context: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ContinueAsNew(Message):
    """Starts the next execution; carries what survives continue-as-new."""

    KIND = MessageKind.CONTINUE_AS_NEW
    execution_id: int  # the new execution
    name: str
    version: str | None = None
    input: str | None = None
    parent_instance_id: str | None = None
    parent_execution_id: int | None = None
    parent_event_id: int | None = None
    carried_queue: list[list[str]] = field(default_factory=list)
    custom_status: str | None = None
    kv: dict[str, list[Any]] = field(default_factory=dict)
    trace_context: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityCompletedMsg(Message):
    KIND = MessageKind.ACTIVITY_COMPLETED
    execution_id: int
    activity_id: int
    result: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityFailedMsg(Message):
    KIND = MessageKind.ACTIVITY_FAILED
    execution_id: int
    activity_id: int
    error: ErrorDetails


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerFiredMsg(Message):
    KIND = MessageKind.TIMER_FIRED
    execution_id: int
    timer_id: int
    fire_at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRaised(Message):
    KIND = MessageKind.EVENT_RAISED
    name: str
    data: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueMessage(Message):
    KIND = MessageKind.QUEUE_MESSAGE
    queue: str
    data: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SubOrchCompletedMsg(Message):
    KIND = MessageKind.SUB_ORCHESTRATION_COMPLETED
    execution_id: int  # the parent's execution
    event_id: int  # the parent's SubOrchestrationScheduled event
    result: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SubOrchFailedMsg(Message):
    KIND = MessageKind.SUB_ORCHESTRATION_FAILED
    execution_id: int
    event_id: int
    error: ErrorDetails


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelRequested(Message):
    KIND = MessageKind.CANCEL
    reason: str = ""


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.KIND.value: cls
    for cls in (
        StartOrchestration, ContinueAsNew, ActivityCompletedMsg, ActivityFailedMsg,
        TimerFiredMsg, EventRaised, QueueMessage, SubOrchCompletedMsg, SubOrchFailedMsg,
        CancelRequested,
    )
}  # fmt: skip


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _to_json_fields(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _field_names(type(obj)):
        value = getattr(obj, name)
        out[name] = value.to_json() if isinstance(value, ErrorDetails) else value
    return out


def message_from_json(kind: str, payload: str) -> Message:
    """Decode a stored message; raises ``ValueError`` when it cannot be understood."""
    cls = MESSAGE_TYPES.get(kind)
    if cls is None:
        raise ValueError(f"unknown message kind {kind!r}")
    try:
        fields = json.loads(payload)
        if not isinstance(fields, dict):
            raise TypeError("payload is not a JSON object")
        known = _field_names(cls)
        fields = {k: v for k, v in fields.items() if k in known}  # newer versions may add fields
        if isinstance(fields.get("error"), dict):
            fields["error"] = ErrorDetails.from_json(fields["error"])
        return cls(**fields)
    except (TypeError, KeyError, ValueError) as exc:
        raise ValueError(f"undecodable {kind} message: {exc}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class QueuedMessage:
    """A message as fetched from the orchestrator queue.

    ``message`` is None when the stored payload could not be decoded (``decode_error`` says why);
    the runtime treats such a message as poison instead of crashing on it.
    """

    seq: int
    kind: str
    message: Message | None
    attempt_count: int
    decode_error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundMessage:
    """A message a turn sends: to itself (timers, continue-as-new), a child or its parent."""

    instance_id: str
    message: Message
    visible_at_ms: int | None = None  # None: visible at once


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityWorkItem:
    """One scheduled activity on the worker queue.

    Carries the orchestration's name and version so a worker never reads history.
    """

    instance_id: str
    execution_id: int
    activity_id: int
    name: str
    input: str | None = None
    session_id: str | None = None
    tag: str | None = None
    orchestration_name: str = ""
    orchestration_version: str = ""
    trace_context: str | None = None

    def to_json(self) -> str:
        return json.dumps(_to_json_fields(self), ensure_ascii=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, payload: str) -> ActivityWorkItem:
        """Decode a stored work item (unknown fields are ignored); ValueError/TypeError if it
        is not one."""
        fields = json.loads(payload)
        if not isinstance(fields, dict):
            raise TypeError("work item is not a JSON object")
        known = _field_names(cls)
        return cls(**{k: v for k, v in fields.items() if k in known})


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityKey:
    """Identifies a scheduled activity (and its worker-queue row)."""

    instance_id: str
    execution_id: int
    activity_id: int
