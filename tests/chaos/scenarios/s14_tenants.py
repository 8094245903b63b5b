"""Scenario 14: two tenants in two schemas never see or process each other's work.

Two schemas get the same orchestration and activity names and the same instance ids (plus a
few ids only tenant B has). Tenant B's runtime runs alone first: its instances complete while
tenant A's, started at the same time, must stay untouched (no history, still queued). Then A's
runtime starts and finishes A's. Every orchestration and activity records which tenant's
runtime ran it and which tenant's input it got: they must always agree. Admin queries (list,
system metrics, queue depths) of each tenant count only its own instances.
"""

from __future__ import annotations

import threading
from typing import Any

from duroxide import Client, Runtime
from tests.chaos.result import ChaosEnv, ScenarioResult
from tests.chaos.scenarios._common_b import (
    apply_checks,
    events_per_instance,
    fast_options,
    running,
    tenant,
    wait_all,
    wait_until,
)

NUMBER = 14
TITLE = "two tenants, two schemas"


def _runtime(
    provider: Any, label: str, crossed: list[str], runs: list[tuple[str, str, int]],
    lock: threading.Lock,
) -> Runtime:  # fmt: skip
    runtime = Runtime(provider, fast_options())

    def work(ctx: Any, data: Any) -> str:
        with lock:
            runs.append((label, ctx.instance_id, ctx.activity_id))
        if data["tenant"] != label:
            with lock:
                crossed.append(f"activity of {data['tenant']}:{ctx.instance_id} ran on {label}")
        return label

    def job(ctx: Any, data: Any) -> Any:
        first = yield ctx.schedule_activity("Work", data)
        second = yield ctx.schedule_activity("Work", data)
        return f"{label}:{data['tenant']}:{first}{second}"

    runtime.register_activity("Work", work)
    runtime.register_orchestration("Job", job)
    return runtime


def run(env: ChaosEnv) -> ScenarioResult:
    count = 20 if env.size == "small" else 200
    extra = 5 if env.size == "small" else 50
    result = ScenarioResult(NUMBER, TITLE, reexecutions_allowed=False)
    shared_ids = [f"job-{n}" for n in range(count)]
    b_only = [f"only-b-{n}" for n in range(extra)]
    crossed: list[str] = []
    runs: list[tuple[str, str, int]] = []
    lock = threading.Lock()
    schema_a, schema_b = env.schema("s14_tenant_a"), env.schema("s14_tenant_b")
    with tenant(env.url, schema_a) as pa, tenant(env.url, schema_b) as pb:
        ca, cb = Client(pa), Client(pb)
        for instance_id in shared_ids:
            ca.start_orchestration(instance_id, "Job", {"tenant": "a"})
            cb.start_orchestration(instance_id, "Job", {"tenant": "b"})
        for instance_id in b_only:
            cb.start_orchestration(instance_id, "Job", {"tenant": "b"})
        result.started = 2 * count + extra
        with running(_runtime(pb, "b", crossed, runs, lock)):
            b_status = wait_all(cb, shared_ids + b_only, 60)
            # B is done; A's work must still be waiting, unseen by B's runtime.
            a_untouched = (
                not events_per_instance(env.url, schema_a, "OrchestrationStarted")
                and ca.get_queue_depths().orchestrator_queue == count
            )
        with running(_runtime(pa, "a", crossed, runs, lock)):
            a_status = wait_all(ca, shared_ids, 60)
        listed_a, listed_b = sorted(ca.list_all_instances()), sorted(cb.list_all_instances())
        metrics_a, metrics_b = ca.get_system_metrics(), cb.get_system_metrics()
        drained = wait_until(
            lambda: ca.get_queue_depths().orchestrator_queue == 0
            and cb.get_queue_depths().orchestrator_queue == 0, 5)  # fmt: skip
        outputs_ok = all(ca.get_status(i).output == "a:a:aa" for i in shared_ids) and all(
            cb.get_status(i).output == "b:b:bb" for i in shared_ids + b_only
        )
        apply_checks(result, env.url, [
            (schema_a, dict.fromkeys(shared_ids, "a:a:aa")),
            (schema_b, dict.fromkeys(shared_ids + b_only, "b:b:bb")),
        ])  # fmt: skip
    result.activity_reexecutions = len(runs) - len(set(runs))
    result.duplicate_effects = result.activity_reexecutions  # Work's effect: its record
    result.checks |= {
        "A untouched while only B ran": a_untouched,
        "no cross-tenant processing": not crossed,
        "outputs from own tenant": outputs_ok,
        "A lists only its own": listed_a == sorted(shared_ids),
        "B lists only its own": listed_b == sorted(shared_ids + b_only),
        "metrics count own only": metrics_a.total_instances == count
        and metrics_b.total_instances == count + extra,
        "queues drained": drained,
        "waits finished": all(v == "Completed" for v in (*a_status.values(), *b_status.values())),
        "every activity ran": len(set(runs)) == 2 * result.started,
    }
    result.detail = " ".join(filter(None, [result.detail, "; ".join(crossed[:3])]))
    return result
