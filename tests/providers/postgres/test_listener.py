"""LISTEN/NOTIFY: work, timers, status changes and cancellations committed through one
provider wake the hub of another (another process, in production); the listener survives a
killed connection."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from pg import listening

from duroxide.history import ActivityScheduled, ExternalEvent, OrchestrationStarted, TimerCreated
from duroxide.providers.base import InstanceUpdate, OrchestrationAck, OrchestrationItem
from duroxide.providers.postgres import PostgresProvider
from duroxide.providers.postgres import listener as listener_module
from duroxide.providers.postgres.connection import channel_name
from duroxide.providers.postgres.listener import MAX_PAYLOAD, apply_payload, encode_payloads
from duroxide.providers.wakeup import ORCHESTRATOR, STATUS, WORKER, WakeupHub
from duroxide.work_items import (
    ActivityKey,
    ActivityWorkItem,
    EventRaised,
    OutboundMessage,
    StartOrchestration,
    TimerFiredMsg,
)

WAIT_S = 5.0


def wait_until(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT_S
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_S}s: {what}")
        time.sleep(0.005)
    return value


def running(execution_id: int = 1) -> InstanceUpdate:
    return InstanceUpdate(
        orchestration_name="O", orchestration_version="1.0.0", execution_id=execution_id,
        status="Running", execution_status="Running",
    )  # fmt: skip


def first_turn(provider: PostgresProvider, instance_id: str, **ack: Any) -> OrchestrationItem:
    provider.enqueue_orchestrator(instance_id, StartOrchestration(name="O", version="1.0.0"))
    item = provider.fetch_orchestration_item(30_000)
    assert item is not None
    events = [OrchestrationStarted(event_id=1, timestamp_ms=item.now_ms, name="O",
                                   version="1.0.0"), *ack.pop("events", [])]  # fmt: skip
    provider.ack_orchestration_item(
        item.lock_token, OrchestrationAck(instance=running(), events=events, **ack)
    )
    return item


def activity(activity_id: int) -> ActivityWorkItem:
    return ActivityWorkItem(instance_id="inst", execution_id=1, activity_id=activity_id, name="A")


def test_closing_twice_is_harmless_and_sends_what_was_pending(
    open_provider: Callable[..., PostgresProvider], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 30 s send interval: after its first batch the sender holds every hint, so only the
    # flush of close() can deliver the second one.
    monkeypatch.setattr(listener_module, "MIN_SEND_INTERVAL_S", 30.0)
    monkeypatch.setattr(listener_module, "MAX_SEND_INTERVAL_S", 30.0)
    sender, receiver = open_provider(), open_provider()
    listening(receiver, ORCHESTRATOR)
    since = receiver.wakeups.generation(ORCHESTRATOR)
    sender.enqueue_orchestrator("first", StartOrchestration(name="O"))
    assert receiver.wakeups.wait(ORCHESTRATOR, since, WAIT_S) is True
    since = receiver.wakeups.generation(ORCHESTRATOR)
    sender.enqueue_orchestrator("held", StartOrchestration(name="O"))

    sender.close()
    sender.close()

    assert receiver.wakeups.wait(ORCHESTRATOR, since, WAIT_S) is True


def test_a_batch_split_over_several_payloads_arrives_whole(
    open_provider: Callable[..., PostgresProvider],
) -> None:
    sender, receiver = open_provider(), open_provider()
    received: list[ActivityKey] = []
    receiver.wakeups.add_cancel_listener(received.extend)
    listening(receiver, WORKER)
    keys = [ActivityKey(instance_id="i" * 300 + str(n), execution_id=1, activity_id=n)
            for n in range(100)]  # fmt: skip
    assert len(encode_payloads([], [], False, keys)) > 2  # more than one pg_notify

    sender._listener.post(cancelled=keys)  # internal: what an ack cancelling them posts

    wait_until(lambda: len(received) >= len(keys), "every cancelled key")
    assert sorted(received, key=lambda k: k.activity_id) == keys


def test_an_enqueue_wakes_the_other_provider(
    open_provider: Callable[..., PostgresProvider],
) -> None:
    sender, receiver = open_provider(), open_provider()
    listening(receiver, ORCHESTRATOR)
    since = receiver.wakeups.generation(ORCHESTRATOR)

    sender.enqueue_orchestrator("inst", StartOrchestration(name="O"))

    assert receiver.wakeups.wait(ORCHESTRATOR, since, WAIT_S) is True


def test_a_provider_ignores_its_own_notifications(
    open_provider: Callable[..., PostgresProvider],
) -> None:
    provider, witness = open_provider(), open_provider()
    listening(provider, ORCHESTRATOR)
    listening(witness, ORCHESTRATOR)
    mine = provider.wakeups.generation(ORCHESTRATOR)
    theirs = witness.wakeups.generation(ORCHESTRATOR)

    provider.enqueue_orchestrator("inst", StartOrchestration(name="O"))
    wait_until(lambda: witness.wakeups.generation(ORCHESTRATOR) != theirs, "the notification")
    time.sleep(0.1)

    assert provider.wakeups.generation(ORCHESTRATOR) == mine + 1  # the local notify only


def test_worker_and_status_changes_wake_the_other_provider(
    open_provider: Callable[..., PostgresProvider],
) -> None:
    sender, receiver = open_provider(), open_provider()
    listening(receiver, WORKER, STATUS)
    worker = receiver.wakeups.generation(WORKER)
    status = receiver.wakeups.generation(STATUS)

    first_turn(sender, "inst", worker_items=[activity(2)],
               events=[ActivityScheduled(event_id=2, timestamp_ms=0, name="A")])  # fmt: skip

    assert receiver.wakeups.wait(WORKER, worker, WAIT_S) is True
    assert receiver.wakeups.wait(STATUS, status, WAIT_S) is True


def test_a_timer_wakes_the_other_provider_when_it_comes_due(
    open_provider: Callable[..., PostgresProvider],
) -> None:
    sender, receiver = open_provider(), open_provider()
    listening(receiver, ORCHESTRATOR)
    before = receiver.wakeups.generation(ORCHESTRATOR)
    sender.enqueue_orchestrator("inst", StartOrchestration(name="O", version="1.0.0"))
    wait_until(lambda: receiver.wakeups.generation(ORCHESTRATOR) != before, "the start's wake-up")
    item = sender.fetch_orchestration_item(30_000)
    assert item is not None
    fire_at = item.now_ms + 400
    since = receiver.wakeups.generation(ORCHESTRATOR)
    acked = time.monotonic()
    sender.ack_orchestration_item(
        item.lock_token,
        OrchestrationAck(
            instance=running(),
            events=[
                OrchestrationStarted(event_id=1, timestamp_ms=item.now_ms, name="O",
                                     version="1.0.0"),
                TimerCreated(event_id=2, timestamp_ms=item.now_ms, fire_at_ms=fire_at),
            ],
            orchestrator_items=[OutboundMessage(
                instance_id="inst",
                message=TimerFiredMsg(execution_id=1, timer_id=2, fire_at_ms=fire_at),
                visible_at_ms=fire_at,
            )],
        ),
    )  # fmt: skip

    assert receiver.wakeups.wait(ORCHESTRATOR, since, WAIT_S) is True
    assert time.monotonic() - acked >= 0.3  # woken by the due time, not at once
    assert receiver.fetch_orchestration_item(30_000) is not None


def test_a_cancelled_activity_is_published_to_the_other_provider(
    open_provider: Callable[..., PostgresProvider],
) -> None:
    sender, receiver = open_provider(), open_provider()
    first_turn(sender, "inst", worker_items=[activity(2), activity(3)],
               events=[ActivityScheduled(event_id=2, timestamp_ms=0, name="A"),
                       ActivityScheduled(event_id=3, timestamp_ms=0, name="A")])  # fmt: skip
    published: list[ActivityKey] = []
    got = threading.Event()

    def listener(keys: list[ActivityKey]) -> None:
        published.extend(keys)
        got.set()

    receiver.wakeups.add_cancel_listener(listener)
    listening(receiver, WORKER)
    sender.enqueue_orchestrator("inst", EventRaised(name="e"))
    item = sender.fetch_orchestration_item(30_000)
    assert item is not None
    cancelled = ActivityKey(instance_id="inst", execution_id=1, activity_id=3)
    sender.ack_orchestration_item(
        item.lock_token,
        OrchestrationAck(
            instance=running(),
            events=[ExternalEvent(event_id=4, timestamp_ms=item.now_ms, name="e")],
            cancelled_activities=[cancelled],
        ),
    )

    assert got.wait(WAIT_S)
    assert published == [cancelled]


def test_the_listener_reconnects_after_its_backend_is_killed(
    open_provider: Callable[..., PostgresProvider], admin_conn: psycopg.Connection[Any]
) -> None:
    sender, receiver = open_provider(), open_provider()
    listening(receiver, ORCHESTRATOR)
    old_pid = receiver.listener_pid
    assert old_pid is not None
    since = {c: receiver.wakeups.generation(c) for c in (ORCHESTRATOR, WORKER, STATUS)}

    admin_conn.execute("SELECT pg_terminate_backend(%s)", (old_pid,))

    new_pid = wait_until(
        lambda: receiver.listener_pid not in (None, old_pid) and receiver.listener_pid,
        "a new listener connection",
    )
    assert new_pid != old_pid
    assert receiver._listener.wait_listening(WAIT_S)  # its LISTENs and wake-ups are done
    assert receiver._listener.is_listening(ORCHESTRATOR)  # the queue's LISTEN is back
    # Notifications may have been missed meanwhile: every channel was woken once.
    for channel, generation in since.items():
        assert receiver.wakeups.generation(channel) != generation
    before = receiver.wakeups.generation(ORCHESTRATOR)
    sender.enqueue_orchestrator("inst", StartOrchestration(name="O"))
    assert receiver.wakeups.wait(ORCHESTRATOR, before, WAIT_S) is True


def test_large_cancellation_batches_are_split_below_the_payload_limit() -> None:
    keys = [ActivityKey(instance_id="i" * 300 + str(n), execution_id=1, activity_id=n)
            for n in range(100)]  # fmt: skip

    payloads = encode_payloads([0, 250, 0], [0], True, keys)

    assert len(payloads) > 3
    assert all(len(p.encode()) <= MAX_PAYLOAD for _, p in payloads)
    hub = WakeupHub()
    received: list[ActivityKey] = []
    hub.add_cancel_listener(received.extend)
    for _, payload in payloads:
        apply_payload(hub, payload)
    assert received == keys
    assert hub.generation(ORCHESTRATOR) == 1  # delays 0 (deduplicated) and 250 (a due time)
    assert (hub.generation(WORKER), hub.generation(STATUS)) == (1, 1)
    assert payloads[0] == (ORCHESTRATOR, '{"o":[0,250]}')
    assert payloads[1] == (WORKER, '{"w":[0]}')
    assert {queue for queue, _ in payloads[2:-1]} == {WORKER}  # the keys, split
    assert payloads[-1] == (STATUS, '{"s":1}')


def test_each_queue_hint_goes_to_its_own_channel() -> None:
    """Orchestrator work and timers, activities and cancellations, status changes: each on the
    channel of the processes that wait for it."""
    key = ActivityKey(instance_id="i", execution_id=1, activity_id=2)

    assert encode_payloads([5, 0], [], False, []) == [(ORCHESTRATOR, '{"o":[0,5]}')]
    assert encode_payloads([], [0], False, [key]) == [(WORKER, '{"w":[0],"c":[["i",1,2]]}')]
    assert encode_payloads([], [], False, [key]) == [(WORKER, '{"c":[["i",1,2]]}')]
    assert encode_payloads([], [], True, []) == [(STATUS, '{"s":1}')]
    assert encode_payloads([], [], False, []) == []


def test_malformed_payloads_are_ignored() -> None:
    hub = WakeupHub()
    for payload in ["", "not json", "[]", '{"o": "x", "c": [[1, 2]], "w": [null]}']:
        apply_payload(hub, payload)

    assert [hub.generation(c) for c in (ORCHESTRATOR, WORKER, STATUS)] == [0, 0, 0]


def test_every_distinct_due_time_of_a_batch_is_forwarded() -> None:
    """No due time is dropped, however many a batch has (they are deduplicated, and spread
    over several payloads when they do not fit in one)."""
    delays = [0, 0, *range(100, 3100, 100), 250, 250]

    payloads = encode_payloads(delays, list(range(1, 2001)), False, [])

    assert all(len(p.encode()) <= MAX_PAYLOAD for _, p in payloads)
    sent_o = sorted(d for _, p in payloads for d in json.loads(p).get("o", []))
    sent_w = sorted(d for _, p in payloads for d in json.loads(p).get("w", []))
    assert sent_o == sorted(set(delays))
    assert sent_w == list(range(1, 2001))


def test_hints_posted_while_disconnected_are_sent_after_the_reconnect(
    open_provider: Callable[..., PostgresProvider],
    admin_conn: psycopg.Connection[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A timer committed while the sender's listener is down still wakes the other process
    when it comes due: the hint waits for the reconnect instead of being dropped."""
    monkeypatch.setattr(listener_module, "_BACKOFF_FIRST_S", 1.0)  # a long enough outage
    sender, receiver = open_provider(), open_provider()
    listening(receiver, ORCHESTRATOR)
    old_pid = sender.listener_pid
    assert old_pid is not None
    admin_conn.execute("SELECT pg_terminate_backend(%s)", (old_pid,))
    wait_until(lambda: sender.listener_pid is None, "the sender's listener to notice")
    since = receiver.wakeups.generation(ORCHESTRATOR)
    posted = time.monotonic()

    sender.enqueue_orchestrator("inst", EventRaised(name="later"), delay_ms=1_500)

    assert receiver.wakeups.wait(ORCHESTRATOR, since, WAIT_S) is True
    assert time.monotonic() - posted >= 1.3  # woken by the due time it was told about
    assert sender.listener_pid not in (None, old_pid)


def test_a_busy_sender_batches_its_notifications_and_a_quiet_one_sends_at_once(
    open_provider: Callable[..., PostgresProvider],
) -> None:
    """Every NOTIFY is a committed transaction: under a stream of posts the send interval grows
    to its maximum (few transactions, each carrying many hints), and once posts are rare again
    each is sent at once (a lone request is not delayed). The other provider sees them all."""
    sender, receiver = open_provider(), open_provider()
    listener = sender._listener
    hub = receiver.wakeups
    listening(receiver, WORKER)
    before = hub.generation(WORKER)
    deadline = time.monotonic() + WAIT_S
    while listener._interval < listener_module.MAX_SEND_INTERVAL_S:  # a burst of posts
        assert time.monotonic() < deadline, f"interval stayed at {listener._interval}"
        listener.post(worker=[0])
        time.sleep(0.0005)
    wait_until(lambda: hub.generation(WORKER) > before, "the burst's notifications")

    for _ in range(12):  # rare posts: each batch holds one, so the interval shrinks back
        sent = hub.generation(WORKER)
        listener.post(worker=[0])
        wait_until(lambda sent=sent: hub.generation(WORKER) > sent, "a lone notification")
    assert listener._interval == listener_module.MIN_SEND_INTERVAL_S


def test_a_process_hears_only_the_queues_it_waits_on(
    open_provider: Callable[..., PostgresProvider],
) -> None:
    """A worker process is not woken by orchestrator work nor by status changes (every
    notification wakes each listening process, and on a few cores those wake-ups slowed the
    process that had the work)."""
    sender, worker, witness = open_provider(), open_provider(), open_provider()
    listening(worker, WORKER)
    listening(witness, ORCHESTRATOR, WORKER, STATUS)
    before = {q: worker.wakeups.generation(q) for q in (ORCHESTRATOR, WORKER, STATUS)}
    seen = {q: witness.wakeups.generation(q) for q in (ORCHESTRATOR, WORKER, STATUS)}

    first_turn(sender, "inst", worker_items=[activity(2)],
               events=[ActivityScheduled(event_id=2, timestamp_ms=0, name="A")])  # fmt: skip
    sender.enqueue_orchestrator("other", StartOrchestration(name="O"))

    wait_until(lambda: worker.wakeups.generation(WORKER) != before[WORKER], "the activity hint")
    for queue in (ORCHESTRATOR, STATUS):  # sent, as the witness heard them
        wait_until(lambda q=queue: witness.wakeups.generation(q) != seen[q], f"{queue} hint")
    last = worker.wakeups.generation(WORKER)
    sender._listener.post(worker=[0])  # delivered after everything sent before it
    wait_until(lambda: worker.wakeups.generation(WORKER) != last, "the last activity hint")
    assert worker.wakeups.generation(ORCHESTRATOR) == before[ORCHESTRATOR]
    assert worker.wakeups.generation(STATUS) == before[STATUS]
    assert not worker._listener.is_listening(ORCHESTRATOR)


def test_waiting_on_a_queue_starts_listening_for_it(
    open_provider: Callable[..., PostgresProvider],
) -> None:
    """The first wait on a queue LISTENs on its channel and then ends at once (a hint sent just
    before the LISTEN took effect was missed, so the waiter must look again); later waits end
    with the other process's hints."""
    sender, receiver = open_provider(), open_provider()
    hub = receiver.wakeups
    assert not receiver._listener.is_listening(ORCHESTRATOR)

    assert hub.wait(ORCHESTRATOR, hub.generation(ORCHESTRATOR), WAIT_S) is True
    assert receiver._listener.is_listening(ORCHESTRATOR)

    since = hub.generation(ORCHESTRATOR)
    sender.enqueue_orchestrator("inst", StartOrchestration(name="O"))
    assert hub.wait(ORCHESTRATOR, since, WAIT_S) is True


def test_hints_of_a_version_before_the_split_channels_still_arrive(
    open_provider: Callable[..., PostgresProvider], admin_conn: psycopg.Connection[Any]
) -> None:
    """During a rolling deploy, processes of an older version send every hint on the schema's
    own channel: the new ones still hear them."""
    receiver = open_provider()
    hub = receiver.wakeups
    listening(receiver, ORCHESTRATOR)  # the schema's channel is listened on from the start
    before = {q: hub.generation(q) for q in (ORCHESTRATOR, WORKER, STATUS)}

    admin_conn.execute("SELECT pg_notify(%s, %s)",
                       (channel_name(receiver.schema), '{"o":[0],"w":[0],"s":1}'))  # fmt: skip

    for queue in (ORCHESTRATOR, WORKER, STATUS):
        wait_until(lambda q=queue: hub.generation(q) != before[q], f"the old {queue} hint")
