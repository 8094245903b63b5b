"""6. Connections killed with ``pg_terminate_backend`` in a loop — only this scenario's own:
the cluster's and the ledger's connections carry their own ``application_name`` (in the URL),
and only sessions with that name are ended; the client's and everyone else's are untouched.

Recovery: from each round of terminations until the next history event is committed.
"""

from __future__ import annotations

import os
import signal
import threading

import psycopg

from tests.chaos.harness import (
    clusters,
    next_progress_ms,
    now_ms,
    p99,
    stage,
    verdict,
    wait_finished,
)
from tests.chaos.result import ChaosEnv, ScenarioResult
from tests.chaos.sqlfile import statement
from tests.pg import with_application_name

NUMBER = 6
TITLE = "backends terminated in a loop"


def run(env: ChaosEnv) -> ScenarioResult:
    small = env.size == "small"
    instances, every_s = (60, 0.3) if small else (800, 0.5)
    app = f"chaos_s06_{os.getpid()}"
    result = ScenarioResult(NUMBER, TITLE)
    rounds: list[tuple[int, int]] = []  # (at_ms, sessions ended)
    stop = threading.Event()
    with stage(env, "s06", {"k": 3, "sleep_s": 0.05, "application_name": app}) as st, \
            clusters() as started:  # fmt: skip

        def terminate() -> None:
            query = statement("ledger.sql", "terminate_backends", st.schema)
            with psycopg.connect(st.url, autocommit=True) as conn:
                while not stop.wait(every_s):
                    at_ms = now_ms()
                    row = conn.execute(query, {"application_name": app}).fetchone()
                    if row and row[0]:
                        rounds.append((at_ms, int(row[0])))

        cluster = st.cluster(
            "--orchestrators", "1", "--workers", "2",
            "--orchestration-concurrency", "8", "--worker-concurrency", "8",
            "--orchestrator-lock-timeout-ms", "2000", "--worker-lock-timeout-ms", "3000",
            "--restart-delay", "0.1", "--restart-delay-max", "0.5", "--drain-timeout", "5",
            "--database-url", with_application_name(st.url, app),
        )  # fmt: skip
        started.append(cluster)
        cluster.wait_ready()
        ids = [f"s06-{i:05d}" for i in range(instances)]
        killer = threading.Thread(target=terminate, daemon=True)
        killer.start()
        try:
            st.workload.start(st.client, ids)
            wait_finished(st, len(ids), 120 if small else 300)
        finally:
            stop.set()
            killer.join(10)
        verdict(result, st, ids)
        recovery = []
        for at_ms, _ended in rounds:
            progressed = next_progress_ms(st, at_ms)
            if progressed is not None:
                recovery.append(float(progressed - at_ms))
        result.recovery_p99_ms = p99(recovery)
        result.checks["sessions terminated"] = len(rounds) >= 3
        cluster.signal(signal.SIGTERM)
        result.checks["drained, exit 0"] = cluster.wait_exit(30) == 0
        result.detail = (f"{len(rounds)} rounds, {sum(n for _t, n in rounds)} sessions "
                         "ended")  # fmt: skip
    return result
