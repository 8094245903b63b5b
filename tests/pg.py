"""Where the tests find PostgreSQL, shared by tests/providers and tests/integration.

``pg_url()`` answers, in order: ``DUROXIDE_TEST_PG_URL``; ``DATABASE_URL``; a
``testcontainers`` PostgreSQL container started once per test run when a Docker engine
answers (checked with a short timeout); otherwise it skips the test with the reason — or fails
it when ``DUROXIDE_REQUIRE_PG=1`` (CI sets it, so a missing database can never pass as
skipped). Every test schema is created by a provider on a unique name and dropped afterwards.
"""

from __future__ import annotations

import atexit
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import psycopg
import pytest
from psycopg import sql

SCHEMA_PREFIX = "dxtest_"


@cache
def _discover() -> tuple[str | None, str]:
    """``(url, reason)``; url None when no PostgreSQL is available (reason says why)."""
    for variable in ("DUROXIDE_TEST_PG_URL", "DATABASE_URL"):
        url = os.environ.get(variable, "").strip()
        if url:
            return url, variable
    if not _docker_answers():
        return None, (
            "no PostgreSQL: set DUROXIDE_TEST_PG_URL (or DATABASE_URL), or run a Docker engine"
        )
    try:
        from testcontainers.postgres import PostgresContainer

        container = PostgresContainer("postgres:16-alpine", driver=None)
        container.start()
    except Exception as exc:  # any failure to start means "no database here"
        return None, f"no PostgreSQL: starting a testcontainers PostgreSQL failed: {exc}"
    atexit.register(container.stop)
    return container.get_connection_url(), "testcontainers"


def _docker_answers() -> bool:
    """True when a Docker engine responds within two seconds."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host and not os.path.exists("/var/run/docker.sock"):
        return False
    try:
        import docker

        client = docker.from_env(timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no SDK, no daemon, no permission: no Docker
        return False


def pg_url() -> str:
    """The PostgreSQL URL for tests; skips (or fails under DUROXIDE_REQUIRE_PG=1) without one."""
    url, reason = _discover()
    if url is None:
        if os.environ.get("DUROXIDE_REQUIRE_PG") == "1":
            pytest.fail(f"DUROXIDE_REQUIRE_PG=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return url


def unique_schema(label: str = "") -> str:
    """A fresh schema name (valid for ``connect_with_schema``)."""
    tag = "".join(c for c in label.lower() if c.isalnum() or c == "_")[:20]
    return f"{SCHEMA_PREFIX}{tag}_{uuid.uuid4().hex[:12]}"


def with_application_name(url: str, name: str) -> str:
    """``url`` with ``application_name=name`` added to its query string."""
    return f"{url}{'&' if '?' in url else '?'}application_name={name}"


def connect(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


def drop_schema(url: str, schema: str) -> None:
    with connect(url) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def truncate_schema(url: str, schema: str) -> None:
    """Empty every table of a duroxide schema except its migration record."""
    with connect(url) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s "
                "AND tablename <> 'duroxide_migrations'",
                (schema,),
            )
        ]
        if tables:
            names = sql.SQL(", ").join(sql.Identifier(schema, t) for t in tables)
            conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(names))


@contextmanager
def temporary_schema(url: str, label: str = "") -> Iterator[str]:
    """A unique schema name, dropped (with everything in it) at the end."""
    schema = unique_schema(label)
    try:
        yield schema
    finally:
        drop_schema(url, schema)


def listening(provider: Any, *queues: str, timeout_s: float = 5.0) -> None:
    """Make ``provider`` (a ``PostgresProvider``) receive the other processes' hints for
    ``queues`` and wait until its LISTENs are in place. A process listens only for the queues
    it waits on; a test that checks wake-ups declares them first, so that the one wake-up the
    LISTEN itself causes is not taken for the hint under test."""
    for queue in queues:
        provider.wakeups.watch(queue)
    deadline = time.monotonic() + timeout_s
    while not all(provider._listener.is_listening(queue) for queue in queues):
        if time.monotonic() > deadline:
            raise AssertionError(f"no LISTEN for {queues} within {timeout_s}s")
        time.sleep(0.005)
