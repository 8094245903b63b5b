"""Instance lock lifecycle: abandon, renewal and expiry."""

from __future__ import annotations

import pytest

from duroxide.errors import LockLostError
from duroxide.providers.base import OrchestrationAck

from .helpers import (
    MEDIUM_LOCK_MS,
    SHORT_LOCK_MS,
    Store,
    eventually,
    fetch,
    fetch_for,
    raise_event,
    start,
    started,
    update,
    wait_for_clock,
)


def test_abandon_releases_the_lock_and_keeps_the_messages(provider: Store) -> None:
    start(provider, "inst")
    raise_event(provider, "inst")
    first = fetch(provider)

    provider.abandon_orchestration_item(first.lock_token)

    again = fetch_for(provider, "inst")
    assert [m.message for m in again.messages] == [m.message for m in first.messages]
    assert [m.attempt_count for m in again.messages] == [2, 2]
    assert again.lock_token != first.lock_token


def test_abandon_with_delay_hides_the_messages_until_then(provider: Store) -> None:
    start(provider, "inst")
    item = fetch(provider)
    abandoned_at = provider.now_ms()

    provider.abandon_orchestration_item(item.lock_token, delay_ms=300)

    again = eventually(lambda: provider.fetch_orchestration_item(30_000), what="abandon delay")
    assert again.instance_id == "inst"
    assert again.now_ms >= abandoned_at + 300


def test_abandon_with_a_long_delay_keeps_the_instance_invisible(provider: Store) -> None:
    start(provider, "inst")
    item = fetch(provider)

    provider.abandon_orchestration_item(item.lock_token, delay_ms=60_000)

    assert provider.fetch_orchestration_item(1_000) is None


def test_abandon_with_delay_parks_the_instance_with_messages_that_arrive_meanwhile(
    provider: Store,
) -> None:
    """A parked start must not be split from an event enqueued during the delay: fetched
    alone, the event would be dropped as a message for an instance that never started."""
    start(provider, "inst")
    item = fetch(provider)
    provider.abandon_orchestration_item(item.lock_token, delay_ms=300)
    raise_event(provider, "inst")

    assert provider.fetch_orchestration_item(1_000) is None  # the event waits too
    again = eventually(lambda: provider.fetch_orchestration_item(30_000), what="parked instance")
    assert [m.kind for m in again.messages] == ["StartOrchestration", "ExternalRaised"]


def test_the_old_token_of_a_parked_instance_is_dead(provider: Store) -> None:
    start(provider, "inst")
    item = fetch(provider)
    provider.abandon_orchestration_item(item.lock_token, delay_ms=60_000)

    assert provider.renew_orchestration_item_lock(item.lock_token, 1_000) is False
    with pytest.raises(LockLostError):
        provider.ack_orchestration_item(item.lock_token, OrchestrationAck(instance=None))


def test_abandon_ignoring_the_attempt_undoes_the_increment(provider: Store) -> None:
    start(provider, "inst")
    provider.abandon_orchestration_item(fetch(provider).lock_token)  # attempt 1 counted
    second = fetch(provider)
    assert [m.attempt_count for m in second.messages] == [2]

    provider.abandon_orchestration_item(second.lock_token, ignore_attempt=True)

    third = fetch(provider)
    assert [m.attempt_count for m in third.messages] == [2]


def test_attempt_counts_are_per_message(provider: Store) -> None:
    start(provider, "inst")
    item = fetch(provider)
    raise_event(provider, "inst")  # arrives while locked: not fetched yet

    provider.abandon_orchestration_item(item.lock_token)

    again = fetch(provider)
    assert [(m.kind, m.attempt_count) for m in again.messages] == [
        ("StartOrchestration", 2),
        ("ExternalRaised", 1),
    ]


def test_expired_lock_lets_another_fetch_take_the_instance(provider: Store) -> None:
    start(provider, "inst")
    first = fetch(provider, lock_ms=SHORT_LOCK_MS)

    second = eventually(lambda: provider.fetch_orchestration_item(30_000), what="lock expiry")

    assert second.instance_id == "inst"
    assert second.now_ms >= first.now_ms + SHORT_LOCK_MS
    assert [m.attempt_count for m in second.messages] == [2]


def test_renew_extends_a_live_lock(provider: Store) -> None:
    start(provider, "inst")
    item = fetch(provider, lock_ms=MEDIUM_LOCK_MS)

    assert provider.renew_orchestration_item_lock(item.lock_token, 30_000) is True

    wait_for_clock(provider, item.now_ms + MEDIUM_LOCK_MS + 50)
    assert provider.fetch_orchestration_item(30_000) is None
    provider.ack_orchestration_item(
        item.lock_token, OrchestrationAck(instance=update(), events=[started(item.now_ms)])
    )
    status = provider.get_instance_status("inst")
    assert status is not None
    assert status.status == "Running"


def test_renew_of_an_unknown_token_returns_false(provider: Store) -> None:
    assert provider.renew_orchestration_item_lock("no-such-token", 30_000) is False


def test_renew_after_ack_returns_false(provider: Store) -> None:
    start(provider, "inst")
    item = fetch(provider)
    provider.ack_orchestration_item(item.lock_token, OrchestrationAck(instance=None))

    assert provider.renew_orchestration_item_lock(item.lock_token, 30_000) is False


def test_renew_after_abandon_returns_false(provider: Store) -> None:
    start(provider, "inst")
    item = fetch(provider)
    provider.abandon_orchestration_item(item.lock_token)

    assert provider.renew_orchestration_item_lock(item.lock_token, 30_000) is False
    assert fetch_for(provider, "inst").messages[0].attempt_count == 2


def test_renew_of_an_expired_lock_returns_false(provider: Store) -> None:
    start(provider, "inst")
    item = fetch(provider, lock_ms=SHORT_LOCK_MS)
    wait_for_clock(provider, item.now_ms + SHORT_LOCK_MS + 50)

    assert provider.renew_orchestration_item_lock(item.lock_token, 30_000) is False


def test_renew_after_the_lock_was_taken_over_returns_false(provider: Store) -> None:
    start(provider, "inst")
    stale = fetch(provider, lock_ms=SHORT_LOCK_MS)
    fresh = eventually(lambda: provider.fetch_orchestration_item(30_000), what="lock expiry")

    assert provider.renew_orchestration_item_lock(stale.lock_token, 30_000) is False
    assert provider.renew_orchestration_item_lock(fresh.lock_token, 30_000) is True
