"""Pool and timeout options: keywords win over DUROXIDE_PG_* variables, which win over the
defaults; bad values are refused with the variable's name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from duroxide.errors import ProviderError
from duroxide.providers.postgres import PostgresProvider
from duroxide.providers.postgres.connection import PgOptions
from duroxide.work_items import StartOrchestration

ENV = {
    "DUROXIDE_PG_POOL_MIN_SIZE": "2",
    "DUROXIDE_PG_POOL_MAX_SIZE": "7",
    "DUROXIDE_PG_POOL_TIMEOUT": "4.5",
    "DUROXIDE_PG_CONNECT_TIMEOUT": "3",
    "DUROXIDE_PG_STATEMENT_TIMEOUT_MS": "1500",
}


def test_defaults() -> None:
    options = PgOptions.resolve({}, environ={})

    assert (options.min_size, options.max_size) == (1, 10)
    assert (options.pool_timeout_s, options.connect_timeout_s) == (30.0, 10.0)
    assert options.statement_timeout_ms is None


def test_environment_overrides_defaults() -> None:
    options = PgOptions.resolve({}, environ=ENV)

    assert (options.min_size, options.max_size) == (2, 7)
    assert (options.pool_timeout_s, options.connect_timeout_s) == (4.5, 3.0)
    assert options.statement_timeout_ms == 1500


def test_keywords_override_the_environment() -> None:
    options = PgOptions.resolve({"max_size": 3, "statement_timeout_ms": 0}, environ=ENV)

    assert (options.min_size, options.max_size, options.statement_timeout_ms) == (2, 3, 0)


@pytest.mark.parametrize(
    ("options", "environ", "message"),
    [
        ({}, {"DUROXIDE_PG_POOL_MAX_SIZE": "many"}, "DUROXIDE_PG_POOL_MAX_SIZE"),
        ({"min_size": 5, "max_size": 2}, {}, "min_size"),
        ({"max_size": 0}, {}, "max_size"),
        ({"pool_timeout_s": 0}, {}, "pool_timeout_s"),
        ({"statement_timeout_ms": -1}, {}, "statement_timeout_ms"),
        ({"read_attempts": 0}, {}, "read_attempts"),
    ],
)
def test_bad_values_are_refused(
    options: dict[str, Any], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        PgOptions.resolve(options, environ=environ)


def test_unknown_keywords_are_refused() -> None:
    with pytest.raises(TypeError, match="pool_size"):
        PgOptions.resolve({"pool_size": 3}, environ={})


def test_the_statement_timeout_applies_without_touching_the_session(
    open_provider: Callable[..., PostgresProvider],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The timeout is set per transaction, so a pooled server connection (which a
    transaction-pooling PgBouncer shares with other clients) keeps its own settings."""
    monkeypatch.setenv("DUROXIDE_PG_STATEMENT_TIMEOUT_MS", "200")
    provider = open_provider(max_size=1)
    before = provider.round_trips

    with pytest.raises(ProviderError) as raised:  # internal: a statement through the provider
        provider._db.run("probe", "SELECT pg_sleep(2)")

    assert raised.value.retryable is True  # 57014 query_canceled
    assert "57014" in raised.value.message
    assert provider.round_trips - before == 1
    with provider._db._pool.connection() as conn:  # internal: the same pooled session
        assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)
        assert conn.execute("SHOW search_path").fetchone() == ('"$user", public',)
        assert conn.execute("SHOW application_name").fetchone() == ("duroxide",)
    assert provider.get_instance_status("inst") is None  # the provider still works


def test_pooled_sessions_keep_the_servers_settings(
    open_provider: Callable[..., PostgresProvider],
) -> None:
    provider = open_provider(max_size=1)
    provider.enqueue_orchestrator("inst", StartOrchestration(name="O"))
    assert provider.fetch_orchestration_item(30_000) is not None

    with provider._db._pool.connection() as conn:  # internal: the pool's only session
        assert conn.execute("SHOW search_path").fetchone() == ('"$user", public',)
        assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)
