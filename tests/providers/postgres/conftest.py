"""Fixtures for PostgreSQL-only tests: the database URL, fresh schemas, providers on them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pg  # tests/pg.py, put on sys.path by tests/providers/conftest.py
import psycopg
import pytest

from duroxide.providers.postgres import PostgresProvider


@pytest.fixture
def pg_url() -> str:
    return pg.pg_url()


@pytest.fixture
def schema(pg_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A unique schema name, dropped after the test (whatever created it)."""
    with pg.temporary_schema(pg_url, request.node.name[:20]) as name:
        yield name


@pytest.fixture
def open_provider(pg_url: str, schema: str) -> Iterator[Callable[..., PostgresProvider]]:
    """Opens providers on the test's schema (with options); all closed after the test."""
    opened: list[PostgresProvider] = []

    def open_(**options: Any) -> PostgresProvider:
        provider = PostgresProvider.connect_with_schema(pg_url, schema, **options)
        opened.append(provider)
        return provider

    yield open_
    for provider in opened:
        provider.close()


@pytest.fixture
def admin_conn(pg_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A plain autocommit connection (default search_path) for inspecting and interfering."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        yield conn
