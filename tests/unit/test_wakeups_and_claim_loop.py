"""The wake-up hub tells a provider which queues this process waits on (so it listens only for
those); the claim loop keeps fetching while there is work, without waiting for a notification."""

from __future__ import annotations

import threading
import time

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


class _Claims:
    """A queue the loop fetches from, returning at most ``cap`` items per fetch (as a provider
    whose batches are capped, or one that dropped a claim it could not take)."""

    def __init__(self, items: int, cap: int) -> None:
        self.visible = list(range(items))
        self.cap = cap
        self.processed: list[int] = []
        self.lock = threading.Lock()
        self.all_processed = threading.Event()

    def fetch(self, max_items: int) -> list[int]:
        with self.lock:
            count = min(max_items, self.cap)
            taken, self.visible = self.visible[:count], self.visible[count:]
        return taken

    def process(self, item: int) -> None:
        with self.lock:
            self.processed.append(item)
            if not self.visible and len(self.processed) == 10:
                self.all_processed.set()


def _drain(claims: _Claims) -> None:
    loop = DispatchLoop(
        name="test", hub=WakeupHub(), channel=ORCHESTRATOR, concurrency=4,
        poll_interval_s=30.0,  # a wait for the poll would outlast the test
        fetch=claims.fetch, process=claims.process, log=get_logger("test"),
        discard=lambda item: None,
    )  # fmt: skip
    loop.start()
    try:
        assert claims.all_processed.wait(WAIT_S), f"processed only {claims.processed}"
        assert sorted(claims.processed) == list(range(10))
    finally:
        loop.stop_claiming(time.monotonic() + WAIT_S)
        loop.close()


def test_a_full_fetch_is_followed_by_another_at_once() -> None:
    """When a fetch filled every free slot there may be more: the loop fetches again as soon as
    slots free up, without waiting for a notification."""
    _drain(_Claims(items=10, cap=10))


def test_a_short_fetch_is_followed_by_another_at_once() -> None:
    """Fewer items than asked for does not mean the queue is empty (a provider may cap its
    batches; PostgreSQL drops claims it could not take, such as a session owned elsewhere): only
    an empty fetch makes the loop wait for a notification."""
    _drain(_Claims(items=10, cap=1))
