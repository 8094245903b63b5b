"""Admin reads: listing and paging, instance/execution info, trees, stats, metrics, depths."""

from __future__ import annotations

from duroxide.errors import ErrorDetails
from duroxide.providers.base import KvChanges
from duroxide.types import InstanceFilter, InstanceInfo
from duroxide.work_items import EventRaised

from .helpers import (
    ORCH,
    VERSION,
    Store,
    activity,
    completed_instance,
    continue_as_new,
    fetch,
    fetch_work,
    finish,
    raise_event,
    run_first_turn,
    run_turn,
    schedule,
    start,
    wait_for_clock,
)


def ids(infos: list[InstanceInfo]) -> list[str]:
    return [info.instance_id for info in infos]


def test_list_instances_orders_by_id_and_pages_with_a_cursor(provider: Store) -> None:
    for instance_id in ["c", "a", "e", "b", "d"]:
        run_first_turn(provider, instance_id)

    assert ids(provider.list_instances()) == ["a", "b", "c", "d", "e"]
    assert ids(provider.list_instances(limit=2)) == ["a", "b"]
    assert ids(provider.list_instances(after_id="b", limit=2)) == ["c", "d"]
    assert ids(provider.list_instances(after_id="d", limit=2)) == ["e"]
    assert ids(provider.list_instances(after_id="e", limit=2)) == []
    assert ids(provider.list_instances(after_id="bb")) == ["c", "d", "e"]


def test_list_instances_filters_by_status_name_and_ids(provider: Store) -> None:
    completed_instance(provider, "done")
    run_first_turn(provider, "broken")
    finish(provider, "broken", error=ErrorDetails.application("boom"))
    run_first_turn(provider, "busy")
    run_first_turn(provider, "other", name="OtherOrch")

    def listed(instance_filter: InstanceFilter) -> list[str]:
        return ids(provider.list_instances(instance_filter))

    assert listed(InstanceFilter(status="Completed")) == ["done"]
    assert listed(InstanceFilter(status="Failed")) == ["broken"]
    assert listed(InstanceFilter(status="Running")) == ["busy", "other"]
    assert listed(InstanceFilter(orchestration_name="OtherOrch")) == ["other"]
    assert listed(InstanceFilter(orchestration_name=ORCH, status="Running")) == ["busy"]
    assert listed(InstanceFilter(instance_ids=["other", "done", "missing"])) == ["done", "other"]
    assert ids(provider.list_instances(InstanceFilter(status="Running"), after_id="busy")) == [
        "other"
    ]


def test_list_instances_filters_by_creation_time(provider: Store) -> None:
    run_first_turn(provider, "old")
    wait_for_clock(provider, provider.now_ms())  # "old" was created strictly before boundary
    boundary = provider.now_ms()
    wait_for_clock(provider, boundary)  # "new" is created strictly after it
    run_first_turn(provider, "new")

    assert ids(provider.list_instances(InstanceFilter(created_before=boundary))) == ["old"]
    assert ids(provider.list_instances(InstanceFilter(created_after=boundary))) == ["new"]


def test_instance_info_describes_the_instance(provider: Store) -> None:
    before = provider.now_ms()
    run_first_turn(provider, "parent")
    run_first_turn(provider, "inst", parent_instance_id="parent")
    run_turn(provider, "inst", custom_status="working", custom_status_changed=True)
    created = provider.get_instance_info("inst")
    assert created is not None
    finish(provider, "inst", output='"result"', parent_instance_id="parent")
    after = provider.now_ms()

    info = provider.get_instance_info("inst")

    assert info is not None
    assert info.instance_id == "inst"
    assert (info.orchestration_name, info.orchestration_version) == (ORCH, VERSION)
    assert (info.status, info.current_execution_id) == ("Completed", 1)
    assert info.output == '"result"'
    assert info.parent_instance_id == "parent"
    assert (info.custom_status, info.custom_status_version) == ("working", 1)
    assert before <= info.created_at <= info.updated_at <= after
    assert info.created_at == created.created_at
    assert info.updated_at >= created.updated_at


def test_instance_info_of_a_failed_instance_carries_the_error(provider: Store) -> None:
    run_first_turn(provider, "inst")
    finish(provider, "inst", error=ErrorDetails.application("disk on fire"))

    info = provider.get_instance_info("inst")

    assert info is not None
    assert info.status == "Failed"
    assert info.error is not None
    assert "disk on fire" in info.error


def test_execution_info_tracks_an_execution(provider: Store) -> None:
    before = provider.now_ms()
    run_first_turn(provider, "inst", activities=[activity("inst", 2)])

    running = provider.get_execution_info("inst", 1)
    assert running is not None
    assert (running.execution_id, running.status, running.event_count) == (1, "Running", 2)
    assert running.completed_at is None
    assert running.started_at >= before

    finish(provider, "inst", output='"out"')

    done = provider.get_execution_info("inst", 1)
    assert done is not None
    assert (done.status, done.event_count, done.output) == ("Completed", 3, '"out"')
    assert done.completed_at is not None
    assert done.completed_at >= done.started_at == running.started_at


def test_reads_of_unknown_instances_and_executions_are_empty(provider: Store) -> None:
    run_first_turn(provider, "inst")

    assert provider.get_instance_info("missing") is None
    assert provider.get_instance_status("missing") is None
    assert provider.get_execution_info("missing", 1) is None
    assert provider.get_execution_info("inst", 2) is None
    assert provider.list_executions("missing") == []
    assert provider.read_history("missing", 1) == []
    assert provider.read_history("inst", 2) == []
    assert provider.get_instance_tree("missing") is None
    assert provider.get_orchestration_stats("missing") is None


def test_instance_tree_contains_the_root_and_all_descendants(provider: Store) -> None:
    run_first_turn(provider, "root")
    run_first_turn(provider, "child-1", parent_instance_id="root")
    run_first_turn(provider, "child-2", parent_instance_id="root")
    run_first_turn(provider, "grandchild", parent_instance_id="child-1")
    run_first_turn(provider, "unrelated")

    tree = provider.get_instance_tree("root")
    subtree = provider.get_instance_tree("child-1")
    leaf = provider.get_instance_tree("unrelated")

    assert tree is not None
    assert tree.root_id == "root"
    assert sorted(tree.all_ids) == ["child-1", "child-2", "grandchild", "root"]
    assert tree.size == 4
    assert subtree is not None
    assert (subtree.root_id, sorted(subtree.all_ids)) == ("child-1", ["child-1", "grandchild"])
    assert leaf is not None
    assert leaf.all_ids == ["unrelated"]


def test_orchestration_stats(provider: Store) -> None:
    run_first_turn(
        provider,
        "inst",
        activities=[activity("inst", 2), activity("inst", 3)],
        kv=KvChanges(upserts={"a": ("abc", 1), "b": ("de", 1)}),
    )
    raise_event(provider, "inst")
    raise_event(provider, "inst")

    stats = provider.get_orchestration_stats("inst")

    assert stats is not None
    assert stats.history_event_count == 3
    assert stats.history_size_bytes > 0
    assert stats.queue_pending_count == 2
    assert stats.kv_user_key_count == 2
    assert stats.kv_total_value_bytes == 5

    run_turn(provider, "inst")  # consumes one pending event, enqueues one, adds one event
    later = provider.get_orchestration_stats("inst")
    assert later is not None
    assert later.history_event_count == 4
    assert later.history_size_bytes > stats.history_size_bytes
    assert later.queue_pending_count == 0


def test_system_metrics_count_instances_executions_and_events(provider: Store) -> None:
    run_first_turn(provider, "running")
    run_first_turn(provider, "continued")
    continue_as_new(provider, "continued")
    completed_instance(provider, "done")
    run_first_turn(provider, "broken")
    finish(provider, "broken", error=ErrorDetails.application("x"))
    start(provider, "never-ran")  # enqueued only: not an instance

    metrics = provider.get_system_metrics()

    assert metrics.total_instances == 4
    assert metrics.total_executions == 5
    assert metrics.running_instances == 2
    assert metrics.completed_instances == 1
    assert metrics.failed_instances == 1
    expected_events = sum(
        len(provider.read_history(instance_id, execution_id))
        for instance_id in ["running", "continued", "done", "broken"]
        for execution_id in provider.list_executions(instance_id)
    )
    assert metrics.total_events == expected_events


def test_queue_depths_of_an_empty_store_are_zero(provider: Store) -> None:
    depths = provider.get_queue_depths()

    assert (depths.orchestrator_queue, depths.worker_queue, depths.timer_queue) == (0, 0, 0)
    assert depths.worker_queue_by_tag == {}


def test_queue_depths_count_ready_in_flight_and_future_items(provider: Store) -> None:
    schedule(
        provider,
        "w",
        [
            activity("w", 2, name="plain-1"),
            activity("w", 3, name="plain-2"),
            activity("w", 4, name="gpu", tag="gpu"),
        ],
    )
    fetch_work(provider)  # in flight: still counted
    start(provider, "a")
    start(provider, "b")
    provider.enqueue_orchestrator("c", EventRaised(name="later"), delay_ms=60_000)
    fetch(provider)  # one orchestrator message in flight: still counted

    depths = provider.get_queue_depths()

    assert depths.orchestrator_queue == 2
    assert depths.timer_queue == 1
    assert depths.worker_queue == 3
    assert depths.worker_queue_by_tag == {"": 2, "gpu": 1}
