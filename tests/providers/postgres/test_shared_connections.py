"""Tenants sharing server connections never mix (review item C1).

Behind a transaction-pooling PgBouncer, one server connection serves many clients one
transaction at a time, so whatever a session was set to by one tenant applies to the next.
These tests run two providers (two schemas) over ONE connection whose search_path points at
the first tenant, and check that every row lands in, and is read from, its own schema; and
that the provider never changes session state.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pg
import psycopg
import pytest
from psycopg import sql

from duroxide.history import ActivityScheduled, OrchestrationStarted
from duroxide.providers.base import InstanceUpdate, OrchestrationAck
from duroxide.providers.postgres import PostgresProvider
from duroxide.types import TagFilter, TagFilterSpec
from duroxide.work_items import (
    ActivityCompletedMsg,
    ActivityWorkItem,
    OutboundMessage,
    StartOrchestration,
)

DEFAULT_ONLY = TagFilterSpec.parse(TagFilter.DEFAULT_ONLY)


class OneConnection:
    """Stands in for a provider's pool: every operation gets the same server connection."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        yield self._conn

    def getconn(self) -> psycopg.Connection[Any]:
        return self._conn

    def putconn(self, conn: psycopg.Connection[Any]) -> None:
        assert conn is self._conn

    def check(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def tenants(pg_url: str) -> Iterator[tuple[PostgresProvider, PostgresProvider, Any]]:
    """Providers on schemas A and B sharing one connection whose search_path is A's."""
    with pg.temporary_schema(pg_url, "tenant_a") as a, pg.temporary_schema(pg_url, "tenant_b") as b:
        first = PostgresProvider.connect_with_schema(pg_url, a)
        second = PostgresProvider.connect_with_schema(pg_url, b)
        with psycopg.connect(pg_url, autocommit=True) as shared:
            shared.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(a)))
            pools = [p._db._pool for p in (first, second)]  # internal: swapped for the test
            for provider in (first, second):
                provider._db._pool = OneConnection(shared)  # type: ignore[assignment]
            try:
                yield first, second, shared
            finally:
                first._db._pool, second._db._pool = pools  # type: ignore[assignment]
                first.close()
                second.close()


def count(conn: psycopg.Connection[Any], schema: str, table: str) -> int:
    query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else -1


def run_hello(provider: PostgresProvider, instance_id: str) -> None:
    """A one-activity orchestration, start to finish, through ``provider``."""
    provider.enqueue_orchestrator(instance_id, StartOrchestration(name="O", version="1.0.0"))
    item = provider.fetch_orchestration_item(30_000)
    assert item is not None and item.instance_id == instance_id
    update = InstanceUpdate(orchestration_name="O", orchestration_version="1.0.0",
                            execution_id=1, status="Running",
                            execution_status="Running")  # fmt: skip
    provider.ack_orchestration_item(
        item.lock_token,
        OrchestrationAck(
            instance=update,
            events=[OrchestrationStarted(event_id=1, timestamp_ms=item.now_ms, name="O",
                                         version="1.0.0"),
                    ActivityScheduled(event_id=2, timestamp_ms=item.now_ms, name="A")],
            worker_items=[ActivityWorkItem(instance_id=instance_id, execution_id=1,
                                           activity_id=2, name="A")],
        ),
    )  # fmt: skip
    work = provider.fetch_work_item(30_000, DEFAULT_ONLY)
    assert work is not None and work.item.instance_id == instance_id
    provider.ack_work_item(
        work.lock_token,
        OutboundMessage(instance_id=instance_id,
                        message=ActivityCompletedMsg(execution_id=1, activity_id=2, result="1")),
    )  # fmt: skip


def test_two_tenants_on_one_connection_never_mix(
    tenants: tuple[PostgresProvider, PostgresProvider, Any], admin_conn: Any
) -> None:
    first, second, _ = tenants

    run_hello(second, "b-inst")  # the connection's search_path is the FIRST tenant's
    run_hello(first, "a-inst")

    a, b = first.schema, second.schema
    assert [count(admin_conn, s, "instances") for s in (a, b)] == [1, 1]
    assert [count(admin_conn, s, "history") for s in (a, b)] == [2, 2]
    assert [count(admin_conn, s, "orchestrator_queue") for s in (a, b)] == [1, 1]
    assert [i.instance_id for i in first.list_instances()] == ["a-inst"]
    assert [i.instance_id for i in second.list_instances()] == ["b-inst"]
    assert second.get_instance_status("a-inst") is None
    item = second.fetch_orchestration_item(30_000)
    assert item is not None and item.instance_id == "b-inst"
    assert [m.kind for m in item.messages] == ["ActivityCompleted"]


def test_operations_leave_the_sessions_settings_alone(
    tenants: tuple[PostgresProvider, PostgresProvider, Any],
) -> None:
    first, second, shared = tenants
    before = shared.execute(
        "SELECT current_setting('search_path'), current_setting('statement_timeout'), "
        "current_setting('synchronous_commit')"
    ).fetchone()

    run_hello(second, "b-inst")
    second.delete_instance("b-inst", force=True)
    first.get_queue_depths()

    after = shared.execute(
        "SELECT current_setting('search_path'), current_setting('statement_timeout'), "
        "current_setting('synchronous_commit')"
    ).fetchone()
    assert after == before


def test_every_function_pins_its_search_path(
    open_provider: Any, schema: str, admin_conn: Any
) -> None:
    """Functions that touch tables resolve them in their own schema whatever the caller's
    search_path (the ones that do not are pure expressions)."""
    open_provider()
    rows = admin_conn.execute(
        "SELECT p.proname, coalesce(p.proconfig, '{}') FROM pg_proc AS p "
        "JOIN pg_namespace AS n ON n.oid = p.pronamespace WHERE n.nspname = %s",
        (schema,),
    ).fetchall()
    pure = {
        "duroxide_now_ms",
        "duroxide_start_bias_ms",
        "duroxide_token_instance",
        "duroxide_token_work_id",
    }

    unpinned = sorted(
        name for name, config in rows
        if name not in pure and not any(c.startswith("search_path=") for c in config)
    )  # fmt: skip
    assert {name for name, _ in rows} >= pure
    assert unpinned == []
