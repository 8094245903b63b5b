"""One thread per runtime that keeps the locks of work in progress alive.

Dispatchers ``hold`` a lease when they claim an item (an orchestration turn or an activity) and
``release`` it when done. Each lease is renewed every ``every_s``; a renewal that reports the
lock gone calls ``on_lost`` (for an activity: its cancellation signal). Periodic housekeeping
(session renewal, orphan cleanup) runs on the same thread. Nothing here can kill the thread: a
failing renewal is logged and tried again on the next tick.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from duroxide.errors import ProviderError

#: Granularity of the keeper's clock: a renewal is never later than this past its due time.
TICK_S = 0.2


@dataclass(slots=True)
class _Lease:
    renew: Callable[[], bool]
    every_s: float
    on_lost: Callable[[], None]
    due: float
    kind: str


@dataclass(slots=True)
class _Periodic:
    fn: Callable[[], Any]
    every_s: float
    due: float
    name: str


class LeaseKeeper:
    def __init__(self, log: Any, on_renewed: Callable[[str], None] | None = None) -> None:
        self._log = log
        self._on_renewed = on_renewed
        self._leases: dict[str, _Lease] = {}
        self._periodic: list[_Periodic] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, key: str, renew: Callable[[], bool], every_s: float,
             on_lost: Callable[[], None], kind: str) -> None:  # fmt: skip
        lease = _Lease(renew, every_s, on_lost, time.monotonic() + every_s, kind)
        with self._lock:
            self._leases[key] = lease

    def release(self, key: str) -> None:
        with self._lock:
            self._leases.pop(key, None)

    def every(self, every_s: float, fn: Callable[[], Any], name: str) -> None:
        with self._lock:
            self._periodic.append(_Periodic(fn, every_s, time.monotonic() + every_s, name))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="duroxide-leases", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def _run(self) -> None:
        while not self._stopping.wait(TICK_S):
            now = time.monotonic()
            with self._lock:
                due = [(k, lease) for k, lease in self._leases.items() if lease.due <= now]
                periodic = [p for p in self._periodic if p.due <= now]
            for key, lease in due:
                self._renew(key, lease)
            for task in periodic:
                task.due = now + task.every_s
                self._safely(task.name, task.fn)

    def _renew(self, key: str, lease: _Lease) -> None:
        lease.due = time.monotonic() + lease.every_s
        held = self._safely(f"renew {lease.kind}", lease.renew)
        if held is None:
            return  # failed to ask: try again next period
        with self._lock:
            still_ours = self._leases.get(key) is lease
            if not held and still_ours:
                del self._leases[key]
        if not still_ours:
            return
        if held:
            if self._on_renewed is not None:
                self._on_renewed(lease.kind)
        else:
            self._safely(f"{lease.kind} lock lost", lease.on_lost)

    def _safely(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except ProviderError as exc:
            self._log.warning("lease.provider_error", task=what, error=str(exc),
                              retryable=exc.retryable)  # fmt: skip
        except BaseException:
            self._log.exception("lease.task_crashed", task=what)
        return None
