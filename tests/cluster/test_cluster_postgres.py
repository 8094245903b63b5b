"""The supervisor as a real process tree on PostgreSQL: metrics that match what ran, a tag
pool, the client's trace context in another process, restarts with backoff, no orphans after
a SIGKILL, draining on SIGTERM (and a new cluster taking over at once), a second signal.

(The kill-a-child-every-second load tests are scenarios 1 and 2 of the fault suite, tests/chaos.)
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanContext, TraceFlags
from prometheus_client.parser import text_string_to_metric_families
from support import describe_processes, read_effects, running_cluster

pytestmark = pytest.mark.slow
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def wait_terminal(client: Any, ids: list[str], timeout_s: float) -> dict[str, Any]:
    return {i: client.wait_for_orchestration(i, int(timeout_s * 1000)) for i in ids}


def test_metrics_match_what_ran_and_a_gpu_pool_runs_only_gpu_activities(
    pg_schema: tuple[str, str], client: Any, tmp_path: Path
) -> None:
    with running_cluster(*pg_schema, tmp_path, "--orchestrators", "1", "--workers", "1",
                         "--pool", "gpu=1", "--worker-node-id", "podx") as cluster:  # fmt: skip
        cluster.wait_ready()
        assert cluster.get("/livez")[0] == 200
        assert cluster.get("/readyz") == (200, "ready\n")
        assert cluster.get("/nope")[0] == 404
        ok = [f"mixed-ok-{i}" for i in range(10)]
        bad = [f"mixed-bad-{i}" for i in range(2)]
        chains = [f"chain-{i}" for i in range(5)]
        for i in ok:
            client.start_orchestration(i, "Mixed", False)
        for i in bad:
            client.start_orchestration(i, "Mixed", True)
        with trace.use_span(trace.NonRecordingSpan(SpanContext(
            int(TRACE_ID, 16), 0x1234, is_remote=False, trace_flags=TraceFlags(1)
        ))):  # fmt: skip
            client.start_orchestration(chains[0], "Chain", 2)  # in a trace: its activities too
        for i in chains[1:]:
            client.start_orchestration(i, "Chain", 2)
        results = wait_terminal(client, ok + bad + chains, 60)
        assert [results[i].status for i in ok + chains] == ["Completed"] * 15
        assert [results[i].status for i in bad] == ["Failed"] * 2
        assert results["mixed-ok-0"].output == [1, 2, "rendered on podx-pool-gpu-0"]

        mixed, chain = (("orchestration_name", "Mixed"),), (("orchestration_name", "Chain"),)
        step = (("activity_name", "Step"), ("outcome", "completed"), ("tag", ""))
        render = (("activity_name", "Render"), ("outcome", "completed"), ("tag", "gpu"))
        render_failed = (("activity_name", "Render"), ("outcome", "failed"), ("tag", "gpu"))
        expected = {
            ("duroxide_orchestration_starts_total", mixed): 12,
            ("duroxide_orchestration_starts_total", chain): 5,
            ("duroxide_orchestration_completions_total",
             (*mixed, ("outcome", "completed"))): 10,
            ("duroxide_orchestration_completions_total", (*mixed, ("outcome", "failed"))): 2,
            ("duroxide_orchestration_completions_total",
             (*chain, ("outcome", "completed"))): 5,
            ("duroxide_orchestration_failures_total",
             (("category", "application"), *mixed)): 2,
            ("duroxide_orchestration_duration_seconds_count",
             (*mixed, ("outcome", "completed"))): 10,
            ("duroxide_orchestration_turn_duration_seconds_count", mixed): 12 * 4,
            ("duroxide_activity_executions_total", step): 12 * 2 + 5 * 2,
            ("duroxide_activity_executions_total", render): 10,
            ("duroxide_activity_executions_total", render_failed): 2,
            ("duroxide_activity_duration_seconds_count", render): 10,
            ("duroxide_orchestrator_queue_depth", ()): 0,
            ("duroxide_worker_queue_depth", (("tag", ""),)): 0,
            ("duroxide_worker_queue_depth", (("tag", "gpu"),)): 0,
            ("duroxide_busy_slots", (("kind", "orchestration"),)): 0,
            ("duroxide_idle_slots", (("kind", "orchestration"),)): 64,  # the default
            ("duroxide_idle_slots", (("kind", "activity"),)): 64 * 2,
            ("duroxide_cluster_children", (("role", "pool"), ("tag", "gpu"))): 1,
        }  # fmt: skip
        scraped: dict[str, Any] = {}

        def metrics_match() -> bool:
            scraped["text"] = text = cluster.get("/metrics")[1]
            got = metric_samples(text)
            scraped["diff"] = {k: (got.get(k), v) for k, v in expected.items() if got.get(k) != v}
            return not scraped["diff"]

        try:  # hooks run just after each commit: the last ones may trail the client by a hair
            cluster.wait_until(metrics_match, "metrics to match", 15)
        except AssertionError:
            pytest.fail(f"metrics differ (got, expected): {scraped['diff']}")
        text = scraped["text"]
        got = metric_samples(text)
        names = {name for name, _ in got}
        assert all(n.startswith("duroxide_") for n in names), names
        operations = {dict(labels)["operation"] for name, labels in got
                      if name == "duroxide_provider_operation_duration_seconds_count"}  # fmt: skip
        assert any(op.startswith("fetch_work_item") for op in operations), operations
        assert any(n == "duroxide_build_info" for n in names)
        for line in text.splitlines():  # counters end in _total, durations are in seconds
            if line.startswith("# TYPE"):
                _, _, name, kind = line.split()
                assert kind != "counter" or name.removesuffix("_total") + "_total" in names
                assert kind != "histogram" or name.endswith("_seconds")
        assert not re.search(r"mixed-ok|mixed-bad|chain-\d", text)  # no instance ids in labels

        effects = read_effects(cluster.effects)
        where = {(e.name, e.worker_id) for e in effects}
        assert where == {("Step", "podx-worker-0"), ("Render", "podx-pool-gpu-0")}
        assert Counter(e.name for e in effects) == {"Step": 34, "Render": 12}
        traced = {e.trace_id for e in effects if e.instance_id == "chain-0"}
        assert traced == {TRACE_ID}  # the client's trace, carried into another process
        assert {e.trace_id for e in effects if e.instance_id == "chain-1"} == {"-"}

        cluster.signal(signal.SIGTERM)
        assert cluster.wait_exit(30) == 0


def test_a_crashed_child_is_restarted_and_a_killed_supervisor_leaves_no_orphans(
    pg_schema: tuple[str, str], client: Any, tmp_path: Path
) -> None:
    with running_cluster(*pg_schema, tmp_path, "--orchestrators", "1", "--workers", "1",
                         "--restart-delay", "0.5") as cluster:  # fmt: skip
        cluster.wait_ready()
        worker = cluster.wait_event("child.started", role="worker")
        os.kill(worker["child_pid"], signal.SIGKILL)
        exited = cluster.wait_event("child.exited", child_pid=worker["child_pid"])
        assert (exited["signal"], exited["expected"], exited["role"]) == ("SIGKILL", False,
                                                                          "worker")  # fmt: skip
        restarting = cluster.wait_event("child.restarting", child_pid=worker["child_pid"])
        assert (restarting["backoff_s"], restarting["restarts"]) == (0.5, 1)
        cluster.wait_until(lambda: len(cluster.events("child.started", role="worker")) == 2,
                           "the worker to be restarted")  # fmt: skip
        cluster.wait_ready()
        client.start_orchestration("after-restart", "Chain", 3)
        assert client.wait_for_orchestration("after-restart", 30_000).output == 3
        text = cluster.get("/metrics")[1]
        restarts = metric_samples(text)
        assert restarts[("duroxide_cluster_child_restarts_total",
                         (("role", "worker"), ("tag", "")))] == 1  # fmt: skip

        members = cluster.group_processes()
        children = set(cluster.alive_children())
        assert children and children <= set(members)
        # SIGUSR1 writes a child's thread stacks to the log (an operator's first look at a
        # stuck process) and leaves it running
        stacks = cluster.dump_stacks(sorted(children))
        assert "Thread 0x" in stacks and "cluster/child.py" in stacks
        assert set(cluster.alive_children()) == children <= set(cluster.group_processes())
        os.kill(cluster.proc.pid, signal.SIGKILL)
        try:
            cluster.wait_until(lambda: not cluster.group_processes(),
                               "every child to exit after the supervisor was killed", 20,
                               allow_exit=True)  # fmt: skip
        except AssertionError as exc:  # say which process stayed, and where it waits
            stayed = cluster.group_processes()
            described = describe_processes(stayed)
            raise AssertionError(f"{exc}\n{described}\n{cluster.dump_stacks(stayed)}") from None
        cluster.wait_until(lambda: len(cluster.events("child.stopped")) == len(children),
                           "the children's last log lines", 10, allow_exit=True)  # fmt: skip
        orphans = cluster.events("child.draining", reason="supervisor gone")
        assert {r["pid"] for r in orphans} == children  # each drained briefly, then exited
        assert {r["drain_ms"] for r in orphans} == {2_000}


def test_a_child_that_cannot_start_is_restarted_with_growing_backoff(
    pg_schema: tuple[str, str], tmp_path: Path
) -> None:
    with running_cluster(*pg_schema, tmp_path, "--orchestrators", "1", "--workers", "1",
                         "--restart-delay", "0.2", "--restart-delay-max", "0.8",
                         env={"CLUSTER_TEST_BROKEN_CHILD": "worker-0"}) as cluster:  # fmt: skip
        cluster.wait_until(lambda: len(cluster.events("child.restarting")) >= 4,
                           "four restarts of the broken worker")  # fmt: skip
        restarts = cluster.events("child.restarting")
        assert {r["child"] for r in restarts} == {"worker-0"}
        assert [r["backoff_s"] for r in restarts[:4]] == [0.2, 0.4, 0.8, 0.8]
        assert cluster.events("child.start_failed", child="worker-0")
        assert cluster.events("child.exited", child="worker-0", exit_code=1)
        assert cluster.get("/readyz") == (503, "waiting for worker-0\n")
        assert cluster.get("/livez")[0] == 200
        cluster.signal(signal.SIGTERM)
        assert cluster.wait_exit(30) == 0


def test_sigterm_drains_within_the_timeout_and_a_new_cluster_finishes_at_once(
    pg_schema: tuple[str, str], client: Any, tmp_path: Path
) -> None:
    # locks would only expire after a minute: finishing sooner proves they were released
    drain_s, locks = 3.0, ["--orchestrator-lock-timeout-ms", "60000",
                           "--worker-lock-timeout-ms", "60000"]  # fmt: skip
    env = {"CLUSTER_TEST_STEP_DELAY_S": "0.05"}
    chains = [f"chain-{i}" for i in range(80)]
    slow = ["slow-0", "slow-1"]
    with running_cluster(*pg_schema, tmp_path, "--orchestrators", "1", "--workers", "1",
                         "--worker-concurrency", "4", "--drain-timeout", str(drain_s), *locks,
                         env=env, name="first") as first:  # fmt: skip
        first.wait_ready()
        for i in slow:
            client.start_orchestration(i, "Slow", 6.0)  # outlasts the drain: abandoned
        for i in chains:
            client.start_orchestration(i, "Chain", 5)
        first.wait_until(
            lambda: Counter(e.name for e in read_effects(first.effects))
            >= Counter(Sleep=2, Step=8),
            "both Sleep activities and some steps running",
        )  # fmt: skip
        signalled = time.monotonic()
        first.signal(signal.SIGTERM)
        first.wait_until(lambda: first.get("/readyz")[0] == 503, "/readyz 503 while draining", 3)
        code = first.wait_exit(drain_s + 5)
        elapsed = time.monotonic() - signalled
        assert code == 0, first.tail()
        assert elapsed <= drain_s + 0.75, f"took {elapsed:.2f}s to drain"
        assert first.events("cluster.draining")
        assert first.events("cluster.stopped", forced=False)
        assert len(first.events("child.exited", expected=True, exit_code=0)) == 2
        abandoned = sum(r["abandoned"] for r in first.events("runtime.stopped"))
        assert abandoned >= 2  # the two sleeps, their locks released
        remaining = client.get_system_metrics().running_instances
        assert remaining >= 2
        print(
            f"\nSIGTERM: exit 0 after {elapsed:.2f}s (drain timeout {drain_s}s), "
            f"{abandoned} items abandoned, {remaining} instances left"
        )

    with running_cluster(*pg_schema, tmp_path, "--orchestrators", "1", "--workers", "1",
                         *locks, env=env, name="second") as second:  # fmt: skip
        resumed = time.monotonic()
        results = wait_terminal(client, slow + chains, 30)
        took = time.monotonic() - resumed
        assert {r.status for r in results.values()} == {"Completed"}
        assert results["slow-0"].output == [6.0, 7]
        assert took < 30
        sleeps = [r for r in read_effects(second.effects) if r.name == "Sleep"]
        assert len(sleeps) == 4  # each sleep ran in both clusters
        print(f"second cluster finished the remaining work in {took:.2f}s (locks: 60s)")
        second.signal(signal.SIGTERM)
        assert second.wait_exit(30) == 0


def test_a_second_signal_stops_at_once(
    pg_schema: tuple[str, str], client: Any, tmp_path: Path
) -> None:
    with running_cluster(*pg_schema, tmp_path, "--orchestrators", "1", "--workers", "1",
                         "--drain-timeout", "60") as cluster:  # fmt: skip
        cluster.wait_ready()
        client.start_orchestration("slow", "Slow", 60.0)
        cluster.wait_until(lambda: bool(read_effects(cluster.effects)), "the Sleep to start")
        cluster.signal(signal.SIGINT)
        cluster.wait_event("cluster.draining")
        signalled = time.monotonic()
        cluster.signal(signal.SIGINT)
        assert cluster.wait_exit(10) == 1
        assert time.monotonic() - signalled < 5
        assert cluster.events("cluster.stopped", forced=True)
        cluster.wait_until(lambda: not cluster.group_processes(), "no process left", 10,
                           allow_exit=True)  # fmt: skip
