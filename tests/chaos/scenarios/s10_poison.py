"""Scenario 10: poison — work that keeps failing is failed after exactly ``max_attempts``.

Two runtime processes (tests/chaos/scenarios/_poison_child.py), restarted by this scenario
whenever they exit: ``orch`` runs turns one at a time, ``killer`` runs the activities tagged
``killer``; the test process runs the untagged activities. Poison, with ``max_attempts`` = 3:

* ``Crash`` orchestrations exit their process (``os._exit``) in orchestration code;
* ``KillerParent`` orchestrations call an activity that exits its worker process;
* ``Waiter`` instances get a queued message whose payload cannot be decoded.

Each must run (or be fetched) exactly ``max_attempts`` times and then fail with the runtime's
poison error — category ``poison`` for the instance's own message, an activity failure whose
message starts with ``poison:`` for the activity — while ``Healthy`` instances started
alongside complete. ``recovery_p99`` is the time from start to the poison failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from duroxide import Client, Runtime
from tests.chaos.checker import EXPECT_FAILED
from tests.chaos.harness import p99
from tests.chaos.result import ChaosEnv, ScenarioResult
from tests.chaos.scenarios import _poison_child
from tests.chaos.scenarios._common_b import (
    apply_checks,
    query,
    running,
    stored_state,
    tenant,
    wait_all,
    wait_until,
)
from tests.pg import connect

NUMBER = 10
TITLE = "poison"
MAX_ATTEMPTS = 3
TERMINAL = ("Completed", "Failed")
ROOT = Path(__file__).resolve().parents[3]


@dataclass
class _Supervisor:
    """Keeps one child per role alive (restarting at once) until stopped; counts exits."""

    args: list[str]
    workdir: Path
    exits: Counter[int] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    thread: threading.Thread | None = None

    def run(self, roles: list[str]) -> None:
        self.thread = threading.Thread(target=self._loop, args=(roles,), daemon=True)
        self.thread.start()

    def _spawn(self, role: str) -> subprocess.Popen[bytes]:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                   os.environ.get("PYTHONPATH")])))  # fmt: skip
        with (self.workdir / f"s10-{role}.log").open("ab") as out:  # the child keeps its copy
            return subprocess.Popen(
                [sys.executable, "-m", "tests.chaos.scenarios._poison_child", *self.args[:2],
                 role, *self.args[2:]],
                cwd=ROOT, stdout=out, stderr=out, env=env,
            )  # fmt: skip

    def _loop(self, roles: list[str]) -> None:
        for role in roles:
            if self.stop.is_set():
                return
            self.procs[role] = self._spawn(role)
        while not self.stop.is_set():
            for role, proc in list(self.procs.items()):
                code = proc.poll()
                if code is not None and not self.stop.is_set():
                    self.exits[code] += 1
                    self.procs[role] = self._spawn(role)
            self.stop.wait(0.02)

    def shutdown(self) -> None:
        """Stop restarting (the loop is joined first, so it spawns nothing after the kills),
        then kill and reap every child."""
        self.stop.set()
        if self.thread is not None:
            self.thread.join(30)
        for proc in self.procs.values():
            proc.kill()
        for proc in self.procs.values():
            proc.wait(30)


def _error(raw: str | None) -> dict[str, Any]:
    return json.loads(raw) if raw else {}


def run(env: ChaosEnv) -> ScenarioResult:
    per_kind = 2 if env.size == "small" else 5
    healthy = 20 if env.size == "small" else 200
    result = ScenarioResult(NUMBER, TITLE)  # a killed activity runs again: at-least-once
    schema = env.schema("s10_poison")
    log = env.workdir / "s10-deaths.log"
    log.unlink(missing_ok=True)
    crash = [f"crash-{n}" for n in range(per_kind)]
    killer = [f"killer-{n}" for n in range(per_kind)]
    waiter = [f"waiter-{n}" for n in range(per_kind)]
    good = [f"healthy-{n}" for n in range(healthy)]
    with tenant(env.url, schema) as provider:
        client = Client(provider)
        local = Runtime(provider, _poison_child.options("worker", MAX_ATTEMPTS))
        work_runs: Counter[str] = Counter()
        _poison_child.register(local, str(log), work_runs)
        supervisor = _Supervisor([env.url, schema, str(log), str(MAX_ATTEMPTS)], env.workdir)
        began = time.monotonic()
        with running(local):
            try:
                supervisor.run(["orch", "killer"])
                for instance_id in waiter:
                    client.start_orchestration(instance_id, "Waiter", None)
                waiting = wait_until(
                    lambda: all(client.get_status(i).status == "Running" for i in waiter), 30
                )
                with connect(env.url) as conn:
                    for instance_id in waiter:
                        conn.execute(query("inject_undecodable", schema),
                                     (instance_id, '{"name": "never", "da'))  # fmt: skip
                for n, instance_id in enumerate(crash):
                    client.start_orchestration(instance_id, "Crash", n)
                for n, instance_id in enumerate(killer):
                    client.start_orchestration(instance_id, "KillerParent", n)
                for n, instance_id in enumerate(good):
                    client.start_orchestration(instance_id, "Healthy", n)
                result.started = 3 * per_kind + healthy
                poisoned = [*crash, *killer, *waiter]
                finished_at: dict[str, float] = {}
                healthy_at: dict[str, float] = {}
                good_set = set(good)

                def all_finished() -> bool:
                    for i in [*poisoned, *good]:
                        seen = healthy_at if i in good_set else finished_at
                        if i not in seen and client.get_status(i).status in TERMINAL:
                            seen[i] = time.monotonic() - began
                    return len(finished_at) == len(poisoned)

                wait_until(all_finished, 90, 0.1)
                last_poison = max(finished_at.values(), default=0.0)
                flowed = sum(1 for t in healthy_at.values() if t < last_poison)
                statuses = wait_all(client, good, 30)
            finally:
                supervisor.shutdown()
        expected: dict[str, Any] = dict.fromkeys(poisoned, EXPECT_FAILED)
        expected |= {i: 2 * n for n, i in enumerate(good)}
        apply_checks(result, env.url, [(schema, expected)])
        errors = {i: _error(e) for i, e in stored_state(env.url, schema).errors.items()}
    deaths = Counter(log.read_text().splitlines() if log.exists() else [])
    poison_msg = f"(max_attempts={MAX_ATTEMPTS})"
    fetched = f"fetched {MAX_ATTEMPTS + 1} times"

    def poison(i: str, category: str) -> bool:
        e = errors.get(i, {})
        message = str(e.get("message", ""))
        return (e.get("category") == category and message.startswith("poison:")
                and poison_msg in message and fetched in message)  # fmt: skip

    result.activity_reexecutions = sum(
        deaths[f"kill {i}"] - 1 for i in killer if deaths[f"kill {i}"]
    )
    # Work (healthy) runs only in this process, which nothing kills: a second run is a
    # duplicate effect at-least-once does not excuse.
    result.duplicate_effects = sum(n - 1 for n in work_runs.values())
    result.recovery_p99_ms = None if (v := p99(list(finished_at.values()))) is None else v * 1000
    result.checks |= {
        "waiters ran before injection": waiting,
        "crashing turn ran exactly max_attempts": all(
            deaths[f"crash {i}"] == MAX_ATTEMPTS for i in crash),
        "killing activity ran exactly max_attempts": all(
            deaths[f"kill {i}"] == MAX_ATTEMPTS for i in killer),
        "crash poisoned": all(poison(i, "poison") for i in crash),
        "undecodable poisoned": all(poison(i, "poison") for i in waiter),
        "killer activity poisoned": all(poison(i, "application") for i in killer),
        "healthy flowed": all(s == "Completed" for s in statuses.values()),
        "healthy completed while poison pending": flowed > 0,
        "processes died as injected": supervisor.exits[_poison_child.FAULT_EXIT_CODE]
        == 2 * per_kind * MAX_ATTEMPTS,
    }  # fmt: skip
    sample = errors.get(crash[0], {}).get("message", "")
    result.detail = (
        f"exits {dict(supervisor.exits)}; {flowed}/{healthy} healthy done before the last "
        f"poison failure at {last_poison:.1f} s; e.g. {str(sample)[:100]!r}"
    ) + (
        f" {result.detail}" if result.detail else "")  # fmt: skip
    return result
