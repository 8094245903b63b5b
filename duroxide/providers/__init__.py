"""Storage providers and the one place that turns a URL into one."""

from __future__ import annotations

from typing import Any

from duroxide.providers.base import Provider, ProviderAdmin

__all__ = ["Provider", "ProviderAdmin", "open_provider"]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_provider(url: str, schema: str | None = None, **options: Any) -> Any:
    """Open the provider a URL names: ``sqlite:path`` (or ``sqlite::memory:``) or
    ``postgresql://…`` (in ``schema``, default ``duroxide``; ``options`` go to
    ``PostgresProvider``). Raises ``ValueError`` for anything else."""
    if not isinstance(url, str) or not url:
        raise ValueError("a database URL is required (sqlite:path or postgresql://…)")
    if url.startswith(_POSTGRES_SCHEMES):
        from duroxide.providers.postgres import PostgresProvider

        if schema:
            return PostgresProvider.connect_with_schema(url, schema, **options)
        return PostgresProvider.connect(url, **options)
    if url.startswith("sqlite:"):
        if options:
            raise ValueError(f"options {sorted(options)} apply to PostgreSQL only")
        from duroxide.providers.sqlite import SqliteProvider

        return SqliteProvider.open(url)
    scheme = url.split(":", 1)[0]
    raise ValueError(
        f"unsupported database URL scheme {scheme!r}: use sqlite:path or postgresql://…"
    )
