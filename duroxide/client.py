"""``Client``: start, signal, cancel and observe instances; plus the admin operations.

A client talks to the provider only (no runtime needed), so it works from any process. Waits
poll with backoff (5 ms → 100 ms) and wake at once on in-process status notifications.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

from duroxide.errors import (
    InstanceNotFoundError,
    OrchestrationFailedError,
    WaitTimeoutError,
)
from duroxide.history import Event
from duroxide.observability.tracing import current_trace_context
from duroxide.providers.base import InstanceStatus, Provider, ProviderAdmin
from duroxide.providers.wakeup import STATUS
from duroxide.serialization import check_name, check_non_negative_ms, decode, encode
from duroxide.types import (
    DeleteInstanceResult,
    ExecutionInfo,
    HistoryEvent,
    InstanceFilter,
    InstanceInfo,
    InstanceTree,
    OrchestrationResult,
    OrchestrationStats,
    PruneOptions,
    PruneResult,
    QueueDepths,
    SystemMetrics,
)
from duroxide.work_items import CancelRequested, EventRaised, QueueMessage, StartOrchestration

T = TypeVar("T")
DEFAULT_WAIT_MS = 30_000
_MIN_POLL_S, _MAX_POLL_S = 0.005, 0.1


class Client:
    def __init__(self, provider: Provider) -> None:
        if not isinstance(provider, Provider):
            raise TypeError(f"Client needs a provider, got {type(provider).__name__}")
        self._provider = provider

    @property
    def provider(self) -> Provider:
        return self._provider

    # --- starting and signalling ---------------------------------------------------------------

    def start_orchestration(self, instance_id: str, orchestration_name: str, input: Any = None
                            ) -> None:  # fmt: skip
        """Start ``orchestration_name`` (its latest version) as ``instance_id``. Starting an id
        that already exists is ignored by the runtime."""
        self._start(instance_id, orchestration_name, input, None)

    def start_orchestration_versioned(
        self, instance_id: str, orchestration_name: str, input: Any, version: str
    ) -> None:
        self._start(instance_id, orchestration_name, input, check_name(version, "version"))

    start_orchestration_typed = start_orchestration
    start_orchestration_versioned_typed = start_orchestration_versioned

    def _start(self, instance_id: str, name: str, input: Any, version: str | None) -> None:
        check_name(instance_id, "instance id")
        check_name(name, "orchestration name")
        payload = encode(input, what="orchestration input")
        start = StartOrchestration(name=name, version=version, input=payload,
                                   trace_context=current_trace_context())  # fmt: skip
        self._provider.enqueue_orchestrator(instance_id, start)

    def raise_event(self, instance_id: str, event_name: str, data: Any = None) -> None:
        """Deliver an external event to ``wait_for_event(event_name)``. An event raised before
        the orchestration waits for it is kept until it does (within the same execution)."""
        check_name(instance_id, "instance id")
        check_name(event_name, "event name")
        payload = encode(data, what="event data")
        self._provider.enqueue_orchestrator(instance_id, EventRaised(name=event_name, data=payload))

    raise_event_typed = raise_event

    def enqueue_event(self, instance_id: str, queue_name: str, data: Any = None) -> None:
        """Append a message to the instance's FIFO queue (read by ``dequeue_event``)."""
        check_name(instance_id, "instance id")
        check_name(queue_name, "queue name")
        payload = encode(data, what="queue message")
        message = QueueMessage(queue=queue_name, data=payload)
        self._provider.enqueue_orchestrator(instance_id, message)

    enqueue_event_typed = enqueue_event

    def cancel_instance(self, instance_id: str, reason: str | None = None) -> None:
        """Fail the instance with ``canceled: <reason>`` and cancel its children and activities.
        A finished instance is left as it is."""
        check_name(instance_id, "instance id")
        reason = "" if reason is None else reason
        if not isinstance(reason, str):
            raise TypeError("reason must be a str")
        self._provider.enqueue_orchestrator(instance_id, CancelRequested(reason=reason))

    cancel_orchestration = cancel_instance

    # --- status and waiting --------------------------------------------------------------------

    def get_status(self, instance_id: str) -> OrchestrationResult:
        check_name(instance_id, "instance id")
        return _result(instance_id, self._provider.get_instance_status(instance_id))

    get_orchestration_status = get_status

    def wait_for_orchestration(self, instance_id: str, timeout_ms: int = DEFAULT_WAIT_MS
                               ) -> OrchestrationResult:  # fmt: skip
        """Wait until the instance is Completed or Failed; ``WaitTimeoutError`` otherwise."""
        result = self._poll(instance_id, timeout_ms, lambda r: r.is_terminal)
        if result is None:
            raise WaitTimeoutError(
                f"instance {instance_id!r} did not finish within {timeout_ms} ms"
            )
        return result

    def wait_for_orchestration_typed(self, instance_id: str, timeout_ms: int = DEFAULT_WAIT_MS
                                     ) -> Any:  # fmt: skip
        """The output itself; raises ``OrchestrationFailedError`` if the orchestration failed."""
        result = self.wait_for_orchestration(instance_id, timeout_ms)
        if result.status != "Completed":
            raise OrchestrationFailedError(instance_id, result.error)
        return result.output

    def wait_for_status_change(
        self, instance_id: str, last_seen_version: int = 0, poll_interval_ms: int = 200,
        timeout_ms: int = DEFAULT_WAIT_MS,
    ) -> OrchestrationResult | None:  # fmt: skip
        """The status once ``custom_status_version`` exceeds ``last_seen_version`` or the
        instance has finished (as the reference SDK); None on timeout."""
        poll_s = check_non_negative_ms(poll_interval_ms, "poll_interval_ms") / 1000
        return self._poll(
            instance_id, timeout_ms,
            lambda r: r.custom_status_version > last_seen_version or r.is_terminal,
            max_poll_s=max(poll_s, _MIN_POLL_S),
        )  # fmt: skip

    def _poll(
        self, instance_id: str, timeout_ms: int, done: Callable[[OrchestrationResult], bool],
        max_poll_s: float = _MAX_POLL_S,
    ) -> OrchestrationResult | None:  # fmt: skip
        check_name(instance_id, "instance id")
        deadline = time.monotonic() + check_non_negative_ms(timeout_ms, "timeout_ms") / 1000
        hub = self._provider.wakeups
        delay = _MIN_POLL_S
        while True:
            since = hub.generation(STATUS)
            result = _result(instance_id, self._provider.get_instance_status(instance_id))
            if done(result):
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            hub.wait(STATUS, since, min(delay, remaining))
            delay = min(delay * 2, max_poll_s)

    # --- KV --------------------------------------------------------------------------------------

    def get_kv_value(self, instance_id: str, key: str) -> str | None:
        return self._provider.get_kv_value(check_name(instance_id, "instance id"),
                                           check_name(key, "KV key"))  # fmt: skip

    def get_kv_value_typed(self, instance_id: str, key: str) -> Any:
        value = self.get_kv_value(instance_id, key)
        return None if value is None else json.loads(value)

    def get_kv_all_values(self, instance_id: str) -> dict[str, str]:
        return self._provider.get_kv_all_values(check_name(instance_id, "instance id"))

    def wait_for_kv_value(self, instance_id: str, key: str, timeout_ms: int = DEFAULT_WAIT_MS
                          ) -> str:  # fmt: skip
        """Wait until ``key`` exists on the instance; ``WaitTimeoutError`` otherwise."""
        check_name(instance_id, "instance id")
        check_name(key, "KV key")
        deadline = time.monotonic() + check_non_negative_ms(timeout_ms, "timeout_ms") / 1000
        hub = self._provider.wakeups
        delay = _MIN_POLL_S
        while True:
            since = hub.generation(STATUS)
            value = self._provider.get_kv_value(instance_id, key)
            if value is not None:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeoutError(
                    f"KV key {key!r} of {instance_id!r} did not appear within {timeout_ms} ms"
                )
            hub.wait(STATUS, since, min(delay, remaining))
            delay = min(delay * 2, _MAX_POLL_S)

    def wait_for_kv_value_typed(self, instance_id: str, key: str,
                                timeout_ms: int = DEFAULT_WAIT_MS) -> Any:  # fmt: skip
        return json.loads(self.wait_for_kv_value(instance_id, key, timeout_ms))

    # --- admin -----------------------------------------------------------------------------------

    def has_management_capability(self) -> bool:
        return isinstance(self._provider, ProviderAdmin)

    @property
    def _admin(self) -> ProviderAdmin:
        if not isinstance(self._provider, ProviderAdmin):
            raise NotImplementedError("this provider has no management operations")
        return self._provider

    def list_all_instances(self) -> list[str]:
        return [i.instance_id for i in self._admin.list_instances()]

    def list_instances_by_status(self, status: str) -> list[str]:
        flt = InstanceFilter(status=check_name(status, "status"))
        return [i.instance_id for i in self._admin.list_instances(flt)]

    def list_instances(
        self, filter: InstanceFilter | None = None, *, after_id: str | None = None,
        limit: int | None = None,
    ) -> list[InstanceInfo]:  # fmt: skip
        """Instances with their info, ordered by id; page with ``after_id`` and ``limit``."""
        return self._admin.list_instances(filter, after_id=after_id, limit=limit)

    def get_instance_info(self, instance_id: str) -> InstanceInfo:
        return _found(instance_id, self._admin.get_instance_info(instance_id))

    def get_execution_info(self, instance_id: str, execution_id: int) -> ExecutionInfo:
        info = self._admin.get_execution_info(instance_id, execution_id)
        if info is None:
            raise LookupError(f"instance {instance_id!r} has no execution {execution_id}")
        return info

    def list_executions(self, instance_id: str) -> list[int]:
        executions = self._admin.list_executions(instance_id)
        if not executions:
            raise InstanceNotFoundError(instance_id)
        return executions

    def read_execution_history(self, instance_id: str, execution_id: int) -> list[HistoryEvent]:
        return [_public_event(e, execution_id)
                for e in self._admin.read_history(instance_id, execution_id)]  # fmt: skip

    def get_instance_tree(self, instance_id: str) -> InstanceTree:
        return _found(instance_id, self._admin.get_instance_tree(instance_id))

    def delete_instance(self, instance_id: str, force: bool = False) -> DeleteInstanceResult:
        """Delete the instance with its sub-orchestrations. A running instance needs ``force``."""
        return self._admin.delete_instance(check_name(instance_id, "instance id"), force=force)

    def delete_instance_bulk(self, filter: InstanceFilter | None = None) -> DeleteInstanceResult:
        """Delete finished root instances matching ``filter`` (all of them when None)."""
        return self._admin.delete_instances_bulk(filter or InstanceFilter())

    delete_instances_bulk = delete_instance_bulk

    def prune_executions(
        self, instance_id: str, options: PruneOptions | None = None
    ) -> PruneResult:
        """Delete old executions (never the current one); all old ones when ``options`` is
        None."""
        return self._admin.prune_executions(
            check_name(instance_id, "instance id"), options or PruneOptions()
        )

    def prune_executions_bulk(
        self, filter: InstanceFilter | None = None, options: PruneOptions | None = None
    ) -> PruneResult:
        return self._admin.prune_executions_bulk(filter or InstanceFilter(),
                                                 options or PruneOptions())  # fmt: skip

    def get_orchestration_stats(self, instance_id: str) -> OrchestrationStats | None:
        return self._admin.get_orchestration_stats(check_name(instance_id, "instance id"))

    def get_system_metrics(self) -> SystemMetrics:
        return self._admin.get_system_metrics()

    def get_queue_depths(self) -> QueueDepths:
        return self._admin.get_queue_depths()


def _found(instance_id: str, value: T | None) -> T:
    if value is None:
        raise InstanceNotFoundError(instance_id)
    return value


def _result(instance_id: str, row: InstanceStatus | None) -> OrchestrationResult:
    if row is None:
        return OrchestrationResult(instance_id=instance_id, status="NotFound")
    return OrchestrationResult(
        instance_id=instance_id,
        status=row.status,
        output=decode(row.output) if row.status == "Completed" else None,
        error=row.error.message if row.error is not None else None,
        error_category=row.error.category.value if row.error is not None else None,
        custom_status=row.custom_status,
        custom_status_version=row.custom_status_version,
        orchestration_name=row.orchestration_name,
        orchestration_version=row.orchestration_version,
        execution_id=row.current_execution_id,
    )


def _public_event(event: Event, execution_id: int) -> HistoryEvent:
    return HistoryEvent(
        event_id=event.event_id, kind=event.kind, timestamp_ms=event.timestamp_ms,
        data=event.public_data(), source_event_id=event.source_event_id,
        execution_id=execution_id,
    )  # fmt: skip
