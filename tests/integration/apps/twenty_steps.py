"""A worker process for the crash-recovery tests: runs a 20-step workflow on a SQLite file.

    python twenty_steps.py DB EFFECTS --instance ID [--start] [--step-delay-ms N]
                           [--block-at STEP] [--deadline-s S]

Every activity ``step(n)`` waits ``--step-delay-ms``, then appends ``step-<n> <pid>`` to the
EFFECTS file (flushed and fsynced) and returns ``"done-<n>"``, so the test can count how often
each step's side effect ran and in which process. With ``--block-at STEP`` that step's activity
blocks after writing its line (until the process is killed or its deadline passes), so a kill
lands inside it. ``--start`` starts the instance (the first process only); every process runs
the runtime until the instance finishes, then exits 0 (1 if it failed). A watchdog ends the
process with exit code 3 after ``--deadline-s`` so it can never outlive a crashed test run.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

from duroxide import Client, Runtime, RuntimeOptions, SqliteProvider

ORCHESTRATION = "TwentySteps"
ACTIVITY = "Step"
STEPS = 20


def twenty_steps(ctx, steps):
    results = []
    for n in range(1, steps + 1):
        results.append((yield ctx.schedule_activity(ACTIVITY, n)))
    return results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("effects")
    parser.add_argument("--instance", required=True)
    parser.add_argument("--start", action="store_true")
    parser.add_argument("--step-delay-ms", type=int, default=100)
    parser.add_argument("--block-at", type=int, default=None)
    parser.add_argument("--deadline-s", type=float, default=90.0)
    args = parser.parse_args()

    def watchdog() -> None:
        time.sleep(args.deadline_s)
        print(f"twenty_steps: deadline of {args.deadline_s}s passed; exiting", flush=True)
        os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()
    never = threading.Event()

    def step(ctx, n):
        time.sleep(args.step_delay_ms / 1000)
        with open(args.effects, "a", encoding="utf-8") as f:
            f.write(f"step-{n} {os.getpid()}\n")
            f.flush()
            os.fsync(f.fileno())
        if n == args.block_at:
            never.wait()  # the test kills this process while the activity is in here
        return f"done-{n}"

    provider = SqliteProvider.open(f"sqlite:{args.db}")
    runtime = Runtime(
        provider,
        RuntimeOptions(
            dispatcher_poll_interval_ms=20,
            orchestrator_lock_timeout_ms=1000,
            worker_lock_timeout_ms=1000,
            log_level="warning",
        ),
    )
    runtime.register_activity(ACTIVITY, step)
    runtime.register_orchestration(ORCHESTRATION, twenty_steps)
    client = Client(provider)
    if args.start:
        client.start_orchestration(args.instance, ORCHESTRATION, STEPS)
    runtime.start()
    print(f"twenty_steps: running pid={os.getpid()}", flush=True)
    result = client.wait_for_orchestration(args.instance, int(args.deadline_s * 1000))
    runtime.shutdown(2000)
    provider.close()
    print(f"twenty_steps: {result.status} {result.output!r} {result.error!r}", flush=True)
    return 0 if result.status == "Completed" else 1


if __name__ == "__main__":
    sys.exit(main())
