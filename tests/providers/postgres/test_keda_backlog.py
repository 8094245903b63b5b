"""duroxide_backlog(queue, tag): the number KEDA's postgresql scaler reads, callable from any
connection (it pins its own search_path)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import sql

from duroxide.history import ActivityScheduled, OrchestrationStarted
from duroxide.providers.base import InstanceUpdate, OrchestrationAck
from duroxide.providers.postgres import PostgresProvider
from duroxide.types import TagFilter, TagFilterSpec
from duroxide.work_items import ActivityWorkItem, EventRaised, StartOrchestration

ANY_TAG = TagFilterSpec.parse(TagFilter.ANY)


def backlog(conn: psycopg.Connection[Any], schema: str, queue: str, *tag: str | None) -> int:
    placeholders = sql.SQL(", ").join([sql.Placeholder()] * (1 + len(tag)))
    query = sql.SQL("SELECT {}.duroxide_backlog({})").format(sql.Identifier(schema), placeholders)
    row = conn.execute(query, (queue, *tag)).fetchone()
    assert row is not None
    return int(row[0])


def schedule(provider: PostgresProvider, tags: list[str | None]) -> None:
    """Run a first turn of "w" that schedules one activity per tag."""
    provider.enqueue_orchestrator("w", StartOrchestration(name="O", version="1.0.0"))
    item = provider.fetch_orchestration_item(30_000)
    assert item is not None
    activities = [
        ActivityWorkItem(instance_id="w", execution_id=1, activity_id=i, name=f"A{i}", tag=tag)
        for i, tag in enumerate(tags, start=2)
    ]
    provider.ack_orchestration_item(
        item.lock_token,
        OrchestrationAck(
            instance=InstanceUpdate(
                orchestration_name="O", orchestration_version="1.0.0", execution_id=1,
                status="Running", execution_status="Running",
            ),
            events=[OrchestrationStarted(event_id=1, timestamp_ms=item.now_ms, name="O",
                                         version="1.0.0")]
            + [ActivityScheduled(event_id=a.activity_id, timestamp_ms=item.now_ms, name=a.name,
                                 tag=a.tag) for a in activities],
            worker_items=activities,
        ),
    )  # fmt: skip


def test_an_empty_schema_has_no_backlog(
    open_provider: Callable[..., PostgresProvider], schema: str, admin_conn: Any
) -> None:
    open_provider()

    assert backlog(admin_conn, schema, "orchestrator") == 0
    assert backlog(admin_conn, schema, "worker") == 0
    assert backlog(admin_conn, schema, "worker", "*") == 0


def test_worker_backlog_counts_ready_and_in_flight_items_per_tag(
    open_provider: Callable[..., PostgresProvider], schema: str, admin_conn: Any
) -> None:
    provider = open_provider()
    schedule(provider, [None, None, None, "gpu", "gpu", "cpu"])
    first = provider.fetch_work_item(30_000, ANY_TAG)  # in flight: still counted
    assert first is not None
    later = provider.fetch_work_item(30_000, ANY_TAG)
    assert later is not None
    provider.abandon_work_item(later.lock_token, delay_ms=60_000)  # backing off: not counted

    assert backlog(admin_conn, schema, "worker") == 2
    assert backlog(admin_conn, schema, "worker", None) == 2
    assert backlog(admin_conn, schema, "worker", "gpu") == 2
    assert backlog(admin_conn, schema, "worker", "cpu") == 1
    assert backlog(admin_conn, schema, "worker", "io") == 0
    assert backlog(admin_conn, schema, "worker", "*") == 5
    assert provider.get_queue_depths().worker_queue == 6


def test_orchestrator_backlog_counts_ready_and_in_flight_messages(
    open_provider: Callable[..., PostgresProvider], schema: str, admin_conn: Any
) -> None:
    provider = open_provider()
    provider.enqueue_orchestrator("a", StartOrchestration(name="O"))
    provider.enqueue_orchestrator("a", EventRaised(name="e"))
    provider.enqueue_orchestrator("b", StartOrchestration(name="O"))
    provider.enqueue_orchestrator("c", EventRaised(name="later"), delay_ms=60_000)
    assert provider.fetch_orchestration_item(30_000) is not None  # "a", in flight

    assert backlog(admin_conn, schema, "orchestrator") == 3
    assert backlog(admin_conn, schema, "orchestrator", "ignored") == 3


def test_an_unknown_queue_is_an_error(
    open_provider: Callable[..., PostgresProvider], schema: str, admin_conn: Any
) -> None:
    open_provider()

    with pytest.raises(psycopg.errors.InvalidParameterValue, match="unknown duroxide queue"):
        backlog(admin_conn, schema, "timers")


def test_a_role_with_only_schema_usage_can_read_the_backlog(
    open_provider: Callable[..., PostgresProvider], schema: str, admin_conn: Any, pg_url: str
) -> None:
    provider = open_provider()
    provider.enqueue_orchestrator("a", StartOrchestration(name="O"))
    role = f"{schema}_keda"
    admin_conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        admin_conn.execute(
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                sql.Identifier(schema), sql.Identifier(role)
            )
        )
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(
                        sql.Identifier(schema, "orchestrator_queue")
                    )
                )
            assert backlog(conn, schema, "orchestrator") == 1
    finally:
        admin_conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        admin_conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
