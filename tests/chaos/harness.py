"""What the scenarios share: a schema with the ledger workload, the real cluster on it, waits
with deadlines, the final verdict (invariant checker + ledger counts) and recovery times."""

from __future__ import annotations

import importlib.util
import math
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg

from tests.chaos.checker import check
from tests.chaos.ledger import Workload
from tests.chaos.result import ChaosEnv, ScenarioResult
from tests.chaos.sqlfile import statement
from tests.pg import drop_schema

APP = "tests.chaos.ledger:setup"
_SUPPORT = Path(__file__).resolve().parents[1] / "cluster" / "support.py"


def _support() -> ModuleType:
    """tests/cluster/support.py (``ClusterProcess``), loaded by path: tests/cluster is not a
    package."""
    module = importlib.util.module_from_spec(
        spec := importlib.util.spec_from_file_location("chaos_cluster_support", _SUPPORT)  # type: ignore[arg-type]
    )
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(module)
    return module


support = _support()
ClusterProcess = support.ClusterProcess


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Stage:
    """A scenario's schema, workload and client."""

    env: ChaosEnv
    schema: str
    workload: Workload
    client: Any

    @property
    def url(self) -> str:
        return self.workload.url

    def cluster(self, *args: str, name: str = "cluster", faults: str = "",
                extra_env: dict[str, str] | None = None) -> Any:  # fmt: skip
        """Start ``python -m cluster`` on this schema running the ledger app (not waited on)."""
        environ = self.workload.environment() | (extra_env or {})
        if faults:
            environ["DUROXIDE_FAULTS"] = faults
        workdir = self.env.workdir / self.schema / name
        workdir.mkdir(parents=True, exist_ok=True)
        return ClusterProcess(self.workload.url, self.schema, workdir, "--app", APP, *args,
                              env=environ, name=name)  # fmt: skip

    def terminal_count(self) -> int:
        metrics = self.client.get_system_metrics()
        return int(metrics.completed_instances) + int(metrics.failed_instances)


@contextmanager
def stage(env: ChaosEnv, name: str, workload: dict[str, Any] | None = None,
          url: str | None = None) -> Iterator[Stage]:  # fmt: skip
    """A fresh schema (duroxide tables + ledger tables) and a client on it; dropped after."""
    from duroxide import Client
    from duroxide.providers import open_provider

    url = url or env.url
    schema = env.schema(f"{name}_{os.getpid()}")
    drop_schema(url, schema)
    provider = None
    try:  # opening the provider creates the schema: drop it even if that fails half-way
        provider = open_provider(url, schema)
        work = Workload(url, schema, **(workload or {}))
        work.create_tables()
        yield Stage(env, schema, work, Client(provider))
    finally:
        if provider is not None:
            with suppress(Exception):
                provider.close()
        with suppress(psycopg.Error):
            drop_schema(url, schema)


@contextmanager
def clusters() -> Iterator[list[Any]]:
    """Collects ``ClusterProcess``es and kills every one (and its process group) at the end."""
    started: list[Any] = []
    try:
        yield started
    finally:
        for cluster in started:  # one that fails to die must not leave the others running
            with suppress(Exception):
                cluster.kill_tree()


def launch(stage_: Stage, started: list[Any], cluster: Any, prefix: str, n: int) -> list[str]:
    """Have ``cluster`` killed at the end (``started`` from ``clusters``), wait until it is
    ready, then start ``n`` ledger instances ``<prefix>-00000``…; their ids."""
    started.append(cluster)
    cluster.wait_ready()
    ids = [f"{prefix}-{i:05d}" for i in range(n)]
    stage_.workload.start(stage_.client, ids)
    return ids


def wait_for(check: Callable[[], bool], what: str, timeout_s: float,
             interval_s: float = 0.05) -> float:  # fmt: skip
    """Poll ``check`` until it holds; raise ``TimeoutError`` naming ``what`` after the deadline.
    Returns the seconds waited."""
    started = time.monotonic()
    deadline = started + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)
    return time.monotonic() - started


def wait_finished(stage_: Stage, n: int, timeout_s: float) -> float:
    """Wait until ``n`` instances are terminal (a database error while polling is a "not yet":
    some scenarios restart the server under it)."""

    def finished() -> bool:
        try:
            return stage_.terminal_count() >= n
        except Exception:
            return False

    return wait_for(finished, f"{n} instances to finish", timeout_s, 0.2)


def next_progress_ms(stage_: Stage, since_ms: int) -> int | None:
    """When the first history event (any instance) at or after ``since_ms`` was stamped."""
    with psycopg.connect(stage_.url, autocommit=True) as conn:
        row = conn.execute(statement("ledger.sql", "first_event_after", stage_.schema),
                           {"since_ms": since_ms}).fetchone()  # fmt: skip
    return None if row is None or row[0] is None else int(row[0])


#: How long the checker waits for the queue rows of finished instances to drain.
SETTLE_S = 10.0


def verdict(result: ScenarioResult, stage_: Stage, ids: Sequence[str]) -> ScenarioResult:
    """Run the invariant checker and count the ledger: fill ``result``."""
    report = check(stage_.url, stage_.schema, stage_.workload.expected(ids), settle_s=SETTLE_S)
    report.apply(result)
    result.started = len(ids)
    counts = stage_.workload.counts()
    result.activity_reexecutions = counts.reexecutions
    result.duplicate_effects = counts.duplicate_effects
    result.checks["effects match history"] = counts.mismatched == 0
    result.checks["every activity ran"] = counts.activities == len(ids) * stage_.workload.k
    return result


def p99(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def activity_recovery_ms(stage_: Stage, kills: Sequence[tuple[int, int]]) -> list[float]:
    """For each ``(pid, killed_at_ms)``: the activities that process had in flight (an attempt
    started before the kill, completed in history only after it), and the time from the kill
    until their completion was committed."""
    attempts = stage_.workload.attempts()
    times = []
    for pid, at_ms in kills:
        for attempt_pid, _worker, started_ms, completed_ms, *_step in attempts:
            if attempt_pid == pid and started_ms <= at_ms and (completed_ms or 0) > at_ms:
                times.append(float(completed_ms - at_ms))  # type: ignore[operator]
    return times


def locked_instances(stage_: Stage) -> list[str]:
    """Instances whose turn holds a live lock now (snapshot taken just before a fault)."""
    with psycopg.connect(stage_.url, autocommit=True) as conn:
        rows = conn.execute(statement("ledger.sql", "locked_instances", stage_.schema))
        return [row[0] for row in rows]


def instance_recovery_ms(stage_: Stage, faults: Sequence[tuple[int, list[str]]]) -> list[float]:
    """For each ``(fault_at_ms, instances in flight)``: the time from the fault until each
    instance next committed an event (its first history event stamped after the fault)."""
    times = []
    with psycopg.connect(stage_.url, autocommit=True) as conn:
        query = statement("ledger.sql", "completions_after", stage_.schema)
        for at_ms, ids in faults:
            if ids:
                rows = conn.execute(query, {"ids": ids, "since_ms": at_ms})
                times += [float(first - at_ms) for _iid, first in rows]
    return times


def kill_pid(cluster: Any, pid: int, signum: int = signal.SIGKILL) -> bool:
    """Signal a child of ``cluster`` if it is still one of its live processes."""
    if pid not in cluster.group_processes():
        return False  # exited since it was logged: never signal a pid that may be reused
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True


def children(cluster: Any, role: str, *, ready: bool = False) -> dict[int, dict[str, Any]]:
    """Live children of one role (``orchestrator``, ``worker``); with ``ready``, only those
    whose runtime has started (a child still importing or connecting does no work yet)."""
    alive = cluster.ready_children() if ready else cluster.alive_children()
    return {pid: r for pid, r in alive.items() if r.get("role") == role}
