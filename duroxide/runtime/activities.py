"""The activity worker: claim an activity, run it on a slot thread, ack its result.

* **Cancellation.** ``ctx.is_cancelled()`` turns true when the orchestration cancels the activity
  (lost a race, ended, was cancelled): at once when the cancelling turn ran on this provider
  object (in-process notification), else within about a second, when the lease keeper's renewal
  finds the work item gone. A late result is refused by the provider (lock lost) and dropped.
* **Lock renewal.** The runtime's lease keeper renews a running activity's lock every
  ``min(RENEW_EVERY_S, lock_timeout / 3)``, so long activities are never re-run while alive; a
  renewal that finds the work item gone is the cancellation signal.
* **Sessions.** Session-bound activities go to the owner of their session (``worker_node_id``
  when set); the lease keeper renews this worker's session locks and releases idle ones.
* **Poison and rolling deploys.** An activity fetched more than ``max_attempts`` times fails with
  a ``poison`` error without running; an activity not registered here (or whose work item this
  version cannot decode) is abandoned with exponential backoff so a worker that can run it takes
  it.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from duroxide.context import ActivityContext
from duroxide.errors import (
    ErrorDetails,
    LockLostError,
    PayloadTooLargeError,
    ProviderError,
    describe_exception,
)
from duroxide.observability import tracing
from duroxide.observability.instruments import Instruments
from duroxide.observability.logging import get_lazy_logger
from duroxide.providers.base import Provider, SessionConfig, WorkItem
from duroxide.providers.wakeup import WORKER
from duroxide.registry import Registry
from duroxide.runtime.faults import Faults
from duroxide.runtime.group_commit import GroupCommit, run_in_thread
from duroxide.runtime.leases import LeaseKeeper
from duroxide.runtime.loop import DispatchLoop
from duroxide.runtime.metrics import RuntimeMetrics
from duroxide.runtime.orchestrations import backoff_ms
from duroxide.serialization import decode, encode
from duroxide.types import RuntimeOptions
from duroxide.work_items import (
    ActivityCompletedMsg,
    ActivityFailedMsg,
    ActivityKey,
    Message,
    OutboundMessage,
)

#: How often a running activity's lock is renewed (and its cancellation checked), in seconds.
RENEW_EVERY_S = 1.0
#: How often expired, idle sessions are cleaned up, in seconds.
SESSION_CLEANUP_EVERY_S = 30.0
#: An ack that fails with a retryable error is tried this many times in all (back-off 50 ms,
#: 100 ms, 200 ms, 400 ms between tries).
ACK_ATTEMPTS = 5


@dataclass(slots=True)
class _Running:
    work: WorkItem
    cancel: threading.Event = field(default_factory=threading.Event)


class ActivityWorker:
    def __init__(
        self,
        provider: Provider,
        registry: Registry,
        options: RuntimeOptions,
        metrics: RuntimeMetrics,
        runtime_id: str,
        client_factory: Any,
        leases: LeaseKeeper,
        instruments: Instruments,
        faults: Faults,
    ) -> None:
        self._instruments = instruments
        self._faults = faults
        self._provider = provider
        self._registry = registry
        self._options = options
        self._metrics = metrics
        self._client_factory = client_factory
        self._leases = leases
        self._tag_filter = options.tag_filter
        self.owner_id = options.worker_node_id or f"rt-{runtime_id}"
        lock_ms = options.worker_lock_timeout_ms
        self._renew_every_s = min(RENEW_EVERY_S, lock_ms / 3000)
        self._session = (
            SessionConfig(owner_id=self.owner_id, max_sessions=options.max_sessions_per_runtime,
                          lock_timeout_ms=lock_ms)
            if options.max_sessions_per_runtime > 0 else None
        )  # fmt: skip
        self._log = get_lazy_logger("activity", runtime_id=runtime_id, worker_id=self.owner_id)
        self._inflight: dict[str, _Running] = {}
        self._by_key: dict[ActivityKey, _Running] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._commits = GroupCommit[tuple[str, OutboundMessage | None]](
            "ack_work_item", provider.ack_work_items
        )
        self.loop = DispatchLoop[_Running](
            name="duroxide-activity",
            hub=provider.wakeups,
            channel=WORKER,
            concurrency=options.worker_concurrency,
            poll_interval_s=options.dispatcher_poll_interval_ms / 1000,
            fetch=self._fetch,
            process=self._execute,
            log=self._log,
            discard=self._release,
            forget=self._forget,
            on_provider_error=lambda: metrics.add("provider_errors"),
            on_busy=lambda busy, cap: instruments.slots("activity", busy, cap),
        )

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self._provider.wakeups.add_cancel_listener(self._on_cancelled)
        if self._session is not None:
            lock_ms = self._options.worker_lock_timeout_ms
            idle_ms = self._options.session_idle_timeout_ms
            self._leases.every(
                max(self._renew_every_s, lock_ms / 3000),
                lambda: self._provider.renew_session_locks([self.owner_id], lock_ms, idle_ms),
                "renew sessions",
            )
            self._leases.every(SESSION_CLEANUP_EVERY_S, self._provider.cleanup_orphaned_sessions,
                               "clean up sessions")  # fmt: skip
        self.loop.start()

    def stop(self) -> None:
        self._stopping.set()
        self._provider.wakeups.remove_cancel_listener(self._on_cancelled)

    def close(self) -> None:
        """At shutdown, once the loop is closed: stop the committer thread."""
        self._commits.close()

    def abandon_inflight(self) -> int:
        """At shutdown: signal cancellation and release the locks of activities still running
        (or still queued for a slot: those will not start)."""
        with self._lock:
            running = list(self._inflight.values())
            self._inflight.clear()
            self._by_key.clear()
        for r in running:
            self._leases.release(r.work.lock_token)
            # release the lock first: an activity that returns as soon as it sees the
            # cancellation must find its ack refused, not commit a cut-short result
            self._abandon(r, 0, ignore_attempt=True)
            r.cancel.set()
        return len(running)

    def _release(self, running: _Running) -> None:
        self._forget(running)
        self._abandon(running, 0, ignore_attempt=True)

    def _abandon(self, running: _Running, delay_ms: int, ignore_attempt: bool = False) -> None:
        try:
            self._provider.abandon_work_item(
                running.work.lock_token, delay_ms=delay_ms, ignore_attempt=ignore_attempt
            )
        except ProviderError as exc:
            self._metrics.add("provider_errors")
            self._log.warning("activity.abandon_failed", error=str(exc))

    # --- claiming and running ------------------------------------------------------------------

    def _fetch(self, limit: int) -> list[_Running]:
        lock_ms = self._options.worker_lock_timeout_ms
        works = self._provider.fetch_work_items(lock_ms, limit, self._tag_filter, self._session)
        if not works:
            return []
        self._metrics.add("worker_dispatcher_items_fetched", len(works))
        running = [_Running(work) for work in works]
        with self._lock:
            for r in running:
                self._inflight[r.work.lock_token] = r
                self._by_key[_key(r.work)] = r
        for r in running:
            self._hold_lease(r, lock_ms)
        return running

    def _hold_lease(self, running: _Running, lock_ms: int) -> None:
        token = running.work.lock_token
        self._leases.hold(
            token, lambda: self._provider.renew_work_item_lock(token, lock_ms),
            self._renew_every_s, lambda: self._lock_lost(running), "activity",
        )  # fmt: skip

    def _execute(self, running: _Running) -> bool:
        """Run the activity; True when its ack was handed to the group commit, which then
        finishes the item (``_acked``)."""
        work = running.work
        item = work.item
        with self._lock:
            if work.lock_token not in self._inflight:
                return False  # released at shutdown before it started: another worker runs it
        log = self._log.bind(instance_id=item.instance_id, execution_id=item.execution_id,
                             orchestration_name=item.orchestration_name,
                             orchestration_version=item.orchestration_version,
                             activity_name=item.name, activity_id=item.activity_id)  # fmt: skip
        try:
            if work.attempt_count > self._options.max_attempts:
                reason = f": {work.decode_error}" if work.decode_error else ""
                limit = self._options.max_attempts
                message = (f"poison: activity {item.name!r} was fetched {work.attempt_count} "
                           f"times (max_attempts={limit}){reason}")  # fmt: skip
                log.error("activity.poison", attempts=work.attempt_count)
                self._metrics.add("activity_poison")
                self._instruments.poison("activity")
                self._instruments.activity(item.name, item.tag, "poison", 0.0)
                self._finish(running, self._failed(item, ErrorDetails.poison(message)), log)
                return False
            fn = self._registry.activity(item.name)
            if fn is None or work.decode_error is not None:
                delay = backoff_ms(work.attempt_count)
                if work.decode_error is not None:
                    log.warning("activity.undecodable", error=work.decode_error,
                                retry_in_ms=delay)  # fmt: skip
                else:
                    log.warning("activity.unregistered", retry_in_ms=delay)
                self._abandon(running, delay)
                return False
            completion = self._invoke(fn, running, log)
            if self._faults and self._faults.hit("activity_exit_before_ack"):
                self._faults.crash()
        except ProviderError as exc:
            self._metrics.add("provider_errors")
            log.warning("activity.provider_error", error=str(exc))
            return False
        outbound = OutboundMessage(instance_id=item.instance_id, message=completion)
        # no renewal from here on: one landing after the commit would find the row gone and
        # report the lock lost (the retry path holds the lease again)
        self._leases.release(work.lock_token)
        self._commits.submit_then(
            (work.lock_token, outbound),  # group commit with other slots
            lambda error: self._acked(running, outbound, log, error),
        )
        return True

    def _invoke(self, fn: Any, running: _Running, log: Any) -> Message:
        item = running.work.item
        ctx = ActivityContext(
            instance_id=item.instance_id, execution_id=item.execution_id,
            orchestration_name=item.orchestration_name,
            orchestration_version=item.orchestration_version, activity_name=item.name,
            activity_id=item.activity_id, worker_id=self.owner_id, session_id=item.session_id,
            tag=item.tag, cancel_event=running.cancel, client_factory=self._client_factory,
            logger=log,
        )  # fmt: skip
        attributes = {
            "duroxide.instance_id": item.instance_id, "duroxide.execution_id": item.execution_id,
            "duroxide.activity_name": item.name, "duroxide.activity_id": item.activity_id,
            "duroxide.orchestration_name": item.orchestration_name, "duroxide.tag": item.tag,
            "duroxide.attempt": running.work.attempt_count,
        }  # fmt: skip
        started = time.perf_counter()
        with tracing.span(f"activity {item.name}", item.trace_context, attributes) as span:
            completion, outcome, error = self._call(fn, ctx, item, log, started)
            if error is not None:
                tracing.record_failure(span, error)
        self._instruments.activity(item.name, item.tag, outcome, time.perf_counter() - started)
        return completion

    def _call(
        self, fn: Any, ctx: ActivityContext, item: Any, log: Any, started: float
    ) -> tuple[Message, str, str | None]:
        """Run the user function: (completion, outcome, error message or None)."""
        try:
            value = fn(ctx, decode(item.input))
            if inspect.iscoroutine(value):
                value = asyncio.run(value)
        except Exception as exc:
            message = describe_exception(exc)
            log.warning("activity.failed", error=message, error_type=type(exc).__name__,
                        duration_s=round(time.perf_counter() - started, 6))  # fmt: skip
            self._metrics.add("activity_errors")
            return self._failed(item, ErrorDetails.application(message)), "failed", message
        except BaseException as exc:  # SystemExit & co. must not kill a slot thread
            message = f"activity raised {describe_exception(exc)}"
            log.warning("activity.failed", error=message, error_type=type(exc).__name__)
            self._metrics.add("activity_errors")
            return self._failed(item, ErrorDetails.application(message)), "failed", message
        try:
            result = encode(value, what=f"result of activity {item.name!r}")
        except (TypeError, PayloadTooLargeError) as exc:
            log.warning("activity.bad_result", error=str(exc))
            self._metrics.add("activity_errors")
            return self._failed(item, ErrorDetails.application(str(exc))), "failed", str(exc)
        self._metrics.add("activity_success")
        log.debug("activity.completed", duration_s=round(time.perf_counter() - started, 6))
        completed = ActivityCompletedMsg(execution_id=item.execution_id,
                                         activity_id=item.activity_id, result=result)  # fmt: skip
        return completed, "completed", None

    @staticmethod
    def _failed(item: Any, error: ErrorDetails) -> Message:
        return ActivityFailedMsg(execution_id=item.execution_id, activity_id=item.activity_id,
                                 error=error)  # fmt: skip

    def _acked(
        self, running: _Running, outbound: OutboundMessage, log: Any, error: ProviderError | None
    ) -> Callable[[], None] | None:
        """The ack's outcome, in the committing thread; returns what finishes the item. Storage
        trouble goes to a thread of its own (retries back off, an abandon blocks)."""
        if error is not None and not isinstance(error, LockLostError):
            run_in_thread("duroxide-ack-retry", self._retry, running, outbound, log, error)
            return None
        try:
            self._settled(running, log, error, 0)
        except BaseException:  # as the slot thread would: log it, the dispatcher goes on
            self._log.exception("dispatcher.process_crashed", dispatcher=self.loop.name)
        return lambda: self.loop.finished(running)

    def _retry(
        self, running: _Running, outbound: OutboundMessage, log: Any, error: ProviderError
    ) -> None:
        try:
            if not self._settled(running, log, error, 0):
                self._hold_lease(running, self._options.worker_lock_timeout_ms)
                self._finish_outbound(running, outbound, log, first_attempt=1)
        except BaseException:
            self._log.exception("dispatcher.process_crashed", dispatcher=self.loop.name)
        finally:
            self.loop.finished(running)

    def _finish(self, running: _Running, completion: Message, log: Any) -> None:
        outbound = OutboundMessage(instance_id=running.work.item.instance_id, message=completion)
        self._finish_outbound(running, outbound, log)

    def _finish_outbound(
        self, running: _Running, outbound: OutboundMessage, log: Any, first_attempt: int = 0
    ) -> None:
        for attempt in range(first_attempt, ACK_ATTEMPTS):
            if attempt:
                self._stopping.wait(0.05 * 2 ** (attempt - 1))
            error = self._commits.submit((running.work.lock_token, outbound))  # group commit
            if self._settled(running, log, error, attempt):
                return

    def _settled(
        self, running: _Running, log: Any, error: ProviderError | None, attempt: int
    ) -> bool:
        """Whether the ack attempt ``attempt`` settled the activity (committed, refused, or
        failed for good); False: try again."""
        if error is None:
            return True
        if isinstance(error, LockLostError):
            if running.cancel.is_set():
                self._metrics.add("activity_cancelled")
                log.info("activity.result_discarded", reason="cancelled")
            else:
                self._metrics.add("activity_lock_lost")
                log.warning("activity.result_discarded", reason="lock lost")
            return True
        self._metrics.add("provider_errors")
        if not error.retryable or attempt == ACK_ATTEMPTS - 1:
            log.warning("activity.ack_failed", error=str(error))
            self._abandon(running, 0, ignore_attempt=error.retryable)
            return True
        return False

    def _forget(self, running: _Running) -> None:
        self._leases.release(running.work.lock_token)
        key = _key(running.work)
        with self._lock:
            self._inflight.pop(running.work.lock_token, None)
            if self._by_key.get(key) is running:
                del self._by_key[key]

    def _lock_lost(self, running: _Running) -> None:
        self._instruments.lock_lost("activity")
        running.cancel.set()

    def _on_cancelled(self, keys: list[Any]) -> None:
        with self._lock:
            hits = [self._by_key[k] for k in keys if k in self._by_key]
        for running in hits:
            running.cancel.set()


def _key(work: WorkItem) -> ActivityKey:
    item = work.item
    return ActivityKey(instance_id=item.instance_id, execution_id=item.execution_id,
                       activity_id=item.activity_id)  # fmt: skip
