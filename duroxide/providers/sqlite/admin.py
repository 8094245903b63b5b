"""SQLite storage: the ``ProviderAdmin`` half (listing, trees, deletion, pruning, metrics).

Mixed into ``SqliteProvider``; it uses the provider's database (``_db``), queries (``_q``) and
wake-up hub (``_wakeups``). Each deletion or prune of one instance is one transaction; bulk
operations run one transaction per instance so they never hold the write lock for long.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from duroxide.errors import InstanceNotFoundError, InvalidOperationError
from duroxide.providers.sql import Queries
from duroxide.providers.sqlite.connection import SqliteDatabase, now_ms
from duroxide.providers.wakeup import STATUS, WakeupHub
from duroxide.types import (
    DeleteInstanceResult,
    ExecutionInfo,
    InstanceFilter,
    InstanceInfo,
    InstanceTree,
    OrchestrationStats,
    PruneOptions,
    PruneResult,
    QueueDepths,
    SystemMetrics,
)
from duroxide.work_items import ActivityKey

_NO_FILTER = InstanceFilter()


def _instance_info(row: Any) -> InstanceInfo:
    return InstanceInfo(
        instance_id=row[0],
        orchestration_name=row[1],
        orchestration_version=row[2],
        status=row[3],
        current_execution_id=row[4],
        created_at=row[5],
        updated_at=row[6],
        parent_instance_id=row[7],
        output=row[8],
        error=row[9],
        custom_status=row[10],
        custom_status_version=row[11],
    )


def _sum_deletes(results: list[DeleteInstanceResult]) -> DeleteInstanceResult:
    return DeleteInstanceResult(
        instances_deleted=sum(r.instances_deleted for r in results),
        executions_deleted=sum(r.executions_deleted for r in results),
        events_deleted=sum(r.events_deleted for r in results),
        queue_messages_deleted=sum(r.queue_messages_deleted for r in results),
    )


class SqliteAdminMixin:
    """``ProviderAdmin`` for ``SqliteProvider``."""

    _db: SqliteDatabase
    _q: Queries
    _wakeups: WakeupHub

    # --- reads ----------------------------------------------------------------------------------

    def list_instances(
        self,
        filter: InstanceFilter | None = None,
        *,
        after_id: str | None = None,
        limit: int | None = None,
    ) -> list[InstanceInfo]:
        """Instances matching ``filter`` ordered by id, starting after ``after_id``; at most
        ``limit`` (and at most ``filter.limit``) of them."""
        rows = self._db.fetch_all(
            "list_instances",
            self._q["list_instances"],
            self._filter_params(filter or _NO_FILTER, after_id, limit, terminal_roots=False),
        )
        return [_instance_info(row) for row in rows]

    @staticmethod
    def _filter_params(
        filter: InstanceFilter, after_id: str | None, limit: int | None, *, terminal_roots: bool
    ) -> dict[str, Any]:
        limits = [n for n in (limit, filter.limit) if n is not None]
        ids = filter.instance_ids
        return {
            "after_id": after_id,
            "instance_ids": None if ids is None else json.dumps(list(ids)),
            "status": filter.status,
            "orchestration_name": filter.orchestration_name,
            "created_before": filter.created_before,
            "created_after": filter.created_after,
            "completed_before": filter.completed_before,
            "terminal_roots": terminal_roots,
            "limit": max(min(limits), 0) if limits else -1,
        }

    def get_instance_info(self, instance_id: str) -> InstanceInfo | None:
        row = self._db.fetch_one("get_instance_info", self._q["instance_info"], (instance_id,))
        return None if row is None else _instance_info(row)

    def get_execution_info(self, instance_id: str, execution_id: int) -> ExecutionInfo | None:
        row = self._db.fetch_one(
            "get_execution_info", self._q["execution_info"], (instance_id, execution_id)
        )
        if row is None:
            return None
        execution, status, event_count, started_at, completed_at, output = row
        return ExecutionInfo(
            execution_id=execution,
            status=status,
            event_count=event_count,
            started_at=started_at,
            completed_at=completed_at,
            output=output,
        )

    def list_executions(self, instance_id: str) -> list[int]:
        rows = self._db.fetch_all("list_executions", self._q["list_executions"], (instance_id,))
        return [row[0] for row in rows]

    def get_instance_tree(self, instance_id: str) -> InstanceTree | None:
        """The instance and all its descendants (breadth-first), or None if it is unknown."""
        ids = self._db.read("get_instance_tree", self._tree_tx, instance_id)
        return None if ids is None else InstanceTree(root_id=instance_id, all_ids=ids)

    def _tree_tx(self, conn: sqlite3.Connection, instance_id: str) -> list[str] | None:
        if not conn.execute(self._q["instance_exists"], (instance_id,)).fetchone()[0]:
            return None
        return self._descendants(conn, instance_id)

    def _descendants(self, conn: sqlite3.Connection, root: str) -> list[str]:
        """``root`` and every instance below it via ``parent_instance_id``, level by level."""
        ids, seen, level = [root], {root}, [root]
        children_sql = self._q["children_of"]
        while level:
            level = [
                child
                for (child,) in conn.execute(children_sql, (json.dumps(level),))
                if child not in seen
            ]
            seen.update(level)
            ids.extend(level)
        return ids

    # --- deletion -------------------------------------------------------------------------------

    def delete_instance(self, instance_id: str, *, force: bool = False) -> DeleteInstanceResult:
        """Delete the instance and all its descendants in one transaction: history, executions,
        queued messages and activities (published as cancelled), locks and KV.

        Raises ``InstanceNotFoundError`` for an unknown id. Without ``force`` raises
        ``InvalidOperationError`` when the instance or a descendant is still running, or when
        the instance is a sub-orchestration whose parent still exists.
        """
        result, cancelled = self._db.write("delete_instance", self._delete_tx, instance_id, force)
        self._after_delete(cancelled)
        return result

    def delete_instances_bulk(self, filter: InstanceFilter) -> DeleteInstanceResult:
        """Delete the finished root instances matching ``filter`` (at most ``filter.limit``) with
        their descendants, skipping any tree that still has a running instance."""
        candidates = self._db.fetch_all(
            "delete_instances_bulk",
            self._q["list_instances"],
            self._filter_params(filter, None, None, terminal_roots=True),
        )
        results: list[DeleteInstanceResult] = []
        for row in candidates:
            try:
                result, cancelled = self._db.write(
                    "delete_instances_bulk", self._delete_tx, row[0], False
                )
            except (InstanceNotFoundError, InvalidOperationError):
                continue  # deleted meanwhile, or a descendant is running
            self._after_delete(cancelled)
            results.append(result)
        return _sum_deletes(results)

    def _after_delete(self, cancelled: list[ActivityKey]) -> None:
        self._wakeups.notify(STATUS)
        self._wakeups.publish_cancelled(cancelled)

    def _delete_tx(
        self, conn: sqlite3.Connection, instance_id: str, force: bool
    ) -> tuple[DeleteInstanceResult, list[ActivityKey]]:
        q = self._q
        row = conn.execute(q["instance_parent"], (instance_id,)).fetchone()
        if row is None:
            raise InstanceNotFoundError(instance_id)
        ids = self._descendants(conn, instance_id)
        ids_json = json.dumps(ids)
        if not force:
            parent = row[0]
            if parent is not None and conn.execute(q["instance_exists"], (parent,)).fetchone()[0]:
                raise InvalidOperationError(
                    f"instance {instance_id!r} is a sub-orchestration of {parent!r}; "
                    "delete the root instance instead (or pass force=True)"
                )
            running = conn.execute(q["first_running_of"], (ids_json,)).fetchone()
            if running is not None:
                which = "it is" if running[0] == instance_id else f"{running[0]!r} is"
                raise InvalidOperationError(
                    f"cannot delete instance {instance_id!r}: {which} still running; "
                    "cancel it and wait for it to finish, or pass force=True"
                )
        events = conn.execute(q["delete_history_of"], (ids_json,)).rowcount
        executions = conn.execute(q["delete_executions_of"], (ids_json,)).rowcount
        messages = conn.execute(q["delete_orchestrator_queue_of"], (ids_json,)).rowcount
        cancelled = [
            ActivityKey(instance_id=i, execution_id=e, activity_id=a)
            for i, e, a in conn.execute(q["delete_worker_queue_of"], (ids_json,)).fetchall()
        ]
        conn.execute(q["delete_locks_of"], (ids_json,))
        conn.execute(q["delete_kv_of"], (ids_json,))
        instances = conn.execute(q["delete_instances_of"], (ids_json,)).rowcount
        result = DeleteInstanceResult(
            instances_deleted=instances,
            executions_deleted=executions,
            events_deleted=events,
            queue_messages_deleted=messages + len(cancelled),
        )
        return result, cancelled

    # --- pruning --------------------------------------------------------------------------------

    def prune_executions(self, instance_id: str, options: PruneOptions) -> PruneResult:
        """Delete old executions (history and execution rows) of one instance.

        Never the current execution nor a running one. ``keep_last`` keeps the newest that many
        executions (the current counts as one); ``completed_before`` prunes only executions that
        completed before it; with neither, every other execution goes. Raises
        ``InstanceNotFoundError`` for an unknown id.
        """
        return self._db.write("prune_executions", self._prune_tx, instance_id, options)

    def prune_executions_bulk(self, filter: InstanceFilter, options: PruneOptions) -> PruneResult:
        """``prune_executions`` for every instance matching ``filter`` (one transaction each)."""
        candidates = self._db.fetch_all(
            "prune_executions_bulk",
            self._q["list_instances"],
            self._filter_params(filter, None, None, terminal_roots=False),
        )
        processed = executions = events = 0
        for row in candidates:
            try:
                result = self._db.write("prune_executions_bulk", self._prune_tx, row[0], options)
            except InstanceNotFoundError:
                continue  # deleted meanwhile
            processed += 1
            executions += result.executions_deleted
            events += result.events_deleted
        return PruneResult(
            instances_processed=processed, executions_deleted=executions, events_deleted=events
        )

    def _prune_tx(
        self, conn: sqlite3.Connection, instance_id: str, options: PruneOptions
    ) -> PruneResult:
        q = self._q
        row = conn.execute(q["current_execution"], (instance_id,)).fetchone()
        if row is None:
            raise InstanceNotFoundError(instance_id)
        current = row[0]
        keep_last, before = options.keep_last, options.completed_before
        doomed = [
            (instance_id, execution_id)
            for rank, (execution_id, status, completed_at) in enumerate(
                conn.execute(q["executions_newest_first"], (instance_id,))
            )
            if execution_id != current
            and status != "Running"
            and (keep_last is None or rank >= keep_last)
            and (before is None or (completed_at is not None and completed_at < before))
        ]
        if not doomed:
            return PruneResult(instances_processed=1)
        events = conn.executemany(q["delete_execution_history"], doomed).rowcount
        executions = conn.executemany(q["delete_execution"], doomed).rowcount
        return PruneResult(
            instances_processed=1, executions_deleted=executions, events_deleted=events
        )

    # --- metrics --------------------------------------------------------------------------------

    def get_orchestration_stats(self, instance_id: str) -> OrchestrationStats | None:
        """Size of the current execution's history, pending messages and KV of one instance."""
        row = self._db.fetch_one(
            "get_orchestration_stats", self._q["orchestration_stats"], (instance_id,)
        )
        if row is None:
            return None
        events, history_bytes, pending, kv_keys, kv_bytes = row
        return OrchestrationStats(
            history_event_count=events,
            history_size_bytes=history_bytes,
            queue_pending_count=pending,
            kv_user_key_count=kv_keys,
            kv_total_value_bytes=kv_bytes,
        )

    def get_system_metrics(self) -> SystemMetrics:
        row = self._db.fetch_one("get_system_metrics", self._q["system_metrics"])
        total, executions, running, completed, failed, events = row
        return SystemMetrics(
            total_instances=total,
            total_executions=executions,
            running_instances=running,
            completed_instances=completed,
            failed_instances=failed,
            total_events=events,
        )

    def get_queue_depths(self) -> QueueDepths:
        """Ready + in-flight orchestrator messages, future-visible ones (timers), and worker
        items in total and per tag (``""`` for untagged)."""
        return self._db.read("get_queue_depths", self._queue_depths_tx)

    def _queue_depths_tx(self, conn: sqlite3.Connection) -> QueueDepths:
        ready, later = conn.execute(
            self._q["orchestrator_queue_depths"], {"now": now_ms()}
        ).fetchone()
        by_tag = dict(conn.execute(self._q["worker_queue_depths"]).fetchall())
        return QueueDepths(
            orchestrator_queue=ready,
            worker_queue=sum(by_tag.values()),
            timer_queue=later,
            worker_queue_by_tag=by_tag,
        )
