"""Smoke test of the SQLite provider: one full orchestration cycle plus its admin reads.

The provider conformance suite (``tests/providers/conformance``) is the real specification;
this file only proves the SQLite provider is wired end to end.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from duroxide.errors import (
    InstanceNotFoundError,
    InvalidOperationError,
    LockLostError,
    ProviderError,
)
from duroxide.history import (
    ActivityCompleted,
    ActivityScheduled,
    OrchestrationCompleted,
    OrchestrationStarted,
)
from duroxide.providers.base import (
    InstanceUpdate,
    KvChanges,
    OrchestrationAck,
    Provider,
    ProviderAdmin,
    SessionConfig,
)
from duroxide.providers.sqlite import SqliteProvider
from duroxide.providers.sqlite.connection import path_from_url
from duroxide.types import TagFilter, TagFilterSpec
from duroxide.work_items import (
    ActivityCompletedMsg,
    ActivityWorkItem,
    OutboundMessage,
    StartOrchestration,
)

DEFAULT_ONLY = TagFilterSpec.parse(TagFilter.DEFAULT_ONLY)
LOCK_MS = 30_000
#: An id that would break any SQL built by string concatenation.
NASTY_ID = 'it\'s; --DROP TABLE instances; "ü🦀" ' + "x" * 500


@pytest.fixture
def provider() -> Iterator[SqliteProvider]:
    store = SqliteProvider.in_memory()
    try:
        yield store
    finally:
        store.close()


def running(execution_id: int = 1, **changes: object) -> InstanceUpdate:
    fields: dict[str, object] = {
        "orchestration_name": "Orch",
        "orchestration_version": "1.0.0",
        "execution_id": execution_id,
        "status": "Running",
        "execution_status": "Running",
    }
    fields.update(changes)
    return InstanceUpdate(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("instance_id", ["inst-1", NASTY_ID])
def test_full_cycle_then_admin_reads(provider: SqliteProvider, instance_id: str) -> None:
    assert isinstance(provider, Provider)
    assert isinstance(provider, ProviderAdmin)

    provider.enqueue_orchestrator(instance_id, StartOrchestration(name="Orch", input='"in"'))
    item = provider.fetch_orchestration_item(LOCK_MS)
    assert item is not None
    assert (item.instance_id, item.instance, item.execution_id, item.history) == (
        instance_id, None, 1, [],
    )  # fmt: skip
    [start] = item.messages
    assert isinstance(start.message, StartOrchestration)
    assert start.attempt_count == 1
    assert provider.fetch_orchestration_item(LOCK_MS) is None  # locked

    work = ActivityWorkItem(
        instance_id=instance_id, execution_id=1, activity_id=2, name="Greet", input='"x"'
    )
    provider.ack_orchestration_item(
        item.lock_token,
        OrchestrationAck(
            instance=running(custom_status="step 1", custom_status_changed=True),
            events=[
                OrchestrationStarted(event_id=1, timestamp_ms=1, name="Orch", version="1.0.0"),
                ActivityScheduled(event_id=2, timestamp_ms=2, name="Greet", input='"x"'),
            ],
            worker_items=[work],
        ),
    )
    with pytest.raises(LockLostError):
        provider.ack_orchestration_item(item.lock_token, OrchestrationAck(instance=None))

    locked = provider.fetch_work_item(LOCK_MS, DEFAULT_ONLY)
    assert locked is not None
    assert (locked.item, locked.attempt_count) == (work, 1)
    assert provider.renew_work_item_lock(locked.lock_token, LOCK_MS)
    provider.ack_work_item(
        locked.lock_token,
        OutboundMessage(
            instance_id=instance_id,
            message=ActivityCompletedMsg(execution_id=1, activity_id=2, result='"hi"'),
        ),
    )
    with pytest.raises(LockLostError):
        provider.ack_work_item(locked.lock_token, None)

    item = provider.fetch_orchestration_item(LOCK_MS)
    assert item is not None
    assert item.instance is not None
    assert (item.instance.status, item.instance.custom_status) == ("Running", "step 1")
    assert [e.event_id for e in item.history] == [1, 2]
    assert isinstance(item.messages[0].message, ActivityCompletedMsg)
    provider.ack_orchestration_item(
        item.lock_token,
        OrchestrationAck(
            instance=running(status="Completed", execution_status="Completed", output='"hi"'),
            events=[
                ActivityCompleted(event_id=3, timestamp_ms=3, source_event_id=2, result='"hi"'),
                OrchestrationCompleted(event_id=4, timestamp_ms=4, output='"hi"'),
            ],
            kv=KvChanges(upserts={"k": ('"v"', 5)}),
        ),
    )

    status = provider.get_instance_status(instance_id)
    assert status is not None
    assert (status.status, status.output, status.custom_status_version) == ("Completed", '"hi"', 1)
    assert provider.get_kv_all_values(instance_id) == {"k": '"v"'}
    info = provider.get_instance_info(instance_id)
    assert info is not None
    assert (info.instance_id, info.status, info.custom_status) == (
        instance_id,
        "Completed",
        "step 1",
    )
    assert [i.instance_id for i in provider.list_instances()] == [instance_id]
    execution = provider.get_execution_info(instance_id, 1)
    assert execution is not None
    assert (execution.status, execution.event_count) == ("Completed", 4)
    assert provider.list_executions(instance_id) == [1]
    assert [e.kind for e in provider.read_history(instance_id, 1)] == [
        "OrchestrationStarted", "ActivityScheduled", "ActivityCompleted", "OrchestrationCompleted",
    ]  # fmt: skip
    stats = provider.get_orchestration_stats(instance_id)
    assert stats is not None
    assert (stats.history_event_count, stats.queue_pending_count, stats.kv_user_key_count) == (
        4, 0, 1,
    )  # fmt: skip
    metrics = provider.get_system_metrics()
    assert (metrics.total_instances, metrics.completed_instances, metrics.total_events) == (1, 1, 4)
    depths = provider.get_queue_depths()
    assert (depths.orchestrator_queue, depths.worker_queue) == (0, 0)
    tree = provider.get_instance_tree(instance_id)
    assert tree is not None
    assert tree.all_ids == [instance_id]

    deleted = provider.delete_instance(instance_id)
    assert (deleted.instances_deleted, deleted.executions_deleted, deleted.events_deleted) == (
        1, 1, 4,
    )  # fmt: skip
    assert provider.get_instance_status(instance_id) is None
    with pytest.raises(InstanceNotFoundError):
        provider.delete_instance(instance_id)


def test_duplicate_event_fails_whole_ack(provider: SqliteProvider) -> None:
    provider.enqueue_orchestrator("a", StartOrchestration(name="Orch"))
    item = provider.fetch_orchestration_item(LOCK_MS)
    assert item is not None
    started = OrchestrationStarted(event_id=1, timestamp_ms=1, name="Orch", version="1.0.0")
    with pytest.raises(ProviderError) as raised:
        provider.ack_orchestration_item(
            item.lock_token, OrchestrationAck(instance=running(), events=[started, started])
        )
    assert not raised.value.retryable
    assert provider.get_instance_status("a") is None  # nothing committed, lock kept
    provider.ack_orchestration_item(
        item.lock_token, OrchestrationAck(instance=running(), events=[started])
    )
    with pytest.raises(InvalidOperationError, match="still running"):
        provider.delete_instance("a")


def test_undecodable_message_is_returned_not_raised(provider: SqliteProvider) -> None:
    provider._db.execute(
        "test", provider._q["enqueue_orchestrator"], ("a", "NoSuchKind", "{}", 0, 0, 0)
    )
    item = provider.fetch_orchestration_item(LOCK_MS)
    assert item is not None
    [message] = item.messages
    assert message.message is None
    assert message.decode_error


def test_sessions_are_owned_by_one_worker(provider: SqliteProvider) -> None:
    provider.enqueue_orchestrator("a", StartOrchestration(name="Orch"))
    item = provider.fetch_orchestration_item(LOCK_MS)
    assert item is not None
    items = [
        ActivityWorkItem(instance_id="a", execution_id=1, activity_id=n, name="A", session_id="s")
        for n in (2, 3)
    ]
    provider.ack_orchestration_item(
        item.lock_token, OrchestrationAck(instance=running(), worker_items=items)
    )
    first, second = (
        SessionConfig(owner_id=o, max_sessions=1, lock_timeout_ms=LOCK_MS) for o in "12"
    )
    assert provider.fetch_work_item(LOCK_MS, DEFAULT_ONLY) is None  # no session config
    taken = provider.fetch_work_item(LOCK_MS, DEFAULT_ONLY, first)
    assert taken is not None
    assert provider.fetch_work_item(LOCK_MS, DEFAULT_ONLY, second) is None
    again = provider.fetch_work_item(LOCK_MS, DEFAULT_ONLY, first)
    assert again is not None
    assert again.item.activity_id == 3
    assert provider.renew_session_locks(["1"], LOCK_MS, 60_000) == 1


def test_file_database_is_shared_between_providers(tmp_path: Path) -> None:
    url = f"sqlite:{tmp_path / 'shared.db'}"
    one, two = SqliteProvider.open(url), SqliteProvider.open(url)
    try:
        one.enqueue_orchestrator("a", StartOrchestration(name="Orch"))
        assert two.fetch_orchestration_item(LOCK_MS) is not None
        assert one.fetch_orchestration_item(LOCK_MS) is None
    finally:
        one.close()
        two.close()


def test_a_database_file_from_before_start_bias_is_upgraded_with_its_messages(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    old = SqliteProvider.open(f"sqlite:{path}")
    old.enqueue_orchestrator("queued", StartOrchestration(name="Orch"))
    old.close()
    with sqlite3.connect(path) as conn:  # the orchestrator queue as it was before the column
        conn.executescript(
            "DROP INDEX orchestrator_queue_claim;"
            "ALTER TABLE orchestrator_queue DROP COLUMN start_bias;"
            "CREATE INDEX orchestrator_queue_visible ON orchestrator_queue (visible_at);"
        )
    conn.close()

    provider = SqliteProvider.open(f"sqlite:{path}")
    try:
        provider.enqueue_orchestrator("new", StartOrchestration(name="Orch"))
        claimed = [provider.fetch_orchestration_item(LOCK_MS) for _ in range(2)]
        assert [c.instance_id for c in claimed if c] == ["queued", "new"]
        # What a second process does when it looked before the first one upgraded the file:
        # the column is there by the time it adds it, which is not an error.
        provider._db._add_start_bias()
    finally:
        provider.close()


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:data.db", "data.db"),
        ("sqlite://rel/data.db", "rel/data.db"),
        ("sqlite:///abs/data.db", "/abs/data.db"),
        ("sqlite:./data.db?mode=rwc", "./data.db"),
        ("sqlite::memory:", ":memory:"),
        ("plain.db", "plain.db"),
    ],
)
def test_url_forms(url: str, path: str) -> None:
    assert path_from_url(url) == path
