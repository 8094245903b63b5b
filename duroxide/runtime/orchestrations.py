"""The orchestration dispatcher: claim an instance, run one turn, commit it in one ack.

Failure handling: a message fetched more than ``max_attempts`` times fails its instance with a
``poison`` error; a handler this node does not have is abandoned with exponential backoff (1 s …
60 s) so a node that has it can take over during a rolling deploy; an engine error or a failed
ack (other than a lost lock) abandons the item at once so it is retried without waiting for the
lock to expire.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from duroxide.errors import ErrorDetails, LockLostError, ProviderError
from duroxide.history import Event, OrchestrationFailed
from duroxide.observability import tracing
from duroxide.observability.instruments import Instruments
from duroxide.observability.logging import get_lazy_logger
from duroxide.providers.base import (
    InstanceUpdate,
    KvChanges,
    OrchestrationAck,
    OrchestrationItem,
    Provider,
)
from duroxide.providers.wakeup import ORCHESTRATOR
from duroxide.registry import Registry
from duroxide.replay import Turn, TurnInput, TurnResult, TurnStatus, resume_turn, start_turn
from duroxide.runtime.faults import Faults, InjectedFault
from duroxide.runtime.group_commit import GroupCommit, run_in_thread
from duroxide.runtime.leases import LeaseKeeper
from duroxide.runtime.loop import DispatchLoop
from duroxide.runtime.metrics import RuntimeMetrics
from duroxide.runtime.turn_cache import TurnCache
from duroxide.types import RuntimeOptions
from duroxide.work_items import Message

_LOG_METHODS = {"info": "info", "warn": "warning", "error": "error", "debug": "debug"}
_STATUS = {
    TurnStatus.RUNNING: ("Running", "Running"),
    TurnStatus.COMPLETED: ("Completed", "Completed"),
    TurnStatus.FAILED: ("Failed", "Failed"),
    TurnStatus.CONTINUED_AS_NEW: ("Running", "ContinuedAsNew"),
}


def backoff_ms(attempt: int) -> int:
    """1 s, 2 s, 4 s … capped at 60 s: how long to park work this node cannot run."""
    return int(min(60_000, 1000 * 2 ** max(0, min(attempt - 1, 16))))


class OrchestrationDispatcher:
    def __init__(
        self,
        provider: Provider,
        registry: Registry,
        options: RuntimeOptions,
        metrics: RuntimeMetrics,
        runtime_id: str,
        leases: LeaseKeeper,
        instruments: Instruments,
        faults: Faults,
    ) -> None:
        self._provider = provider
        self._instruments = instruments
        self._faults = faults
        self._registry = registry
        self._options = options
        self._metrics = metrics
        self._log = get_lazy_logger("orchestration", runtime_id=runtime_id)
        self._dispatcher_id = runtime_id
        self._leases = leases
        self.cache = TurnCache(options.turn_cache_size)
        self._commits = GroupCommit[tuple[str, OrchestrationAck]](
            "ack_orchestration_item", provider.ack_orchestration_items
        )
        self._inflight: dict[str, OrchestrationItem] = {}
        self._inflight_lock = threading.Lock()
        self.loop = DispatchLoop[OrchestrationItem](
            name="duroxide-orch",
            hub=provider.wakeups,
            channel=ORCHESTRATOR,
            concurrency=options.orchestration_concurrency,
            poll_interval_s=options.dispatcher_poll_interval_ms / 1000,
            fetch=self._fetch,
            process=self._run,
            log=self._log,
            discard=self._release,
            forget=self._forget,
            on_provider_error=lambda: metrics.add("provider_errors"),
            on_busy=lambda busy, cap: instruments.slots("orchestration", busy, cap),
        )

    def close(self) -> None:
        """At shutdown, once the loop is closed: stop the committer thread."""
        self._commits.close()

    def _fetch(self, limit: int) -> list[OrchestrationItem]:
        lock_ms = self._options.orchestrator_lock_timeout_ms
        items = self._provider.fetch_orchestration_items(
            lock_ms, limit, dispatcher_id=self._dispatcher_id
        )
        if not items:
            return items
        self._metrics.add("orch_dispatcher_items_fetched", len(items))
        with self._inflight_lock:
            for item in items:
                self._inflight[item.lock_token] = item
        for item in items:
            self._hold_lease(item.lock_token, lock_ms)
        return items

    def _hold_lease(self, token: str, lock_ms: int) -> None:
        self._leases.hold(
            token, lambda: self._provider.renew_orchestration_item_lock(token, lock_ms),
            lock_ms / 3000, lambda: None, "orchestration",
        )  # fmt: skip

    def abandon_inflight(self) -> int:
        """Release the locks of turns still running (at shutdown); their acks will be refused."""
        with self._inflight_lock:
            items = list(self._inflight.values())
            self._inflight.clear()
        for item in items:
            self._leases.release(item.lock_token)
            self._abandon(item, 0, ignore_attempt=True)
        return len(items)

    def _release(self, item: OrchestrationItem) -> None:
        self._forget(item)
        self._abandon(item, 0, ignore_attempt=True)

    def _forget(self, item: OrchestrationItem) -> None:
        self._leases.release(item.lock_token)
        with self._inflight_lock:
            self._inflight.pop(item.lock_token, None)

    def _run(self, item: OrchestrationItem) -> bool:
        """Run the item's turn; True when its ack was handed to the group commit, which then
        finishes the item (``_committed``)."""
        started_ns = time.time_ns()
        log = self._log.bind(instance_id=item.instance_id, execution_id=item.execution_id)
        if item.instance is not None and item.instance.status != "Running":
            # a late timer, event or duplicate for a finished instance: consume it, read nothing
            self._ack(item, OrchestrationAck(instance=None), 0, log)
            return False
        attempts = max((m.attempt_count for m in item.messages), default=0)
        fail_with: ErrorDetails | None = None
        undecodable = [m.decode_error for m in item.messages if m.message is None]
        if item.history_error is not None:
            undecodable.append(item.history_error)
        if attempts > self._options.max_attempts:
            reason = "; ".join(e or "" for e in undecodable) or "the turn kept failing"
            fail_with = ErrorDetails.poison(
                f"poison: a message for this instance was fetched {attempts} times "
                f"(max_attempts={self._options.max_attempts}): {reason}"
            )
            log.error("orchestration.poison", attempts=attempts, reason=reason)
            self._instruments.poison("orchestration")
            if item.history_error is not None:
                self._ack(item, _unreadable_failure(item, fail_with), attempts, log)
                return False
        elif undecodable:
            log.warning("orchestration.undecodable", attempts=attempts, error=undecodable[0])
            self._abandon(item, backoff_ms(attempts))
            return False
        result, live = self._turn(item, fail_with)
        status = result.status
        if status is TurnStatus.ENGINE_ERROR:
            log.error("orchestration.engine_error", error=result.internal_error)
            self._abandon(item, backoff_ms(attempts))
            return False
        if status is TurnStatus.UNREGISTERED:
            assert result.missing_handler is not None
            name, version = result.missing_handler
            delay = backoff_ms(attempts)
            log.warning("orchestration.unregistered", orchestration_name=name,
                        orchestration_version=version, retry_in_ms=delay)  # fmt: skip
            self._abandon(item, delay)
            return False
        if self._faults and self._faults.hit("turn_delay_past_lock"):
            self._leases.release(item.lock_token)  # stop renewing, then outlive the lock
            time.sleep(self._options.orchestrator_lock_timeout_ms / 1000 * 1.5)
        ack = _build_ack(result)
        self._leases.release(item.lock_token)
        self._commits.submit_then(
            (item.lock_token, ack),  # group commit with other slots
            lambda error: self._committed(item, result, live, attempts, started_ns, log, error),
        )
        return True

    def _committed(
        self,
        item: OrchestrationItem,
        result: TurnResult,
        live: Turn | None,
        attempts: int,
        started_ns: int,
        log: Any,
        error: ProviderError | None,
    ) -> Callable[[], None] | None:
        """The rest of a turn once its ack is committed or refused, in the committing thread;
        returns what finishes the item (run after the whole batch's caches are updated)."""
        if error is not None and not isinstance(error, LockLostError):
            # storage trouble: releasing the item blocks, so not in the committing thread
            run_in_thread("duroxide-ack-failed", self._ack_failed, item, result, attempts,
                          started_ns, log, error)  # fmt: skip
            return None
        try:
            acked = self._ack_outcome(item, error, attempts, log)
            if acked and self._faults:
                if self._faults.hit("turn_exit_after_ack"):
                    self._faults.crash()
                if self._faults.hit("turn_raise_after_ack"):
                    raise InjectedFault(f"after the ack of {item.instance_id}")
            self._record_turn(item, result, started_ns, acked)
            if acked:
                if live is not None:
                    self.cache.put(item.instance_id, live)
                self._instruments.turn(
                    result.orchestration_name, (time.time_ns() - started_ns) / 1e9
                )
                self._after_ack(item, result, log)
        except BaseException:  # as the slot thread would: log it, the dispatcher goes on
            self._log.exception("dispatcher.process_crashed", dispatcher=self.loop.name)
        return lambda: self.loop.finished(item)

    def _ack_failed(
        self,
        item: OrchestrationItem,
        result: TurnResult,
        attempts: int,
        started_ns: int,
        log: Any,
        error: ProviderError,
    ) -> None:
        try:
            self._ack_outcome(item, error, attempts, log)
            self._record_turn(item, result, started_ns, False)
        except BaseException:
            self._log.exception("dispatcher.process_crashed", dispatcher=self.loop.name)
        finally:
            self.loop.finished(item)

    @staticmethod
    def _record_turn(
        item: OrchestrationItem, result: TurnResult, started_ns: int, acked: bool
    ) -> None:
        if result.status is TurnStatus.DROPPED:
            return
        tracing.record_span(
            "orchestration.turn", result.trace_context, started_ns, time.time_ns(),
            {"duroxide.instance_id": item.instance_id,
             "duroxide.execution_id": item.execution_id,
             "duroxide.orchestration_name": result.orchestration_name,
             "duroxide.orchestration_version": result.orchestration_version,
             "duroxide.outcome": result.status.value},
            error=None if acked else "turn not committed",
        )  # fmt: skip

    def _ack(self, item: OrchestrationItem, ack: OrchestrationAck, attempts: int, log: Any) -> bool:
        """Commit the turn and wait; see ``_ack_outcome``."""
        self._leases.release(item.lock_token)
        error = self._commits.submit((item.lock_token, ack))  # group commit with other slots
        return self._ack_outcome(item, error, attempts, log)

    def _ack_outcome(
        self, item: OrchestrationItem, error: ProviderError | None, attempts: int, log: Any
    ) -> bool:
        """Whether the turn committed; on failure release the item at once (never wait for
        lock expiry)."""
        if error is None:
            return True
        if isinstance(error, LockLostError):
            self._metrics.add("orch_lock_lost")
            self._instruments.lock_lost("orchestration")
            log.warning(
                "orchestration.lock_lost",
                detail="lock expired or the instance was deleted; the turn is discarded",
            )
            return False
        self._metrics.add("provider_errors")
        log.warning("orchestration.ack_failed", error=str(error), retryable=error.retryable)
        # a retryable storage error is not the instance's fault: do not count the attempt
        self._abandon(item, 0 if error.retryable else backoff_ms(attempts),
                      ignore_attempt=error.retryable)  # fmt: skip
        return False

    def _turn(
        self, item: OrchestrationItem, fail_with: ErrorDetails | None
    ) -> tuple[TurnResult, Turn | None]:
        """Run the turn: resume the cached live state when it matches, else replay."""
        messages = [m.message for m in item.messages if m.message is not None]
        cached = self.cache.take(item.instance_id, item.execution_id, item.history_len,
                                 item.history)  # fmt: skip
        if cached is not None and fail_with is None:
            result, live = resume_turn(cached, self._input(item, messages, [], None))
            if result.status is not TurnStatus.ENGINE_ERROR:
                return result, live
        history = item.history
        if history is None:  # the provider thought we had it cached; we do not
            history = self._provider.read_history(item.instance_id, item.execution_id)
        return start_turn(self._input(item, messages, history, fail_with))

    def _input(
        self,
        item: OrchestrationItem,
        messages: list[Message],
        history: list[Event],
        fail_with: ErrorDetails | None,
    ) -> TurnInput:
        return TurnInput(
            instance_id=item.instance_id, execution_id=item.execution_id, history=history,
            messages=messages, now_ms=item.now_ms, handlers=self._registry,
            kv_reader=self._provider.get_kv_value, fail_with=fail_with,
        )  # fmt: skip

    def _abandon(
        self, item: OrchestrationItem, delay_ms: int, ignore_attempt: bool = False
    ) -> None:
        self._metrics.add("orch_abandoned")
        try:
            self._provider.abandon_orchestration_item(
                item.lock_token, delay_ms=delay_ms, ignore_attempt=ignore_attempt
            )
        except ProviderError as exc:
            self._metrics.add("provider_errors")
            self._log.warning("orchestration.abandon_failed", instance_id=item.instance_id,
                              error=str(exc))  # fmt: skip

    def _after_ack(self, item: OrchestrationItem, result: TurnResult, log: Any) -> None:
        m = self._metrics
        m.add("orch_turns")
        if result.status is TurnStatus.DROPPED:
            if result.dropped_messages:
                log.debug("orchestration.messages_dropped", count=result.dropped_messages)
            return
        log = log.bind(orchestration_name=result.orchestration_name,
                       orchestration_version=result.orchestration_version)  # fmt: skip
        name = result.orchestration_name
        if result.started and item.execution_id == 1:
            m.add("orch_starts")
            self._instruments.orchestration_started(name)
            log.debug("orchestration.started")
        if result.status in _STATUS and result.status is not TurnStatus.RUNNING:
            duration = max(0, item.now_ms - result.started_at_ms) / 1000
            category = result.error.category.value if result.error else None
            self._instruments.orchestration_finished(name, result.status.value, category, duration)
        subs = sum(1 for o in result.orchestrator_items
                   if getattr(o.message, "parent_instance_id", None) == item.instance_id
                   and o.message.kind == "StartOrchestration")  # fmt: skip
        if subs:
            m.add("suborchestration_calls", subs)
        for level, message in result.logs:
            getattr(log, _LOG_METHODS.get(level, "info"))("orchestration.trace", message=message)
        if result.status is TurnStatus.COMPLETED:
            m.add("orch_completions")
            log.debug("orchestration.completed")
        elif result.status is TurnStatus.FAILED:
            m.orchestration_failed(result.error)
            error = result.error
            log.warning("orchestration.failed", error=error.message if error else None,
                        category=error.category.value if error else None)  # fmt: skip
        elif result.status is TurnStatus.CONTINUED_AS_NEW:
            m.add("orch_continue_as_new")
            log.debug("orchestration.continued_as_new", next_execution_id=result.next_execution_id)


def _unreadable_failure(item: OrchestrationItem, error: ErrorDetails) -> OrchestrationAck:
    """Fail an instance whose history cannot be decoded (so it cannot be replayed): append the
    failure after the stored events without reading them."""
    state = item.instance
    assert state is not None  # undecodable history implies a stored instance
    failed = OrchestrationFailed(event_id=item.history_len + 1, timestamp_ms=item.now_ms,
                                 error=error)  # fmt: skip
    return OrchestrationAck(
        instance=InstanceUpdate(
            orchestration_name=state.orchestration_name,
            orchestration_version=state.orchestration_version,
            execution_id=item.execution_id, status="Failed", execution_status="Failed",
            error=error,
        ),
        events=[failed],
    )  # fmt: skip


def _build_ack(result: TurnResult) -> OrchestrationAck:
    if result.status is TurnStatus.DROPPED:
        return OrchestrationAck(instance=None)
    status, execution_status = _STATUS[result.status]
    terminal = result.status in (TurnStatus.COMPLETED, TurnStatus.FAILED)
    return OrchestrationAck(
        instance=InstanceUpdate(
            orchestration_name=result.orchestration_name,
            orchestration_version=result.orchestration_version,
            execution_id=result.execution_id,
            status=status,
            execution_status=execution_status,
            output=result.output if terminal else None,
            error=result.error,
            next_execution_id=result.next_execution_id,
            parent_instance_id=result.parent_instance_id,
            parent_execution_id=result.parent_execution_id,
            parent_event_id=result.parent_event_id,
            custom_status=result.custom_status,
            custom_status_changed=result.custom_status_changed,
            trace_context=result.trace_context,
        ),
        events=result.new_events,
        worker_items=result.worker_items,
        orchestrator_items=result.orchestrator_items,
        cancelled_activities=result.cancelled_activities,
        kv=KvChanges(upserts=result.kv_upserts, deletes=frozenset(result.kv_deletes)),
    )
