"""Start → completion latency between two processes on PostgreSQL.

    python bench/pg_latency.py [--url URL] [--n 200] [--poll-ms 1000] [--warmup 10]

A runtime runs in a child process (this script with ``--serve``) with a dispatcher poll
interval of ``--poll-ms``; the main process is the client. Each sample starts one instance of a
one-activity orchestration and waits for its completion, one after the other, so the figure is
the latency of one lone request: client enqueue → NOTIFY → runtime turn → activity → turn →
NOTIFY → client. With a long poll interval a fast result can only come from the notifications.

The schema is fresh (``dxbench_<random>``) and dropped at the end; the child is terminated in
every case (and exits by itself if this process dies: it watches its stdin).
URL: ``--url``, else ``DUROXIDE_TEST_PG_URL``, else ``DATABASE_URL``.
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import psycopg
from psycopg import sql

from cluster.signals import on_signals
from duroxide import Client, Runtime, RuntimeOptions
from duroxide.providers.postgres import PostgresProvider

ORCHESTRATION = "Echo"
ACTIVITY = "Effect"
READY = "pg_latency: ready"


def serve(url: str, schema: str, poll_ms: int) -> int:
    """The child: run a runtime until SIGTERM or until stdin closes (the parent is gone)."""
    stop = threading.Event()
    on_signals([signal.SIGTERM], lambda _signum: stop.set())

    def watch_parent() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_parent, daemon=True).start()

    def effect(ctx: Any, n: int) -> str:
        return f"done-{n}"

    def echo(ctx: Any, n: int) -> Any:
        return (yield ctx.schedule_activity(ACTIVITY, n))

    provider = PostgresProvider.connect_with_schema(url, schema)
    runtime = Runtime(
        provider, RuntimeOptions(dispatcher_poll_interval_ms=poll_ms, log_level="warning")
    )
    runtime.register_activity(ACTIVITY, effect)
    runtime.register_orchestration(ORCHESTRATION, echo)
    runtime.start()
    print(READY, flush=True)
    while not stop.wait(0.1):
        pass
    runtime.shutdown(5000)
    provider.close()
    return 0


def wait_ready(child: subprocess.Popen[str], timeout_s: float) -> None:
    assert child.stdout is not None
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        selector.register(child.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"the runtime process was not ready within {timeout_s}s")
            if selector.select(remaining):
                line = child.stdout.readline()
                if not line:
                    raise RuntimeError(f"the runtime process exited ({child.wait()})")
                if line.startswith(READY):
                    return


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def measure(url: str, n: int, poll_ms: int, warmup: int) -> list[float]:
    schema = f"dxbench_{uuid.uuid4().hex[:12]}"
    provider = PostgresProvider.connect_with_schema(url, schema)  # creates the schema
    child: subprocess.Popen[str] | None = None
    stderr: list[str] = []
    ok = False
    try:
        child = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--serve", schema, "--url", url,
             "--poll-ms", str(poll_ms)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        reader = threading.Thread(target=lambda: stderr.extend(child.stderr or ()), daemon=True)
        reader.start()
        wait_ready(child, 30.0)
        client = Client(provider)
        latencies = []
        for i in range(warmup + n):
            instance_id = f"lat-{i}"
            started = time.perf_counter()
            client.start_orchestration(instance_id, ORCHESTRATION, i)
            result = client.wait_for_orchestration(instance_id, 30_000)
            elapsed_ms = (time.perf_counter() - started) * 1000
            if result.status != "Completed" or result.output != f"done-{i}":
                raise RuntimeError(f"unexpected result {result}")
            if i >= warmup:
                latencies.append(elapsed_ms)
        ok = True
        return latencies
    finally:
        if child is not None:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(15)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait(10)
            for stream in (child.stdin, child.stdout, child.stderr):
                if stream is not None:
                    stream.close()
            if not ok or child.returncode != 0:
                print(f"runtime process exited {child.returncode}; its stderr:", file=sys.stderr)
                print("".join(stderr), file=sys.stderr)
        provider.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--url",
        default=os.environ.get("DUROXIDE_TEST_PG_URL") or os.environ.get("DATABASE_URL"),
        help="PostgreSQL URL (default: $DUROXIDE_TEST_PG_URL, then $DATABASE_URL)",
    )
    parser.add_argument("--n", type=int, default=200, help="measured round trips (default 200)")
    parser.add_argument(
        "--poll-ms", type=int, default=1000, help="the runtime's poll interval (default 1000)"
    )
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured round trips first")
    parser.add_argument("--serve", metavar="SCHEMA", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.url:
        parser.error("no database: pass --url or set DUROXIDE_TEST_PG_URL")
    if args.serve:
        return serve(args.url, args.serve, args.poll_ms)
    if args.n < 1:
        parser.error("--n must be at least 1")

    latencies = measure(args.url, args.n, args.poll_ms, args.warmup)
    print(
        f"start -> completion, runtime in another process, poll interval {args.poll_ms} ms, "
        f"{len(latencies)} sequential round trips (after {args.warmup} warm-up):"
    )
    print(
        f"  p50 {percentile(latencies, 50):.1f} ms   p90 {percentile(latencies, 90):.1f} ms   "
        f"p99 {percentile(latencies, 99):.1f} ms   (min {min(latencies):.1f}, "
        f"mean {statistics.fmean(latencies):.1f}, max {max(latencies):.1f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
