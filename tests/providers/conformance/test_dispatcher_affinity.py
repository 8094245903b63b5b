"""History affinity: a dispatcher that acked an instance's last turn gets it without history,
and reads only what it misses with ``read_history(after_event_id)``; for a short window
(``STICKY_MS``) its next turn is left to that dispatcher, then anyone takes it."""

from __future__ import annotations

import time

from duroxide.history import ExternalEvent
from duroxide.providers.base import OrchestrationAck, OrchestrationItem

from .helpers import (
    LOCK_MS,
    Store,
    continue_as_new,
    eventually,
    raise_event,
    run_first_turn,
    start,
    started,
    update,
)

#: How long a turn is left to the dispatcher that acked the previous one (both providers).
STICKY_MS = 50


def fetch_as(provider: Store, dispatcher_id: str | None) -> OrchestrationItem:
    """The next item for ``dispatcher_id``, waiting (with a deadline) out another dispatcher's
    sticky window."""
    return eventually(
        lambda: provider.fetch_orchestration_item(LOCK_MS, dispatcher_id=dispatcher_id),
        timeout=5,
        what=f"an orchestration item for dispatcher {dispatcher_id}",
    )


def ack_event(provider: Store, item: OrchestrationItem, event_id: int) -> None:
    """Ack ``item`` with one ExternalEvent as event ``event_id``."""
    provider.ack_orchestration_item(
        item.lock_token,
        OrchestrationAck(
            instance=update(execution_id=item.execution_id),
            events=[ExternalEvent(event_id=event_id, timestamp_ms=item.now_ms, name="evt")],
        ),
    )


def test_a_new_instance_comes_with_its_empty_history(provider: Store) -> None:
    start(provider, "inst")

    item = fetch_as(provider, "d1")

    assert item.history == []
    assert item.history_len == 0


def test_the_dispatcher_of_the_last_turn_gets_no_history(provider: Store) -> None:
    start(provider, "inst")
    first = fetch_as(provider, "d1")
    provider.ack_orchestration_item(
        first.lock_token, OrchestrationAck(instance=update(), events=[started(first.now_ms)])
    )
    raise_event(provider, "inst")

    again = fetch_as(provider, "d1")

    assert again.history is None
    assert again.history_len == 1
    assert again.execution_id == 1
    assert [m.kind for m in again.messages] == ["ExternalRaised"]
    assert provider.read_history("inst", 1) == [started(first.now_ms)]


def test_another_dispatcher_or_none_gets_the_full_history(provider: Store) -> None:
    start(provider, "inst")
    first = fetch_as(provider, "d1")
    provider.ack_orchestration_item(
        first.lock_token, OrchestrationAck(instance=update(), events=[started(first.now_ms)])
    )

    raise_event(provider, "inst")
    other = fetch_as(provider, "d2")
    assert other.history == [started(first.now_ms)]
    ack_event(provider, other, 2)

    raise_event(provider, "inst")
    back = fetch_as(provider, "d1")  # d2 acked the last turn
    assert back.history is not None
    assert [e.event_id for e in back.history] == [1, 2]
    assert back.history_len == 2
    provider.abandon_orchestration_item(back.lock_token)

    anonymous = fetch_as(provider, None)
    assert anonymous.history is not None
    assert len(anonymous.history) == 2


def test_an_ack_without_instance_update_keeps_the_last_dispatcher(provider: Store) -> None:
    start(provider, "inst")
    first = fetch_as(provider, "d1")
    provider.ack_orchestration_item(
        first.lock_token, OrchestrationAck(instance=update(), events=[started(first.now_ms)])
    )
    raise_event(provider, "inst")
    provider.ack_orchestration_item(
        fetch_as(provider, "d2").lock_token, OrchestrationAck(instance=None)
    )
    raise_event(provider, "inst")

    assert fetch_as(provider, "d1").history is None


def test_history_len_counts_the_current_execution_only(provider: Store) -> None:
    run_first_turn(provider, "inst")
    continue_as_new(provider, "inst")
    raise_event(provider, "inst")

    item = fetch_as(provider, None)

    assert item.execution_id == 2
    assert item.history_len == 1
    assert item.history is not None
    assert len(item.history) == 1


def test_read_history_after_an_event_id_returns_only_later_events(provider: Store) -> None:
    start(provider, "inst")
    item = fetch_as(provider, None)
    events = [started(item.now_ms)] + [
        ExternalEvent(event_id=i, timestamp_ms=item.now_ms, name=f"e{i}") for i in range(2, 6)
    ]
    provider.ack_orchestration_item(
        item.lock_token, OrchestrationAck(instance=update(), events=events)
    )

    assert provider.read_history("inst", 1, after_event_id=0) == events
    assert provider.read_history("inst", 1, after_event_id=3) == events[3:]
    assert provider.read_history("inst", 1, after_event_id=5) == []
    assert provider.read_history("inst", 1, after_event_id=99) == []
    assert provider.read_history("inst", 2, after_event_id=0) == []


def test_a_turn_is_left_to_the_dispatcher_of_the_last_one_for_a_short_window(
    provider: Store,
) -> None:
    """Another dispatcher does not take the instance while its owner may still come for it
    (a moved turn reloads the whole history); a caller without an id is never held back; after
    the window anyone takes it (the owner may be busy or gone)."""
    start(provider, "inst")
    first = fetch_as(provider, "d1")
    provider.ack_orchestration_item(
        first.lock_token, OrchestrationAck(instance=update(), events=[started(first.now_ms)])
    )
    before = time.monotonic()
    raise_event(provider, "inst")
    other = provider.fetch_orchestration_item(LOCK_MS, dispatcher_id="d2")
    if (time.monotonic() - before) * 1000 < STICKY_MS:  # surely inside the window
        assert other is None, "another dispatcher took the turn inside the sticky window"
    if other is not None:  # a slow machine: the window had passed
        provider.abandon_orchestration_item(other.lock_token)

    anyone = provider.fetch_orchestration_item(LOCK_MS, dispatcher_id=None)
    assert anyone is not None and anyone.instance_id == "inst"
    provider.abandon_orchestration_item(anyone.lock_token)

    other = fetch_as(provider, "d2")  # after the window
    assert other.instance_id == "inst"
    assert other.history == [started(first.now_ms)]
