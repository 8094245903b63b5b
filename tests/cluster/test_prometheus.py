"""``PrometheusInstruments`` and the supervisor's collector, in process (no cluster)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cluster.metrics import ChildCounts, ClusterCollector
from duroxide import Client, Runtime, RuntimeOptions, SqliteProvider
from duroxide.observability.prometheus import PrometheusInstruments
from duroxide.types import QueueDepths


class _Log:
    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.warnings.append((event, fields))


def samples(registry: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _workflow(ctx: Any, fail: bool) -> Any:
    a = yield ctx.schedule_activity("Add", 1)
    if fail:
        raise ValueError("asked to fail")
    b = yield ctx.schedule_activity("Add", 2).with_tag("gpu")
    return a + b


def test_a_runtime_with_prometheus_instruments_counts_what_ran() -> None:
    provider = SqliteProvider.in_memory()
    instruments = PrometheusInstruments()
    instruments.declare_slots("activity", 4)
    runtime = Runtime(
        provider,
        RuntimeOptions(dispatcher_poll_interval_ms=20, worker_concurrency=4,
                       worker_tag_filter='{"default_and": ["gpu"]}'),
        instruments=instruments,
    )  # fmt: skip
    runtime.register_orchestration("Flow", _workflow)
    runtime.register_activity("Add", lambda ctx, x: x)
    runtime.start()
    client = Client(provider)
    try:
        client.start_orchestration("ok-1", "Flow", False)
        client.start_orchestration("bad-1", "Flow", True)
        assert client.wait_for_orchestration("ok-1", 10_000).output == 3
        assert client.wait_for_orchestration("bad-1", 10_000).status == "Failed"
    finally:
        runtime.shutdown(1_000)
    got = samples(instruments.registry)
    flow = (("orchestration_name", "Flow"),)
    assert got[("duroxide_orchestration_starts_total", flow)] == 2
    assert got[("duroxide_orchestration_completions_total",
                (*flow, ("outcome", "completed")))] == 1  # fmt: skip
    assert got[("duroxide_orchestration_completions_total", (*flow, ("outcome", "failed")))] == 1
    assert got[("duroxide_orchestration_failures_total",
                (("category", "application"), *flow))] == 1  # fmt: skip
    assert got[("duroxide_orchestration_duration_seconds_count",
                (*flow, ("outcome", "completed")))] == 1  # fmt: skip
    assert got[("duroxide_orchestration_turn_duration_seconds_count", flow)] == 5
    add = (("activity_name", "Add"), ("outcome", "completed"))
    assert got[("duroxide_activity_executions_total", (*add, ("tag", "")))] == 2
    assert got[("duroxide_activity_executions_total", (*add, ("tag", "gpu")))] == 1
    assert got[("duroxide_activity_duration_seconds_count", (*add, ("tag", "gpu")))] == 1
    operations = {dict(labels)["operation"] for name, labels in got
                  if name == "duroxide_provider_operation_duration_seconds_count"}  # fmt: skip
    assert any(op.startswith("ack_orchestration_item") for op in operations), operations
    assert got[("duroxide_idle_slots", (("kind", "activity"),))] == 4
    assert got[("duroxide_busy_slots", (("kind", "activity"),))] == 0
    names = {name for name, _ in got}
    assert all(n.startswith("duroxide_") for n in names)
    assert not any("ok-1" in v or "bad-1" in v for _, labels in got for _, v in labels)


def test_a_failing_metric_never_fails_the_hook() -> None:
    instruments = PrometheusInstruments(CollectorRegistry())
    instruments._starts = None  # type: ignore[assignment]
    instruments.orchestration_started("X")  # must not raise
    assert instruments.dropped_samples == 1
    instruments.lock_renewed("activity")
    instruments.lock_lost("orchestration")
    instruments.poison("activity")
    instruments.provider_call("fetch_work_item", 0.01, True)
    got = samples(instruments.registry)
    assert got[("duroxide_lock_renewals_total", (("kind", "activity"),))] == 1
    assert got[("duroxide_locks_lost_total", (("kind", "orchestration"),))] == 1
    assert got[("duroxide_poison_total", (("kind", "activity"),))] == 1
    assert got[("duroxide_provider_errors_total", (("operation", "fetch_work_item"),))] == 1


def test_the_cluster_collector_reads_depths_once_per_window() -> None:
    reads: list[int] = []

    def depths() -> QueueDepths:
        reads.append(1)
        return QueueDepths(orchestrator_queue=3, worker_queue=5, timer_queue=1,
                           worker_queue_by_tag={"": 4, "gpu": 1})  # fmt: skip

    counts = ChildCounts(running={("worker", ""): 2, ("pool", "gpu"): 1},
                         restarts={("worker", ""): 4, ("pool", "gpu"): 0})  # fmt: skip
    collector = ClusterCollector(depths, lambda: counts, "9.9.9", _Log(), tags=["gpu", "io"],
                                 cache_s=60)  # fmt: skip
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)  # type: ignore[arg-type]
    assert reads == []  # registering does not query
    got = samples(registry)
    samples(registry)
    assert len(reads) == 1
    assert got[("duroxide_orchestrator_queue_depth", ())] == 3
    assert got[("duroxide_timer_queue_depth", ())] == 1
    assert got[("duroxide_worker_queue_depth", (("tag", ""),))] == 4
    assert got[("duroxide_worker_queue_depth", (("tag", "gpu"),))] == 1
    assert got[("duroxide_worker_queue_depth", (("tag", "io"),))] == 0  # configured, empty
    assert got[("duroxide_cluster_children", (("role", "worker"), ("tag", "")))] == 2
    assert got[("duroxide_cluster_child_restarts_total", (("role", "worker"), ("tag", "")))] == 4
    build = [labels for name, labels in got if name == "duroxide_build_info"]
    assert dict(build[0])["version"] == "9.9.9"


def test_an_unreadable_database_drops_the_depth_gauges_only() -> None:
    def broken() -> QueueDepths:
        raise RuntimeError("database down")

    log = _Log()
    collector = ClusterCollector(broken, ChildCounts, "1.0", log, cache_s=0)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)  # type: ignore[arg-type]
    names = {name for name, _ in samples(registry)}
    assert "duroxide_build_info" in names
    assert not any("queue_depth" in n for n in names)
    assert log.warnings[0][0] == "metrics.queue_depth_failed"
