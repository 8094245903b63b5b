"""Scenario 9: duplicate messages — each completion, timer firing and event is recorded once.

Three kinds of redelivery hit every instance of an activity → timer → event → event → activity
orchestration:

* a trigger on the orchestrator queue inserts every activity completion and timer firing a
  second time in the same transaction (a duplicate in the same batch);
* after the instances consumed them, every saved completion and firing is inserted yet again
  with SQL (a redelivery long after the original, in a later turn);
* a rogue dispatcher claims instances through the provider API and never acks: half of the
  claims are abandoned, half left to expire, so the same rows (events included) are delivered
  again to the real runtime.

A verbatim second ``EventRaised`` row is not redelivered by SQL: events carry no id, so it is
indistinguishable from a second raise, which the API defines as a second event. Checks: one
history event per completion, firing and raise (the independent checker plus an exact count of
``ExternalEvent``), every activity ran exactly once, outputs as expected.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from duroxide import Client, Runtime
from tests.chaos.result import ChaosEnv, ScenarioResult
from tests.chaos.scenarios._common_b import (
    apply_checks,
    events_per_instance,
    fast_options,
    query,
    running,
    tenant,
    wait_all,
    wait_until,
)
from tests.pg import connect

NUMBER = 9
TITLE = "duplicate messages injected"
WAITING = "waiting-finish"


class _Rogue(threading.Thread):
    """Claims instances and never acks them: abandons even claims, lets odd ones expire."""

    def __init__(self, provider: Any, max_per_instance: int = 2) -> None:
        super().__init__(name="chaos-rogue", daemon=True)
        self._provider = provider
        self._max = max_per_instance
        self.stop = threading.Event()
        self.claims: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()
        self.errors: list[str] = []

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            try:
                items = self._provider.fetch_orchestration_items(300, 2, dispatcher_id="rogue")
                for item in items:
                    n += 1
                    self.claims[item.instance_id] += 1
                    self.kinds.update(m.kind for m in item.messages)
                    if n % 2 == 0 or self.claims[item.instance_id] > self._max:
                        self._provider.abandon_orchestration_item(
                            item.lock_token, ignore_attempt=True
                        )
            except Exception as exc:  # reported as a failed check, never kills the scenario
                self.errors.append(repr(exc))
                return
            self.stop.wait(0.02 if items else 0.01)


def _register(runtime: Runtime, executions: Counter[tuple[str, int]], lock: threading.Lock) -> None:
    def echo(ctx: Any, value: int) -> int:
        with lock:
            executions[(ctx.instance_id, ctx.activity_id)] += 1
        return value

    def dup(ctx: Any, n: int) -> Any:
        a = yield ctx.schedule_activity("Echo", n)
        yield ctx.schedule_timer(30)
        go = yield ctx.wait_for_event("go")
        ctx.set_custom_status(WAITING)
        yield ctx.wait_for_event("finish")
        b = yield ctx.schedule_activity("Echo", n + 1)
        return [a, go, b]

    runtime.register_activity("Echo", echo)
    runtime.register_orchestration("Dup", dup)


def run(env: ChaosEnv) -> ScenarioResult:
    count = 30 if env.size == "small" else 300
    result = ScenarioResult(NUMBER, TITLE, reexecutions_allowed=False)
    schema = env.schema("s09_dup")
    ids = [f"dup-{n}" for n in range(count)]
    executions: Counter[tuple[str, int]] = Counter()
    lock = threading.Lock()
    with tenant(env.url, schema) as provider:
        with connect(env.url) as conn:
            conn.execute(query("install_duplicator", schema))
        client = Client(provider)
        runtime = Runtime(provider, fast_options())
        _register(runtime, executions, lock)
        rogue = _Rogue(provider)
        rogue.start()
        try:
            with running(runtime):
                for n, instance_id in enumerate(ids):
                    client.start_orchestration(instance_id, "Dup", n)
                    client.raise_event(instance_id, "go", f"go-{n}")
                result.started = count

                def waiting() -> bool:
                    with connect(env.url) as c:
                        row = c.execute(query("custom_status_count", schema), (WAITING,)).fetchone()
                    return bool(row and row[0] == count)

                all_waiting = wait_until(waiting, 60, 0.1)
                rogue.stop.set()
                rogue.join(10)
                with connect(env.url) as conn:
                    copies = dict(conn.execute(query("copies_by_kind", schema)).fetchall())
                    conn.execute(query("disable_duplicator", schema))
                    late_row = conn.execute(query("redeliver_late", schema)).fetchone()
                late = int(late_row[0]) if late_row else 0

                def consumed() -> bool:
                    with connect(env.url) as c:
                        row = c.execute(query("queued_messages", schema)).fetchone()
                    return bool(row and row[0] == 0)

                late_consumed = wait_until(consumed, 30, 0.05)
                for instance_id in ids:
                    client.raise_event(instance_id, "finish", None)
                statuses = wait_all(client, ids, 60)
        finally:
            rogue.stop.set()
            rogue.join(10)
        expected = {i: [n, f"go-{n}", n + 1] for n, i in enumerate(ids)}
        apply_checks(result, env.url, [(schema, expected)])
        raised = events_per_instance(env.url, schema, "ExternalEvent")
    result.activity_reexecutions = sum(c - 1 for c in executions.values())
    # Echo's effect is the (non-idempotent) count: every extra run applied it again.
    result.duplicate_effects = result.activity_reexecutions
    result.checks |= {
        "all reached the second wait": all_waiting,
        "same-batch copies injected": copies.get("ActivityCompleted", 0) == count
        and copies.get("TimerFired", 0) == count,
        "late copies injected and consumed": late == 2 * count and late_consumed,
        "rogue redelivered events": rogue.kinds["ExternalRaised"] > 0
        and not rogue.errors
        and not rogue.is_alive(),
        "one ExternalEvent per raise": all(raised.get(i) == 2 for i in ids),
        "every activity ran once": len(executions) == 2 * count
        and all(c == 1 for c in executions.values()),
        "all completed": all(s == "Completed" for s in statuses.values()),
    }
    result.detail = (
        f"injected {copies.get('ActivityCompleted', 0)}+{copies.get('TimerFired', 0)} "
        f"same-batch, {late} late; rogue claims {sum(rogue.claims.values())} "
        f"({rogue.kinds['ExternalRaised']} events)" + (f" {result.detail}" if result.detail else "")
    )
    return result
