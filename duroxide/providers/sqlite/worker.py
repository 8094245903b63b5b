"""The SQLite provider's worker queue: activities, their locks, and sessions.

A mixin of ``SqliteProvider`` (it uses the provider's ``_db``, ``_q`` and ``_wakeups``).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from duroxide.errors import LockLostError, ProviderError
from duroxide.providers.base import SessionConfig, WorkItem
from duroxide.providers.sql import Queries
from duroxide.providers.sqlite.connection import SqliteDatabase, now_ms
from duroxide.providers.wakeup import ORCHESTRATOR, WORKER, WakeupHub
from duroxide.types import TagFilterSpec
from duroxide.work_items import ActivityWorkItem, OutboundMessage


@lru_cache(maxsize=64)
def _tag_params(spec: TagFilterSpec) -> tuple[bool, bool, str]:
    """``(any_tag, untagged, tags_json)`` for the ``fetch_work_item`` query."""
    mode = spec.mode
    return (
        mode == "any",
        mode in ("default_only", "default_and"),
        json.dumps(list(spec.tags) if mode in ("tags", "default_and") else []),
    )


class SqliteWorkerQueueMixin:
    _db: SqliteDatabase
    _q: Queries
    _wakeups: WakeupHub

    def fetch_work_item(
        self,
        lock_timeout_ms: int,
        tag_filter: TagFilterSpec,
        session: SessionConfig | None = None,
    ) -> WorkItem | None:
        """Peek-lock the oldest visible activity this worker may run (tag filter, session
        affinity and the worker's session limit), or None."""
        items = self.fetch_work_items(lock_timeout_ms, 1, tag_filter, session)
        return items[0] if items else None

    def fetch_work_items(
        self,
        lock_timeout_ms: int,
        max_items: int,
        tag_filter: TagFilterSpec,
        session: SessionConfig | None = None,
    ) -> list[WorkItem]:
        """Peek-lock up to ``max_items`` activities in one transaction."""
        if tag_filter.mode == "none":
            return []
        rows = self._db.write(
            "fetch_work_item", self._fetch_work_many_tx, lock_timeout_ms, max_items, tag_filter,
            session,
        )  # fmt: skip
        return [self._to_work_item(row) for row in rows]

    def _fetch_work_many_tx(
        self, conn: sqlite3.Connection, lock_timeout_ms: int, max_items: int,
        tag_filter: TagFilterSpec, session: SessionConfig | None,
    ) -> list[Any]:  # fmt: skip
        rows: list[Any] = []
        while len(rows) < max_items:
            row = self._fetch_work_tx(conn, lock_timeout_ms, tag_filter, session)
            if row is None:
                break
            rows.append(row)
        return rows

    @staticmethod
    def _to_work_item(row: Any) -> WorkItem:
        token, payload, attempt_count, instance_id, execution_id, activity_id, tag = row
        try:
            item = ActivityWorkItem.from_json(payload)
        except (ValueError, TypeError) as exc:  # keep the ids: the runtime can still poison it
            item = ActivityWorkItem(instance_id=instance_id, execution_id=execution_id,
                                    activity_id=activity_id, name="", tag=tag)  # fmt: skip
            return WorkItem(lock_token=token, item=item, attempt_count=attempt_count,
                            decode_error=f"undecodable work item: {exc}")  # fmt: skip
        return WorkItem(lock_token=token, item=item, attempt_count=attempt_count)

    def _fetch_work_tx(
        self,
        conn: sqlite3.Connection,
        lock_timeout_ms: int,
        tag_filter: TagFilterSpec,
        session: SessionConfig | None,
    ) -> tuple[str, str, int] | None:
        now = now_ms()
        token = os.urandom(16).hex()
        any_tag, untagged, tags = _tag_params(tag_filter)
        row = conn.execute(
            self._q["fetch_work_item"],
            {
                "token": token,
                "locked_until": now + lock_timeout_ms,
                "now": now,
                "any_tag": any_tag,
                "untagged": untagged,
                "tags": tags,
                "owner": None if session is None else session.owner_id,
                "max_sessions": 0 if session is None else session.max_sessions,
            },
        ).fetchone()
        if row is None:
            return None
        session_id, payload, attempt_count, instance_id, execution_id, activity_id, tag = row
        if session_id is not None and session is not None:
            conn.execute(
                self._q["claim_session"],
                {
                    "session_id": session_id,
                    "owner": session.owner_id,
                    "locked_until": now + session.lock_timeout_ms,
                    "now": now,
                },
            )
        return token, payload, attempt_count, instance_id, execution_id, activity_id, tag

    def ack_work_item(self, lock_token: str, completion: OutboundMessage | None) -> None:
        """Delete the locked activity and enqueue its completion atomically; ``LockLostError``
        if the lock was lost (cancelled, or expired and possibly taken by another worker)."""
        error = self.ack_work_items([(lock_token, completion)])[0]
        if error is not None:
            raise error

    def ack_work_items(
        self, acks: Sequence[tuple[str, OutboundMessage | None]]
    ) -> list[ProviderError | None]:
        """Ack several activities in one transaction, each on its own."""
        outcomes = self._db.write_each("ack_work_item", self._ack_work_tx, list(acks))
        errors = [o if isinstance(o, ProviderError) else None for o in outcomes]
        if any(e is None and c is not None for e, (_, c) in zip(errors, acks, strict=True)):
            self._wakeups.notify(ORCHESTRATOR)
        return errors

    def _ack_work_tx(
        self, conn: sqlite3.Connection, lock_token: str, completion: OutboundMessage | None
    ) -> None:
        q = self._q
        now = now_ms()
        row = conn.execute(q["ack_work_item"], (lock_token, now)).fetchone()
        if row is None:
            raise LockLostError("ack_work_item")
        if row[0] is not None:
            conn.execute(q["touch_session"], (now, row[0]))
        if completion is not None:
            message = completion.message
            conn.execute(
                q["enqueue_orchestrator"],
                (completion.instance_id, message.kind, message.to_json(), now, now, 0),
            )

    def abandon_work_item(
        self, lock_token: str, *, delay_ms: int = 0, ignore_attempt: bool = False
    ) -> None:
        """Unlock the activity (visible again after ``delay_ms``; ``ignore_attempt`` undoes the
        fetch's attempt count). An unknown token does nothing."""
        changed = self._db.execute(
            "abandon_work_item",
            self._q["abandon_work_item"],
            {
                "delay_ms": delay_ms,
                "now": now_ms(),
                "uncount": int(ignore_attempt),
                "token": lock_token,
            },
        )
        if changed:
            self._wakeups.notify(WORKER, delay_ms if delay_ms > 0 else None)

    def renew_work_item_lock(self, lock_token: str, lock_timeout_ms: int) -> bool:
        """Extend a live activity lock to now + ``lock_timeout_ms`` (and mark its session active);
        False if the lock was lost — the activity's cancellation signal."""
        return self._db.write(
            "renew_work_item_lock", self._renew_work_tx, lock_token, lock_timeout_ms
        )

    def _renew_work_tx(
        self, conn: sqlite3.Connection, lock_token: str, lock_timeout_ms: int
    ) -> bool:
        now = now_ms()
        row = conn.execute(
            self._q["renew_work_item_lock"], (now + lock_timeout_ms, lock_token, now)
        ).fetchone()
        if row is None:
            return False
        if row[0] is not None:
            conn.execute(self._q["touch_session"], (now, row[0]))
        return True

    # --- sessions -------------------------------------------------------------------------------

    def renew_session_locks(
        self, owner_ids: Sequence[str], lock_timeout_ms: int, idle_timeout_ms: int
    ) -> int:
        """Extend the owners' live sessions that saw work within ``idle_timeout_ms`` to now +
        ``lock_timeout_ms``; release their idle ones. Returns how many were renewed."""
        if not owner_ids:
            return 0
        return self._db.write(
            "renew_session_locks",
            self._renew_sessions_tx,
            json.dumps(list(owner_ids)),
            lock_timeout_ms,
            idle_timeout_ms,
        )

    def _renew_sessions_tx(
        self, conn: sqlite3.Connection, owners: str, lock_timeout_ms: int, idle_timeout_ms: int
    ) -> int:
        now = now_ms()
        params = {
            "owners": owners,
            "now": now,
            "idle_before": now - idle_timeout_ms,
            "locked_until": now + lock_timeout_ms,
        }
        renewed = conn.execute(self._q["renew_sessions"], params).rowcount
        conn.execute(self._q["release_idle_sessions"], params)
        return renewed

    def cleanup_orphaned_sessions(self) -> int:
        """Delete sessions whose lock expired and that have no queued activity."""
        return self._db.execute(
            "cleanup_orphaned_sessions", self._q["cleanup_orphaned_sessions"], (now_ms(),)
        )

    # --- client reads ---------------------------------------------------------------------------
