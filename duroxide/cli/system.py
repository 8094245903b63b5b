"""``queues``, ``metrics``, ``migrate`` and ``healthcheck``."""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import asdict, dataclass
from typing import Any

from duroxide.cli.common import (
    CliError,
    Session,
    UsageError,
    check_schema,
    check_url,
    is_postgres,
    one_line,
    positive_seconds,
    sqlite_missing_tables,
    sqlite_tables,
)

DEFAULT_HEALTH_TIMEOUT_S = 5.0


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("queues", parents=[common], help="queue depths (per tag)")
    p.set_defaults(handler=queues)
    p = commands.add_parser("metrics", parents=[common], help="system metrics")
    p.set_defaults(handler=metrics)

    p = commands.add_parser(
        "migrate",
        parents=[common],
        help="create or upgrade the schema",
        description="Create or upgrade the schema (the only command that runs DDL).",
    )
    p.add_argument("--dry-run", action="store_true", help="only list pending migrations")
    p.set_defaults(handler=migrate)

    p = commands.add_parser(
        "healthcheck",
        parents=[common],
        help="check configuration, connection, schema",
        description="Check the configuration, the connection and the schema version; exit 0 "
        "only when all are OK. Read-only and fast: usable as a Kubernetes exec probe.",
    )
    p.add_argument(
        "--timeout",
        type=positive_seconds,
        metavar="S",
        help="connection and query timeout in seconds [DUROXIDE_HEALTHCHECK_TIMEOUT] "
        f"(default {DEFAULT_HEALTH_TIMEOUT_S:g})",
    )
    p.set_defaults(handler=healthcheck)


# --- queues and metrics --------------------------------------------------------------------------


def queues(args: argparse.Namespace, session: Session) -> int:
    depths = session.client().get_queue_depths()
    out = session.printer
    if out.json_mode:
        out.json(asdict(depths))
        return 0
    rows: list[tuple[str, str, int]] = [
        ("orchestrator", "-", depths.orchestrator_queue),
        ("timers", "-", depths.timer_queue),
    ]
    for tag in sorted(depths.worker_queue_by_tag):
        rows.append(("worker", tag or "(untagged)", depths.worker_queue_by_tag[tag]))
    rows.append(("worker", "(all)", depths.worker_queue))
    out.table(["queue", "tag", "depth"], rows)
    return 0


def metrics(args: argparse.Namespace, session: Session) -> int:
    values = asdict(session.client().get_system_metrics())
    if session.printer.json_mode:
        session.printer.json(values)
    else:
        session.printer.fields((name.replace("_", " "), value) for name, value in values.items())
    return 0


# --- migrate -------------------------------------------------------------------------------------


def migrate(args: argparse.Namespace, session: Session) -> int:
    url = check_url(session.url)
    if is_postgres(url):
        record = _migrate_postgres(url, check_schema(session.schema), dry_run=args.dry_run)
    else:
        record = _migrate_sqlite(url, dry_run=args.dry_run)
    out = session.printer
    if out.json_mode:
        out.json(record)
        return 0
    where = record["target"]
    pending = record["pending"]
    if record["backend"] == "sqlite" and pending:  # one idempotent schema, no numbered files
        missing = ", ".join(pending[0]["missing_tables"])
        verb = "would create" if args.dry_run else "created"
        out.line(f"{where}: {verb} the duroxide tables ({missing})")
        return 0
    before = record["previous_version"]
    if not pending:
        state = "up to date" if args.dry_run else "already up to date"
        out.line(f"{where}: {state} (version {before}); nothing pending")
    elif args.dry_run:
        out.line(f"{where}: at version {before}; pending:")
        out.table(["version", "migration"], [(m["version"], m["name"]) for m in pending])
    else:
        names = ", ".join(f"{m['version']:04d}_{m['name']}" for m in pending)
        out.line(f"{where}: migrated to version {record['current_version']} (applied {names})")
    return 0


def _migrate_postgres(url: str, schema: str, *, dry_run: bool) -> dict[str, Any]:
    from duroxide.providers.postgres.connection import PgOptions
    from duroxide.providers.postgres.migrations import (
        current_version,
        ensure_schema,
        latest_version,
        pending_after,
    )

    options = PgOptions.resolve({})
    before = current_version(url, schema, options)
    pending = [{"version": m.version, "name": m.name} for m in pending_after(before)]
    record: dict[str, Any] = {
        "backend": "postgresql",
        "target": f"schema {schema!r}",
        "schema": schema,
        "current_version": before or 0,
        "schema_exists": before is not None,
        "latest_version": latest_version(),
        "pending": pending,
    }
    if not dry_run and pending:
        record["current_version"] = ensure_schema(url, schema, options)
    return _outcome(record, before or 0, dry_run)


def _outcome(record: dict[str, Any], before: int, dry_run: bool) -> dict[str, Any]:
    """``record`` with what the run did: ``previous_version`` and ``applied`` (nothing on a
    dry run); ``current_version`` is the version after the run."""
    applied = [] if dry_run else record["pending"]
    return {**record, "dry_run": dry_run, "previous_version": before, "applied": applied}


def _migrate_sqlite(url: str, *, dry_run: bool) -> dict[str, Any]:
    from pathlib import Path

    from duroxide.providers.sqlite import SqliteProvider
    from duroxide.providers.sqlite.connection import MEMORY, path_from_url

    path = path_from_url(url)
    if path == MEMORY:
        raise CliError("an in-memory SQLite database cannot be migrated (use a file)")
    exists = Path(path).is_file()
    missing = sqlite_missing_tables(path) if exists else list(sqlite_tables())
    current, latest = (0 if missing else 1), 1
    # SQLite has one idempotent schema, shown as version 1 ("schema.sql").
    pending = [{"version": 1, "name": "schema.sql", "missing_tables": missing}] if missing else []
    record: dict[str, Any] = {
        "backend": "sqlite",
        "target": f"SQLite database {path}",
        "path": path,
        "current_version": current,
        "latest_version": latest,
        "pending": pending,
    }
    if not dry_run:
        SqliteProvider.open(url).close()  # applies schema.sql (idempotent)
        record["current_version"] = latest
    return _outcome(record, current, dry_run)


# --- healthcheck ---------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def _health_timeout(flag: float | None) -> float:
    if flag is not None:
        return flag
    raw = os.environ.get("DUROXIDE_HEALTHCHECK_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_HEALTH_TIMEOUT_S
    try:
        return positive_seconds(raw)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"DUROXIDE_HEALTHCHECK_TIMEOUT: {exc}") from None


def healthcheck(args: argparse.Namespace, session: Session) -> int:
    checks = _run_checks(session.url, session.schema, _health_timeout(args.timeout))
    healthy = all(c.ok for c in checks)
    out = session.printer
    if out.json_mode:
        out.json({"healthy": healthy, "checks": [asdict(c) for c in checks]})
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            state = f"OK ({c.detail})" if c.ok and c.detail else "OK" if c.ok else "FAIL"
            text = state if c.ok else f"{state} {c.detail}"
            out.line(f"{c.name.ljust(width)}  {text}".rstrip())
    return 0 if healthy else 1


def _run_checks(url: str | None, schema: str | None, timeout_s: float) -> list[Check]:
    try:
        url = check_url(url)
        detail = "postgresql" if is_postgres(url) else "sqlite"
        if is_postgres(url):
            schema = check_schema(schema)
            detail += f", schema {schema}"
    except CliError as exc:
        return [
            Check("configuration", False, str(exc)),
            Check("connection", False, "not checked (bad configuration)"),
            Check("schema", False, "not checked (bad configuration)"),
        ]
    config = Check("configuration", True, detail)
    if is_postgres(url):
        assert schema is not None
        return [config, *_postgres_checks(url, schema, timeout_s)]
    return [config, *_sqlite_checks(url)]


def _postgres_checks(url: str, schema: str, timeout_s: float) -> list[Check]:
    import psycopg

    from duroxide.providers.postgres.migrations import latest_version, schema_version

    try:
        conn = psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=max(1, math.ceil(timeout_s)),
            application_name="duroxide-healthcheck",
        )
    except psycopg.Error as exc:
        return [
            Check("connection", False, one_line(str(exc)) or type(exc).__name__),
            Check("schema", False, "not checked (no connection)"),
        ]
    with conn:
        try:
            from duroxide.providers.postgres.connection import control_queries

            control = control_queries()
            timeout_ms = str(int(timeout_s * 1000))
            conn.execute(control["session_statement_timeout"], (timeout_ms,))
            server = conn.execute(control["server_version"]).fetchone()
            connection = Check("connection", True, f"PostgreSQL {server[0] if server else '?'}")
        except psycopg.Error as exc:
            return [
                Check("connection", False, one_line(str(exc))),
                Check("schema", False, "not checked (no connection)"),
            ]
        try:
            version = schema_version(conn, schema)
        except psycopg.Error as exc:
            return [connection, Check("schema", False, one_line(str(exc)))]
    latest = latest_version()
    if version is None:
        state = Check("schema", False, f"schema {schema!r} does not exist (run duroxide migrate)")
    elif version < latest:
        state = Check(
            "schema", False, f"version {version}, expected {latest} (run duroxide migrate)"
        )
    elif version > latest:  # a rolling deploy: newer migrations stay backward compatible
        state = Check("schema", True, f"version {version}, newer than this release's {latest}")
    else:
        state = Check("schema", True, f"version {version}")
    return [connection, state]


def _sqlite_checks(url: str) -> list[Check]:
    from duroxide.providers.sqlite.connection import MEMORY, path_from_url

    path = path_from_url(url)
    if path == MEMORY:
        return [
            Check("connection", True, "in-memory"),
            Check("schema", False, "an in-memory database has no schema until opened"),
        ]
    try:
        missing = sqlite_missing_tables(path)
    except CliError as exc:
        return [
            Check("connection", False, str(exc)),
            Check("schema", False, "not checked (no connection)"),
        ]
    connection = Check("connection", True, path)
    if missing:
        tables = ", ".join(missing)
        return [
            connection,
            Check("schema", False, f"missing tables {tables} (run duroxide migrate)"),
        ]
    return [connection, Check("schema", True, "all tables present")]
