"""Named statements from the ``.sql`` files next to this module (``-- name: x`` sections).

``{schema}`` in a statement is replaced by the quoted schema (``psycopg.sql.Identifier``); values
are always bound parameters.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from psycopg import sql

SQL_DIR = Path(__file__).resolve().parent / "sql"
_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@cache
def statements(filename: str) -> dict[str, str]:
    """``name -> statement text`` of one file (comments before the first name are dropped)."""
    text = (SQL_DIR / filename).read_text()
    parts = _NAME.split(text)
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts), 2)}


def statement(filename: str, name: str, schema: str) -> sql.Composed:
    """The statement ``name`` of ``filename``, composed for ``schema``."""
    return sql.SQL(statements(filename)[name]).format(schema=sql.Identifier(schema))
