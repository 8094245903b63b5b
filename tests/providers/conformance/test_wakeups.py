"""The in-process wake-up hub: dispatchers learn of new work without waiting a poll interval."""

from __future__ import annotations

import threading

from duroxide.providers.base import OrchestrationAck
from duroxide.providers.wakeup import ORCHESTRATOR, STATUS, WORKER
from duroxide.work_items import (
    ActivityCompletedMsg,
    ActivityKey,
    OutboundMessage,
    StartOrchestration,
)

from .helpers import (
    VERSION,
    Store,
    activity,
    fetch,
    fetch_work,
    key_of,
    raise_event,
    run_first_turn,
    run_turn,
    start,
    started,
    update,
)


def test_enqueue_notifies_the_orchestrator_channel(provider: Store) -> None:
    before = provider.wakeups.generation(ORCHESTRATOR)

    start(provider, "inst")

    assert provider.wakeups.generation(ORCHESTRATOR) != before


def test_enqueue_wakes_a_waiting_dispatcher(provider: Store) -> None:
    since = provider.wakeups.generation(ORCHESTRATOR)
    woke: list[bool] = []
    waiting = threading.Event()

    def dispatcher() -> None:
        waiting.set()
        woke.append(provider.wakeups.wait(ORCHESTRATOR, since, 10.0))

    thread = threading.Thread(target=dispatcher)
    thread.start()
    waiting.wait(5.0)
    raise_event(provider, "inst")
    thread.join(timeout=10.0)

    assert woke == [True]


def test_delayed_enqueue_wakes_the_dispatcher_when_due(provider: Store) -> None:
    since = provider.wakeups.generation(ORCHESTRATOR)

    provider.enqueue_orchestrator("inst", StartOrchestration(name="O"), delay_ms=100)

    assert provider.wakeups.wait(ORCHESTRATOR, since, 10.0) is True


def test_ack_with_worker_items_notifies_the_worker_channel(provider: Store) -> None:
    before = provider.wakeups.generation(WORKER)

    run_first_turn(provider, "inst", activities=[activity("inst", 2)])

    assert provider.wakeups.generation(WORKER) != before


def test_ack_with_orchestrator_items_notifies_the_orchestrator_channel(provider: Store) -> None:
    start(provider, "parent")
    item = fetch(provider)
    before = provider.wakeups.generation(ORCHESTRATOR)

    provider.ack_orchestration_item(
        item.lock_token,
        OrchestrationAck(
            instance=update(),
            events=[started(item.now_ms)],
            orchestrator_items=[
                OutboundMessage(
                    instance_id="child", message=StartOrchestration(name="C", version=VERSION)
                )
            ],
        ),
    )

    assert provider.wakeups.generation(ORCHESTRATOR) != before


def test_ack_that_changes_the_instance_notifies_the_status_channel(provider: Store) -> None:
    run_first_turn(provider, "inst")
    before = provider.wakeups.generation(STATUS)

    run_turn(provider, "inst", custom_status="new", custom_status_changed=True)

    assert provider.wakeups.generation(STATUS) != before


def test_activity_completion_notifies_the_orchestrator_channel(provider: Store) -> None:
    run_first_turn(provider, "inst", activities=[activity("inst", 2)])
    work = fetch_work(provider)
    before = provider.wakeups.generation(ORCHESTRATOR)

    provider.ack_work_item(
        work.lock_token,
        OutboundMessage(
            instance_id="inst", message=ActivityCompletedMsg(execution_id=1, activity_id=2)
        ),
    )

    assert provider.wakeups.generation(ORCHESTRATOR) != before


def test_cancelled_activities_are_published_to_listeners(provider: Store) -> None:
    run_first_turn(provider, "inst", activities=[activity("inst", 2), activity("inst", 3)])
    published: list[ActivityKey] = []

    def listener(keys: list[ActivityKey]) -> None:
        published.extend(keys)

    provider.wakeups.add_cancel_listener(listener)
    try:
        run_turn(provider, "inst", cancelled=[key_of(activity("inst", 3))])
    finally:
        provider.wakeups.remove_cancel_listener(listener)

    assert published == [key_of(activity("inst", 3))]
