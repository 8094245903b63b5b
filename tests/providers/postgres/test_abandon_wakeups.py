"""A delayed abandon (an activity this worker cannot run, parked with a backoff) wakes the
*other* processes when it is due, not the one that parked it: that one would otherwise always
retake it first (its local due time beats every notification), so during a rolling deploy an
old worker starved a new one that can run the activity until the activity was poisoned
(found by the fault suite, tests/chaos scenario 11)."""

from __future__ import annotations

import time
from collections.abc import Callable

from duroxide.history import ActivityScheduled, OrchestrationStarted
from duroxide.providers.base import InstanceUpdate, OrchestrationAck
from duroxide.providers.postgres import PostgresProvider
from duroxide.providers.wakeup import WORKER
from duroxide.types import TagFilter, TagFilterSpec
from duroxide.work_items import ActivityWorkItem, StartOrchestration

ANY_TAG = TagFilterSpec.parse(TagFilter.ANY)


def schedule_one(provider: PostgresProvider) -> None:
    provider.enqueue_orchestrator("w", StartOrchestration(name="O", version="1.0.0"))
    item = provider.fetch_orchestration_item(30_000)
    assert item is not None
    activity = ActivityWorkItem(instance_id="w", execution_id=1, activity_id=2, name="New")
    provider.ack_orchestration_item(
        item.lock_token,
        OrchestrationAck(
            instance=InstanceUpdate(
                orchestration_name="O", orchestration_version="1.0.0", execution_id=1,
                status="Running", execution_status="Running",
            ),
            events=[OrchestrationStarted(event_id=1, timestamp_ms=item.now_ms, name="O",
                                         version="1.0.0"),
                    ActivityScheduled(event_id=2, timestamp_ms=item.now_ms, name="New")],
            worker_items=[activity],
        ),
    )  # fmt: skip


def test_a_delayed_abandon_wakes_the_other_processes_not_its_own(
    open_provider: Callable[..., PostgresProvider],
) -> None:
    old, new = open_provider(), open_provider()
    deadline = time.monotonic() + 10
    while new._listener.pid is None:  # listening before the abandon is announced
        assert time.monotonic() < deadline, "the listener never connected"
        time.sleep(0.02)
    schedule_one(old)
    work = old.fetch_work_item(30_000, ANY_TAG)
    assert work is not None
    since_old, since_new = old._wakeups.generation(WORKER), new._wakeups.generation(WORKER)

    old.abandon_work_item(work.lock_token, delay_ms=300)  # "not registered here"

    assert new._wakeups.wait(WORKER, since_new, 5.0)  # woken when it is due
    assert not old._wakeups.wait(WORKER, since_old, 0.6)  # not woken: it only polls
    retaken = new.fetch_work_item(30_000, ANY_TAG)
    assert retaken is not None and retaken.item.activity_id == 2
