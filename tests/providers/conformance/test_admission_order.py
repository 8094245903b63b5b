"""Admission order: among claimable instances, a client's start counts ``START_BIAS_MS``
younger, so running instances' timers, completions and events go before a backlog of new
starts, and a start waits at most ``START_BIAS_MS`` behind them. It only orders claims."""

from __future__ import annotations

from duroxide.providers.base import START_BIAS_MS
from duroxide.work_items import EventRaised, OutboundMessage, StartOrchestration

from .helpers import (
    LOCK_MS,
    ORCH,
    VERSION,
    Store,
    fetch,
    raise_event,
    run_first_turn,
    run_turn,
    start,
    wait_for_clock,
)


def claim_order(provider: Store, count: int) -> list[str]:
    """Instance ids of the next ``count`` claims, one instance per fetch."""
    return [fetch(provider).instance_id for _ in range(count)]


def test_a_running_instance_goes_before_a_backlog_of_starts(provider: Store) -> None:
    run_first_turn(provider, "running")
    for n in range(3):
        start(provider, f"new-{n}")
    raise_event(provider, "running")  # the newest claimable work, yet the first claimed

    assert claim_order(provider, 4) == ["running", "new-0", "new-1", "new-2"]


def test_a_batch_fetch_takes_running_instances_first(provider: Store) -> None:
    run_first_turn(provider, "running-a")
    run_first_turn(provider, "running-b")
    start(provider, "new-0")
    start(provider, "new-1")
    raise_event(provider, "running-b")
    raise_event(provider, "running-a")

    items = provider.fetch_orchestration_items(LOCK_MS, 3)

    assert [i.instance_id for i in items] == ["running-b", "running-a", "new-0"]


def test_a_lone_start_is_claimed_at_once(provider: Store) -> None:
    before = provider.now_ms()
    start(provider, "new")

    item = fetch(provider)

    assert item.instance_id == "new"
    assert item.now_ms - before < START_BIAS_MS


def test_a_start_waits_at_most_the_bias_behind_running_instances(provider: Store) -> None:
    run_first_turn(provider, "running")
    start(provider, "new")
    # An event that becomes due after the start's place in the order: the start goes first.
    delay = START_BIAS_MS + 100
    due = provider.now_ms() + delay
    provider.enqueue_orchestrator("running", EventRaised(name="late", data='"d"'), delay_ms=delay)
    wait_for_clock(provider, due)

    assert claim_order(provider, 2) == ["new", "running"]


def test_a_child_started_by_a_turn_is_not_held_back(provider: Store) -> None:
    """A sub-orchestration is work of a running tree, not a new admission."""
    run_first_turn(provider, "parent")
    start(provider, "new")
    child = StartOrchestration(name=ORCH, version=VERSION, parent_instance_id="parent")
    # run_turn raises an event for the parent and claims it: ahead of the older start too
    run_turn(
        provider, "parent", orchestrator_items=[OutboundMessage(instance_id="child", message=child)]
    )

    assert claim_order(provider, 2) == ["child", "new"]


def test_an_event_for_an_instance_not_started_yet_is_not_held_back(provider: Store) -> None:
    """Only the start message carries the bias; anything else addressed to a new instance is
    ordered as it arrived (and is delivered with the start when the start is claimed)."""
    start(provider, "new")
    raise_event(provider, "other")

    assert claim_order(provider, 2) == ["other", "new"]


def test_starts_keep_their_arrival_order(provider: Store) -> None:
    for n in range(5):
        start(provider, f"new-{n}")

    assert claim_order(provider, 5) == [f"new-{n}" for n in range(5)]


def test_an_event_for_a_start_not_claimed_yet_is_not_held_back(provider: Store) -> None:
    """The start waiting with it keeps its bias, but the event takes its own place."""
    run_first_turn(provider, "running")
    start(provider, "new")
    raise_event(provider, "new")
    raise_event(provider, "running")

    assert claim_order(provider, 2) == ["new", "running"]


def test_a_start_claimed_once_is_no_longer_held_back(provider: Store) -> None:
    """The bias is for admission: a start that was claimed and abandoned (or whose lock
    expired) is ordered by when it became claimable again."""
    start(provider, "new")
    claimed = fetch(provider)
    run_first_turn(provider, "running")
    provider.abandon_orchestration_item(claimed.lock_token, delay_ms=0)
    raise_event(provider, "running")

    assert claim_order(provider, 2) == ["new", "running"]
