"""``PostgresProvider(migrate=False)`` / ``DUROXIDE_PG_MIGRATE=0`` never runs DDL: it verifies
the schema is at the latest version or refuses with a non-retryable ``ProviderError``; and the
read-only migration helpers (version, pending) change nothing."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from duroxide.errors import ProviderError
from duroxide.providers.postgres import PostgresProvider
from duroxide.providers.postgres.connection import PgOptions
from duroxide.providers.postgres.migrations import (
    current_version,
    ensure_schema,
    latest_version,
    migrations,
    pending_migrations,
)
from duroxide.providers.postgres.provider import resolve_migrate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import pg

OPTIONS = PgOptions.resolve({})


@pytest.fixture
def postgres_schema() -> Iterator[tuple[str, str]]:
    """``(url, schema)``: a schema name that does not exist yet, dropped afterwards."""
    url = pg.pg_url()
    with pg.temporary_schema(url, "migrate_opt") as schema:
        yield url, schema


def schema_exists(url: str, schema: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        return row.fetchone() is not None


def test_resolve_migrate() -> None:
    assert resolve_migrate(None, {}) is True
    assert resolve_migrate(None, {"DUROXIDE_PG_MIGRATE": "0"}) is False
    assert resolve_migrate(None, {"DUROXIDE_PG_MIGRATE": "1"}) is True
    assert resolve_migrate(True, {"DUROXIDE_PG_MIGRATE": "0"}) is True  # keywords win
    with pytest.raises(ValueError, match="DUROXIDE_PG_MIGRATE='maybe'"):
        resolve_migrate(None, {"DUROXIDE_PG_MIGRATE": "maybe"})
    with pytest.raises(TypeError):
        resolve_migrate("no", {})  # type: ignore[arg-type]


def test_missing_schema_is_refused_and_not_created(postgres_schema: tuple[str, str]) -> None:
    url, schema = postgres_schema
    assert current_version(url, schema, OPTIONS) is None
    assert [m.version for m in pending_migrations(url, schema, OPTIONS)] == [
        m.version for m in migrations()
    ]

    with pytest.raises(ProviderError, match="does not exist; run `duroxide migrate`") as caught:
        PostgresProvider.connect_with_schema(url, schema, migrate=False)

    assert caught.value.retryable is False
    assert caught.value.operation == "verify_schema"
    assert not schema_exists(url, schema)


def test_environment_variable_turns_migration_off(
    postgres_schema: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, schema = postgres_schema
    monkeypatch.setenv("DUROXIDE_PG_MIGRATE", "0")
    with pytest.raises(ProviderError, match="does not exist"):
        PostgresProvider.connect_with_schema(url, schema)
    assert not schema_exists(url, schema)

    provider = PostgresProvider.connect_with_schema(url, schema, migrate=True)  # keyword wins
    provider.close()
    assert current_version(url, schema, OPTIONS) == latest_version()


def test_a_current_schema_opens_and_works(postgres_schema: tuple[str, str]) -> None:
    url, schema = postgres_schema
    ensure_schema(url, schema, OPTIONS)
    assert pending_migrations(url, schema, OPTIONS) == ()

    provider = PostgresProvider.connect_with_schema(url, schema, migrate=False)
    try:
        assert provider.get_queue_depths().orchestrator_queue == 0
    finally:
        provider.close()


def test_an_outdated_schema_is_refused(postgres_schema: tuple[str, str]) -> None:
    url, schema = postgres_schema
    ensure_schema(url, schema, OPTIONS)
    with psycopg.connect(url, autocommit=True) as conn:  # pretend the last migration is missing
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE version = %s").format(
                sql.Identifier(schema, "duroxide_migrations")
            ),
            (latest_version(),),
        )
    outdated = latest_version() - 1
    assert current_version(url, schema, OPTIONS) == outdated

    with pytest.raises(ProviderError, match=f"at version {outdated}, this code needs"):
        PostgresProvider.connect_with_schema(url, schema, migrate=False)
    assert current_version(url, schema, OPTIONS) == outdated  # nothing was applied
