"""The wake-up hub tells a provider which queues this process waits on (so it listens only for
those); the claim loop keeps fetching while its batches come back full, and after a short one
waits for a notification (a provider returns fewer items only when no more is claimable)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from duroxide.observability.logging import get_logger
from duroxide.providers.wakeup import ORCHESTRATOR, STATUS, WORKER, WakeupHub
from duroxide.runtime.loop import DispatchLoop

WAIT_S = 5.0


def test_the_watcher_hears_of_each_waited_queue_once_including_those_before_it_was_bound() -> None:
    hub = WakeupHub()
    seen: list[str] = []
    hub.wait(STATUS, hub.generation(STATUS), 0)  # before any watcher: remembered

    hub.bind_watcher(seen.append)
    hub.wait(ORCHESTRATOR, hub.generation(ORCHESTRATOR), 0)
    hub.wait(ORCHESTRATOR, hub.generation(ORCHESTRATOR), 0)
    hub.watch(STATUS)

    assert seen == [STATUS, ORCHESTRATOR]


def test_a_cancel_listener_watches_the_worker_queue() -> None:
    """Cancellations travel with the worker queue's hints: an activity worker must hear them."""
    hub = WakeupHub()
    seen: list[str] = []
    hub.bind_watcher(seen.append)

    hub.add_cancel_listener(lambda keys: None)

    assert seen == [WORKER]


class _Queue:
    """A queue the loop fetches from: items become visible when the test adds them."""

    def __init__(self) -> None:
        self.visible: list[int] = []
        self.processed: list[int] = []
        self.fetches = 0
        self.during_first_fetch: list[int] = []  # made visible while the first fetch runs
        self.cond = threading.Condition()
        self.hub = WakeupHub()

    def add(self, *items: int) -> None:
        with self.cond:
            self.visible.extend(items)

    def fetch(self, max_items: int) -> list[int]:
        with self.cond:
            self.fetches += 1
            taken, self.visible = self.visible[:max_items], self.visible[max_items:]
            if self.fetches == 1 and self.during_first_fetch:
                self.visible.extend(self.during_first_fetch)  # a commit elsewhere, and its
                self.hub.notify(ORCHESTRATOR)  # notification, before the fetch returns
        return taken

    def process(self, item: int) -> None:
        with self.cond:
            self.processed.append(item)
            self.cond.notify_all()

    def wait_processed(self, count: int) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.processed) >= count, WAIT_S)


@contextmanager
def _running(
    queue: _Queue, concurrency: int, process: Callable[[int], bool | None] | None = None
) -> Iterator[DispatchLoop[int]]:
    loop = DispatchLoop(
        name="test", hub=queue.hub, channel=ORCHESTRATOR, concurrency=concurrency,
        poll_interval_s=30.0,  # a wait for the poll would outlast the test
        fetch=queue.fetch, process=process or queue.process, log=get_logger("test"),
        discard=lambda item: None,
    )  # fmt: skip
    loop.start()
    try:
        yield loop
    finally:
        loop.stop_claiming(time.monotonic() + WAIT_S)
        loop.close()


def test_a_full_fetch_is_followed_by_another_at_once() -> None:
    """When a fetch filled every free slot there may be more: the loop fetches again as soon as
    slots free up, without waiting for a notification."""
    queue = _Queue()
    queue.add(*range(10))
    with _running(queue, concurrency=4):
        assert queue.wait_processed(10), f"processed only {queue.processed}"
    assert sorted(queue.processed) == list(range(10))


def test_after_a_short_fetch_the_loop_waits_for_a_notification() -> None:
    """Fewer items than free slots means nothing more was claimable: the next fetch waits for a
    notification (here the poll interval would outlast the test), and is the only one."""
    queue = _Queue()
    queue.add(0, 1, 2)
    with _running(queue, concurrency=50):  # every fetch asks for more than 3 items
        assert queue.wait_processed(3)
        queue.add(3)
        queue.hub.notify(ORCHESTRATOR)
        assert queue.wait_processed(4), f"processed only {queue.processed}"
        assert queue.fetches == 2  # no fetch between the short one and the notification


def test_work_notified_during_a_short_fetch_is_fetched_at_once() -> None:
    """The wait after a short fetch counts from before the fetch: a notification that arrived
    while it ran ends the wait at once."""
    queue = _Queue()
    queue.add(0, 1)
    queue.during_first_fetch = [2]
    with _running(queue, concurrency=50):
        assert queue.wait_processed(3), f"processed only {queue.processed}"
    assert sorted(queue.processed) == [0, 1, 2]


def test_a_deferred_item_holds_its_slot_until_it_is_finished() -> None:
    """An item whose processing returned True (its ack handed to a group commit) still counts
    as in flight: the loop claims nothing in its place, and a shutdown waits for it, until
    ``finished(item)`` is called."""
    queue = _Queue()
    queue.add(0, 1)
    deferred = threading.Event()

    def process(item: int) -> bool | None:
        queue.process(item)
        if item == 0:
            deferred.set()
            return True
        return None

    with _running(queue, concurrency=1, process=process) as loop:
        assert deferred.wait(WAIT_S)
        assert not loop.wait_idle(time.monotonic() + 0.3)
        assert queue.processed == [0]

        loop.finished(0)

        assert queue.wait_processed(2)
        assert loop.wait_idle(time.monotonic() + WAIT_S)
