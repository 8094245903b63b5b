"""Node user guide: activity patterns, activity sessions, runtime options and metrics.

Sessions pin every activity scheduled with the same ``session_id`` to one worker; a worker is
identified by ``worker_node_id`` (stable across restarts) and owns at most
``max_sessions_per_runtime`` sessions at a time.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

from duroxide import Client, RuntimeOptions

from .support import eventually


def wait_until_waiting(client: Client, instance_id: str) -> None:
    eventually(
        lambda: (
            instance_id in client.list_all_instances()
            and "ExternalSubscribed"
            in [e.kind for e in client.read_execution_history(instance_id, 1)]
        ),
        timeout_s=5,
    )


# --- Activity with client access -----------------------------------------------------------------


def test_activity_get_client_starts_another_orchestration(client, make_runtime):
    runtime = make_runtime()

    @runtime.register_activity("TriggerCleanup")
    def trigger_cleanup(ctx, input):
        activity_client = ctx.get_client()
        activity_client.start_orchestration(
            f"cleanup-{input['id']}", "CleanupWorkflow", {"resourceId": input["id"]}
        )
        return {"triggered": True}

    runtime.register_activity("DeleteResource", lambda ctx, inp: f"deleted {inp}")

    @runtime.register_orchestration("CleanupWorkflow")
    def cleanup_workflow(ctx, input):
        return (yield ctx.schedule_activity("DeleteResource", input["resourceId"]))

    @runtime.register_orchestration("Decommission")
    def decommission(ctx, input):
        return (yield ctx.schedule_activity("TriggerCleanup", input))

    runtime.start()
    client.start_orchestration("decommission-1", "Decommission", {"id": "disk-5"})
    result = client.wait_for_orchestration("decommission-1", 5_000)

    assert result.status == "Completed", result.error
    assert result.output == {"triggered": True}
    cleanup = client.wait_for_orchestration("cleanup-disk-5", 5_000)
    assert cleanup.status == "Completed", cleanup.error
    assert cleanup.output == "deleted disk-5"
    # Started by a plain client, so it is an independent instance, not a child.
    assert client.get_instance_info("cleanup-disk-5").parent_instance_id is None


def test_activity_get_client_raises_an_event_to_another_instance(client, make_runtime):
    runtime = make_runtime()

    @runtime.register_activity("Notify")
    def notify(ctx, input):
        ctx.get_client().raise_event(input["target"], "notified", {"from": ctx.instance_id})
        return "sent"

    @runtime.register_orchestration("Listener")
    def listener(ctx, input):
        return (yield ctx.wait_for_event("notified"))

    @runtime.register_orchestration("Notifier")
    def notifier(ctx, input):
        return (yield ctx.schedule_activity("Notify", input))

    runtime.start()
    client.start_orchestration("listener-1", "Listener", None)
    wait_until_waiting(client, "listener-1")
    client.start_orchestration("notifier-1", "Notifier", {"target": "listener-1"})

    assert client.wait_for_orchestration("notifier-1", 5_000).output == "sent"
    assert client.wait_for_orchestration("listener-1", 5_000).output == {"from": "notifier-1"}


# --- Activity sessions ---------------------------------------------------------------------------


def test_schedule_activity_on_session_runs_turns_on_one_worker(client, make_runtime):
    # Two workers compete for the activities; the session keeps both turns on one of them.
    runtimes = [
        make_runtime(worker_node_id="pod-a", max_sessions_per_runtime=10),
        make_runtime(worker_node_id="pod-b", max_sessions_per_runtime=10),
    ]
    runs: list[dict[str, Any]] = []

    def run_turn(ctx, input):
        ctx.trace_info(f"session: {ctx.session_id}")  # None for regular activities
        runs.append({"turn": input["turn"], "session": ctx.session_id, "worker": ctx.worker_id})
        return f"turn-{input['turn']}"

    def game_turn(ctx, input):
        session_id = yield ctx.new_guid()  # deterministic session ID
        r1 = yield ctx.schedule_activity_on_session("RunTurn", {"turn": 1}, session_id)
        r2 = yield ctx.schedule_activity_on_session("RunTurn", {"turn": 2}, session_id)
        r3 = yield ctx.schedule_activity("RunTurn", {"turn": 3})  # no session
        return {"r1": r1, "r2": r2, "r3": r3, "session": session_id}

    for runtime in runtimes:
        runtime.register_activity("RunTurn", run_turn)
        runtime.register_orchestration("GameTurn", game_turn)
        runtime.start()
    client.start_orchestration("game-1", "GameTurn", None)
    result = client.wait_for_orchestration("game-1", 5_000)

    assert result.status == "Completed", result.error
    session_id = result.output["session"]
    assert len(session_id) == 36
    assert {k: result.output[k] for k in ("r1", "r2", "r3")} == {
        "r1": "turn-1",
        "r2": "turn-2",
        "r3": "turn-3",
    }
    by_turn = {run["turn"]: run for run in runs}
    assert by_turn[1]["session"] == by_turn[2]["session"] == session_id
    assert by_turn[1]["worker"] == by_turn[2]["worker"]  # both ran on the same worker
    assert by_turn[1]["worker"] in ("pod-a", "pod-b")
    assert by_turn[3]["session"] is None


def test_schedule_activity_accepts_session_id_as_an_option(client, make_runtime):
    runtime = make_runtime(worker_node_id="pod-opt")
    runtime.register_activity("RunTurn", lambda ctx, inp: [ctx.session_id, ctx.worker_id])

    @runtime.register_orchestration("OptionStyle")
    def option_style(ctx, input):
        a = yield ctx.schedule_activity("RunTurn", {"turn": 1}, session_id="my-session")
        b = yield ctx.schedule_activity("RunTurn", {"turn": 1}, "my-session")
        return [a, b]

    runtime.start()
    client.start_orchestration("session-option-1", "OptionStyle", None)
    result = client.wait_for_orchestration("session-option-1", 5_000)

    assert result.status == "Completed", result.error
    assert result.output == [["my-session", "pod-opt"], ["my-session", "pod-opt"]]


def test_max_sessions_per_runtime_spreads_sessions_and_keeps_affinity(client, make_runtime):
    sessions = ["s1", "s2", "s3", "s4"]
    runs: list[tuple[int, str, str]] = []
    lock = threading.Lock()

    def where(ctx, input):
        with lock:
            runs.append((input["turn"], ctx.session_id, ctx.worker_id))
        return ctx.worker_id

    def multi_session(ctx, input):
        for turn in range(3):
            yield ctx.all(
                [
                    ctx.schedule_activity_on_session("Where", {"turn": turn}, s)
                    for s in input["sessions"]
                ]
            )
        return "done"

    for node in ("pod-a", "pod-b"):
        runtime = make_runtime(worker_node_id=node, max_sessions_per_runtime=2)
        runtime.register_activity("Where", where)
        runtime.register_orchestration("MultiSession", multi_session)
        runtime.start()
    client.start_orchestration("multi-session-1", "MultiSession", {"sessions": sessions})
    result = client.wait_for_orchestration("multi-session-1", 5_000)

    assert result.status == "Completed", result.error
    assert len(runs) == 3 * len(sessions)
    owner: dict[str, set[str]] = defaultdict(set)
    for _, session, worker in runs:
        owner[session].add(worker)
    assert all(len(workers) == 1 for workers in owner.values()), owner  # affinity
    per_worker: dict[str, set[str]] = defaultdict(set)
    for session, workers in owner.items():
        per_worker[next(iter(workers))].add(session)
    # Each runtime may own at most 2 sessions, so the 4 sessions are split 2 + 2.
    assert {w: len(s) for w, s in per_worker.items()} == {"pod-a": 2, "pod-b": 2}


def test_worker_node_id_keeps_session_ownership_across_a_restart(client, make_runtime):
    runs: list[tuple[int, str]] = []

    def stateful(ctx, input):
        runs.append((input, ctx.worker_id))
        return ctx.worker_id

    def pinned(ctx, input):
        first = yield ctx.schedule_activity_on_session("Stateful", 1, "cart-42")
        yield ctx.wait_for_event("next")
        second = yield ctx.schedule_activity_on_session("Stateful", 2, "cart-42")
        return [first, second]

    def start(node: str):
        runtime = make_runtime(worker_node_id=node)
        runtime.register_activity("Stateful", stateful)
        runtime.register_orchestration("Pinned", pinned)
        runtime.start()
        return runtime

    pod_a = start("pod-a")  # only pod-a is up for the first turn
    client.start_orchestration("pinned-1", "Pinned", None)
    wait_until_waiting(client, "pinned-1")
    assert runs == [(1, "pod-a")]
    pod_a.shutdown(100)  # pod-a restarts; pod-b comes up first

    start("pod-b")
    client.raise_event("pinned-1", "next", None)
    start("pod-a")  # same stable identity: it still owns the session
    result = client.wait_for_orchestration("pinned-1", 5_000)

    assert result.status == "Completed", result.error
    assert result.output == ["pod-a", "pod-a"]
    assert runs == [(1, "pod-a"), (2, "pod-a")]


def test_retry_on_session_pins_every_attempt_to_the_session(client, make_runtime):
    attempts: list[tuple[str | None, str]] = []

    def stateful_operation(ctx, input):
        attempts.append((ctx.session_id, ctx.worker_id))
        if len(attempts) < 3:
            raise RuntimeError(f"cache miss #{len(attempts)}")
        return {"attempts": len(attempts)}

    def with_retry(ctx, input):
        return (
            yield ctx.schedule_activity_with_retry_on_session(
                "StatefulOperation",
                input,
                {
                    "max_attempts": 3,
                    "backoff": "exponential",
                    "timeout_ms": 5000,
                    "total_timeout_ms": 30000,
                },
                "session-7",
            )
        )

    for node in ("pod-a", "pod-b"):
        runtime = make_runtime(worker_node_id=node)
        runtime.register_activity("StatefulOperation", stateful_operation)
        runtime.register_orchestration("WithRetry", with_retry)
        runtime.start()
    client.start_orchestration("retry-session-1", "WithRetry", {"k": 1})
    result = client.wait_for_orchestration("retry-session-1", 5_000)

    assert result.status == "Completed", result.error
    assert result.output == {"attempts": 3}
    assert len(attempts) == 3
    assert {session for session, _ in attempts} == {"session-7"}
    assert len({worker for _, worker in attempts}) == 1


def test_session_runtime_options_are_accepted():
    options = RuntimeOptions(
        max_sessions_per_runtime=10,  # Max concurrent sessions (default: 10)
        session_idle_timeout_ms=300_000,  # Session unpin after idle (default: 5 min)
        worker_node_id="pod-name",  # Stable identity for session ownership
    )
    assert options.max_sessions_per_runtime == 10
    assert options.session_idle_timeout_ms == 300_000
    assert options.worker_node_id == "pod-name"
    defaults = RuntimeOptions()
    assert defaults.max_sessions_per_runtime == 10
    assert defaults.session_idle_timeout_ms == 300_000


# --- Runtime options and metrics -----------------------------------------------------------------


def test_runtime_options_from_the_guide_run_a_workflow(client, make_runtime):
    runtime = make_runtime(
        orchestration_concurrency=4,
        worker_concurrency=8,
        dispatcher_poll_interval_ms=100,
        log_level="info",
        log_format="pretty",
        service_name="my-service",
        service_version="1.0.0",
        max_sessions_per_runtime=10,
        session_idle_timeout_ms=300_000,
        worker_node_id="pod-1",
    )
    runtime.register_activity("Hello", lambda ctx, inp: f"hi {inp} from {ctx.worker_id}")

    @runtime.register_orchestration("Hi")
    def hi(ctx, input):
        return (yield ctx.schedule_activity("Hello", input))

    runtime.start()
    client.start_orchestration("options-1", "Hi", "there")
    assert client.wait_for_orchestration("options-1", 5_000).output == "hi there from pod-1"


def test_metrics_snapshot_counts_starts_completions_failures_and_activities(client, make_runtime):
    runtime = make_runtime()
    runtime.register_activity("Ok", lambda ctx, inp: inp)

    def boom(ctx, inp):
        raise ValueError("boom")

    runtime.register_activity("Boom", boom)

    @runtime.register_orchestration("Counted")
    def counted(ctx, input):
        yield ctx.schedule_activity("Ok", 1)
        if input == "fail":
            yield ctx.schedule_activity("Boom", 2)
        return "ok"

    runtime.start()
    client.start_orchestration("metrics-ok", "Counted", "ok")
    client.start_orchestration("metrics-fail", "Counted", "fail")
    assert client.wait_for_orchestration("metrics-ok", 5_000).status == "Completed"
    assert client.wait_for_orchestration("metrics-fail", 5_000).status == "Failed"

    def snapshot_settled() -> Any:
        snap = runtime.metrics_snapshot()
        return snap if snap.orch_completions >= 1 and snap.orch_failures >= 1 else None

    snapshot = eventually(snapshot_settled, timeout_s=5)
    assert snapshot.orch_starts == 2
    assert snapshot.orch_completions == 1
    assert snapshot.orch_failures == 1
    assert snapshot.activity_success == 2
    assert snapshot.activity_errors == 1
