"""Public value types: options, filters, and what the Client returns."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from duroxide.serialization import check_name

MAX_TAGS_PER_FILTER = 5
#: Longest activity tag, in UTF-8 bytes (the reference SDK's limit).
MAX_TAG_NAME_BYTES = 256


def check_tag(tag: Any) -> str:
    check_name(tag, "tag")
    if len(tag.encode("utf-8")) > MAX_TAG_NAME_BYTES:
        raise ValueError(f"a tag is at most {MAX_TAG_NAME_BYTES} bytes, got {len(tag.encode())}")
    return str(tag)


class TagFilter:
    """Which activity tags a runtime's workers take. Values are plain strings.

    ``DEFAULT_ONLY`` (untagged only, the default), ``ANY`` (every tag), ``NONE`` (no activities),
    ``tags([...])`` (only these tags) and ``default_and([...])`` (untagged plus these tags).
    """

    DEFAULT_ONLY: ClassVar[str] = "default_only"
    ANY: ClassVar[str] = "any"
    NONE: ClassVar[str] = "none"

    @staticmethod
    def tags(tags: Iterable[str]) -> str:
        return json.dumps({"tags": _check_tags(tags)})

    @staticmethod
    def default_and(tags: Iterable[str]) -> str:
        return json.dumps({"default_and": _check_tags(tags)})


def _check_tags(tags: Iterable[str]) -> list[str]:
    if isinstance(tags, str):
        raise TypeError("tags must be a list of str, not a single str")
    out = sorted({check_tag(t) for t in tags})
    if not out:
        raise ValueError("a tag filter needs at least one tag")
    if len(out) > MAX_TAGS_PER_FILTER:
        raise ValueError(f"a tag filter takes at most {MAX_TAGS_PER_FILTER} tags, got {len(out)}")
    return out


@dataclass(frozen=True, slots=True)
class TagFilterSpec:
    """A parsed tag filter. ``mode`` is one of default_only, any, none, tags, default_and."""

    mode: str
    tags: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: str | TagFilterSpec | None) -> TagFilterSpec:
        if value is None:
            return cls("default_only")
        if isinstance(value, TagFilterSpec):
            return value
        if not isinstance(value, str):
            raise TypeError(f"worker_tag_filter must be a TagFilter string, got {value!r}")
        if value in (TagFilter.DEFAULT_ONLY, TagFilter.ANY, TagFilter.NONE):
            return cls(value)
        try:
            data = json.loads(value)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict) and len(data) == 1:
            ((mode, tags),) = data.items()
            if mode in ("tags", "default_and") and isinstance(tags, list):
                return cls(mode, tuple(_check_tags(tags)))
        raise ValueError(
            f"invalid worker_tag_filter {value!r}: use TagFilter.DEFAULT_ONLY, ANY, NONE, "
            "TagFilter.tags([...]) or TagFilter.default_and([...])"
        )

    def matches(self, tag: str | None) -> bool:
        if self.mode == "any":
            return True
        if self.mode == "none":
            return False
        if tag is None:
            return self.mode in ("default_only", "default_and")
        return self.mode in ("tags", "default_and") and tag in self.tags


@dataclass(kw_only=True)
class RuntimeOptions:
    """Runtime settings; every time is in milliseconds. Also exported as ``PyRuntimeOptions``."""

    dispatcher_poll_interval_ms: int = 100
    orchestration_concurrency: int = 4
    worker_concurrency: int = 8
    orchestrator_lock_timeout_ms: int = 5_000
    worker_lock_timeout_ms: int = 30_000
    max_attempts: int = 10
    max_sessions_per_runtime: int = 10
    session_idle_timeout_ms: int = 300_000
    worker_node_id: str | None = None
    worker_tag_filter: str | None = None
    log_level: str = "info"
    log_format: str = "pretty"
    service_name: str = "duroxide"
    service_version: str | None = None
    #: Running instances whose live state a dispatcher keeps between turns (0 disables it).
    turn_cache_size: int = 1024

    def __post_init__(self) -> None:
        for name in (
            "dispatcher_poll_interval_ms",
            "orchestrator_lock_timeout_ms",
            "worker_lock_timeout_ms",
            "max_attempts",
            "session_idle_timeout_ms",
        ):
            _check_int(name, getattr(self, name), minimum=1)
        for name in (
            "orchestration_concurrency",
            "worker_concurrency",
            "max_sessions_per_runtime",
            "turn_cache_size",
        ):
            _check_int(name, getattr(self, name), minimum=0)
        if self.worker_node_id is not None:
            check_name(self.worker_node_id, "worker_node_id")
        TagFilterSpec.parse(self.worker_tag_filter)
        if self.log_format not in ("pretty", "json", "console"):
            raise ValueError(f"log_format must be 'pretty' or 'json', got {self.log_format!r}")

    @property
    def tag_filter(self) -> TagFilterSpec:
        return TagFilterSpec.parse(self.worker_tag_filter)


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PruneOptions:
    """Which old executions ``prune_executions`` removes; the current one is always kept."""

    keep_last: int | None = None
    completed_before: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceFilter:
    """Selects instances for bulk operations. Every set field must match."""

    instance_ids: Sequence[str] | None = None
    completed_before: int | None = None
    limit: int | None = None
    status: str | None = None
    orchestration_name: str | None = None
    created_before: int | None = None
    created_after: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OrchestrationResult:
    """What ``get_status`` and ``wait_for_orchestration`` return."""

    instance_id: str
    status: str  # "Running" | "Completed" | "Failed" | "NotFound"
    output: Any = None
    error: str | None = None
    error_category: str | None = None
    custom_status: str | None = None
    custom_status_version: int = 0
    orchestration_name: str | None = None
    orchestration_version: str | None = None
    execution_id: int = 0

    @property
    def is_terminal(self) -> bool:
        return self.status in ("Completed", "Failed")


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceInfo:
    instance_id: str
    orchestration_name: str
    orchestration_version: str
    status: str
    current_execution_id: int
    created_at: int
    updated_at: int
    parent_instance_id: str | None = None
    output: str | None = None
    error: str | None = None
    custom_status: str | None = None
    custom_status_version: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionInfo:
    execution_id: int
    status: str  # "Running" | "Completed" | "Failed" | "ContinuedAsNew"
    event_count: int
    started_at: int
    completed_at: int | None = None
    output: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEvent:
    """One history event as the admin API shows it; ``data`` is a JSON string or None."""

    event_id: int
    kind: str
    timestamp_ms: int
    data: str | None
    source_event_id: int | None = None
    execution_id: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceTree:
    root_id: str
    all_ids: list[str]

    @property
    def size(self) -> int:
        return len(self.all_ids)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteInstanceResult:
    instances_deleted: int = 0
    executions_deleted: int = 0
    events_deleted: int = 0
    queue_messages_deleted: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class PruneResult:
    instances_processed: int = 0
    executions_deleted: int = 0
    events_deleted: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class OrchestrationStats:
    history_event_count: int
    history_size_bytes: int
    queue_pending_count: int
    kv_user_key_count: int
    kv_total_value_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemMetrics:
    total_instances: int
    total_executions: int
    running_instances: int
    completed_instances: int
    failed_instances: int
    total_events: int


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueDepths:
    """Ready + in-flight items. ``worker_queue_by_tag`` uses ``""`` for untagged activities."""

    orchestrator_queue: int
    worker_queue: int
    timer_queue: int = 0
    worker_queue_by_tag: dict[str, int] = field(default_factory=dict)
