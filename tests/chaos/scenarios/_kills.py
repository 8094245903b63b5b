"""Scenarios 1 and 2: SIGKILL a child of one role repeatedly while the ledger workload runs.

Folds in the former tests/cluster/test_chaos_postgres.py: everything completes with its
expected output; no history event is duplicated (the checker); re-executed activities are
bounded by what the killed workers had in flight (kills x worker concurrency); replays are
silent (each instance logs its first line at most once); restarts use the short backoff; and
the cluster still drains and exits 0 at the end.
"""

from __future__ import annotations

import random
import signal
import threading
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from tests.chaos.harness import (
    Stage,
    activity_recovery_ms,
    children,
    clusters,
    instance_recovery_ms,
    kill_pid,
    launch,
    locked_instances,
    now_ms,
    p99,
    stage,
    verdict,
    wait_finished,
)
from tests.chaos.ledger import STARTED_LINE
from tests.chaos.result import ChaosEnv, ScenarioResult

CONCURRENCY = 8
#: A message is poison after this many fetches. Kills come every ``every_s`` whatever the
#: progress, so on a slow machine one step can be in flight at ten of them (the default limit)
#: and fail as poison, which is right but not what these scenarios test (s10 does).
MAX_ATTEMPTS = 1_000


@dataclass(frozen=True)
class KillPlan:
    role: str  # "worker" or "orchestrator"
    instances: int
    k: int
    sleep_s: float
    every_s: float
    timeout_s: float


@dataclass
class Killer:
    """SIGKILLs a random running child of ``role`` every ``every_s`` (in a thread)."""

    stage: Stage
    cluster: Any
    role: str
    every_s: float
    kills: list[tuple[int, int]] = field(default_factory=list)  # (pid, at_ms)
    in_flight: list[tuple[int, list[str]]] = field(default_factory=list)  # (at_ms, instances)
    _stop: threading.Event = field(default_factory=threading.Event)
    _rng: random.Random = field(default_factory=lambda: random.Random(1234))

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Killer:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            # Only children that run: killing one still starting would stop all progress
            # whenever a start takes longer than the kill interval (a slow or loaded machine).
            alive = children(self.cluster, self.role, ready=True)
            if not alive:
                continue
            pid = self._rng.choice(sorted(alive))
            locked = locked_instances(self.stage) if self.role == "orchestrator" else []
            at_ms = now_ms()
            if kill_pid(self.cluster, pid, signal.SIGKILL):
                self.kills.append((pid, at_ms))
                self.in_flight.append((at_ms, locked))


def run_kills(env: ChaosEnv, number: int, title: str, plan: KillPlan) -> ScenarioResult:
    result = ScenarioResult(number, title)
    workload = {"k": plan.k, "sleep_s": plan.sleep_s}
    with stage(env, f"s{number:02d}", workload) as st, clusters() as started:
        cluster = st.cluster(
            "--orchestrators", "2" if plan.role == "orchestrator" else "1", "--workers", "2",
            "--orchestration-concurrency", str(CONCURRENCY),
            "--worker-concurrency", str(CONCURRENCY),
            "--orchestrator-lock-timeout-ms", "2000", "--worker-lock-timeout-ms", "2000",
            "--restart-delay", "0.1", "--restart-delay-max", "0.5", "--drain-timeout", "5",
            "--max-attempts", str(MAX_ATTEMPTS),
        )  # fmt: skip
        ids = launch(st, started, cluster, f"s{number:02d}", plan.instances)
        with Killer(st, cluster, plan.role, plan.every_s) as killer:
            took = wait_finished(st, len(ids), plan.timeout_s)
        verdict(result, st, ids)
        kills = len(killer.kills)
        if plan.role == "worker":
            recovery = activity_recovery_ms(st, killer.kills)
            bound = kills * CONCURRENCY
            result.checks["re-executions bounded"] = result.activity_reexecutions <= bound
        else:
            recovery = instance_recovery_ms(st, killer.in_flight)
            result.checks["no activity re-executed"] = result.activity_reexecutions == 0
        result.recovery_p99_ms = p99(recovery)
        result.checks["kills landed"] = kills >= max(2, took / plan.every_s / 2)
        exits = cluster.events("child.exited", expected=False)
        result.checks["every kill seen"] = len(exits) >= kills - 1  # one may hit an exiting child
        started_lines = Counter(
            r["instance_id"] for r in cluster.events("orchestration.trace", message=STARTED_LINE)
        )
        result.checks["replays silent"] = bool(started_lines) and max(started_lines.values()) <= 1
        restarts = cluster.events("child.restarting")
        result.checks["short restart backoff"] = bool(restarts) and all(
            r["backoff_s"] <= 0.5 for r in restarts
        )
        cluster.signal(signal.SIGTERM)
        result.checks["drained, exit 0"] = cluster.wait_exit(30) == 0
        result.detail = f"{kills} {plan.role} kills, {len(recovery)} in flight"
    return result
