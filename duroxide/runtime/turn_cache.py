"""Live orchestration state kept between turns, so a turn costs the new events, not the history.

After a committed turn of a still-running instance, the dispatcher keeps the engine's ``Turn``
(with its suspended generator). When the same dispatcher fetches that instance again, the
provider omits the history (it knows this dispatcher acked the last turn) and the cached turn is
resumed with only the new messages. An entry is used only if it provably matches the stored
history: same execution, same number of events, and — when the provider did send the history —
the same last event. Anything else falls back to a full replay, which is always correct.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from duroxide.history import Event
from duroxide.replay import Turn

DEFAULT_CAPACITY = 1024


@dataclass(frozen=True, slots=True)
class CachedTurn:
    execution_id: int
    history_len: int
    last_event: Event
    turn: Turn


class TurnCache:
    """A thread-safe LRU of live turns by instance id. ``take`` removes the entry: the caller
    holds the instance lock and owns the turn until it ``put``s it back after its ack."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, CachedTurn] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def take(
        self,
        instance_id: str,
        execution_id: int,
        history_len: int,
        history: list[Event] | None,
    ) -> Turn | None:
        with self._lock:
            entry = self._entries.pop(instance_id, None)
            usable = (
                entry is not None
                and entry.execution_id == execution_id
                and entry.history_len == history_len
                and (history is None or (bool(history) and history[-1] == entry.last_event))
            )
            if usable:
                self.hits += 1
            else:
                self.misses += 1
        return entry.turn if usable and entry is not None else None

    def put(self, instance_id: str, turn: Turn) -> None:
        if self._capacity <= 0 or not turn.events:
            return
        entry = CachedTurn(turn.execution_id, len(turn.events), turn.events[-1], turn)
        with self._lock:
            self._entries[instance_id] = entry
            self._entries.move_to_end(instance_id)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
