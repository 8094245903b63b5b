"""What one fault scenario reports: one line, and whether the guarantees held.

Every scenario module in ``tests/chaos/scenarios/`` (``sNN_name.py``) defines ``NUMBER``,
``TITLE`` and ``run(env: ChaosEnv) -> ScenarioResult``; ``python -m tests.chaos`` runs them and
prints ``ScenarioResult.line()``; ``tests/chaos/test_chaos_postgres.py`` runs the small size
under pytest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Size = Literal["small", "full"]


@dataclass
class ChaosEnv:
    """Where a scenario runs: a PostgreSQL server, a schema prefix and a scratch directory."""

    url: str
    workdir: Path
    size: Size = "small"
    schema_prefix: str = "chaos"

    def schema(self, name: str) -> str:
        """A schema name for this run (the scenario creates and drops it)."""
        return f"{self.schema_prefix}_{name}"[:63]


@dataclass
class ScenarioResult:
    number: int
    title: str
    started: int = 0
    completed: int = 0
    failed: int = 0
    lost: int = 0
    duplicate_events: int = 0
    activity_reexecutions: int = 0
    duplicate_effects: int = 0
    recovery_p99_ms: float | None = None
    #: Scenario-specific checks that must hold (name -> passed), e.g. "late ack rejected".
    checks: dict[str, bool] = field(default_factory=dict)
    #: Re-executions are allowed only where at-least-once delivery allows them (a crash or a
    #: lost lock between an activity's run and its ack); scenarios that promise none set False.
    reexecutions_allowed: bool = True
    detail: str = ""

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.duplicate_events == 0
            and self.duplicate_effects == 0
            and (self.reexecutions_allowed or self.activity_reexecutions == 0)
            and all(self.checks.values())
        )

    def line(self) -> str:
        recovery = "-" if self.recovery_p99_ms is None else f"{self.recovery_p99_ms:.0f} ms"
        failed_checks = [name for name, passed in self.checks.items() if not passed]
        verdict = "ok" if self.ok else f"FAILED {failed_checks or ''}".rstrip()
        return (
            f"{self.number:>2}. {self.title:<34} started={self.started} "
            f"completed={self.completed} failed={self.failed} lost={self.lost} "
            f"duplicate_events={self.duplicate_events} "
            f"reexecutions={self.activity_reexecutions} "
            f"duplicate_effects={self.duplicate_effects} recovery_p99={recovery} "
            f"[{verdict}]" + (f" {self.detail}" if self.detail else "")
        )
