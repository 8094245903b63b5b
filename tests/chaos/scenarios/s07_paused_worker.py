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
        workers = set(children(cluster, "worker"))
        ids = [f"s07-{i:05d}" for i in range(instances)]
        st.workload.start(st.client, ids)
        busy: list[int] = []

        def running_somewhere() -> bool:  # a worker with an activity running (not yet acked)
            busy[:] = sorted({a[0] for a in st.workload.attempts()
                              if a[3] is None and a[0] in workers})  # fmt: skip
            return bool(busy)

        wait_for(running_somewhere, "a worker to start an activity", 30)
        pid = busy[0]
        at_ms = now_ms()
        paused = kill_pid(cluster, pid, signal.SIGSTOP)
        try:
            wait_finished(st, len(ids), 60 if small else 180)
        finally:
            kill_pid(cluster, pid, signal.SIGCONT)
        resumed_ms = now_ms()
        # the activities the paused worker had started, re-executed elsewhere while it was
        # stopped: the paused worker's ack of each is late and must be rejected
        attempts = st.workload.attempts()
        paused_steps = {(a[4], a[5]) for a in attempts if a[0] == pid and a[2] <= at_ms}
        retaken_steps = {(a[4], a[5]) for a in attempts if a[0] != pid and a[2] > at_ms}
        taken_over = len(paused_steps & retaken_steps)

        def rejected() -> bool:
            return len(cluster.events("activity.result_discarded", pid=pid)) >= taken_over

        late = wait_for(rejected, "the resumed worker's late acks to be rejected", 20)
        verdict(result, st, ids)  # after the late acks: a wrongly accepted one would show
        result.recovery_p99_ms = p99(activity_recovery_ms(st, [(pid, at_ms)]))
        result.checks["paused past its lock"] = paused and resumed_ms - at_ms > LOCK_MS
        result.checks["late ack rejected"] = rejected() and result.duplicate_events == 0
        result.checks["paused work re-executed"] = (
            taken_over >= 1 and result.activity_reexecutions >= taken_over
        )
        result.checks["worker alive after resume"] = pid in cluster.group_processes()
        cluster.signal(signal.SIGTERM)
        result.checks["drained, exit 0"] = cluster.wait_exit(30) == 0
        result.detail = (f"{taken_over} activities paused {resumed_ms - at_ms} ms; late acks "
                         f"rejected {late:.1f}s after resume")  # fmt: skip
    return result
