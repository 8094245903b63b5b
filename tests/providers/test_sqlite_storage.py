"""SQLite-only checks that need to reach under the provider (the contract suite cannot)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from duroxide.providers.base import OrchestrationAck
from duroxide.providers.sqlite import SqliteProvider
from duroxide.work_items import EventRaised, StartOrchestration


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def file_provider(db_path: Path) -> Iterator[SqliteProvider]:
    provider = SqliteProvider.open(f"sqlite:{db_path}")
    try:
        yield provider
    finally:
        provider.close()


def insert_raw_message(db_path: Path, instance_id: str, kind: str, payload: str) -> None:
    """Write a message row the way a buggy or newer writer might have left it (visible now,
    so it sorts after the messages enqueued before it)."""
    now = int(time.time() * 1000)
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "INSERT INTO orchestrator_queue (instance_id, kind, payload, visible_at, enqueued_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (instance_id, kind, payload, now, now),
        )
    conn.close()


def test_undecodable_messages_come_back_as_poison_not_as_a_crash(
    file_provider: SqliteProvider, db_path: Path
) -> None:
    start = StartOrchestration(name="Orch", version="1.0.0")
    file_provider.enqueue_orchestrator("inst", start)
    insert_raw_message(db_path, "inst", "ExternalRaised", "{not json")
    insert_raw_message(db_path, "inst", "NoSuchKind", '{"name": "x"}')
    insert_raw_message(db_path, "inst", "ExternalRaised", '{"unexpected_field": 1}')  # no name
    file_provider.enqueue_orchestrator("inst", EventRaised(name="fine"))

    item = file_provider.fetch_orchestration_item(30_000)

    assert item is not None
    assert [m.message for m in item.messages] == [
        start,
        None,
        None,
        None,
        EventRaised(name="fine"),
    ]
    bad = item.messages[1:4]
    assert [m.kind for m in bad] == ["ExternalRaised", "NoSuchKind", "ExternalRaised"]
    assert all(m.decode_error for m in bad)
    assert all(m.attempt_count == 1 for m in item.messages)

    # The runtime can still consume the poison with an ack.
    file_provider.ack_orchestration_item(item.lock_token, OrchestrationAck(instance=None))
    assert file_provider.fetch_orchestration_item(30_000) is None


def test_in_memory_providers_are_isolated_from_each_other() -> None:
    first = SqliteProvider.in_memory()
    second = SqliteProvider.in_memory()
    try:
        first.enqueue_orchestrator("inst", StartOrchestration(name="Orch"))

        assert second.fetch_orchestration_item(30_000) is None
        assert first.fetch_orchestration_item(30_000) is not None
    finally:
        first.close()
        second.close()
