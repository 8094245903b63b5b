"""PostgreSQL storage: the worker queue (activities and their locks) and sessions.

Mixed into ``PostgresProvider``; it uses the provider's database (``_db``), queries (``_q``),
wake-up hub (``_wakeups``) and listener (``_listener``). Each operation is one round trip; the
batch operations the activity worker uses (``fetch_work_items``, ``ack_work_items``) are single
function calls whatever the batch size, and the single-item operations are batches of one.
"""

from __future__ import annotations

from collections.abc import Sequence

from duroxide.errors import LockLostError, ProviderError
from duroxide.providers.base import SessionConfig, WorkItem
from duroxide.providers.postgres.codec import tag_params, work_ack_documents, work_item
from duroxide.providers.postgres.connection import PgDatabase
from duroxide.providers.postgres.lean import LeanStatement
from duroxide.providers.postgres.listener import PgListener
from duroxide.providers.wakeup import ORCHESTRATOR, WORKER, WakeupHub
from duroxide.types import TagFilterSpec
from duroxide.work_items import OutboundMessage


class PostgresWorkerMixin:
    """The worker-queue and session operations of ``PostgresProvider``."""

    _db: PgDatabase
    _q: dict[str, str]
    _lean: dict[str, LeanStatement]
    _wakeups: WakeupHub
    _listener: PgListener

    def fetch_work_item(
        self,
        lock_timeout_ms: int,
        tag_filter: TagFilterSpec,
        session: SessionConfig | None = None,
    ) -> WorkItem | None:
        """Peek-lock the oldest due activity this worker may run (tag filter, session affinity
        and the worker's session limit), or None."""
        items = self.fetch_work_items(lock_timeout_ms, 1, tag_filter, session)
        return items[0] if items else None

    def fetch_work_items(
        self,
        lock_timeout_ms: int,
        max_items: int,
        tag_filter: TagFilterSpec,
        session: SessionConfig | None = None,
    ) -> list[WorkItem]:
        """Peek-lock up to ``max_items`` of the oldest due activities in one round trip (see
        ``fetch_work_item``), in queue order."""
        if tag_filter.mode == "none" or max_items <= 0:
            return []
        untagged, tags, any_tag = tag_params(tag_filter)
        rows = self._db.run(
            "fetch_work_item",
            self._lean["fetch_work_items"],
            (lock_timeout_ms, max_items, untagged, tags, any_tag,
             None if session is None else session.owner_id,
             0 if session is None else session.max_sessions,
             0 if session is None else session.lock_timeout_ms),
            fetch="all",
            retry="reconnect",  # as the orchestration fetch: a lost claim just expires
        )  # fmt: skip
        return [work_item(row) for row in rows]

    def ack_work_item(self, lock_token: str, completion: OutboundMessage | None) -> None:
        """Delete the locked activity and enqueue its completion atomically; ``LockLostError``
        if the lock was lost (cancelled, or expired and possibly taken by another worker)."""
        error = self.ack_work_items([(lock_token, completion)])[0]
        if error is not None:
            raise error

    def ack_work_items(
        self, acks: Sequence[tuple[str, OutboundMessage | None]]
    ) -> list[ProviderError | None]:
        """Ack several activities in one round trip and one transaction; per ack, None or
        ``LockLostError`` (its lock was lost: nothing of it was written)."""
        if not acks:
            return []
        documents, place = work_ack_documents(acks)
        rows = self._db.run(
            "ack_work_item",
            self._lean["ack_work_items"],
            (documents,),
            fetch="all",
            retry="reconnect",
        )
        results: list[ProviderError | None] = []
        completed = False
        for (_, completion), position in zip(acks, place, strict=True):
            if rows[position][0]:
                results.append(None)
                completed = completed or completion is not None
            else:
                results.append(LockLostError("ack_work_item"))
        if completed:
            self._wakeups.notify(ORCHESTRATOR)
            self._listener.post(orchestrator=(0,))
        return results

    def abandon_work_item(
        self, lock_token: str, *, delay_ms: int = 0, ignore_attempt: bool = False
    ) -> None:
        """Unlock the activity (due again at once, or after ``delay_ms``; ``ignore_attempt``
        undoes the fetch's attempt count). An unknown token does nothing."""
        delay = max(delay_ms, 0)
        changed = self._db.run(
            "abandon_work_item",
            self._lean["abandon_work_item"],
            {"delay_ms": delay, "ignore_attempt": ignore_attempt, "token": lock_token},
            fetch="rowcount",
            retry="reconnect",
        )
        if changed:
            # A delayed abandon (an activity this worker cannot run, a backoff) wakes only the
            # other processes at its due time, not this one (it polls): otherwise it retakes
            # the item first every time and starves a worker that can run it.
            if not delay:
                self._wakeups.notify(WORKER)
            self._listener.post(worker=(delay,))

    def renew_work_item_lock(self, lock_token: str, lock_timeout_ms: int) -> bool:
        """Extend a live activity lock to now + ``lock_timeout_ms`` (and mark its session active);
        False if the lock was lost — the activity's cancellation signal."""
        row = self._db.run(
            "renew_work_item_lock",
            self._lean["renew_work_item_lock"],
            {"token": lock_token, "lock_ms": lock_timeout_ms},
            retry="reconnect",
        )
        return bool(row[0])

    # --- sessions -------------------------------------------------------------------------------

    def renew_session_locks(
        self, owner_ids: Sequence[str], lock_timeout_ms: int, idle_timeout_ms: int
    ) -> int:
        """Extend the owners' live sessions that are busy (an activity of theirs is running, or
        they saw work within ``idle_timeout_ms``) to now + ``lock_timeout_ms``; release their
        idle ones. Returns how many were renewed."""
        if not owner_ids:
            return 0
        row = self._db.run(
            "renew_session_locks",
            self._q["renew_session_locks"],
            {"owners": list(owner_ids), "lock_ms": lock_timeout_ms, "idle_ms": idle_timeout_ms},
            retry="reconnect",
        )
        return int(row[0])

    def cleanup_orphaned_sessions(self) -> int:
        """Delete sessions whose lock expired and that have no queued activity."""
        return int(
            self._db.run(
                "cleanup_orphaned_sessions",
                self._q["cleanup_orphaned_sessions"],
                fetch="rowcount",
            )
        )
