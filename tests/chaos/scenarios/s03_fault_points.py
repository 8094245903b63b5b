"""3. The crash windows of the fault points (``DUROXIDE_FAULTS`` on the cluster's children):

* ``activity_exit_before_ack`` — a worker exits (code 86) after an activity ran, before its
  ack: the activity is re-executed (at-least-once) once its lock expires; its effect is not
  duplicated;
* ``turn_exit_after_ack`` — an orchestrator exits right after a turn's ack committed: nothing
  of the committed turn is lost or repeated;
* ``turn_raise_after_ack`` — the dispatcher raises right after the ack: the slot survives;
* ``turn_delay_past_lock`` — a turn outlives its lock before its ack: the late ack is refused
  (``orchestration.lock_lost``) and the instance's next owner redoes the turn.

Recovery: from each worker's injected exit until the activities it had in flight completed.
"""

from __future__ import annotations

import signal
from contextlib import suppress
from datetime import datetime

from duroxide.runtime.faults import FAULT_EXIT_CODE
from tests.chaos.harness import (
    activity_recovery_ms,
    clusters,
    launch,
    p99,
    stage,
    verdict,
    wait_finished,
    wait_for,
)
from tests.chaos.result import ChaosEnv, ScenarioResult

NUMBER = 3
TITLE = "fault points (crash windows)"
#: per point: (small, full) probabilities; turn exits rarer, so that a delayed turn's process
#: usually lives to see its late ack refused. Every point must be hit: at the small size
#: (~360 activities, a few hundred turns) each is expected about 10 times+: a run without a
#: hit is a rare event, not a flake (0.03 raises, ~5 a run, had a ~1 % chance of none).
PROBABILITIES = {
    "activity_exit_before_ack": (0.04, 0.01),
    "turn_exit_after_ack": (0.04, 0.005),
    "turn_raise_after_ack": (0.08, 0.01),
    "turn_delay_past_lock": (0.15, 0.02),
}


def _ms(record: dict[str, object]) -> int:
    stamp = str(record["timestamp"]).replace("Z", "+00:00")
    return int(datetime.fromisoformat(stamp).timestamp() * 1000)


def run(env: ChaosEnv) -> ScenarioResult:
    small = env.size == "small"
    instances = 120 if small else 800
    faults = ",".join(f"{point}:{p[0] if small else p[1]}" for point, p in PROBABILITIES.items())
    result = ScenarioResult(NUMBER, TITLE)
    with stage(env, "s03", {"k": 3, "sleep_s": 0.02}) as st, clusters() as started:
        cluster = st.cluster(
            "--orchestrators", "2", "--workers", "2",
            "--orchestration-concurrency", "8", "--worker-concurrency", "8",
            "--orchestrator-lock-timeout-ms", "1000", "--worker-lock-timeout-ms", "2000",
            "--restart-delay", "0.1", "--restart-delay-max", "0.5", "--drain-timeout", "5",
            faults=faults,
        )  # fmt: skip
        ids = launch(st, started, cluster, "s03", instances)
        wait_finished(st, len(ids), 90 if small else 300)
        verdict(result, st, ids)
        exits = [r for r in cluster.events("child.exited", expected=False)
                 if r.get("exit_code") == FAULT_EXIT_CODE]  # fmt: skip
        worker_exits = [(r["child_pid"], _ms(r)) for r in exits if r["role"] == "worker"]
        turn_exits = [r for r in exits if r["role"] == "orchestrator"]
        raised = [r for r in cluster.events("dispatcher.process_crashed")
                  if "InjectedFault" in str(r.get("exception", ""))]  # fmt: skip
        # a delayed turn may still be asleep when its instance, retaken, has completed
        with suppress(TimeoutError):
            wait_for(lambda: bool(cluster.events("orchestration.lock_lost")), "a refused ack", 10)
        refused = cluster.events("orchestration.lock_lost")
        result.checks["activity exit hit"] = bool(worker_exits)
        result.checks["crashed activities re-ran"] = result.activity_reexecutions >= len(
            worker_exits
        )
        result.checks["turn exit hit"] = bool(turn_exits)
        result.checks["turn raise hit"] = bool(raised)
        result.checks["late turn ack refused"] = bool(refused)
        result.recovery_p99_ms = p99(activity_recovery_ms(st, worker_exits))
        cluster.signal(signal.SIGTERM)
        result.checks["drained, exit 0"] = cluster.wait_exit(30) == 0
        result.detail = (f"exits: {len(worker_exits)} activity, {len(turn_exits)} turn; "
                         f"{len(raised)} raises, {len(refused)} late acks refused")  # fmt: skip
    return result
