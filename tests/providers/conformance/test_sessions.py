"""Sessions: activities bound to one owner while its session lock is live."""

from __future__ import annotations

from duroxide.providers.base import SessionConfig
from duroxide.work_items import ActivityWorkItem

from .helpers import (
    DEFAULT_ONLY,
    LOCK_MS,
    MEDIUM_LOCK_MS,
    SHORT_LOCK_MS,
    Store,
    activity,
    drain_work,
    eventually,
    fetch_work,
    names_of,
    schedule,
    wait_for_clock,
)


def owner(owner_id: str, *, max_sessions: int = 5, lock_ms: int = LOCK_MS) -> SessionConfig:
    return SessionConfig(owner_id=owner_id, max_sessions=max_sessions, lock_timeout_ms=lock_ms)


def session_items(
    instance_id: str, session_id: str, count: int, first_id: int = 2
) -> list[ActivityWorkItem]:
    return [
        activity(instance_id, first_id + i, name=f"{session_id}#{i + 1}", session_id=session_id)
        for i in range(count)
    ]


def claim(provider: Store, config: SessionConfig) -> str:
    """Fetch and ack one item as ``config``'s owner (claiming or touching its session)."""
    work = fetch_work(provider, session=config)
    provider.ack_work_item(work.lock_token, None)
    return work.item.name


def test_session_items_are_never_returned_without_a_session_config(provider: Store) -> None:
    schedule(
        provider,
        "inst",
        [activity("inst", 2, name="s1#1", session_id="s1"), activity("inst", 3, name="plain")],
    )

    assert names_of(drain_work(provider)) == ["plain"]
    assert names_of(drain_work(provider, session=owner("A"))) == ["s1#1"]


def test_session_item_keeps_its_session_id(provider: Store) -> None:
    item = activity("inst", 2, session_id="s1")
    schedule(provider, "inst", [item])

    work = fetch_work(provider, session=owner("A"))

    assert work.item == item
    assert work.item.session_id == "s1"


def test_a_claimed_session_goes_only_to_its_owner(provider: Store) -> None:
    schedule(provider, "inst", session_items("inst", "s1", 3))

    first = fetch_work(provider, session=owner("A"))

    assert first.item.name == "s1#1"
    assert drain_work(provider, session=owner("B")) == []
    assert names_of(drain_work(provider, session=owner("A"))) == ["s1#2", "s1#3"]


def test_expired_session_is_taken_over_by_another_owner(provider: Store) -> None:
    schedule(provider, "inst", session_items("inst", "s1", 3))
    assert claim(provider, owner("A", lock_ms=SHORT_LOCK_MS)) == "s1#1"

    taken = eventually(
        lambda: provider.fetch_work_item(LOCK_MS, DEFAULT_ONLY, owner("B")),
        what="session lock expiry",
    )

    assert taken.item.name == "s1#2"
    assert drain_work(provider, session=owner("A")) == []  # the session now belongs to B
    assert names_of(drain_work(provider, session=owner("B"))) == ["s1#3"]


def test_owner_at_max_sessions_claims_no_other_session(provider: Store) -> None:
    schedule(
        provider,
        "inst",
        [
            activity("inst", 2, name="s1#1", session_id="s1"),
            activity("inst", 3, name="s2#1", session_id="s2"),
            activity("inst", 4, name="plain"),
            activity("inst", 5, name="s1#2", session_id="s1"),
        ],
    )
    limited = owner("A", max_sessions=1)

    assert fetch_work(provider, session=limited).item.name == "s1#1"
    assert sorted(names_of(drain_work(provider, session=limited))) == ["plain", "s1#2"]
    assert names_of(drain_work(provider, session=owner("B"))) == ["s2#1"]


def test_refused_sessions_leave_their_places_in_a_batch_to_other_activities(
    provider: Store,
) -> None:
    """A batch comes back short only when nothing more is claimable (the claim loop then waits
    for a notification): activities of sessions the owner may not take do not use up places."""
    schedule(
        provider,
        "inst",
        [
            activity("inst", 2, name="s1#1", session_id="s1"),
            activity("inst", 3, name="s2#1", session_id="s2"),
            activity("inst", 4, name="s3#1", session_id="s3"),
            activity("inst", 5, name="plain1"),
            activity("inst", 6, name="plain2"),
        ],
    )

    batch = provider.fetch_work_items(LOCK_MS, 3, DEFAULT_ONLY, owner("A", max_sessions=1))

    assert sorted(names_of(batch)) == ["plain1", "plain2", "s1#1"]


def test_slots_sharing_an_owner_id_share_its_sessions(provider: Store) -> None:
    schedule(provider, "inst", session_items("inst", "s1", 2))
    slot_1 = owner("node-1")
    slot_2 = owner("node-1")

    held = fetch_work(provider, session=slot_1)  # still locked while slot 2 fetches

    assert held.item.name == "s1#1"
    assert names_of(drain_work(provider, session=slot_2)) == ["s1#2"]


def test_renewed_sessions_outlive_their_original_lock(provider: Store) -> None:
    schedule(provider, "a", session_items("a", "sa", 2))
    schedule(provider, "c", session_items("c", "sc", 2))
    claim(provider, owner("A", lock_ms=MEDIUM_LOCK_MS))
    claim(provider, owner("C", lock_ms=MEDIUM_LOCK_MS))
    claimed_at = provider.now_ms()

    assert provider.renew_session_locks(["A"], LOCK_MS, LOCK_MS) == 1

    wait_for_clock(provider, claimed_at + MEDIUM_LOCK_MS + 50)
    # C's session lapsed and is free; A's was renewed and stays A's.
    assert names_of(drain_work(provider, session=owner("B"))) == ["sc#2"]
    assert names_of(drain_work(provider, session=owner("A"))) == ["sa#2"]


def test_renew_releases_idle_sessions(provider: Store) -> None:
    schedule(provider, "inst", session_items("inst", "s1", 2))
    claim(provider, owner("A"))
    last_activity = provider.now_ms()
    wait_for_clock(provider, last_activity + 100)

    assert provider.renew_session_locks(["A"], LOCK_MS, 50) == 0

    assert names_of(drain_work(provider, session=owner("B"))) == ["s1#2"]


def test_renew_of_an_owner_without_sessions_renews_nothing(provider: Store) -> None:
    assert provider.renew_session_locks(["nobody"], LOCK_MS, LOCK_MS) == 0


def test_cleanup_removes_only_expired_sessions_without_work(provider: Store) -> None:
    schedule(provider, "gone", session_items("gone", "gone", 1))
    schedule(provider, "busy", session_items("busy", "busy", 2))
    schedule(provider, "live", session_items("live", "live", 1))
    short = owner("A", lock_ms=SHORT_LOCK_MS)
    assert claim(provider, short) == "gone#1"
    assert claim(provider, short) == "busy#1"  # busy#2 stays pending
    assert claim(provider, owner("C")) == "live#1"
    claimed_at = provider.now_ms()
    wait_for_clock(provider, claimed_at + SHORT_LOCK_MS + 50)

    assert provider.cleanup_orphaned_sessions() == 1
    assert provider.cleanup_orphaned_sessions() == 0
    # The expired session that still has work is claimable by anyone.
    assert names_of(drain_work(provider, session=owner("B"))) == ["busy#2"]
    # The live session with no work was kept: new work in it still goes only to C.
    schedule(provider, "live-again", session_items("live-again", "live", 1))
    assert drain_work(provider, session=owner("B")) == []
    assert names_of(drain_work(provider, session=owner("C"))) == ["live#1"]
