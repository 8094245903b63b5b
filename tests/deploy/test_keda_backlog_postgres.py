"""The KEDA ``postgresql`` trigger's queries, as rendered by the chart, run against a real schema.

The chart is rendered for a fresh schema; each ScaledObject's query is executed as KEDA would,
by a role that has nothing but USAGE on the schema, and must count exactly the backlog of its
Deployment: orchestrator messages for the dispatchers, untagged activities for the workers,
activities with the pool's tag for a pool.
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from .helmtools import VALUES_DIR, render

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared pg.py
import pg

FULLNAME = "dx-duroxide"


def _queries(schema: str) -> dict[str, str]:
    rendered = render([VALUES_DIR / "keda-pools.yaml"], sets=[f"schema={schema}"])
    out = {}
    for so in rendered.of_kind("ScaledObject"):
        (trigger,) = so["spec"]["triggers"]
        assert trigger["type"] == "postgresql"
        out[so["metadata"]["name"].removeprefix(f"{FULLNAME}-")] = trigger["metadata"]["query"]
    return out


def _backlogs(url: str, role: str, queries: dict[str, str]) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        return {name: conn.execute(query).fetchone()[0] for name, query in queries.items()}


def test_rendered_backlog_queries_count_each_deployments_work_postgres(helm: str) -> None:
    from duroxide import Client, PostgresProvider, Runtime, RuntimeOptions

    url = pg.pg_url()
    with pg.temporary_schema(url, "keda") as schema:
        queries = _queries(schema)
        assert set(queries) == {"orchestrator", "worker", "pool-gpu", "pool-io-bound"}
        provider = PostgresProvider.connect_with_schema(url, schema)  # creates the schema
        scaler = f"dx_scaler_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(scaler)))
            conn.execute(
                sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                    sql.Identifier(schema), sql.Identifier(scaler)
                )
            )
        runtime: Any = None
        try:
            idle = _backlogs(url, scaler, queries)
            assert idle == dict.fromkeys(queries, 0)

            client = Client(provider)
            client.start_orchestration("fan-1", "FanOut", None)
            assert _backlogs(url, scaler, queries)["orchestrator"] == 1

            # a dispatcher with no activity slots: the activities stay queued
            runtime = Runtime(provider, RuntimeOptions(worker_concurrency=0))

            @runtime.register_orchestration("FanOut")
            def fan_out(ctx: Any, _: Any) -> Any:
                return (
                    yield ctx.all(
                        [
                            ctx.schedule_activity("Plain", 1),
                            ctx.schedule_activity("Plain", 2),
                            ctx.schedule_activity("Render", 3).with_tag("gpu"),
                            ctx.schedule_activity("Batch", 4).with_tag("io_bound"),
                            ctx.schedule_activity("Batch", 5).with_tag("io_bound"),
                            ctx.schedule_activity("Batch", 6).with_tag("io_bound"),
                        ]
                    )
                )

            runtime.start()
            want = {"orchestrator": 0, "worker": 2, "pool-gpu": 1, "pool-io-bound": 3}
            deadline = time.monotonic() + 20
            while (got := _backlogs(url, scaler, queries)) != want:
                assert time.monotonic() < deadline, f"backlogs {got}, expected {want}"
                time.sleep(0.1)
        finally:
            if runtime is not None:
                runtime.shutdown(2_000)
            provider.close()
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(scaler)))
