"""Small builders that keep the conformance tests readable.

They drive a provider the way the runtime does (enqueue, fetch, ack) with hand-built events, so
each test states only what it is about. Nothing here sleeps except ``eventually`` and
``wait_for_clock``, which poll with a deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, TypeVar

from duroxide.errors import ErrorDetails
from duroxide.history import (
    ActivityScheduled,
    Event,
    ExternalEvent,
    OrchestrationCompleted,
    OrchestrationContinuedAsNew,
    OrchestrationFailed,
    OrchestrationStarted,
)
from duroxide.providers.base import (
    InstanceUpdate,
    KvChanges,
    OrchestrationAck,
    OrchestrationItem,
    Provider,
    ProviderAdmin,
    SessionConfig,
    WorkItem,
)
from duroxide.types import TagFilter, TagFilterSpec
from duroxide.work_items import (
    ActivityKey,
    ActivityWorkItem,
    ContinueAsNew,
    EventRaised,
    OutboundMessage,
    StartOrchestration,
)

T = TypeVar("T")

ORCH = "Orch"
VERSION = "1.0.0"
#: A lock long enough never to expire during a test that is not about expiry.
LOCK_MS = 30_000
#: A lock short enough to wait out in tests about expiry.
SHORT_LOCK_MS = 200
#: A lock that outlives the next few calls even on a loaded machine, yet can be waited out.
MEDIUM_LOCK_MS = 500
#: Upper bound for any polling wait.
WAIT_S = 10.0

DEFAULT_ONLY = TagFilterSpec.parse(TagFilter.DEFAULT_ONLY)
ANY_TAG = TagFilterSpec.parse(TagFilter.ANY)


class Store(Provider, ProviderAdmin, Protocol):
    """What every backend under test implements."""


class StoreOpener(Protocol):
    """The ``open_store`` fixture: handles onto one shared store (several nodes, or restarts)."""

    def open(self) -> Store: ...

    def close(self, handle: Store) -> None: ...


# --- waiting -------------------------------------------------------------------------------------


def eventually(fn: Callable[[], T | None], *, timeout: float = WAIT_S, what: str = "") -> T:
    """Call ``fn`` until it returns something other than None/False; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if result is not None and result is not False:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout}s: {what or fn}")
        time.sleep(0.01)


def wait_for_clock(provider: Store, target_ms: int) -> None:
    """Wait until the provider's clock is strictly past ``target_ms``."""
    eventually(lambda: provider.now_ms() > target_ms, what=f"provider clock past {target_ms}")


# --- orchestrator side ---------------------------------------------------------------------------


def start(provider: Store, instance_id: str, *, name: str = ORCH, input: str = '"in"') -> None:
    provider.enqueue_orchestrator(
        instance_id, StartOrchestration(name=name, version=VERSION, input=input)
    )


def raise_event(provider: Store, instance_id: str, name: str = "evt", data: str = '"d"') -> None:
    provider.enqueue_orchestrator(instance_id, EventRaised(name=name, data=data))


def fetch(provider: Store, *, lock_ms: int = LOCK_MS) -> OrchestrationItem:
    item = provider.fetch_orchestration_item(lock_ms)
    assert item is not None, "expected an orchestration item"
    return item


def fetch_for(provider: Store, instance_id: str, *, lock_ms: int = LOCK_MS) -> OrchestrationItem:
    item = fetch(provider, lock_ms=lock_ms)
    assert item.instance_id == instance_id
    return item


def update(
    *,
    name: str = ORCH,
    execution_id: int = 1,
    status: str = "Running",
    execution_status: str | None = None,
    output: str | None = None,
    error: ErrorDetails | None = None,
    next_execution_id: int | None = None,
    parent_instance_id: str | None = None,
    custom_status: str | None = None,
    custom_status_changed: bool = False,
) -> InstanceUpdate:
    return InstanceUpdate(
        orchestration_name=name,
        orchestration_version=VERSION,
        execution_id=execution_id,
        status=status,
        execution_status=execution_status or status,
        output=output,
        error=error,
        next_execution_id=next_execution_id,
        parent_instance_id=parent_instance_id,
        custom_status=custom_status,
        custom_status_changed=custom_status_changed,
    )


def started(now_ms: int, *, name: str = ORCH, event_id: int = 1) -> OrchestrationStarted:
    return OrchestrationStarted(
        event_id=event_id, timestamp_ms=now_ms, name=name, version=VERSION, input='"in"'
    )


def activity(
    instance_id: str,
    activity_id: int,
    *,
    name: str = "Act",
    tag: str | None = None,
    session_id: str | None = None,
    execution_id: int = 1,
    input: str = '"arg"',
) -> ActivityWorkItem:
    return ActivityWorkItem(
        instance_id=instance_id,
        execution_id=execution_id,
        activity_id=activity_id,
        name=name,
        input=input,
        session_id=session_id,
        tag=tag,
        orchestration_name=ORCH,
        orchestration_version=VERSION,
    )


def scheduled(item: ActivityWorkItem, now_ms: int) -> ActivityScheduled:
    return ActivityScheduled(
        event_id=item.activity_id,
        timestamp_ms=now_ms,
        name=item.name,
        input=item.input,
        session_id=item.session_id,
        tag=item.tag,
    )


def key_of(item: ActivityWorkItem) -> ActivityKey:
    return ActivityKey(
        instance_id=item.instance_id, execution_id=item.execution_id, activity_id=item.activity_id
    )


def next_event_id(item: OrchestrationItem) -> int:
    return max((e.event_id for e in item.history), default=0) + 1


def run_first_turn(
    provider: Store,
    instance_id: str,
    *,
    name: str = ORCH,
    activities: Sequence[ActivityWorkItem] = (),
    parent_instance_id: str | None = None,
    kv: KvChanges | None = None,
) -> OrchestrationItem:
    """Start ``instance_id`` and ack its first turn: OrchestrationStarted, then one
    ActivityScheduled per activity (whose ``activity_id`` must be 2, 3, ...)."""
    start(provider, instance_id, name=name)
    item = fetch_for(provider, instance_id)
    events: list[Event] = [started(item.now_ms, name=name)]
    events += [scheduled(a, item.now_ms) for a in activities]
    assert [e.event_id for e in events] == list(range(1, len(events) + 1))
    provider.ack_orchestration_item(
        item.lock_token,
        OrchestrationAck(
            instance=update(name=name, parent_instance_id=parent_instance_id),
            events=events,
            worker_items=list(activities),
            kv=kv or KvChanges(),
        ),
    )
    return item


def schedule(provider: Store, instance_id: str, items: Iterable[ActivityWorkItem]) -> None:
    """Start ``instance_id`` with a first turn that schedules ``items`` (ids 2, 3, ...)."""
    run_first_turn(provider, instance_id, activities=list(items))


def run_turn(
    provider: Store,
    instance_id: str,
    *,
    extra_events: Callable[[int, int], list[Event]] | None = None,
    worker_items: Sequence[ActivityWorkItem] = (),
    orchestrator_items: Sequence[OutboundMessage] = (),
    cancelled: Sequence[ActivityKey] = (),
    kv: KvChanges | None = None,
    custom_status: str | None = None,
    custom_status_changed: bool = False,
) -> OrchestrationItem:
    """Deliver an event to a running instance and ack a turn that records it.

    ``extra_events(next_id, now_ms)`` may add events after the recorded ExternalEvent.
    """
    raise_event(provider, instance_id)
    item = fetch_for(provider, instance_id)
    event_id = next_event_id(item)
    events: list[Event] = [
        ExternalEvent(event_id=event_id, timestamp_ms=item.now_ms, name="evt", data='"d"')
    ]
    if extra_events is not None:
        events += extra_events(event_id + 1, item.now_ms)
    provider.ack_orchestration_item(
        item.lock_token,
        OrchestrationAck(
            instance=update(
                execution_id=item.execution_id,
                custom_status=custom_status,
                custom_status_changed=custom_status_changed,
            ),
            events=events,
            worker_items=list(worker_items),
            orchestrator_items=list(orchestrator_items),
            cancelled_activities=list(cancelled),
            kv=kv or KvChanges(),
        ),
    )
    return item


def finish(
    provider: Store,
    instance_id: str,
    *,
    name: str = ORCH,
    output: str = '"done"',
    error: ErrorDetails | None = None,
    parent_instance_id: str | None = None,
) -> None:
    """Deliver an event to a running instance and complete (or fail, given ``error``) it."""
    raise_event(provider, instance_id)
    item = fetch_for(provider, instance_id)
    event_id = next_event_id(item)
    terminal: Event
    if error is None:
        terminal = OrchestrationCompleted(
            event_id=event_id, timestamp_ms=item.now_ms, output=output
        )
        instance = update(
            name=name,
            execution_id=item.execution_id,
            status="Completed",
            output=output,
            parent_instance_id=parent_instance_id,
        )
    else:
        terminal = OrchestrationFailed(event_id=event_id, timestamp_ms=item.now_ms, error=error)
        instance = update(
            name=name,
            execution_id=item.execution_id,
            status="Failed",
            error=error,
            parent_instance_id=parent_instance_id,
        )
    provider.ack_orchestration_item(
        item.lock_token, OrchestrationAck(instance=instance, events=[terminal])
    )


def completed_instance(provider: Store, instance_id: str, *, name: str = ORCH) -> None:
    run_first_turn(provider, instance_id, name=name)
    finish(provider, instance_id, name=name)


def continue_as_new(provider: Store, instance_id: str, *, name: str = ORCH) -> int:
    """Run one turn of the current execution that continues as new; returns the new id.

    The new execution then gets its OrchestrationStarted from the ContinueAsNew message turn.
    """
    raise_event(provider, instance_id)
    item = fetch_for(provider, instance_id)
    current = item.execution_id
    new_id = current + 1
    provider.ack_orchestration_item(
        item.lock_token,
        OrchestrationAck(
            instance=update(
                name=name,
                execution_id=current,
                status="Running",
                execution_status="ContinuedAsNew",
                next_execution_id=new_id,
            ),
            events=[
                OrchestrationContinuedAsNew(
                    event_id=next_event_id(item), timestamp_ms=item.now_ms, input='"again"'
                )
            ],
            orchestrator_items=[
                OutboundMessage(
                    instance_id=instance_id,
                    message=ContinueAsNew(
                        execution_id=new_id, name=name, version=VERSION, input='"again"'
                    ),
                )
            ],
        ),
    )
    item = fetch_for(provider, instance_id)
    assert item.execution_id == new_id
    provider.ack_orchestration_item(
        item.lock_token,
        OrchestrationAck(
            instance=update(name=name, execution_id=new_id),
            events=[started(item.now_ms, name=name)],
        ),
    )
    return new_id


# --- worker side ---------------------------------------------------------------------------------


def fetch_work(
    provider: Store,
    tag_filter: TagFilterSpec = DEFAULT_ONLY,
    session: SessionConfig | None = None,
    *,
    lock_ms: int = LOCK_MS,
) -> WorkItem:
    work = provider.fetch_work_item(lock_ms, tag_filter, session)
    assert work is not None, "expected a work item"
    return work


def drain_work(
    provider: Store,
    tag_filter: TagFilterSpec = DEFAULT_ONLY,
    session: SessionConfig | None = None,
    *,
    lock_ms: int = LOCK_MS,
) -> list[WorkItem]:
    """Fetch (and keep locked) every work item the filter/session can take right now."""
    taken: list[WorkItem] = []
    while (work := provider.fetch_work_item(lock_ms, tag_filter, session)) is not None:
        taken.append(work)
        assert len(taken) < 1000, "fetch_work_item keeps returning items"
    return taken


def names_of(items: Iterable[WorkItem]) -> list[str]:
    return [w.item.name for w in items]
