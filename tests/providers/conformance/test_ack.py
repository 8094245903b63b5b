"""ack_orchestration_item: what a turn commits, and that it commits all of it or nothing."""

from __future__ import annotations

import pytest

from duroxide.errors import ErrorCategory, ErrorDetails, LockLostError, ProviderError
from duroxide.history import (
    ActivityScheduled,
    Event,
    ExternalEvent,
    OrchestrationStarted,
    TimerCreated,
)
from duroxide.providers.base import KvChanges, OrchestrationAck
from duroxide.work_items import OutboundMessage as Outbound
from duroxide.work_items import StartOrchestration, TimerFiredMsg

from .helpers import (
    ANY_TAG,
    MEDIUM_LOCK_MS,
    ORCH,
    SHORT_LOCK_MS,
    VERSION,
    Store,
    activity,
    continue_as_new,
    eventually,
    fetch,
    fetch_for,
    finish,
    raise_event,
    run_first_turn,
    run_turn,
    scheduled,
    start,
    started,
    update,
    wait_for_clock,
)


def test_first_ack_creates_instance_execution_and_history(provider: Store) -> None:
    item = run_first_turn(provider, "inst", activities=[activity("inst", 2)])

    status = provider.get_instance_status("inst")
    assert status is not None
    assert (status.orchestration_name, status.orchestration_version) == (ORCH, VERSION)
    assert status.status == "Running"
    assert status.current_execution_id == 1
    assert status.output is None
    assert status.error is None
    assert provider.list_executions("inst") == [1]
    assert provider.read_history("inst", 1) == [
        started(item.now_ms),
        scheduled(activity("inst", 2), item.now_ms),
    ]


def test_ack_consumes_the_fetched_messages_and_releases_the_lock(provider: Store) -> None:
    run_first_turn(provider, "inst")

    assert provider.fetch_orchestration_item(1_000) is None
    assert provider.get_queue_depths().orchestrator_queue == 0

    raise_event(provider, "inst")  # the lock is gone: the next message is fetchable at once
    assert fetch_for(provider, "inst").messages[0].kind == "ExternalRaised"


def test_ack_with_an_unknown_token_raises_lock_lost(provider: Store) -> None:
    with pytest.raises(LockLostError):
        provider.ack_orchestration_item("no-such-token", OrchestrationAck(instance=None))


def test_second_ack_with_the_same_token_raises_lock_lost(provider: Store) -> None:
    start(provider, "inst")
    item = fetch(provider)
    provider.ack_orchestration_item(
        item.lock_token, OrchestrationAck(instance=update(), events=[started(item.now_ms)])
    )

    with pytest.raises(LockLostError):
        provider.ack_orchestration_item(
            item.lock_token,
            OrchestrationAck(
                instance=update(),
                events=[ExternalEvent(event_id=2, timestamp_ms=item.now_ms, name="x")],
            ),
        )
    assert [e.event_id for e in provider.read_history("inst", 1)] == [1]


def test_ack_with_an_expired_token_raises_and_writes_nothing(provider: Store) -> None:
    start(provider, "inst")
    item = fetch(provider, lock_ms=SHORT_LOCK_MS)
    wait_for_clock(provider, item.now_ms + SHORT_LOCK_MS + 50)

    with pytest.raises(LockLostError):
        provider.ack_orchestration_item(
            item.lock_token,
            OrchestrationAck(
                instance=update(),
                events=[started(item.now_ms)],
                worker_items=[activity("inst", 2)],
            ),
        )

    assert provider.get_instance_status("inst") is None
    assert provider.fetch_work_item(1_000, ANY_TAG) is None
    again = fetch_for(provider, "inst")
    assert [m.attempt_count for m in again.messages] == [2]


def test_ack_after_the_lock_was_taken_over_raises_lock_lost(provider: Store) -> None:
    start(provider, "inst")
    stale = fetch(provider, lock_ms=SHORT_LOCK_MS)
    fresh = eventually(lambda: provider.fetch_orchestration_item(30_000), what="lock expiry")
    assert fresh.instance_id == "inst"
    assert fresh.lock_token != stale.lock_token

    with pytest.raises(LockLostError):
        provider.ack_orchestration_item(
            stale.lock_token, OrchestrationAck(instance=update(), events=[started(stale.now_ms)])
        )
    assert provider.get_instance_status("inst") is None

    provider.ack_orchestration_item(
        fresh.lock_token, OrchestrationAck(instance=update(), events=[started(fresh.now_ms)])
    )
    assert provider.read_history("inst", 1) == [started(fresh.now_ms)]


@pytest.mark.parametrize("duplicate", ["with_existing_history", "within_the_ack"])
def test_duplicate_event_id_fails_the_whole_ack(provider: Store, duplicate: str) -> None:
    run_first_turn(provider, "inst", activities=[activity("inst", 2)])
    original_history = provider.read_history("inst", 1)
    raise_event(provider, "inst")
    item = fetch(provider, lock_ms=MEDIUM_LOCK_MS)
    colliding_id = 2 if duplicate == "with_existing_history" else 3
    events: list[Event] = [
        ExternalEvent(event_id=3, timestamp_ms=item.now_ms, name="evt", data='"d"'),
        ActivityScheduled(event_id=colliding_id, timestamp_ms=item.now_ms, name="Other"),
    ]

    with pytest.raises(ProviderError) as raised:
        provider.ack_orchestration_item(
            item.lock_token,
            OrchestrationAck(
                instance=update(
                    status="Completed",
                    output='"x"',
                    custom_status="changed",
                    custom_status_changed=True,
                ),
                events=events,
                worker_items=[activity("inst", 4, tag="gpu")],
                orchestrator_items=[
                    Outbound(instance_id="child", message=StartOrchestration(name="Child"))
                ],
                kv=KvChanges(upserts={"k": ("v", item.now_ms)}),
            ),
        )

    assert not isinstance(raised.value, LockLostError)  # it failed on the duplicate
    # Nothing of the failed turn is visible.
    assert provider.read_history("inst", 1) == original_history
    status = provider.get_instance_status("inst")
    assert status is not None
    assert (status.status, status.output) == ("Running", None)
    assert (status.custom_status, status.custom_status_version) == (None, 0)
    assert provider.get_kv_all_values("inst") == {}
    worker = provider.fetch_work_item(30_000, ANY_TAG)
    assert worker is not None
    assert worker.item == activity("inst", 2)  # only the first turn's activity
    assert provider.fetch_work_item(30_000, ANY_TAG) is None
    # The turn's message was not consumed; "child" got nothing.
    retry = eventually(lambda: provider.fetch_orchestration_item(30_000), what="lock expiry")
    assert retry.instance_id == "inst"
    assert [m.kind for m in retry.messages] == ["ExternalRaised"]
    assert [m.attempt_count for m in retry.messages] == [2]
    assert provider.fetch_orchestration_item(1_000) is None


def test_ack_enqueues_worker_and_orchestrator_items(provider: Store) -> None:
    start(provider, "parent")
    item = fetch(provider)
    child_start = StartOrchestration(
        name="Child", version=VERSION, input='"c"', parent_instance_id="parent"
    )
    provider.ack_orchestration_item(
        item.lock_token,
        OrchestrationAck(
            instance=update(),
            events=[started(item.now_ms), scheduled(activity("parent", 2), item.now_ms)],
            worker_items=[activity("parent", 2)],
            orchestrator_items=[Outbound(instance_id="child", message=child_start)],
        ),
    )

    work = provider.fetch_work_item(30_000, ANY_TAG)
    assert work is not None
    assert work.item == activity("parent", 2)
    child = fetch_for(provider, "child")
    assert [m.message for m in child.messages] == [child_start]


def test_orchestrator_item_with_a_future_visibility_is_a_timer(provider: Store) -> None:
    start(provider, "inst")
    item = fetch(provider)
    fire_at = item.now_ms + 300
    timer = TimerFiredMsg(execution_id=1, timer_id=2, fire_at_ms=fire_at)
    provider.ack_orchestration_item(
        item.lock_token,
        OrchestrationAck(
            instance=update(),
            events=[
                started(item.now_ms),
                TimerCreated(event_id=2, timestamp_ms=item.now_ms, fire_at_ms=fire_at),
            ],
            orchestrator_items=[Outbound(instance_id="inst", message=timer, visible_at_ms=fire_at)],
        ),
    )

    fired = eventually(lambda: provider.fetch_orchestration_item(30_000), what="timer")
    assert fired.now_ms >= fire_at
    assert [m.message for m in fired.messages] == [timer]


def test_ack_without_instance_only_consumes_messages(provider: Store) -> None:
    start(provider, "ghost")
    raise_event(provider, "ghost")
    item = fetch(provider)

    provider.ack_orchestration_item(item.lock_token, OrchestrationAck(instance=None))

    assert provider.get_instance_status("ghost") is None
    assert provider.list_instances() == []
    assert provider.fetch_orchestration_item(1_000) is None
    assert provider.get_queue_depths().orchestrator_queue == 0


def test_continue_as_new_switches_the_current_execution(provider: Store) -> None:
    first = run_first_turn(provider, "inst")

    assert continue_as_new(provider, "inst") == 2

    status = provider.get_instance_status("inst")
    assert status is not None
    assert (status.status, status.current_execution_id) == ("Running", 2)
    assert provider.list_executions("inst") == [1, 2]
    old = provider.read_history("inst", 1)
    assert old[0] == started(first.now_ms)
    assert [e.kind for e in old] == ["OrchestrationStarted", "OrchestrationContinuedAsNew"]
    new = provider.read_history("inst", 2)
    assert [(e.event_id, e.kind) for e in new] == [(1, "OrchestrationStarted")]
    raise_event(provider, "inst")
    item = fetch_for(provider, "inst")
    assert item.execution_id == 2
    assert item.history == new  # only the current execution's history
    info = provider.get_execution_info("inst", 1)
    assert info is not None
    assert info.status == "ContinuedAsNew"


def test_custom_status_version_counts_changes(provider: Store) -> None:
    run_first_turn(provider, "inst")

    def custom() -> tuple[str | None, int]:
        status = provider.get_instance_status("inst")
        assert status is not None
        return status.custom_status, status.custom_status_version

    assert custom() == (None, 0)
    run_turn(provider, "inst", custom_status="step 1", custom_status_changed=True)
    assert custom() == ("step 1", 1)
    run_turn(provider, "inst")  # a turn that does not touch custom status
    assert custom() == ("step 1", 1)
    run_turn(provider, "inst", custom_status="step 2", custom_status_changed=True)
    assert custom() == ("step 2", 2)
    run_turn(provider, "inst", custom_status=None, custom_status_changed=True)
    assert custom() == (None, 3)


def test_completed_and_failed_outcomes_are_stored(provider: Store) -> None:
    run_first_turn(provider, "ok")
    finish(provider, "ok", output='{"answer": 42}')
    error = ErrorDetails(category=ErrorCategory.APPLICATION, message="boom 💥", kind="custom")
    run_first_turn(provider, "bad")
    finish(provider, "bad", error=error)

    ok = provider.get_instance_status("ok")
    bad = provider.get_instance_status("bad")
    assert ok is not None
    assert bad is not None
    assert (ok.status, ok.output, ok.error) == ("Completed", '{"answer": 42}', None)
    assert (bad.status, bad.error) == ("Failed", error)
    ok_exec = provider.get_execution_info("ok", 1)
    assert ok_exec is not None
    assert (ok_exec.status, ok_exec.output) == ("Completed", '{"answer": 42}')
    bad_exec = provider.get_execution_info("bad", 1)
    assert bad_exec is not None
    assert bad_exec.status == "Failed"


def test_kv_upserts_and_deletes_are_visible_per_instance(provider: Store) -> None:
    run_first_turn(
        provider, "a", kv=KvChanges(upserts={"k1": ("a1", 10), "k2": ("a2", 10), "k3": ("a3", 10)})
    )
    run_first_turn(provider, "b", kv=KvChanges(upserts={"k1": ("b1", 10)}))

    assert provider.get_kv_value("a", "k1") == "a1"
    assert provider.get_kv_all_values("a") == {"k1": "a1", "k2": "a2", "k3": "a3"}

    run_turn(
        provider,
        "a",
        kv=KvChanges(upserts={"k1": ("a1-new", 20)}, deletes=frozenset({"k2"})),
    )

    assert provider.get_kv_value("a", "k1") == "a1-new"
    assert provider.get_kv_value("a", "k2") is None
    assert provider.get_kv_all_values("a") == {"k1": "a1-new", "k3": "a3"}
    # Another instance's KV is separate, and readable by anyone.
    assert provider.get_kv_value("b", "k1") == "b1"
    assert provider.get_kv_all_values("b") == {"k1": "b1"}
    assert provider.get_kv_value("nobody", "k1") is None
    assert provider.get_kv_all_values("nobody") == {}


def test_kv_written_in_the_first_turn_survives_later_turns(provider: Store) -> None:
    run_first_turn(provider, "inst", kv=KvChanges(upserts={"key": ("value", 1)}))
    run_turn(provider, "inst")
    continue_as_new(provider, "inst")

    assert provider.get_kv_all_values("inst") == {"key": "value"}


def test_history_events_round_trip_every_field(provider: Store) -> None:
    start(provider, "inst")
    item = fetch(provider)
    events: list[Event] = [
        OrchestrationStarted(
            event_id=1,
            timestamp_ms=item.now_ms,
            name=ORCH,
            version=VERSION,
            input='{"nested": [1, "two", null]}',
            parent_instance_id="p",
            parent_execution_id=3,
            parent_event_id=7,
            carried_queue=[["q", '"m"']],
            custom_status="cs",
            kv={"k": ["v", 5]},
            trace_context="00-abc-def-01",
        ),
        ActivityScheduled(
            event_id=2,
            timestamp_ms=item.now_ms,
            name="Act",
            input=None,
            session_id="s",
            tag="t",
        ),
        ExternalEvent(
            event_id=3, timestamp_ms=item.now_ms + 1, source_event_id=2, name="n", data=None
        ),
    ]
    provider.ack_orchestration_item(
        item.lock_token, OrchestrationAck(instance=update(), events=events)
    )

    assert provider.read_history("inst", 1) == events
