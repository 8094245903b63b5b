"""``/metrics``: the children's metrics aggregated, plus what only the supervisor knows.

The children write their metrics to the shared ``PROMETHEUS_MULTIPROC_DIR``
(``duroxide.observability.prometheus``); each scrape merges them with a ``MultiProcessCollector``.
The queue depths are cluster-wide facts, so they are read once per scrape window by the
supervisor from its own provider (cached ``QUEUE_DEPTH_CACHE_S``), not summed over children.
"""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from duroxide.types import QueueDepths

#: How long one reading of the queue depths is served.
QUEUE_DEPTH_CACHE_S = 2.0


@dataclass(frozen=True, slots=True)
class ChildCounts:
    """Per (role, tag): children up now and restarts so far (a snapshot for scrapes)."""

    running: Mapping[tuple[str, str], int] = field(default_factory=dict)
    restarts: Mapping[tuple[str, str], int] = field(default_factory=dict)


class ClusterCollector:
    """Queue-depth gauges, child counts and ``duroxide_build_info``."""

    def __init__(
        self,
        read_depths: Callable[[], QueueDepths],
        children: Callable[[], ChildCounts],
        version: str,
        log: Any,
        *,
        tags: Iterable[str] = (),
        cache_s: float = QUEUE_DEPTH_CACHE_S,
    ) -> None:
        self._read_depths = read_depths
        self._children = children
        self._version = version
        self._tags = ("", *tags)  # always shown, even at 0, so the series never go stale
        self._log = log
        self._cache_s = cache_s
        self._lock = threading.Lock()
        self._depths: QueueDepths | None = None
        self._read_at = -float("inf")

    def describe(self) -> Iterable[Metric]:
        return []  # registering must not query the database

    def depths(self) -> QueueDepths | None:
        """The cached reading, refreshed when older than the cache window (None if unreadable)."""
        with self._lock:
            now = time.monotonic()
            if now - self._read_at >= self._cache_s:
                self._read_at = now
                try:
                    self._depths = self._read_depths()
                except Exception as exc:  # a failed read must not fail the scrape
                    self._depths = None
                    self._log.warning("metrics.queue_depth_failed", error=str(exc))
            return self._depths

    def collect(self) -> Iterable[Metric]:
        depths = self.depths()
        if depths is not None:
            orch = GaugeMetricFamily(
                "duroxide_orchestrator_queue_depth",
                "Orchestrator queue messages, ready and in flight.",
            )
            orch.add_metric([], depths.orchestrator_queue)
            timers = GaugeMetricFamily(
                "duroxide_timer_queue_depth", "Timers and delayed messages not yet due."
            )
            timers.add_metric([], depths.timer_queue)
            work = GaugeMetricFamily(
                "duroxide_worker_queue_depth",
                'Activities queued or running, by tag ("" = untagged).',
                labels=["tag"],
            )
            by_tag = dict.fromkeys(self._tags, 0)
            by_tag.update(depths.worker_queue_by_tag)
            for tag, count in sorted(by_tag.items()):
                work.add_metric([tag], count)
            yield from (orch, timers, work)
        counts = self._children()
        running = GaugeMetricFamily(
            "duroxide_cluster_children", "Child processes up, by role.", labels=["role", "tag"]
        )
        for (role, tag), n in sorted(counts.running.items()):
            running.add_metric([role, tag], n)
        restarts = CounterMetricFamily(
            "duroxide_cluster_child_restarts",
            "Crashed child processes restarted, by role.",
            labels=["role", "tag"],
        )
        for (role, tag), n in sorted(counts.restarts.items()):
            restarts.add_metric([role, tag], n)
        info = GaugeMetricFamily("duroxide_build_info", "duroxide version (always 1).",
                                 labels=["version", "python_version"])  # fmt: skip
        info.add_metric([self._version, platform.python_version()], 1)
        yield from (running, restarts, info)


def render(multiproc_dir: str, collector: ClusterCollector) -> bytes:
    """One scrape: every child's metrics merged, then the supervisor's own."""
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=multiproc_dir)
    registry.register(collector)  # type: ignore[arg-type]
    return generate_latest(registry)
