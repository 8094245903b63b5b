"""Orchestrator queue: enqueue, visibility, fetch contents and the instance lock."""

from __future__ import annotations

import threading

from duroxide.history import ActivityScheduled, OrchestrationStarted
from duroxide.providers.base import OrchestrationAck, OrchestrationItem
from duroxide.work_items import EventRaised, StartOrchestration

from .helpers import (
    ORCH,
    VERSION,
    Store,
    activity,
    eventually,
    fetch,
    fetch_for,
    finish,
    raise_event,
    run_first_turn,
    run_turn,
    start,
    started,
    update,
    wait_for_clock,
)


def test_fetch_from_an_empty_store_returns_none(provider: Store) -> None:
    assert provider.fetch_orchestration_item(1_000) is None


def test_enqueue_never_creates_the_instance(provider: Store) -> None:
    start(provider, "new")
    raise_event(provider, "new")

    assert provider.get_instance_status("new") is None
    assert provider.get_instance_info("new") is None
    assert provider.list_instances() == []
    assert provider.list_executions("new") == []


def test_first_fetch_of_a_new_instance(provider: Store) -> None:
    message = StartOrchestration(name=ORCH, version=VERSION, input='{"n": 1}', trace_context="tc")
    before = provider.now_ms()
    provider.enqueue_orchestrator("inst", message)

    item = fetch(provider)

    assert item.instance_id == "inst"
    assert item.instance is None
    assert item.execution_id == 1
    assert item.history == []
    assert [m.message for m in item.messages] == [message]
    assert [m.kind for m in item.messages] == [message.kind]
    assert [m.attempt_count for m in item.messages] == [1]
    assert item.messages[0].decode_error is None
    assert item.lock_token
    assert before <= item.now_ms <= provider.now_ms()


def test_fetch_returns_all_visible_messages_in_enqueue_order(provider: Store) -> None:
    start(provider, "inst")
    events = [EventRaised(name=f"e{i}", data=f'"{i}"') for i in range(4)]
    for event in events:
        provider.enqueue_orchestrator("inst", event)

    item = fetch(provider)

    assert [m.message for m in item.messages][1:] == events
    assert isinstance(item.messages[0].message, StartOrchestration)
    seqs = [m.seq for m in item.messages]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)


def test_messages_of_other_instances_are_not_in_the_item(provider: Store) -> None:
    start(provider, "a")
    start(provider, "b")
    raise_event(provider, "a")

    first = fetch(provider)
    second = fetch(provider)

    by_id = {first.instance_id: first, second.instance_id: second}
    assert set(by_id) == {"a", "b"}
    assert len(by_id["a"].messages) == 2
    assert len(by_id["b"].messages) == 1


def test_delayed_message_is_invisible_until_due(provider: Store) -> None:
    before = provider.now_ms()
    provider.enqueue_orchestrator("later", EventRaised(name="x"), delay_ms=300)

    item = eventually(lambda: provider.fetch_orchestration_item(1_000), what="delayed message")

    assert item.instance_id == "later"
    assert item.now_ms >= before + 300


def test_delayed_message_is_left_out_of_an_earlier_turn(provider: Store) -> None:
    start(provider, "inst")
    provider.enqueue_orchestrator("inst", EventRaised(name="future"), delay_ms=60_000)

    item = fetch(provider)

    assert [m.kind for m in item.messages] == ["StartOrchestration"]
    provider.ack_orchestration_item(item.lock_token, OrchestrationAck(instance=None))
    assert provider.fetch_orchestration_item(1_000) is None


def test_locked_instance_is_not_fetched_again(provider: Store) -> None:
    start(provider, "a")
    start(provider, "b")

    first = fetch(provider)
    second = fetch(provider)

    assert {first.instance_id, second.instance_id} == {"a", "b"}
    assert provider.fetch_orchestration_item(1_000) is None


def test_message_arriving_during_the_lock_waits_for_the_next_turn(provider: Store) -> None:
    start(provider, "inst")
    item = fetch(provider)
    raise_event(provider, "inst", name="late")

    assert provider.fetch_orchestration_item(1_000) is None  # still locked

    provider.ack_orchestration_item(
        item.lock_token,
        OrchestrationAck(instance=update(), events=[started(item.now_ms)]),
    )
    next_item = fetch_for(provider, "inst")
    assert [m.message for m in next_item.messages] == [EventRaised(name="late", data='"d"')]
    assert [m.attempt_count for m in next_item.messages] == [1]


def test_fetch_returns_current_history_in_event_id_order_and_instance_state(
    provider: Store,
) -> None:
    first = run_first_turn(provider, "inst", activities=[activity("inst", 2)])
    run_turn(provider, "inst", custom_status="busy", custom_status_changed=True)
    raise_event(provider, "inst")

    item = fetch(provider)

    assert [e.event_id for e in item.history] == [1, 2, 3]
    assert isinstance(item.history[0], OrchestrationStarted)
    assert item.history[0] == started(first.now_ms)
    assert isinstance(item.history[1], ActivityScheduled)
    assert item.history[1].name == "Act"
    assert item.instance is not None
    assert item.instance.orchestration_name == ORCH
    assert item.instance.orchestration_version == VERSION
    assert item.instance.status == "Running"
    assert item.instance.current_execution_id == 1
    assert item.instance.custom_status == "busy"
    assert item.instance.custom_status_version == 1
    assert item.execution_id == 1


def test_completed_instance_still_receives_messages(provider: Store) -> None:
    run_first_turn(provider, "inst")
    finish(provider, "inst")
    raise_event(provider, "inst", name="after-the-end")

    item = fetch_for(provider, "inst")

    assert item.instance is not None
    assert item.instance.status == "Completed"
    assert [m.kind for m in item.messages] == ["ExternalRaised"]


def test_concurrent_fetchers_never_share_an_instance(provider: Store) -> None:
    instance_ids = [f"inst-{i:02d}" for i in range(24)]
    for instance_id in instance_ids:
        start(provider, instance_id)
        raise_event(provider, instance_id)

    barrier = threading.Barrier(6)
    taken: list[OrchestrationItem] = []
    taken_lock = threading.Lock()
    errors: list[BaseException] = []

    def fetcher() -> None:
        try:
            barrier.wait()
            while (item := provider.fetch_orchestration_item(30_000)) is not None:
                with taken_lock:
                    taken.append(item)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=fetcher) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert sorted(item.instance_id for item in taken) == instance_ids
    assert all(len(item.messages) == 2 for item in taken)
    assert len({item.lock_token for item in taken}) == len(taken)


def test_a_turn_gets_its_messages_in_the_order_they_became_due(provider: Store) -> None:
    """A timer enqueued early but due late comes after a result that was ready before it, so
    a race after a backlog is won by what was ready first."""
    run_first_turn(provider, "inst")
    provider.enqueue_orchestrator("inst", EventRaised(name="late", data="1"), delay_ms=400)
    provider.enqueue_orchestrator("inst", EventRaised(name="early", data="2"))
    wait_for_clock(provider, provider.now_ms() + 450)

    item = fetch(provider)

    assert [m.message.name for m in item.messages if m.message] == ["early", "late"]
