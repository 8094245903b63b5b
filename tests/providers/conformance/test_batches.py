"""Batch operations: several items per round trip, one transaction, each item on its own."""

from __future__ import annotations

from duroxide.errors import LockLostError, ProviderError
from duroxide.providers.base import OrchestrationAck
from duroxide.types import TagFilter, TagFilterSpec
from duroxide.work_items import (
    ActivityCompletedMsg,
    EventRaised,
    OutboundMessage,
    StartOrchestration,
)

from .helpers import LOCK_MS, Store, activity, schedule, start, started, update

DEFAULT_ONLY = TagFilterSpec.parse(TagFilter.DEFAULT_ONLY)


def _first_turn(item_now: int) -> OrchestrationAck:
    return OrchestrationAck(instance=update(), events=[started(item_now)])


def test_a_batch_fetch_locks_distinct_instances_up_to_the_limit(provider: Store) -> None:
    for n in range(5):
        start(provider, f"i{n}")

    first = provider.fetch_orchestration_items(LOCK_MS, 3)
    rest = provider.fetch_orchestration_items(LOCK_MS, 10)

    ids = [item.instance_id for item in first + rest]
    assert len(first) == 3 and len(rest) == 2
    assert sorted(ids) == [f"i{n}" for n in range(5)]
    assert len({item.lock_token for item in first + rest}) == 5
    assert provider.fetch_orchestration_items(LOCK_MS, 10) == []


def test_a_batch_ack_commits_each_turn_and_isolates_a_lost_lock(provider: Store) -> None:
    for n in range(3):
        start(provider, f"i{n}")
    items = provider.fetch_orchestration_items(LOCK_MS, 3)
    provider.abandon_orchestration_item(items[1].lock_token)  # its token is dead now

    errors = provider.ack_orchestration_items(
        [(item.lock_token, _first_turn(item.now_ms)) for item in items]
    )

    assert errors[0] is None and errors[2] is None
    assert isinstance(errors[1], LockLostError)
    lost = items[1].instance_id
    for item in (items[0], items[2]):
        status = provider.get_instance_status(item.instance_id)
        assert status is not None and status.status == "Running"
    assert provider.get_instance_status(lost) is None
    again = provider.fetch_orchestration_items(LOCK_MS, 10)
    assert [item.instance_id for item in again] == [lost]  # its message is still there


def test_a_failing_ack_in_a_batch_rolls_back_only_itself(provider: Store) -> None:
    for n in range(2):
        start(provider, f"i{n}")
    good, bad = provider.fetch_orchestration_items(LOCK_MS, 2)
    duplicate = OrchestrationAck(  # two events with id 1: the whole ack must fail
        instance=update(), events=[started(bad.now_ms), started(bad.now_ms)]
    )

    errors = provider.ack_orchestration_items(
        [(good.lock_token, _first_turn(good.now_ms)), (bad.lock_token, duplicate)]
    )

    assert errors[0] is None
    assert isinstance(errors[1], ProviderError) and not isinstance(errors[1], LockLostError)
    assert provider.get_instance_status(good.instance_id) is not None
    assert provider.get_instance_status(bad.instance_id) is None
    assert provider.read_history(bad.instance_id, 1) == []


def test_work_items_are_fetched_and_acked_in_batches(provider: Store) -> None:
    schedule(provider, "inst", [activity("inst", n) for n in (2, 3, 4)])

    taken = provider.fetch_work_items(LOCK_MS, 2, DEFAULT_ONLY)
    rest = provider.fetch_work_items(LOCK_MS, 5, DEFAULT_ONLY)

    assert [w.item.activity_id for w in taken] == [2, 3]
    assert [w.item.activity_id for w in rest] == [4]
    provider.abandon_work_item(taken[1].lock_token)  # lost: its ack must fail alone
    acks = [
        (w.lock_token, OutboundMessage(instance_id="inst", message=ActivityCompletedMsg(
            execution_id=1, activity_id=w.item.activity_id, result="1")))
        for w in (*taken, *rest)
    ]  # fmt: skip
    errors = provider.ack_work_items(acks)

    assert errors[0] is None and errors[2] is None
    assert isinstance(errors[1], LockLostError)
    item = provider.fetch_orchestration_item(LOCK_MS)
    assert item is not None
    done = sorted(m.message.activity_id for m in item.messages if m.message is not None)
    assert done == [2, 4]


def _child_start(parent: str, child: str) -> OutboundMessage:
    return OutboundMessage(
        instance_id=child,
        message=StartOrchestration(name="Orch", version="1.0.0", input='"c"',
                                   parent_instance_id=parent, parent_execution_id=1),
    )  # fmt: skip


def _note(instance_id: str, text: str) -> OutboundMessage:
    return OutboundMessage(instance_id=instance_id, message=EventRaised(name=text, data='"x"'))


def test_a_batch_delivers_messages_between_its_own_instances(provider: Store) -> None:
    """Turns acked together that message each other (a parent starting a child, the child
    answering the parent): every message stays fetchable after the batch commits."""
    for instance_id in ("a", "b"):
        start(provider, instance_id)
    first = {i.instance_id: i for i in provider.fetch_orchestration_items(LOCK_MS, 2)}
    acks = [
        (first["a"].lock_token, OrchestrationAck(
            instance=update(), events=[started(first["a"].now_ms)],
            orchestrator_items=[_note("b", "from-a"), _child_start("a", "c")])),
        (first["b"].lock_token, OrchestrationAck(
            instance=update(), events=[started(first["b"].now_ms)],
            orchestrator_items=[_note("a", "from-b")])),
    ]  # fmt: skip

    assert provider.ack_orchestration_items(acks) == [None, None]

    again = {i.instance_id: i for i in provider.fetch_orchestration_items(LOCK_MS, 10)}
    assert sorted(again) == ["a", "b", "c"]
    assert [m.kind for m in again["c"].messages] == ["StartOrchestration"]
    assert [getattr(m.message, "name", None) for m in again["a"].messages] == ["from-b"]
    assert [getattr(m.message, "name", None) for m in again["b"].messages] == ["from-a"]


def test_messages_of_a_batch_survive_a_failing_turn_in_it(provider: Store) -> None:
    """One failing turn rolls back alone, even when the others message each other (and it):
    an instance whose turn committed before the message to it was written still gets it."""
    for instance_id in ("a", "b", "bad"):
        start(provider, instance_id)
    first = {i.instance_id: i for i in provider.fetch_orchestration_items(LOCK_MS, 3)}
    bad = first["bad"]
    acks = [
        (first["a"].lock_token, OrchestrationAck(
            instance=update(), events=[started(first["a"].now_ms)])),
        (first["b"].lock_token, OrchestrationAck(
            instance=update(), events=[started(first["b"].now_ms)],
            orchestrator_items=[_note("a", "from-b"), _note("bad", "from-b")])),
        (bad.lock_token, OrchestrationAck(  # a duplicate event id: fails alone
            instance=update(), events=[started(bad.now_ms), started(bad.now_ms)],
            orchestrator_items=[_note("a", "from-bad")])),
    ]  # fmt: skip

    errors = provider.ack_orchestration_items(acks)

    assert errors[0] is None and errors[1] is None
    assert isinstance(errors[2], ProviderError) and not isinstance(errors[2], LockLostError)
    provider.abandon_orchestration_item(bad.lock_token)
    again = {i.instance_id: i for i in provider.fetch_orchestration_items(LOCK_MS, 10)}
    assert sorted(again) == ["a", "bad"]
    assert [getattr(m.message, "name", None) for m in again["a"].messages] == ["from-b"]
    assert [m.kind for m in again["bad"].messages] == ["StartOrchestration", "ExternalRaised"]
