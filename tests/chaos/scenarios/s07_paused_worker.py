"""7. A worker paused with SIGSTOP past its lock timeout, then resumed (SIGCONT).

While it is stopped its locks expire and another worker re-executes its activities
(at-least-once); once resumed, it finishes them and tries to ack: every late ack must be
rejected (``activity.result_discarded`` from that process), and each activity's completion
appears exactly once in history (checked after the late acks).

Recovery: from the SIGSTOP until the paused activities were completed elsewhere.
"""

from __future__ import annotations

import signal

from tests.chaos.harness import (
    activity_recovery_ms,
    children,
    clusters,
    kill_pid,
    now_ms,
    p99,
    stage,
    verdict,
    wait_finished,
    wait_for,
)
from tests.chaos.result import ChaosEnv, ScenarioResult

NUMBER = 7
TITLE = "worker paused past its lock"
LOCK_MS = 1500


def run(env: ChaosEnv) -> ScenarioResult:
    small = env.size == "small"
    instances = 6 if small else 40
    result = ScenarioResult(NUMBER, TITLE)
    with stage(env, "s07", {"k": 2, "sleep_s": 2.0}) as st, clusters() as started:
        cluster = st.cluster(
            "--orchestrators", "1", "--workers", "2",
            "--orchestration-concurrency", "8", "--worker-concurrency", "8" if small else "16",
            "--orchestrator-lock-timeout-ms", "2000", "--worker-lock-timeout-ms", str(LOCK_MS),
            "--drain-timeout", "5",
        )  # fmt: skip
        started.append(cluster)
        cluster.wait_ready()
        pid = min(children(cluster, "worker"))
        ids = [f"s07-{i:05d}" for i in range(instances)]
        st.workload.start(st.client, ids)

        def running_here() -> int:
            return sum(1 for a in st.workload.attempts() if a[0] == pid and a[3] is None)

        wait_for(lambda: running_here() >= 1, "the worker to start an activity", 30)
        at_ms = now_ms()
        paused = kill_pid(cluster, pid, signal.SIGSTOP)
        try:
            in_flight = running_here()
            wait_finished(st, len(ids), 60 if small else 180)
        finally:
            kill_pid(cluster, pid, signal.SIGCONT)
        resumed_ms = now_ms()

        def rejected() -> bool:
            return len(cluster.events("activity.result_discarded", pid=pid)) >= in_flight

        late = wait_for(rejected, "the resumed worker's late acks to be rejected", 20)
        verdict(result, st, ids)  # after the late acks: a wrongly accepted one would show
        result.recovery_p99_ms = p99(activity_recovery_ms(st, [(pid, at_ms)]))
        result.checks["paused past its lock"] = paused and resumed_ms - at_ms > LOCK_MS
        result.checks["late ack rejected"] = rejected() and result.duplicate_events == 0
        result.checks["paused work re-executed"] = result.activity_reexecutions >= in_flight
        result.checks["worker alive after resume"] = pid in cluster.group_processes()
        cluster.signal(signal.SIGTERM)
        result.checks["drained, exit 0"] = cluster.wait_exit(30) == 0
        result.detail = (f"{in_flight} activities paused {resumed_ms - at_ms} ms; late acks "
                         f"rejected {late:.1f}s after resume")  # fmt: skip
    return result
