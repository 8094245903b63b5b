"""Every Python sample of the SDK skill doc (seeds/python-sdk-skill.md), run as written.

The samples are copied as literally as possible: same function names, same calls, same dict
shapes. What the doc leaves out is filled in with deterministic local fakes (``requests`` below
is a local stand-in, no network). Timers are shrunk only where the test would otherwise wait for
them, and each such place says so. Where the doc's inline comment and api.md disagree on a return
shape, api.md wins (``ctx.all`` gives ``[{"ok": v} | {"err": msg}, ...]``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest

from duroxide import Client, PyRuntimeOptions, Runtime, RuntimeOptions, SqliteProvider

from .support import eventually

# --- local fakes ---------------------------------------------------------------------------------


class _FakeResponse:
    def __init__(self, url: str) -> None:
        self._url = url

    def json(self) -> dict[str, Any]:
        return {"url": self._url, "status": "ok", "length": len(self._url)}


#: Stands in for the ``requests`` module the samples call: ``requests.get(url).json()``.
requests = SimpleNamespace(get=_FakeResponse)


class TraceCapture(logging.Handler):
    """Collects duroxide's structured log records (``record.msg`` is structlog's event dict)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[float, str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, dict):
            with self._lock:
                self.records.append((time.monotonic(), record.levelname, dict(record.msg)))

    def traces(self, event: str, **fields: Any) -> list[tuple[float, str, dict[str, Any]]]:
        with self._lock:
            records = list(self.records)
        return [
            r
            for r in records
            if r[2].get("event") == event and all(r[2].get(k) == v for k, v in fields.items())
        ]

    def messages(self, event: str, **fields: Any) -> list[str]:
        return [r[2]["message"] for r in self.traces(event, **fields)]

    def wait_messages(self, count: int, event: str, **fields: Any) -> list[str]:
        """The messages once at least ``count`` arrived: a turn's traces are logged right
        after its commit, so they may trail the status a client sees."""
        eventually(lambda: len(self.traces(event, **fields)) >= count, timeout_s=5)
        return self.messages(event, **fields)


@pytest.fixture
def traces() -> Iterator[TraceCapture]:
    """Capture duroxide logs at DEBUG level for the test, then restore the logger."""
    logger = logging.getLogger("duroxide")
    capture = TraceCapture()
    old_level = logger.level
    logger.addHandler(capture)
    logger.setLevel(logging.DEBUG)
    yield capture
    logger.removeHandler(capture)
    logger.setLevel(old_level)


def history(client: Client, instance_id: str, execution_id: int = 1) -> list[Any]:
    return client.read_execution_history(instance_id, execution_id)


def kinds(client: Client, instance_id: str, execution_id: int = 1) -> list[str]:
    return [e.kind for e in history(client, instance_id, execution_id)]


def executions(client: Client, instance_id: str) -> list[int]:
    if client.get_status(instance_id).status == "NotFound":
        return []
    return client.list_executions(instance_id)


def wait_until_subscribed(client: Client, instance_id: str, execution_id: int = 1) -> None:
    """Block until the orchestration is waiting for an external event."""
    eventually(
        lambda: (
            execution_id in executions(client, instance_id)
            and "ExternalSubscribed" in kinds(client, instance_id, execution_id)
        ),
        timeout_s=5,
    )


# --- Core Rule: Yield vs Regular Functions -------------------------------------------------------


def test_core_rule_sample_orchestration_yields_activity_does_io(client, make_runtime, traces):
    runtime = make_runtime()

    # ✅ Orchestration: generator, yield for durable operations
    @runtime.register_orchestration("MyWorkflow")
    def my_workflow(ctx, input):
        ctx.trace_info("starting")  # no yield
        result = yield ctx.schedule_activity("Work", input)  # yield
        return result

    # ✅ Activity: regular function for I/O
    @runtime.register_activity("Work")
    def work(ctx, input):
        ctx.trace_info(f"processing {input}")  # no yield
        data = requests.get(input["url"]).json()  # sync I/O
        return data  # noqa: RET504 - the sample, as written

    runtime.start()
    wf_input = {"url": "https://example.test/items/7"}
    client.start_orchestration("core-rule-1", "MyWorkflow", wf_input)
    result = client.wait_for_orchestration("core-rule-1", 5_000)

    assert result.status == "Completed", result.error
    assert result.output == {"url": wf_input["url"], "status": "ok", "length": 28}
    # The decorators hand the functions back unchanged.
    assert callable(my_workflow) and callable(work)
    assert traces.wait_messages(1, "orchestration.trace", instance_id="core-rule-1") == ["starting"]
    assert traces.wait_messages(1, "activity.trace", instance_id="core-rule-1") == [
        f"processing {wf_input}"
    ]


def test_async_generator_orchestration_is_rejected(make_runtime):
    """'Never use async def with yield for orchestrations' — such a function is refused."""
    runtime = make_runtime()

    async def bad_workflow(ctx, input):
        yield ctx.schedule_activity("Work", input)

    with pytest.raises(TypeError):
        runtime.register_orchestration("BadWorkflow", bad_workflow)


# --- Scheduling (MUST yield) ---------------------------------------------------------------------


def test_scheduling_sample_runs_every_call(client, make_runtime):
    runtime = make_runtime()
    calls: dict[str, list[Any]] = {"Name": [], "Child": []}
    name_calls = 0

    @runtime.register_activity("Name")
    def name_activity(ctx, input):
        nonlocal name_calls
        name_calls += 1
        calls["Name"].append(input)
        if name_calls == 2:  # the first attempt of the retried call fails once
            raise RuntimeError("transient failure")
        return {"call": name_calls, "echo": input}

    @runtime.register_orchestration("Child")
    def child(ctx, input):
        calls["Child"].append(ctx.instance_id)
        return {"child_saw": input}

    @runtime.register_orchestration("BackgroundWork")
    def background_work(ctx, input):
        go = yield ctx.wait_for_event("go")
        return {"bg_input": input, "go": go}

    input = {"order": 42}
    child_input = {"part": "child"}
    bg_input = {"part": "background"}
    new_input = {"round": 2}

    # The sample, verbatim apart from the 60000 ms timer.
    @runtime.register_orchestration("MyOrch")
    def my_orch(ctx, input):
        # Activity
        result = yield ctx.schedule_activity("Name", input)

        # Activity with retry
        result = yield ctx.schedule_activity_with_retry(
            "Name",
            input,
            {
                "max_attempts": 3,
                "backoff": "exponential",
                "timeout_ms": 5000,
                "total_timeout_ms": 30000,
            },
        )

        # Timer (durable delay)
        yield ctx.schedule_timer(5)  # 60000 (1 minute) in the doc: shrunk to keep the test fast

        # External event
        event_data = yield ctx.wait_for_event("approval")

        # Sub-orchestration (waits for completion)
        child_result = yield ctx.schedule_sub_orchestration("Child", child_input)

        # Sub-orchestration with explicit ID
        child_result = yield ctx.schedule_sub_orchestration_with_id("Child", "child-1", child_input)

        # Fire-and-forget orchestration (returns immediately)
        yield ctx.start_orchestration("BackgroundWork", "bg-1", bg_input)

        # Deterministic values
        now = yield ctx.utc_now()  # timestamp in ms
        guid = yield ctx.new_guid()  # deterministic UUID

        # Continue as new (restart with fresh history)
        yield ctx.continue_as_new(new_input)
        del result, event_data, child_result, now, guid  # bound by the sample, unused there

    # continue_as_new without a version runs the latest version: 1.0.1 ends the loop.
    @runtime.register_orchestration_versioned("MyOrch", "1.0.1")
    def my_orch_next(ctx, input):
        return {"continued_with": input}

    runtime.start()
    before_ms = int(time.time() * 1000)
    client.start_orchestration_versioned("sched-1", "MyOrch", input, "1.0.0")
    wait_until_subscribed(client, "sched-1")
    client.raise_event("sched-1", "approval", {"approved": True, "by": "alice"})

    result = client.wait_for_orchestration("sched-1", 5_000)
    after_ms = int(time.time() * 1000)
    assert result.status == "Completed", result.error
    assert result.output == {"continued_with": new_input}

    # Continue-as-new: a second execution with a fresh history started from new_input.
    assert client.list_executions("sched-1") == [1, 2]
    assert client.get_execution_info("sched-1", 1).status == "ContinuedAsNew"
    assert kinds(client, "sched-1", 2) == ["OrchestrationStarted", "OrchestrationCompleted"]
    started_2 = json.loads(history(client, "sched-1", 2)[0].data)
    assert started_2["version"] == "1.0.1"
    assert started_2["input"] == new_input

    events = history(client, "sched-1", 1)
    by_kind: dict[str, list[Any]] = {}
    for e in events:
        by_kind.setdefault(e.kind, []).append(e)

    # Activity + activity with retry: three attempts of "Name" (one failed and was retried).
    assert calls["Name"] == [input, input, input]
    assert [json.loads(e.data)["name"] for e in by_kind["ActivityScheduled"]] == ["Name"] * 3
    assert len(by_kind["ActivityFailed"]) == 1
    assert [json.loads(e.data) for e in by_kind["ActivityCompleted"]] == [
        {"call": 1, "echo": input},
        {"call": 3, "echo": input},
    ]

    # Timer fired before the orchestration moved on.
    assert by_kind["TimerFired"]
    # External event delivered its data.
    assert json.loads(by_kind["ExternalEvent"][0].data)["data"] == {
        "approved": True,
        "by": "alice",
    }

    # Two children; the second one under the explicit id "child-1"; both finished.
    subs = [json.loads(e.data) for e in by_kind["SubOrchestrationScheduled"]]
    assert [s["name"] for s in subs] == ["Child", "Child"]
    assert subs[1]["instance_id"] == "child-1"
    assert subs[0]["instance_id"] != "child-1"
    assert [json.loads(e.data) for e in by_kind["SubOrchestrationCompleted"]] == [
        {"child_saw": child_input},
        {"child_saw": child_input},
    ]
    assert calls["Child"] == [subs[0]["instance_id"], "child-1"]
    assert client.get_instance_info("child-1").parent_instance_id == "sched-1"

    # Fire-and-forget: the parent finished while bg-1 still waits for its own event.
    wait_until_subscribed(client, "bg-1")
    assert client.get_status("bg-1").status == "Running"
    client.raise_event("bg-1", "go", "now")
    bg = client.wait_for_orchestration("bg-1", 5_000)
    assert bg.status == "Completed"
    assert bg.output == {"bg_input": bg_input, "go": "now"}

    # Deterministic values are recorded once: a ms timestamp and a 36-char UUID.
    system = {json.loads(e.data)["op"]: json.loads(e.data)["value"] for e in by_kind["SystemCall"]}
    assert before_ms - 1000 <= system["utc_now"] <= after_ms + 1000
    assert isinstance(system["new_guid"], str) and len(system["new_guid"]) == 36


# --- Composition (MUST yield) --------------------------------------------------------------------


def test_all_sample_mixes_activities_timer_and_event(client, make_runtime):
    runtime = make_runtime()
    runtime.register_activity("TaskA", lambda ctx, inp: f"A:{inp}")
    runtime.register_activity("TaskB", lambda ctx, inp: {"b": inp})
    input_a, input_b = "alpha", 2

    @runtime.register_orchestration("FanOut")
    def fan_out(ctx, input):
        # Fan-out / fan-in — wait for ALL tasks (supports all task types)
        results = yield ctx.all(
            [
                ctx.schedule_activity("TaskA", input_a),
                ctx.schedule_activity("TaskB", input_b),
                ctx.schedule_timer(5),  # 5000 in the doc: shrunk to keep the test fast
                ctx.wait_for_event("approval"),  # waits work too
            ]
        )
        return results

    runtime.start()
    client.start_orchestration("all-mixed-1", "FanOut", None)
    wait_until_subscribed(client, "all-mixed-1")
    client.raise_event("all-mixed-1", "approval", {"ok": "yes"})
    result = client.wait_for_orchestration("all-mixed-1", 5_000)

    assert result.status == "Completed", result.error
    # api.md: [{"ok": v} | {"err": msg}, ...] in task order; a timer gives {"ok": None}.
    assert result.output == [
        {"ok": "A:alpha"},
        {"ok": {"b": 2}},
        {"ok": None},
        {"ok": {"ok": "yes"}},
    ]


def test_all_reports_a_failed_task_as_err_in_its_slot(client, make_runtime):
    runtime = make_runtime()
    runtime.register_activity("TaskA", lambda ctx, inp: f"A:{inp}")

    def task_b(ctx, inp):
        raise ValueError(f"TaskB cannot handle {inp}")

    runtime.register_activity("TaskB", task_b)

    @runtime.register_orchestration("FanOutWithFailure")
    def fan_out(ctx, input):
        return (
            yield ctx.all(
                [ctx.schedule_activity("TaskB", 13), ctx.schedule_activity("TaskA", "fine")]
            )
        )

    runtime.start()
    client.start_orchestration("all-err-1", "FanOutWithFailure", None)
    result = client.wait_for_orchestration("all-err-1", 5_000)

    assert result.status == "Completed", result.error
    first, second = result.output
    assert set(first) == {"err"} and "TaskB cannot handle 13" in first["err"]
    assert second == {"ok": "A:fine"}


def test_race_sample_fast_service_beats_timer(client, make_runtime):
    runtime = make_runtime()
    runtime.register_activity("FastService", lambda ctx, inp: {"served": inp})

    @runtime.register_orchestration("Racer")
    def racer(ctx, input):
        # Race — wait for FIRST of 2 tasks (supports all task types)
        winner = yield ctx.race(
            ctx.schedule_activity("FastService", input),
            ctx.schedule_timer(5000),
        )
        return winner

    runtime.start()
    client.start_orchestration("race-1", "Racer", "q")
    result = client.wait_for_orchestration("race-1", 4_000)  # well before the 5 s timer

    assert result.status == "Completed", result.error
    assert result.output == {"index": 0, "value": {"served": "q"}}


def test_nesting_all_or_race_inside_all_is_rejected(client, make_runtime):
    runtime = make_runtime()
    runtime.register_activity("TaskA", lambda ctx, inp: inp)

    @runtime.register_orchestration("Nested")
    def nested(ctx, input):
        return (
            yield ctx.all(
                [
                    ctx.race(ctx.schedule_activity("TaskA", 1), ctx.schedule_timer(10)),
                    ctx.schedule_activity("TaskA", 2),
                ]
            )
        )

    runtime.start()
    client.start_orchestration("nested-1", "Nested", None)
    result = client.wait_for_orchestration("nested-1", 5_000)

    assert result.status == "Failed"
    assert "nest" in (result.error or "").lower()


# --- Cooperative Activity Cancellation -----------------------------------------------------------


def _register_long_task(runtime: Runtime) -> None:
    @runtime.register_activity("LongTask")
    def long_task(ctx, input):
        for i in range(1000):  # noqa: B007 - the sample, as written
            if ctx.is_cancelled():
                ctx.trace_info("cancelled, cleaning up")
                return {"status": "cancelled"}
            time.sleep(0.1)  # do work
        return {"status": "done"}


def _register_long_task_race(runtime: Runtime) -> None:
    @runtime.register_orchestration("RaceLongTask")
    def race_long_task(ctx, input):
        return (yield ctx.race(ctx.schedule_activity("LongTask", input), ctx.schedule_timer(300)))


def test_cooperative_cancellation_sample_loser_sees_is_cancelled(client, make_runtime, traces):
    runtime = make_runtime(worker_lock_timeout_ms=2000)  # as the Test Tips suggest
    _register_long_task(runtime)
    _register_long_task_race(runtime)
    runtime.start()

    client.start_orchestration("coop-cancel-1", "RaceLongTask", {"job": 1})
    eventually(lambda: "ActivityScheduled" in kinds(client, "coop-cancel-1"), timeout_s=5)
    result = client.wait_for_orchestration("coop-cancel-1", 5_000)
    race_lost_at = time.monotonic()

    assert result.status == "Completed", result.error
    assert result.output == {"index": 1, "value": None}  # the timer won; LongTask lost
    cancelled = eventually(
        lambda: traces.traces(
            "activity.trace", instance_id="coop-cancel-1", message="cancelled, cleaning up"
        ),
        timeout_s=3,
    )
    assert cancelled[0][0] - race_lost_at < 1.0
    assert cancelled[0][2]["activity_name"] == "LongTask"


def test_cooperative_cancellation_detected_by_a_worker_on_another_provider_object(tmp_path, traces):
    """The worker runs on a different provider object (as in another process), so it learns of
    the cancellation from its lease renewal: every worker_lock_timeout_ms / 2 per the doc."""
    url = f"sqlite:{tmp_path / 'coop.db'}"
    orch_side, worker_side = SqliteProvider.open(url), SqliteProvider.open(url)
    client = Client(orch_side)
    orchestrator = Runtime(
        orch_side, RuntimeOptions(dispatcher_poll_interval_ms=50, worker_concurrency=0)
    )
    worker = Runtime(
        worker_side,
        RuntimeOptions(
            dispatcher_poll_interval_ms=50, orchestration_concurrency=0, worker_lock_timeout_ms=2000
        ),
    )
    _register_long_task_race(orchestrator)
    _register_long_task(worker)
    orchestrator.start()
    worker.start()
    try:
        client.start_orchestration("coop-cancel-2", "RaceLongTask", {"job": 2})
        result = client.wait_for_orchestration("coop-cancel-2", 5_000)
        race_lost_at = time.monotonic()
        assert result.output == {"index": 1, "value": None}
        cancelled = eventually(
            lambda: traces.traces(
                "activity.trace", instance_id="coop-cancel-2", message="cancelled, cleaning up"
            ),
            timeout_s=5,
        )
        # ~1 s (2000 / 2) plus the lease keeper's phase and the sample's 0.1 s sleep.
        assert cancelled[0][0] - race_lost_at < 1.5
    finally:
        worker.shutdown(1000)
        orchestrator.shutdown(1000)
        worker_side.close()
        orch_side.close()


# --- Tracing (NO yield — fire-and-forget) --------------------------------------------------------


def test_tracing_sample_is_not_duplicated_by_replay(client, make_runtime, traces):
    runtime = make_runtime()
    runtime.register_activity("Step", lambda ctx, inp: inp * 2)

    @runtime.register_orchestration("Traced")
    def traced(ctx, input):
        ctx.trace_info("message")  # suppressed during replay automatically
        ctx.trace_warn("message")
        ctx.trace_error("message")
        ctx.trace_debug("message")
        a = yield ctx.schedule_activity("Step", input)
        ctx.trace_info(f"after first step: {a}")
        b = yield ctx.schedule_activity("Step", a)
        ctx.trace_info(f"after second step: {b}")
        return b

    runtime.start()
    client.start_orchestration("trace-1", "Traced", 5)
    result = client.wait_for_orchestration("trace-1", 5_000)
    assert result.output == 20

    # Three turns replayed the start of the generator, yet each trace appears exactly once.
    records = eventually(
        lambda: (
            (r := traces.traces("orchestration.trace", instance_id="trace-1")) and len(r) >= 6 and r
        )
    )
    assert [(level, rec["message"]) for _, level, rec in records] == [
        ("INFO", "message"),
        ("WARNING", "message"),
        ("ERROR", "message"),
        ("DEBUG", "message"),
        ("INFO", "after first step: 10"),
        ("INFO", "after second step: 20"),
    ]
    # Structured fields: instance_id, execution_id, orchestration_name, orchestration_version.
    for _, _, rec in records:
        assert rec["instance_id"] == "trace-1"
        assert rec["execution_id"] == 1
        assert rec["orchestration_name"] == "Traced"
        assert rec["orchestration_version"] == "1.0.0"


# --- Activity Context API ------------------------------------------------------------------------


def test_activity_context_sample_fields_cancellation_and_tracing(client, make_runtime, traces):
    runtime = make_runtime(worker_node_id="pod-7")
    seen: dict[str, Any] = {}

    @runtime.register_activity("MyActivity")
    def my_activity(ctx, input):
        # Available fields
        ctx.instance_id  # noqa: B018
        ctx.execution_id  # noqa: B018
        ctx.orchestration_name  # noqa: B018
        ctx.orchestration_version  # noqa: B018
        ctx.activity_name  # noqa: B018
        ctx.worker_id  # noqa: B018

        # Cooperative cancellation
        if ctx.is_cancelled():
            ctx.trace_info("cancelled")
            return {"status": "cancelled"}

        # Tracing (delegates to Rust ActivityContext — full structured fields)
        ctx.trace_info(f"processing {input['id']}")
        ctx.trace_warn("slow response")
        ctx.trace_error("connection failed")
        ctx.trace_debug("raw payload: ...")

        # Activities can do anything — I/O, HTTP, DB, etc.
        data = requests.get(input["url"]).json()
        return data  # noqa: RET504 - the sample, as written

    @runtime.register_activity("Fields")
    def fields(ctx, input):
        seen.update(
            instance_id=ctx.instance_id,
            execution_id=ctx.execution_id,
            orchestration_name=ctx.orchestration_name,
            orchestration_version=ctx.orchestration_version,
            activity_name=ctx.activity_name,
            activity_id=ctx.activity_id,
            worker_id=ctx.worker_id,
            session_id=ctx.session_id,
            tag=ctx.tag(),
            is_cancelled=ctx.is_cancelled(),
        )
        return "ok"

    @runtime.register_orchestration_versioned("UsesActivities", "2.1.0")
    def uses_activities(ctx, input):
        data = yield ctx.schedule_activity("MyActivity", input)
        yield ctx.schedule_activity("Fields", None)
        return data

    runtime.start()
    act_input = {"id": "item-9", "url": "https://example.test/item-9"}
    client.start_orchestration("actx-1", "UsesActivities", act_input)
    result = client.wait_for_orchestration("actx-1", 5_000)

    assert result.status == "Completed", result.error
    assert result.output == requests.get(act_input["url"]).json()

    fields_event = next(
        e
        for e in history(client, "actx-1")
        if e.kind == "ActivityScheduled" and json.loads(e.data)["name"] == "Fields"
    )
    assert seen == {
        "instance_id": "actx-1",
        "execution_id": 1,
        "orchestration_name": "UsesActivities",
        "orchestration_version": "2.1.0",
        "activity_name": "Fields",
        "activity_id": fields_event.event_id,
        "worker_id": "pod-7",
        "session_id": None,
        "tag": None,
        "is_cancelled": False,
    }

    traces.wait_messages(4, "activity.trace", instance_id="actx-1", activity_name="MyActivity")
    records = traces.traces("activity.trace", instance_id="actx-1", activity_name="MyActivity")
    assert [(level, rec["message"]) for _, level, rec in records] == [
        ("INFO", "processing item-9"),
        ("WARNING", "slow response"),
        ("ERROR", "connection failed"),
        ("DEBUG", "raw payload: ..."),
    ]
    for _, _, rec in records:
        assert rec["execution_id"] == 1
        assert rec["orchestration_name"] == "UsesActivities"
        assert rec["orchestration_version"] == "2.1.0"
        assert rec["worker_id"] == "pod-7"
        assert isinstance(rec["activity_id"], int)


# --- Common Patterns: Error Handling -------------------------------------------------------------


@pytest.mark.parametrize("risky_fails", [True, False], ids=["risky-fails", "risky-succeeds"])
def test_error_handling_sample_runs_cleanup_on_failure(client, make_runtime, traces, risky_fails):
    runtime = make_runtime()
    cleanups: list[Any] = []

    @runtime.register_activity("RiskyOp")
    def risky_op(ctx, input):
        if risky_fails:
            raise ConnectionError(f"backend refused {input}")
        return {"done": input}

    @runtime.register_activity("Cleanup")
    def cleanup(ctx, input):
        cleanups.append(input)

    @runtime.register_orchestration("MyOrch")
    def my_orch(ctx, input):
        try:
            result = yield ctx.schedule_activity("RiskyOp", input)
            return result
        except Exception as e:
            ctx.trace_error(f"failed: {e}")
            yield ctx.schedule_activity("Cleanup", {"error": str(e)})
            return {"status": "failed"}

    runtime.start()
    instance = f"err-handling-{risky_fails}"
    client.start_orchestration(instance, "MyOrch", "job-3")
    result = client.wait_for_orchestration(instance, 5_000)

    assert result.status == "Completed", result.error
    if risky_fails:
        assert result.output == {"status": "failed"}
        assert len(cleanups) == 1
        assert "backend refused job-3" in cleanups[0]["error"]
        errors = traces.wait_messages(1, "orchestration.trace", instance_id=instance)
        assert len(errors) == 1 and "backend refused job-3" in errors[0]
    else:
        assert result.output == {"done": "job-3"}
        assert cleanups == []


# --- Common Patterns: Eternal Orchestration (continue-as-new) ------------------------------------


def test_eternal_monitor_sample_advances_executions_until_cancelled(client, make_runtime, traces):
    runtime = make_runtime()
    checks: list[str] = []

    @runtime.register_activity("CheckHealth")
    def check_health(ctx, target):
        checks.append(target)
        return {"status": "healthy"}

    @runtime.register_orchestration("Monitor")
    def monitor(ctx, input):
        state = input.get("state", {"iteration": 0})
        health = yield ctx.schedule_activity("CheckHealth", input["target"])
        ctx.trace_info(f"check #{state['iteration']}: {health['status']}")
        yield ctx.schedule_timer(20)  # 30000 in the doc: shrunk so iterations run quickly
        yield ctx.continue_as_new(
            {
                "target": input["target"],
                "state": {"iteration": state["iteration"] + 1},
            }
        )

    runtime.start()
    client.start_orchestration("monitor-1", "Monitor", {"target": "db-primary"})
    eventually(lambda: len(executions(client, "monitor-1")) >= 4, timeout_s=5)
    client.cancel_instance("monitor-1", "maintenance window")
    result = client.wait_for_orchestration("monitor-1", 5_000)

    assert result.status == "Failed"
    assert result.error == "canceled: maintenance window"
    run = client.list_executions("monitor-1")
    assert len(run) >= 4
    assert run == list(range(1, len(run) + 1))
    for execution_id in run[:-1]:
        assert client.get_execution_info("monitor-1", execution_id).status == "ContinuedAsNew"
    assert client.get_execution_info("monitor-1", run[-1]).status == "Failed"
    # Each execution started from the state the previous one handed over.
    for execution_id in run:
        started = json.loads(history(client, "monitor-1", execution_id)[0].data)
        state = started["input"].get("state", {"iteration": 0})
        assert state == {"iteration": execution_id - 1}
    assert set(checks) == {"db-primary"}
    messages = traces.wait_messages(3, "orchestration.trace", instance_id="monitor-1")
    assert messages[:3] == ["check #0: healthy", "check #1: healthy", "check #2: healthy"]
    # Stopped means stopped: the instance stays on its last execution.
    assert client.get_status("monitor-1").status == "Failed"
    assert client.list_executions("monitor-1") == run


# --- Common Patterns: Race with Timeout ----------------------------------------------------------


@pytest.mark.parametrize("outcome", ["ok", "timeout"])
def test_race_with_timeout_sample_both_outcomes(client, make_runtime, traces, outcome):
    runtime = make_runtime()
    release = threading.Event()
    observed_cancel = threading.Event()
    # 10000 in the doc. The "ok" case keeps it; the "timeout" case shrinks it to 100 ms so the
    # test does not wait 10 s for the timer to win.
    timer_ms = 10000 if outcome == "ok" else 100

    @runtime.register_activity("SlowOperation")
    def slow_operation(ctx, input):
        if outcome == "ok":
            return {"computed": input}
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if ctx.is_cancelled():
                observed_cancel.set()
                return None
            if release.is_set():
                break
            time.sleep(0.01)
        return {"computed": input}

    @runtime.register_orchestration("MyOrch")
    def my_orch(ctx, input):
        winner = yield ctx.race(
            ctx.schedule_activity("SlowOperation", input),
            ctx.schedule_timer(timer_ms),
        )
        if winner["index"] == 1:
            ctx.trace_warn("operation timed out")
            return {"status": "timeout"}
        return {"status": "ok", "result": winner["value"]}

    runtime.start()
    instance = f"race-timeout-{outcome}"
    client.start_orchestration(instance, "MyOrch", 21)
    try:
        result = client.wait_for_orchestration(instance, 5_000)

        assert result.status == "Completed", result.error
        warnings = traces.messages("orchestration.trace", instance_id=instance)
        if outcome == "ok":
            assert result.output == {"status": "ok", "result": {"computed": 21}}
            assert warnings == []
        else:
            assert result.output == {"status": "timeout"}
            warnings = traces.wait_messages(1, "orchestration.trace", instance_id=instance)
            assert warnings == ["operation timed out"]
            assert observed_cancel.wait(2), "the losing SlowOperation never saw is_cancelled()"
    finally:
        release.set()  # never leave the activity running past the test


# --- Common Patterns: Versioned Orchestrations ---------------------------------------------------


def test_versioned_orchestrations_sample_latest_by_default_explicit_pins(
    client, make_runtime, traces
):
    runtime = make_runtime()
    validated: list[str] = []

    @runtime.register_activity("Work")
    def work(ctx, input):
        return {"worked": input, "version": ctx.orchestration_version}

    @runtime.register_activity("Validate")
    def validate(ctx, input):
        validated.append(ctx.instance_id)
        return True

    @runtime.register_orchestration("MyWorkflow")
    def my_workflow_v1(ctx, input):
        ctx.trace_info("[v1.0.0] starting")
        return (yield ctx.schedule_activity("Work", input))

    @runtime.register_orchestration_versioned("MyWorkflow", "1.0.1")
    def my_workflow_v2(ctx, input):
        ctx.trace_info("[v1.0.1] starting")
        yield ctx.schedule_activity("Validate", input)
        return (yield ctx.schedule_activity("Work", input))

    runtime.start()
    client.start_orchestration("versioned-latest", "MyWorkflow", "x")
    client.start_orchestration_versioned("versioned-pinned", "MyWorkflow", "y", "1.0.0")
    latest = client.wait_for_orchestration("versioned-latest", 5_000)
    pinned = client.wait_for_orchestration("versioned-pinned", 5_000)

    assert latest.status == "Completed", latest.error
    assert latest.output == {"worked": "x", "version": "1.0.1"}
    assert client.get_instance_info("versioned-latest").orchestration_version == "1.0.1"
    assert pinned.status == "Completed", pinned.error
    assert pinned.output == {"worked": "y", "version": "1.0.0"}
    assert client.get_instance_info("versioned-pinned").orchestration_version == "1.0.0"
    assert validated == ["versioned-latest"]
    assert traces.wait_messages(1, "orchestration.trace", instance_id="versioned-latest") == [
        "[v1.0.1] starting"
    ]
    assert traces.wait_messages(1, "orchestration.trace", instance_id="versioned-pinned") == [
        "[v1.0.0] starting"
    ]


# --- Writing Tests -------------------------------------------------------------------------------


def _writing_tests_sample(provider):
    """The body of the doc's ``test_my_feature``, verbatim."""
    client = Client(provider)
    runtime = Runtime(provider, PyRuntimeOptions(dispatcher_poll_interval_ms=50))

    runtime.register_activity("Echo", lambda ctx, inp: inp)

    @runtime.register_orchestration("MyWorkflow")
    def my_workflow(ctx, input):
        return (yield ctx.schedule_activity("Echo", input))

    runtime.start()
    try:
        client.start_orchestration("test-1", "MyWorkflow", "hello")
        result = client.wait_for_orchestration("test-1", 10_000)
        assert result.status == "Completed"
        assert result.output == "hello"
    finally:
        runtime.shutdown(100)


def test_my_feature(provider):
    # The doc's test, run on the `provider` fixture (SqliteProvider.in_memory() here).
    client = Client(provider)
    runtime = Runtime(provider, PyRuntimeOptions(dispatcher_poll_interval_ms=50))

    runtime.register_activity("Echo", lambda ctx, inp: inp)

    @runtime.register_orchestration("MyWorkflow")
    def my_workflow(ctx, input):
        return (yield ctx.schedule_activity("Echo", input))

    runtime.start()
    try:
        client.start_orchestration("test-1", "MyWorkflow", "hello")
        result = client.wait_for_orchestration("test-1", 10_000)
        assert result.status == "Completed"
        assert result.output == "hello"
    finally:
        runtime.shutdown(100)


def test_writing_tests_sample_import_lines_resolve():
    """The sample's imports, as written (the sample also uses ``os`` without importing it)."""
    namespace: dict[str, Any] = {}
    exec(
        "import time, pytest\n"
        "from duroxide import SqliteProvider, PostgresProvider, Client, Runtime, PyRuntimeOptions",
        namespace,
    )
    assert namespace["PyRuntimeOptions"] is RuntimeOptions
    assert namespace["SqliteProvider"] is SqliteProvider
    assert hasattr(namespace["PostgresProvider"], "connect_with_schema")


def test_writing_tests_sample_with_its_postgres_fixture():
    """The doc's module fixture, verbatim: skips without DATABASE_URL."""
    db_url = os.environ.get("DATABASE_URL")
    if not db_url:
        pytest.skip("DATABASE_URL not set")
    from duroxide import PostgresProvider

    provider = PostgresProvider.connect_with_schema(db_url, "my_test_schema")
    try:
        _writing_tests_sample(provider)
    finally:
        provider.close()
        with psycopg.connect(db_url, autocommit=True) as conn:  # leave the database as found
            conn.execute("DROP SCHEMA IF EXISTS my_test_schema CASCADE")


def test_utc_now_and_new_guid_are_stable_across_replays(client, make_runtime):
    runtime = make_runtime()
    runtime.register_activity("Tick", lambda ctx, inp: inp)

    @runtime.register_orchestration("Deterministic")
    def deterministic(ctx, input):
        now = yield ctx.utc_now()
        guid = yield ctx.new_guid()
        seen = [(now, guid)]
        for step in range(3):  # each activity is a new turn that replays the values above
            yield ctx.schedule_activity("Tick", step)
            seen.append((now, guid))
        later = yield ctx.utc_now()
        other = yield ctx.new_guid()
        return {"now": now, "guid": guid, "seen": seen, "later": later, "other": other}

    runtime.start()
    client.start_orchestration("deterministic-1", "Deterministic", None)
    result = client.wait_for_orchestration("deterministic-1", 5_000)

    assert result.status == "Completed", result.error
    out = result.output
    recorded = [
        json.loads(e.data)["value"]
        for e in history(client, "deterministic-1")
        if e.kind == "SystemCall"
    ]
    assert recorded == [out["now"], out["guid"], out["later"], out["other"]]
    assert all(pair == [out["now"], out["guid"]] for pair in out["seen"])
    assert out["later"] >= out["now"]
    assert out["other"] != out["guid"]
