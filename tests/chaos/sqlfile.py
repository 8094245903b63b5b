"""Named statements of the suite's ``.sql`` files (``-- name: x`` sections, parsed by the
provider's own ``parse_queries``).

``{schema}`` in a statement is replaced by the quoted schema (``psycopg.sql.Identifier``); values
are always bound parameters.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from psycopg import sql

from duroxide.providers.sql import parse_queries

SQL_DIR = Path(__file__).resolve().parent / "sql"


@cache
def statements(path: Path) -> dict[str, str]:
    """``name -> statement text`` of one file."""
    return parse_queries(path.read_text(encoding="utf-8"))


def statement(filename: str | Path, name: str, schema: str | None = None) -> sql.Composable:
    """The statement ``name`` of ``filename`` (a file of ``sql/``, or a path), composed for
    ``schema`` when given."""
    path = filename if isinstance(filename, Path) else SQL_DIR / filename
    text = sql.SQL(statements(path)[name])  # type: ignore[arg-type]
    return text if schema is None else text.format(schema=sql.Identifier(schema))
