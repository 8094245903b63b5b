"""schema.sql and the numbered migrations define the same schema; creation is idempotent and
safe when many processes start at once on an empty schema."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pg
import psycopg
import pytest
from psycopg import sql

from duroxide.providers.base import START_BIAS_MS
from duroxide.providers.postgres.connection import PgOptions
from duroxide.providers.postgres.migrations import (
    ensure_schema,
    latest_version,
    migrations,
    set_search_path,
)

OPTIONS = PgOptions.resolve({})

#: (what, query) pairs describing every object of a schema; %(schema)s is the schema name.
CATALOG_QUERIES = {
    "relations": """
        SELECT c.relname, c.relkind, coalesce(c.reloptions, '{}'), c.relpersistence
        FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
        ORDER BY c.relname""",
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), co.collname, a.attidentity, a.attgenerated,
               a.attnum
        FROM pg_attribute AS a
        JOIN pg_class AS c ON c.oid = a.attrelid
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        LEFT JOIN pg_collation AS co ON co.oid = a.attcollation
        WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY c.relname, a.attnum""",
    "indexes": """
        SELECT c.relname, pg_get_indexdef(i.indexrelid)
        FROM pg_index AS i
        JOIN pg_class AS c ON c.oid = i.indexrelid
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.nspname = %(schema)s
        ORDER BY c.relname""",
    "constraints": """
        SELECT t.relname, co.conname, co.contype, pg_get_constraintdef(co.oid)
        FROM pg_constraint AS co
        JOIN pg_class AS t ON t.oid = co.conrelid
        JOIN pg_namespace AS n ON n.oid = co.connamespace
        WHERE n.nspname = %(schema)s
        ORDER BY t.relname, co.conname""",
    "functions": """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid)
        FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
        WHERE n.nspname = %(schema)s
        ORDER BY p.proname, 2""",
    "triggers": """
        SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid)
        FROM pg_trigger AS t
        JOIN pg_class AS c ON c.oid = t.tgrelid
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.nspname = %(schema)s AND NOT t.tgisinternal
        ORDER BY c.relname, t.tgname""",
    "types": """
        SELECT t.typname, t.typtype
        FROM pg_type AS t JOIN pg_namespace AS n ON n.oid = t.typnamespace
        WHERE n.nspname = %(schema)s
        ORDER BY t.typname""",
}


def catalog(conn: psycopg.Connection[Any], schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every object definition of ``schema``, with the schema's own name replaced."""

    def neutral(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(schema, "<schema>")
        if isinstance(value, list):
            return [neutral(v) for v in value]
        return value

    return {
        what: [tuple(neutral(v) for v in row) for row in conn.execute(query, {"schema": schema})]
        for what, query in CATALOG_QUERIES.items()
    }


def recorded_versions(conn: psycopg.Connection[Any], schema: str) -> list[int]:
    query = sql.SQL("SELECT version FROM {} ORDER BY version").format(
        sql.Identifier(schema, "duroxide_migrations")
    )
    return [row[0] for row in conn.execute(query)]


def test_migration_files_are_numbered_from_one_without_gaps() -> None:
    assert [m.version for m in migrations()] == list(range(1, latest_version() + 1))
    assert all(m.text().strip() for m in migrations())


def test_every_migration_path_ends_equal_to_schema_sql(
    pg_url: str, admin_conn: psycopg.Connection[Any]
) -> None:
    """Build the schema from schema.sql, and from every prefix of the migrations upgraded step
    by step (0 migrations: a brand-new schema built from the files alone); compare catalogs."""
    with pg.temporary_schema(pg_url, "ref") as reference:
        assert ensure_schema(pg_url, reference, OPTIONS) == latest_version()
        expected = catalog(admin_conn, reference)
        assert expected["functions"], "the catalog query found nothing"
        for applied in range(latest_version()):
            with pg.temporary_schema(pg_url, f"step{applied}") as stepped:
                _apply_first_migrations(admin_conn, stepped, applied)
                version = ensure_schema(pg_url, stepped, OPTIONS, from_schema_sql=False)
                assert version == latest_version()
                assert catalog(admin_conn, stepped) == expected, f"after {applied} migrations"
                assert recorded_versions(admin_conn, stepped) == list(
                    range(1, latest_version() + 1)
                )
        assert recorded_versions(admin_conn, reference) == list(range(1, latest_version() + 1))


def _apply_first_migrations(conn: psycopg.Connection[Any], schema: str, count: int) -> None:
    """A schema as an older release left it: the first ``count`` migrations, recorded."""
    no_prepare = psycopg.connect(conn.info.dsn, autocommit=True, prepare_threshold=None)
    with no_prepare, no_prepare.transaction():
        no_prepare.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        set_search_path(no_prepare, schema)
        no_prepare.execute(
            "CREATE TABLE duroxide_migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for migration in migrations()[:count]:
            no_prepare.execute(migration.text())
            no_prepare.execute(
                "INSERT INTO duroxide_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )


def test_ensure_schema_is_idempotent(pg_url: str, schema: str, admin_conn: Any) -> None:
    assert ensure_schema(pg_url, schema, OPTIONS) == latest_version()
    before = catalog(admin_conn, schema)

    assert ensure_schema(pg_url, schema, OPTIONS) == latest_version()

    assert catalog(admin_conn, schema) == before
    assert recorded_versions(admin_conn, schema) == list(range(1, latest_version() + 1))


PROCESSES = 6

_CONNECT_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from duroxide.providers.postgres import PostgresProvider

    url, schema, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
    time.sleep(max(0.0, start_at - time.time()))
    provider = PostgresProvider.connect_with_schema(url, schema)
    try:
        print(provider.get_queue_depths().orchestrator_queue)
    finally:
        provider.close()
    """
)


@pytest.mark.timeout(120)
def test_six_processes_initialize_an_empty_schema_at_once(
    pg_url: str, schema: str, admin_conn: Any
) -> None:
    import time

    start_at = time.time() + 2.0  # every process is up and waiting by then
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _CONNECT_SCRIPT, pg_url, schema, str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    results = [p.communicate(timeout=100) for p in processes]

    failures = [
        (p.returncode, err) for p, (_, err) in zip(processes, results, strict=True) if p.returncode
    ]
    assert failures == []
    assert [out.strip() for out, _ in results] == ["0"] * PROCESSES
    assert recorded_versions(admin_conn, schema) == list(range(1, latest_version() + 1))
    with pg.temporary_schema(pg_url, "ref") as reference:
        ensure_schema(pg_url, reference, OPTIONS)
        assert catalog(admin_conn, schema) == catalog(admin_conn, reference)


def test_the_schemas_start_bias_is_the_providers(
    open_provider: Any, schema: str, admin_conn: Any
) -> None:
    """The claim order's bias lives in SQL (duroxide_start_bias_ms) and in Python (the SQLite
    provider, the contract): one value."""
    open_provider()
    query = sql.SQL("SELECT {}.duroxide_start_bias_ms()").format(sql.Identifier(schema))
    assert admin_conn.execute(query).fetchone() == (START_BIAS_MS,)
