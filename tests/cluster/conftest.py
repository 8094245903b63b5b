"""Fixtures for the cluster tests: a PostgreSQL schema per test and a client on it.

The cluster tests run the real ``python -m cluster`` against PostgreSQL (``tests/pg.py``: skip
without a server, fail under ``DUROXIDE_REQUIRE_PG=1``); each test gets its own schema, dropped
afterwards, and its own supervisor process group, killed afterwards.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared pg.py
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/cluster: support.py
# the repository root before tests/, so ``import cluster`` finds the package, never this
# directory (tests/cluster has no __init__.py: it would import as a namespace package)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import pg

import cluster

assert cluster.__file__ is not None, "tests/cluster shadows the cluster package"


@pytest.fixture
def pg_schema(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """``(url, schema)``: a fresh schema for one test, dropped (cascade) at its end."""
    url = pg.pg_url()
    with pg.temporary_schema(url, f"cl_{request.node.name[5:17]}") as schema:
        yield url, schema


@pytest.fixture
def client(pg_schema: tuple[str, str]) -> Iterator[Any]:
    """A ``Client`` on the test's schema (its provider creates the schema if needed)."""
    from duroxide import Client
    from duroxide.providers import open_provider

    provider = open_provider(*pg_schema)
    try:
        yield Client(provider)
    finally:
        provider.close()
