"""Schema names are validated before any SQL runs; hostile names change nothing."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from duroxide.providers.postgres import PostgresProvider
from duroxide.providers.postgres.connection import channel_name, validate_schema

HOSTILE = [
    pytest.param("", id="empty"),
    pytest.param("Duroxide", id="uppercase"),
    pytest.param("tenant-a", id="dash"),
    pytest.param("tenant a", id="space"),
    pytest.param('x"; DROP SCHEMA public CASCADE; --', id="quote-injection"),
    pytest.param("x; DROP SCHEMA public CASCADE", id="statement-injection"),
    pytest.param("1tenant", id="leading-digit"),
    pytest.param("a" * 64, id="64-chars"),
    pytest.param("ünïcødé", id="unicode"),
    pytest.param("tenant\x00", id="nul"),
    pytest.param("tenant\n", id="trailing-newline"),
    pytest.param("pg_catalog", id="pg-catalog"),
    pytest.param("pg_tenant", id="pg-prefix"),
    pytest.param("public", id="public"),
    pytest.param("information_schema", id="information-schema"),
    pytest.param(None, id="none"),
    pytest.param(42, id="int"),
]


@pytest.mark.parametrize("name", ["a", "_", "tenant_01", "duroxide", "a" * 63, "_9"])
def test_valid_names_are_accepted(name: str) -> None:
    assert validate_schema(name) == name


@pytest.mark.parametrize("name", HOSTILE)
def test_invalid_names_are_rejected_with_a_clear_error(name: Any) -> None:
    with pytest.raises(ValueError, match="schema name"):
        validate_schema(name)


def namespaces(conn: psycopg.Connection[Any]) -> list[str]:
    return [row[0] for row in conn.execute("SELECT nspname FROM pg_namespace ORDER BY 1")]


@pytest.mark.parametrize("name", HOSTILE)
def test_connect_with_a_hostile_name_changes_nothing(
    pg_url: str, admin_conn: psycopg.Connection[Any], name: Any
) -> None:
    before = namespaces(admin_conn)

    with pytest.raises(ValueError, match="schema name"):
        PostgresProvider.connect_with_schema(pg_url, name)

    assert namespaces(admin_conn) == before


def test_channel_names_fit_postgres_identifiers() -> None:
    assert channel_name("tenant").startswith("duroxide_tenant_")
    assert channel_name("tenant") == channel_name("tenant")
    assert all(len(channel_name(name)) <= 63 for name in ("a", "a" * 63, "_9"))


def test_schemas_sharing_a_long_prefix_get_distinct_channels() -> None:
    """Names are cut at 63 bytes: tenants whose schema names share a long prefix must still
    never share a channel (a cancellation posted by one would reach the other's activities)."""
    prefix = "tenant_with_a_rather_long_common_prefix_for_all_of_them_x"
    assert len(prefix) > 54
    names = [prefix + suffix for suffix in ("a", "b", "aa", "ab")]

    channels = {channel_name(name) for name in names}

    assert len(channels) == len(names)
