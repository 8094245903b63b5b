"""What the runtime reports about itself, as one narrow hook interface.

``Instruments`` does nothing (the default: observability stays optional and free). The cluster
installs a Prometheus implementation (``duroxide.observability.prometheus``); tests can install
a recording one. Every hook must be cheap and must not raise.

Outcomes: orchestrations end ``completed``, ``failed`` or ``continued_as_new`` (with the failure
``category``); activities end ``completed``, ``failed``, ``poison`` or ``discarded`` (the result
came back after the lock was lost or the activity was cancelled).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class Instruments:
    """No-op base: subclass and override what you measure."""

    def orchestration_started(self, name: str) -> None:
        """A new instance ran its first turn."""

    def orchestration_finished(
        self, name: str, outcome: str, category: str | None, duration_s: float | None
    ) -> None:
        """An execution ended; ``duration_s`` from its start to its end."""

    def turn(self, name: str, duration_s: float) -> None:
        """One orchestration turn (replay or resume + ack)."""

    def poison(self, kind: str) -> None:
        """Work failed as poison; ``kind`` is ``orchestration`` or ``activity``."""

    def activity(self, name: str, tag: str | None, outcome: str, duration_s: float) -> None:
        """One activity attempt."""

    def provider_call(self, operation: str, duration_s: float, failed: bool) -> None:
        """One provider operation (one round trip for a server)."""

    def lock_renewed(self, kind: str) -> None:
        """A lock of in-flight work was extended (``orchestration`` or ``activity``)."""

    def lock_lost(self, kind: str) -> None:
        """In-flight work lost its lock (its result is discarded)."""

    def slots(self, kind: str, busy: int, capacity: int) -> None:
        """Busy slots of a dispatcher changed."""


class InstrumentedProvider:
    """Wraps a provider so every operation reports its duration and failure.

    Attribute access is delegated, so it satisfies the ``Provider`` protocol of what it wraps.
    """

    _UNTIMED = frozenset({"wakeups", "now_ms", "close"})

    def __init__(self, inner: Any, instruments: Instruments) -> None:
        self._inner = inner
        self._instruments = instruments
        self._wrapped: dict[str, Callable[..., Any]] = {}

    @property
    def inner(self) -> Any:
        return self._inner

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name.startswith("_") or name in self._UNTIMED or not callable(value):
            return value
        wrapped = self._wrapped.get(name)
        if wrapped is None:
            wrapped = self._wrapped[name] = self._time(name, value)
        return wrapped

    def _time(self, operation: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        instruments = self._instruments

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            failed = True
            try:
                result = fn(*args, **kwargs)
                failed = False
                return result
            finally:
                instruments.provider_call(operation, time.perf_counter() - started, failed)

        timed.__name__ = operation
        return timed
