"""Backends the provider conformance suite runs against.

Every backend is one ``Backend`` entry in ``BACKENDS``. ``fresh`` yields a brand-new, isolated,
empty store for one test; ``shared`` yields an ``Opener`` that opens handles (provider objects)
onto one fresh store, for tests about durability and about several processes sharing a
database. PostgreSQL's ``fresh`` creates a uniquely named schema
(``PostgresProvider.connect_with_schema(url, schema)``) and drops it after the test; its
``shared`` opens several providers on that same schema. A backend whose server is not
configured skips inside its factories (``pg.pg_url()``; it fails instead under
``DUROXIDE_REQUIRE_PG=1``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared pg.py
import pg


class Opener:
    """Opens provider handles onto one store and closes whichever are still open at the end."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect
        self._open: list[Any] = []

    def open(self) -> Any:
        handle = self._connect()
        self._open.append(handle)
        return handle

    def close(self, handle: Any) -> None:
        """Close one handle now (a process stopping)."""
        self._open.remove(handle)
        handle.close()

    def close_all(self) -> None:
        while self._open:
            self._open.pop().close()


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    #: A fresh, empty store private to one test; closed afterwards.
    fresh: Callable[[Path], AbstractContextManager[Any]]
    #: Opens handles onto one fresh store; every handle still open is closed afterwards.
    shared: Callable[[Path], AbstractContextManager[Opener]]


@contextmanager
def _sqlite_memory(_tmp: Path) -> Iterator[Any]:
    from duroxide.providers.sqlite import SqliteProvider

    provider = SqliteProvider.in_memory()
    try:
        yield provider
    finally:
        provider.close()


@contextmanager
def _sqlite_file_opener(tmp: Path) -> Iterator[Opener]:
    from duroxide.providers.sqlite import SqliteProvider

    url = f"sqlite:{tmp / 'conformance.db'}"
    opener = Opener(lambda: SqliteProvider.open(url))
    try:
        yield opener
    finally:
        opener.close_all()


@contextmanager
def _postgres_schema(_tmp: Path) -> Iterator[Any]:
    from duroxide.providers.postgres import PostgresProvider

    url = pg.pg_url()
    with pg.temporary_schema(url) as schema:
        provider = PostgresProvider.connect_with_schema(url, schema)
        try:
            yield provider
        finally:
            provider.close()


@contextmanager
def _postgres_schema_opener(_tmp: Path) -> Iterator[Opener]:
    from duroxide.providers.postgres import PostgresProvider

    url = pg.pg_url()
    with pg.temporary_schema(url) as schema:
        opener = Opener(lambda: PostgresProvider.connect_with_schema(url, schema))
        try:
            yield opener
        finally:
            opener.close_all()


BACKENDS: list[Backend] = [
    Backend(name="sqlite", fresh=_sqlite_memory, shared=_sqlite_file_opener),
    Backend(name="postgres", fresh=_postgres_schema, shared=_postgres_schema_opener),
]


@pytest.fixture(params=[backend.name for backend in BACKENDS])
def backend(request: pytest.FixtureRequest) -> Backend:
    """The backend under test (one parametrization per entry of ``BACKENDS``)."""
    by_name = {b.name: b for b in BACKENDS}
    return by_name[request.param]


@pytest.fixture
def provider(backend: Backend, tmp_path: Path) -> Iterator[Any]:
    """A fresh, isolated store implementing ``Provider`` and ``ProviderAdmin``."""
    with backend.fresh(tmp_path) as store:
        yield store


@pytest.fixture
def open_store(backend: Backend, tmp_path: Path) -> Iterator[Opener]:
    """Opens provider handles that all share one fresh store (several nodes, or a restart)."""
    with backend.shared(tmp_path) as opener:
        yield opener
