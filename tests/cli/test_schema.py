"""migrate and healthcheck, and what every other command does on a missing schema, an
unreachable database, or bad connection settings: fail in one line, and never create anything."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from duroxide.providers.postgres.migrations import latest_version, migrations

from .conftest import Store, clean_env, cli

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=2"


def exists(store: Store) -> bool:
    """Whether the store's SQLite file / PostgreSQL schema exists."""
    if store.backend == "sqlite":
        return Path(store.url.removeprefix("sqlite:")).exists()
    with psycopg.connect(store.url, autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (store.schema,))
        return row.fetchone() is not None


def test_missing_schema_fails_everywhere_without_being_created(empty: Store) -> None:
    started = time.monotonic()
    health = empty.run("healthcheck")
    assert time.monotonic() - started < 10

    assert health.code == 1
    assert health.lines[0].startswith("configuration  OK")
    if empty.backend == "postgres":
        assert health.lines[1].startswith("connection     OK (PostgreSQL ")
        assert health.lines[2] == (
            f"schema         FAIL schema '{empty.schema}' does not exist (run duroxide migrate)"
        )
    else:
        assert health.lines[1].startswith("connection     FAIL SQLite database not found: ")
        assert health.lines[2] == "schema         FAIL not checked (no connection)"

    listed = empty.run("instances", "list")
    assert listed.code == 1
    assert "duroxide migrate" in listed.error_line()
    assert not exists(empty)


def test_migrate_dry_run_then_migrate(empty: Store) -> None:
    dry = empty.run("migrate", "--dry-run")
    assert dry.code == 0, dry.err
    files = migrations()
    applied_message = f"migrated to version {latest_version()} (applied " + ", ".join(
        f"{m.version:04d}_{m.name}" for m in files
    )
    if empty.backend == "postgres":
        assert dry.lines[:2] == [
            f"schema '{empty.schema}': at version 0; pending:",
            "VERSION  MIGRATION",
        ]
        assert [line.split() for line in dry.lines[2:]] == [[str(m.version), m.name] for m in files]
    else:
        assert ": would create the duroxide tables (instances, executions, " in dry.out
        applied_message = "created the duroxide tables (instances, "
    assert not exists(empty)

    applied = empty.run("migrate")
    assert applied.code == 0, applied.err
    assert applied_message in applied.out
    again = empty.run("migrate", "--dry-run", "--output", "json").json()
    assert again["pending"] == []
    assert again["current_version"] == again["latest_version"]
    assert "already up to date" in empty.run("migrate").out

    health = empty.run("healthcheck")
    assert health.code == 0, health.out
    assert [line.split()[1] for line in health.lines] == ["OK", "OK", "OK"]
    as_json = empty.run("healthcheck", "-o", "json").json()
    assert as_json["healthy"] is True
    assert [c["name"] for c in as_json["checks"]] == ["configuration", "connection", "schema"]
    assert empty.run("instances", "list").out == "no instances\n"


def test_sqlite_file_without_tables_is_not_touched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    path.write_bytes(b"")  # an empty file is a valid, empty SQLite database
    store = Store("sqlite", f"sqlite:{path}")

    listed = store.run("queues")
    assert listed.code == 1
    assert listed.error_line().startswith(f"error: SQLite database {path} has no duroxide schema")
    health = store.run("healthcheck")
    assert health.code == 1
    assert health.lines[2].startswith("schema         FAIL missing tables instances, ")
    assert path.stat().st_size == 0


def test_unreachable_database() -> None:
    store = Store("postgres", UNREACHABLE, "duroxide")

    listed = store.run("instances", "list")
    assert listed.code == 1
    line = listed.error_line()
    assert line.startswith("error: database unavailable: connection failed: ")
    assert "port 1 failed" in line

    health = store.run("healthcheck", "--timeout", "2")
    assert health.code == 1
    assert health.lines[1].startswith("connection     FAIL connection failed:")
    assert health.lines[2] == "schema         FAIL not checked (no connection)"

    migrate = store.run("migrate")
    assert migrate.code == 1
    assert migrate.error_line().startswith("error: database unavailable: ")


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({}, ["queues"], "no database: pass --database-url or set DUROXIDE_DATABASE_URL"),
        ({"DUROXIDE_DATABASE_URL": "mysql://db/x"}, ["metrics"], "unsupported database URL"),
        (
            {"DUROXIDE_DATABASE_URL": UNREACHABLE, "DUROXIDE_SCHEMA": "Bad-Name"},
            ["queues"],
            "invalid schema name 'Bad-Name'",
        ),
        ({"DUROXIDE_OUTPUT": "xml"}, ["queues"], "invalid output 'xml'"),
        ({}, ["instances", "frob"], "invalid choice: 'frob'"),
        ({}, ["instances", "list", "--limit", "0"], "expected a positive integer"),
        ({}, ["instances", "list", "--created-after", "yesterday"], "invalid time 'yesterday'"),
        ({}, ["instances", "list", "--status", "Sleeping"], "invalid status 'Sleeping'"),
        ({}, ["instances", "wait", "x", "--timeout", "-1"], "positive number of seconds"),
        ({}, ["instances", "purge", "--yes"], "purge needs at least one filter"),
        ({}, ["instances", "purge", "--status", "Running"], "use Completed or Failed"),
        ({}, ["instances", "prune", "x"], "prune needs --keep-last N"),
    ],
)
def test_usage_errors_exit_2(env: dict[str, str], args: list[str], message: str) -> None:
    result = cli(*args, env=clean_env(**env))

    assert result.code == 2, result
    assert message in result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    "command",
    [
        ["instances", "start", "Inbox", "--id", "never", "--input", "{bad"],
        ["instances", "raise", "x", "approval", "--data", "{'approved': true}"],
        ["instances", "enqueue", "x", "inbox", "--data", "hello"],
    ],
    ids=["start", "raise", "enqueue"],
)
def test_bad_json_is_refused_before_connecting(command: list[str]) -> None:
    result = cli(*command, env=clean_env(DUROXIDE_DATABASE_URL=UNREACHABLE))

    flag = "--input" if "--input" in command else "--data"
    assert result.code == 1
    assert result.error_line().startswith(f"error: {flag} is not valid JSON: ")


def test_healthcheck_reports_bad_configuration() -> None:
    env = clean_env(DUROXIDE_DATABASE_URL=UNREACHABLE, DUROXIDE_SCHEMA="pg_nope")
    result = cli("healthcheck", env=env)

    assert result.code == 1
    assert result.lines[0].startswith("configuration  FAIL invalid schema name 'pg_nope'")
    assert result.lines[1:] == [
        "connection     FAIL not checked (bad configuration)",
        "schema         FAIL not checked (bad configuration)",
    ]


def test_flags_win_over_the_environment(tmp_path: Path) -> None:
    good = Store("sqlite", f"sqlite:{tmp_path / 'good.db'}")
    assert good.run("migrate").code == 0
    env = clean_env(DUROXIDE_DATABASE_URL=UNREACHABLE, DUROXIDE_OUTPUT="json")

    result = cli("metrics", "--database-url", good.url, "--output", "table", env=env)

    assert result.code == 0, result.err
    assert result.lines[0].split() == ["total", "instances", "0"]


def test_version_and_help() -> None:
    version = cli("--version")
    assert (version.code, version.out.split()[0]) == (0, "duroxide")
    helped = cli("--help")
    assert helped.code == 0
    for word in ("instances", "queues", "metrics", "migrate", "healthcheck",
                 "DUROXIDE_DATABASE_URL", "DUROXIDE_SCHEMA"):  # fmt: skip
        assert word in helped.out
