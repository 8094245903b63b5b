"""The provider contract: the only way the runtime and client touch storage.

``Provider`` is what dispatchers and the client need; ``ProviderAdmin`` is the management surface
(listing, deletion, pruning, metrics). Dispatchers never import a database driver.

Semantics every implementation guarantees (checked by ``tests/providers``):

* **Instance lock.** ``fetch_orchestration_item`` locks one instance that has at least one visible
  message and no live lock, and returns its current-execution history plus *all* its visible
  messages (each fetch adds 1 to each message's ``attempt_count``). Messages that arrive while the
  lock is held are not part of the item; they wait for the next turn.
* **Atomic ack.** ``ack_orchestration_item`` commits everything in one transaction or nothing. It
  rejects an unknown or expired token (``LockLostError``) — which is also what happens when the
  instance was deleted meanwhile, so an in-flight ack can never recreate it. A duplicate
  ``(instance, execution, event_id)`` fails the whole ack. Old history is never rewritten.
* **Peek-lock work items.** ``fetch_work_item`` locks one activity; ``ack_work_item`` deletes it
  and enqueues its completion atomically, and fails with ``LockLostError`` if the lock was lost
  (the activity was cancelled, or its lock expired and another worker took it).
* **Admission order.** Among claimable instances, the oldest is claimed first, except that a
  start enqueued by a client counts as ``START_BIAS_MS`` younger: the timers, completions and
  events of instances already running go first, so a burst of new starts cannot hold them back,
  and a start waits at most ``START_BIAS_MS`` behind them. It orders; it never delays a claim.
* **Full batches.** ``fetch_orchestration_items`` and ``fetch_work_items`` return fewer items
  than asked for only when no more is claimable by this caller at that moment (work it may not
  take, such as a session owned elsewhere or an instance left to the dispatcher that has it
  cached, does not count; nor does work a concurrent fetch holds). The claim loop relies on
  it: after a short batch it waits for a notification instead of asking again at once, so a
  provider that capped its batches would leave work waiting for the poll interval.
* **Times** come from the provider's clock (the database's, for a server) in milliseconds.
* **Poison.** Attempt counts are stored; the runtime fails work whose count exceeds its limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from duroxide.errors import ErrorDetails, ProviderError
from duroxide.history import Event
from duroxide.providers.wakeup import WakeupHub
from duroxide.types import (
    DeleteInstanceResult,
    ExecutionInfo,
    InstanceFilter,
    InstanceInfo,
    InstanceTree,
    OrchestrationStats,
    PruneOptions,
    PruneResult,
    QueueDepths,
    SystemMetrics,
    TagFilterSpec,
)
from duroxide.work_items import (
    ActivityKey,
    ActivityWorkItem,
    Message,
    OutboundMessage,
    QueuedMessage,
)

#: How much younger a client's start counts in the claim order (see "Admission order").
START_BIAS_MS = 1000

# --- what a fetch returns ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceState:
    """The stored instance row, as a turn sees it."""

    orchestration_name: str
    orchestration_version: str
    status: str  # "Running" | "Completed" | "Failed"
    current_execution_id: int
    custom_status: str | None = None
    custom_status_version: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class OrchestrationItem:
    """One locked instance with its history and pending messages."""

    instance_id: str
    lock_token: str
    now_ms: int  # the provider's clock when the lock was taken
    instance: InstanceState | None  # None: the instance has never run a turn
    execution_id: int  # current execution (1 for a new instance)
    #: The current execution's history, or None when the fetch was made with the
    #: ``dispatcher_id`` that ran the instance's previous turn (it likely has the history cached;
    #: on a miss it calls ``read_history``).
    history: list[Event] | None
    history_len: int  # number of events in the current execution
    messages: list[QueuedMessage]
    #: Set when a stored history event could not be decoded (``history`` is then None); the
    #: runtime backs off and, after ``max_attempts``, fails the instance as poison.
    history_error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkItem:
    """One locked activity."""

    lock_token: str
    item: ActivityWorkItem
    attempt_count: int
    #: Set when the stored payload could not be decoded; ``item`` then holds only the ids
    #: (from the row's columns) so the runtime can back off, and poison it in the end.
    decode_error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionConfig:
    """How a worker takes session-bound activities.

    ``owner_id`` identifies the owner (the runtime's ``worker_node_id`` when set, so several
    slots or a restarted pod share ownership). A worker owns at most ``max_sessions`` live sessions;
    a session's lock lasts ``lock_timeout_ms`` from its last claim or renewal.
    """

    owner_id: str
    max_sessions: int
    lock_timeout_ms: int


# --- what an ack writes ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceUpdate:
    """The instance and execution rows after a turn."""

    orchestration_name: str
    orchestration_version: str
    execution_id: int  # the execution the turn's events belong to
    status: str  # instance status: "Running" | "Completed" | "Failed"
    execution_status: str  # "Running" | "Completed" | "Failed" | "ContinuedAsNew"
    output: str | None = None
    error: ErrorDetails | None = None
    next_execution_id: int | None = None  # set by continue-as-new: becomes the current execution
    parent_instance_id: str | None = None
    parent_execution_id: int | None = None
    parent_event_id: int | None = None
    custom_status: str | None = None
    custom_status_changed: bool = False
    trace_context: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class KvChanges:
    """KV rows to write: ``upserts`` maps key -> (value, updated_at_ms); ``deletes`` are keys."""

    upserts: dict[str, tuple[str, int]] = field(default_factory=dict)
    deletes: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.upserts or self.deletes)


@dataclass(frozen=True, slots=True, kw_only=True)
class OrchestrationAck:
    """Everything one turn commits. ``instance`` None: just consume the messages."""

    instance: InstanceUpdate | None
    events: list[Event] = field(default_factory=list)
    worker_items: list[ActivityWorkItem] = field(default_factory=list)
    orchestrator_items: list[OutboundMessage] = field(default_factory=list)
    cancelled_activities: list[ActivityKey] = field(default_factory=list)
    kv: KvChanges = field(default_factory=KvChanges)


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceStatus:
    """What a client status read needs, in one query."""

    orchestration_name: str
    orchestration_version: str
    status: str
    current_execution_id: int
    output: str | None
    error: ErrorDetails | None
    custom_status: str | None
    custom_status_version: int


# --- the contract ------------------------------------------------------------------------------


@runtime_checkable
class Provider(Protocol):
    """Storage for the runtime and client. Every method is safe to call from any thread."""

    @property
    def wakeups(self) -> WakeupHub:
        """In-process wake-up hub: fires when this provider (or, for a server, anyone) enqueues."""
        ...

    def now_ms(self) -> int:
        """The provider's clock."""
        ...

    # orchestrator queue
    def enqueue_orchestrator(
        self, instance_id: str, message: Message, *, delay_ms: int = 0
    ) -> None: ...
    def fetch_orchestration_item(
        self, lock_timeout_ms: int, *, dispatcher_id: str | None = None
    ) -> OrchestrationItem | None:
        """Lock one instance and return it; see the module docstring. With ``dispatcher_id``,
        the provider remembers which dispatcher acked each instance's last turn and omits the
        history when the same dispatcher fetches it again (``item.history`` is None)."""
        ...

    def read_history(
        self, instance_id: str, execution_id: int, after_event_id: int = 0
    ) -> list[Event]:
        """Events of one execution with ``event_id > after_event_id``, in order."""
        ...

    def fetch_orchestration_items(
        self, lock_timeout_ms: int, max_items: int, *, dispatcher_id: str | None = None
    ) -> list[OrchestrationItem]:
        """Lock up to ``max_items`` distinct instances at once (one round trip); fewer only when
        no more is claimable (see "Full batches")."""
        ...

    def ack_orchestration_items(
        self, acks: Sequence[tuple[str, OrchestrationAck]]
    ) -> list[ProviderError | None]:
        """Commit several turns in one transaction (a group commit); each ack is still
        all-or-nothing on its own: the result says, per ack, None (committed) or the error that
        rolled back just that one (``LockLostError`` …)."""
        ...

    def ack_orchestration_item(self, lock_token: str, ack: OrchestrationAck) -> None: ...
    def abandon_orchestration_item(
        self, lock_token: str, *, delay_ms: int = 0, ignore_attempt: bool = False
    ) -> None: ...
    def renew_orchestration_item_lock(self, lock_token: str, lock_timeout_ms: int) -> bool: ...

    # worker queue
    def fetch_work_item(
        self,
        lock_timeout_ms: int,
        tag_filter: TagFilterSpec,
        session: SessionConfig | None = None,
    ) -> WorkItem | None: ...
    def ack_work_item(self, lock_token: str, completion: OutboundMessage | None) -> None: ...
    def fetch_work_items(
        self,
        lock_timeout_ms: int,
        max_items: int,
        tag_filter: TagFilterSpec,
        session: SessionConfig | None = None,
    ) -> list[WorkItem]:
        """Peek-lock up to ``max_items`` activities at once (one round trip); fewer only when no
        more is claimable (see "Full batches")."""
        ...

    def ack_work_items(
        self, acks: Sequence[tuple[str, OutboundMessage | None]]
    ) -> list[ProviderError | None]:
        """Ack several activities in one transaction; per-ack outcome as for
        ``ack_orchestration_items``."""
        ...

    def abandon_work_item(
        self, lock_token: str, *, delay_ms: int = 0, ignore_attempt: bool = False
    ) -> None: ...
    def renew_work_item_lock(self, lock_token: str, lock_timeout_ms: int) -> bool: ...

    # sessions
    def renew_session_locks(
        self, owner_ids: Sequence[str], lock_timeout_ms: int, idle_timeout_ms: int
    ) -> int:
        """Extend the locks of the owners' sessions that saw work within ``idle_timeout_ms``;
        release the idle ones. Returns how many were renewed."""
        ...

    def cleanup_orphaned_sessions(self) -> int:
        """Delete expired sessions that have no pending work. Returns how many."""
        ...

    # reads for clients
    def get_instance_status(self, instance_id: str) -> InstanceStatus | None: ...
    def get_kv_value(self, instance_id: str, key: str) -> str | None: ...
    def get_kv_all_values(self, instance_id: str) -> dict[str, str]: ...

    def close(self) -> None: ...


@runtime_checkable
class ProviderAdmin(Protocol):
    """Management operations. Both providers implement them."""

    def list_instances(
        self,
        filter: InstanceFilter | None = None,
        *,
        after_id: str | None = None,
        limit: int | None = None,
    ) -> list[InstanceInfo]:
        """Instances matching ``filter`` ordered by id, starting after ``after_id`` (a cursor)."""
        ...

    def get_instance_info(self, instance_id: str) -> InstanceInfo | None: ...
    def get_execution_info(self, instance_id: str, execution_id: int) -> ExecutionInfo | None: ...
    def list_executions(self, instance_id: str) -> list[int]: ...
    def get_instance_tree(self, instance_id: str) -> InstanceTree | None: ...
    def delete_instance(self, instance_id: str, *, force: bool = False) -> DeleteInstanceResult: ...
    def delete_instances_bulk(self, filter: InstanceFilter) -> DeleteInstanceResult: ...
    def prune_executions(self, instance_id: str, options: PruneOptions) -> PruneResult: ...
    def prune_executions_bulk(
        self, filter: InstanceFilter, options: PruneOptions
    ) -> PruneResult: ...
    def get_orchestration_stats(self, instance_id: str) -> OrchestrationStats | None: ...
    def get_system_metrics(self) -> SystemMetrics: ...
    def get_queue_depths(self) -> QueueDepths: ...


class BatchOperations:
    """The batch operations built from the single ones, one round trip per item: a provider
    that cannot do better inherits these; the SQLite and PostgreSQL providers override them."""

    def fetch_orchestration_items(
        self, lock_timeout_ms: int, max_items: int, *, dispatcher_id: str | None = None
    ) -> list[OrchestrationItem]:
        items: list[OrchestrationItem] = []
        while len(items) < max_items:
            item = self.fetch_orchestration_item(  # type: ignore[attr-defined]
                lock_timeout_ms, dispatcher_id=dispatcher_id
            )
            if item is None:
                break
            items.append(item)
        return items

    def ack_orchestration_items(
        self, acks: Sequence[tuple[str, OrchestrationAck]]
    ) -> list[ProviderError | None]:
        return [_outcome(self.ack_orchestration_item, token, ack)  # type: ignore[attr-defined]
                for token, ack in acks]  # fmt: skip

    def fetch_work_items(
        self,
        lock_timeout_ms: int,
        max_items: int,
        tag_filter: TagFilterSpec,
        session: SessionConfig | None = None,
    ) -> list[WorkItem]:
        items: list[WorkItem] = []
        while len(items) < max_items:
            item = self.fetch_work_item(  # type: ignore[attr-defined]
                lock_timeout_ms, tag_filter, session
            )
            if item is None:
                break
            items.append(item)
        return items

    def ack_work_items(
        self, acks: Sequence[tuple[str, OutboundMessage | None]]
    ) -> list[ProviderError | None]:
        return [_outcome(self.ack_work_item, token, completion)  # type: ignore[attr-defined]
                for token, completion in acks]  # fmt: skip


def _outcome(ack: Any, token: str, payload: Any) -> ProviderError | None:
    try:
        ack(token, payload)
    except ProviderError as exc:
        return exc
    return None
