"""The lean path for the hot statements: libpq's extended protocol, without psycopg's cursors.

The runtime is bound by Python CPU long before the database is, and psycopg's general
machinery (cursor, query conversion, adapters, prepared-statement bookkeeping) costs some
35 µs of CPU per statement where the statement itself needs 10. The operations a dispatcher
or client repeats all the time (enqueue, fetch, ack, status) therefore send their statement
straight through the connection's ``pgconn``: converted once to ``$n`` placeholders, prepared
once per connection (or sent unnamed when statements must not be prepared, behind a
transaction-pooling PgBouncer), parameters encoded as text, results decoded by column type.
The rows returned are exactly what psycopg would return (``str``, ``int``, ``bool``, parsed
JSON, ``None``), and errors are psycopg's own exception classes, so ``PgDatabase.run``
translates and retries them the same way.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors
from psycopg.pq import ConnStatus, DiagnosticField, ExecStatus

_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%s")
_DUPLICATE = b"42P05"  # duplicate_prepared_statement


def _text(value: bytes) -> str:
    return value.decode()


def _bool(value: bytes) -> bool:
    return value == b"t"


#: Column decoders by type OID: text, varchar, name, int8, int4, int2, bool, json, jsonb.
_DECODERS: dict[int, Callable[[bytes], Any]] = {
    25: _text, 1043: _text, 19: _text, 20: int, 23: int, 21: int, 16: _bool,
    114: json.loads, 3802: json.loads,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class LeanStatement:
    """One statement of ``queries.sql`` in both forms: psycopg's (``query``, used when a
    statement timeout needs a transaction around it) and libpq's (``text``)."""

    name: bytes  # the prepared statement's name, unique to its text
    query: str
    text: bytes
    params: tuple[str, ...] | None  # named parameters in $n order (None: positional)

    @classmethod
    def of(cls, name: str, query: str) -> LeanStatement:
        names: list[str] = []
        positional = 0

        def number(match: re.Match[str]) -> str:
            nonlocal positional
            if match[1] is None:
                positional += 1
                return f"${positional}"
            if match[1] not in names:
                names.append(match[1])
            return f"${names.index(match[1]) + 1}"

        text = _PLACEHOLDER.sub(number, query).encode()
        if names and positional:
            raise ValueError(f"query {name!r} mixes named and positional parameters")
        # The name identifies the exact text (the schema is in it): statements of tenants
        # sharing a server connection never collide, and an existing one is the same.
        digest = hashlib.sha256(text).hexdigest()[:16]
        return cls(f"duroxide_{name}_{digest}".encode(), query, text, tuple(names) or None)

    def encode(self, params: Sequence[Any] | Mapping[str, Any] | None) -> list[bytes | None]:
        if params is None:
            return []
        if self.params is not None:
            assert isinstance(params, Mapping)
            params = [params[name] for name in self.params]
        assert not isinstance(params, Mapping)
        return [_encode(value) for value in params]


def _encode(value: Any) -> bytes | None:
    if value is None:
        return None
    if value is True or value is False:
        return b"t" if value else b"f"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, str):
        data = value.encode()
    elif isinstance(value, list):  # a text[]
        data = ("{" + ",".join(_array_item(v) for v in value) + "}").encode()
    else:
        raise TypeError(f"cannot send {type(value).__name__} on the lean path")
    if b"\x00" in data:  # libpq stops a text parameter at NUL: refuse, as psycopg does
        raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
    return data


def _array_item(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class LeanExecutor:
    """Sends ``LeanStatement``s on pooled connections, preparing each once per connection."""

    def __init__(self, prepare: bool) -> None:
        self._prepare = prepare
        self._prepared: weakref.WeakKeyDictionary[Any, set[bytes]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def execute(
        self,
        conn: psycopg.Connection[Any],
        statement: LeanStatement,
        values: list[bytes | None],
        rowcount: bool = False,
    ) -> Any:
        """All rows of ``statement`` (or, with ``rowcount``, the number of rows it changed);
        raises psycopg's exceptions."""
        pgconn = conn.pgconn
        if not self._prepare:
            result = pgconn.exec_params(statement.text, values)
        else:
            with self._lock:
                prepared = self._prepared.setdefault(conn, set())
            if statement.name not in prepared:
                done = pgconn.prepare(statement.name, statement.text)
                if done.error_field(DiagnosticField.SQLSTATE) != _DUPLICATE:  # prepared already
                    _check(done, conn)
                prepared.add(statement.name)
            result = pgconn.exec_prepared(statement.name, values)
        _check(result, conn)
        if rowcount:
            return int(result.command_tuples or 0)
        width, height = result.nfields, result.ntuples
        if not width or not height:
            return []
        decoders = [_DECODERS[result.ftype(c)] for c in range(width)]
        get = result.get_value
        return [
            tuple(None if (v := get(r, c)) is None else decoders[c](v) for c in range(width))
            for r in range(height)
        ]


_OK = frozenset({ExecStatus.TUPLES_OK, ExecStatus.COMMAND_OK})


def _check(result: Any, conn: psycopg.Connection[Any]) -> None:
    if result.status in _OK:
        return
    if conn.pgconn.status == ConnStatus.BAD:  # as psycopg reports a broken connection
        message = (result.error_message or b"the connection is lost").decode(errors="replace")
        raise psycopg.OperationalError(message.strip())
    raise errors.error_from_result(result, encoding=conn.info.encoding)
