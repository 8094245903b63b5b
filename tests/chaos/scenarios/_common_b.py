"""Shared helpers of the chaos scenarios 9, 10 and 12-16: tenants, waits, stored-state checks.

The stored-state checks read the PostgreSQL tables directly (duroxide/providers/postgres/
schema.sql), independently of the runtime: duplicate completions or terminal events in
history, scheduled work never answered in a completed execution, and instances that did not
reach the status expected of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg import sql

from duroxide import Client, PostgresProvider, Runtime, RuntimeOptions
from tests.chaos.checker import check
from tests.chaos.harness import SETTLE_S, wait_for
from tests.chaos.result import ScenarioResult
from tests.chaos.sqlfile import statement
from tests.pg import connect, drop_schema

_SQL_FILE = Path(__file__).with_name("_b_queries.sql")


def query(name: str, schema: str | None = None) -> sql.Composable:
    """The named statement of ``_b_queries.sql``, with ``{schema}`` quoted as an identifier."""
    return statement(_SQL_FILE, name, schema)


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds or ``timeout_s`` passes; its last answer."""
    try:
        wait_for(predicate, "a condition", timeout_s, interval_s)
    except TimeoutError:
        return False
    return True


def fast_options(**overrides: Any) -> RuntimeOptions:
    base: dict[str, Any] = {
        "dispatcher_poll_interval_ms": 50, "orchestration_concurrency": 4,
        "worker_concurrency": 8, "log_level": "error",
    }  # fmt: skip
    base.update(overrides)
    return RuntimeOptions(**base)


@contextmanager
def tenant(url: str, schema: str, **pool: Any) -> Iterator[PostgresProvider]:
    """A provider on a fresh ``schema``, closed (and the schema dropped) at the end."""
    drop_schema(url, schema)
    try:
        provider = PostgresProvider.connect_with_schema(url, schema, **pool)
        try:
            yield provider
        finally:
            provider.close()
    finally:
        drop_schema(url, schema)


@contextmanager
def running(runtime: Runtime, timeout_ms: int = 5_000) -> Iterator[Runtime]:
    runtime.start()
    try:
        yield runtime
    finally:
        runtime.shutdown(timeout_ms)


def wait_all(client: Client, ids: Sequence[str], timeout_s: float) -> dict[str, str]:
    """Wait for every instance to finish (shared deadline); id -> final status ("Timeout")."""
    deadline = time.monotonic() + timeout_s
    statuses: dict[str, str] = {}
    for instance_id in ids:
        left = max(1, int((deadline - time.monotonic()) * 1000))
        try:
            statuses[instance_id] = client.wait_for_orchestration(instance_id, left).status
        except TimeoutError:
            statuses[instance_id] = "Timeout"
    return statuses


@dataclass
class StoredState:
    """What the tables say, independently of the runtime."""

    statuses: dict[str, str]
    errors: dict[str, str | None]
    duplicate_events: int
    unanswered: int


def stored_state(url: str, schema: str) -> StoredState:
    with connect(url) as conn:
        rows = conn.execute(query("statuses", schema)).fetchall()
        dup = conn.execute(query("duplicate_completions", schema)).fetchone()
        term = conn.execute(query("duplicate_terminals", schema)).fetchone()
        unanswered = conn.execute(query("unanswered_in_finished", schema)).fetchone()
    return StoredState(
        statuses={r[0]: r[1] for r in rows},
        errors={r[0]: r[2] for r in rows},
        duplicate_events=int(dup[0] if dup else 0) + int(term[0] if term else 0),
        unanswered=int(unanswered[0] if unanswered else 0),
    )


def apply_checks(
    result: ScenarioResult, url: str, expectations: Sequence[tuple[str, Mapping[str, Any] | None]]
) -> None:
    """Run the independent checker (tests/chaos/checker.py) on each ``(schema, expected)`` and
    add up its counts on ``result``; also check that no completed execution left scheduled work
    unanswered (these scenarios have no races, whose losers would legitimately be). Duplicate
    events are counted twice, by the checker and by this module's own SQL
    (``duplicate_completions``, ``duplicate_terminals``), and the larger count is reported."""
    completed = failed = lost = duplicates = unanswered = 0
    history_ok = outputs_ok = True
    details: list[str] = []
    for schema, expected in expectations:
        report = check(url, schema, expected, settle_s=SETTLE_S)
        completed, failed = completed + report.completed, failed + report.failed
        lost, duplicates = lost + report.lost, duplicates + report.duplicate_events
        history_ok, outputs_ok = history_ok and report.ok, outputs_ok and report.wrong_outputs == 0
        stored = stored_state(url, schema)
        unanswered += stored.unanswered
        duplicates += max(0, stored.duplicate_events - report.duplicate_events)
        if stored.unanswered:
            details.append(f"{schema}: {stored.unanswered} scheduled and never answered")
        if not report.ok:
            details.append(f"{schema}: {report.summary(3)}")
    result.completed, result.failed = completed, failed
    result.lost, result.duplicate_events = lost + unanswered, duplicates
    result.checks["history invariants"] = history_ok
    result.checks["outputs as expected"] = outputs_ok
    if details:
        result.detail = " ".join(filter(None, [result.detail, *details]))


def events_per_instance(url: str, schema: str, kind: str) -> dict[str, int]:
    with connect(url) as conn:
        rows = conn.execute(query("count_kind", schema), (kind,)).fetchall()
    return {r[0]: int(r[1]) for r in rows}
