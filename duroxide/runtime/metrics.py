"""In-process counters behind ``Runtime.metrics_snapshot()``."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass

from duroxide.errors import ErrorDetails


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsSnapshot:
    """Counters since the runtime started."""

    orch_starts: int = 0
    orch_completions: int = 0
    orch_failures: int = 0
    orch_continue_as_new: int = 0
    orch_application_errors: int = 0
    orch_configuration_errors: int = 0
    orch_infrastructure_errors: int = 0
    orch_poison: int = 0
    orch_turns: int = 0
    orch_dispatcher_items_fetched: int = 0
    orch_abandoned: int = 0
    orch_lock_lost: int = 0
    orchestration_lock_renewals: int = 0
    activity_success: int = 0
    activity_errors: int = 0
    activity_infra_errors: int = 0
    activity_config_errors: int = 0
    activity_poison: int = 0
    activity_cancelled: int = 0
    activity_lock_lost: int = 0
    activity_lock_renewals: int = 0
    worker_dispatcher_items_fetched: int = 0
    suborchestration_calls: int = 0
    provider_errors: int = 0

    @property
    def activity_app_errors(self) -> int:
        return self.activity_errors


_FIELDS = tuple(f.name for f in dataclasses.fields(MetricsSnapshot))


class RuntimeMetrics:
    """Thread-safe counters; ``snapshot()`` copies them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(_FIELDS, 0)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def orchestration_failed(self, error: ErrorDetails | None) -> None:
        category = error.category.value if error else "application"
        with self._lock:
            self._counts["orch_failures"] += 1
            key = {
                "application": "orch_application_errors",
                "configuration": "orch_configuration_errors",
                "infrastructure": "orch_infrastructure_errors",
                "poison": "orch_poison",
            }[category]
            self._counts[key] += 1

    def snapshot(self) -> MetricsSnapshot:
        with self._lock:
            return MetricsSnapshot(**self._counts)
