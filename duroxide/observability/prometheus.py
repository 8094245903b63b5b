"""Prometheus metrics for the runtime: ``Instruments`` implemented with prometheus-client.

``PrometheusInstruments()`` creates the runtime's metrics on its own ``CollectorRegistry``
(``.registry``), so an application can serve them, e.g. with
``prometheus_client.start_http_server(9464, registry=instruments.registry)``. Install it with
``Runtime(provider, options, instruments=PrometheusInstruments())``.

Under multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set before prometheus-client is imported,
as the cluster does for its children) every value is written to the shared directory and a
``MultiProcessCollector`` aggregates them: counters and histograms are summed over all processes
(dead ones included), the slot gauges over live processes only (``livesum``). Use one instance
per process: two instances in one process would write the same file slots.

Names follow Prometheus conventions: ``duroxide_`` prefix, base units (seconds), ``_total``
counters. Labels are bounded (orchestration and activity names, outcome, category, tag, kind,
operation), never instance ids. Untagged activities have ``tag=""``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from duroxide.observability.instruments import Instruments

F = TypeVar("F", bound=Callable[..., None])

#: Orchestration turns and activity attempts: milliseconds to minutes.
WORK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                30.0, 60.0, 300.0)  # fmt: skip
#: Whole orchestrations: milliseconds to a day.
ORCHESTRATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
                         21600.0, 86400.0)  # fmt: skip
#: One provider operation (one database round trip).
PROVIDER_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    5.0, 10.0)  # fmt: skip


def _never_raises(method: F) -> F:
    """A hook must not fail the work it measures: a failed sample is counted and dropped."""

    @functools.wraps(method)
    def safe(self: PrometheusInstruments, *args: Any) -> None:
        try:
            method(self, *args)
        except Exception:  # a metrics failure (full disk, bad label) must not fail a turn
            self.dropped_samples += 1

    return safe  # type: ignore[return-value]


class PrometheusInstruments(Instruments):
    """The runtime's hooks as Prometheus counters, histograms and gauges."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.dropped_samples = 0
        #: (metric, label values) -> labelled child: ``labels()`` validates and locks on every
        #: call, and the hooks run several times per turn and per activity.
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        r = self.registry
        orch, act = ["orchestration_name"], ["activity_name", "tag", "outcome"]
        self._starts = Counter("duroxide_orchestration_starts", "Orchestration instances started.",
                               orch, registry=r)  # fmt: skip
        self._completions = Counter(
            "duroxide_orchestration_completions",
            "Orchestration executions that ended, by outcome (completed, failed, "
            "continued_as_new).", [*orch, "outcome"], registry=r,
        )  # fmt: skip
        self._failures = Counter(
            "duroxide_orchestration_failures",
            "Orchestration executions that failed, by error category.", [*orch, "category"],
            registry=r,
        )  # fmt: skip
        self._duration = Histogram(
            "duroxide_orchestration_duration_seconds",
            "Time from an execution's start to its end.", [*orch, "outcome"], registry=r,
            buckets=ORCHESTRATION_BUCKETS,
        )  # fmt: skip
        self._turns = Histogram(
            "duroxide_orchestration_turn_duration_seconds",
            "One orchestration turn: replay or resume, then the commit.", orch, registry=r,
            buckets=WORK_BUCKETS,
        )  # fmt: skip
        self._poison = Counter("duroxide_poison", "Work failed as poison (fetched too often).",
                               ["kind"], registry=r)  # fmt: skip
        self._activities = Counter("duroxide_activity_executions",
                                   "Activity attempts, by outcome.", act,
                                   registry=r)  # fmt: skip
        self._activity_duration = Histogram(
            "duroxide_activity_duration_seconds", "One activity attempt.", act, registry=r,
            buckets=WORK_BUCKETS,
        )  # fmt: skip
        self._provider = Histogram(
            "duroxide_provider_operation_duration_seconds",
            "One provider operation (one database round trip).", ["operation"], registry=r,
            buckets=PROVIDER_BUCKETS,
        )  # fmt: skip
        self._provider_errors = Counter("duroxide_provider_errors", "Provider operations that "
                                        "failed.", ["operation"], registry=r)  # fmt: skip
        self._renewals = Counter("duroxide_lock_renewals", "Locks of in-flight work extended.",
                                 ["kind"], registry=r)  # fmt: skip
        self._lost = Counter("duroxide_locks_lost", "In-flight work whose lock was lost (its "
                             "result is discarded).", ["kind"], registry=r)  # fmt: skip
        self._busy = Gauge("duroxide_busy_slots", "Dispatcher slots processing work.", ["kind"],
                           registry=r, multiprocess_mode="livesum")  # fmt: skip
        self._idle = Gauge("duroxide_idle_slots", "Dispatcher slots free for work.", ["kind"],
                           registry=r, multiprocess_mode="livesum")  # fmt: skip

    def declare_slots(self, kind: str, capacity: int) -> None:
        """Show ``capacity`` idle slots of ``kind`` before any work arrives."""
        self.slots(kind, 0, capacity)

    def _child(self, metric: Any, *values: str) -> Any:
        key = (metric, values)
        child = self._children.get(key)
        if child is None:  # a race only labels twice: labels() returns the same child
            child = self._children[key] = metric.labels(*values)
        return child

    # --- the runtime's hooks ------------------------------------------------------------------

    @_never_raises
    def orchestration_started(self, name: str) -> None:
        self._child(self._starts, name).inc()

    @_never_raises
    def orchestration_finished(
        self, name: str, outcome: str, category: str | None, duration_s: float | None
    ) -> None:
        self._child(self._completions, name, outcome).inc()
        if outcome == "failed":
            self._child(self._failures, name, category or "unknown").inc()
        if duration_s is not None:
            self._child(self._duration, name, outcome).observe(duration_s)

    @_never_raises
    def turn(self, name: str, duration_s: float) -> None:
        self._child(self._turns, name).observe(duration_s)

    @_never_raises
    def poison(self, kind: str) -> None:
        self._child(self._poison, kind).inc()

    @_never_raises
    def activity(self, name: str, tag: str | None, outcome: str, duration_s: float) -> None:
        self._child(self._activities, name, tag or "", outcome).inc()
        self._child(self._activity_duration, name, tag or "", outcome).observe(duration_s)

    @_never_raises
    def provider_call(self, operation: str, duration_s: float, failed: bool) -> None:
        self._child(self._provider, operation).observe(duration_s)
        if failed:
            self._child(self._provider_errors, operation).inc()

    @_never_raises
    def lock_renewed(self, kind: str) -> None:
        self._child(self._renewals, kind).inc()

    @_never_raises
    def lock_lost(self, kind: str) -> None:
        self._child(self._lost, kind).inc()

    @_never_raises
    def slots(self, kind: str, busy: int, capacity: int) -> None:
        self._child(self._busy, kind).set(busy)
        self._child(self._idle, kind).set(max(0, capacity - busy))
