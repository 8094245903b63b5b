"""5. PostgreSQL restarted under load, fast and immediate (crash recovery), on a private
throwaway server (``tests/chaos/pgserver.py``) so nobody else's database goes down.

Every restart drops every connection of the cluster, the ledger activities and the client:
all reconnect, nothing is lost or duplicated. Recovery: from each restart command until the
next history event is committed.
"""

from __future__ import annotations

import signal
from contextlib import ExitStack

import psycopg

from tests.chaos.harness import (
    Stage,
    clusters,
    launch,
    next_progress_ms,
    now_ms,
    p99,
    stage,
    verdict,
    wait_finished,
    wait_for,
)
from tests.chaos.pgserver import Unavailable, private_server
from tests.chaos.result import ChaosEnv, ScenarioResult

NUMBER = 5
TITLE = "PostgreSQL restarted (fast, immediate)"


def _terminal_count(st: Stage) -> int:
    """The finished instances, retried while the client reconnects after a restart."""
    counted: list[int] = []

    def count() -> bool:
        try:
            counted[:] = [st.terminal_count()]
        except Exception:
            return False  # a dropped pooled connection: a "not yet" within the deadline
        return True

    wait_for(count, "the finished instances to be counted", 60, 0.1)
    return counted[0]


def run(env: ChaosEnv) -> ScenarioResult:
    small = env.size == "small"
    instances, modes = (80, ["fast", "immediate"]) if small else (600, ["fast", "immediate"] * 3)
    result = ScenarioResult(NUMBER, TITLE)
    with ExitStack() as cleanup:  # the server is stopped and deleted last, whatever happens
        try:
            server = cleanup.enter_context(private_server())
        except Unavailable as exc:
            result.checks["private server available"] = False
            result.detail = str(exc)
            return result
        st = cleanup.enter_context(stage(env, "s05", {"k": 3, "sleep_s": 0.1}, url=server.url))
        cl = cleanup.enter_context(clusters())
        cluster = st.cluster(
            "--orchestrators", "1", "--workers", "2",
            "--orchestration-concurrency", "8", "--worker-concurrency", "8",
            "--orchestrator-lock-timeout-ms", "2000", "--worker-lock-timeout-ms", "3000",
            "--restart-delay", "0.1", "--restart-delay-max", "0.5", "--drain-timeout", "5",
        )  # fmt: skip
        ids = launch(st, cl, cluster, "s05", instances)
        unfinished: list[int] = []  # instances not yet finished at each restart
        recovery: list[float] = []
        for i, mode in enumerate(modes):
            target = len(ids) * (i + 1) // (len(modes) + 1)
            wait_finished(st, target, 120)
            unfinished.append(len(ids) - _terminal_count(st))
            at_ms = now_ms()
            server.restart(mode)
            progressed: list[int] = []

            def resumed(at_ms: int = at_ms, found: list[int] = progressed) -> bool:
                try:
                    found[:] = [t for t in [next_progress_ms(st, at_ms)] if t is not None]
                except psycopg.Error:
                    return False  # the server is still coming back
                return bool(found)

            wait_for(resumed, f"progress after the {mode} restart", 60, 0.05)
            recovery.append(float(progressed[0] - at_ms))
        wait_finished(st, len(ids), 120 if small else 300)
        verdict(result, st, ids)
        result.recovery_p99_ms = p99(recovery)
        result.checks["restarted under load"] = all(n > 0 for n in unfinished)
        cluster.signal(signal.SIGTERM)
        result.checks["drained, exit 0"] = cluster.wait_exit(30) == 0
        result.detail = f"restarts ({', '.join(modes)}) with {unfinished} unfinished"
    return result
