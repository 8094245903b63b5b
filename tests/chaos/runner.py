"""Discovering and running the scenarios (``scenarios/sNN_*.py``, in number order)."""

from __future__ import annotations

import importlib
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from tests.chaos.result import ChaosEnv, ScenarioResult

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True)
class Scenario:
    number: int
    title: str
    module: ModuleType


def scenario_names() -> list[str]:
    """Module names of every scenario file, ``sNN_name``."""
    return sorted(p.stem for p in SCENARIOS.glob("s[0-9]*.py"))


def load(name: str) -> Scenario:
    module = importlib.import_module(f"tests.chaos.scenarios.{name}")
    return Scenario(int(module.NUMBER), str(module.TITLE), module)


def discover(only: set[int] | None = None) -> list[Scenario]:
    found = [load(name) for name in scenario_names()]
    return sorted((s for s in found if only is None or s.number in only), key=lambda s: s.number)


def database_url() -> str:
    for variable in ("DUROXIDE_TEST_PG_URL", "DATABASE_URL"):
        url = os.environ.get(variable, "").strip()
        if url:
            return url
    return DEFAULT_URL


def run(scenario: Scenario, env: ChaosEnv) -> ScenarioResult:
    """Run one scenario; an exception is a failed result (named in its detail), not a crash."""
    started = time.monotonic()
    try:
        result = scenario.module.run(env)
    except Exception as exc:
        result = ScenarioResult(scenario.number, scenario.title)
        result.checks["ran to the end"] = False
        last = traceback.format_exception_only(exc)[-1].strip()
        result.detail = f"{last[:600]} ({traceback.extract_tb(exc.__traceback__)[-1].name})"
    result.detail = (result.detail + " " if result.detail else "") + (
        f"({time.monotonic() - started:.0f}s)"
    )
    return result
