"""Driver errors become ProviderError(retryable=...) at the edge; idempotent reads retry."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pg
import psycopg
import psycopg.errors as pgerr
import pytest
from conformance.helpers import scheduled, start, started, update
from psycopg import sql
from psycopg_pool import PoolClosed, PoolTimeout

from duroxide.errors import LockLostError, ProviderError
from duroxide.history import OrchestrationStarted
from duroxide.providers.base import InstanceUpdate, OrchestrationAck
from duroxide.providers.postgres import PostgresProvider
from duroxide.providers.postgres.connection import translate
from duroxide.types import TagFilter, TagFilterSpec
from duroxide.work_items import ActivityWorkItem, StartOrchestration


@pytest.mark.parametrize(
    "error",
    [
        pgerr.DeadlockDetected("deadlock detected"),
        pgerr.SerializationFailure("could not serialize access"),
        pgerr.AdminShutdown("terminating connection due to administrator command"),
        pgerr.CannotConnectNow("the database system is starting up"),
        pgerr.QueryCanceled("canceling statement due to statement timeout"),
        pgerr.TooManyConnections("too many clients already"),
        pgerr.LockNotAvailable("could not obtain lock"),
        pgerr.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"),
        psycopg.OperationalError("server closed the connection unexpectedly"),
        pgerr.FeatureNotSupported("cached plan must not change result type"),
        PoolTimeout("couldn't get a connection after 30.00 sec"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_transient_errors_are_retryable(error: Exception) -> None:
    translated = translate("op", error)

    assert translated.retryable is True
    assert translated.operation == "op"


@pytest.mark.parametrize(
    "error",
    [
        pgerr.UniqueViolation("duplicate key value violates unique constraint"),
        pgerr.FeatureNotSupported("something else entirely"),
        pgerr.UndefinedTable('relation "instances" does not exist'),
        pgerr.UntranslatableCharacter("unsupported Unicode escape sequence"),
        psycopg.InterfaceError("the connection is closed"),
        PoolClosed("the pool is closed"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_permanent_errors_are_not_retryable(error: Exception) -> None:
    assert translate("op", error).retryable is False


def _ack(provider: PostgresProvider, token: str, now_ms: int) -> None:
    provider.ack_orchestration_item(
        token,
        OrchestrationAck(
            instance=InstanceUpdate(
                orchestration_name="O", orchestration_version="1.0.0", execution_id=1,
                status="Running", execution_status="Running",
            ),
            events=[OrchestrationStarted(event_id=1, timestamp_ms=now_ms, name="O",
                                         version="1.0.0")],
        ),
    )  # fmt: skip


def _wait_for_blocked(conn: psycopg.Connection[Any], blocker_pid: int) -> int:
    """The pid of the backend waiting on ``blocker_pid``'s lock."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE %s = ANY (pg_blocking_pids(pid))",
            (blocker_pid,),
        ).fetchone()
        if row:
            return int(row[0])
        time.sleep(0.01)
    raise AssertionError("the provider's statement never blocked")


def _kill_acks_blocked_by(
    killer: psycopg.Connection[Any], blocker: psycopg.Connection[Any], kills: int
) -> None:
    """Terminate the backend waiting on ``blocker``'s lock, ``kills`` times in a row."""
    for _ in range(kills):
        victim = _wait_for_blocked(killer, blocker.info.backend_pid)
        killer.execute("SELECT pg_terminate_backend(%s)", (victim,))
        deadline = time.monotonic() + 10
        while killer.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (victim,)).fetchone():
            assert time.monotonic() < deadline, "the killed backend did not go away"
            time.sleep(0.01)


@pytest.mark.parametrize("kills", [1, 2])
def test_an_ack_whose_backend_is_killed_is_retried_once_on_a_new_connection(
    open_provider: Callable[..., PostgresProvider], schema: str, pg_url: str, kills: int
) -> None:
    """A dead connection (server restart, killed backend) costs a token-guarded write one
    retry on a fresh connection; a second loss surfaces as a retryable error with nothing
    committed, and the lock still works."""
    provider = open_provider()
    provider.enqueue_orchestrator("inst", StartOrchestration(name="O", version="1.0.0"))
    item = provider.fetch_orchestration_item(30_000)
    assert item is not None
    errors: list[BaseException] = []
    before = provider.round_trips

    with (
        psycopg.connect(pg_url, autocommit=True) as blocker,
        psycopg.connect(pg_url, autocommit=True) as killer,
    ):
        with blocker.transaction():
            blocker.execute(  # hold the claim row the ack must lock first
                sql.SQL("SELECT 1 FROM {} WHERE instance_id = 'inst' FOR UPDATE").format(
                    sql.Identifier(schema, "instance_queue")
                )
            )

            def ack() -> None:
                try:
                    _ack(provider, item.lock_token, item.now_ms)
                except BaseException as exc:
                    errors.append(exc)

            thread = threading.Thread(target=ack)
            thread.start()
            _kill_acks_blocked_by(killer, blocker, kills)
        thread.join(timeout=10)

    assert provider.round_trips - before == 2  # the first attempt and one retry
    if kills == 1:
        assert errors == []
        status = provider.get_instance_status("inst")
        assert status is not None and status.status == "Running"
        return
    assert len(errors) == 1
    error = errors[0]
    assert isinstance(error, ProviderError)
    assert not isinstance(error, LockLostError)
    assert error.retryable is True
    assert error.operation == "ack_orchestration_item"
    # Nothing was committed; the lock is still live, so the runtime's retry succeeds.
    assert provider.get_instance_status("inst") is None
    _ack(provider, item.lock_token, item.now_ms)
    status = provider.get_instance_status("inst")
    assert status is not None
    assert status.status == "Running"


def _terminate_pooled_connections(conn: psycopg.Connection[Any], application_name: str) -> int:
    rows = conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        (application_name,),
    ).fetchall()
    return len(rows)


def _named_provider(pg_url: str, schema: str, prefix: str) -> tuple[str, PostgresProvider]:
    """A one-connection provider whose sessions carry their own ``application_name`` (so a
    test can terminate exactly them), and that name."""
    name = f"{prefix}_{schema}"[:60]
    url = pg.with_application_name(pg_url, name)
    return name, PostgresProvider.connect_with_schema(url, schema, max_size=1)


def test_reads_retry_after_the_server_dropped_the_connection(
    pg_url: str, schema: str, admin_conn: psycopg.Connection[Any]
) -> None:
    name, provider = _named_provider(pg_url, schema, "dx")
    try:
        assert provider.get_instance_status("inst") is None  # the pool's one connection
        assert _terminate_pooled_connections(admin_conn, name) >= 1

        before = provider.round_trips
        assert provider.get_instance_status("inst") is None  # retried on a new connection
        assert provider.round_trips - before == 2

        assert _terminate_pooled_connections(admin_conn, name) >= 1
        with pytest.raises(ProviderError) as raised:  # a write is never retried here
            provider.enqueue_orchestrator("inst", StartOrchestration(name="O"))
        assert raised.value.retryable is True
        provider.enqueue_orchestrator("inst", StartOrchestration(name="O"))
        assert provider.get_queue_depths().orchestrator_queue == 1
    finally:
        provider.close()


def test_fetches_retry_once_on_a_new_connection_when_the_pooled_one_was_killed(
    pg_url: str, schema: str, admin_conn: psycopg.Connection[Any]
) -> None:
    """A dispatcher's pooled connection killed while idle (a failover, a proxy, an operator's
    pg_terminate_backend) must not cost it a failed fetch and a back-off: under repeated kills
    that starved dispatchers for good. A claim lost with its connection just expires."""
    name, provider = _named_provider(pg_url, schema, "dxf")
    try:
        start(provider, "inst")
        assert _terminate_pooled_connections(admin_conn, name) >= 1
        before = provider.round_trips
        items = provider.fetch_orchestration_items(30_000, 4)  # not a ProviderError
        assert provider.round_trips - before == 2  # the dead connection, then a new one
        assert [i.instance_id for i in items] == ["inst"]
        activity = ActivityWorkItem(instance_id="inst", execution_id=1, activity_id=2, name="A")
        now = items[0].now_ms
        provider.ack_orchestration_item(items[0].lock_token, OrchestrationAck(
            instance=update(), events=[started(now), scheduled(activity, now)],
            worker_items=[activity],
        ))  # fmt: skip

        assert _terminate_pooled_connections(admin_conn, name) >= 1
        before = provider.round_trips
        work = provider.fetch_work_items(30_000, 4, TagFilterSpec.parse(TagFilter.DEFAULT_ONLY))
        assert provider.round_trips - before == 2
        assert [w.item.name for w in work] == ["A"]
    finally:
        provider.close()


def test_an_exhausted_pool_yields_a_retryable_error(
    open_provider: Callable[..., PostgresProvider], schema: str, pg_url: str
) -> None:
    provider = open_provider(max_size=1, pool_timeout_s=0.2, read_attempts=1)
    provider.enqueue_orchestrator("inst", StartOrchestration(name="O", version="1.0.0"))
    item = provider.fetch_orchestration_item(30_000)
    assert item is not None
    done = threading.Event()

    with psycopg.connect(pg_url, autocommit=True) as blocker, blocker.transaction():
        blocker.execute(
            sql.SQL("SELECT 1 FROM {} WHERE instance_id = 'inst' FOR UPDATE").format(
                sql.Identifier(schema, "instance_queue")
            )
        )
        thread = threading.Thread(
            target=lambda: (_ack(provider, item.lock_token, item.now_ms), done.set())
        )
        thread.start()  # holds the pool's only connection while it waits for the row lock
        with psycopg.connect(pg_url, autocommit=True) as watcher:
            _wait_for_blocked(watcher, blocker.info.backend_pid)
        with pytest.raises(ProviderError) as raised:
            provider.get_instance_status("inst")
    thread.join(timeout=10)

    assert raised.value.retryable is True
    assert done.is_set()


def test_a_duplicate_event_id_is_not_retryable(
    open_provider: Callable[..., PostgresProvider],
) -> None:
    provider = open_provider()
    provider.enqueue_orchestrator("inst", StartOrchestration(name="O", version="1.0.0"))
    item = provider.fetch_orchestration_item(30_000)
    assert item is not None
    event = OrchestrationStarted(event_id=1, timestamp_ms=item.now_ms, name="O", version="1.0.0")

    with pytest.raises(ProviderError) as raised:
        provider.ack_orchestration_item(
            item.lock_token,
            OrchestrationAck(
                instance=InstanceUpdate(
                    orchestration_name="O", orchestration_version="1.0.0", execution_id=1,
                    status="Running", execution_status="Running",
                ),
                events=[event, event],
            ),
        )  # fmt: skip

    assert raised.value.retryable is False
    assert "23505" in raised.value.message


def test_operations_after_close_fail_permanently(pg_url: str, schema: str) -> None:
    provider = PostgresProvider.connect_with_schema(pg_url, schema)
    provider.close()

    with pytest.raises(ProviderError) as raised:
        provider.get_instance_status("inst")

    assert raised.value.retryable is False


def test_an_unreachable_server_fails_connect_with_a_retryable_error() -> None:
    with pytest.raises(ProviderError) as raised:
        PostgresProvider.connect_with_schema(
            "postgresql://nobody@127.0.0.1:1/none", "unreachable", connect_timeout_s=2
        )

    assert raised.value.retryable is True
