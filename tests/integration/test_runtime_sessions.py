"""Session affinity across runtimes: same ``session_id`` -> same worker node, the per-runtime
session limit, node ids shared by several runtimes, and the idle timeout that frees a session.

Activities return ``ctx.worker_id`` (the runtime's ``worker_node_id``) and ``ctx.session_id``.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import pytest

from duroxide import TagFilter

from .support import eventually


def where(ctx, inp):
    time.sleep(0.02)  # long enough for both workers to be claiming at the same time
    return {"worker": ctx.worker_id, "session": ctx.session_id, "input": inp}


def test_activities_of_one_session_run_on_one_runtime(make_runtime, client):
    orchestrator = make_runtime(worker_concurrency=0)
    sessions = ["s1", "s2", "s3", "s4"]

    @orchestrator.register_orchestration("Sessions")
    def flow(ctx, _):
        tasks = [
            ctx.schedule_activity("Where", f"{s}-{i}", session_id=s)
            for i in range(3)
            for s in sessions
        ]
        tasks += [ctx.schedule_activity("Where", f"free-{i}") for i in range(2)]
        fanned = yield ctx.all_typed(tasks)
        sequential = []
        for i in range(3):
            sequential.append((yield ctx.schedule_activity_on_session("Where", f"seq-{i}", "s1")))
        return {"fanned": fanned, "sequential": sequential}

    for node in ("node-a", "node-b"):
        worker = make_runtime(orchestration_concurrency=0, worker_node_id=node)
        worker.register_activity("Where", where)
        worker.start()
    orchestrator.start()

    client.start_orchestration("sess-affinity", "Sessions")
    result = client.wait_for_orchestration("sess-affinity", 10_000)
    assert result.status == "Completed", result.error
    by_session: dict[str | None, set[str]] = defaultdict(set)
    for r in result.output["fanned"] + result.output["sequential"]:
        assert r["worker"] in ("node-a", "node-b")
        if r["session"] is not None:
            assert r["input"].startswith(r["session"]) or r["input"].startswith("seq-")
        by_session[r["session"]].add(r["worker"])
    for s in sessions:
        assert len(by_session[s]) == 1, f"session {s} ran on {by_session[s]}"
    free = [r for r in result.output["fanned"] if r["input"].startswith("free-")]
    assert [r["session"] for r in free] == [None, None]
    assert all(r["session"] == "s1" for r in result.output["sequential"])


def test_max_sessions_per_runtime_limits_the_sessions_a_runtime_claims(make_runtime, client):
    a = make_runtime(worker_node_id="node-a", max_sessions_per_runtime=1)
    a.register_activity("Where", where)

    @a.register_orchestration("TwoSessions")
    def flow(ctx, _):
        return (
            yield ctx.all_typed(
                [
                    ctx.schedule_activity("Where", "x", session_id="s1"),
                    ctx.schedule_activity("Where", "y", session_id="s2"),
                ]
            )
        )

    a.start()
    client.start_orchestration("sess-limit", "TwoSessions")
    eventually(lambda: a.metrics_snapshot().activity_success == 1, 5)
    # node-a owns one live session; the other session's activity must wait for another node.
    with pytest.raises(TimeoutError):
        client.wait_for_orchestration("sess-limit", 400)
    assert a.metrics_snapshot().activity_success == 1
    assert client.get_queue_depths().worker_queue == 1

    b = make_runtime(
        orchestration_concurrency=0, worker_node_id="node-b", max_sessions_per_runtime=1
    )
    b.register_activity("Where", where)
    b.start()
    result = client.wait_for_orchestration("sess-limit", 5_000)
    assert result.status == "Completed", result.error
    assert sorted(r["worker"] for r in result.output) == ["node-a", "node-b"]
    assert sorted(r["session"] for r in result.output) == ["s1", "s2"]


def test_runtimes_sharing_a_worker_node_id_both_serve_its_sessions(make_runtime, client):
    """Two runtimes with one node id and one slot each: two activities of the same session can
    only meet at the barrier if both runtimes run that session at the same time."""
    barrier = threading.Barrier(2, timeout=3)

    def meet(label):
        def activity(ctx, _):
            barrier.wait()
            return {"runtime": label, "worker": ctx.worker_id, "session": ctx.session_id}

        return activity

    orchestrator = make_runtime(worker_concurrency=0)

    @orchestrator.register_orchestration("Meet")
    def flow(ctx, _):
        return (
            yield ctx.all_typed(
                [
                    ctx.schedule_activity("Meet", 1, session_id="shared-session"),
                    ctx.schedule_activity("Meet", 2, session_id="shared-session"),
                ]
            )
        )

    for label in ("A", "B"):
        runtime = make_runtime(
            orchestration_concurrency=0,
            worker_concurrency=1,
            worker_node_id="shared-node",
            max_sessions_per_runtime=1,
        )
        runtime.register_activity("Meet", meet(label))
        runtime.start()
    orchestrator.start()

    client.start_orchestration("sess-shared", "Meet")
    result = client.wait_for_orchestration("sess-shared", 5_000)
    assert result.status == "Completed", result.error
    assert sorted(r["runtime"] for r in result.output) == ["A", "B"]
    assert {r["worker"] for r in result.output} == {"shared-node"}
    assert {r["session"] for r in result.output} == {"shared-session"}


def _pinned_session_flow(ctx, _):
    first = yield ctx.schedule_activity("Where", "first", session_id="s1")
    # Only node-b takes tag "b"; it can run this only once node-a no longer owns session s1.
    second = ctx.schedule_activity("Where", "second", session_id="s1").with_tag("b")
    winner = yield ctx.race(second, ctx.schedule_timer(1_500))
    return {"first": first, "winner": winner}


def _start_pinned_session_pair(make_runtime, **a_options):
    a = make_runtime(worker_node_id="node-a", worker_lock_timeout_ms=3_000, **a_options)
    a.register_activity("Where", where)
    a.register_orchestration("Pinned", _pinned_session_flow)
    b = make_runtime(
        orchestration_concurrency=0,
        worker_node_id="node-b",
        worker_tag_filter=TagFilter.tags(["b"]),
    )
    b.register_activity("Where", where)
    a.start()
    b.start()


def test_idle_session_is_released_so_another_runtime_can_take_it(make_runtime, client):
    _start_pinned_session_pair(make_runtime, session_idle_timeout_ms=300)
    client.start_orchestration("sess-idle", "Pinned")
    result = client.wait_for_orchestration("sess-idle", 5_000)
    assert result.status == "Completed", result.error
    assert result.output["first"]["worker"] == "node-a"
    assert result.output["winner"]["index"] == 0, "session s1 was never released by node-a"
    assert result.output["winner"]["value"]["worker"] == "node-b"
    assert result.output["winner"]["value"]["session"] == "s1"


def test_busy_session_stays_with_its_owner_without_idle_timeout(make_runtime, client):
    """Control for the test above: with the default (5 min) idle timeout node-a keeps renewing
    its session, so node-b never gets the second activity and the timer wins."""
    _start_pinned_session_pair(make_runtime)
    client.start_orchestration("sess-pinned", "Pinned")
    result = client.wait_for_orchestration("sess-pinned", 5_000)
    assert result.status == "Completed", result.error
    assert result.output["first"]["worker"] == "node-a"
    assert result.output["winner"] == {"index": 1, "value": None}


def test_restarted_runtime_with_the_same_node_id_resumes_its_sessions(make_runtime, client):
    """A replaced pod keeps its worker_node_id: its sessions are still its own, so the new
    runtime continues them at once (a different node would wait for the session lock)."""
    first = make_runtime(worker_node_id="pod-1", worker_lock_timeout_ms=30_000)
    first.register_activity("Where", where)

    @first.register_orchestration("TwoSteps")
    def flow(ctx, _):
        a = yield ctx.schedule_activity("Where", 1, session_id="sticky")
        yield ctx.wait_for_event("next")
        b = yield ctx.schedule_activity("Where", 2, session_id="sticky")
        return [a, b]

    first.start()
    client.start_orchestration("sess-restart", "TwoSteps")
    eventually(lambda: first.metrics_snapshot().activity_success == 1, 5)
    first.shutdown(1_000)

    second = make_runtime(worker_node_id="pod-1", worker_lock_timeout_ms=30_000)
    second.register_activity("Where", where)
    second.register_orchestration("TwoSteps", flow)
    second.start()
    client.raise_event("sess-restart", "next", None)
    result = client.wait_for_orchestration("sess-restart", 3_000)
    assert result.status == "Completed", result.error
    assert [r["worker"] for r in result.output] == ["pod-1", "pod-1"]
    assert second.metrics_snapshot().activity_success == 1


def test_session_with_a_running_activity_is_not_released_as_idle(make_runtime, client):
    spans: dict[str, list[float]] = {}
    long_started = threading.Event()

    def long_step(ctx, _):
        spans["long"] = [time.monotonic()]
        long_started.set()
        time.sleep(1.2)
        spans["long"].append(time.monotonic())
        return ctx.worker_id

    def quick_step(ctx, _):
        spans["quick"] = [time.monotonic()]
        return ctx.worker_id

    a = make_runtime(worker_node_id="node-a", worker_lock_timeout_ms=3_000,
                     session_idle_timeout_ms=300)  # fmt: skip
    a.register_activity("Long", long_step)

    @a.register_orchestration("SameSession")
    def flow(ctx, _):
        return (
            yield ctx.all_typed(
                [
                    ctx.schedule_activity("Long", None, session_id="s1"),
                    # Only node-b takes tag "b": it may run this once node-a let go of s1.
                    ctx.schedule_activity("Quick", None, session_id="s1").with_tag("b"),
                ]
            )
        )

    b = make_runtime(orchestration_concurrency=0, worker_node_id="node-b",
                     worker_tag_filter=TagFilter.tags(["b"]))  # fmt: skip
    b.register_activity("Quick", quick_step)
    a.start()
    # Setup, not an assertion: claim the long activity ~0.5 s into node-a's 1 s keeper cycle,
    # so the keeper's next pass sees the session "idle" (> 300 ms) before the running item's
    # own renewal is due.
    time.sleep(0.5)
    client.start_orchestration("sess-busy", "SameSession")
    assert long_started.wait(5)
    b.start()  # node-a owns s1 now; node-b must wait until s1 is really idle
    result = client.wait_for_orchestration("sess-busy", 6_000)
    assert result.status == "Completed", result.error
    assert result.output == ["node-a", "node-b"]
    assert spans["quick"][0] >= spans["long"][1], (
        "node-b ran session s1 while node-a was still running an activity of it"
    )


def test_session_of_a_stopped_node_moves_once_its_lock_expires(make_runtime, client):
    """node-a is stopped (not idle: gone); its session lock is no longer renewed, so after
    worker_lock_timeout_ms (600 ms) node-b takes the session over."""
    a = make_runtime(worker_node_id="node-a", worker_lock_timeout_ms=600)
    a.register_activity("Where", where)

    @a.register_orchestration("Handover")
    def flow(ctx, _):
        first = yield ctx.schedule_activity("Where", 1, session_id="moving")
        yield ctx.wait_for_event("next")
        second = yield ctx.schedule_activity("Where", 2, session_id="moving")
        return [first["worker"], second["worker"]]

    a.start()
    client.start_orchestration("sess-expire", "Handover")
    eventually(lambda: a.metrics_snapshot().activity_success == 1, 5)
    a.shutdown(1_000)

    b = make_runtime(worker_node_id="node-b", worker_lock_timeout_ms=600)
    b.register_activity("Where", where)
    b.register_orchestration("Handover", flow)
    b.start()
    client.raise_event("sess-expire", "next", None)
    result = client.wait_for_orchestration("sess-expire", 3_000)
    assert result.status == "Completed", result.error
    assert result.output == ["node-a", "node-b"]
