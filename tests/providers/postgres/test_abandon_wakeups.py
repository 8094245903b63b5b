"""A delayed abandon (an activity this worker cannot run, parked with a backoff) wakes the
*other* processes when it is due, not the one that parked it: that one would otherwise always
retake it first (its local due time beats every notification), so during a rolling deploy an
old worker starved a new one that can run the activity until the activity was poisoned
(found by the fault suite, tests/chaos scenario 11)."""

from __future__ import annotations

from collections.abc import Callable

from conformance.helpers import schedule
from pg import listening

from duroxide.providers.postgres import PostgresProvider
from duroxide.providers.wakeup import WORKER
from duroxide.types import TagFilter, TagFilterSpec
from duroxide.work_items import ActivityWorkItem

ANY_TAG = TagFilterSpec.parse(TagFilter.ANY)


def test_a_delayed_abandon_wakes_the_other_processes_not_its_own(
    open_provider: Callable[..., PostgresProvider],
) -> None:
    old, new = open_provider(), open_provider()
    listening(new, WORKER)  # both are activity workers: they wait on the worker queue
    listening(old, WORKER)
    schedule(old, "w", [ActivityWorkItem(instance_id="w", execution_id=1, activity_id=2,
                                         name="New")])  # fmt: skip
    work = old.fetch_work_item(30_000, ANY_TAG)
    assert work is not None
    since_old, since_new = old._wakeups.generation(WORKER), new._wakeups.generation(WORKER)

    old.abandon_work_item(work.lock_token, delay_ms=300)  # "not registered here"

    assert new._wakeups.wait(WORKER, since_new, 5.0)  # woken when it is due
    assert not old._wakeups.wait(WORKER, since_old, 0.6)  # not woken: it only polls
    retaken = new.fetch_work_item(30_000, ANY_TAG)
    assert retaken is not None and retaken.item.activity_id == 2
