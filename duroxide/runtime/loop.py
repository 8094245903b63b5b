"""The claim loop both dispatchers share.

One fetcher thread claims work only while slots are free — as many items per round trip as
there are free slots — and hands each item to a pool of slot threads. A fetch that filled every
free slot is followed by the next as soon as a slot frees up. One that came back short (or
empty) found everything claimable (the provider contract's "full batches"), so the next waits
on the provider's wake-up hub: a notification, a timer coming due, or the poll interval
(polling stays the source of truth). The wait counts from before the fetch, so work notified
while it ran is fetched at once. Threads are daemons: an activity that ignores cancellation can
never keep the interpreter alive.

An item holds its slot until it is finished. ``process(item)`` returns None when it finished
the item; it returns True when it handed the rest over (an ack committed later by another
thread, see group_commit.py), and then whoever finishes the item calls ``finished(item)``
exactly once. The slot thread is free for the next item meanwhile. ``finished`` calls
``forget(item)`` (the dispatcher drops what it kept of the item), then frees the slot.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from duroxide.errors import ProviderError
from duroxide.providers.wakeup import WakeupHub

T = TypeVar("T")

_STOP = object()


class DispatchLoop(Generic[T]):
    def __init__(
        self,
        *,
        name: str,
        hub: WakeupHub,
        channel: str,
        concurrency: int,
        poll_interval_s: float,
        fetch: Callable[[int], list[T]],
        process: Callable[[T], bool | None],
        log: Any,
        discard: Callable[[T], None],
        forget: Callable[[T], None] | None = None,
        on_provider_error: Callable[[], None] | None = None,
        on_busy: Callable[[int, int], None] | None = None,
    ) -> None:
        self.name = name
        self._hub = hub
        self._channel = channel
        self._concurrency = concurrency
        self._poll = poll_interval_s
        self._fetch = fetch
        self._process = process
        self._discard = discard
        self._forget = forget
        self._log = log
        self._on_provider_error = on_provider_error
        self._on_busy = on_busy
        self._slots = threading.Semaphore(concurrency)
        self._items: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._busy = 0
        self._busy_lock = threading.Lock()
        self._idle = threading.Condition(self._busy_lock)
        self._threads: list[threading.Thread] = []
        self._fetcher: threading.Thread | None = None

    @property
    def busy(self) -> int:
        return self._busy

    @property
    def concurrency(self) -> int:
        return self._concurrency

    def start(self) -> None:
        for i in range(self._concurrency):
            t = threading.Thread(target=self._slot, name=f"{self.name}-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        self._fetcher = threading.Thread(target=self._claim, name=f"{self.name}-fetch",
                                         daemon=True)  # fmt: skip
        self._fetcher.start()

    def stop_claiming(self, deadline: float) -> None:
        """Stop fetching and wait (until ``deadline``) for a fetch in progress to end; an item
        it returns after the stop is released at once, never queued."""
        self._stopping.set()
        self._hub.interrupt()
        if self._fetcher is not None:
            self._fetcher.join(max(0.0, deadline - time.monotonic()))

    def wait_idle(self, deadline: float) -> bool:
        """Wait until no item is being processed, or until ``deadline`` (monotonic)."""
        with self._idle:
            while self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def close(self) -> None:
        """Stop the slot threads once the queue is drained. The fetcher is joined first, so no
        item can land behind the stop markers."""
        if self._fetcher is not None:
            self._fetcher.join(5.0)
        for _ in range(self._concurrency):
            self._items.put(_STOP)

    # --- threads -------------------------------------------------------------------------------

    def _claim(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            if not self._slots.acquire(timeout=0.2):
                continue
            held = 1
            while held < self._concurrency and self._slots.acquire(blocking=False):
                held += 1
            if self._stopping.is_set():
                self._release_slots(held)
                break
            since = self._hub.generation(self._channel)
            try:
                items = self._fetch(held)
            except ProviderError as exc:
                self._release_slots(held)
                failures += 1
                if self._on_provider_error is not None:
                    self._on_provider_error()
                delay = min(5.0, 0.05 * 2 ** min(failures, 7))
                self._log.warning("dispatcher.fetch_failed", dispatcher=self.name, error=str(exc),
                                  retryable=exc.retryable, retry_in_s=delay)  # fmt: skip
                self._stopping.wait(delay)
                continue
            except Exception:
                self._release_slots(held)
                self._log.exception("dispatcher.fetch_crashed", dispatcher=self.name)
                self._stopping.wait(1.0)
                continue
            failures = 0
            self._release_slots(held - len(items))
            if not items:
                self._hub.wait(self._channel, since, self._poll)
                continue
            if self._stopping.is_set():  # fetched while shutting down: hand them straight back
                self._release_slots(len(items))
                for item in items:
                    self._discard(item)
                break
            with self._busy_lock:
                self._busy += len(items)
                if self._on_busy is not None:  # under the lock: gauge updates stay in order
                    self._on_busy(self._busy, self._concurrency)
            for item in items:
                self._items.put(item)
            if len(items) < held:  # nothing more was claimable: fetch again when told of work
                self._hub.wait(self._channel, since, self._poll)

    def _release_slots(self, count: int) -> None:
        for _ in range(count):
            self._slots.release()

    def _slot(self) -> None:
        while True:
            item = self._items.get()
            if item is _STOP:
                return
            deferred = False
            try:
                deferred = bool(self._process(item))
            except BaseException:  # a slot thread must never die
                self._log.exception("dispatcher.process_crashed", dispatcher=self.name)
            if not deferred:
                self.finished(item)

    def finished(self, item: T) -> None:
        """``item`` is finished: forget it, free its slot (see the module docstring)."""
        try:
            if self._forget is not None:
                self._forget(item)
        except BaseException:  # its slot is freed whatever happens
            self._log.exception("dispatcher.process_crashed", dispatcher=self.name)
        with self._idle:
            self._busy -= 1
            if self._on_busy is not None:
                self._on_busy(self._busy, self._concurrency)
            self._idle.notify_all()
        self._slots.release()
