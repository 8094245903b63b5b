"""PostgreSQL storage: the ``ProviderAdmin`` half (listing, trees, deletion, pruning, metrics).

Mixed into ``PostgresProvider``; it uses the provider's database (``_db``), queries (``_q``),
wake-up hub (``_wakeups``) and listener (``_listener``). Each read, deletion or prune of one
instance is one round trip and one transaction (a plpgsql function). Bulk operations list their
candidates once and then delete or prune them one instance per transaction, like SQLite, so
they never hold locks for long: the dispatchers keep running beside them (a fetch skips the
rows a deletion holds). Ids page in byte order (``COLLATE "C"``), as on SQLite.
"""

from __future__ import annotations

from typing import Any

from duroxide.errors import InstanceNotFoundError, InvalidOperationError
from duroxide.providers.postgres.connection import PgDatabase
from duroxide.providers.postgres.listener import PgListener
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


def _filter_params(
    filter: InstanceFilter, limit: int | None = None, *, after_id: str | None = None,
    terminal_roots: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Parameters of ``duroxide_list_instances`` for ``filter``."""
    limits = [n for n in (limit, filter.limit) if n is not None]
    ids = filter.instance_ids
    return {
        "after_id": after_id,
        "terminal_roots": terminal_roots,
        "instance_ids": None if ids is None else list(ids),
        "status": filter.status,
        "orchestration_name": filter.orchestration_name,
        "created_before": filter.created_before,
        "created_after": filter.created_after,
        "completed_before": filter.completed_before,
        "limit": max(min(limits), 0) if limits else None,
    }


def _cancelled_keys(rows: Any) -> list[ActivityKey]:
    return [ActivityKey(instance_id=i, execution_id=e, activity_id=a) for i, e, a in rows or ()]


class PostgresAdminMixin:
    """``ProviderAdmin`` for ``PostgresProvider``."""

    _db: PgDatabase
    _q: dict[str, str]
    _wakeups: WakeupHub
    _listener: PgListener

    # --- reads ----------------------------------------------------------------------------------

    def list_instances(
        self,
        filter: InstanceFilter | None = None,
        *,
        after_id: str | None = None,
        limit: int | None = None,
    ) -> list[InstanceInfo]:
        """Instances matching ``filter`` ordered by id (bytewise), starting after ``after_id``;
        at most ``limit`` (and at most ``filter.limit``) of them."""
        params = _filter_params(filter or _NO_FILTER, limit, after_id=after_id)
        rows = self._db.run(
            "list_instances", self._q["list_instances"], params, fetch="all", retry="read"
        )
        return [_instance_info(row) for row in rows]

    def get_instance_info(self, instance_id: str) -> InstanceInfo | None:
        row = self._db.run(
            "get_instance_info", self._q["instance_info"], (instance_id,), retry="read"
        )
        return None if row is None else _instance_info(row)

    def get_execution_info(self, instance_id: str, execution_id: int) -> ExecutionInfo | None:
        row = self._db.run(
            "get_execution_info",
            self._q["execution_info"],
            (instance_id, execution_id),
            retry="read",
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
        rows = self._db.run(
            "list_executions",
            self._q["list_executions"],
            (instance_id,),
            fetch="all",
            retry="read",
        )
        return [row[0] for row in rows]

    def get_instance_tree(self, instance_id: str) -> InstanceTree | None:
        """The instance and all its descendants (breadth-first), or None if it is unknown."""
        row = self._db.run(
            "get_instance_tree", self._q["instance_tree"], (instance_id,), retry="read"
        )
        ids = row[0]
        return None if ids is None else InstanceTree(root_id=instance_id, all_ids=list(ids))

    # --- deletion -------------------------------------------------------------------------------

    def delete_instance(self, instance_id: str, *, force: bool = False) -> DeleteInstanceResult:
        """Delete the instance and all its descendants in one transaction: history, executions,
        queued messages and activities (published as cancelled), locks and KV.

        Raises ``InstanceNotFoundError`` for an unknown id. Without ``force`` raises
        ``InvalidOperationError`` when the instance or a descendant is still running, or when
        the instance is a sub-orchestration whose parent still exists.
        """
        status, detail, result = self._delete_one("delete_instance", instance_id, force)
        if status == "not_found":
            raise InstanceNotFoundError(instance_id)
        if status == "has_parent":
            raise InvalidOperationError(
                f"instance {instance_id!r} is a sub-orchestration of {detail!r}; "
                "delete the root instance instead (or pass force=True)"
            )
        if status == "running":
            which = "it is" if detail == instance_id else f"{detail!r} is"
            raise InvalidOperationError(
                f"cannot delete instance {instance_id!r}: {which} still running; "
                "cancel it and wait for it to finish, or pass force=True"
            )
        return result

    def delete_instances_bulk(self, filter: InstanceFilter) -> DeleteInstanceResult:
        """Delete the finished root instances matching ``filter`` (at most ``filter.limit``) with
        their descendants, skipping any tree that still has a running instance: one transaction
        per tree."""
        rows = self._db.run(
            "delete_instances_bulk",
            self._q["list_instances"],
            _filter_params(filter, terminal_roots=True),
            fetch="all",
            retry="read",
        )
        totals = [0, 0, 0, 0]
        for row in rows:
            status, _, result = self._delete_one("delete_instances_bulk", row[0], False)
            if status != "ok":
                continue  # deleted meanwhile, or a descendant is running
            totals[0] += result.instances_deleted
            totals[1] += result.executions_deleted
            totals[2] += result.events_deleted
            totals[3] += result.queue_messages_deleted
        return DeleteInstanceResult(
            instances_deleted=totals[0],
            executions_deleted=totals[1],
            events_deleted=totals[2],
            queue_messages_deleted=totals[3],
        )

    def _delete_one(
        self, operation: str, instance_id: str, force: bool
    ) -> tuple[str, str | None, DeleteInstanceResult]:
        """One call of ``duroxide_delete_instance``: its status, detail and counts; after a
        deletion, the status channel is woken and the cancelled activities published."""
        status, detail, instances, executions, events, messages, cancelled = self._db.run(
            operation, self._q["delete_instance"], (instance_id, force)
        )
        result = DeleteInstanceResult(
            instances_deleted=instances,
            executions_deleted=executions,
            events_deleted=events,
            queue_messages_deleted=messages,
        )
        if status == "ok":
            self._after_delete(_cancelled_keys(cancelled))
        return status, detail, result

    def _after_delete(self, cancelled: list[ActivityKey]) -> None:
        self._wakeups.notify(STATUS)
        self._wakeups.publish_cancelled(cancelled)
        self._listener.post(status=True, cancelled=cancelled)

    # --- pruning --------------------------------------------------------------------------------

    def prune_executions(self, instance_id: str, options: PruneOptions) -> PruneResult:
        """Delete old executions (history and execution rows) of one instance.

        Never the current execution nor a running one. ``keep_last`` keeps the newest that many
        executions (the current counts as one); ``completed_before`` prunes only executions that
        completed before it; with neither, every other execution goes. Raises
        ``InstanceNotFoundError`` for an unknown id.
        """
        found, executions, events = self._db.run(
            "prune_executions",
            self._q["prune_executions"],
            (instance_id, options.keep_last, options.completed_before),
        )
        if not found:
            raise InstanceNotFoundError(instance_id)
        return PruneResult(
            instances_processed=1, executions_deleted=executions, events_deleted=events
        )

    def prune_executions_bulk(self, filter: InstanceFilter, options: PruneOptions) -> PruneResult:
        """``prune_executions`` for every instance matching ``filter`` (one transaction each)."""
        rows = self._db.run(
            "prune_executions_bulk",
            self._q["list_instances"],
            _filter_params(filter),
            fetch="all",
            retry="read",
        )
        processed = executions = events = 0
        for row in rows:
            found, pruned, removed = self._db.run(
                "prune_executions_bulk",
                self._q["prune_executions"],
                (row[0], options.keep_last, options.completed_before),
            )
            if not found:
                continue  # deleted meanwhile
            processed += 1
            executions += pruned
            events += removed
        return PruneResult(
            instances_processed=processed, executions_deleted=executions, events_deleted=events
        )

    # --- metrics --------------------------------------------------------------------------------

    def get_orchestration_stats(self, instance_id: str) -> OrchestrationStats | None:
        """Size of the current execution's history, pending messages and KV of one instance."""
        row = self._db.run(
            "get_orchestration_stats",
            self._q["orchestration_stats"],
            (instance_id,),
            retry="read",
        )
        if row is None:
            return None
        events, history_bytes, pending, kv_keys, kv_bytes = row
        return OrchestrationStats(
            history_event_count=events,
            history_size_bytes=int(history_bytes),
            queue_pending_count=pending,
            kv_user_key_count=kv_keys,
            kv_total_value_bytes=int(kv_bytes),
        )

    def get_system_metrics(self) -> SystemMetrics:
        row = self._db.run("get_system_metrics", self._q["system_metrics"], retry="read")
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
        ready, later, by_tag = self._db.run(
            "get_queue_depths", self._q["queue_depths"], retry="read"
        )
        return QueueDepths(
            orchestrator_queue=ready,
            worker_queue=sum(by_tag.values()),
            timer_queue=later,
            worker_queue_by_tag=dict(by_tag),
        )
