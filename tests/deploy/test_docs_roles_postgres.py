"""The database roles of docs/deploy.md, created exactly as documented, do their jobs.

The document's SQL runs (with unique role and schema names); then, each connecting as its own
role: the owner runs ``duroxide migrate`` (the hook Job), the app role runs a runtime and a client
with ``DUROXIDE_PG_MIGRATE=0`` to completion and passes ``duroxide healthcheck`` (the pods), and
the scaler role reads ``duroxide_backlog()`` (KEDA) but cannot read a table.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from .test_docs import DOC, code_blocks

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared pg.py
import pg

ROLES = ("duroxide_owner", "duroxide_app", "duroxide_scaler")


def as_role(url: str, role: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{role}:{password}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def cli(url: str, schema: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DUROXIDE_DATABASE_URL": url, "DUROXIDE_SCHEMA": schema}
    return subprocess.run(
        [sys.executable, "-m", "duroxide.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_documented_roles_postgres() -> None:
    from duroxide import Client, PostgresProvider, Runtime, RuntimeOptions

    url = pg.pg_url()
    (recipe,) = code_blocks(DOC.read_text(), "sql")
    suffix = uuid.uuid4().hex[:8]
    names = {role: f"{role}_{suffix}" for role in ROLES}
    schema = pg.unique_schema("roles")
    for role, unique in names.items():
        recipe = re.sub(rf"\b{role}\b", unique, recipe)
    recipe = re.sub(r"\bmedia\b", schema, recipe)
    passwords = dict(re.findall(r"CREATE ROLE (\w+) LOGIN PASSWORD '([^']+)'", recipe))
    assert set(passwords) == set(names.values())
    owner, app, scaler = (as_role(url, names[r], passwords[names[r]]) for r in ROLES)

    with psycopg.connect(url, autocommit=True) as conn:
        su = conn.execute(
            "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user"
        )
        if not su.fetchone()[0]:
            pytest.skip("the test database user may not create roles")
        conn.execute(recipe)
    provider: Any = None
    runtime: Any = None
    try:
        # the hook Job
        migrated = cli(owner, schema, "migrate")
        assert migrated.returncode == 0, migrated.stderr
        # the pods: DML only, never DDL
        with (
            psycopg.connect(app, autocommit=True) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            conn.execute(sql.SQL("CREATE TABLE {}.x (i int)").format(sql.Identifier(schema)))
        health = cli(app, schema, "healthcheck")
        assert health.returncode == 0, health.stdout + health.stderr
        provider = PostgresProvider.connect_with_schema(app, schema, migrate=False)
        runtime = Runtime(provider, RuntimeOptions())

        @runtime.register_activity("Double")
        def double(ctx: Any, n: int) -> int:
            return 2 * n

        @runtime.register_orchestration("Sum")
        def total(ctx: Any, n: int) -> Any:
            a = yield ctx.schedule_activity("Double", n)
            b = yield ctx.schedule_timer(10)
            assert b is None
            return a + 1

        runtime.start()
        client = Client(provider)
        client.start_orchestration("sum-1", "Sum", 20)
        result = client.wait_for_orchestration("sum-1", 20_000)
        assert (result.status, result.output) == ("Completed", 41)
        # KEDA's scaler: the backlog function and nothing else
        with psycopg.connect(scaler, autocommit=True) as conn:
            query = sql.SQL("SELECT {}.duroxide_backlog('worker', NULL)").format(
                sql.Identifier(schema)
            )
            assert conn.execute(query).fetchone()[0] == 0
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(
                    sql.SQL("SELECT count(*) FROM {}.worker_queue").format(sql.Identifier(schema))
                )
    finally:
        if runtime is not None:
            runtime.shutdown(2_000)
        if provider is not None:
            provider.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
            for role in names.values():
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                    conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
