"""Creating and upgrading a tenant's schema.

Migrations are the numbered files ``migrations/NNNN_name.sql`` (versions 1, 2, 3… without gaps);
``schema.sql`` is the current schema whole. The table ``duroxide_migrations`` records the
versions a schema has. ``ensure_schema`` runs in one transaction under a transaction-scoped
advisory lock keyed on the schema name, so any number of processes may start at once on an
empty or outdated schema: one does the work, the others wait and then find nothing to do.

* A new (or empty) schema gets ``schema.sql`` directly, and every version is recorded.
* An existing schema gets its missing migrations one by one, in order.
* A schema newer than this code is left alone (migrations stay backward compatible, so old
  pods keep running during a rolling deploy).

The read-only side never changes anything (no DDL, no lock): ``schema_version`` /
``current_version`` tell the version a schema has (None when it does not exist),
``pending_migrations`` what ``ensure_schema`` would apply, and ``verify_schema`` is what a
provider opened with ``migrate=False`` runs instead of ``ensure_schema`` (pods with DML-only
credentials; a migration job runs ``duroxide migrate`` with DDL credentials).

Every file runs with ``search_path`` set to the schema (``SET LOCAL``, see
``set_search_path``), so the SQL stays schema-agnostic and functions declared
``SET search_path FROM CURRENT`` pin it (with ``pg_temp`` last, as a ``SECURITY DEFINER``
function must).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql

from duroxide.errors import ProviderError
from duroxide.providers.postgres.connection import PACKAGE, PgOptions, control_queries, translate
from duroxide.providers.sql import read_text

#: First key of the advisory lock that serializes schema changes ("Duro"); the second key is
#: hashtext(schema name).
_LOCK_CLASS = 0x4475726F
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def _stmt(name: str, schema: str) -> sql.Composed:
    """Statement ``name`` of control.sql on ``schema`` (quoted by psycopg's ``sql``)."""
    return sql.SQL(control_queries()[name]).format(schema=sql.Identifier(schema))


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    filename: str

    def text(self) -> str:
        return read_text(PACKAGE, f"migrations/{self.filename}")


@cache
def migrations() -> tuple[Migration, ...]:
    """The migration files in version order; raises if they are not numbered 1, 2, 3…"""
    found = []
    for entry in resources.files(PACKAGE).joinpath("migrations").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.name))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration files must be numbered 1, 2, 3… without gaps: {versions}")
    return tuple(found)


def latest_version() -> int:
    return migrations()[-1].version


def ensure_schema(
    url: str, schema: str, options: PgOptions, *, from_schema_sql: bool = True
) -> int:
    """Create or upgrade ``schema`` (already validated) and return its version.

    ``from_schema_sql=False`` builds a new schema by applying every migration in order instead
    of ``schema.sql`` (the migration test compares both). Raises ``ProviderError``.
    """
    kwargs = {**options.connect_kwargs(url), "prepare_threshold": None}  # multi-statement files
    try:
        with psycopg.connect(url, **kwargs) as conn, conn.transaction():
            return _migrate(conn, schema, from_schema_sql)
    except psycopg.Error as exc:
        raise translate("ensure_schema", exc) from exc


def schema_version(conn: psycopg.Connection[Any], schema: str) -> int | None:
    """The version ``schema`` has, read on ``conn`` without changing anything: None when the
    schema does not exist, 0 when it exists without a (filled) migration table."""
    if conn.execute(control_queries()["schema_exists"], (schema,)).fetchone() is None:
        return None
    table = conn.execute(control_queries()["migration_table"], (schema,)).fetchone()
    if table is None or table[0] is None:
        return 0
    row = conn.execute(_stmt("migration_version", schema)).fetchone()
    return int(row[0]) if row else 0


def current_version(url: str, schema: str, options: PgOptions) -> int | None:
    """``schema_version`` on a new connection. Raises ``ProviderError``."""
    try:
        with psycopg.connect(url, **options.connect_kwargs(url)) as conn:
            return schema_version(conn, schema)
    except psycopg.Error as exc:
        raise translate("schema_version", exc) from exc


def pending_after(version: int | None) -> tuple[Migration, ...]:
    """The migrations a schema at ``version`` (None: absent) still needs."""
    return tuple(m for m in migrations() if m.version > (version or 0))


def pending_migrations(url: str, schema: str, options: PgOptions) -> tuple[Migration, ...]:
    """What ``ensure_schema`` would apply to ``schema`` now (read-only). A new schema gets
    ``schema.sql`` in one go, which records every one of these versions."""
    return pending_after(current_version(url, schema, options))


def verify_schema(url: str, schema: str, options: PgOptions) -> int:
    """The version of ``schema`` if it is at least ``latest_version()``; otherwise a
    non-retryable ``ProviderError`` saying what to run. Never changes anything."""
    version = current_version(url, schema, options)
    latest = latest_version()
    if version is None:
        raise ProviderError(
            "verify_schema",
            f"schema {schema!r} does not exist; run `duroxide migrate` (opened with "
            "migrate=False, so it is not created here)",
        )
    if version < latest:
        raise ProviderError(
            "verify_schema",
            f"schema {schema!r} is at version {version}, this code needs {latest}; run "
            "`duroxide migrate` (opened with migrate=False, so it is not upgraded here)",
        )
    return version


def set_search_path(conn: psycopg.Connection[Any], schema: str) -> None:
    """Point the current transaction at ``schema`` (then ``pg_temp``, never searched first)."""
    conn.execute(_stmt("set_search_path", schema))


def _migrate(conn: psycopg.Connection[Any], schema: str, from_schema_sql: bool) -> int:
    conn.execute(control_queries()["lock_schema"], (_LOCK_CLASS, schema))
    if conn.execute(control_queries()["schema_exists"], (schema,)).fetchone() is None:
        conn.execute(_stmt("create_schema", schema))
    set_search_path(conn, schema)
    conn.execute(_stmt("create_tracking_table", schema))
    row = conn.execute(_stmt("migration_version", schema)).fetchone()
    current: int = row[0] if row else 0
    pending = list(pending_after(current))
    if not pending:
        return current
    if current == 0 and from_schema_sql:
        conn.execute(read_text(PACKAGE, "schema.sql"))
    else:
        for migration in pending:
            conn.execute(migration.text())
    with conn.cursor() as cursor:
        cursor.executemany(
            _stmt("record_migration", schema), [(m.version, m.name) for m in pending]
        )
    return pending[-1].version
