"""1,000 orchestrations of 5 activities on 2 orchestrator + 2 worker processes while a random
child is SIGKILLed every second: everything completes, no history event is duplicated, and the
activities that ran twice are bounded by what the killed workers had in flight.

Small lock timeouts (2 s) let killed work be retaken quickly; short restart backoffs keep the
cluster at strength under a kill rate far above any real crash rate.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from support import read_effects, running_cluster

pytestmark = pytest.mark.slow

INSTANCES = 1_000
STEPS = 5
WORKER_CONCURRENCY = 8
ORCHESTRATION_CONCURRENCY = 8
KILL_EVERY_S = 1.0


class Killer:
    """SIGKILLs a random running child of ``cluster`` every ``KILL_EVERY_S``."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.kills: Counter[str] = Counter()
        self._stop = threading.Event()
        self._rng = random.Random(1234)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Killer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(KILL_EVERY_S):
            alive = self.cluster.alive_children()
            if not alive:
                continue
            pid = self._rng.choice(sorted(alive))
            if pid not in self.cluster.group_processes():
                continue  # exited since it was logged: never signal a pid that may be reused
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            self.kills[alive[pid]["role"]] += 1


@pytest.mark.timeout(300)
def test_a_thousand_orchestrations_survive_a_kill_every_second(
    pg_schema: tuple[str, str], client: Any, tmp_path: Path
) -> None:
    with running_cluster(
        *pg_schema, tmp_path, "--orchestrators", "2", "--workers", "2",
        "--orchestration-concurrency", str(ORCHESTRATION_CONCURRENCY),
        "--worker-concurrency", str(WORKER_CONCURRENCY),
        "--orchestrator-lock-timeout-ms", "2000", "--worker-lock-timeout-ms", "2000",
        "--restart-delay", "0.1", "--restart-delay-max", "0.5", "--drain-timeout", "5",
    ) as cluster:  # fmt: skip
        cluster.wait_ready()
        ids = [f"chaos-{i:04d}" for i in range(INSTANCES)]
        started = time.monotonic()
        for instance_id in ids:
            client.start_orchestration(instance_id, "Chain", STEPS)
        with Killer(cluster) as killer:
            cluster.wait_until(
                lambda: client.get_system_metrics().completed_instances == INSTANCES,
                "every orchestration to complete", 200,
            )  # fmt: skip
        took = time.monotonic() - started
        kills = dict(killer.kills)

        infos = client.list_instances()
        assert len(infos) == INSTANCES
        assert {i.status for i in infos} == {"Completed"}
        assert {i.output for i in infos} == {str(sum(range(STEPS)))}

        for instance_id in ids:  # one history per instance, no event twice
            events = client.read_execution_history(instance_id, 1)
            assert [e.event_id for e in events] == list(range(1, len(events) + 1)), instance_id
            kinds = Counter(e.kind for e in events)
            assert kinds["ActivityScheduled"] == kinds["ActivityCompleted"] == STEPS, kinds
            assert kinds["OrchestrationStarted"] == kinds["OrchestrationCompleted"] == 1
            scheduled = [e.event_id for e in events if e.kind == "ActivityScheduled"]
            completed = [e.source_event_id for e in events if e.kind == "ActivityCompleted"]
            assert sorted(completed) == scheduled

        executions = Counter((e.instance_id, e.activity_id) for e in read_effects(cluster.effects))
        assert len(executions) == INSTANCES * STEPS  # every activity ran
        reruns = sum(executions.values()) - INSTANCES * STEPS
        worker_kills = kills.get("worker", 0)
        assert reruns <= worker_kills * WORKER_CONCURRENCY, (reruns, kills)

        # replays are silent: each instance logs its first line at most once (a kill between
        # a turn's commit and its logging can lose one, never repeat it)
        started_lines = Counter(r["instance_id"] for r in cluster.events(
            "orchestration.trace", message="chain started"))  # fmt: skip
        assert max(started_lines.values()) == 1
        lost = kills.get("orchestrator", 0) * ORCHESTRATION_CONCURRENCY
        assert len(started_lines) >= INSTANCES - lost

        exits = cluster.events("child.exited", expected=False)
        restarts = cluster.events("child.restarting")
        assert sum(kills.values()) >= took / KILL_EVERY_S / 2
        assert len(exits) >= sum(kills.values()) - 4  # a kill may land on a child just exiting
        assert all(r["backoff_s"] <= 0.5 for r in restarts)
        print(f"\n{INSTANCES} orchestrations x {STEPS} activities in {took:.1f}s "
              f"({INSTANCES / took:.1f} orchestrations/s) with kills {kills}; "
              f"{reruns} activity re-executions (bound {worker_kills * WORKER_CONCURRENCY}); "
              f"{len(restarts)} restarts")  # fmt: skip

        cluster.signal(signal.SIGTERM)
        assert cluster.wait_exit(30) == 0
