"""PostgreSQL measurements for the benchmarks: write transactions, commits, the physical limit."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql


def counters(url: str) -> dict[str, int]:
    """Transaction ids assigned so far (one per write transaction) and commits of this database.

    Reading the snapshot's xmax assigns no id itself; the statistics view is cleared first so
    the commit count is current (it still lags each backend's last second or so).
    """
    with psycopg.connect(url, autocommit=True) as conn:
        xid = conn.execute("SELECT txid_snapshot_xmax(txid_current_snapshot())").fetchone()
        conn.execute("SELECT pg_stat_clear_snapshot()")
        commits = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return {"xid": int(xid[0]) if xid else 0, "commits": int(commits[0]) if commits else 0}


def drop_schema(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def pgbench_limit(url: str, seconds: int = 5) -> dict[str, Any] | None:
    """Single-row INSERT transactions per second with 1, 2, 4 and 8 pgbench clients on the
    same server: the ceiling a queue on this database can reach."""
    if shutil.which("pgbench") is None:
        return None
    schema = "bench_pgbench"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {0} CASCADE; CREATE SCHEMA {0}; "
                             "CREATE TABLE {0}.t (id bigserial PRIMARY KEY, v int)")
                     .format(sql.Identifier(schema)))  # fmt: skip
    result: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "insert.sql"
            script.write_text(f"INSERT INTO {schema}.t (v) VALUES (1);\n")
            for clients in (1, 2, 4, 8):
                run = subprocess.run(
                    ["pgbench", "-n", "-c", str(clients), "-j", str(clients), "-T", str(seconds),
                     "-f", str(script), url],
                    capture_output=True, text=True, timeout=seconds * 10, check=False,
                )  # fmt: skip
                match = re.search(r"tps = ([0-9.]+)", run.stdout)
                result[str(clients)] = float(match[1]) if match else None
    finally:
        drop_schema(url, schema)
    values = [v for v in result.values() if v]
    result["max"] = max(values) if values else None
    return result
