"""The one SQLite connection behind a provider: opening, transactions, errors, clock, rows.

A provider object owns exactly one ``sqlite3`` connection (autocommit mode, usable from any
thread) and serializes every use of it with a ``threading.Lock``. Multi-statement writes run
inside ``BEGIN IMMEDIATE`` so the write lock is taken up front: another process holding it makes
us wait (busy timeout) instead of failing halfway through a transaction. Single-statement writes
run in autocommit mode, where SQLite takes the write lock the same way.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from duroxide.errors import ProviderError
from duroxide.history import Event, event_from_record
from duroxide.providers.sql import Queries, read_text

PACKAGE = "duroxide.providers.sqlite"
MEMORY = ":memory:"

T = TypeVar("T")
P = ParamSpec("P")
Params = Sequence[Any] | dict[str, Any]


def path_from_url(url: str) -> str:
    """The database path of a provider URL.

    Accepts ``sqlite:path.db``, ``sqlite://rel.db``, ``sqlite:///abs/path.db``, a bare path, and
    ``sqlite::memory:`` / ``:memory:`` for a private in-memory database. URL query parameters
    (``?mode=rwc``) are accepted and ignored: the file is always created when missing.
    """
    path = url
    if url.startswith("sqlite:"):
        path = url[len("sqlite:") :].partition("?")[0]
        if path.startswith("//"):
            path = path[2:]
    if not path:
        raise ValueError(f"no database path in SQLite URL {url!r}")
    return path


def now_ms() -> int:
    """The provider's clock: wall-clock milliseconds since the epoch."""
    return int(time.time() * 1000)


def decode_history(rows: list[Any], operation: str) -> list[Event]:
    """History rows ``(kind, event_id, timestamp_ms, source_event_id, data)`` as events."""
    try:
        return [
            event_from_record(
                kind=kind, event_id=event_id, timestamp_ms=ts, source_event_id=source, data=data
            )
            for kind, event_id, ts, source, data in rows
        ]
    except (ValueError, TypeError) as exc:
        raise ProviderError(operation, f"undecodable history event: {exc}") from exc


def translate(operation: str, exc: sqlite3.Error) -> ProviderError:
    """A driver error as a ``ProviderError``: busy/locked is retryable, nothing else is."""
    code = getattr(exc, "sqlite_errorcode", None)
    message = str(exc)
    if code is not None:
        busy = (code & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)  # incl. extended codes
    else:
        busy = "database is locked" in message or "database is busy" in message
    return ProviderError(operation, message, retryable=busy)


class SqliteDatabase:
    """One connection, one lock; every statement of the provider goes through here."""

    def __init__(self, path: str) -> None:
        self.queries = Queries(PACKAGE, "queries.sql")
        self._lock = threading.Lock()
        self._begin_write = self.queries["begin_write"]
        self._begin_read = self.queries["begin_read"]
        self._commit = self.queries["commit"]
        self._rollback = self.queries["rollback"]
        try:
            self._conn = sqlite3.connect(
                path, check_same_thread=False, isolation_level=None, cached_statements=256
            )
        except sqlite3.Error as exc:
            raise translate("open", exc) from exc
        try:
            self._conn.executescript(self.queries["connection_pragmas"])
            if path != MEMORY:
                self._conn.executescript(self.queries["file_pragmas"])
            if self._conn.execute(self.queries["needs_start_bias"]).fetchone():
                self._add_start_bias()
            self._conn.executescript(read_text(PACKAGE, "schema.sql"))
        except sqlite3.Error as exc:
            self._conn.close()
            raise translate("open", exc) from exc

    def _add_start_bias(self) -> None:
        """Upgrade a file created before the column. Another process opening the same file
        may have added it since we looked: that is the upgrade done, not an error."""
        try:
            self._conn.executescript(self.queries["add_start_bias"])
        except sqlite3.OperationalError as exc:
            if "duplicate column name" not in str(exc):
                raise

    def write(
        self,
        operation: str,
        body: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``body(conn, ...)`` in one ``BEGIN IMMEDIATE`` transaction: all of it or nothing."""
        return self._transaction(operation, self._begin_write, body, *args, **kwargs)

    def write_each(
        self,
        operation: str,
        body: Callable[..., T],
        items: Sequence[tuple[Any, ...]],
    ) -> list[T | ProviderError]:
        """Run ``body(conn, *item)`` for each item in ONE ``BEGIN IMMEDIATE`` transaction (one
        commit: a group commit), each inside its own savepoint: an item that fails is rolled
        back alone and its ``ProviderError`` returned in its place. If the transaction itself
        fails, every item gets that error."""
        q = self.queries
        results: list[T | ProviderError] = []

        def run(conn: sqlite3.Connection) -> None:
            for item in items:
                conn.execute(q["savepoint"])
                try:
                    results.append(body(conn, *item))
                except (ProviderError, sqlite3.Error) as exc:
                    conn.execute(q["rollback_to_savepoint"])
                    results.append(exc if isinstance(exc, ProviderError)
                                   else translate(operation, exc))  # fmt: skip
                conn.execute(q["release_savepoint"])

        try:
            self.write(operation, run)
        except ProviderError as exc:
            return [exc] * len(items)
        return results

    def read(
        self,
        operation: str,
        body: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``body(conn, ...)`` in one read transaction (a consistent snapshot)."""
        return self._transaction(operation, self._begin_read, body, *args, **kwargs)

    def _transaction(
        self,
        operation: str,
        begin: str,
        body: Callable[..., T],
        *args: Any,
        **kwargs: Any,
    ) -> T:
        with self._lock:
            conn = self._conn
            try:
                conn.execute(begin)
                try:
                    result = body(conn, *args, **kwargs)
                    conn.execute(self._commit)
                finally:
                    if conn.in_transaction:
                        conn.execute(self._rollback)
            except sqlite3.Error as exc:
                raise translate(operation, exc) from exc
            return result

    def fetch_all(self, operation: str, sql: str, params: Params = ()) -> list[Any]:
        """All rows of one statement, run on its own (autocommit)."""
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise translate(operation, exc) from exc

    def fetch_one(self, operation: str, sql: str, params: Params = ()) -> Any:
        """The first row of one statement (or None), run on its own (autocommit)."""
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchone()
            except sqlite3.Error as exc:
                raise translate(operation, exc) from exc

    def execute(self, operation: str, sql: str, params: Params = ()) -> int:
        """Run one write statement on its own (autocommit); returns the number of rows changed."""
        with self._lock:
            try:
                return self._conn.execute(sql, params).rowcount
            except sqlite3.Error as exc:
                raise translate(operation, exc) from exc

    def close(self) -> None:
        """Close the connection; later calls fail with a non-retryable ``ProviderError``."""
        with self._lock:
            self._conn.close()
