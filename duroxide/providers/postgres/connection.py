"""PostgreSQL plumbing: options, schema names, the connection pool, statements and errors.

Every statement of a provider operation goes through ``PgDatabase.run``: it borrows a pooled
connection (autocommit), counts one round trip, executes, and translates any driver error into
``ProviderError`` with ``retryable`` set. The statements repeated on every turn and activity
(``LEAN``) skip psycopg's cursor machinery and go straight through libpq (see ``lean``).

Nothing depends on session state, so tenants may share server connections (a transaction-pooling
PgBouncer hands the same server connection to many clients): every statement names the tenant's
schema explicitly (``queries.sql`` is composed with ``sql.Identifier(schema)`` once, at load) and
every function pins its own ``search_path``; a statement timeout is set per transaction
(``BEGIN; set_config(.., true); statement; COMMIT`` sent as one pipeline: still one round trip),
never with a session ``SET``.

Retries: statements marked idempotent (reads) are retried a few times on retryable errors;
token-guarded writes (ack, abandon, renew) are retried once when the connection broke (a server
restart leaves dead connections in the pool) — the token makes a repeat harmless: an ack whose
first attempt committed is refused as a lost lock. Fetches and enqueues are never retried here
(a repeat could double an enqueue or strand a lock). After a connection-class error the pool
checks its idle connections, so the dead ones are replaced at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from functools import cache
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from duroxide.errors import ProviderError
from duroxide.providers.postgres.lean import LeanExecutor, LeanStatement
from duroxide.providers.sql import Queries

PACKAGE = "duroxide.providers.postgres"
DEFAULT_SCHEMA = "duroxide"


@cache
def control_queries() -> Queries:
    """``control.sql``: the statements outside the provider operations (migrations, the LISTEN
    connection, the operator's checks), parsed once."""
    return Queries(PACKAGE, "control.sql")


#: The statements of queries.sql that take the lean path (see ``lean``): the ones repeated on
#: every turn or activity, and the client's status polls.
LEAN = frozenset({
    "now_ms", "enqueue_orchestrator", "fetch_orchestration_items", "read_history",
    "commit_turns", "ack_orchestration_items", "abandon_orchestration_item",
    "renew_orchestration_item_lock", "fetch_work_items", "ack_work_items", "abandon_work_item",
    "renew_work_item_lock",
    "instance_status", "kv_value", "kv_all_values",
})  # fmt: skip

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_RESERVED_SCHEMAS = frozenset({"information_schema", "public"})

Params = Sequence[Any] | Mapping[str, Any] | None
Query = str | LeanStatement
Fetch = Literal["one", "all", "rowcount"]
#: How an operation is retried: reads on any retryable error (``read_attempts`` times), token-
#: guarded writes once after a broken connection, everything else never.
Retry = Literal["read", "reconnect", "never"]


def validate_schema(schema: object) -> str:
    """``schema`` if it is a safe schema name, else ``ValueError`` saying why.

    Allowed: 1-63 characters of lowercase ASCII letters, digits and ``_``, not starting with a
    digit, not ``pg_*`` (reserved by PostgreSQL), ``public`` or ``information_schema``.
    Names are never quoted-and-hoped: anything else is refused before any SQL runs.
    """
    if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
        raise ValueError(
            f"invalid schema name {schema!r}: use 1-63 characters of lowercase letters, digits "
            "and '_', not starting with a digit"
        )
    if schema.startswith("pg_") or schema in _RESERVED_SCHEMAS:
        raise ValueError(f"invalid schema name {schema!r}: reserved by PostgreSQL")
    return schema


def channel_name(schema: str) -> str:
    """The LISTEN/NOTIFY channel of one schema: a readable prefix of the name and a digest of
    all of it, so two schemas never share a channel (identifiers stop at 63 bytes)."""
    digest = hashlib.sha256(schema.encode()).hexdigest()[:16]
    return f"duroxide_{schema[:32]}_{digest}"


# --- options -------------------------------------------------------------------------------------

_ENV = {
    "min_size": ("DUROXIDE_PG_POOL_MIN_SIZE", int),
    "max_size": ("DUROXIDE_PG_POOL_MAX_SIZE", int),
    "pool_timeout_s": ("DUROXIDE_PG_POOL_TIMEOUT", float),
    "connect_timeout_s": ("DUROXIDE_PG_CONNECT_TIMEOUT", float),
    "statement_timeout_ms": ("DUROXIDE_PG_STATEMENT_TIMEOUT_MS", int),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class PgOptions:
    """Connection settings. Keywords win over ``DUROXIDE_PG_*`` variables, which win over these
    defaults."""

    #: Connections the pool keeps open / may open at most.
    min_size: int = 1
    max_size: int = 10
    #: How long an operation waits for a free pooled connection (then a retryable error).
    pool_timeout_s: float = 30.0
    #: Timeout of one connection attempt.
    connect_timeout_s: float = 10.0
    #: Server-side limit for one statement; None keeps the server's setting.
    statement_timeout_ms: int | None = None
    #: psycopg's prepare_threshold: executions before a statement is prepared server-side
    #: (0: at once; None: never, e.g. behind a transaction-pooling PgBouncer).
    prepare_threshold: int | None = 0
    #: Attempts of an idempotent read on retryable errors (1: no retry).
    read_attempts: int = 3

    @classmethod
    def resolve(
        cls, options: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> PgOptions:
        """Options from keywords, then the environment, then the defaults."""
        environ = os.environ if environ is None else environ
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown PostgresProvider option(s) {unknown}; known: {sorted(known)}")
        values: dict[str, Any] = {}
        for name, (variable, convert) in _ENV.items():
            raw = environ.get(variable)
            if raw is not None and raw.strip():
                try:
                    values[name] = convert(raw)
                except ValueError:
                    raise ValueError(
                        f"{variable}={raw!r} is not a valid {convert.__name__}"
                    ) from None
        values.update(options)
        resolved = cls(**values)
        resolved._check()
        return resolved

    def _check(self) -> None:
        if self.min_size < 0 or self.max_size < max(self.min_size, 1):
            raise ValueError(
                f"pool sizes need 0 <= min_size <= max_size and max_size >= 1, got "
                f"min_size={self.min_size}, max_size={self.max_size}"
            )
        if self.pool_timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ValueError("pool_timeout_s and connect_timeout_s must be positive")
        if self.statement_timeout_ms is not None and self.statement_timeout_ms < 0:
            raise ValueError("statement_timeout_ms must be >= 0 (0: no limit)")
        if self.read_attempts < 1:
            raise ValueError("read_attempts must be >= 1")

    def connect_kwargs(self, url: str) -> dict[str, Any]:
        """Keyword arguments for every connection: autocommit, timeouts, keepalives."""
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "prepare_threshold": self.prepare_threshold,
            "connect_timeout": max(1, math.ceil(self.connect_timeout_s)),
        }
        given = conninfo_to_dict(url)
        if "application_name" not in given:
            kwargs["application_name"] = "duroxide"
        if "client_encoding" not in given:  # the lean path sends and reads UTF-8
            kwargs["client_encoding"] = "UTF8"
        if "keepalives" not in given:
            # A silently dropped connection (no FIN) is noticed within a minute.
            kwargs.update(keepalives=1, keepalives_idle=30, keepalives_interval=10,
                          keepalives_count=3)  # fmt: skip
        return kwargs


# --- errors --------------------------------------------------------------------------------------

#: SQLSTATE classes after which trying again may succeed: connection exception, transaction
#: rollback (serialization failure, deadlock), insufficient resources (too many connections),
#: operator intervention (admin shutdown, crash shutdown, cannot connect now, query canceled).
_RETRYABLE_CLASSES = frozenset({"08", "40", "53", "57"})
#: lock_not_available, object_in_use, read_only_sql_transaction (a connection that landed on a
#: standby, e.g. during a failover).
_RETRYABLE_STATES = frozenset({"55P03", "55006", "25006"})
_CACHED_PLAN = "cached plan must not change result type"


def is_retryable(exc: BaseException) -> bool:
    """Whether the operation that raised ``exc`` may succeed when tried again."""
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, PoolClosed) or not isinstance(exc, psycopg.Error):
        return False
    state = exc.sqlstate
    if state is None:
        # No server error: the connection failed or broke (OperationalError), or the client
        # misused it (InterfaceError etc.).
        return isinstance(exc, psycopg.OperationalError)
    if state_is_retryable(state):
        return True
    # A plan cached before a schema change (feature_not_supported): re-planned on retry.
    return state == "0A000" and _CACHED_PLAN in str(exc)


def state_is_retryable(state: str) -> bool:
    """Whether a server error with SQLSTATE ``state`` may go away when tried again."""
    return state[:2] in _RETRYABLE_CLASSES or state in _RETRYABLE_STATES


def is_disconnect(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection is gone (dropped, or the server shutting down or
    restarting): then nothing was committed unless the commit itself was already sent."""
    if not isinstance(exc, psycopg.Error) or isinstance(exc, PoolClosed):
        return False
    state = exc.sqlstate
    if state is None:
        return isinstance(exc, psycopg.OperationalError)
    return state.startswith("08") or state in ("57P01", "57P02", "57P03")


def describe(message: str, detail: str | None, state: str | None) -> str:
    """One line for a server error: the primary message, its detail, and the SQLSTATE."""
    text = message if not detail else f"{message}: {detail}"
    return f"{text} (SQLSTATE {state})" if state else text


def translate(operation: str, exc: BaseException) -> ProviderError:
    """A driver or pool error as a ``ProviderError`` tagged with ``retryable``. A server error
    is described by its primary message, detail and SQLSTATE (not the PL/pgSQL context)."""
    state = getattr(exc, "sqlstate", None)
    diag = getattr(exc, "diag", None)
    primary = diag.message_primary if diag is not None else None
    if primary:
        message = describe(primary, diag.message_detail, state)
    else:
        text = str(exc).strip()
        message = describe(text.splitlines()[0] if text else type(exc).__name__, None, state)
    return ProviderError(operation, message, retryable=is_retryable(exc), sqlstate=state)


# --- the database --------------------------------------------------------------------------------


def compose_queries(queries: Queries, schema: str) -> dict[str, str]:
    """Every query of ``queries.sql`` with ``{schema}`` replaced by the quoted schema name."""
    name = sql.Identifier(schema)
    return {
        query: sql.SQL(queries[query]).format(schema=name).as_string() for query in queries.names()
    }


class PgDatabase:
    """A connection pool on one schema; every provider statement runs through ``run``."""

    def __init__(self, url: str, schema: str, options: PgOptions) -> None:
        self.schema = schema
        self.queries = compose_queries(Queries(PACKAGE, "queries.sql"), schema)
        #: The hot statements, for the lean path (``run`` takes them instead of the text).
        self.lean = {name: LeanStatement.of(name, self.queries[name]) for name in sorted(LEAN)}
        self._lean = LeanExecutor(prepare=options.prepare_threshold is not None)
        self._options = options
        self._timeout = (
            None if options.statement_timeout_ms is None else str(options.statement_timeout_ms)
        )
        self._set_timeout = self.queries["local_statement_timeout"]
        self._round_trips = 0
        self._count_lock = threading.Lock()
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url,
            min_size=options.min_size,
            max_size=options.max_size,
            timeout=options.pool_timeout_s,
            kwargs=options.connect_kwargs(url),
            name=f"duroxide-{schema}",
            open=False,
        )
        self._pool.open(wait=False)

    @property
    def round_trips(self) -> int:
        """Round trips so far: one per provider operation (plus retries)."""
        return self._round_trips

    def run(
        self,
        operation: str,
        query: Query,
        params: Params = None,
        *,
        fetch: Fetch = "one",
        retry: Retry = "never",
    ) -> Any:
        """Execute one statement; return its first row (or None), all rows, or the row count.

        Raises ``ProviderError``. ``retry="read"``: retried (with a short back-off) up to
        ``read_attempts`` times while the error is retryable; ``retry="reconnect"``: retried
        once at once when the connection broke.
        """
        attempts = {"read": self._options.read_attempts, "reconnect": 2}.get(retry, 1)
        attempt = 1
        while True:
            try:
                return self._execute(query, params, fetch)
            except psycopg.Error as exc:  # includes the pool's PoolTimeout and PoolClosed
                error = translate(operation, exc)
                disconnected = is_disconnect(exc)
                if disconnected:
                    self._check_pool()
                again = disconnected if retry == "reconnect" else error.retryable
                if not again or attempt >= attempts:
                    raise error from exc
            if retry == "read":
                time.sleep(0.02 * 4 ** (attempt - 1))
            attempt += 1

    def _check_pool(self) -> None:
        """Drop the pool's broken idle connections (after a server restart, all of them)."""
        with contextlib.suppress(psycopg.Error):  # closed, or the server still down: the next
            self._pool.check()  # call says so

    def _execute(self, query: Query, params: Params, fetch: Fetch) -> Any:
        """The single place where the provider's statements are sent (and counted).

        The connection is taken and returned without the pool's ``connection()`` context (half
        the cost per call): connections are in autocommit, so there is nothing to commit, and
        ``putconn`` rolls back or discards one left in a transaction or broken."""
        pool = self._pool
        conn = pool.getconn()
        try:
            with self._count_lock:
                self._round_trips += 1
            if isinstance(query, LeanStatement):
                if self._timeout is None:
                    values = query.encode(params)
                    if fetch == "rowcount":
                        return self._lean.execute(conn, query, values, rowcount=True)
                    rows = self._lean.execute(conn, query, values)
                    return rows if fetch == "all" else (rows[0] if rows else None)
                query = query.query
            if self._timeout is None:
                cursor = conn.execute(query, params)
            else:  # one pipeline: BEGIN, the transaction's timeout, the statement, COMMIT
                with conn.pipeline(), conn.transaction():
                    conn.execute(self._set_timeout, (self._timeout,))
                    cursor = conn.execute(query, params)
            if fetch == "rowcount":
                return cursor.rowcount
            if cursor.description is None:  # a statement without result rows
                return [] if fetch == "all" else None
            return cursor.fetchall() if fetch == "all" else cursor.fetchone()
        finally:
            pool.putconn(conn)

    def close(self) -> None:
        """Close the pool; later operations fail with a non-retryable ``ProviderError``."""
        self._pool.close()
