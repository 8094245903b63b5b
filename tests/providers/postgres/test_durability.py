"""Which commits wait for their WAL flush: a claim does not (the claim functions turn
``synchronous_commit`` off for their own transaction; losing a claim in a server crash only frees
its work early), and that never leaks into the session, so every ack, start and event sent later
on the same pooled connection is durable when it returns."""

from __future__ import annotations

from typing import Any

from duroxide.history import OrchestrationStarted
from duroxide.providers.base import InstanceUpdate, OrchestrationAck
from duroxide.providers.postgres import PostgresProvider
from duroxide.types import TagFilter, TagFilterSpec
from duroxide.work_items import ActivityWorkItem, StartOrchestration


def _session_setting(provider: PostgresProvider) -> str:
    """``synchronous_commit`` of the provider's only pooled connection, as its next statement
    would commit with it."""
    pool = provider._db._pool
    conn = pool.getconn()
    try:
        return str(conn.execute("SHOW synchronous_commit").fetchone()[0])
    finally:
        pool.putconn(conn)


def test_a_claim_never_leaves_the_connection_committing_without_a_flush(
    open_provider: Any,
) -> None:
    provider = open_provider(min_size=1, max_size=1)  # every operation on the same connection
    assert _session_setting(provider) == "on"
    provider.enqueue_orchestrator("inst", StartOrchestration(name="O", version="1.0.0"))

    item = provider.fetch_orchestration_item(30_000)
    assert item is not None
    assert _session_setting(provider) == "on"

    provider.ack_orchestration_item(item.lock_token, OrchestrationAck(
        instance=InstanceUpdate(orchestration_name="O", orchestration_version="1.0.0",
                                execution_id=1, status="Running", execution_status="Running"),
        events=[OrchestrationStarted(event_id=1, timestamp_ms=item.now_ms, name="O",
                                     version="1.0.0")],
        worker_items=[ActivityWorkItem(instance_id="inst", execution_id=1, activity_id=2,
                                       name="A")],
    ))  # fmt: skip
    work = provider.fetch_work_items(30_000, 1, tag_filter=TagFilterSpec.parse(
        TagFilter.DEFAULT_ONLY))  # fmt: skip
    assert len(work) == 1
    assert _session_setting(provider) == "on"
