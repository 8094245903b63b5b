"""11. A rolling deploy: the instances schedule an activity that the running build does not
register yet. Its workers fetch it, find no handler and park it with a backoff (never run it,
never fail it); a second cluster with the new build (a worker registering it) then joins and
everything completes once, with its expected output.

Recovery: from the moment the new build is ready until each instance completes.
"""

from __future__ import annotations

import signal

from tests.chaos.harness import (
    children,
    clusters,
    instance_recovery_ms,
    launch,
    now_ms,
    p99,
    stage,
    verdict,
    wait_finished,
    wait_for,
)
from tests.chaos.ledger import STEP_V2
from tests.chaos.result import ChaosEnv, ScenarioResult

NUMBER = 11
TITLE = "rolling deploy (activity added later)"


def run(env: ChaosEnv) -> ScenarioResult:
    small = env.size == "small"
    instances = 10 if small else 300
    result = ScenarioResult(NUMBER, TITLE, reexecutions_allowed=False)
    workload = {"k": 3, "sleep_s": 0.02, "activity": STEP_V2}
    with stage(env, "s11", workload) as st, clusters() as started:
        old = st.cluster(
            "--orchestrators", "1", "--workers", "1", "--worker-concurrency", "16",
            "--drain-timeout", "5", name="old", extra_env={"CHAOS_LEDGER_SKIP": STEP_V2},
        )  # fmt: skip
        ids = launch(st, started, old, "s11", instances)
        wanted = len(ids) * st.workload.k
        wait_for(lambda: len(old.events("activity.unregistered")) >= wanted,
                 "the old build to see every new activity", 60)  # fmt: skip
        result.checks["old build parked them"] = st.terminal_count() == 0
        new = st.cluster("--orchestrators", "0", "--workers", "1", "--worker-concurrency", "16",
                         "--drain-timeout", "5", name="new")  # fmt: skip
        started.append(new)
        new.wait_ready()
        ready_ms = now_ms()
        new_workers = set(children(new, "worker"))
        wait_finished(st, len(ids), 60 if small else 180)
        verdict(result, st, ids)
        result.recovery_p99_ms = p99(instance_recovery_ms(st, [(ready_ms, ids)]))
        ran_on = {pid for pid, *_rest in st.workload.attempts()}
        result.checks["only the new build ran it"] = ran_on <= new_workers
        for cluster in (new, old):
            cluster.signal(signal.SIGTERM)
        result.checks["drained, exit 0"] = [old.wait_exit(30), new.wait_exit(30)] == [0, 0]
        result.detail = f"{len(old.events('activity.unregistered'))} parked fetches"
    return result
