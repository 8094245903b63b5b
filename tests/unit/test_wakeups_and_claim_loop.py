"""The wake-up hub tells a provider which queues this process waits on (so it listens only for
those), and the claim loop fetches again after a partial fetch only once told of new work."""

from __future__ import annotations

import threading
import time
from typing import Any

from duroxide.observability.logging import get_logger
from duroxide.providers.wakeup import ORCHESTRATOR, STATUS, WORKER, WakeupHub
from duroxide.runtime.loop import DispatchLoop

WAIT_S = 5.0


def wait_until(check: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_S}s: {what}")
        time.sleep(0.002)


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
    """A queue the loop fetches from: ``fill`` makes items visible (and notifies, as a
    provider does after a commit); every fetch is recorded with its time."""

    def __init__(self, hub: WakeupHub) -> None:
        self.hub = hub
        self.visible: list[int] = []
        self.fetches: list[float] = []
        self.processed: list[int] = []
        self.lock = threading.Lock()

    def fill(self, *items: int) -> None:
        with self.lock:
            self.visible.extend(items)
        self.hub.notify(ORCHESTRATOR)

    def fetch(self, max_items: int) -> list[int]:
        with self.lock:
            self.fetches.append(time.monotonic())
            taken, self.visible = self.visible[:max_items], self.visible[max_items:]
        return taken


def _loop(claims: _Claims, poll_s: float) -> DispatchLoop[int]:
    return DispatchLoop(
        name="test", hub=claims.hub, channel=ORCHESTRATOR, concurrency=4,
        poll_interval_s=poll_s, fetch=claims.fetch, process=claims.processed.append,
        log=get_logger("test"), discard=lambda item: None,
    )  # fmt: skip


def test_after_a_partial_fetch_the_loop_waits_for_a_notification_instead_of_fetching_again() -> (
    None
):
    """A fetch that returned fewer items than it asked for took everything visible: a second
    fetch at once would find nothing (it is what kept a lone request's turn company, on the
    same cores and the same database). The next fetch comes with new work, or at the poll."""
    hub = WakeupHub()
    claims = _Claims(hub)
    claims.visible.append(1)
    loop = _loop(claims, poll_s=0.5)
    loop.start()
    try:
        wait_until(lambda: claims.processed == [1], "the first item")
        first = claims.fetches[0]
        wait_until(lambda: len(claims.fetches) >= 2, "the fetch at the poll interval")
        assert claims.fetches[1] - first >= 0.4  # not at once

        claims.fill(2, 3)
        wait_until(lambda: sorted(claims.processed) == [1, 2, 3], "the notified items")
    finally:
        loop.stop_claiming(time.monotonic() + WAIT_S)
        loop.close()


def test_a_full_fetch_is_followed_by_another_at_once() -> None:
    """When a fetch filled every free slot there may be more: the loop fetches again as soon as
    slots free up, without waiting for a notification."""
    hub = WakeupHub()
    claims = _Claims(hub)
    claims.visible.extend(range(10))
    loop = _loop(claims, poll_s=30.0)  # a wait would outlast the test
    loop.start()
    try:
        wait_until(lambda: sorted(claims.processed) == list(range(10)), "all ten items")
    finally:
        loop.stop_claiming(time.monotonic() + WAIT_S)
        loop.close()
