"""SQLite storage: the ``Provider`` half (queues, locks, turns, sessions, client reads).

Every write operation is one transaction on the provider's single connection (see
``connection``); wake-ups are sent only after the commit. Clock: ``now_ms()`` is this process's
wall clock in milliseconds. A multi-statement operation reads it once, inside its transaction,
so all its statements agree on ``now``; a single-statement one reads it just before.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from typing import Any

from duroxide.errors import ErrorDetails, LockLostError, ProviderError
from duroxide.history import Event, event_to_record
from duroxide.providers.base import (
    START_BIAS_MS,
    InstanceState,
    InstanceStatus,
    OrchestrationAck,
    OrchestrationItem,
)
from duroxide.providers.sqlite.admin import SqliteAdminMixin
from duroxide.providers.sqlite.connection import (
    MEMORY,
    SqliteDatabase,
    decode_history,
    now_ms,
    path_from_url,
)
from duroxide.providers.sqlite.worker import SqliteWorkerQueueMixin
from duroxide.providers.wakeup import ORCHESTRATOR, STATUS, WORKER, WakeupHub
from duroxide.work_items import (
    ActivityKey,
    Message,
    MessageKind,
    QueuedMessage,
    message_from_json,
)

_TERMINAL = ("Completed", "Failed")

#: What the fetch transaction read: now, instance id, token, state, execution id, history rows
#: and stamped message rows (decoded after the connection lock is released).
_Fetched = tuple[int, str, str, InstanceState | None, int, int, list[Any] | None, list[Any]]


def _decode_message(seq: int, kind: str, payload: str, attempt_count: int) -> QueuedMessage:
    try:
        message: Message | None = message_from_json(kind, payload)
    except ValueError as exc:
        return QueuedMessage(
            seq=seq, kind=kind, message=None, attempt_count=attempt_count, decode_error=str(exc)
        )
    return QueuedMessage(seq=seq, kind=kind, message=message, attempt_count=attempt_count)


class SqliteProvider(SqliteWorkerQueueMixin, SqliteAdminMixin):
    """``Provider`` and ``ProviderAdmin`` over one SQLite database (a file or in memory).

    One object may be shared by any number of runtimes and clients on any number of threads;
    several processes may open the same file (WAL mode, ``BEGIN IMMEDIATE``, busy timeout).
    An in-memory database is private to its provider object.
    """

    def __init__(self, path: str) -> None:
        """Open (creating if needed) the database at ``path``; ``":memory:"`` for in-memory."""
        self._db = SqliteDatabase(path)
        self._q = self._db.queries
        self._wakeups = WakeupHub()

    @classmethod
    def open(cls, url: str) -> SqliteProvider:
        """Open ``sqlite:path.db``, ``sqlite:///abs.db``, ``sqlite://rel.db``, a bare path, or
        ``sqlite::memory:``."""
        return cls(path_from_url(url))

    @classmethod
    def in_memory(cls) -> SqliteProvider:
        """A fresh private in-memory database."""
        return cls(MEMORY)

    @property
    def wakeups(self) -> WakeupHub:
        return self._wakeups

    def now_ms(self) -> int:
        return now_ms()

    def close(self) -> None:
        """Close the connection and wake every waiter; later calls raise ``ProviderError``."""
        self._db.close()
        self._wakeups.interrupt()

    # --- orchestrator queue ---------------------------------------------------------------------

    def enqueue_orchestrator(
        self, instance_id: str, message: Message, *, delay_ms: int = 0
    ) -> None:
        """Queue ``message`` for ``instance_id``, visible after ``delay_ms``. Never creates the
        instance row."""
        now = now_ms()
        self._db.execute(
            "enqueue_orchestrator",
            self._q["enqueue_orchestrator"],
            (instance_id, message.kind, message.to_json(), now + max(delay_ms, 0), now,
             START_BIAS_MS if message.kind == MessageKind.START else 0),
        )  # fmt: skip
        self._wakeups.notify(ORCHESTRATOR, delay_ms or None)

    def fetch_orchestration_item(
        self, lock_timeout_ms: int, *, dispatcher_id: str | None = None
    ) -> OrchestrationItem | None:
        """Lock one instance with visible messages and no live lock; return its current-execution
        history (omitted when ``dispatcher_id`` acked its last turn) and all its visible messages
        (each attempt count +1), or None."""
        items = self.fetch_orchestration_items(lock_timeout_ms, 1, dispatcher_id=dispatcher_id)
        return items[0] if items else None

    def fetch_orchestration_items(
        self, lock_timeout_ms: int, max_items: int, *, dispatcher_id: str | None = None
    ) -> list[OrchestrationItem]:
        """Lock up to ``max_items`` distinct instances in one transaction."""
        fetched = self._db.write(
            "fetch_orchestration_item", self._fetch_many_tx, lock_timeout_ms, max_items,
            dispatcher_id,
        )  # fmt: skip
        return [self._to_item(f) for f in fetched]

    def _fetch_many_tx(
        self, conn: sqlite3.Connection, lock_timeout_ms: int, max_items: int,
        dispatcher_id: str | None,
    ) -> list[_Fetched]:  # fmt: skip
        fetched: list[_Fetched] = []
        while len(fetched) < max_items:
            one = self._fetch_orchestration_tx(conn, lock_timeout_ms, dispatcher_id)
            if one is None:
                break
            fetched.append(one)
        return fetched

    @staticmethod
    def _to_item(fetched: _Fetched) -> OrchestrationItem:
        now, instance_id, token, state, execution_id, history_len, history_rows, message_rows = (
            fetched
        )
        history, history_error = None, None
        if history_rows is not None:
            try:
                history = decode_history(history_rows, "fetch_orchestration_item")
            except ProviderError as exc:  # the runtime backs off and poisons it in the end
                history_error = exc.message
        return OrchestrationItem(
            instance_id=instance_id,
            lock_token=token,
            now_ms=now,
            instance=state,
            execution_id=execution_id,
            history=history,
            history_len=history_len,
            # in the order the messages became due, so a race is won by what was ready first
            messages=[_decode_message(*row[1:]) for row in sorted(message_rows)],
            history_error=history_error,
        )

    def read_history(
        self, instance_id: str, execution_id: int, after_event_id: int = 0
    ) -> list[Event]:
        """Events of one execution after ``after_event_id``, in order."""
        rows = self._db.fetch_all(
            "read_history", self._q["read_history"], (instance_id, execution_id, after_event_id)
        )
        return decode_history(rows, "read_history")

    def _fetch_orchestration_tx(
        self, conn: sqlite3.Connection, lock_timeout_ms: int, dispatcher_id: str | None
    ) -> _Fetched | None:
        q = self._q
        now = now_ms()
        token = os.urandom(16).hex()
        locked = conn.execute(
            q["lock_next_instance"],
            {"token": token, "locked_until": now + lock_timeout_ms, "now": now,
             "dispatcher_id": dispatcher_id, "bias": START_BIAS_MS},
        ).fetchone()  # fmt: skip
        if locked is None:
            return None
        instance_id = locked[0]
        messages = conn.execute(
            q["stamp_messages"], {"token": token, "instance_id": instance_id, "now": now}
        ).fetchall()
        row = conn.execute(q["instance_state"], (instance_id,)).fetchone()
        state = None
        execution_id, history_len, last_dispatcher = 1, 0, None
        if row is not None:
            (name, version, status, execution_id, custom_status, custom_status_version,
             last_dispatcher, history_len) = row  # fmt: skip
            state = InstanceState(
                orchestration_name=name,
                orchestration_version=version,
                status=status,
                current_execution_id=execution_id,
                custom_status=custom_status,
                custom_status_version=custom_status_version,
            )
        history = None
        if dispatcher_id is None or last_dispatcher != dispatcher_id:
            history = conn.execute(q["read_history"], (instance_id, execution_id, 0)).fetchall()
        return now, instance_id, token, state, execution_id, history_len, history, messages

    def ack_orchestration_item(self, lock_token: str, ack: OrchestrationAck) -> None:
        """Commit a turn atomically; ``LockLostError`` if the lock is unknown or expired.

        A duplicate history event id fails the whole ack (``ProviderError``, not retryable).
        """
        error = self.ack_orchestration_items([(lock_token, ack)])[0]
        if error is not None:
            raise error

    def ack_orchestration_items(
        self, acks: Sequence[tuple[str, OrchestrationAck]]
    ) -> list[ProviderError | None]:
        """Commit several turns in one transaction, each all-or-nothing on its own."""
        outcomes = self._db.write_each(
            "ack_orchestration_item", self._ack_orchestration_tx, list(acks)
        )
        hub = self._wakeups
        worker = immediate = status = False
        cancelled: list[ActivityKey] = []
        for (_, ack), outcome in zip(acks, outcomes, strict=True):
            if isinstance(outcome, ProviderError):
                continue
            now, pending, gone = outcome
            worker = worker or bool(ack.worker_items)
            immediate = immediate or pending
            for item in ack.orchestrator_items:
                if item.visible_at_ms is not None and item.visible_at_ms > now:
                    hub.notify(ORCHESTRATOR, item.visible_at_ms - now)
                else:
                    immediate = True
            status = status or ack.instance is not None or bool(ack.kv)
            cancelled += gone
        if worker:
            hub.notify(WORKER)
        if immediate:
            hub.notify(ORCHESTRATOR)
        if status:
            hub.notify(STATUS)
        hub.publish_cancelled(cancelled)
        return [o if isinstance(o, ProviderError) else None for o in outcomes]

    def _ack_orchestration_tx(
        self, conn: sqlite3.Connection, lock_token: str, ack: OrchestrationAck
    ) -> tuple[int, bool, list[ActivityKey]]:
        q = self._q
        now = now_ms()
        locked = conn.execute(q["take_live_lock"], (lock_token, now)).fetchone()
        if locked is None:
            raise LockLostError("ack_orchestration_item")
        instance_id: str = locked[0]
        dispatcher_id: str | None = locked[1]
        update = ack.instance
        if update is not None:
            execution_id = update.execution_id
            conn.execute(
                q["upsert_instance"],
                {
                    "instance_id": instance_id,
                    "name": update.orchestration_name,
                    "version": update.orchestration_version,
                    "status": update.status,
                    "current_execution_id": update.next_execution_id or execution_id,
                    "output": update.output,
                    "error": None if update.error is None else json.dumps(update.error.to_json()),
                    "custom_status_changed": update.custom_status_changed,
                    "custom_status": update.custom_status,
                    "parent_instance_id": update.parent_instance_id,
                    "parent_execution_id": update.parent_execution_id,
                    "parent_event_id": update.parent_event_id,
                    "trace_context": update.trace_context,
                    "dispatcher_id": dispatcher_id,
                    "now": now,
                    "completed_at": now if update.status in _TERMINAL else None,
                },
            )
            finished = None if update.execution_status == "Running" else now
            conn.execute(
                q["upsert_execution"],
                (instance_id, execution_id, update.execution_status, update.output, now,
                 finished, len(ack.events)),
            )  # fmt: skip
            if update.next_execution_id is not None:
                conn.execute(
                    q["insert_next_execution"], (instance_id, update.next_execution_id, now)
                )
            conn.executemany(
                q["insert_event"],
                [(instance_id, execution_id, *event_to_record(e)) for e in ack.events],
            )
        if ack.kv:
            conn.executemany(q["delete_kv"], [(instance_id, key) for key in ack.kv.deletes])
            conn.executemany(
                q["upsert_kv"],
                [(instance_id, k, v, at) for k, (v, at) in ack.kv.upserts.items()],
            )
        if ack.worker_items:
            conn.executemany(
                q["insert_work_item"],
                [
                    (w.instance_id, w.execution_id, w.activity_id, w.to_json(), w.session_id,
                     w.tag, now)
                    for w in ack.worker_items
                ],
            )  # fmt: skip
        if ack.orchestrator_items:
            conn.executemany(
                q["enqueue_orchestrator"],
                [
                    (o.instance_id, o.message.kind, o.message.to_json(),
                     now if o.visible_at_ms is None else o.visible_at_ms, now, 0)
                    for o in ack.orchestrator_items
                ],
            )  # fmt: skip
        cancel_sql = q["cancel_work_item"]
        cancelled = [
            key
            for key in ack.cancelled_activities
            if conn.execute(
                cancel_sql, (key.instance_id, key.execution_id, key.activity_id)
            ).rowcount
        ]
        conn.execute(q["delete_stamped_messages"], (instance_id, lock_token))
        pending = conn.execute(q["has_visible_messages"], (instance_id, now)).fetchone()[0]
        return now, bool(pending), cancelled

    def abandon_orchestration_item(
        self, lock_token: str, *, delay_ms: int = 0, ignore_attempt: bool = False
    ) -> None:
        """Release the lock and return its messages to the queue; with ``delay_ms`` the instance
        stays parked (no fetch takes it) for that long. ``ignore_attempt`` undoes the fetch's
        attempt count. An unknown token does nothing."""
        released = self._db.write(
            "abandon_orchestration_item",
            self._abandon_orchestration_tx,
            lock_token,
            delay_ms,
            ignore_attempt,
        )
        if released:
            self._wakeups.notify(ORCHESTRATOR, delay_ms if delay_ms > 0 else None)

    def _abandon_orchestration_tx(
        self, conn: sqlite3.Connection, lock_token: str, delay_ms: int, ignore_attempt: bool
    ) -> bool:
        q = self._q
        if delay_ms > 0:
            parked = {"parked": f"parked-{os.urandom(16).hex()}", "now": now_ms(),
                      "delay_ms": delay_ms, "token": lock_token}  # fmt: skip
            row = conn.execute(q["park_lock"], parked).fetchone()
        else:
            row = conn.execute(q["release_lock"], (lock_token,)).fetchone()
        if row is None:
            return False
        conn.execute(
            q["unstamp_messages"],
            {"uncount": int(ignore_attempt), "instance_id": row[0], "token": lock_token},
        )
        return True

    def renew_orchestration_item_lock(self, lock_token: str, lock_timeout_ms: int) -> bool:
        """Extend a live instance lock to now + ``lock_timeout_ms``; False if it was lost."""
        now = now_ms()
        return bool(
            self._db.execute(
                "renew_orchestration_item_lock",
                self._q["renew_instance_lock"],
                (now + lock_timeout_ms, lock_token, now),
            )
        )

    # --- worker queue ---------------------------------------------------------------------------

    def get_instance_status(self, instance_id: str) -> InstanceStatus | None:
        row = self._db.fetch_one("get_instance_status", self._q["instance_status"], (instance_id,))
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
        row = self._db.fetch_one("get_kv_value", self._q["kv_value"], (instance_id, key))
        return None if row is None else row[0]

    def get_kv_all_values(self, instance_id: str) -> dict[str, str]:
        return dict(
            self._db.fetch_all("get_kv_all_values", self._q["kv_all_values"], (instance_id,))
        )
