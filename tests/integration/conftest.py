"""Fixtures for integration tests: a real provider, clients and runtimes that always shut down.

Every integration test runs on each backend in ``BACKENDS``. On PostgreSQL each test module
gets its own schema (dropped at the end of the module), emptied before each test.
``make_runtime(**options)`` builds a Runtime with a short poll interval and
shuts it down after the test; register handlers on it, then call ``start()``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from duroxide import Client, Runtime, RuntimeOptions, SqliteProvider

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared pg.py
import pg

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="module")
def pg_module_schema(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """``(url, schema)``: this module's PostgreSQL schema, dropped after its last test."""
    url = pg.pg_url()
    with pg.temporary_schema(url, request.module.__name__.rpartition(".")[2]) as schema:
        yield url, schema


@pytest.fixture(params=BACKENDS)
def provider(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "sqlite":
        p = SqliteProvider.in_memory()
    elif request.param == "postgres":
        from duroxide.providers.postgres import PostgresProvider

        url, schema = request.getfixturevalue("pg_module_schema")
        pg.truncate_schema(url, schema)
        p = PostgresProvider.connect_with_schema(url, schema)
    else:  # pragma: no cover - a backend listed but not wired up
        raise AssertionError(f"unknown backend {request.param}")
    yield p
    p.close()


@pytest.fixture
def client(provider: Any) -> Client:
    return Client(provider)


@pytest.fixture
def make_runtime(provider: Any) -> Iterator[Callable[..., Runtime]]:
    runtimes: list[Runtime] = []

    def make(**options: Any) -> Runtime:
        options.setdefault("dispatcher_poll_interval_ms", 50)
        runtime = Runtime(provider, RuntimeOptions(**options))
        runtimes.append(runtime)
        return runtime

    yield make
    for runtime in runtimes:
        runtime.shutdown(1000)
