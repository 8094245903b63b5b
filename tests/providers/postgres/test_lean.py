"""The lean statement path (``duroxide/providers/postgres/lean.py``): a statement waiting on the
server never holds the interpreter (libpq's blocking calls run without the GIL)."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
from conformance.helpers import eventually

from duroxide.work_items import StartOrchestration


def _hold_lock_for(url: str, schema: str, seconds: float) -> psycopg.Connection[Any]:
    """A connection whose server session locks ``orchestrator_queue`` exclusively for
    ``seconds``, then commits: the server ends it, whatever our threads do meanwhile."""
    conn = psycopg.connect(url, autocommit=True)
    table = f'"{schema}".orchestrator_queue'
    conn.pgconn.send_query(
        f"BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE; "
        f"SELECT pg_sleep({seconds}); COMMIT".encode()
    )
    return conn


def test_a_statement_prepared_while_its_table_is_locked_does_not_stop_other_threads(
    open_provider: Any, pg_url: str, schema: str, admin_conn: psycopg.Connection[Any]
) -> None:
    provider = open_provider()  # its connections have prepared nothing yet
    holder = _hold_lock_for(pg_url, schema, 2.0)
    try:
        eventually(
            lambda: admin_conn.execute(
                "SELECT count(*) > 0 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE c.relname = 'orchestrator_queue' AND l.mode = 'AccessExclusiveLock' "
                "AND l.granted"
            ).fetchone()[0],
            timeout=10,
            what="the table lock to be taken",
        )
        ticks: list[float] = []
        stop = threading.Event()

        def tick() -> None:
            while not stop.is_set():
                ticks.append(time.monotonic())
                time.sleep(0.005)

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        started = time.monotonic()
        provider.enqueue_orchestrator("lean-1", StartOrchestration(name="O"))  # parse waits
        finished = time.monotonic()
        stop.set()
        ticker.join(5)
    finally:
        holder.close()
    assert finished - started > 1.0  # it did wait for the lock
    during = [t for t in ticks if started <= t <= finished]
    gaps = [b - a for a, b in zip([started, *during], [*during, finished], strict=True)]
    assert max(gaps) < 0.5, f"other threads stopped for {max(gaps):.2f}s while it waited"
