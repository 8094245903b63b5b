"""How work completes or is cancelled, and how an execution ends (a mixin of ``Turn``).

Ending — completed, failed, continued as new — is checked against the history first (ending
while the recorded run went on is nondeterminism), then cancels whatever is still outstanding,
tells the parent, and appends the terminal event. A nondeterminism failure keeps none of the
diverging code's effects.
"""

from __future__ import annotations

import contextlib
from typing import Any

from duroxide.errors import (
    ActivityFailedError,
    ErrorDetails,
    PayloadTooLargeError,
    SubOrchestrationFailedError,
    TaskFailedError,
    describe_exception,
)
from duroxide.history import (
    ActivityCancelRequested,
    ActivityCompleted,
    ActivityFailed,
    ActivityScheduled,
    CustomStatusUpdated,
    Event,
    ExternalSubscribedCancelled,
    OrchestrationCompleted,
    OrchestrationContinuedAsNew,
    OrchestrationFailed,
    QueueEventDelivered,
    QueueSubscriptionCancelled,
    SubOrchestrationCancelRequested,
    SubOrchestrationCompleted,
    SubOrchestrationFailed,
    SubOrchestrationScheduled,
    TimerFired,
)
from duroxide.replay.actions import ContinueAsNewSpec
from duroxide.replay.matching import missing_message
from duroxide.replay.signals import Fatal
from duroxide.replay.tasks import EventTask, SubscriptionTask
from duroxide.replay.turn import TurnResult, TurnStatus
from duroxide.serialization import decode, encode
from duroxide.work_items import (
    ActivityKey,
    CancelRequested,
    ContinueAsNew,
    SubOrchCompletedMsg,
    SubOrchFailedMsg,
)


class Endings:
    # provided by Turn
    instance_id: str
    execution_id: int
    now_ms: int
    events: list[Event]
    pos: int
    replaying: bool
    started: Any
    gen: Any
    result: TurnResult
    waiting: dict[int, EventTask]
    mailboxes: dict[Any, Any]
    custom_status: str | None
    kv: dict[str, tuple[str, int]]
    kv_base: dict[str, tuple[str, int]] | None
    completion_sources: set[int]
    cancelled_sources: set[int]
    scheduled: dict[int, Event]
    persisted_decisions: list[Event]
    decision_cursor: int
    n_persisted: int
    pending_failure: ErrorDetails | None
    can_version: str | None
    version: str
    add_event: Any
    _send: Any
    _terminal: Any

    # --- completions and cancellation ------------------------------------------------------------

    def _complete_work(self, event: Event) -> None:
        assert event.source_event_id is not None
        task = self.waiting.pop(event.source_event_id, None)
        if task is None:
            return  # its task was cancelled (lost a race) or never awaited in this execution
        if isinstance(event, ActivityFailed):
            task.fail(ActivityFailedError(event.error.message, event.error))
        elif isinstance(event, SubOrchestrationFailed):
            task.fail(SubOrchestrationFailedError(event.error.message, event.error))
        elif isinstance(event, TimerFired):
            task.complete(None)
        else:
            assert isinstance(event, ActivityCompleted | SubOrchestrationCompleted)
            task.complete(decode(event.result))

    def cancel_event_task(self, task: EventTask) -> None:
        """A task lost a race: stop waiting for it and, outside replay, cancel its work."""
        self.waiting.pop(task.event_id, None)
        if task.kind == "timer" or self.replaying:
            return
        source = task.event_id
        if source in self.completion_sources or source in self.cancelled_sources:
            return
        self.cancelled_sources.add(source)
        eid = len(self.events) + 1
        if task.kind == "activity":
            self.add_event(ActivityCancelRequested(
                event_id=eid, timestamp_ms=self.now_ms, source_event_id=source,
                reason="lost a race"))  # fmt: skip
            self._cancel_activity(source)
        else:
            self.add_event(SubOrchestrationCancelRequested(
                event_id=eid, timestamp_ms=self.now_ms, source_event_id=source,
                reason="lost a race"))  # fmt: skip
            self._send(task.label, CancelRequested(reason="parent no longer needs the result"))

    def cancel_subscription(self, task: SubscriptionTask) -> None:
        if task in task.mailbox.waiting:
            task.mailbox.waiting.remove(task)
        if self.replaying or task.done or task.event_id in self.cancelled_sources:
            return
        self.cancelled_sources.add(task.event_id)
        cls = QueueSubscriptionCancelled if task.mailbox.is_queue else ExternalSubscribedCancelled
        self.add_event(cls(event_id=len(self.events) + 1, timestamp_ms=self.now_ms,
                               source_event_id=task.event_id))  # fmt: skip

    def _cancel_activity(self, activity_id: int) -> None:
        key = ActivityKey(instance_id=self.instance_id, execution_id=self.execution_id,
                          activity_id=activity_id)  # fmt: skip
        items = self.result.worker_items
        new = [w for w in items if w.activity_id != activity_id]
        if len(new) != len(items):
            self.result.worker_items = new  # scheduled in this very turn: never enqueue it
        else:
            self.result.cancelled_activities.append(key)

    # --- ending the execution --------------------------------------------------------------------

    def _complete_with(self, value: Any) -> None:
        try:
            output = encode(value, what="orchestration output")
        except (TypeError, PayloadTooLargeError) as exc:
            self._terminate(TurnStatus.FAILED, error=ErrorDetails.application(str(exc)))
            return
        self._terminate(TurnStatus.COMPLETED, output=output)

    def _fail_with(self, exc: BaseException) -> None:
        """The orchestration code raised: an ``application`` failure, whatever the cause of the
        exception it let through (an activity's poison or timeout keeps its ``kind``)."""
        if isinstance(exc, TaskFailedError):
            details = ErrorDetails.application(exc.message, exc.details.kind)
        else:  # describe_exception names SystemExit & co. and survives a broken __str__
            details = ErrorDetails.application(describe_exception(exc))
        self._terminate(TurnStatus.FAILED, error=details)

    def _fail_nondeterministic(self, message: str) -> None:
        self.replaying = False  # the failure itself is new
        # Nothing the diverging code asked for may take effect (e.g. a continue-as-new).
        result = self.result
        result.worker_items, result.orchestrator_items = [], []
        result.cancelled_activities, result.next_execution_id = [], None
        self._terminate(
            TurnStatus.FAILED,
            error=ErrorDetails.configuration(message, "nondeterminism"),
            checked=True,
        )

    def _continue_as_new(self, spec: ContinueAsNewSpec) -> None:
        self._check_can_end(TurnStatus.CONTINUED_AS_NEW)
        started = self.started
        assert started is not None
        carried = [[box.name, data, seq] for box in self.mailboxes.values() if box.is_queue
                   for seq, data in box.buffer]  # fmt: skip
        carried.sort(key=lambda item: item[2])
        queue = [[name, data] for name, data, _ in carried]
        queue += [[e.name, e.data] for e in self.events[self.pos + 1:]  # not yet delivered
                  if isinstance(e, QueueEventDelivered)]  # fmt: skip
        self._send(self.instance_id, ContinueAsNew(
            execution_id=self.execution_id + 1, name=started.name, version=spec.version,
            input=spec.input, parent_instance_id=started.parent_instance_id,
            parent_execution_id=started.parent_execution_id,
            parent_event_id=started.parent_event_id, carried_queue=queue,
            custom_status=self.custom_status, kv={k: [v, t] for k, (v, t) in self.kv.items()},
            trace_context=started.trace_context,
        ))  # fmt: skip
        self.result.next_execution_id = self.execution_id + 1
        self.can_version = spec.version
        self._terminate(TurnStatus.CONTINUED_AS_NEW, output=spec.input)

    def _check_can_end(self, status: TurnStatus) -> None:
        """Ending while history still goes on is nondeterminism (checked before any effect)."""
        if not self.replaying:
            return
        if self.decision_cursor < len(self.persisted_decisions):  # name the step it skips
            skipped = self.persisted_decisions[self.decision_cursor]
            raise Fatal(missing_message(skipped, f"now ends as {status.value}"))
        upcoming = self.events[self.pos]
        raise Fatal(
            f"nondeterministic orchestration: the code now ends ({status.value}) while "
            f"replaying event {upcoming.event_id} ({upcoming.kind}), but the recorded run "
            "went on. The orchestration code changed while this instance was running; "
            "register the new code as a new version instead."
        )

    def _terminate(
        self, status: TurnStatus, *, output: str | None = None, error: ErrorDetails | None = None,
        checked: bool = False,
    ) -> None:  # fmt: skip
        if self._terminal():
            return
        if not checked:
            self._check_can_end(status)
        if self.gen is not None:
            gen, self.gen = self.gen, None
            with contextlib.suppress(BaseException):  # a finally block that misbehaves
                gen.close()
        self.result.status = status
        self.result.output = output
        self.result.error = error
        self._cancel_outstanding(status, error)
        started = self.started
        assert started is not None
        if status is not TurnStatus.CONTINUED_AS_NEW and started.parent_instance_id is not None:
            pe, pev = started.parent_execution_id or 1, started.parent_event_id or 0
            reply: Any = (
                SubOrchCompletedMsg(execution_id=pe, event_id=pev, result=output)
                if status is TurnStatus.COMPLETED
                else SubOrchFailedMsg(execution_id=pe, event_id=pev, error=error)
            )
            self._send(started.parent_instance_id, reply)
        eid, ts = len(self.events) + 1, self.now_ms
        if status is TurnStatus.COMPLETED:
            self.add_event(OrchestrationCompleted(event_id=eid, timestamp_ms=ts, output=output))
        elif status is TurnStatus.FAILED:
            assert error is not None
            self.add_event(OrchestrationFailed(event_id=eid, timestamp_ms=ts, error=error))
        else:
            self.add_event(OrchestrationContinuedAsNew(
                event_id=eid, timestamp_ms=ts, input=output, version=self.can_version))  # fmt: skip

    def _cancel_outstanding(self, status: TurnStatus, error: ErrorDetails | None) -> None:
        """Activities and children still running when the execution ends are cancelled."""
        done = self.completion_sources | self.cancelled_sources
        reason = "parent orchestration ended"
        if error is not None and error.kind == "cancelled":
            reason = f"parent {error.message}"
        for event in list(self.scheduled.values()):
            if event.event_id in done:
                continue
            if isinstance(event, ActivityScheduled):
                self._cancel_activity(event.event_id)
            elif isinstance(event, SubOrchestrationScheduled):
                self._send(event.instance_id, CancelRequested(reason=reason))

    def _finish(self) -> TurnResult:
        result = self.result
        started = self.started
        assert started is not None
        if self.kv_base is None:
            self.kv_base = dict(self.kv)
        result.new_events = self.events[self.n_persisted :]
        result.orchestration_name = started.name
        result.orchestration_version = self.version
        result.parent_instance_id = started.parent_instance_id
        result.parent_execution_id = started.parent_execution_id
        result.parent_event_id = started.parent_event_id
        result.trace_context = started.trace_context
        result.started_at_ms = started.timestamp_ms
        result.custom_status = self.custom_status
        result.custom_status_changed = any(
            isinstance(e, CustomStatusUpdated) for e in result.new_events
        )
        if self.pending_failure is None and (
            result.error is None or result.error.kind != "nondeterminism"
        ):
            base = self.kv_base
            result.kv_upserts = {k: v for k, v in self.kv.items() if base.get(k) != v}
            result.kv_deletes = set(base) - set(self.kv)
        return result
