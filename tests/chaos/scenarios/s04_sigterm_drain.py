"""4. SIGTERM during load: the cluster drains (stops claiming, lets in-flight work finish or
releases its locks) and exits 0 within the drain timeout; a new cluster then finishes
everything — nothing lost, nothing duplicated. Repeated ``rounds`` times.

Recovery: from each SIGTERM until the activities the drained workers had in flight were
completed (by the drain or by the next cluster).
"""

from __future__ import annotations

import signal

from tests.chaos.harness import (
    activity_recovery_ms,
    children,
    clusters,
    now_ms,
    p99,
    stage,
    verdict,
    wait_finished,
)
from tests.chaos.result import ChaosEnv, ScenarioResult

NUMBER = 4
TITLE = "SIGTERM drain under load"
DRAIN_TIMEOUT_S = 5


def run(env: ChaosEnv) -> ScenarioResult:
    small = env.size == "small"
    instances, rounds = (40, 1) if small else (500, 3)
    result = ScenarioResult(NUMBER, TITLE)
    drains: list[tuple[int, int]] = []  # (worker pid, SIGTERM at ms)
    exits: list[int] = []
    unfinished_at_drain: list[int] = []
    with stage(env, "s04", {"k": 4, "sleep_s": 0.2}) as st, clusters() as started:
        ids = [f"s04-{i:05d}" for i in range(instances)]
        for round_ in range(rounds + 1):
            cluster = st.cluster(
                "--orchestrators", "1", "--workers", "2",
                "--orchestration-concurrency", "8", "--worker-concurrency", "8",
                "--orchestrator-lock-timeout-ms", "2000", "--worker-lock-timeout-ms", "3000",
                "--drain-timeout", str(DRAIN_TIMEOUT_S), name=f"cluster-{round_}",
            )  # fmt: skip
            started.append(cluster)
            cluster.wait_ready()
            if round_ == 0:
                st.workload.start(st.client, ids)
            if round_ == rounds:
                break  # the last cluster finishes the work
            wait_finished(st, len(ids) * (round_ + 1) // (rounds + 2), 120)
            workers = list(children(cluster, "worker"))
            at_ms = now_ms()
            cluster.signal(signal.SIGTERM)
            unfinished_at_drain.append(len(ids) - st.terminal_count())
            exits.append(cluster.wait_exit(DRAIN_TIMEOUT_S + 10))
            drains += [(pid, at_ms) for pid in workers]
        wait_finished(st, len(ids), 120 if small else 300)
        verdict(result, st, ids)
        result.recovery_p99_ms = p99(activity_recovery_ms(st, drains))
        result.checks["drained mid-load"] = all(n > 0 for n in unfinished_at_drain)
        result.checks["drains exit 0"] = exits == [0] * rounds
        started[-1].signal(signal.SIGTERM)
        result.checks["last cluster exit 0"] = started[-1].wait_exit(30) == 0
        result.detail = f"{rounds} drains, {unfinished_at_drain} unfinished at each"
    return result
