"""The orchestration patterns of the Node user guide (seeds/node-user-guide.md), ported to Python.

Each test writes the guide's sample the Python way (snake_case, ``yield``, dict results per
api.md) with local, deterministic activities, and asserts what the guide promises. Long timers
(an hour, 30 s …) are shrunk to a few milliseconds; each such place says so.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from duroxide import Client

from .support import eventually

# --- helpers -------------------------------------------------------------------------------------


def history(client: Client, instance_id: str, execution_id: int = 1) -> list[Any]:
    return client.read_execution_history(instance_id, execution_id)


def kinds(client: Client, instance_id: str, execution_id: int = 1) -> list[str]:
    return [e.kind for e in history(client, instance_id, execution_id)]


def scheduled(client: Client, instance_id: str, execution_id: int = 1) -> list[dict[str, Any]]:
    """``{"name", "input"}`` of every ActivityScheduled event, in order."""
    return [
        json.loads(e.data)
        for e in history(client, instance_id, execution_id)
        if e.kind == "ActivityScheduled"
    ]


def executions(client: Client, instance_id: str) -> list[int]:
    if client.get_status(instance_id).status == "NotFound":
        return []
    return client.list_executions(instance_id)


def wait_until_waiting(client: Client, instance_id: str, execution_id: int = 1) -> None:
    """Block until the orchestration subscribed to an external event."""
    eventually(
        lambda: (
            instance_id in client.list_all_instances()
            and "ExternalSubscribed" in kinds(client, instance_id, execution_id)
        ),
        timeout_s=5,
    )


# --- Minimal example and sequential steps --------------------------------------------------------


def test_minimal_example_hello_workflow(client, make_runtime):
    runtime = make_runtime()

    @runtime.register_activity("SayHello")
    def say_hello(ctx, name):
        return f"Hello, {name}!"

    @runtime.register_orchestration("HelloWorkflow")
    def hello_workflow(ctx, input):
        greeting = yield ctx.schedule_activity("SayHello", input["name"])
        return greeting

    runtime.start()
    client.start_orchestration("hello-1", "HelloWorkflow", {"name": "World"})
    result = client.wait_for_orchestration("hello-1", 5_000)

    assert result.status == "Completed", result.error
    assert result.output == "Hello, World!"


def test_sequential_steps_feed_each_result_to_the_next(client, make_runtime):
    runtime = make_runtime()
    runtime.register_activity("Extract", lambda ctx, src: {"rows": [1, 2, 3], "src": src})
    runtime.register_activity(
        "Transform", lambda ctx, d: {**d, "rows": [r * 10 for r in d["rows"]]}
    )
    runtime.register_activity("Load", lambda ctx, d: {"loaded": sum(d["rows"]), "src": d["src"]})

    @runtime.register_orchestration("Pipeline")
    def pipeline(ctx, input):
        step1 = yield ctx.schedule_activity("Extract", input)
        step2 = yield ctx.schedule_activity("Transform", step1)
        step3 = yield ctx.schedule_activity("Load", step2)
        return step3

    runtime.start()
    client.start_orchestration("pipeline-1", "Pipeline", "s3://bucket/in.csv")
    result = client.wait_for_orchestration("pipeline-1", 5_000)

    assert result.status == "Completed", result.error
    assert result.output == {"loaded": 60, "src": "s3://bucket/in.csv"}
    assert [s["name"] for s in scheduled(client, "pipeline-1")] == ["Extract", "Transform", "Load"]


# --- Fan-out / fan-in ----------------------------------------------------------------------------


def test_fan_out_runs_items_in_parallel_and_fans_in_in_task_order(client, make_runtime):
    runtime = make_runtime(worker_concurrency=8)
    items = [1, 2, 3, 4, 5]
    all_started = threading.Barrier(len(items), timeout=5)
    finished: list[int] = []
    done = {item: threading.Event() for item in items}

    @runtime.register_activity("ProcessItem")
    def process_item(ctx, item):
        all_started.wait()  # only passes if every item runs at the same time
        if item < len(items):  # finish in reverse order: wait for the next item
            assert done[item + 1].wait(5)
        finished.append(item)
        done[item].set()
        return item * 10

    @runtime.register_orchestration("FanOut")
    def fan_out(ctx, input):
        tasks = [ctx.schedule_activity("ProcessItem", item) for item in input["items"]]
        results = yield ctx.all(tasks)
        return results

    runtime.start()
    client.start_orchestration("fan-out-1", "FanOut", {"items": items})
    result = client.wait_for_orchestration("fan-out-1", 5_000)

    assert result.status == "Completed", result.error
    assert finished == [5, 4, 3, 2, 1]
    assert result.output == [{"ok": item * 10} for item in items]


def test_mixed_all_with_activity_timer_and_event(client, make_runtime):
    runtime = make_runtime()
    runtime.register_activity("Work", lambda ctx, inp: f"worked on {inp}")

    @runtime.register_orchestration("MixedAll")
    def mixed_all(ctx, input):
        act_result, timer_result, event_data = yield ctx.all(
            [
                ctx.schedule_activity("Work", input),
                ctx.schedule_timer(10),  # 1000 in the guide: shrunk; timers give {"ok": None}
                ctx.wait_for_event("approval"),  # waits give {"ok": event_data}
            ]
        )
        return {"act": act_result, "timer": timer_result, "event": event_data}

    runtime.start()
    client.start_orchestration("mixed-all-1", "MixedAll", "doc-1")
    wait_until_waiting(client, "mixed-all-1")
    client.raise_event("mixed-all-1", "approval", {"approved": True})
    result = client.wait_for_orchestration("mixed-all-1", 5_000)

    assert result.status == "Completed", result.error
    assert result.output == {
        "act": {"ok": "worked on doc-1"},
        "timer": {"ok": None},
        "event": {"ok": {"approved": True}},
    }


# --- Race / select -------------------------------------------------------------------------------


@pytest.mark.parametrize("fast", [True, False], ids=["service-wins", "timer-wins"])
def test_race_example_service_or_timeout(client, make_runtime, fast):
    runtime = make_runtime()
    release = threading.Event()
    saw_cancel = threading.Event()
    # The guide's 5 s timeout; when the timer must win it is shrunk to 50 ms.
    timeout_ms = 5000 if fast else 50

    @runtime.register_activity("FastService")
    def fast_service(ctx, input):
        if not fast:
            while not ctx.is_cancelled() and not release.wait(0.01):
                pass
            if ctx.is_cancelled():
                saw_cancel.set()
        return f"served {input}"

    @runtime.register_orchestration("RaceExample")
    def race_example(ctx, input):
        winner = yield ctx.race(
            ctx.schedule_activity("FastService", input),
            ctx.schedule_timer(timeout_ms),
        )
        if winner["index"] == 0:
            return winner["value"]  # FastService completed first
        else:
            return "timed out"

    runtime.start()
    instance = f"race-example-{fast}"
    client.start_orchestration(instance, "RaceExample", "req-1")
    try:
        result = client.wait_for_orchestration(instance, 3_000)
        assert result.status == "Completed", result.error
        if fast:
            assert result.output == "served req-1"
        else:
            assert result.output == "timed out"
            assert saw_cancel.wait(2), "the losing activity was not cancelled"
            assert "ActivityCancelRequested" in kinds(client, instance)
    finally:
        release.set()


def test_race_between_an_event_and_a_timeout(client, make_runtime):
    runtime = make_runtime()

    @runtime.register_orchestration("WaitOrTimeout")
    def wait_or_timeout(ctx, input):
        winner = yield ctx.race(ctx.wait_for_event("reply"), ctx.schedule_timer(input))
        return winner

    runtime.start()
    client.start_orchestration("race-event-1", "WaitOrTimeout", 60_000)
    client.start_orchestration("race-event-2", "WaitOrTimeout", 20)
    wait_until_waiting(client, "race-event-1")
    client.raise_event("race-event-1", "reply", {"text": "pong"})

    assert client.wait_for_orchestration("race-event-1", 5_000).output == {
        "index": 0,
        "value": {"text": "pong"},
    }
    assert client.wait_for_orchestration("race-event-2", 5_000).output == {
        "index": 1,
        "value": None,
    }


# --- Durable timers ------------------------------------------------------------------------------


def test_durable_timer_delays_the_next_step_and_survives_a_restart(client, make_runtime):
    delay_ms = 300  # an hour in the guide: shrunk
    reminders: list[Any] = []

    def register(runtime):
        runtime.register_activity("SendReminder", lambda ctx, inp: reminders.append(inp))

        @runtime.register_orchestration("DelayedNotification")
        def delayed_notification(ctx, input):
            yield ctx.schedule_timer(delay_ms)  # wait (survives restarts)
            yield ctx.schedule_activity("SendReminder", input)
            return "done"

    first = make_runtime()
    register(first)
    first.start()
    client.start_orchestration("timer-1", "DelayedNotification", {"to": "bob"})
    eventually(lambda: "TimerCreated" in kinds(client, "timer-1"), timeout_s=5)
    first.shutdown(100)  # the process goes away while the timer is pending
    assert reminders == []

    second = make_runtime()
    register(second)
    second.start()
    result = client.wait_for_orchestration("timer-1", 5_000)

    assert result.status == "Completed", result.error
    assert result.output == "done"
    assert reminders == [{"to": "bob"}]
    events = history(client, "timer-1")
    created = next(e for e in events if e.kind == "TimerCreated")
    reminder = next(e for e in events if e.kind == "ActivityScheduled")
    fire_at = json.loads(created.data)["fire_at_ms"]
    assert fire_at - created.timestamp_ms == delay_ms
    assert reminder.timestamp_ms >= fire_at


# --- External events -----------------------------------------------------------------------------


@pytest.mark.parametrize("approved", [True, False], ids=["approved", "rejected"])
def test_approval_workflow_with_external_event(client, make_runtime, approved):
    runtime = make_runtime()
    executed: list[Any] = []
    runtime.register_activity("RequestApproval", lambda ctx, inp: "requested")
    runtime.register_activity("Execute", lambda ctx, inp: executed.append(inp))

    @runtime.register_orchestration("ApprovalWorkflow")
    def approval_workflow(ctx, input):
        yield ctx.schedule_activity("RequestApproval", input)
        ctx.trace_info("waiting for approval...")

        approval = yield ctx.wait_for_event("approval")

        if approval["approved"]:
            yield ctx.schedule_activity("Execute", input)
            return "approved"
        else:
            return "rejected"

    runtime.start()
    instance = f"approval-{approved}"
    client.start_orchestration(instance, "ApprovalWorkflow", {"change": 17})
    wait_until_waiting(client, instance)
    assert client.get_status(instance).status == "Running"
    client.raise_event(instance, "approval", {"approved": approved})
    result = client.wait_for_orchestration(instance, 5_000)

    assert result.status == "Completed", result.error
    assert result.output == ("approved" if approved else "rejected")
    assert executed == ([{"change": 17}] if approved else [])


# --- Sub-orchestrations --------------------------------------------------------------------------


def test_sub_orchestration_result_flows_to_the_parent(client, make_runtime):
    runtime = make_runtime()
    runtime.register_activity("DoWork", lambda ctx, inp: {"work": inp, "by": ctx.instance_id})

    @runtime.register_orchestration("Parent")
    def parent(ctx, input):
        child_result = yield ctx.schedule_sub_orchestration("Child", input)
        return {"parentResult": child_result}

    @runtime.register_orchestration("Child")
    def child(ctx, input):
        r = yield ctx.schedule_activity("DoWork", input)
        return r

    runtime.start()
    client.start_orchestration("parent-1", "Parent", "payload")
    result = client.wait_for_orchestration("parent-1", 5_000)

    assert result.status == "Completed", result.error
    child_id = result.output["parentResult"]["by"]
    assert child_id != "parent-1"
    assert result.output == {"parentResult": {"work": "payload", "by": child_id}}
    assert client.get_instance_info(child_id).parent_instance_id == "parent-1"
    assert client.get_status(child_id).status == "Completed"
    tree = client.get_instance_tree("parent-1")
    assert set(tree.all_ids) == {"parent-1", child_id}


def test_sub_orchestration_with_explicit_id(client, make_runtime):
    runtime = make_runtime()

    @runtime.register_orchestration("Child")
    def child(ctx, input):
        return {"child": ctx.instance_id, "got": input}

    @runtime.register_orchestration("Parent")
    def parent(ctx, input):
        result = yield ctx.schedule_sub_orchestration_with_id(
            "Child", f"child-{input['id']}", input
        )
        return result

    runtime.start()
    client.start_orchestration("parent-explicit-1", "Parent", {"id": 77})
    result = client.wait_for_orchestration("parent-explicit-1", 5_000)

    assert result.status == "Completed", result.error
    assert result.output == {"child": "child-77", "got": {"id": 77}}
    info = client.get_instance_info("child-77")
    assert info.orchestration_name == "Child"
    assert info.parent_instance_id == "parent-explicit-1"


def test_child_failure_raises_in_the_parent(client, make_runtime):
    runtime = make_runtime()

    def explode(ctx, inp):
        raise ValueError(f"bad record {inp}")

    runtime.register_activity("Explode", explode)

    @runtime.register_orchestration("FailingChild")
    def failing_child(ctx, input):
        return (yield ctx.schedule_activity("Explode", input))

    @runtime.register_orchestration("CatchingParent")
    def catching_parent(ctx, input):
        try:
            yield ctx.schedule_sub_orchestration("FailingChild", input)
        except Exception as e:
            return {"caught": str(e)}
        return "unreachable"

    @runtime.register_orchestration("UncaughtParent")
    def uncaught_parent(ctx, input):
        return (yield ctx.schedule_sub_orchestration("FailingChild", input))

    runtime.start()
    client.start_orchestration("child-fail-caught", "CatchingParent", 5)
    client.start_orchestration("child-fail-uncaught", "UncaughtParent", 6)
    caught = client.wait_for_orchestration("child-fail-caught", 5_000)
    uncaught = client.wait_for_orchestration("child-fail-uncaught", 5_000)

    assert caught.status == "Completed", caught.error
    assert "bad record 5" in caught.output["caught"]
    assert uncaught.status == "Failed"
    assert "bad record 6" in (uncaught.error or "")


# --- Fire-and-forget -----------------------------------------------------------------------------


def test_fire_and_forget_starts_an_independent_orchestration(client, make_runtime):
    runtime = make_runtime()
    provisioned: list[Any] = []
    runtime.register_activity("ProvisionVM", lambda ctx, inp: provisioned.append(inp) or "vm-ok")

    @runtime.register_orchestration("InstanceMonitor")
    def instance_monitor(ctx, input):
        stop = yield ctx.wait_for_event("stop")
        return {"monitored": input["instanceId"], "stop": stop}

    @runtime.register_orchestration("CreateInstance")
    def create_instance(ctx, input):
        yield ctx.schedule_activity("ProvisionVM", input)

        # Launch monitor — runs independently
        yield ctx.start_orchestration(
            "InstanceMonitor",
            f"monitor-{input['instanceId']}",
            {"instanceId": input["instanceId"]},
        )

        return {"status": "provisioned"}

    runtime.start()
    client.start_orchestration("create-1", "CreateInstance", {"instanceId": "vm-9"})
    result = client.wait_for_orchestration("create-1", 5_000)

    assert result.status == "Completed", result.error
    assert result.output == {"status": "provisioned"}
    assert provisioned == [{"instanceId": "vm-9"}]
    # The monitor was started, is still running on its own, and is nobody's child.
    eventually(lambda: client.get_status("monitor-vm-9").status == "Running", timeout_s=5)
    assert client.get_instance_info("monitor-vm-9").parent_instance_id is None
    assert client.get_instance_tree("create-1").all_ids == ["create-1"]
    wait_until_waiting(client, "monitor-vm-9")
    client.raise_event("monitor-vm-9", "stop", "bye")
    monitor = client.wait_for_orchestration("monitor-vm-9", 5_000)
    assert monitor.output == {"monitored": "vm-9", "stop": "bye"}


# --- Continue-as-new -----------------------------------------------------------------------------


def test_continue_as_new_monitor_keeps_each_history_small(client, make_runtime):
    runtime = make_runtime()
    runtime.register_activity("CheckHealth", lambda ctx, target: {"status": f"{target} is up"})

    @runtime.register_orchestration("Monitor")
    def monitor(ctx, input):
        state = input.get("state") or {"checkCount": 0}

        # Do periodic work
        health = yield ctx.schedule_activity("CheckHealth", input["target"])
        ctx.trace_info(f"health check #{state['checkCount']}: {health['status']}")
        if state["checkCount"] == 3:  # not in the guide: lets the test end
            return {"checks": state["checkCount"] + 1, "last": health}

        # Wait before next check
        yield ctx.schedule_timer(5)  # 30 seconds in the guide: shrunk

        # Restart with updated state (keeps history from growing unbounded)
        yield ctx.continue_as_new(
            {"target": input["target"], "state": {"checkCount": state["checkCount"] + 1}}
        )

    runtime.start()
    client.start_orchestration("can-monitor-1", "Monitor", {"target": "api"})
    result = client.wait_for_orchestration("can-monitor-1", 5_000)

    assert result.status == "Completed", result.error
    assert result.output == {"checks": 4, "last": {"status": "api is up"}}
    assert client.list_executions("can-monitor-1") == [1, 2, 3, 4]
    infos = [client.get_execution_info("can-monitor-1", n) for n in (1, 2, 3, 4)]
    assert [i.status for i in infos] == ["ContinuedAsNew"] * 3 + ["Completed"]
    # Every looping execution has the same, small history: it does not grow with iterations.
    assert len({i.event_count for i in infos[:3]}) == 1
    assert kinds(client, "can-monitor-1", 2) == [
        "OrchestrationStarted",
        "ActivityScheduled",
        "ActivityCompleted",
        "TimerCreated",
        "TimerFired",
        "OrchestrationContinuedAsNew",
    ]


# --- Error handling ------------------------------------------------------------------------------


def test_error_handling_catches_activity_failure_and_cleans_up(client, make_runtime):
    runtime = make_runtime()
    cleanups: list[Any] = []

    def risky_call(ctx, inp):
        raise TimeoutError(f"upstream timed out for {inp['id']}")

    runtime.register_activity("RiskyCall", risky_call)
    runtime.register_activity("Cleanup", lambda ctx, inp: cleanups.append(inp))

    @runtime.register_orchestration("SafeWorkflow")
    def safe_workflow(ctx, input):
        try:
            result = yield ctx.schedule_activity("RiskyCall", input)
            return result
        except Exception as error:
            ctx.trace_error(f"activity failed: {error}")
            yield ctx.schedule_activity("Cleanup", {"error": str(error)})
            return {"status": "failed", "error": str(error)}

    runtime.start()
    client.start_orchestration("safe-1", "SafeWorkflow", {"id": "r-1"})
    result = client.wait_for_orchestration("safe-1", 5_000)

    assert result.status == "Completed", result.error
    assert result.output["status"] == "failed"
    assert "upstream timed out for r-1" in result.output["error"]
    assert cleanups == [{"error": result.output["error"]}]


def test_uncaught_activity_error_fails_the_orchestration_with_its_message(client, make_runtime):
    runtime = make_runtime()

    @runtime.register_activity("ValidateInput")
    def validate_input(ctx, input):
        if not input.get("email"):
            raise ValueError("email is required")
        return {"valid": True}

    @runtime.register_orchestration("Signup")
    def signup(ctx, input):
        return (yield ctx.schedule_activity("ValidateInput", input))

    runtime.start()
    client.start_orchestration("signup-ok", "Signup", {"email": "a@b.c"})
    client.start_orchestration("signup-bad", "Signup", {"name": "no email"})

    assert client.wait_for_orchestration("signup-ok", 5_000).output == {"valid": True}
    bad = client.wait_for_orchestration("signup-bad", 5_000)
    assert bad.status == "Failed"
    assert "email is required" in (bad.error or "")
    assert bad.output is None


# --- Retry policies ------------------------------------------------------------------------------

RETRY_POLICY = {
    "max_attempts": 3,
    "backoff": "exponential",
    "timeout_ms": 5000,  # per-attempt timeout
    "total_timeout_ms": 30000,  # total timeout across all attempts
}


@pytest.mark.parametrize("failures", [0, 2, 3])
def test_retry_policy_retries_until_success_or_max_attempts(client, make_runtime, failures):
    runtime = make_runtime()
    attempts: list[Any] = []

    @runtime.register_activity("FlakeyApi")
    def flakey_api(ctx, input):
        attempts.append(input)
        if len(attempts) <= failures:
            raise ConnectionError(f"flake #{len(attempts)}")
        return {"answer": input * 2}

    @runtime.register_orchestration("CallsFlakey")
    def calls_flakey(ctx, input):
        result = yield ctx.schedule_activity_with_retry("FlakeyApi", input, RETRY_POLICY)
        return result

    runtime.start()
    instance = f"retry-{failures}"
    client.start_orchestration(instance, "CallsFlakey", 21)
    result = client.wait_for_orchestration(instance, 5_000)

    if failures < 3:
        assert result.status == "Completed", result.error
        assert result.output == {"answer": 42}
        assert len(attempts) == failures + 1
    else:
        assert result.status == "Failed"
        assert "flake #3" in (result.error or "")
        assert len(attempts) == 3  # max_attempts, not one more
    assert len(scheduled(client, instance)) == len(attempts)


def test_retry_policy_total_timeout_stops_retrying_before_max_attempts(client, make_runtime):
    runtime = make_runtime()
    attempts: list[int] = []

    @runtime.register_activity("AlwaysDown")
    def always_down(ctx, input):
        attempts.append(len(attempts) + 1)
        raise ConnectionError(f"down (attempt {len(attempts)})")

    @runtime.register_orchestration("GivesUp")
    def gives_up(ctx, input):
        # backoffs 50, 100, 200, 400, 800, 1600 ms: the 2 s budget runs out after about six
        # attempts, long before the thousandth (a slow machine gets fewer, never only one)
        policy = {"max_attempts": 1000, "backoff": "exponential", "delay_ms": 50,
                  "total_timeout_ms": 2_000}  # fmt: skip
        return (yield ctx.schedule_activity_with_retry("AlwaysDown", input, policy))

    runtime.start()
    started = time.monotonic()
    client.start_orchestration("retry-total-1", "GivesUp", None)
    result = client.wait_for_orchestration("retry-total-1", 30_000)

    assert result.status == "Failed"
    assert 1 < len(attempts) <= 6  # retried, but the budget ran out first
    assert f"down (attempt {len(attempts)})" in (result.error or "")
    assert time.monotonic() - started < 15  # not 1000 attempts with backoffs up to 30 s


def test_retry_policy_per_attempt_timeout_fails_at_once_and_cancels_the_attempt(
    client, make_runtime
):
    """Per the orchestration guide: errors are retried, a per-attempt timeout exits at once."""
    runtime = make_runtime()
    release = threading.Event()
    saw_cancel = threading.Event()
    calls: list[int] = []

    @runtime.register_activity("Hangs")
    def hangs(ctx, input):
        calls.append(len(calls) + 1)
        while not release.wait(0.01):
            if ctx.is_cancelled():
                saw_cancel.set()
                return None
        return "too late"

    @runtime.register_orchestration("WithTimeout")
    def with_timeout(ctx, input):
        return (
            yield ctx.schedule_activity_with_retry(
                "Hangs", input, {"max_attempts": 3, "backoff": "fixed", "timeout_ms": 150}
            )
        )

    runtime.start()
    client.start_orchestration("retry-timeout-1", "WithTimeout", None)
    try:
        result = client.wait_for_orchestration("retry-timeout-1", 5_000)
        assert result.status == "Failed"
        assert "timed out" in (result.error or "")
        assert saw_cancel.wait(2), "the timed-out attempt was not cancelled"
        assert calls == [1]
        assert len(scheduled(client, "retry-timeout-1")) == 1
    finally:
        release.set()


# --- Versioning ----------------------------------------------------------------------------------


def test_running_instance_keeps_its_version_until_continue_as_new(client, make_runtime):
    calls: list[tuple[str, str]] = []

    def work(ctx, input):
        calls.append((ctx.activity_name, ctx.orchestration_version))
        return input

    def validate(ctx, input):
        calls.append((ctx.activity_name, ctx.orchestration_version))
        return True

    def my_workflow_v1(ctx, input):
        # v1.0.0 — original
        yield ctx.wait_for_event("go")
        r = yield ctx.schedule_activity("Work", input)
        if input == "loop":
            yield ctx.continue_as_new("looped")  # no version: the latest one runs next
        return r

    def my_workflow_v2(ctx, input):
        # v1.0.1 — with validation
        yield ctx.schedule_activity("Validate", input)
        r = yield ctx.schedule_activity("Work", input)
        return r

    old = make_runtime()  # a deployment that only knows v1.0.0
    old.register_activity("Work", work)
    old.register_orchestration("MyWorkflow", my_workflow_v1)
    old.start()
    client.start_orchestration("vers-old-1", "MyWorkflow", "stay")
    client.start_orchestration("vers-old-2", "MyWorkflow", "loop")
    wait_until_waiting(client, "vers-old-1")
    wait_until_waiting(client, "vers-old-2")
    old.shutdown(100)

    new = make_runtime()  # the upgraded deployment knows both versions
    new.register_activity("Work", work)
    new.register_activity("Validate", validate)
    new.register_orchestration("MyWorkflow", my_workflow_v1)
    new.register_orchestration_versioned("MyWorkflow", "1.0.1", my_workflow_v2)
    new.start()
    client.start_orchestration("vers-new-1", "MyWorkflow", "fresh")
    client.raise_event("vers-old-1", "go", None)
    client.raise_event("vers-old-2", "go", None)

    stayed = client.wait_for_orchestration("vers-old-1", 5_000)
    looped = client.wait_for_orchestration("vers-old-2", 5_000)
    fresh = client.wait_for_orchestration("vers-new-1", 5_000)

    # A running instance finishes on the version it started with.
    assert stayed.status == "Completed", stayed.error
    assert stayed.output == "stay"
    assert client.get_instance_info("vers-old-1").orchestration_version == "1.0.0"
    # continue_as_new moved the other one to the latest version.
    assert looped.status == "Completed", looped.error
    assert looped.output == "looped"
    assert client.get_instance_info("vers-old-2").orchestration_version == "1.0.1"
    assert json.loads(history(client, "vers-old-2", 2)[0].data)["version"] == "1.0.1"
    # New orchestrations use the latest version.
    assert fresh.output == "fresh"
    assert client.get_instance_info("vers-new-1").orchestration_version == "1.0.1"
    assert sorted(calls) == sorted(
        [
            ("Work", "1.0.0"),  # vers-old-1
            ("Work", "1.0.0"),  # vers-old-2, execution 1
            ("Validate", "1.0.1"),  # vers-old-2, execution 2
            ("Work", "1.0.1"),
            ("Validate", "1.0.1"),  # vers-new-1
            ("Work", "1.0.1"),
        ]
    )


# --- Multi-step parallel blocks (sub-orchestration pattern) --------------------------------------


def _register_blocks(runtime) -> None:
    runtime.register_activity("Step", lambda ctx, inp: f"step-{inp}")

    @runtime.register_orchestration("BlockA")
    def block_a(ctx, input):
        first = yield ctx.schedule_activity("Step", "A1")
        if "step" in first:
            second = yield ctx.schedule_activity("Step", "A2")
            return f"A:[{first},{second}]"
        return "A:fallback"

    @runtime.register_orchestration("BlockB")
    def block_b(ctx, input):
        yield ctx.schedule_timer(5)
        result = yield ctx.schedule_activity("Step", "B1")
        return f"B:[timer,{result}]"


def test_multi_step_blocks_joined_as_sub_orchestrations(client, make_runtime):
    runtime = make_runtime()
    _register_blocks(runtime)

    @runtime.register_orchestration("Parent")
    def parent(ctx, input):
        # Join multiple multi-step blocks
        a, b = yield ctx.all(
            [
                ctx.schedule_sub_orchestration("BlockA", ""),
                ctx.schedule_sub_orchestration("BlockB", ""),
            ]
        )
        return f"{a['ok']},{b['ok']}"

    runtime.start()
    client.start_orchestration("blocks-join-1", "Parent", None)
    result = client.wait_for_orchestration("blocks-join-1", 5_000)

    assert result.status == "Completed", result.error
    assert result.output == "A:[step-A1,step-A2],B:[timer,step-B1]"


def test_multi_step_blocks_raced_cancel_the_losing_block(client, make_runtime):
    runtime = make_runtime()
    _register_blocks(runtime)

    @runtime.register_orchestration("Slow")
    def slow(ctx, input):
        yield ctx.wait_for_event("never")
        return "slow"

    @runtime.register_orchestration("Parent")
    def parent(ctx, input):
        winner = yield ctx.race(
            ctx.schedule_sub_orchestration_with_id("Slow", "blocks-race-slow", ""),
            ctx.schedule_sub_orchestration("BlockA", ""),
        )
        return winner

    runtime.start()
    client.start_orchestration("blocks-race-1", "Parent", None)
    result = client.wait_for_orchestration("blocks-race-1", 5_000)

    assert result.status == "Completed", result.error
    assert result.output == {"index": 1, "value": "A:[step-A1,step-A2]"}
    loser = client.wait_for_orchestration("blocks-race-slow", 5_000)
    assert loser.status == "Failed"
    assert (loser.error or "").startswith("canceled")


def test_fire_and_forget_orchestration_outlives_a_cancelled_starter(client, make_runtime):
    runtime = make_runtime()

    @runtime.register_orchestration("Background")
    def background(ctx, input):
        return (yield ctx.wait_for_event("finish"))

    @runtime.register_orchestration("Starter")
    def starter(ctx, input):
        yield ctx.start_orchestration("Background", "detached-bg-1", input)
        yield ctx.wait_for_event("never")

    runtime.start()
    client.start_orchestration("detached-starter-1", "Starter", {"job": 1})
    wait_until_waiting(client, "detached-bg-1")
    wait_until_waiting(client, "detached-starter-1")
    client.cancel_instance("detached-starter-1", "operator")
    starter_result = client.wait_for_orchestration("detached-starter-1", 5_000)

    assert starter_result.status == "Failed"
    assert starter_result.error == "canceled: operator"
    # Not a child: the cancellation does not cascade to it.
    assert client.get_status("detached-bg-1").status == "Running"
    client.raise_event("detached-bg-1", "finish", "done")
    assert client.wait_for_orchestration("detached-bg-1", 5_000).output == "done"


def test_cancelling_a_parent_cascades_to_its_sub_orchestration(client, make_runtime):
    runtime = make_runtime()

    @runtime.register_orchestration("WaitingChild")
    def waiting_child(ctx, input):
        return (yield ctx.wait_for_event("never"))

    @runtime.register_orchestration("WaitingParent")
    def waiting_parent(ctx, input):
        return (yield ctx.schedule_sub_orchestration_with_id("WaitingChild", "cascade-child", 1))

    runtime.start()
    client.start_orchestration("cascade-parent", "WaitingParent", None)
    wait_until_waiting(client, "cascade-child")
    client.cancel_instance("cascade-parent", "shutting down")

    parent = client.wait_for_orchestration("cascade-parent", 5_000)
    child = client.wait_for_orchestration("cascade-child", 5_000)
    assert parent.status == "Failed"
    assert parent.error == "canceled: shutting down"
    assert child.status == "Failed"
    assert (child.error or "").startswith("canceled")
