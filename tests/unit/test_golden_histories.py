"""Golden histories: recorded executions that the orchestration code below must keep replaying.

Each JSON file in ``tests/replay_histories/`` holds the histories (one per execution) written by
one scenario below, as ``event_to_record`` stores them, plus the final result. The test replays
every turn of every execution with :func:`duroxide.testing.replay_history` and fails if the code
— or the engine — would now write anything different. That is what a running instance needs: a
change that breaks these files would break instances that are in flight when it is deployed.

When a change is *meant* to alter histories (new code must then be registered as a new version),
regenerate the files and review the diff::

    /work/venv/bin/python tests/unit/test_golden_histories.py
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from duroxide.history import Event, event_from_record, event_to_record
from duroxide.replay import TurnStatus
from duroxide.testing import (
    Harness,
    activity_done,
    activity_error,
    enqueue_msg,
    output_of,
    replay_history,
    sub_done,
    timers_of,
)

HISTORY_DIR = Path(__file__).resolve().parent.parent / "replay_histories"

# --- the orchestrations --------------------------------------------------------------------------


def fulfil_order(ctx, order):
    """Retrying reservation, payment raced against a timeout, two couriers raced, fan-out."""
    ctx.set_custom_status("reserving")
    reserved = yield ctx.schedule_activity_with_retry(
        "Reserve", order["items"], {"max_attempts": 3, "backoff": "fixed", "delay_ms": 1000}
    )
    ctx.set_custom_status("charging")
    payment = yield ctx.race(
        ctx.schedule_activity("Charge", order["total"]), ctx.schedule_timer(30_000)
    )
    if payment["index"] == 1:
        yield ctx.schedule_activity("Release", reserved)
        return {"status": "payment timed out"}
    courier = yield ctx.race(
        ctx.schedule_activity("BookCourier", "fast"), ctx.schedule_activity("BookCourier", "cheap")
    )
    shipments = yield ctx.all(
        [ctx.schedule_activity("Ship", {"item": item, "courier": courier["value"]})
         for item in reserved]
    )  # fmt: skip
    ctx.set_custom_status("shipped")
    ctx.trace_info(f"order {order['id']} shipped")
    return {
        "status": "shipped",
        "receipt": payment["value"],
        "tracking": [s["ok"] for s in shipments],
    }


def approve_expense(ctx, request):
    """Recorded values, an approval raced against a deadline, escalation to a child, KV."""
    request_id = yield ctx.new_guid()
    asked_at = yield ctx.utc_now()
    ctx.set_kv_value("request_id", request_id)
    answer = yield ctx.race(ctx.wait_for_event("decision"), ctx.schedule_timer(3_600_000))
    if answer["index"] == 0:
        decision = answer["value"]
    else:
        decision = yield ctx.schedule_sub_orchestration(
            "Escalate", {"amount": request["amount"], "asked_at": asked_at}
        )
    ctx.set_kv_value("decision", decision["verdict"])
    yield ctx.start_orchestration("Audit", f"audit-{request_id}", {"decision": decision})
    return {"request_id": request_id, "decision": decision}


def queue_worker(ctx, state):
    """An eternal worker: one job per execution, continue-as-new with the running total."""
    job = yield ctx.dequeue_event("jobs")
    if job == "stop":
        return state
    result = yield ctx.schedule_activity("Process", job)
    done = state["done"] + 1
    ctx.set_kv_value("done", str(done))
    ctx.set_custom_status(f"{done} done")
    yield ctx.continue_as_new({"done": done, "last": result})


# --- how each history was produced ---------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    orchestrations: dict[str, Callable[..., Any]]
    instance_id: str
    drive: Callable[[Harness], None]


def drive_fulfil_order(h: Harness) -> None:
    order = {"id": 17, "items": ["book", "lamp"], "total": 59}
    h.start("FulfilOrder", order, now_ms=1_000)
    h.turn(activity_error(h.activity_id("Reserve"), "warehouse busy"), now_ms=2_000)
    h.turn(*timers_of(h.last), now_ms=3_000)  # backoff over: attempt 2
    charging = h.turn(activity_done(h.activity_id("Reserve"), ["book", "lamp"]), now_ms=4_000)
    h.turn(activity_done(h.activity_id("Charge"), "rcpt-9"), now_ms=5_000)  # wins the race
    h.turn(activity_done(h.activity_id("BookCourier", "cheap"), "ups"), now_ms=5_500)
    h.turn(activity_done(h.activity_id("Ship", {"item": "lamp", "courier": "ups"}), "trk-lamp"),
           now_ms=6_000)  # fmt: skip
    h.turn(*timers_of(charging), now_ms=31_000)  # the losing timer fires late: ignored
    h.turn(activity_done(h.activity_id("Ship", {"item": "book", "courier": "ups"}), "trk-book"),
           now_ms=32_000)  # fmt: skip


def drive_approve_expense(h: Harness) -> None:
    h.start("ApproveExpense", {"amount": 1200}, now_ms=1_700_000_000_000)
    h.turn(*timers_of(h.last), now_ms=1_700_003_600_000)  # nobody answered in time
    (escalation,) = [e for e in h.history if e.kind == "SubOrchestrationScheduled"]
    h.turn(sub_done(escalation.event_id, {"verdict": "approved", "by": "cfo"}),
           now_ms=1_700_003_700_000)  # fmt: skip


def drive_queue_worker(h: Harness) -> None:
    h.start("QueueWorker", {"done": 0, "last": None}, now_ms=100)
    h.turn(enqueue_msg("jobs", "a"), enqueue_msg("jobs", "b"), now_ms=200)
    # The job completes and "stop" arrives in the same turn; the worker continues as new.
    h.turn(activity_done(h.activity_id("Process"), "A"), enqueue_msg("jobs", "stop"), now_ms=300)
    h.turn(now_ms=400)  # execution 2 takes "b" from the carried queue
    h.turn(activity_done(h.activity_id("Process"), "B", execution_id=2), now_ms=500)
    h.turn(now_ms=600)  # execution 3 takes "stop"


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("fulfil_order", {"FulfilOrder": fulfil_order}, "order-17", drive_fulfil_order),
        Scenario(
            "approve_expense",
            {"ApproveExpense": approve_expense},
            "expense-3",
            drive_approve_expense,
        ),
        Scenario("queue_worker", {"QueueWorker": queue_worker}, "worker-1", drive_queue_worker),
    )
}


# --- file format ---------------------------------------------------------------------------------


def record_to_json(event: Event) -> dict[str, Any]:
    kind, event_id, timestamp_ms, source_event_id, data = event_to_record(event)
    return {
        "kind": kind,
        "event_id": event_id,
        "timestamp_ms": timestamp_ms,
        "source_event_id": source_event_id,
        "data": json.loads(data),
    }


def event_from_json(record: dict[str, Any]) -> Event:
    return event_from_record(
        kind=record["kind"], event_id=record["event_id"], timestamp_ms=record["timestamp_ms"],
        source_event_id=record["source_event_id"],
        data=json.dumps(record["data"], ensure_ascii=True, separators=(",", ":")),
    )  # fmt: skip


def record_scenario(scenario: Scenario) -> dict[str, Any]:
    h = Harness(scenario.orchestrations, scenario.instance_id)
    scenario.drive(h)
    last = h.last
    assert last.is_terminal, f"{scenario.name}: the driver must run the instance to its end"
    return {
        "scenario": scenario.name,
        "instance_id": scenario.instance_id,
        "final": {"status": last.status.value, "output": output_of(last)},
        "executions": [
            {"execution_id": n, "events": [record_to_json(e) for e in h.executions[n]]}
            for n in sorted(h.executions)
        ],
    }


def regenerate() -> None:
    HISTORY_DIR.mkdir(exist_ok=True)
    for scenario in SCENARIOS.values():
        path = HISTORY_DIR / f"{scenario.name}.json"
        path.write_text(json.dumps(record_scenario(scenario), indent=1) + "\n")
        print(f"wrote {path}")


# --- the tests -----------------------------------------------------------------------------------


def test_every_scenario_has_a_checked_in_history_and_every_history_a_scenario():
    assert sorted(p.stem for p in HISTORY_DIR.glob("*.json")) == sorted(SCENARIOS)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_checked_in_history_still_replays_to_the_same_result(name):
    scenario = SCENARIOS[name]
    golden = json.loads((HISTORY_DIR / f"{name}.json").read_text())

    result = None
    for execution in golden["executions"]:
        events = [event_from_json(record) for record in execution["events"]]
        assert [record_to_json(e) for e in events] == execution["events"]  # lossless round trip
        result = replay_history(
            events, scenario.orchestrations, instance_id=golden["instance_id"],
            execution_id=execution["execution_id"],
        )  # fmt: skip

    assert result is not None
    assert result.status.value == golden["final"]["status"]
    assert output_of(result) == golden["final"]["output"]


def test_the_scenarios_cover_completion_continue_as_new_and_a_race():
    finals = {name: json.loads((HISTORY_DIR / f"{name}.json").read_text()) for name in SCENARIOS}
    kinds = {r["kind"] for g in finals.values() for e in g["executions"] for r in e["events"]}

    assert {g["final"]["status"] for g in finals.values()} == {TurnStatus.COMPLETED.value}
    assert len(finals["queue_worker"]["executions"]) == 3
    assert {"ActivityCancelRequested", "ExternalSubscribedCancelled", "SystemCall",
            "SubOrchestrationScheduled", "OrchestrationChained", "KeyValueSet",
            "CustomStatusUpdated", "TimerFired", "ActivityFailed"} <= kinds  # fmt: skip


if __name__ == "__main__":
    sys.exit(regenerate())
