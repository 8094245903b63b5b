"""Every fault scenario at its small size, one test each, against PostgreSQL (``tests/pg.py``:
skipped without a server, failed under ``DUROXIDE_REQUIRE_PG=1``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.result import ChaosEnv
from tests.chaos.runner import load, run, scenario_names
from tests.pg import pg_url

#: scenarios quick enough to run without the slow marker (seconds at the small size)
QUICK = {"s03_fault_points", "s07_paused_worker", "s08_long_activity", "s11_rolling_deploy"}


def _param(name: str) -> object:
    marks = () if name in QUICK else (pytest.mark.slow,)
    return pytest.param(name, id=f"postgres-{name}", marks=marks)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", [_param(n) for n in scenario_names()])
def test_scenario_postgres(name: str, tmp_path: Path) -> None:
    scenario = load(name)
    result = run(scenario, ChaosEnv(pg_url(), tmp_path, "small"))
    assert result.ok, result.line()
