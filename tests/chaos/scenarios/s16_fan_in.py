"""Scenario 16: parents each joining 20 children that all complete at the same moment.

Every child arms a timer for one shared wall-clock instant, then runs an activity and returns
its index; its parent joins all 20 with ``ctx.all``. Three runtimes (own providers, pools and
listeners) share the schema, so the children's completions hit the parents' queue rows from
many transactions at once. Checks: every parent completes with the sum of its children, every
child armed its timer before the instant (they really finished together), each activity ran
once, and the independent checker finds nothing lost or duplicated. Storage errors the
dispatchers retried (deadlocks, lock timeouts) are counted from the runtimes' metrics.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from contextlib import ExitStack
from typing import Any

from duroxide import Client, PostgresProvider, Runtime
from tests.chaos.result import ChaosEnv, ScenarioResult
from tests.chaos.scenarios._common_b import (
    apply_checks,
    fast_options,
    query,
    running,
    tenant,
    wait_all,
)
from tests.pg import connect

NUMBER = 16
TITLE = "fan-in: parents joining 20 children"
CHILDREN = 20
RUNTIMES = 3


def _register(
    runtime: Runtime, executions: Counter[tuple[str, int]], early: list[str],
    lock: threading.Lock,
) -> None:  # fmt: skip
    def leaf(ctx: Any, value: int) -> int:
        with lock:
            executions[(ctx.instance_id, ctx.activity_id)] += 1
        return value

    def child(ctx: Any, data: dict[str, int]) -> Any:
        now = yield ctx.utc_now()
        delay = data["fire_at"] - now
        if delay <= 0 and not ctx.is_replaying:
            with lock:
                early.append(ctx.instance_id)
        yield ctx.schedule_timer(max(0, delay))
        value = yield ctx.schedule_activity("Leaf", data["k"])
        return value

    def parent(ctx: Any, fire_at: int) -> Any:
        tasks = [
            ctx.schedule_sub_orchestration("Child", {"k": k, "fire_at": fire_at})
            for k in range(CHILDREN)
        ]
        results = yield ctx.all(tasks)
        return sum(r["ok"] for r in results)

    runtime.register_activity("Leaf", leaf)
    runtime.register_orchestration("Child", child)
    runtime.register_orchestration("Parent", parent)


def run(env: ChaosEnv) -> ScenarioResult:
    parents = 15 if env.size == "small" else 50
    arm_s = 4.0 if env.size == "small" else 12.0
    result = ScenarioResult(NUMBER, TITLE, reexecutions_allowed=False)
    schema = env.schema("s16_fan_in")
    ids = [f"parent-{n}" for n in range(parents)]
    executions: Counter[tuple[str, int]] = Counter()
    early: list[str] = []
    lock = threading.Lock()
    with tenant(env.url, schema) as provider, ExitStack() as stack:
        client = Client(provider)
        runtimes = []
        for n in range(RUNTIMES):
            own = provider if n == 0 else PostgresProvider.connect_with_schema(env.url, schema)
            if n:
                stack.callback(own.close)
            runtime = Runtime(own, fast_options(orchestration_concurrency=6))
            _register(runtime, executions, early, lock)
            runtimes.append(stack.enter_context(running(runtime)))
        fire_at = int(time.time() * 1000 + arm_s * 1000)
        for instance_id in ids:
            client.start_orchestration(instance_id, "Parent", fire_at)
        result.started = parents * (1 + CHILDREN)
        statuses = wait_all(client, ids, 60 + arm_s)
        done_at = time.time() * 1000
        provider_errors = sum(r.metrics_snapshot().provider_errors for r in runtimes)
        with connect(env.url) as conn:
            row = conn.execute(query("timers_armed", schema)).fetchone()
        armed, last_armed = (int(row[0]), row[1]) if row else (0, None)
        apply_checks(result, env.url, [(schema, dict.fromkeys(ids, sum(range(CHILDREN))))])
    result.activity_reexecutions = sum(c - 1 for c in executions.values())
    result.duplicate_effects = result.activity_reexecutions  # Leaf's effect: its count
    result.checks |= {
        "all parents completed": all(s == "Completed" for s in statuses.values()),
        "children armed before the instant": not early
        and armed == parents * CHILDREN
        and last_armed is not None
        and last_armed < fire_at,
        "every child's activity ran": len(executions) == parents * CHILDREN,
    }
    result.detail = (
        f"{parents}x{CHILDREN} armed {armed} timers, the last "
        f"{(fire_at - (last_armed or done_at)) / 1000:.1f} s before the instant; joined "
        f"{max(0.0, done_at - fire_at) / 1000:.1f} s after it; retried provider errors: "
        f"{provider_errors}"
        + (f"; {len(early)} children armed late" if early else "")
        + (f" {result.detail}" if result.detail else "")
    )
    return result
