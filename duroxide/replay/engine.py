"""The replay engine: one pure entry point, :func:`run_turn`, that never raises.

A turn (1) turns the instance's new messages into history events, dropping duplicates and stale
ones; (2) re-runs the orchestration generator from the start, feeding it the recorded results in
history order and matching each decision it makes positionally against the recorded decisions;
(3) lets the code run past the end of the history, recording its new decisions as the turn's
work. The engine touches no database, clock or logger: time comes in ``TurnInput.now_ms``, new
GUIDs from ``TurnInput.new_guid``, and trace messages go out in ``TurnResult.logs``.
"""

from __future__ import annotations

import inspect
import traceback
import uuid
from collections.abc import Callable, Generator
from typing import Any

from duroxide.context import OrchestrationContext
from duroxide.errors import (
    ErrorDetails,
)
from duroxide.history import (
    ActivityScheduled,
    Event,
    ExternalEvent,
    ExternalSubscribed,
    OrchestrationCancelRequested,
    OrchestrationChained,
    OrchestrationStarted,
    QueueEventDelivered,
    QueueSubscribed,
    SubOrchestrationScheduled,
    SystemCall,
    TimerCreated,
)
from duroxide.replay import inbox
from duroxide.replay.actions import (
    ActivitySpec,
    AllSpec,
    ContinueAsNewSpec,
    DequeueSpec,
    DetachedSpec,
    LeafSpec,
    RaceSpec,
    RetryActivitySpec,
    Spec,
    SubOrchestrationSpec,
    SystemSpec,
    TimerSpec,
    WaitSpec,
    spec_from_descriptor,
)
from duroxide.replay.ending import Endings
from duroxide.replay.host import ContextHost
from duroxide.replay.matching import describe, mismatch_message, missing_message, same_decision
from duroxide.replay.signals import Fatal, NeedsRead
from duroxide.replay.tasks import (
    AllTask,
    EventTask,
    FailedTask,
    ImmediateTask,
    Mailbox,
    RaceTask,
    RetryTask,
    SubscriptionTask,
    Task,
)
from duroxide.replay.turn import TurnInput, TurnResult, TurnStatus
from duroxide.serialization import decode
from duroxide.work_items import (
    ActivityWorkItem,
    OutboundMessage,
    StartOrchestration,
    TimerFiredMsg,
)


def run_turn(inp: TurnInput) -> TurnResult:
    """Run one orchestration turn. Never raises: user errors fail the orchestration, engine
    errors come back as ``TurnStatus.ENGINE_ERROR`` for the dispatcher to retry."""
    return start_turn(inp)[0]


def start_turn(inp: TurnInput) -> tuple[TurnResult, Turn | None]:
    """Like :func:`run_turn`, and also return the live turn when it can be resumed later
    (the orchestration is still running): keep it, and after the ack commits, hand the next
    messages to :func:`resume_turn` instead of replaying the whole history."""
    try:
        turn = Turn(inp)
        return _resumable(turn.run(), turn)
    except BaseException:
        return _engine_error(inp), None


def resume_turn(turn: Turn, inp: TurnInput) -> tuple[TurnResult, Turn | None]:
    """Continue a turn returned by :func:`start_turn`/:func:`resume_turn` whose result was
    committed, with the next messages (``inp.history`` is ignored). Never raises. A result of
    NEEDS_READ or ENGINE_ERROR leaves the turn unusable: run the turn afresh instead."""
    try:
        return _resumable(turn.resume(inp), turn)
    except BaseException:
        return _engine_error(inp), None


def _resumable(result: TurnResult, turn: Turn) -> tuple[TurnResult, Turn | None]:
    alive = result.status in (TurnStatus.RUNNING, TurnStatus.DROPPED) and turn.gen is not None
    return result, (turn if alive else None)


def _engine_error(inp: TurnInput) -> TurnResult:
    return TurnResult(
        status=TurnStatus.ENGINE_ERROR,
        execution_id=inp.execution_id,
        internal_error=traceback.format_exc(),
    )


class Turn(ContextHost, Endings):
    """State of one replay. Also the host the ``OrchestrationContext`` talks to."""

    def __init__(self, inp: TurnInput) -> None:
        self.inp = inp
        self.instance_id = inp.instance_id
        self.execution_id = inp.execution_id
        self.now_ms = inp.now_ms
        self.current_time_ms = inp.now_ms
        self.events: list[Event] = []
        #: Indexes kept up to date by add_event, so a resumed turn never rescans history.
        self.scheduled: dict[int, Event] = {}  # activities, timers, children by event id
        self.completion_sources: set[int] = set()  # completed anywhere in the stream
        self.cancelled_sources: set[int] = set()  # cancellation breadcrumbs
        self.cancel_requested = False
        for event in inp.history:
            self.add_event(event)
        self.n_persisted = len(self.events)
        self.persisted_decisions = [e for e in self.events if e.DECISION]
        self.decision_cursor = 0
        self.matched: set[int] = set()
        self.pos = 0
        self.replaying = True
        self.started: OrchestrationStarted | None = None
        self.version = ""
        self.handler: Callable[[Any, Any], Any] | None = None
        self.gen: Generator[Any, Any, Any] | None = None
        self.current: Task | None = None
        self.waiting: dict[int, EventTask] = {}
        self.mailboxes: dict[tuple[bool, str], Mailbox] = {}
        self.arrivals = 0
        self.custom_status: str | None = None
        self.kv: dict[str, tuple[str, int]] = {}
        self.kv_base: dict[str, tuple[str, int]] | None = None
        self.fatal: str | None = None
        #: Set by the inbox: fail at once (poison, or a completion history cannot explain).
        self.pending_failure: ErrorDetails | None = None
        self.can_version: str | None = None
        self.result = TurnResult(status=TurnStatus.RUNNING, execution_id=inp.execution_id)

    # --- the turn --------------------------------------------------------------------------------

    def add_event(self, event: Event) -> None:
        """Append to the event stream, keeping the indexes current."""
        self.events.append(event)
        if isinstance(event, ActivityScheduled | TimerCreated | SubOrchestrationScheduled):
            self.scheduled[event.event_id] = event
        elif event.source_event_id is not None:
            if event.COMPLETION:
                self.completion_sources.add(event.source_event_id)
            elif event.BREADCRUMB:
                self.cancelled_sources.add(event.source_event_id)
        elif isinstance(event, OrchestrationCancelRequested):
            self.cancel_requested = True

    def run(self) -> TurnResult:
        prepared = inbox.prepare(self)
        if prepared is not None:
            return prepared
        return self._process()

    def resume(self, inp: TurnInput) -> TurnResult:
        """Continue this (cached, running) turn with new messages: no replay, no history scan.

        Only valid when the previous result of this turn was RUNNING and was committed.
        """
        self.inp = inp
        self.now_ms = self.current_time_ms = inp.now_ms
        self.n_persisted = len(self.events)
        self.persisted_decisions, self.decision_cursor = [], 0
        self.replaying = False
        self.kv_base = None
        self.pending_failure = None
        self.result = TurnResult(status=TurnStatus.RUNNING, execution_id=self.execution_id)
        inbox.convert_all(self, list(inp.messages))
        return self._process()

    def _process(self) -> TurnResult:
        if len(self.events) == self.n_persisted and self.pending_failure is None:
            # every message was a duplicate or stale: consume them, change nothing
            self.result.status = TurnStatus.DROPPED
            return self.result
        if self.pending_failure is not None:
            self.pos, self.replaying = self.n_persisted, False
            self.kv_base = dict(self.kv)
            self._terminate(TurnStatus.FAILED, error=self.pending_failure, checked=True)
            return self._finish()
        try:
            while self.pos < len(self.events) and not self._terminal():
                if self.pos == self.n_persisted:
                    self.kv_base = dict(self.kv)
                self.replaying = self.pos < self.n_persisted
                event = self.events[self.pos]
                self.current_time_ms = event.timestamp_ms
                try:
                    self._handle(event)
                except Fatal as fatal:
                    self._fail_nondeterministic(fatal.message)
                self.pos += 1
        except NeedsRead as need:
            return TurnResult(
                status=TurnStatus.NEEDS_READ, execution_id=self.execution_id,
                pending_read=need.target,
            )  # fmt: skip
        return self._finish()

    def _terminal(self) -> bool:
        return self.result.status is not TurnStatus.RUNNING

    def _handle(self, event: Event) -> None:
        if isinstance(event, OrchestrationStarted):
            self._start(event)
        elif event.DECISION:
            if event.event_id not in self.matched:
                raise Fatal(missing_message(event, self._now_doing()))
        elif event.COMPLETION:
            self._complete_work(event)
        elif isinstance(event, ExternalEvent | QueueEventDelivered):
            self.arrivals += 1
            box = self.mailbox(isinstance(event, QueueEventDelivered), event.name)
            box.deliver(self.arrivals, event.data, decode)
        elif isinstance(event, OrchestrationCancelRequested):
            message = f"canceled: {event.reason}" if event.reason else "canceled"
            self._terminate(TurnStatus.FAILED, error=ErrorDetails.application(message, "cancelled"))
            return
        self._drive()

    def _now_doing(self) -> str:
        if self.gen is None:
            return "has finished"
        return "is waiting on an earlier task" if self.current is not None else "has finished"

    # --- running the generator -------------------------------------------------------------------

    def _start(self, event: OrchestrationStarted) -> None:
        self.custom_status = event.custom_status
        self.kv = {k: (str(v[0]), int(v[1])) for k, v in event.kv.items()}
        for queue, data in event.carried_queue:
            self.arrivals += 1
            self.mailbox(True, queue).deliver(self.arrivals, data, decode)
        ctx = OrchestrationContext(
            self, instance_id=self.instance_id, execution_id=self.execution_id,
            orchestration_name=event.name, orchestration_version=self.version,
        )  # fmt: skip
        assert self.handler is not None
        try:
            value = decode(event.input)
            out = self.handler(ctx, value)
        except BaseException as exc:
            self._check_fatal()
            self._fail_with(exc)
            return
        self._check_fatal()
        if inspect.isgenerator(out):
            self.gen = out
            self._step(None, None)
        elif inspect.iscoroutine(out):
            out.close()
            self._terminate(TurnStatus.FAILED, error=ErrorDetails.configuration(
                f"orchestration {event.name!r} is an async function; write orchestrations as "
                "generators (def + yield)", "bad_handler"))  # fmt: skip
        else:
            self._complete_with(out)

    def _drive(self) -> None:
        while self.gen is not None and not self._terminal():
            task = self.current
            if task is None or not task.done:
                return
            self.current = None
            self._step(task.value, task.error)

    def _step(self, value: Any, error: BaseException | None) -> None:
        assert self.gen is not None
        try:
            yielded = self.gen.throw(error) if error is not None else self.gen.send(value)
        except StopIteration as stop:
            self._check_fatal()
            self._complete_with(stop.value)
            return
        except BaseException as exc:
            self._check_fatal()
            self._fail_with(exc)
            return
        self._check_fatal()
        try:
            spec = spec_from_descriptor(yielded)
        except (TypeError, ValueError, KeyError) as exc:
            if isinstance(exc, KeyError):
                exc = TypeError(f"malformed task descriptor: missing {exc}")
            self.current = FailedTask(exc)
            return
        if isinstance(spec, ContinueAsNewSpec):
            self._continue_as_new(spec)
            return
        self.current = self.start_task(spec)

    def _check_fatal(self) -> None:
        if self.fatal is not None:
            raise Fatal(self.fatal)

    # --- starting tasks: every decision goes through _decide -------------------------------------

    def start_task(self, spec: Spec) -> Task:
        if isinstance(spec, AllSpec):
            return AllTask([self.start_leaf(c) for c in spec.children], spec.typed)
        if isinstance(spec, RaceSpec):
            return RaceTask(self, [self.start_leaf(c) for c in spec.children])
        assert not isinstance(spec, ContinueAsNewSpec)
        return self.start_leaf(spec)

    def start_leaf(self, spec: LeafSpec) -> Task:
        if isinstance(spec, ActivitySpec):
            return self._start_activity(spec)
        if isinstance(spec, RetryActivitySpec):
            return RetryTask(self, spec)
        if isinstance(spec, TimerSpec):
            event, new = self._decide(lambda eid, ts: TimerCreated(
                event_id=eid, timestamp_ms=ts, fire_at_ms=ts + spec.delay_ms))  # fmt: skip
            assert isinstance(event, TimerCreated)
            if new:
                msg = TimerFiredMsg(execution_id=self.execution_id, timer_id=event.event_id,
                                    fire_at_ms=event.fire_at_ms)  # fmt: skip
                self._send(self.instance_id, msg, visible_at_ms=event.fire_at_ms)
            return self._wait_for(EventTask("timer", event.event_id, "timer"))
        if isinstance(spec, WaitSpec | DequeueSpec):
            is_queue = isinstance(spec, DequeueSpec)
            name = spec.queue if isinstance(spec, DequeueSpec) else spec.name
            event, _ = self._decide(
                (lambda eid, ts: QueueSubscribed(event_id=eid, timestamp_ms=ts, name=name))
                if is_queue else
                (lambda eid, ts: ExternalSubscribed(event_id=eid, timestamp_ms=ts, name=name))
            )  # fmt: skip
            box = self.mailbox(is_queue, name)
            sub = SubscriptionTask(box, event.event_id)
            box.subscribe(sub, decode)
            return sub
        if isinstance(spec, SubOrchestrationSpec):
            return self._start_sub_orchestration(spec)
        if isinstance(spec, DetachedSpec):
            _, new = self._decide(lambda eid, ts: OrchestrationChained(
                event_id=eid, timestamp_ms=ts, name=spec.name, instance_id=spec.instance_id,
                input=spec.input, version=spec.version))  # fmt: skip
            if new:
                self._send(spec.instance_id, StartOrchestration(
                    name=spec.name, version=spec.version, input=spec.input,
                    trace_context=self._trace_context()))  # fmt: skip
            return ImmediateTask(None)
        assert isinstance(spec, SystemSpec)
        event, _ = self._decide(
            lambda eid, ts: SystemCall(event_id=eid, timestamp_ms=ts, op=spec.op,
                                       args=list(spec.args)),
            fill=self._system_value,
        )  # fmt: skip
        assert isinstance(event, SystemCall)
        return ImmediateTask(event.value)

    def _start_activity(self, spec: ActivitySpec) -> Task:
        event, new = self._decide(lambda eid, ts: ActivityScheduled(
            event_id=eid, timestamp_ms=ts, name=spec.name, input=spec.input,
            session_id=spec.session_id, tag=spec.tag))  # fmt: skip
        if new:
            started = self.started
            assert started is not None
            self.result.worker_items.append(ActivityWorkItem(
                instance_id=self.instance_id, execution_id=self.execution_id,
                activity_id=event.event_id, name=spec.name, input=spec.input,
                session_id=spec.session_id, tag=spec.tag, orchestration_name=started.name,
                orchestration_version=self.version, trace_context=started.trace_context,
            ))  # fmt: skip
        return self._wait_for(EventTask("activity", event.event_id, spec.name))

    def _start_sub_orchestration(self, spec: SubOrchestrationSpec) -> Task:
        event, new = self._decide(lambda eid, ts: SubOrchestrationScheduled(
            event_id=eid, timestamp_ms=ts, name=spec.name,
            instance_id=spec.instance_id or self._child_id(eid),
            input=spec.input, version=spec.version, explicit_id=spec.instance_id is not None,
        ))  # fmt: skip
        assert isinstance(event, SubOrchestrationScheduled)
        if new:
            self._send(event.instance_id, StartOrchestration(
                name=spec.name, version=spec.version, input=spec.input,
                parent_instance_id=self.instance_id, parent_execution_id=self.execution_id,
                parent_event_id=event.event_id, trace_context=self._trace_context()))  # fmt: skip
        task = EventTask("sub_orchestration", event.event_id, event.instance_id)
        return self._wait_for(task)

    def _child_id(self, event_id: int) -> str:
        """Default sub-orchestration id: ``{parent}::sub::{event_id}`` in the first execution,
        ``{parent}::sub::{execution}.{event_id}`` after continue-as-new (event ids restart)."""
        if self.execution_id == 1:
            return f"{self.instance_id}::sub::{event_id}"
        return f"{self.instance_id}::sub::{self.execution_id}.{event_id}"

    def _wait_for(self, task: EventTask) -> EventTask:
        self.waiting[task.event_id] = task
        return task

    def _system_value(self, event: Event) -> Event:
        assert isinstance(event, SystemCall)
        if event.op == "utc_now":
            value: Any = self.now_ms
        elif event.op == "new_guid":
            value = self.inp.new_guid() if self.inp.new_guid else str(uuid.uuid4())
        else:
            target = (event.args[0], event.args[1])
            if target in self.inp.kv_reads:
                value = self.inp.kv_reads[target]
            elif self.inp.kv_reader is not None:
                value = self.inp.kv_reader(*target)
            else:
                raise NeedsRead(*target)
        return SystemCall(event_id=event.event_id, timestamp_ms=event.timestamp_ms, op=event.op,
                          value=value, args=event.args)  # fmt: skip

    def _decide(
        self, make: Callable[[int, int], Event], fill: Callable[[Event], Event] | None = None
    ) -> tuple[Event, bool]:
        """Record a decision: match it against history while replaying, else append it."""
        if self.decision_cursor < len(self.persisted_decisions):
            recorded = self.persisted_decisions[self.decision_cursor]
            candidate = make(recorded.event_id, recorded.timestamp_ms)
            if not same_decision(recorded, candidate):
                raise Fatal(mismatch_message(recorded, candidate))
            self.decision_cursor += 1
            self.matched.add(recorded.event_id)
            return recorded, False
        event = make(len(self.events) + 1, self.now_ms)
        if self.replaying:
            upcoming = self.events[self.pos]
            raise Fatal(
                f"nondeterministic orchestration: the code now does {describe(event)} while "
                f"replaying event {upcoming.event_id} ({upcoming.kind}), but history recorded no "
                "such step there. The orchestration code changed while this instance was "
                "running; register the new code as a new version instead."
            )
        if fill is not None:
            event = fill(event)
        self.add_event(event)
        self.matched.add(event.event_id)
        return event, True

    # --- helpers ---------------------------------------------------------------------------------

    def mailbox(self, is_queue: bool, name: str) -> Mailbox:
        key = (is_queue, name)
        box = self.mailboxes.get(key)
        if box is None:
            box = self.mailboxes[key] = Mailbox(name, is_queue=is_queue)
        return box

    def _send(self, instance_id: str, message: Any, visible_at_ms: int | None = None) -> None:
        self.result.orchestrator_items.append(
            OutboundMessage(instance_id=instance_id, message=message, visible_at_ms=visible_at_ms)
        )

    def _trace_context(self) -> str | None:
        return self.started.trace_context if self.started else None
