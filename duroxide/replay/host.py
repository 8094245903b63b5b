"""What the ``OrchestrationContext`` asks of a turn: tracing, custom status and the KV store.

A mixin of ``Turn`` (``duroxide.replay.engine``): the non-yielded context calls record their
decisions through ``Turn._decide`` like every other decision, so they replay and are matched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from duroxide.history import (
    CustomStatusUpdated,
    Event,
    KeyValueCleared,
    KeyValuesCleared,
    KeyValueSet,
)
from duroxide.replay.signals import Fatal
from duroxide.serialization import check_str_payload

#: Most KV keys an instance may hold, and the largest value (bytes), as in the reference SDK.
MAX_KV_KEYS = 150
MAX_KV_VALUE_BYTES = 64 * 1024


class ContextHost:
    # provided by Turn
    replaying: bool
    result: Any
    fatal: str | None
    custom_status: str | None
    kv: dict[str, tuple[str, int]]
    _decide: Any

    # --- the OrchestrationContext host interface -------------------------------------------------

    def trace(self, level: str, message: str) -> None:
        if not self.replaying:
            self.result.logs.append((level, message))

    def _record(self, make: Callable[[int, int], Event]) -> Event | None:
        """A non-yielded decision made inside user code: never raise Fatal through it."""
        if self.fatal is not None:
            return None
        try:
            event, _ = self._decide(make)
        except Fatal as fatal:
            self.fatal = fatal.message
            return None
        return event

    def record_custom_status(self, status: str | None) -> None:
        if self._record(lambda eid, ts: CustomStatusUpdated(
                event_id=eid, timestamp_ms=ts, status=status)) is not None:  # fmt: skip
            self.custom_status = status

    def current_custom_status(self) -> str | None:
        return self.custom_status

    def kv_set(self, key: str, value: str) -> None:
        check_str_payload(value, "KV value")
        if len(value.encode("utf-8")) > MAX_KV_VALUE_BYTES:
            raise ValueError(f"KV value for {key!r} is over {MAX_KV_VALUE_BYTES} bytes")
        if key not in self.kv and len(self.kv) >= MAX_KV_KEYS:
            raise ValueError(f"an instance holds at most {MAX_KV_KEYS} KV keys")
        event = self._record(lambda eid, ts: KeyValueSet(
            event_id=eid, timestamp_ms=ts, key=key, value=value))  # fmt: skip
        if event is not None:
            self.kv[key] = (value, event.timestamp_ms)

    def kv_clear(self, key: str) -> None:
        if self._record(lambda eid, ts: KeyValueCleared(
                event_id=eid, timestamp_ms=ts, key=key)) is not None:  # fmt: skip
            self.kv.pop(key, None)

    def kv_clear_all(self) -> None:
        if self._record(lambda eid, ts: KeyValuesCleared(event_id=eid, timestamp_ms=ts)):
            self.kv.clear()

    def kv_snapshot(self) -> dict[str, tuple[str, int]]:
        return dict(self.kv)

    def kv_prune(self, cutoff_ms: int) -> int:
        stale = sorted(k for k, (_, updated) in self.kv.items() if updated < cutoff_ms)
        for key in stale:
            self.kv_clear(key)
        return len(stale)
