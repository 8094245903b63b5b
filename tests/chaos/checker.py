"""An independent invariant checker: reads the stored history and queues of one schema with
plain SQL (``sql/checker.sql``), never through the runtime or the provider, and reports every
broken invariant.

Invariants, per execution and instance:

* event ids are exactly 1..n (dense, unique) and ``executions.event_count`` is n; event 1 is
  the only ``OrchestrationStarted``; a terminal event, if any, is the last and the only one;
* every completion answers a scheduled event of its kind, and at most once: activities
  (``ActivityCompleted``/``ActivityFailed``), timers (``TimerFired``) and sub-orchestrations
  (``SubOrchestrationCompleted``/``SubOrchestrationFailed``) — a second one is a duplicate event;
* the execution's status (and output) agree with its last event, and the instance's with its
  current (last) execution;
* no queue row (orchestrator, worker or claim) is left for a finished instance (polled until
  ``settle_s``: a stale message is dropped by a last turn shortly after the completion);
* no message is left queued for an instance that never ran a turn (a start never processed);
* no instance is still running; with ``expected`` (instance id -> output, or
  ``EXPECT_FAILED``) every expected instance exists and finished as expected — one that is
  missing, still running or in the wrong terminal state is *lost*.

Instances, executions and history are read in one repeatable-read snapshot, so a commit between
the reads cannot tear them.

``check(url, schema, expected)`` returns an ``InvariantReport``; ``report.apply(result)`` copies
its counts onto a ``ScenarioResult`` (and adds the checks ``history invariants`` and
``outputs as expected``).
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg

from tests.chaos.result import ScenarioResult
from tests.chaos.sqlfile import statement

EXPECT_FAILED: Any = object()  #: an ``expected`` value: the instance must have failed

TERMINAL = {
    "OrchestrationCompleted": "Completed",
    "OrchestrationFailed": "Failed",
    "OrchestrationContinuedAsNew": "ContinuedAsNew",
}
#: completion kind -> the kind of the event it answers (its source_event_id)
ANSWERS = {
    "ActivityCompleted": "ActivityScheduled",
    "ActivityFailed": "ActivityScheduled",
    "TimerFired": "TimerCreated",
    "SubOrchestrationCompleted": "SubOrchestrationScheduled",
    "SubOrchestrationFailed": "SubOrchestrationScheduled",
}
FINISHED = ("Completed", "Failed")
MAX_LISTED = 20


@dataclass
class InvariantReport:
    completed: int = 0
    failed: int = 0
    #: expected instances missing, still running, or finished in the wrong terminal state
    lost: int = 0
    #: completions answered twice, second terminal or started events, reused event ids
    duplicate_events: int = 0
    wrong_outputs: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def add(self, message: str) -> None:
        self.violations.append(message)

    def summary(self, limit: int = 5) -> str:
        shown = "; ".join(self.violations[:limit])
        more = len(self.violations) - limit
        return shown + (f"; … {more} more" if more > 0 else "")

    def apply(self, result: ScenarioResult) -> None:
        """Copy the counts onto ``result`` and record the checks."""
        result.completed = self.completed
        result.failed = self.failed
        result.lost = self.lost
        result.duplicate_events = self.duplicate_events
        result.checks["history invariants"] = self.ok
        result.checks["outputs as expected"] = self.wrong_outputs == 0
        if not self.ok:
            result.detail = (result.detail + " " if result.detail else "") + self.summary()


@dataclass
class _Execution:
    status: str
    output: str | None
    event_count: int
    events: list[tuple[int, str, int | None, str | None]] = field(default_factory=list)


def check(url: str, schema: str, expected: Mapping[str, Any] | None = None, *,
          settle_s: float = 10.0) -> InvariantReport:  # fmt: skip
    """Check every invariant of ``schema``; ``expected`` maps instance ids to their output."""
    report = InvariantReport()
    with psycopg.connect(url, autocommit=True, application_name="chaos_checker") as conn:
        # one snapshot for the three reads, so a turn committing in between cannot tear them
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        executions: dict[str, dict[int, _Execution]] = defaultdict(dict)
        with conn.transaction():
            rows = conn.execute(statement("checker.sql", "instances", schema))
            instances = {row[0]: row[1:] for row in rows}
            for iid, eid, status, output, count in conn.execute(
                statement("checker.sql", "executions", schema)
            ):
                executions[iid][eid] = _Execution(status, output, count)
            history = conn.execute(statement("checker.sql", "history", schema)).fetchall()
        for iid, eid, event_id, kind, source, data in history:
            execution = executions[iid].get(eid)
            if execution is None:
                report.add(f"{iid}#{eid}: history without an execution row")
                execution = executions[iid][eid] = _Execution("?", None, -1)
            execution.events.append((event_id, kind, source, data))
        for iid, by_id in executions.items():
            for eid, execution in by_id.items():
                _check_execution(report, f"{iid}#{eid}", execution)
        for iid, (status, current, output) in instances.items():
            _check_instance(report, iid, status, current, output, executions.get(iid, {}))
        for iid in executions.keys() - instances.keys():
            report.add(f"{iid}: executions without an instance row")
        statuses = Counter(row[0] for row in instances.values())
        report.completed, report.failed = statuses["Completed"], statuses["Failed"]
        _check_expected(report, instances, expected)
        _check_queues(report, conn, schema, instances, settle_s)
    return report


def _check_execution(report: InvariantReport, key: str, execution: _Execution) -> None:
    events = execution.events
    ids = [e[0] for e in events]
    if ids != list(range(1, len(ids) + 1)):
        report.duplicate_events += len(ids) - len(set(ids))
        report.add(f"{key}: event ids not dense 1..{len(ids)}: {_short(ids)}")
    if execution.event_count not in (-1, len(ids)):
        report.add(f"{key}: event_count {execution.event_count} but {len(ids)} events stored")
    kinds = {e[0]: e[1] for e in events}
    started = [e[0] for e in events if e[1] == "OrchestrationStarted"]
    if started != [1]:
        report.duplicate_events += max(0, len(started) - 1)
        report.add(f"{key}: OrchestrationStarted at {started}, expected only at 1")
    terminal = [e for e in events if e[1] in TERMINAL]
    if len(terminal) > 1:
        report.duplicate_events += len(terminal) - 1
        report.add(f"{key}: {len(terminal)} terminal events")
    if terminal and terminal[-1][0] != ids[-1]:
        report.add(f"{key}: events after the terminal event {terminal[-1][1]}")
    answered: Counter[int] = Counter()
    for event_id, kind, source, _data in events:
        wanted = ANSWERS.get(kind)
        if wanted is None:
            continue
        if source is None or kinds.get(source) != wanted or source >= event_id:
            report.add(f"{key}: {kind} {event_id} answers {source} "
                       f"({kinds.get(source or 0)}), not an earlier {wanted}")  # fmt: skip
            continue
        answered[source] += 1
    for source, times in answered.items():
        if times > 1:
            report.duplicate_events += times - 1
            report.add(f"{key}: {kinds[source]} {source} completed {times} times")
    last = terminal[-1] if terminal else None
    status = TERMINAL[last[1]] if last else "Running"
    if execution.status != status:
        report.add(f"{key}: status {execution.status} but last event says {status}")
    if last is not None and last[1] != "OrchestrationFailed":
        stored = _event_output(last)
        if stored != execution.output:
            report.add(f"{key}: output {execution.output!r} but {last[1]} has {stored!r}")


def _event_output(event: tuple[int, str, int | None, str | None]) -> str | None:
    data = json.loads(event[3] or "{}")
    value = data.get("output" if event[1] == "OrchestrationCompleted" else "input")
    return value if value is None or isinstance(value, str) else json.dumps(value)


def _check_instance(report: InvariantReport, iid: str, status: str, current: int,
                    output: str | None, by_id: Mapping[int, _Execution]) -> None:  # fmt: skip
    if not by_id:
        report.add(f"{iid}: instance without executions")
        return
    if current != max(by_id):
        report.add(f"{iid}: current execution {current} but the last is {max(by_id)}")
    execution = by_id.get(current)
    if execution is None:
        return
    if execution.status != status:
        report.add(f"{iid}: status {status} but its execution {current} is {execution.status}")
    if status == "Completed" and output != execution.output:
        report.add(f"{iid}: output {output!r} but its execution has {execution.output!r}")
    for eid, other in by_id.items():
        if eid != current and other.status != "ContinuedAsNew":
            report.add(f"{iid}: earlier execution {eid} is {other.status}, not ContinuedAsNew")


def _check_expected(report: InvariantReport, instances: Mapping[str, tuple[Any, ...]],
                    expected: Mapping[str, Any] | None) -> None:  # fmt: skip
    # no instance may still be running, expected or not (an expected one is also lost, below)
    others = [iid for iid, row in instances.items()
              if row[0] == "Running" and (expected is None or iid not in expected)]  # fmt: skip
    if others:
        report.add(f"{len(others)} instances still running: {_short(others)}")
    if expected is None:
        return
    missing, running, wrong_state, wrong_output = [], [], [], []
    for iid, want in expected.items():
        row = instances.get(iid)
        if row is None:
            missing.append(iid)
            continue
        status, _current, output = row
        want_status = "Failed" if want is EXPECT_FAILED else "Completed"
        if status == "Running":
            running.append(iid)
        elif status != want_status:
            wrong_state.append(f"{iid}={status}")
        elif want_status == "Completed":
            got = json.loads(output) if output is not None else None
            if got != want:
                wrong_output.append(f"{iid}={got!r}≠{want!r}")
    report.lost = len(missing) + len(running) + len(wrong_state)
    report.wrong_outputs = len(wrong_output)
    for label, items in (("missing", missing), ("still running", running),
                         ("in the wrong terminal state", wrong_state),
                         ("with a wrong output", wrong_output)):  # fmt: skip
        if items:
            report.add(f"{len(items)} expected instances {label}: {_short(items)}")


def _check_queues(report: InvariantReport, conn: psycopg.Connection[Any], schema: str,
                  instances: Mapping[str, tuple[Any, ...]], settle_s: float) -> None:  # fmt: skip
    finished = {iid for iid, row in instances.items() if row[0] in FINISHED}
    deadline = time.monotonic() + settle_s
    while True:
        queued = list(conn.execute(statement("checker.sql", "queued", schema)))
        left = [(queue, iid, n) for queue, iid, n in queued if iid in finished]
        # messages for an instance that never ran a turn: a start (or a child) never processed
        never_ran = sorted({iid for _queue, iid, _n in queued if iid not in instances})
        if not (left or never_ran) or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if left:
        shown = [f"{queue}:{iid}x{n}" for queue, iid, n in left]
        report.add(f"{sum(n for _q, _i, n in left)} queue rows left for finished instances: "
                   f"{_short(shown)}")  # fmt: skip
    if never_ran:
        report.add(f"{len(never_ran)} instances queued but never started: {_short(never_ran)}")


def _short(items: list[Any]) -> str:
    shown = ", ".join(str(i) for i in items[:MAX_LISTED])
    return shown + (f", … ({len(items)})" if len(items) > MAX_LISTED else "")
