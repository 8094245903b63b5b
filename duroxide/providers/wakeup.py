"""In-process wake-ups: a latency hint on top of polling, never the source of truth.

A provider calls ``notify(channel, due_in_ms)`` when work becomes (or will become) visible;
dispatchers call ``wait(channel, since, timeout_s)``. A wait ends when the channel's generation
moved past ``since``, when a due time registered on the channel arrives (a timer coming due), or at
the timeout (the poll interval). Generations make the check-then-wait race-free: a dispatcher
reads ``generation()`` *before* it fetches, so a notify that lands between the empty fetch and
the wait still ends the wait at once.

Channels: ``orchestrator``, ``worker``, ``status`` (instance status / custom status / KV changed).
Cancelled activities are published to listeners (the activity worker) so an in-process activity
learns of its cancellation at once.

The hub also knows which channels this process waits on: the first ``wait`` on a channel (or
``watch``; a cancel listener watches ``worker``) calls the watcher a provider bound with
``bind_watcher``. The PostgreSQL provider uses it to LISTEN only for the work this process
takes: an orchestrator process is not woken by activity hints, nor a worker by status changes.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

ORCHESTRATOR = "orchestrator"
WORKER = "worker"
STATUS = "status"


class WakeupHub:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._generation: dict[str, int] = {ORCHESTRATOR: 0, WORKER: 0, STATUS: 0}
        self._due: dict[str, list[float]] = {ORCHESTRATOR: [], WORKER: []}
        self._cancel_listeners: list[Callable[[list[Any]], None]] = []
        self._listener_lock = threading.Lock()
        self._watched: set[str] = set()
        self._watcher: Callable[[str], None] | None = None

    def bind_watcher(self, watcher: Callable[[str], None]) -> None:
        """Call ``watcher(channel)`` once per channel this process starts waiting on (at once
        for the channels already watched)."""
        with self._cond:
            self._watcher = watcher
            watched = list(self._watched)
        for channel in watched:
            watcher(channel)

    def watch(self, channel: str) -> None:
        """Declare that this process waits on ``channel`` (``wait`` does it by itself)."""
        if channel in self._watched:
            return
        with self._cond:
            if channel in self._watched:
                return
            self._watched.add(channel)
            watcher = self._watcher
        if watcher is not None:
            watcher(channel)

    def generation(self, channel: str) -> int:
        return self._generation[channel]

    def notify(self, channel: str, due_in_ms: int | None = None) -> None:
        """Work on ``channel`` is visible now, or will be in ``due_in_ms`` milliseconds."""
        with self._cond:
            if due_in_ms is not None and due_in_ms > 0:
                heapq.heappush(self._due[channel], time.monotonic() + due_in_ms / 1000.0)
            else:
                self._generation[channel] += 1
            self._cond.notify_all()

    def notify_many(self, channels: Iterable[str]) -> None:
        with self._cond:
            for channel in channels:
                self._generation[channel] += 1
            self._cond.notify_all()

    def wait(self, channel: str, since: int, timeout_s: float) -> bool:
        """Block until ``channel`` moved past ``since``, a due time passed, or the timeout.

        Returns True when woken by a notification or due time, False on timeout.
        """
        self.watch(channel)
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                if self._generation[channel] != since:
                    return True
                now = time.monotonic()
                due = self._due.get(channel)
                if due and due[0] <= now:
                    while due and due[0] <= now:
                        heapq.heappop(due)
                    return True
                remaining = deadline - now
                if remaining <= 0:
                    return False
                if due:
                    remaining = min(remaining, due[0] - now)
                self._cond.wait(remaining)

    def interrupt(self) -> None:
        """Wake every waiter (used at shutdown)."""
        self.notify_many(list(self._generation))

    # --- cancelled activities ----------------------------------------------------------------

    def add_cancel_listener(self, listener: Callable[[list[Any]], None]) -> None:
        with self._listener_lock:
            self._cancel_listeners.append(listener)
        self.watch(WORKER)  # cancellations travel with the worker queue's hints

    def remove_cancel_listener(self, listener: Callable[[list[Any]], None]) -> None:
        with self._listener_lock:
            if listener in self._cancel_listeners:
                self._cancel_listeners.remove(listener)

    def publish_cancelled(self, keys: list[Any]) -> None:
        if not keys:
            return
        with self._listener_lock:
            listeners = list(self._cancel_listeners)
        for listener in listeners:
            listener(keys)
