"""SQLite storage provider: one file (WAL, shareable by several processes) or in memory."""

from duroxide.providers.sqlite.provider import SqliteProvider

__all__ = ["SqliteProvider"]
