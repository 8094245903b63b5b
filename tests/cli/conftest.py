"""Fixtures for the CLI tests: the command run in a subprocess against SQLite and PostgreSQL.

``Store`` is one database (a SQLite file, or a unique PostgreSQL schema dropped afterwards);
``store.run(...)`` runs ``python -m duroxide.cli`` with the connection given through the
environment (``DUROXIDE_DATABASE_URL`` / ``DUROXIDE_SCHEMA``), as an operator's pod would.
``seeded`` is a module-wide store holding the instances of ``seed.py`` (read-only tests);
``fresh_seeded`` is one private to the test (tests that change things); ``fresh_sqlite`` the
same on SQLite only, for what does not depend on the backend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared pg.py
import pg

from .seed import seed

BACKENDS = ["sqlite", "postgres"]
COMMAND = [sys.executable, "-m", "duroxide.cli"]


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()

    def error_line(self) -> str:
        """The single line an operational error prints (and nothing on stdout)."""
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, f"expected one line on stderr, got {self.err!r}"
        assert self.out == "", self.out
        return lines[0]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any DUROXIDE_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DUROXIDE_")}
    env.update(extra)
    return env


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Result:
    """Run the command line in a subprocess (no connection settings unless ``env`` has them)."""
    done = subprocess.run(
        [*COMMAND, *args],
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


@dataclass(frozen=True)
class Store:
    backend: str
    url: str
    schema: str | None = None

    @property
    def env(self) -> dict[str, str]:
        settings = {"DUROXIDE_DATABASE_URL": self.url}
        if self.schema:
            settings["DUROXIDE_SCHEMA"] = self.schema
        return clean_env(**settings)

    def run(self, *args: str, timeout: float = 60, **extra_env: str) -> Result:
        return cli(*args, env={**self.env, **extra_env}, timeout=timeout)

    def open(self) -> Any:
        """A provider on this store (creating the schema when needed)."""
        if self.backend == "sqlite":
            from duroxide import SqliteProvider

            return SqliteProvider.open(self.url)
        from duroxide.providers.postgres import PostgresProvider

        assert self.schema is not None
        return PostgresProvider.connect_with_schema(self.url, self.schema)


@contextmanager
def empty_store(backend: str, directory: Path, label: str) -> Iterator[Store]:
    """A store whose database or schema does not exist yet (nothing created)."""
    if backend == "sqlite":
        yield Store("sqlite", f"sqlite:{directory / f'{label}.db'}")
        return
    url = pg.pg_url()
    with pg.temporary_schema(url, f"cli_{label}") as schema:
        yield Store("postgres", url, schema)


@contextmanager
def seeded_store(backend: str, directory: Path, label: str) -> Iterator[Store]:
    with empty_store(backend, directory, label) as store:
        provider = store.open()
        try:
            seed(provider)
        finally:
            provider.close()
        yield store


@pytest.fixture(scope="module", params=BACKENDS)
def seeded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Store]:  # fmt: skip
    """The seeded instances, shared by the module's tests (which must not change them)."""
    with seeded_store(request.param, tmp_path_factory.mktemp("cli"), "seeded") as store:
        yield store


@pytest.fixture(params=BACKENDS)
def fresh_seeded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The seeded instances in a store private to this test."""
    with seeded_store(request.param, tmp_path, "fresh") as store:
        yield store


@pytest.fixture
def fresh_sqlite(tmp_path: Path) -> Iterator[Store]:
    """The seeded instances in a private SQLite file, for checks that do not depend on the
    backend (formatting, terminals)."""
    with seeded_store("sqlite", tmp_path, "fresh") as store:
        yield store


@pytest.fixture(params=BACKENDS)
def empty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A store whose SQLite file / PostgreSQL schema does not exist."""
    with empty_store(request.param, tmp_path, "empty") as store:
        yield store
