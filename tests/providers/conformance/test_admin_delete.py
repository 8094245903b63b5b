"""Deleting instances (single, cascading, bulk) and pruning old executions."""

from __future__ import annotations

import pytest

from duroxide.errors import (
    ErrorDetails,
    InstanceNotFoundError,
    InvalidOperationError,
    LockLostError,
)
from duroxide.history import ExternalEvent
from duroxide.providers.base import KvChanges, OrchestrationAck
from duroxide.types import InstanceFilter, PruneOptions

from .helpers import (
    ANY_TAG,
    Store,
    activity,
    completed_instance,
    continue_as_new,
    fetch,
    fetch_for,
    fetch_work,
    finish,
    raise_event,
    run_first_turn,
    start,
    update,
    wait_for_clock,
)


def remaining(provider: Store) -> list[str]:
    return [info.instance_id for info in provider.list_instances()]


def assert_gone(provider: Store, instance_id: str) -> None:
    assert provider.get_instance_info(instance_id) is None
    assert provider.get_instance_status(instance_id) is None
    assert provider.list_executions(instance_id) == []
    assert provider.read_history(instance_id, 1) == []
    assert provider.get_kv_all_values(instance_id) == {}
    assert provider.get_orchestration_stats(instance_id) is None


# --- delete_instance -----------------------------------------------------------------------------


def test_delete_of_an_unknown_instance_raises_not_found(provider: Store) -> None:
    with pytest.raises(InstanceNotFoundError):
        provider.delete_instance("missing")


def test_delete_of_a_running_instance_needs_force(provider: Store) -> None:
    run_first_turn(provider, "inst")

    with pytest.raises(InvalidOperationError):
        provider.delete_instance("inst")

    status = provider.get_instance_status("inst")
    assert status is not None
    assert status.status == "Running"
    assert len(provider.read_history("inst", 1)) == 1


def test_delete_removes_everything_about_a_completed_instance(provider: Store) -> None:
    run_first_turn(provider, "inst", kv=KvChanges(upserts={"k": ("v", 1)}))
    finish(provider, "inst")
    run_first_turn(provider, "other", kv=KvChanges(upserts={"k": ("mine", 1)}))
    raise_event(provider, "inst")  # a message still queued for it

    result = provider.delete_instance("inst")

    assert result.instances_deleted == 1
    assert result.executions_deleted == 1
    assert result.events_deleted == 2
    assert result.queue_messages_deleted == 1
    assert_gone(provider, "inst")
    assert provider.fetch_orchestration_item(1_000) is None
    assert remaining(provider) == ["other"]
    assert provider.get_kv_all_values("other") == {"k": "mine"}


def test_a_deleted_instance_id_can_start_afresh(provider: Store) -> None:
    completed_instance(provider, "inst")
    provider.delete_instance("inst")

    start(provider, "inst")
    item = fetch_for(provider, "inst")

    assert item.instance is None
    assert item.execution_id == 1
    assert item.history == []


def test_forced_delete_of_a_running_instance_removes_its_activities(provider: Store) -> None:
    run_first_turn(provider, "inst", activities=[activity("inst", 2), activity("inst", 3)])
    running = fetch_work(provider)

    result = provider.delete_instance("inst", force=True)

    assert result.instances_deleted == 1
    assert_gone(provider, "inst")
    assert provider.fetch_work_item(1_000, ANY_TAG) is None
    assert provider.renew_work_item_lock(running.lock_token, 30_000) is False
    with pytest.raises(LockLostError):
        provider.ack_work_item(running.lock_token, None)
    assert provider.get_queue_depths().worker_queue == 0


def test_delete_cascades_to_descendants(provider: Store) -> None:
    for instance_id, parent in [("root", None), ("child", "root"), ("grandchild", "child")]:
        run_first_turn(provider, instance_id, parent_instance_id=parent)
        finish(provider, instance_id, parent_instance_id=parent)
    completed_instance(provider, "bystander")

    result = provider.delete_instance("root")

    assert result.instances_deleted == 3
    for instance_id in ["root", "child", "grandchild"]:
        assert_gone(provider, instance_id)
    assert remaining(provider) == ["bystander"]


def test_in_flight_ack_after_delete_raises_and_does_not_recreate(provider: Store) -> None:
    run_first_turn(provider, "inst")
    raise_event(provider, "inst")
    item = fetch(provider)

    provider.delete_instance("inst", force=True)

    with pytest.raises(LockLostError):
        provider.ack_orchestration_item(
            item.lock_token,
            OrchestrationAck(
                instance=update(),
                events=[ExternalEvent(event_id=2, timestamp_ms=item.now_ms, name="evt")],
                worker_items=[activity("inst", 3)],
                kv=KvChanges(upserts={"k": ("v", 1)}),
            ),
        )
    assert_gone(provider, "inst")
    assert provider.fetch_work_item(1_000, ANY_TAG) is None
    # The deleted instance's lock is gone too: the id can start again at once.
    start(provider, "inst")
    assert fetch_for(provider, "inst").instance is None


# --- delete_instances_bulk -----------------------------------------------------------------------


def test_bulk_delete_takes_only_terminal_roots(provider: Store) -> None:
    completed_instance(provider, "done")
    run_first_turn(provider, "broken")
    finish(provider, "broken", error=ErrorDetails.application("x"))
    run_first_turn(provider, "busy")
    run_first_turn(provider, "sub", parent_instance_id="busy")
    finish(provider, "sub", parent_instance_id="busy")

    result = provider.delete_instances_bulk(
        InstanceFilter(instance_ids=["done", "broken", "busy", "sub"])
    )

    assert result.instances_deleted == 2
    assert remaining(provider) == ["busy", "sub"]


def test_bulk_delete_cascades_to_children_of_deleted_roots(provider: Store) -> None:
    run_first_turn(provider, "root")
    run_first_turn(provider, "child", parent_instance_id="root")
    finish(provider, "child", parent_instance_id="root")
    finish(provider, "root")

    result = provider.delete_instances_bulk(InstanceFilter(instance_ids=["root"]))

    assert result.instances_deleted == 2
    assert remaining(provider) == []


def test_bulk_delete_respects_the_limit(provider: Store) -> None:
    for instance_id in ["a", "b", "c"]:
        completed_instance(provider, instance_id)

    result = provider.delete_instances_bulk(InstanceFilter(instance_ids=["a", "b", "c"], limit=2))

    assert result.instances_deleted == 2
    assert len(remaining(provider)) == 1


def test_bulk_delete_by_completion_time(provider: Store) -> None:
    completed_instance(provider, "early")
    wait_for_clock(provider, provider.now_ms())  # "early" completed strictly before boundary
    boundary = provider.now_ms()
    wait_for_clock(provider, boundary)
    completed_instance(provider, "late")

    result = provider.delete_instances_bulk(InstanceFilter(completed_before=boundary))

    assert result.instances_deleted == 1
    assert remaining(provider) == ["late"]


def test_bulk_delete_by_status(provider: Store) -> None:
    completed_instance(provider, "done")
    run_first_turn(provider, "broken")
    finish(provider, "broken", error=ErrorDetails.application("x"))

    result = provider.delete_instances_bulk(InstanceFilter(status="Failed"))

    assert result.instances_deleted == 1
    assert remaining(provider) == ["done"]


# --- prune_executions ----------------------------------------------------------------------------


@pytest.fixture
def three_executions(provider: Store) -> Store:
    """Instance "inst" with executions 1 and 2 continued-as-new and 3 current (running)."""
    run_first_turn(provider, "inst")
    continue_as_new(provider, "inst")
    continue_as_new(provider, "inst")
    assert provider.list_executions("inst") == [1, 2, 3]
    return provider


def test_prune_keep_last_removes_older_executions(three_executions: Store) -> None:
    provider = three_executions
    old_events = len(provider.read_history("inst", 1)) + len(provider.read_history("inst", 2))
    current = provider.read_history("inst", 3)

    result = provider.prune_executions("inst", PruneOptions(keep_last=1))

    assert result.executions_deleted == 2
    assert result.events_deleted == old_events
    assert provider.list_executions("inst") == [3]
    assert provider.read_history("inst", 1) == []
    assert provider.read_history("inst", 3) == current
    assert provider.get_execution_info("inst", 1) is None
    status = provider.get_instance_status("inst")
    assert status is not None
    assert (status.status, status.current_execution_id) == ("Running", 3)


def test_prune_keep_last_two(three_executions: Store) -> None:
    result = three_executions.prune_executions("inst", PruneOptions(keep_last=2))

    assert result.executions_deleted == 1
    assert three_executions.list_executions("inst") == [2, 3]


def test_prune_never_removes_the_current_execution(three_executions: Store) -> None:
    result = three_executions.prune_executions("inst", PruneOptions(keep_last=0))

    assert result.executions_deleted == 2
    assert three_executions.list_executions("inst") == [3]
    raise_event(three_executions, "inst")
    assert fetch_for(three_executions, "inst").execution_id == 3


def test_prune_of_a_single_execution_deletes_nothing(provider: Store) -> None:
    completed_instance(provider, "inst")

    result = provider.prune_executions("inst", PruneOptions(keep_last=0))

    assert result.executions_deleted == 0
    assert provider.list_executions("inst") == [1]
    assert len(provider.read_history("inst", 1)) == 2


def test_prune_by_completion_time(provider: Store) -> None:
    run_first_turn(provider, "inst")
    continue_as_new(provider, "inst")  # execution 1 ends
    wait_for_clock(provider, provider.now_ms())
    boundary = provider.now_ms()
    wait_for_clock(provider, boundary)
    continue_as_new(provider, "inst")  # execution 2 ends after the boundary

    result = provider.prune_executions("inst", PruneOptions(completed_before=boundary))

    assert result.executions_deleted == 1
    assert provider.list_executions("inst") == [2, 3]


def test_prune_bulk_applies_to_every_matching_instance(provider: Store) -> None:
    for instance_id in ["a", "b"]:
        run_first_turn(provider, instance_id)
        continue_as_new(provider, instance_id)
        continue_as_new(provider, instance_id)
    run_first_turn(provider, "untouched")
    continue_as_new(provider, "untouched")

    result = provider.prune_executions_bulk(
        InstanceFilter(instance_ids=["a", "b"]), PruneOptions(keep_last=1)
    )

    assert result.instances_processed == 2
    assert result.executions_deleted == 4
    assert provider.list_executions("a") == [3]
    assert provider.list_executions("b") == [3]
    assert provider.list_executions("untouched") == [1, 2]
