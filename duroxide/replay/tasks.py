"""Task state inside one replay: what the generator (or a composite) is waiting on.

A task resolves once, with a value or an error to throw into the generator. Composites and retry
tasks observe their children through ``listener``; the generator's current task is polled by the
engine after every event.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from duroxide.errors import ActivityFailedError, ErrorDetails
from duroxide.replay.actions import ActivitySpec, RetryActivitySpec, TimerSpec

if TYPE_CHECKING:
    from duroxide.replay.engine import Turn


class Task:
    __slots__ = ("done", "error", "listener", "value")

    def __init__(self) -> None:
        self.done = False
        self.value: Any = None
        self.error: BaseException | None = None
        self.listener: Callable[[Task], None] | None = None

    def complete(self, value: Any) -> None:
        if self.done:
            return
        self.done, self.value = True, value
        if self.listener is not None:
            self.listener(self)

    def fail(self, error: BaseException) -> None:
        if self.done:
            return
        self.done, self.error = True, error
        if self.listener is not None:
            self.listener(self)

    def cancel(self, turn: Turn) -> None:
        """Called when the task is no longer wanted (it lost a race)."""


class ImmediateTask(Task):
    """Resolved at creation: system calls and detached starts."""

    __slots__ = ()

    def __init__(self, value: Any) -> None:
        super().__init__()
        self.done, self.value = True, value


class FailedTask(Task):
    """A yield the engine refused (bad descriptor): its error is thrown back at once."""

    __slots__ = ()

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.done, self.error = True, error


class EventTask(Task):
    """Work completed by a later history event: an activity, a timer or a sub-orchestration."""

    __slots__ = ("event_id", "kind", "label")

    def __init__(self, kind: str, event_id: int, label: str) -> None:
        super().__init__()
        self.kind = kind  # "activity" | "timer" | "sub_orchestration"
        self.event_id = event_id
        self.label = label

    def cancel(self, turn: Turn) -> None:
        turn.cancel_event_task(self)


class SubscriptionTask(Task):
    """A ``wait_for_event`` or ``dequeue_event``, resolved by the next message of its mailbox."""

    __slots__ = ("event_id", "mailbox", "taken")

    def __init__(self, mailbox: Mailbox, event_id: int) -> None:
        super().__init__()
        self.mailbox = mailbox
        self.event_id = event_id
        #: The buffered message this subscription took when it was created: (arrival, data).
        self.taken: tuple[int, str | None] | None = None

    def cancel(self, turn: Turn) -> None:
        if self.taken is not None:
            # Lost a race to an earlier arrival: the code never saw this message, so it goes
            # back to the head of the mailbox for the next subscriber.
            self.mailbox.buffer.appendleft(self.taken)
            self.taken, self.done, self.value, self.error = None, False, None, None
        turn.cancel_subscription(self)


class Mailbox:
    """Messages of one event name or queue: FIFO, matched to subscriptions in order."""

    __slots__ = ("buffer", "is_queue", "name", "waiting")

    def __init__(self, name: str, *, is_queue: bool) -> None:
        self.name = name
        self.is_queue = is_queue
        self.buffer: deque[tuple[int, str | None]] = deque()  # (arrival order, data)
        self.waiting: deque[SubscriptionTask] = deque()

    def deliver(self, seq: int, data: str | None, decode: Callable[[str | None], Any]) -> None:
        while self.waiting:
            task = self.waiting.popleft()
            if not task.done:
                _resolve_with(task, data, decode)
                return
        self.buffer.append((seq, data))

    def subscribe(self, task: SubscriptionTask, decode: Callable[[str | None], Any]) -> None:
        if self.buffer:
            task.taken = self.buffer.popleft()
            _resolve_with(task, task.taken[1], decode)
        else:
            self.waiting.append(task)


def _resolve_with(task: Task, data: str | None, decode: Callable[[str | None], Any]) -> None:
    task.complete(decode(data))


class RetryTask(Task):
    """``schedule_activity_with_retry``: attempts and backoff timers, all durable decisions."""

    __slots__ = ("activity", "attempt", "backoff", "first_ms", "spec", "timeout", "turn")

    def __init__(self, turn: Turn, spec: RetryActivitySpec) -> None:
        super().__init__()
        self.turn = turn
        self.spec = spec
        self.attempt = 0
        self.first_ms: int | None = None
        self.activity: Task | None = None
        self.timeout: Task | None = None
        self.backoff: Task | None = None
        self._start_attempt()

    def _start_attempt(self, _timer: Task | None = None) -> None:
        if self.done:
            return
        self.attempt += 1
        self.backoff = None
        activity = self.turn.start_leaf(self.spec.activity)
        if self.first_ms is None:
            self.first_ms = self.turn.current_time_ms
        self.activity = activity
        if self.spec.policy.timeout_ms is not None:
            self.timeout = self.turn.start_leaf(TimerSpec(self.spec.policy.timeout_ms))
            self.timeout.listener = self._on_timeout
        activity.listener = self._on_activity
        if activity.done:
            self._on_activity(activity)

    def _on_activity(self, task: Task) -> None:
        if self.done or task is not self.activity:
            return
        self.timeout = None  # an unfired timer needs no cleanup
        if task.error is None:
            self.complete(task.value)
            return
        policy = self.spec.policy
        if self.attempt >= policy.max_attempts:
            self.fail(task.error)
            return
        delay = policy.delay_before(self.attempt + 1)
        if policy.total_timeout_ms is not None:
            elapsed = self.turn.current_time_ms - (self.first_ms or 0)
            if elapsed + delay >= policy.total_timeout_ms:
                self.fail(task.error)
                return
        self.turn.trace("warn", f"activity {self.spec.activity.name!r} attempt {self.attempt} "
                        f"failed, retrying in {delay} ms: {task.error}")  # fmt: skip
        if delay <= 0:
            self._start_attempt()
            return
        self.backoff = self.turn.start_leaf(TimerSpec(delay))
        self.backoff.listener = self._start_attempt
        if self.backoff.done:
            self._start_attempt()

    def _on_timeout(self, task: Task) -> None:
        if self.done or task is not self.timeout or self.activity is None:
            return
        self.activity.cancel(self.turn)
        name = self.spec.activity.name
        ms = self.spec.policy.timeout_ms
        message = f"activity {name!r} timed out after {ms} ms (attempt {self.attempt})"
        self.fail(ActivityFailedError(message, ErrorDetails.application(message, "timeout")))

    def cancel(self, turn: Turn) -> None:
        for task in (self.activity, self.timeout, self.backoff):
            if task is not None and not task.done:
                task.cancel(turn)


class AllTask(Task):
    """``ctx.all([...])``: resolves when every child has, with results in task order."""

    __slots__ = ("children", "remaining", "typed")

    def __init__(self, children: list[Task], typed: bool) -> None:
        super().__init__()
        self.children = children
        self.typed = typed
        self.remaining = sum(1 for c in children if not c.done)
        for child in children:
            if not child.done:
                child.listener = self._on_child
        if self.remaining == 0:
            self._finish()

    def _on_child(self, _task: Task) -> None:
        self.remaining -= 1
        if self.remaining == 0:
            self._finish()

    def _finish(self) -> None:
        results = [_ok_or_err(child) for child in self.children]
        if self.typed:  # as the reference SDK: values unwrapped, failures stay {"err": message}
            self.complete([r.get("ok", r) for r in results])
            return
        self.complete(results)


def _ok_or_err(task: Task) -> dict[str, Any]:
    if task.error is not None:
        return {"err": str(task.error)}
    return {"ok": task.value}


class RaceTask(Task):
    """``ctx.race(a, b)``: the first child to resolve, in history order, wins; the rest are
    cancelled."""

    __slots__ = ("children", "turn")

    def __init__(self, turn: Turn, children: list[Task]) -> None:
        super().__init__()
        self.turn = turn
        self.children = children
        done = [child for child in children if child.done]
        if done:
            # Buffered events resolve subscriptions at once: the earliest arrival wins.
            self._on_child(min(done, key=_arrival))
            return
        for child in children:
            child.listener = self._on_child

    def _on_child(self, winner: Task) -> None:
        if self.done:
            return
        index = self.children.index(winner)
        for child in self.children:
            if child is not winner and (not child.done or _arrival(child) >= 0):
                child.listener = None
                child.cancel(self.turn)
        if winner.error is not None:
            self.fail(winner.error)
        else:
            self.complete({"index": index, "value": winner.value})


def _arrival(task: Task) -> int:
    taken = task.taken if isinstance(task, SubscriptionTask) else None
    return -1 if taken is None else taken[0]


def retry_label(spec: ActivitySpec) -> str:
    return f"activity {spec.name!r}"
