"""A runtime process for scenario 10 (``python -m tests.chaos.scenarios._poison_child``).

``URL SCHEMA ROLE LOG MAX_ATTEMPTS``: ROLE ``orch`` runs turns only (one at a time, so a crash
takes down no other instance's turn); ``killer`` runs only activities tagged ``killer``. The
``Crash`` orchestration and the ``Kill`` activity append a line to LOG and exit the process
at once (``os._exit``). Runs until killed, or until its parent (the scenario) is gone.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from typing import Any

from duroxide import PostgresProvider, Runtime, RuntimeOptions, TagFilter
from duroxide.runtime.faults import FAULT_EXIT_CODE

LOCK_MS = 600


def _die(log: str, what: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, f"{what}\n".encode())
    os.fsync(fd)
    os._exit(FAULT_EXIT_CODE)


def register(runtime: Runtime, log: str, work_runs: Counter[str] | None = None) -> None:
    """What every process of scenario 10 knows (the test process registers it too, counting
    the runs of ``Work`` per activity in ``work_runs``)."""
    lock = threading.Lock()

    def crash(ctx: Any, _input: Any) -> Any:
        _die(log, f"crash {ctx.instance_id}")
        yield ctx.schedule_timer(1)  # never reached: a generator all the same

    def kill(ctx: Any, _input: Any) -> Any:
        _die(log, f"kill {ctx.instance_id}")

    def killer_parent(ctx: Any, n: int) -> Any:
        value = yield ctx.schedule_activity("Kill", n).with_tag("killer")
        return value

    def healthy(ctx: Any, n: int) -> Any:
        value = yield ctx.schedule_activity("Work", n)
        return value * 2

    def waiter(ctx: Any, _input: Any) -> Any:
        value = yield ctx.wait_for_event("never")
        return value

    def work(ctx: Any, n: int) -> int:
        if work_runs is not None:
            with lock:
                work_runs[f"{ctx.instance_id}|{ctx.activity_id}"] += 1
        return n

    runtime.register_orchestration("Crash", crash)
    runtime.register_orchestration("KillerParent", killer_parent)
    runtime.register_orchestration("Healthy", healthy)
    runtime.register_orchestration("Waiter", waiter)
    runtime.register_activity("Kill", kill)
    runtime.register_activity("Work", work)


def options(role: str, max_attempts: int) -> RuntimeOptions:
    common: dict[str, Any] = {
        "dispatcher_poll_interval_ms": 20, "orchestrator_lock_timeout_ms": LOCK_MS,
        "worker_lock_timeout_ms": LOCK_MS, "max_attempts": max_attempts, "log_level": "error",
    }  # fmt: skip
    if role == "orch":
        return RuntimeOptions(orchestration_concurrency=1, worker_concurrency=0, **common)
    if role == "killer":
        return RuntimeOptions(orchestration_concurrency=0, worker_concurrency=1,
                              worker_tag_filter=TagFilter.tags(["killer"]), **common)  # fmt: skip
    return RuntimeOptions(orchestration_concurrency=0, worker_concurrency=4, **common)


def main(argv: list[str]) -> None:
    url, schema, role, log, max_attempts = argv
    provider = PostgresProvider.connect_with_schema(url, schema, max_size=3)
    runtime = Runtime(provider, options(role, int(max_attempts)))
    register(runtime, log)
    runtime.start()
    parent = os.getppid()
    while os.getppid() == parent:  # orphaned (the scenario was killed): exit, leak nothing
        time.sleep(0.5)
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
