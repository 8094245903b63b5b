"""What every command shares: errors, value parsing, and opening the store without changing it.

Only ``migrate`` may create or change a schema. Every other command opens PostgreSQL with
``migrate=False`` (the schema must already be at the latest version) and refuses a SQLite file
that does not exist or has no duroxide tables, instead of creating them.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from duroxide.cli.output import Printer
from duroxide.client import Client
from duroxide.providers.base import Provider
from duroxide.providers.sql import Queries, read_text
from duroxide.providers.sqlite.connection import PACKAGE as SQLITE_PACKAGE

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
DEFAULT_SCHEMA = "duroxide"
STATUSES = ("Running", "Completed", "Failed")
TERMINAL = ("Completed", "Failed")


class CliError(Exception):
    """An operational failure: printed as one ``error: …`` line, exit code 1."""

    exit_code = 1


class UsageError(CliError):
    """A bad flag value argparse could not see (e.g. from the environment): exit code 2."""

    exit_code = 2


# --- values --------------------------------------------------------------------------------------

_AGE = re.compile(r"^(\d+)([smhdw])$")
_AGE_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_time(text: str) -> int:
    """A time as epoch ms: ISO-8601 (UTC when no offset), epoch ms, ``now``, or an age such as
    ``30d`` / ``12h`` (that long ago). For argparse ``type=``: bad values are usage errors."""
    value = text.strip()
    if value == "now":
        return int(time.time() * 1000)
    if value.isdigit():
        return int(value)
    age = _AGE.match(value)
    if age:
        return int(time.time() * 1000) - int(age[1]) * _AGE_MS[age[2]]
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid time {text!r}: use ISO-8601 (2024-05-01T12:00:00Z), epoch milliseconds, "
            "'now', or an age like 30d"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def parse_status(text: str) -> str:
    """An instance status, case-insensitively (``completed`` → ``Completed``)."""
    for status in STATUSES:
        if text.strip().lower() == status.lower():
            return status
    raise argparse.ArgumentTypeError(f"invalid status {text!r}: use {', '.join(STATUSES)}")


def parse_terminal_status(text: str) -> str:
    status = parse_status(text)
    if status not in TERMINAL:
        raise argparse.ArgumentTypeError(f"invalid status {text!r}: use Completed or Failed")
    return status


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def parse_json(text: str | None, flag: str) -> Any:
    """The JSON value of ``flag`` (None when not given); ``CliError`` naming the flag if bad."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CliError(f"{flag} is not valid JSON: {exc}") from None


# --- the store -----------------------------------------------------------------------------------


def is_postgres(url: str) -> bool:
    return url.startswith(POSTGRES_SCHEMES)


def check_url(url: str | None) -> str:
    """The database URL if it names a supported store, else ``UsageError``."""
    if not url:
        raise UsageError("no database: pass --database-url or set DUROXIDE_DATABASE_URL")
    if is_postgres(url):
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        try:
            conninfo_to_dict(url)
        except psycopg.Error as exc:
            reason = one_line(str(exc)).replace(url, redact(url))
            raise UsageError(f"invalid PostgreSQL URL: {reason}") from None
        return url
    if url.startswith("sqlite:"):
        from duroxide.providers.sqlite.connection import path_from_url

        try:
            path_from_url(url)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        return url
    raise UsageError(
        f"unsupported database URL {url.split(':', 1)[0]!r}: use sqlite:PATH or postgresql://…"
    )


def check_schema(schema: str | None) -> str:
    from duroxide.providers.postgres.connection import validate_schema

    try:
        return validate_schema(schema or DEFAULT_SCHEMA)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def sqlite_tables() -> tuple[str, ...]:
    """The tables the SQLite schema creates (read from its ``schema.sql``)."""
    text = read_text(SQLITE_PACKAGE, "schema.sql")
    return tuple(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", text))


def sqlite_missing_tables(path: str) -> list[str]:
    """Tables of the duroxide schema missing from the SQLite file at ``path`` (opened read-only;
    ``CliError`` when it does not exist or cannot be read)."""
    if not Path(path).is_file():
        raise CliError(f"SQLite database not found: {path} (create it with `duroxide migrate`)")
    try:
        conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True)
        try:
            rows = conn.execute(Queries(SQLITE_PACKAGE, "queries.sql")["list_tables"]).fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise CliError(f"cannot read SQLite database {path}: {exc}") from None
    present = {row[0] for row in rows}
    return [t for t in sqlite_tables() if t not in present]


_PASSWORD = re.compile(r"(://[^:/@]*:)[^@/]*@")


def redact(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, for messages."""
    return _PASSWORD.sub(r"\1***@", url)


def one_line(text: str) -> str:
    return " ".join(text.split())


@dataclass
class Session:
    """One command's connection settings and, once asked for, its provider and client."""

    url: str | None
    schema: str | None
    printer: Printer
    _provider: Any = field(default=None, repr=False)

    def client(self) -> Client:
        return Client(self.provider())

    def provider(self) -> Provider:
        """The store, opened read/write but never migrated (see the module docstring)."""
        if self._provider is None:
            url = check_url(self.url)
            if is_postgres(url):
                from duroxide.providers.postgres import PostgresProvider

                self._provider = PostgresProvider.connect_with_schema(
                    url, check_schema(self.schema), migrate=False
                )
            else:
                from duroxide.providers.sqlite import SqliteProvider
                from duroxide.providers.sqlite.connection import MEMORY, path_from_url

                path = path_from_url(url)
                if path != MEMORY:
                    missing = sqlite_missing_tables(path)
                    if missing:
                        raise CliError(
                            f"SQLite database {path} has no duroxide schema (missing tables: "
                            f"{', '.join(missing)}); run `duroxide migrate`"
                        )
                self._provider = SqliteProvider.open(url)
        return self._provider

    def close(self) -> None:
        if self._provider is not None:
            self._provider.close()
            self._provider = None
