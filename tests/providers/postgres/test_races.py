"""Races between a fetch and a concurrent transaction, forced deterministically: another
connection holds a row lock so the provider's statement stops exactly where the race lives.

* a forced delete racing a fetch never lets the instance come back (review item C2);
* a takeover fetch after a lock expired never works from a stale history (M1);
* a fetch never comes back empty while another transaction holds a busy instance (M2).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql

from duroxide.errors import LockLostError, ProviderError
from duroxide.history import (
    ActivityScheduled,
    ExternalEvent,
    OrchestrationCompleted,
    OrchestrationStarted,
)
from duroxide.providers.base import InstanceUpdate, OrchestrationAck, OrchestrationItem
from duroxide.providers.postgres import PostgresProvider
from duroxide.work_items import (
    ActivityKey,
    ActivityWorkItem,
    EventRaised,
    StartOrchestration,
)

WAIT_S = 10.0


def update(status: str = "Running", output: str | None = None) -> InstanceUpdate:
    return InstanceUpdate(orchestration_name="O", orchestration_version="1.0.0", execution_id=1,
                          status=status, execution_status=status, output=output)  # fmt: skip


def first_turn(provider: PostgresProvider, instance_id: str, *, activity: bool = False) -> None:
    """Start ``instance_id`` and ack its first turn (optionally scheduling activity 2)."""
    provider.enqueue_orchestrator(instance_id, StartOrchestration(name="O", version="1.0.0"))
    item = provider.fetch_orchestration_item(30_000)
    assert item is not None and item.instance_id == instance_id
    events: list[Any] = [OrchestrationStarted(event_id=1, timestamp_ms=item.now_ms, name="O",
                                              version="1.0.0")]  # fmt: skip
    work = []
    if activity:
        events.append(ActivityScheduled(event_id=2, timestamp_ms=item.now_ms, name="A"))
        work.append(ActivityWorkItem(instance_id=instance_id, execution_id=1, activity_id=2,
                                     name="A"))  # fmt: skip
    provider.ack_orchestration_item(
        item.lock_token, OrchestrationAck(instance=update(), events=events, worker_items=work)
    )


def ack_like_the_runtime(provider: PostgresProvider, item: OrchestrationItem) -> None:
    """What a dispatcher commits for an item: nothing but the consumed messages for a finished
    instance, else one recorded event per message appended to the history it was given."""
    if item.instance is not None and item.instance.status != "Running":
        provider.ack_orchestration_item(item.lock_token, OrchestrationAck(instance=None))
        return
    events = [ExternalEvent(event_id=item.history_len + n, timestamp_ms=item.now_ms, name="e")
              for n, _ in enumerate(item.messages, start=1)]  # fmt: skip
    provider.ack_orchestration_item(
        item.lock_token, OrchestrationAck(instance=update(), events=events)
    )


@contextmanager
def holding(
    pg_url: str, statement: sql.Composable, params: tuple[Any, ...] = ()
) -> Iterator[psycopg.Connection[Any]]:
    """A transaction on its own connection that ran ``statement`` and holds its locks until the
    block ends (then commits)."""
    with psycopg.connect(pg_url, autocommit=True) as conn, conn.transaction():
        conn.execute(statement, params)
        yield conn


def wait_blocked_by(pg_url: str, blocker: psycopg.Connection[Any]) -> None:
    """Wait until some backend waits for a lock ``blocker`` holds."""
    with psycopg.connect(pg_url, autocommit=True) as watcher:
        deadline = time.monotonic() + WAIT_S
        while not watcher.execute(
            "SELECT 1 FROM pg_stat_activity WHERE %s = ANY (pg_blocking_pids(pid))",
            (blocker.info.backend_pid,),
        ).fetchone():
            assert time.monotonic() < deadline, "nothing blocked on the held lock"
            time.sleep(0.01)


def blocked_backends(pg_url: str) -> int:
    """How many backends wait for a lock right now."""
    with psycopg.connect(pg_url, autocommit=True) as watcher:
        row = watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE cardinality(pg_blocking_pids(pid)) > 0"
        ).fetchone()
    return int(row[0]) if row else 0


class Background:
    """Runs ``call`` on a thread; ``result()`` re-raises what it raised."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self._value = call()
        except BaseException as exc:
            self._error = exc

    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self) -> Any:
        self._thread.join(WAIT_S)
        assert not self._thread.is_alive(), "the background call did not finish"
        if self._error is not None:
            raise self._error
        return self._value


def test_a_forced_delete_racing_a_fetch_never_resurrects_the_instance(
    open_provider: Callable[..., PostgresProvider], schema: str, pg_url: str
) -> None:
    """The delete is held halfway (a history row it must delete is locked); a fetch then must
    neither wait for it nor take the instance — or, if it takes it, its ack must be refused —
    and the instance must stay deleted."""
    provider = open_provider()
    first_turn(provider, "inst")
    provider.enqueue_orchestrator("inst", EventRaised(name="e"))
    history_row = sql.SQL("SELECT 1 FROM {} WHERE instance_id = 'inst' FOR UPDATE").format(
        sql.Identifier(schema, "history")
    )

    with holding(pg_url, history_row) as blocker:
        deletion = Background(lambda: provider.delete_instance("inst", force=True))
        wait_blocked_by(pg_url, blocker)
        started = time.monotonic()
        item = provider.fetch_orchestration_item(30_000)
        assert time.monotonic() - started < 2.0  # the fetch did not wait for the deletion
    deletion.result()

    if item is not None:
        with pytest.raises(LockLostError):
            ack_like_the_runtime(provider, item)
    assert provider.get_instance_status("inst") is None
    assert provider.read_history("inst", 1) == []
    assert provider.list_instances() == []
    assert provider.fetch_orchestration_item(30_000) is None


def test_a_takeover_fetch_after_lock_expiry_sees_the_previous_turn(
    open_provider: Callable[..., PostgresProvider], schema: str, pg_url: str
) -> None:
    """Turn A's ack starts before its lock expires and is held mid-commit (the activity it
    cancels is locked); the lock expires and fetch B runs. B must not work from the history
    as it was before A committed: its ack would duplicate A's events, or revert the status."""
    provider = open_provider()
    first_turn(provider, "inst", activity=True)
    provider.enqueue_orchestrator("inst", EventRaised(name="first"))
    lock_ms = 1_000
    a = provider.fetch_orchestration_item(lock_ms)
    assert a is not None and a.history_len == 2
    provider.enqueue_orchestrator("inst", EventRaised(name="second"))  # waits for the next turn
    activity_row = sql.SQL("SELECT 1 FROM {} WHERE instance_id = 'inst' FOR UPDATE").format(
        sql.Identifier(schema, "worker_queue")
    )
    completion = OrchestrationAck(
        instance=update("Completed", '"done"'),
        events=[ExternalEvent(event_id=3, timestamp_ms=a.now_ms, name="first"),
                OrchestrationCompleted(event_id=4, timestamp_ms=a.now_ms, output='"done"')],
        cancelled_activities=[ActivityKey(instance_id="inst", execution_id=1, activity_id=2)],
    )  # fmt: skip

    with holding(pg_url, activity_row) as blocker:
        ack_a = Background(lambda: provider.ack_orchestration_item(a.lock_token, completion))
        wait_blocked_by(pg_url, blocker)
        while provider.now_ms() <= a.now_ms + lock_ms + 50:  # A's lock expires meanwhile
            time.sleep(0.02)
        fetch_b = Background(lambda: provider.fetch_orchestration_item(30_000))
        deadline = time.monotonic() + WAIT_S
        while not fetch_b.done() and blocked_backends(pg_url) < 2:  # A, and B behind A
            assert time.monotonic() < deadline, "fetch B neither returned nor waited"
            time.sleep(0.02)
    ack_a.result()
    b = fetch_b.result() or provider.fetch_orchestration_item(30_000)

    assert b is not None and b.instance_id == "inst"
    with contextlib.suppress(LockLostError):  # refused: computed from a stale history
        ack_like_the_runtime(provider, b)
    status = provider.get_instance_status("inst")
    assert status is not None
    assert (status.status, status.output) == ("Completed", '"done"')
    assert [e.event_id for e in provider.read_history("inst", 1)] == [1, 2, 3, 4]


def test_a_fetch_is_never_empty_while_another_transaction_holds_a_busy_instance(
    open_provider: Callable[..., PostgresProvider], schema: str, pg_url: str
) -> None:
    """Instance "busy" has many due messages and is being fetched by another transaction
    (which holds what such a fetch holds: its claim row, or the advisory lock of the previous
    design); "free" has one message. A fetch must return "free", not None."""
    provider = open_provider()
    for n in range(40):
        provider.enqueue_orchestrator("busy", EventRaised(name=f"e{n}"))
    provider.enqueue_orchestrator("free", StartOrchestration(name="O", version="1.0.0"))
    claim_rows = sql.SQL(
        "SELECT pg_advisory_xact_lock(hashtextextended('busy', 0)) "
        "FROM (SELECT 1 FROM {} WHERE instance_id = 'busy' FOR UPDATE) AS r"
    ).format(sql.Identifier(schema, "instance_queue"))

    with holding(pg_url, claim_rows):
        item = provider.fetch_orchestration_item(30_000)
        assert item is not None
        assert item.instance_id == "free"
        assert provider.fetch_orchestration_items(30_000, 10) == []  # busy is held

    again = provider.fetch_orchestration_item(30_000)
    assert again is not None and again.instance_id == "busy"
    assert len(again.messages) == 40


def test_an_ack_fenced_out_by_a_changed_history_is_refused(
    open_provider: Callable[..., PostgresProvider], schema: str, admin_conn: Any
) -> None:
    """An ack is refused (LockLostError) when the history its turn was computed from is no
    longer the stored one, even with a live token; the lock is released for a retry."""
    provider = open_provider()
    first_turn(provider, "inst")
    provider.enqueue_orchestrator("inst", EventRaised(name="e"))
    item = provider.fetch_orchestration_item(30_000)
    assert item is not None and item.history_len == 1
    admin_conn.execute(  # another writer appended to the history behind the lock's back
        sql.SQL("UPDATE {} SET event_count = event_count + 1 WHERE instance_id = 'inst'").format(
            sql.Identifier(schema, "executions")
        )
    )

    with pytest.raises(LockLostError):
        ack_like_the_runtime(provider, item)

    again = provider.fetch_orchestration_item(30_000)  # released at once, not at expiry
    assert again is not None and again.history_len == 2
    assert [m.attempt_count for m in again.messages] == [2]


def test_an_ack_never_creates_an_instance_from_a_history_not_starting_at_event_1(
    open_provider: Callable[..., PostgresProvider],
) -> None:
    provider = open_provider()
    provider.enqueue_orchestrator("inst", EventRaised(name="e"))
    item = provider.fetch_orchestration_item(30_000)
    assert item is not None and item.instance is None

    with pytest.raises(LockLostError):
        provider.ack_orchestration_item(
            item.lock_token,
            OrchestrationAck(
                instance=update(), events=[ExternalEvent(event_id=2, timestamp_ms=0, name="e")]
            ),
        )

    assert provider.get_instance_status("inst") is None
    assert provider.read_history("inst", 1) == []


def test_errors_carry_the_primary_message_not_the_plpgsql_context(
    open_provider: Callable[..., PostgresProvider],
) -> None:
    provider = open_provider()
    provider.enqueue_orchestrator("inst", StartOrchestration(name="O", version="1.0.0"))
    item = provider.fetch_orchestration_item(30_000)
    assert item is not None
    started = OrchestrationStarted(event_id=1, timestamp_ms=0, name="O", version="1.0.0")

    with pytest.raises(ProviderError) as raised:
        provider.ack_orchestration_item(
            item.lock_token, OrchestrationAck(instance=update(), events=[started, started])
        )

    message = raised.value.message
    assert "duplicate key value violates unique constraint" in message
    assert "(SQLSTATE 23505)" in message
    assert "PL/pgSQL" not in message and "CONTEXT" not in message and "\n" not in message
