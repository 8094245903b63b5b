"""Client admin operations on instances produced by a real runtime: listing, info, history
shapes, trees, deletion, pruning, stats, system metrics and queue depths."""

from __future__ import annotations

import json
import threading
import time

import pytest

from duroxide import InstanceFilter, PruneOptions

from .support import eventually


@pytest.fixture
def runtime(make_runtime):
    rt = make_runtime()
    rt.register_activity("Echo", lambda ctx, x: x)
    rt.register_activity("Upper", lambda ctx, s: s.upper())

    @rt.register_orchestration("EchoFlow")
    def echo_flow(ctx, inp):
        return (yield ctx.schedule_activity("Echo", inp))

    @rt.register_orchestration("Waits")
    def waits(ctx, _):
        return (yield ctx.wait_for_event("go"))

    @rt.register_orchestration("Fails")
    def fails(ctx, _):
        raise RuntimeError("nope")

    @rt.register_orchestration("Counter")
    def counter(ctx, n):
        if n < 3:
            yield ctx.continue_as_new(n + 1)
        return n

    @rt.register_orchestration("Parent")
    def parent(ctx, _):
        a = yield ctx.schedule_sub_orchestration_with_id("Child", "tree-child-a", "a")
        b = yield ctx.schedule_sub_orchestration_with_id("Middle", "tree-child-b", "b")
        return [a, b]

    @rt.register_orchestration("Middle")
    def middle(ctx, inp):
        return (yield ctx.schedule_sub_orchestration_with_id("Child", "tree-grandchild", inp))

    @rt.register_orchestration("Child")
    def child(ctx, inp):
        return (yield ctx.schedule_activity("Upper", inp))

    return rt


def _run(client, instance_id, name, inp=None, status="Completed"):
    client.start_orchestration(instance_id, name, inp)
    result = client.wait_for_orchestration(instance_id, 5_000)
    assert result.status == status, result.error
    return result


# --- listing and info ------------------------------------------------------------------------


def test_list_instances_and_filter_by_status(runtime, client):
    runtime.start()
    _run(client, "list-done", "EchoFlow", 1)
    _run(client, "list-failed", "Fails", status="Failed")
    client.start_orchestration("list-running", "Waits")
    eventually(lambda: client.get_status("list-running").status == "Running", 5)

    assert sorted(client.list_all_instances()) == ["list-done", "list-failed", "list-running"]
    assert client.list_instances_by_status("Completed") == ["list-done"]
    assert client.list_instances_by_status("Failed") == ["list-failed"]
    assert client.list_instances_by_status("Running") == ["list-running"]


def test_instance_info_and_execution_info_fields(runtime, client):
    runtime.start()
    before = int(time.time() * 1000)
    _run(client, "info", "EchoFlow", {"k": "v"})
    info = client.get_instance_info("info")
    assert info.instance_id == "info"
    assert info.orchestration_name == "EchoFlow"
    assert info.orchestration_version == "1.0.0"
    assert info.status == "Completed"
    assert info.current_execution_id == 1
    assert info.parent_instance_id is None
    assert json.loads(info.output) == {"k": "v"}
    assert before - 5_000 <= info.created_at <= info.updated_at <= int(time.time() * 1000) + 5_000

    history = client.read_execution_history("info", 1)
    execution = client.get_execution_info("info", 1)
    assert execution.execution_id == 1
    assert execution.status == "Completed"
    assert execution.event_count == len(history)
    assert execution.started_at <= execution.completed_at
    assert execution.started_at >= info.created_at

    with pytest.raises(LookupError):
        client.get_instance_info("no-such-instance")


def test_list_executions_after_continue_as_new(runtime, client):
    runtime.start()
    assert _run(client, "can", "Counter", 0).output == 3
    assert client.list_executions("can") == [1, 2, 3, 4]
    assert [client.get_execution_info("can", e).status for e in (1, 2, 3, 4)] == [
        "ContinuedAsNew",
        "ContinuedAsNew",
        "ContinuedAsNew",
        "Completed",
    ]
    assert client.get_instance_info("can").current_execution_id == 4
    kinds_1 = [e.kind for e in client.read_execution_history("can", 1)]
    assert kinds_1 == ["OrchestrationStarted", "OrchestrationContinuedAsNew"]
    started_3 = client.read_execution_history("can", 3)[0]
    assert json.loads(started_3.data)["input"] == 2


def test_read_execution_history_shapes(runtime, client):
    runtime.start()
    _run(client, "shapes", "EchoFlow", {"a": [1, 2]})
    history = client.read_execution_history("shapes", 1)
    assert [e.kind for e in history] == [
        "OrchestrationStarted",
        "ActivityScheduled",
        "ActivityCompleted",
        "OrchestrationCompleted",
    ]
    assert [e.event_id for e in history] == [1, 2, 3, 4]
    stamps = [e.timestamp_ms for e in history]
    assert all(isinstance(t, int) for t in stamps)
    assert stamps == sorted(stamps)

    started = json.loads(history[0].data)
    assert set(started) == {"name", "version", "input"}
    assert started["name"] == "EchoFlow"
    assert started["version"] == "1.0.0"
    assert started["input"] == {"a": [1, 2]}

    scheduled = json.loads(history[1].data)
    assert scheduled["name"] == "Echo"
    assert scheduled["input"] == {"a": [1, 2]}

    assert json.loads(history[2].data) == {"a": [1, 2]}  # the result JSON itself
    assert history[2].source_event_id == history[1].event_id
    assert json.loads(history[3].data) == {"a": [1, 2]}


def test_instance_tree_contains_all_descendants(runtime, client):
    runtime.start()
    assert _run(client, "tree", "Parent").output == ["A", "B"]
    tree = client.get_instance_tree("tree")
    assert tree.root_id == "tree"
    assert tree.size == 4
    assert sorted(tree.all_ids) == ["tree", "tree-child-a", "tree-child-b", "tree-grandchild"]
    assert client.get_instance_info("tree-grandchild").parent_instance_id == "tree-child-b"
    assert client.get_instance_info("tree-child-a").parent_instance_id == "tree"
    leaf = client.get_instance_tree("tree-child-a")
    assert (leaf.root_id, leaf.size, leaf.all_ids) == ("tree-child-a", 1, ["tree-child-a"])


# --- deletion and pruning --------------------------------------------------------------------


def test_delete_instance_needs_force_while_running(runtime, client):
    runtime.start()
    client.start_orchestration("del-running", "Waits")
    eventually(lambda: client.get_status("del-running").status == "Running", 5)
    with pytest.raises(ValueError):
        client.delete_instance("del-running")
    assert client.get_status("del-running").status == "Running"

    result = client.delete_instance("del-running", True)
    assert result.instances_deleted == 1
    assert result.events_deleted >= 2
    assert client.get_status("del-running").status == "NotFound"
    assert "del-running" not in client.list_all_instances()


def test_delete_completed_instance_removes_its_whole_tree(runtime, client):
    runtime.start()
    _run(client, "tree-del", "Parent")
    events = sum(
        len(client.read_execution_history(i, 1))
        for i in client.get_instance_tree("tree-del").all_ids
    )
    with pytest.raises(ValueError):
        client.delete_instance("tree-child-a")  # a child while its parent exists
    result = client.delete_instance("tree-del", False)
    assert result.instances_deleted == 4
    assert result.events_deleted == events
    assert client.list_all_instances() == []
    for instance_id in ("tree-del", "tree-child-a", "tree-child-b", "tree-grandchild"):
        assert client.get_status(instance_id).status == "NotFound"
    with pytest.raises(LookupError):
        client.delete_instance("tree-del")


def test_delete_instance_bulk_skips_running_instances(runtime, client):
    runtime.start()
    _run(client, "bulk-1", "EchoFlow", 1)
    _run(client, "bulk-2", "Fails", status="Failed")
    _run(client, "bulk-keep", "EchoFlow", 3)
    client.start_orchestration("bulk-running", "Waits")
    eventually(lambda: client.get_status("bulk-running").status == "Running", 5)

    result = client.delete_instance_bulk(
        InstanceFilter(instance_ids=["bulk-1", "bulk-2", "bulk-running"])
    )
    assert result.instances_deleted == 2
    assert sorted(client.list_all_instances()) == ["bulk-keep", "bulk-running"]

    future = int(time.time() * 1000) + 60_000
    result = client.delete_instance_bulk(InstanceFilter(completed_before=future, limit=10))
    assert result.instances_deleted == 1
    assert client.list_all_instances() == ["bulk-running"]


def test_prune_executions_keeps_the_newest(runtime, client):
    runtime.start()
    _run(client, "prune", "Counter", 0)
    assert client.list_executions("prune") == [1, 2, 3, 4]
    result = client.prune_executions("prune", PruneOptions(keep_last=2))
    assert result.executions_deleted == 2
    assert client.list_executions("prune") == [3, 4]
    assert client.read_execution_history("prune", 1) == []
    status = client.get_status("prune")
    assert (status.status, status.output) == ("Completed", 3)
    again = client.prune_executions("prune", PruneOptions(keep_last=1))
    assert again.executions_deleted == 1
    assert client.list_executions("prune") == [4]


# --- stats, metrics and queue depths ---------------------------------------------------------


def test_orchestration_stats(make_runtime, client):
    rt = make_runtime()

    @rt.register_orchestration("Stats")
    def stats(ctx, _):
        ctx.set_kv_value("a", "12345")
        ctx.set_kv_value("b", "xy")
        return (yield ctx.wait_for_event("go"))

    rt.start()
    assert client.get_orchestration_stats("no-such-instance") is None
    client.start_orchestration("stats", "Stats")
    client.wait_for_kv_value("stats", "b", 5_000)
    snapshot = client.get_orchestration_stats("stats")
    history = client.read_execution_history("stats", 1)
    assert snapshot.history_event_count == len(history)
    assert snapshot.history_size_bytes > 0
    assert snapshot.queue_pending_count == 0
    assert snapshot.kv_user_key_count == 2
    assert snapshot.kv_total_value_bytes == len("12345") + len("xy")


def test_system_metrics(runtime, client):
    runtime.start()
    _run(client, "sys-1", "EchoFlow", 1)
    _run(client, "sys-2", "Counter", 2)  # two executions
    _run(client, "sys-3", "Fails", status="Failed")
    client.start_orchestration("sys-4", "Waits")
    eventually(lambda: client.get_status("sys-4").status == "Running", 5)

    metrics = client.get_system_metrics()
    assert metrics.total_instances == 4
    assert metrics.completed_instances == 2
    assert metrics.failed_instances == 1
    assert metrics.running_instances == 1
    assert metrics.total_executions == 5
    expected_events = sum(
        len(client.read_execution_history(i, e))
        for i in ("sys-1", "sys-2", "sys-3", "sys-4")
        for e in client.list_executions(i)
    )
    assert metrics.total_events == expected_events


def test_queue_depths(make_runtime, client):
    depths = client.get_queue_depths()
    assert (depths.orchestrator_queue, depths.worker_queue, depths.timer_queue) == (0, 0, 0)

    client.start_orchestration("depth-unclaimed", "Pending")  # no runtime yet
    assert client.get_queue_depths().orchestrator_queue == 1

    rt = make_runtime(worker_concurrency=0)

    @rt.register_orchestration("Pending")
    def pending(ctx, _):
        yield ctx.all(
            [
                ctx.schedule_activity("A", 1),
                ctx.schedule_activity("A", 2).with_tag("gpu"),
                ctx.schedule_activity("A", 3).with_tag("gpu"),
                ctx.schedule_timer(60_000),
            ]
        )

    rt.start()
    depths = eventually(
        lambda: (d := client.get_queue_depths()).worker_queue == 3 and d.timer_queue == 1 and d,
        5,
    )
    assert depths.orchestrator_queue == 0
    assert depths.worker_queue_by_tag == {"": 1, "gpu": 2}


def test_force_delete_during_a_turn_is_not_undone_by_the_turns_ack(make_runtime, client):
    in_turn = threading.Event()
    release = threading.Event()
    rt = make_runtime()

    @rt.register_orchestration("SlowTurn")
    def slow_turn(ctx, _):
        yield ctx.wait_for_event("go")
        in_turn.set()
        release.wait(5)  # the turn that handles "go" is still running during the delete
        return "finished"

    rt.start()
    client.start_orchestration("del-mid-turn", "SlowTurn")
    eventually(lambda: client.get_status("del-mid-turn").status == "Running", 5)
    client.raise_event("del-mid-turn", "go", None)
    assert in_turn.wait(5)
    try:
        assert client.delete_instance("del-mid-turn", True).instances_deleted == 1
    finally:
        release.set()
    eventually(lambda: rt.metrics_snapshot().orch_lock_lost == 1, 5)
    assert client.get_status("del-mid-turn").status == "NotFound"
    assert client.list_all_instances() == []
    assert client.get_queue_depths().orchestrator_queue == 0
