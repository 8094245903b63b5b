"""What one orchestration turn takes and produces. Plain data; no I/O."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from duroxide.errors import ErrorDetails
from duroxide.history import Event
from duroxide.work_items import ActivityKey, ActivityWorkItem, Message, OutboundMessage

#: An orchestration: ``fn(ctx, input)`` returning a generator (or, for a function that never
#: yields, the output itself).
Orchestrator = Callable[[Any, Any], Any]


class HandlerLookup(Protocol):
    def resolve_orchestration(
        self, name: str, version: str | None
    ) -> tuple[str, Orchestrator] | None:
        """The handler for ``name`` at ``version`` (the latest when None), with its version."""
        ...


class TurnStatus(StrEnum):
    RUNNING = "running"  # waiting for more messages
    COMPLETED = "completed"
    FAILED = "failed"
    CONTINUED_AS_NEW = "continued_as_new"
    DROPPED = "dropped"  # nothing to run (never started, or already finished): consume messages
    UNREGISTERED = "unregistered"  # this node has no handler for the orchestration/version
    NEEDS_READ = "needs_read"  # a cross-instance KV read must be done, then the turn re-run
    ENGINE_ERROR = "engine_error"  # a bug in the engine: abandon and retry (poison eventually)


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnInput:
    instance_id: str
    execution_id: int
    history: Sequence[Event]
    messages: Sequence[Message]
    now_ms: int
    handlers: HandlerLookup
    #: Values of cross-instance KV reads already done for this turn: (instance, key) -> value.
    kv_reads: Mapping[tuple[str, str], str | None] = field(default_factory=dict)
    #: Reads another instance's KV value for ``get_kv_value_from_instance`` (only for new
    #: reads; the value is recorded in history). Without it, the turn returns NEEDS_READ.
    kv_reader: Callable[[str, str], str | None] | None = None
    #: Source of fresh GUIDs for ``new_guid`` (recorded in history; only called for new ones).
    new_guid: Callable[[], str] | None = None
    #: Fail the instance with this error instead of running its code (poison messages).
    fail_with: ErrorDetails | None = None


@dataclass(slots=True, kw_only=True)
class TurnResult:
    status: TurnStatus
    execution_id: int
    orchestration_name: str = ""
    orchestration_version: str = ""
    new_events: list[Event] = field(default_factory=list)
    worker_items: list[ActivityWorkItem] = field(default_factory=list)
    orchestrator_items: list[OutboundMessage] = field(default_factory=list)
    cancelled_activities: list[ActivityKey] = field(default_factory=list)
    output: str | None = None
    error: ErrorDetails | None = None
    next_execution_id: int | None = None
    parent_instance_id: str | None = None
    parent_execution_id: int | None = None
    parent_event_id: int | None = None
    trace_context: str | None = None
    #: When the execution started (its OrchestrationStarted timestamp).
    started_at_ms: int = 0
    custom_status: str | None = None
    custom_status_changed: bool = False
    kv_upserts: dict[str, tuple[str, int]] = field(default_factory=dict)
    kv_deletes: set[str] = field(default_factory=set)
    #: ``ctx.trace_*`` calls made outside replay: (level, message).
    logs: list[tuple[str, str]] = field(default_factory=list)
    #: UNREGISTERED: the (name, version) that has no handler here.
    missing_handler: tuple[str, str | None] | None = None
    #: NEEDS_READ: the (instance, key) to read.
    pending_read: tuple[str, str] | None = None
    #: Messages dropped as duplicates, stale or for a finished instance (for logs/metrics).
    dropped_messages: int = 0
    #: True when the turn started a new execution (an OrchestrationStarted was written).
    started: bool = False
    #: Set when the engine itself failed (a bug); the dispatcher abandons the item.
    internal_error: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in (TurnStatus.COMPLETED, TurnStatus.FAILED)
