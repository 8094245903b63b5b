"""Every provider operation is one round trip: a hello-world orchestration costs exactly
HELLO_WORLD_ROUND_TRIPS statements end to end. If this grows, a hot path gained a query."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from psycopg import sql

from duroxide.history import (
    ActivityCompleted,
    ActivityScheduled,
    OrchestrationCompleted,
    OrchestrationStarted,
)
from duroxide.providers.base import InstanceUpdate, OrchestrationAck
from duroxide.providers.postgres import PostgresProvider
from duroxide.providers.postgres.codec import ack_documents
from duroxide.types import TagFilter, TagFilterSpec
from duroxide.work_items import (
    ActivityCompletedMsg,
    ActivityWorkItem,
    OutboundMessage,
    StartOrchestration,
)

#: start (enqueue) + turn 1 (fetch, ack) + activity (fetch, ack) + turn 2 (fetch, ack) +
#: the client's status read.
HELLO_WORLD_ROUND_TRIPS = 8

DEFAULT_ONLY = TagFilterSpec.parse(TagFilter.DEFAULT_ONLY)


class Counter:
    """Asserts how many round trips each step costs."""

    def __init__(self, provider: PostgresProvider) -> None:
        self.provider = provider
        self.start = provider.round_trips
        self.steps: list[tuple[str, int]] = []

    def step(self, name: str, call: Callable[[], Any]) -> Any:
        before = self.provider.round_trips
        result = call()
        self.steps.append((name, self.provider.round_trips - before))
        return result

    @property
    def total(self) -> int:
        return self.provider.round_trips - self.start


def update(status: str, output: str | None = None) -> InstanceUpdate:
    return InstanceUpdate(
        orchestration_name="Hello",
        orchestration_version="1.0.0",
        execution_id=1,
        status=status,
        execution_status=status,
        output=output,
    )


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="prepared"),
        # behind a transaction-pooling PgBouncer: nothing prepared
        pytest.param({"prepare_threshold": None}, id="unprepared"),
        # each statement in its own transaction with a local timeout: still one round trip
        pytest.param({"statement_timeout_ms": 10_000}, id="statement-timeout"),
    ],
)
def test_hello_world_orchestration_round_trips(
    open_provider: Callable[..., PostgresProvider], options: dict[str, Any]
) -> None:
    provider = open_provider(**options)
    count = Counter(provider)
    activity = ActivityWorkItem(
        instance_id="hello", execution_id=1, activity_id=2, name="Greet", input='"world"',
        orchestration_name="Hello", orchestration_version="1.0.0",
    )  # fmt: skip

    count.step("start", lambda: provider.enqueue_orchestrator(
        "hello", StartOrchestration(name="Hello", version="1.0.0", input='"world"')))  # fmt: skip
    turn = count.step("fetch turn 1", lambda: provider.fetch_orchestration_item(
        30_000, dispatcher_id="d1"))  # fmt: skip
    count.step("ack turn 1", lambda: provider.ack_orchestration_item(
        turn.lock_token,
        OrchestrationAck(
            instance=update("Running"),
            events=[
                OrchestrationStarted(event_id=1, timestamp_ms=turn.now_ms, name="Hello",
                                     version="1.0.0", input='"world"'),
                ActivityScheduled(event_id=2, timestamp_ms=turn.now_ms, name="Greet",
                                  input='"world"'),
            ],
            worker_items=[activity],
        ),
    ))  # fmt: skip
    work = count.step("fetch activity", lambda: provider.fetch_work_item(30_000, DEFAULT_ONLY))
    count.step("ack activity", lambda: provider.ack_work_item(
        work.lock_token,
        OutboundMessage(instance_id="hello", message=ActivityCompletedMsg(
            execution_id=1, activity_id=2, result='"Hello, world!"')),
    ))  # fmt: skip
    turn = count.step("fetch turn 2", lambda: provider.fetch_orchestration_item(
        30_000, dispatcher_id="d1"))  # fmt: skip
    assert turn.history is None  # the same dispatcher: history cached, not re-sent
    count.step("ack turn 2", lambda: provider.ack_orchestration_item(
        turn.lock_token,
        OrchestrationAck(
            instance=update("Completed", '"Hello, world!"'),
            events=[
                ActivityCompleted(event_id=3, timestamp_ms=turn.now_ms, source_event_id=2,
                                  result='"Hello, world!"'),
                OrchestrationCompleted(event_id=4, timestamp_ms=turn.now_ms,
                                       output='"Hello, world!"'),
            ],
        ),
    ))  # fmt: skip
    status = count.step("status", lambda: provider.get_instance_status("hello"))

    assert status is not None
    assert (status.status, status.output) == ("Completed", '"Hello, world!"')
    assert count.steps == [(name, 1) for name, _ in count.steps]
    assert count.total == HELLO_WORLD_ROUND_TRIPS


def test_every_other_operation_is_one_round_trip(
    open_provider: Callable[..., PostgresProvider],
) -> None:
    provider = open_provider()
    count = Counter(provider)

    count.step("empty fetch", lambda: provider.fetch_orchestration_item(1_000))
    count.step("empty work fetch", lambda: provider.fetch_work_item(1_000, DEFAULT_ONLY))
    count.step("renew", lambda: provider.renew_orchestration_item_lock("x:y", 1_000))
    count.step("renew work", lambda: provider.renew_work_item_lock("1.x", 1_000))
    count.step("abandon", lambda: provider.abandon_orchestration_item("x:y"))
    count.step("abandon work", lambda: provider.abandon_work_item("1.x"))
    count.step("sessions", lambda: provider.renew_session_locks(["a", "b"], 1_000, 1_000))
    count.step("cleanup", provider.cleanup_orphaned_sessions)
    count.step("history", lambda: provider.read_history("x", 1, 3))
    count.step("kv", lambda: provider.get_kv_all_values("x"))
    count.step("list", provider.list_instances)
    count.step("tree", lambda: provider.get_instance_tree("x"))
    count.step("depths", provider.get_queue_depths)
    count.step("metrics", provider.get_system_metrics)
    count.step("stats", lambda: provider.get_orchestration_stats("x"))
    count.step("clock", provider.now_ms)

    assert count.steps == [(name, 1) for name, _ in count.steps]


def test_batch_operations_are_one_round_trip_whatever_their_size(
    open_provider: Callable[..., PostgresProvider],
) -> None:
    provider = open_provider()
    ids = [f"i{n}" for n in range(6)]
    for instance_id in ids:
        provider.enqueue_orchestrator(instance_id, StartOrchestration(name="Hello"))
    count = Counter(provider)

    turns = count.step("fetch 6 turns", lambda: provider.fetch_orchestration_items(30_000, 10))
    assert sorted(t.instance_id for t in turns) == ids
    acks = [
        (t.lock_token, OrchestrationAck(
            instance=update("Running"),
            events=[OrchestrationStarted(event_id=1, timestamp_ms=t.now_ms, name="Hello",
                                         version="1.0.0"),
                    ActivityScheduled(event_id=2, timestamp_ms=t.now_ms, name="Greet")],
            worker_items=[ActivityWorkItem(instance_id=t.instance_id, execution_id=1,
                                           activity_id=2, name="Greet")]))
        for t in turns
    ]  # fmt: skip
    errors = count.step("ack 6 turns", lambda: provider.ack_orchestration_items(acks))
    assert errors == [None] * 6
    works = count.step("fetch 6 activities", lambda: provider.fetch_work_items(
        30_000, 10, DEFAULT_ONLY))  # fmt: skip
    assert len(works) == 6
    done = [
        (w.lock_token, OutboundMessage(instance_id=w.item.instance_id, message=ActivityCompletedMsg(
            execution_id=1, activity_id=2, result="1")))
        for w in works
    ]  # fmt: skip
    assert count.step("ack 6 activities", lambda: provider.ack_work_items(done)) == [None] * 6

    assert count.steps == [(name, 1) for name, _ in count.steps]


def test_bulk_administration_runs_one_transaction_per_instance(
    open_provider: Callable[..., PostgresProvider],
) -> None:
    """Bulk deletes and prunes list their candidates once, then take each instance in its own
    transaction (one round trip each), so they never hold locks on many instances at once."""
    from duroxide.types import InstanceFilter, PruneOptions

    provider = open_provider()
    for n in range(4):
        instance_id = f"done{n}"
        provider.enqueue_orchestrator(instance_id, StartOrchestration(name="Hello"))
        turn = provider.fetch_orchestration_item(30_000)
        assert turn is not None
        provider.ack_orchestration_item(turn.lock_token, OrchestrationAck(
            instance=update("Completed", '"x"'),
            events=[OrchestrationStarted(event_id=1, timestamp_ms=turn.now_ms, name="Hello",
                                         version="1.0.0"),
                    OrchestrationCompleted(event_id=2, timestamp_ms=turn.now_ms, output='"x"')],
        ))  # fmt: skip
    count = Counter(provider)

    pruned = count.step("prune", lambda: provider.prune_executions_bulk(
        InstanceFilter(), PruneOptions(keep_last=1)))  # fmt: skip
    deleted = count.step("delete", lambda: provider.delete_instances_bulk(InstanceFilter()))

    assert pruned.instances_processed == 4
    assert deleted.instances_deleted == 4
    assert count.steps == [("prune", 1 + 4), ("delete", 1 + 4)]


def test_a_claiming_fetch_and_a_batch_ack_each_take_one_transaction_id(
    open_provider: Callable[..., PostgresProvider], schema: str, admin_conn: Any
) -> None:
    """The hot path runs without subtransactions: a fetch that claims several instances and
    an ack that commits their turns are one transaction id each (a subtransaction would take
    another one, and PostgreSQL's per-transaction overhead with it)."""
    provider = open_provider()
    for n in range(3):
        provider.enqueue_orchestrator(f"i{n}", StartOrchestration(name="Hello", version="1.0.0"))
    provider.close()  # flushes its notifications: from here on only the calls below write

    def next_xid() -> int:  # reading the counter assigns no transaction id
        row = admin_conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())").fetchone()
        return int(str(row[0]))

    name = sql.Identifier(schema)
    fetch = sql.SQL("SELECT o_lock_token, o_now_ms FROM {}.duroxide_fetch_orchestration_items("
                    "30000, 10, 'd1')").format(name)  # fmt: skip
    commit = sql.SQL("SELECT o_ok FROM {}.duroxide_commit_turns(%s::jsonb)").format(name)
    before = next_xid()
    claimed = admin_conn.execute(fetch).fetchall()
    after_fetch = next_xid()
    acks = [
        (token, OrchestrationAck(instance=update("Running"), events=[OrchestrationStarted(
            event_id=1, timestamp_ms=now, name="Hello", version="1.0.0")]))
        for token, now in claimed
    ]  # fmt: skip
    committed = admin_conn.execute(commit, (ack_documents(acks),)).fetchall()
    after_ack = next_xid()

    assert len(claimed) == 3 and committed == [(True,)] * 3
    assert (after_fetch - before, after_ack - after_fetch) == (1, 1)
