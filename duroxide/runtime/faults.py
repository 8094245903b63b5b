"""Fault injection for the fault-tolerance suite: ``DUROXIDE_FAULTS=name[:probability],…``.

Free when the variable is unset (an empty ``Faults`` is falsy and every hook is one truth test).
Points, each hit with its probability (default 1.0):

* ``activity_exit_before_ack`` — the process exits after an activity ran, before its ack;
* ``turn_exit_after_ack`` — the process exits right after a turn's ack committed;
* ``turn_raise_after_ack`` — the dispatcher raises right after a turn's ack committed;
* ``turn_delay_past_lock`` — a turn stops renewing its lock and sleeps past it before its ack
  (which must then be refused).

An injected exit uses exit code ``FAULT_EXIT_CODE`` so supervisors and tests can tell it apart.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

POINTS = frozenset(
    {"activity_exit_before_ack", "turn_exit_after_ack", "turn_raise_after_ack",
     "turn_delay_past_lock"}
)  # fmt: skip
FAULT_EXIT_CODE = 86


class InjectedFault(Exception):
    """Raised by ``turn_raise_after_ack``."""


@dataclass(frozen=True)
class Faults:
    probabilities: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str | None) -> Faults:
        probabilities: dict[str, float] = {}
        for raw in (spec or "").split(","):
            part = raw.strip()
            if not part:
                continue
            name, _, arg = part.partition(":")
            if name not in POINTS:
                raise ValueError(f"unknown fault point {name!r} in DUROXIDE_FAULTS; "
                                 f"known: {', '.join(sorted(POINTS))}")  # fmt: skip
            try:
                probability = float(arg) if arg else 1.0
            except ValueError:
                raise ValueError(f"fault {name!r}: {arg!r} is not a probability") from None
            if not 0.0 <= probability <= 1.0:
                raise ValueError(f"fault {name!r}: probability must be in [0, 1], got {arg}")
            probabilities[name] = probability
        return cls(probabilities)

    @classmethod
    def from_environment(cls) -> Faults:
        return cls.parse(os.environ.get("DUROXIDE_FAULTS"))

    def __bool__(self) -> bool:
        return bool(self.probabilities)

    def hit(self, name: str) -> bool:
        probability = self.probabilities.get(name)
        return probability is not None and (probability >= 1.0 or random.random() < probability)

    def crash(self) -> None:
        """Exit the process now, as a crash would (no cleanup, no flushing)."""
        os._exit(FAULT_EXIT_CODE)
