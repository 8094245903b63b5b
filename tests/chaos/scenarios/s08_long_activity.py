"""8. Activities that run 5x the worker lock timeout: the worker renews their locks while they
run, so none is retaken and re-executed (``reexecutions_allowed=False``), and each completes
once.
"""

from __future__ import annotations

import re
import signal

from tests.chaos.harness import clusters, launch, stage, verdict, wait_finished
from tests.chaos.result import ChaosEnv, ScenarioResult

NUMBER = 8
TITLE = "long activity, lock renewed"
RENEWALS = re.compile(r'^duroxide_lock_renewals_total\{[^}]*kind="activity"[^}]*\} (\S+)$', re.M)


def run(env: ChaosEnv) -> ScenarioResult:
    small = env.size == "small"
    # 1 s locks at the small size: renewed every 1/3 s, so a loaded machine's stalls of a few
    # hundred ms do not lose one
    lock_ms, instances = (1000, 4) if small else (2000, 24)
    result = ScenarioResult(NUMBER, TITLE, reexecutions_allowed=False)
    long_s = 5 * lock_ms / 1000
    with stage(env, "s08", {"k": 2, "sleep_s": long_s}) as st, clusters() as started:
        cluster = st.cluster(
            "--orchestrators", "1", "--workers", "2",
            "--orchestration-concurrency", "8", "--worker-concurrency", "16",
            "--orchestrator-lock-timeout-ms", "2000", "--worker-lock-timeout-ms", str(lock_ms),
            "--drain-timeout", "5",
        )  # fmt: skip
        ids = launch(st, started, cluster, "s08", instances)
        wait_finished(st, len(ids), 60 if small else 180)
        verdict(result, st, ids)
        durations = [a[3] - a[2] for a in st.workload.attempts() if a[3] is not None]
        result.checks["outlived its lock 5x"] = min(durations, default=0) >= 5 * lock_ms
        status, metrics = cluster.get("/metrics")
        renewals = sum(float(v) for v in RENEWALS.findall(metrics)) if status == 200 else 0
        result.checks["locks renewed"] = renewals >= len(ids) * st.workload.k
        cluster.signal(signal.SIGTERM)
        result.checks["drained, exit 0"] = cluster.wait_exit(30) == 0
        result.detail = (f"{len(durations)} activities of {long_s:.0f}s with a {lock_ms} ms "
                         f"lock; {renewals:.0f} renewals")  # fmt: skip
    return result
