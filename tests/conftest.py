"""Suite-wide checks.

Under ``DUROXIDE_REQUIRE_PG=1`` (CI), a skipped PostgreSQL test fails the run: the Postgres
half of the suite must never pass by not running.
"""

from __future__ import annotations

import os

import pytest

_skipped_pg: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "postgres" in report.nodeid.lower():
        _skipped_pg.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("DUROXIDE_REQUIRE_PG") == "1" and _skipped_pg:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"DUROXIDE_REQUIRE_PG=1 but {len(_skipped_pg)} PostgreSQL tests were skipped, "
                f"e.g. {_skipped_pg[0]}",
                red=True,
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
