"""duroxide: durable execution in pure Python.

Orchestrations are generator functions that ``yield`` durable tasks; activities are plain
functions. Every decision is recorded in an event history and replayed, so workflows survive
crashes, restarts and deploys. Storage is SQLite (embedded) or PostgreSQL (clusters).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from duroxide.client import Client
from duroxide.context import ActivityContext, OrchestrationContext, ScheduledTask
from duroxide.errors import (
    ActivityFailedError,
    DuroxideError,
    ErrorCategory,
    ErrorDetails,
    InstanceNotFoundError,
    InvalidOperationError,
    NondeterminismError,
    OrchestrationFailedError,
    PayloadTooLargeError,
    ProviderError,
    SubOrchestrationFailedError,
    TaskFailedError,
    WaitTimeoutError,
)
from duroxide.observability.logging import init_tracing
from duroxide.providers.sqlite import SqliteProvider
from duroxide.replay.host import MAX_KV_KEYS, MAX_KV_VALUE_BYTES
from duroxide.replay.retry import RetryPolicy
from duroxide.runtime import MetricsSnapshot, Runtime
from duroxide.types import (
    MAX_TAG_NAME_BYTES,
    MAX_TAGS_PER_FILTER,
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
    RuntimeOptions,
    SystemMetrics,
    TagFilter,
)

if TYPE_CHECKING:
    from duroxide.providers.postgres import PostgresProvider

#: The reference SDK's names for the same types.
PyRuntimeOptions = RuntimeOptions
OrchestrationStatus = OrchestrationResult
Event = HistoryEvent
SystemStats = OrchestrationStats
PyOrchestrationStatus = OrchestrationResult
PySystemMetrics = SystemMetrics
PySystemStats = OrchestrationStats
PyQueueDepths = QueueDepths
PyInstanceInfo = InstanceInfo
PyExecutionInfo = ExecutionInfo
PyInstanceTree = InstanceTree
PyDeleteInstanceResult = DeleteInstanceResult
PyPruneOptions = PruneOptions
PyPruneResult = PruneResult
PyInstanceFilter = InstanceFilter
PyEvent = HistoryEvent
PyMetricsSnapshot = MetricsSnapshot

MAX_WORKER_TAGS = MAX_TAGS_PER_FILTER


def parse_result(result: Any) -> Any:
    """Unwrap ``all``/``race`` results: ``[{"ok": v}, …]`` → ``[v, …]``, ``{"ok": v}`` → ``v``,
    ``{"err": m}`` → raises ``Exception(m)`` (as the reference SDK's helper)."""
    if isinstance(result, list):
        return [r.get("ok", r) if isinstance(r, dict) else r for r in result]
    if isinstance(result, dict):
        if "ok" in result:
            return result["ok"]
        if "err" in result:
            raise Exception(result["err"])
    return result


__version__ = "0.1.0"

__all__ = [
    "MAX_KV_KEYS",
    "MAX_KV_VALUE_BYTES",
    "MAX_TAG_NAME_BYTES",
    "MAX_WORKER_TAGS",
    "ActivityContext",
    "ActivityFailedError",
    "Client",
    "DeleteInstanceResult",
    "DuroxideError",
    "ErrorCategory",
    "ErrorDetails",
    "Event",
    "ExecutionInfo",
    "HistoryEvent",
    "InstanceFilter",
    "InstanceInfo",
    "InstanceNotFoundError",
    "InstanceTree",
    "InvalidOperationError",
    "MetricsSnapshot",
    "NondeterminismError",
    "OrchestrationContext",
    "OrchestrationFailedError",
    "OrchestrationResult",
    "OrchestrationStats",
    "OrchestrationStatus",
    "PayloadTooLargeError",
    "PostgresProvider",
    "ProviderError",
    "PruneOptions",
    "PruneResult",
    "PyDeleteInstanceResult",
    "PyEvent",
    "PyExecutionInfo",
    "PyInstanceFilter",
    "PyInstanceInfo",
    "PyInstanceTree",
    "PyMetricsSnapshot",
    "PyOrchestrationStatus",
    "PyPruneOptions",
    "PyPruneResult",
    "PyQueueDepths",
    "PyRuntimeOptions",
    "PySystemMetrics",
    "PySystemStats",
    "QueueDepths",
    "RetryPolicy",
    "Runtime",
    "RuntimeOptions",
    "ScheduledTask",
    "SqliteProvider",
    "SubOrchestrationFailedError",
    "SystemMetrics",
    "SystemStats",
    "TagFilter",
    "TaskFailedError",
    "WaitTimeoutError",
    "init_tracing",
    "parse_result",
]


def __getattr__(name: str) -> Any:
    # The Postgres provider imports psycopg; load it only when asked for.
    if name == "PostgresProvider":
        from duroxide.providers.postgres import PostgresProvider

        return PostgresProvider
    raise AttributeError(f"module 'duroxide' has no attribute {name!r}")
