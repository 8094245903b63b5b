"""Worker queue: FIFO peek-lock, completion handoff, renewal, abandon and cancellation."""

from __future__ import annotations

import threading

import pytest

from duroxide.errors import ErrorDetails, LockLostError
from duroxide.providers.base import WorkItem
from duroxide.work_items import ActivityCompletedMsg, ActivityFailedMsg, OutboundMessage

from .helpers import (
    DEFAULT_ONLY,
    MEDIUM_LOCK_MS,
    SHORT_LOCK_MS,
    Store,
    activity,
    drain_work,
    eventually,
    fetch_for,
    fetch_work,
    key_of,
    names_of,
    run_turn,
    schedule,
    wait_for_clock,
)


def completion(instance_id: str, activity_id: int, result: str = '"ok"') -> OutboundMessage:
    return OutboundMessage(
        instance_id=instance_id,
        message=ActivityCompletedMsg(execution_id=1, activity_id=activity_id, result=result),
    )


def test_fetch_from_an_empty_worker_queue_returns_none(provider: Store) -> None:
    assert provider.fetch_work_item(1_000, DEFAULT_ONLY) is None


def test_work_item_round_trips_every_field(provider: Store) -> None:
    item = activity("inst", 2, name="Charge", input='{"amount": 12.5, "note": "x"}')
    schedule(provider, "inst", [item])

    work = fetch_work(provider)

    assert work.item == item
    assert work.attempt_count == 1
    assert work.lock_token


def test_work_items_are_fetched_in_fifo_order(provider: Store) -> None:
    schedule(provider, "first", [activity("first", 2, name="A"), activity("first", 3, name="B")])
    schedule(provider, "second", [activity("second", 2, name="C")])
    run_turn(provider, "first", worker_items=[activity("first", 4, name="D")])

    assert names_of(drain_work(provider)) == ["A", "B", "C", "D"]


def test_locked_work_item_is_not_fetched_again(provider: Store) -> None:
    schedule(provider, "inst", [activity("inst", 2, name="A"), activity("inst", 3, name="B")])

    first = fetch_work(provider)
    second = fetch_work(provider)

    assert (first.item.name, second.item.name) == ("A", "B")
    assert provider.fetch_work_item(1_000, DEFAULT_ONLY) is None


def test_ack_deletes_the_item_and_enqueues_the_completion(provider: Store) -> None:
    schedule(provider, "inst", [activity("inst", 2)])
    work = fetch_work(provider)

    provider.ack_work_item(work.lock_token, completion("inst", 2, '"result"'))

    assert drain_work(provider) == []
    assert provider.get_queue_depths().worker_queue == 0
    turn = fetch_for(provider, "inst")
    assert [m.message for m in turn.messages] == [
        ActivityCompletedMsg(execution_id=1, activity_id=2, result='"result"')
    ]


def test_ack_can_deliver_a_failure(provider: Store) -> None:
    schedule(provider, "inst", [activity("inst", 2)])
    work = fetch_work(provider)
    failed = ActivityFailedMsg(
        execution_id=1, activity_id=2, error=ErrorDetails.application("it broke")
    )

    provider.ack_work_item(work.lock_token, OutboundMessage(instance_id="inst", message=failed))

    assert [m.message for m in fetch_for(provider, "inst").messages] == [failed]


def test_ack_without_completion_only_deletes_the_item(provider: Store) -> None:
    schedule(provider, "inst", [activity("inst", 2)])
    work = fetch_work(provider)

    provider.ack_work_item(work.lock_token, None)

    assert drain_work(provider) == []
    assert provider.fetch_orchestration_item(1_000) is None


def test_second_ack_with_the_same_token_raises_lock_lost(provider: Store) -> None:
    schedule(provider, "inst", [activity("inst", 2)])
    work = fetch_work(provider)
    provider.ack_work_item(work.lock_token, completion("inst", 2))

    with pytest.raises(LockLostError):
        provider.ack_work_item(work.lock_token, completion("inst", 2, '"twice"'))

    turn = fetch_for(provider, "inst")
    assert len(turn.messages) == 1


def test_ack_with_an_unknown_token_raises_lock_lost(provider: Store) -> None:
    with pytest.raises(LockLostError):
        provider.ack_work_item("no-such-token", None)


def test_expired_work_item_is_fetched_again(provider: Store) -> None:
    schedule(provider, "inst", [activity("inst", 2)])
    first = fetch_work(provider, lock_ms=SHORT_LOCK_MS)

    second = eventually(lambda: provider.fetch_work_item(30_000, DEFAULT_ONLY), what="lock expiry")

    assert second.item == first.item
    assert second.attempt_count == 2
    assert second.lock_token != first.lock_token


def test_ack_after_the_lock_was_taken_over_raises_and_enqueues_nothing(provider: Store) -> None:
    schedule(provider, "inst", [activity("inst", 2)])
    stale = fetch_work(provider, lock_ms=SHORT_LOCK_MS)
    fresh = eventually(lambda: provider.fetch_work_item(30_000, DEFAULT_ONLY), what="lock expiry")

    with pytest.raises(LockLostError):
        provider.ack_work_item(stale.lock_token, completion("inst", 2, '"stale"'))
    assert provider.fetch_orchestration_item(1_000) is None

    provider.ack_work_item(fresh.lock_token, completion("inst", 2, '"fresh"'))
    turn = fetch_for(provider, "inst")
    assert [m.message for m in turn.messages] == [
        ActivityCompletedMsg(execution_id=1, activity_id=2, result='"fresh"')
    ]


def test_renew_extends_a_held_work_item_lock(provider: Store) -> None:
    schedule(provider, "inst", [activity("inst", 2)])
    work = fetch_work(provider, lock_ms=MEDIUM_LOCK_MS)
    fetched_at = provider.now_ms()

    assert provider.renew_work_item_lock(work.lock_token, 30_000) is True

    wait_for_clock(provider, fetched_at + MEDIUM_LOCK_MS + 50)
    assert drain_work(provider) == []
    provider.ack_work_item(work.lock_token, completion("inst", 2))


def test_renew_fails_after_the_lock_was_lost(provider: Store) -> None:
    schedule(provider, "inst", [activity("inst", 2)])
    stale = fetch_work(provider, lock_ms=SHORT_LOCK_MS)
    fresh = eventually(lambda: provider.fetch_work_item(30_000, DEFAULT_ONLY), what="lock expiry")

    assert provider.renew_work_item_lock(stale.lock_token, 30_000) is False
    assert provider.renew_work_item_lock(fresh.lock_token, 30_000) is True
    assert provider.renew_work_item_lock("no-such-token", 30_000) is False


def test_renew_after_ack_returns_false(provider: Store) -> None:
    schedule(provider, "inst", [activity("inst", 2)])
    work = fetch_work(provider)
    provider.ack_work_item(work.lock_token, None)

    assert provider.renew_work_item_lock(work.lock_token, 30_000) is False


def test_abandon_makes_the_item_fetchable_again(provider: Store) -> None:
    schedule(provider, "inst", [activity("inst", 2)])
    first = fetch_work(provider)

    provider.abandon_work_item(first.lock_token)

    second = fetch_work(provider)
    assert second.item == first.item
    assert second.attempt_count == 2


def test_abandon_ignoring_the_attempt_undoes_the_increment(provider: Store) -> None:
    schedule(provider, "inst", [activity("inst", 2)])
    provider.abandon_work_item(fetch_work(provider).lock_token)
    second = fetch_work(provider)
    assert second.attempt_count == 2

    provider.abandon_work_item(second.lock_token, ignore_attempt=True)

    assert fetch_work(provider).attempt_count == 2


def test_abandon_with_delay_hides_the_item_until_then(provider: Store) -> None:
    schedule(provider, "inst", [activity("inst", 2)])
    work = fetch_work(provider)
    abandoned_at = provider.now_ms()

    provider.abandon_work_item(work.lock_token, delay_ms=300)

    again = eventually(lambda: provider.fetch_work_item(30_000, DEFAULT_ONLY), what="delay")
    assert again.item == work.item
    assert provider.now_ms() >= abandoned_at + 300


def test_cancelled_activity_is_never_fetched(provider: Store) -> None:
    drop = activity("inst", 2, name="Drop")
    keep = activity("inst", 3, name="Keep")
    schedule(provider, "inst", [drop, keep])

    run_turn(provider, "inst", cancelled=[key_of(drop)])

    assert names_of(drain_work(provider)) == ["Keep"]


def test_cancelling_a_running_activity_makes_its_ack_and_renew_fail(provider: Store) -> None:
    schedule(provider, "inst", [activity("inst", 2)])
    work = fetch_work(provider)

    run_turn(provider, "inst", cancelled=[key_of(work.item)])

    assert provider.renew_work_item_lock(work.lock_token, 30_000) is False
    with pytest.raises(LockLostError):
        provider.ack_work_item(work.lock_token, completion("inst", 2))
    assert provider.fetch_orchestration_item(1_000) is None
    assert provider.get_queue_depths().worker_queue == 0


def test_concurrent_workers_never_share_an_item(provider: Store) -> None:
    items = [activity("inst", i, name=f"A{i:02d}") for i in range(2, 32)]
    schedule(provider, "inst", items)
    barrier = threading.Barrier(6)
    taken: list[WorkItem] = []
    taken_lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            while (work := provider.fetch_work_item(30_000, DEFAULT_ONLY)) is not None:
                with taken_lock:
                    taken.append(work)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert sorted(names_of(taken)) == sorted(i.name for i in items)
