"""PostgreSQL storage: the ``Provider`` half (orchestrator queue, turns, client reads); the
worker queue and sessions are in ``worker``, the admin operations in ``admin``.

Every operation is exactly one round trip — one statement or one call of a plpgsql function
from ``schema.sql`` — and therefore one transaction; the batch operations the runtime's
dispatchers use (``fetch_orchestration_items``, ``ack_orchestration_items``) are single calls
too, whatever the batch size, and the single-item operations are batches of one. (An ack
whose batch holds a failing turn takes a second round trip that isolates the turns.)
Times come from the database clock (``duroxide_now_ms()``), read once per operation.
After a successful write, the in-process wake-up hub is notified at once and the other
processes are told through ``PgListener.post`` (LISTEN/NOTIFY, sent outside the transaction).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from duroxide.errors import ErrorDetails, ProviderError
from duroxide.history import Event
from duroxide.providers.base import InstanceStatus, OrchestrationAck, OrchestrationItem
from duroxide.providers.postgres.admin import PostgresAdminMixin
from duroxide.providers.postgres.codec import (
    ack_documents,
    decode_history,
    orchestration_item,
    outcome,
)
from duroxide.providers.postgres.connection import (
    DEFAULT_SCHEMA,
    PgDatabase,
    PgOptions,
    channel_name,
    validate_schema,
)
from duroxide.providers.postgres.listener import PgListener
from duroxide.providers.postgres.migrations import ensure_schema, verify_schema
from duroxide.providers.postgres.worker import PostgresWorkerMixin
from duroxide.providers.wakeup import ORCHESTRATOR, STATUS, WORKER, WakeupHub
from duroxide.work_items import ActivityKey, Message

MIGRATE_ENV = "DUROXIDE_PG_MIGRATE"
#: SQLSTATE of a lock wait that outlived lock_timeout.
LOCK_NOT_AVAILABLE = "55P03"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")

__all__ = ["PostgresProvider", "decode_history", "resolve_migrate"]


def resolve_migrate(migrate: bool | None, environ: Mapping[str, str] | None = None) -> bool:
    """``migrate`` if given, else ``DUROXIDE_PG_MIGRATE`` (``0``/``1``, also false/true), else
    True. Raises ``ValueError`` for any other value."""
    if migrate is not None:
        if not isinstance(migrate, bool):
            raise TypeError(f"migrate must be a bool, got {type(migrate).__name__}")
        return migrate
    raw = (os.environ if environ is None else environ).get(MIGRATE_ENV, "").strip().lower()
    if not raw or raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"{MIGRATE_ENV}={raw!r} is not valid: use 0 or 1")


class PostgresProvider(PostgresWorkerMixin, PostgresAdminMixin):
    """``Provider`` and ``ProviderAdmin`` over one schema of a PostgreSQL database.

    One object may serve any number of runtimes and clients on any number of threads (a
    connection pool); any number of processes on any number of machines may share the schema.
    Create it with ``connect`` or ``connect_with_schema``; ``close()`` releases everything.
    """

    def __init__(
        self, url: str, schema: str = DEFAULT_SCHEMA, *, migrate: bool | None = None,
        **options: Any,
    ) -> None:  # fmt: skip
        """Connect to ``url``, create or migrate ``schema`` and start the listener.

        ``migrate`` (``DUROXIDE_PG_MIGRATE=0|1``, default true): when false, the schema is only
        verified — it must exist at ``latest_version()`` or newer, else a non-retryable
        ``ProviderError`` says to run ``duroxide migrate`` — so processes with DML-only
        credentials never run DDL. ``options`` (keywords win over ``DUROXIDE_PG_*`` environment
        variables): ``min_size``, ``max_size``, ``pool_timeout_s``, ``connect_timeout_s``,
        ``statement_timeout_ms``, ``prepare_threshold``, ``read_attempts`` — see ``PgOptions``.
        Raises ``ValueError`` for a bad schema name or option and ``ProviderError`` when the
        database is unusable.
        """
        self._schema = validate_schema(schema)
        options_ = PgOptions.resolve(options)
        if resolve_migrate(migrate):
            ensure_schema(url, self._schema, options_)
        else:
            verify_schema(url, self._schema, options_)
        self._db = PgDatabase(url, self._schema, options_)
        self._q = self._db.queries
        self._lean = self._db.lean
        self._wakeups = WakeupHub()
        listener_kwargs = {**options_.connect_kwargs(url), "prepare_threshold": None}
        try:
            self._listener = PgListener(
                url, listener_kwargs, channel_name(self._schema), self._wakeups
            )
        except BaseException:
            self._db.close()
            raise
        self._wakeups.bind_watcher(self._listener.watch)
        self._listener.wait_listening(options_.connect_timeout_s)

    @classmethod
    def connect(cls, url: str, **options: Any) -> PostgresProvider:
        """A provider on the schema ``duroxide`` of the database at ``url``."""
        return cls(url, DEFAULT_SCHEMA, **options)

    @classmethod
    def connect_with_schema(cls, url: str, schema: str, **options: Any) -> PostgresProvider:
        """A provider on ``schema`` (one tenant; created when missing unless ``migrate=False``)
        of the database at ``url``. ``schema`` must match ``^[a-z_][a-z0-9_]{0,62}$``."""
        return cls(url, schema, **options)

    @property
    def schema(self) -> str:
        return self._schema

    @property
    def wakeups(self) -> WakeupHub:
        return self._wakeups

    @property
    def round_trips(self) -> int:
        """Round trips this provider made for its operations (one per operation)."""
        return self._db.round_trips

    @property
    def listener_pid(self) -> int | None:
        """Server process id of the LISTEN connection (None while it reconnects)."""
        return self._listener.pid

    def now_ms(self) -> int:
        """The database clock in milliseconds."""
        row = self._db.run("now_ms", self._lean["now_ms"], retry="read")
        return int(row[0])

    def close(self) -> None:
        """Flush pending notifications, stop the listener, close the pool and wake every
        waiter; later calls raise ``ProviderError``."""
        self._listener.close()
        self._db.close()
        self._wakeups.interrupt()

    # --- orchestrator queue ---------------------------------------------------------------------

    def enqueue_orchestrator(
        self, instance_id: str, message: Message, *, delay_ms: int = 0
    ) -> None:
        """Queue ``message`` for ``instance_id``, visible after ``delay_ms``. Never creates the
        instance row."""
        delay = max(delay_ms, 0)
        self._db.run(
            "enqueue_orchestrator",
            self._lean["enqueue_orchestrator"],
            {"instance_id": instance_id, "kind": message.kind, "payload": message.to_json(),
             "delay_ms": delay},
            fetch="all",
        )  # fmt: skip
        self._wakeups.notify(ORCHESTRATOR, delay or None)
        self._listener.post(orchestrator=(delay,))

    def fetch_orchestration_item(
        self, lock_timeout_ms: int, *, dispatcher_id: str | None = None
    ) -> OrchestrationItem | None:
        """Lock one instance with due messages and no live lock; return its current-execution
        history (None when ``dispatcher_id`` acked its last turn) and all its due messages
        (each attempt count +1), or None."""
        items = self.fetch_orchestration_items(lock_timeout_ms, 1, dispatcher_id=dispatcher_id)
        return items[0] if items else None

    def fetch_orchestration_items(
        self, lock_timeout_ms: int, max_items: int, *, dispatcher_id: str | None = None
    ) -> list[OrchestrationItem]:
        """Lock up to ``max_items`` distinct instances in one round trip (see
        ``fetch_orchestration_item``)."""
        if max_items <= 0:
            return []
        # A fetch is retried at once on a fresh connection when the pooled one turned out dead
        # (an idle connection killed since its last use): a claim lost with its connection
        # just expires, like any abandoned lock.
        try:
            rows = self._db.run(
                "fetch_orchestration_item",
                self._lean["fetch_orchestration_items"],
                (lock_timeout_ms, max_items, dispatcher_id),
                fetch="all",
                retry="reconnect",
            )
        except ProviderError as exc:
            if exc.sqlstate == LOCK_NOT_AVAILABLE:  # a deletion holds the messages: skip them
                return []  # this time (the claim was rolled back with the statement)
            raise
        return [orchestration_item(row) for row in rows]

    def read_history(
        self, instance_id: str, execution_id: int, after_event_id: int = 0
    ) -> list[Event]:
        """Events of one execution after ``after_event_id``, in order."""
        rows = self._db.run(
            "read_history",
            self._lean["read_history"],
            (instance_id, execution_id, after_event_id),
            fetch="all",
            retry="read",
        )
        return decode_history(rows, "read_history")

    def ack_orchestration_item(self, lock_token: str, ack: OrchestrationAck) -> None:
        """Commit a turn atomically; ``LockLostError`` if the lock is unknown or expired, or
        if the instance's history changed since the fetch (then the turn was computed from a
        stale history). A duplicate history event id fails the whole ack (``ProviderError``,
        not retryable)."""
        error = self.ack_orchestration_items([(lock_token, ack)])[0]
        if error is not None:
            raise error

    def ack_orchestration_items(
        self, acks: Sequence[tuple[str, OrchestrationAck]]
    ) -> list[ProviderError | None]:
        """Commit several turns in one round trip and one transaction, each all-or-nothing on
        its own: per ack, None (committed) or the error that rolled back just that one. (When
        the batch fails as a whole, a second call isolates each turn in a subtransaction.)"""
        if not acks:
            return []
        documents = ack_documents(acks)
        try:  # all turns in one transaction, without a subtransaction (nor its transaction id)
            rows = self._db.run("ack_orchestration_item", self._lean["commit_turns"],
                                (documents,), fetch="all", retry="reconnect")  # fmt: skip
        except ProviderError as exc:
            if exc.retryable:  # the database or the connection failed, not a turn
                raise
            # a turn failed (a duplicate event id): commit the others, each on its own
            rows = self._db.run("ack_orchestration_item", self._lean["ack_orchestration_items"],
                                (documents,), fetch="all", retry="reconnect")  # fmt: skip
        results: list[ProviderError | None] = []
        hub = self._wakeups
        delays: list[int] = []
        worker = status = False
        cancelled: list[ActivityKey] = []
        for (_, ack), (ok, state, error, now, pending, gone) in zip(acks, rows, strict=True):
            results.append(outcome("ack_orchestration_item", ok, state, error))
            if not ok:
                continue
            if pending:
                delays.append(0)
            for item in ack.orchestrator_items:
                due = item.visible_at_ms
                delays.append(due - now if due is not None and due > now else 0)
            worker = worker or bool(ack.worker_items)
            status = status or ack.instance is not None or bool(ack.kv)
            if gone:
                deleted = {tuple(key) for key in gone}
                cancelled += [
                    k for k in ack.cancelled_activities
                    if (k.instance_id, k.execution_id, k.activity_id) in deleted
                ]  # fmt: skip
        for delay in set(delays):
            hub.notify(ORCHESTRATOR, delay or None)
        if worker:
            hub.notify(WORKER)
        if status:
            hub.notify(STATUS)
        hub.publish_cancelled(cancelled)
        if delays or worker or status or cancelled:
            self._listener.post(orchestrator=delays, worker=[0] if worker else [],
                                status=status, cancelled=cancelled)  # fmt: skip
        return results

    def abandon_orchestration_item(
        self, lock_token: str, *, delay_ms: int = 0, ignore_attempt: bool = False
    ) -> None:
        """Release the lock and return its messages to the queue; with ``delay_ms`` the instance
        stays parked (no fetch takes it) for that long. ``ignore_attempt`` undoes the fetch's
        attempt count. An unknown token does nothing."""
        delay = max(delay_ms, 0)
        row = self._db.run(
            "abandon_orchestration_item",
            self._lean["abandon_orchestration_item"],
            {"token": lock_token, "delay_ms": delay, "ignore_attempt": ignore_attempt},
            retry="reconnect",
        )
        if row[0]:
            self._wakeups.notify(ORCHESTRATOR, delay or None)
            self._listener.post(orchestrator=(delay,))

    def renew_orchestration_item_lock(self, lock_token: str, lock_timeout_ms: int) -> bool:
        """Extend a live instance lock to now + ``lock_timeout_ms``; False if it was lost."""
        changed = self._db.run(
            "renew_orchestration_item_lock",
            self._lean["renew_orchestration_item_lock"],
            {"token": lock_token, "lock_ms": lock_timeout_ms},
            fetch="rowcount",
            retry="reconnect",
        )
        return changed > 0

    # --- client reads ---------------------------------------------------------------------------

    def get_instance_status(self, instance_id: str) -> InstanceStatus | None:
        row = self._db.run(
            "get_instance_status", self._lean["instance_status"], (instance_id,), retry="read"
        )
        if row is None:
            return None
        name, version, status, execution_id, output, error, custom, custom_version = row
        return InstanceStatus(
            orchestration_name=name,
            orchestration_version=version,
            status=status,
            current_execution_id=execution_id,
            output=output,
            error=None if error is None else ErrorDetails.from_json(json.loads(error)),
            custom_status=custom,
            custom_status_version=custom_version,
        )

    def get_kv_value(self, instance_id: str, key: str) -> str | None:
        row = self._db.run("get_kv_value", self._lean["kv_value"], (instance_id, key), retry="read")
        return None if row is None else row[0]

    def get_kv_all_values(self, instance_id: str) -> dict[str, str]:
        rows = self._db.run(
            "get_kv_all_values", self._lean["kv_all_values"], (instance_id,), fetch="all",
            retry="read",
        )  # fmt: skip
        return dict(rows)
