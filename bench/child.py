"""One benchmark workload in one process; driven by ``bench/run.py`` over stdin/stdout.

Standalone on purpose: it imports only the standard library and the public ``duroxide`` API, so
the same file runs under another interpreter's ``duroxide`` (``--compare``, e.g. the reference
SDK) unchanged.

Protocol: the child sets everything up, prints ``READY``, waits for ``GO`` on stdin, runs the
workload, prints ``RESULT <json>``, waits for ``EXIT``, then tears down. The parent measures
database counters between GO and RESULT, so setup and teardown are not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import threading
import time
from typing import Any

import duroxide
from duroxide import Client, Runtime, SqliteProvider

try:  # the reference SDK names it PyRuntimeOptions too
    from duroxide import PyRuntimeOptions as Options
except ImportError:  # pragma: no cover
    from duroxide import RuntimeOptions as Options


# --- handlers shared by every workload (also imported by bench/cluster_app.py) -------------------


def noop(ctx: Any, x: Any) -> Any:
    return x


def hello(ctx: Any, x: Any) -> Any:
    return (yield ctx.schedule_activity("Noop", x))


def chain10(ctx: Any, x: Any) -> Any:
    for i in range(10):
        x = yield ctx.schedule_activity("Noop", i)
    return x


def fanout(ctx: Any, n: int) -> Any:
    results = yield ctx.all([ctx.schedule_activity("Noop", i) for i in range(n)])
    return len(results)


def timer(ctx: Any, delay_ms: int) -> Any:
    before = yield ctx.utc_now()
    yield ctx.schedule_timer(delay_ms)
    after = yield ctx.utc_now()
    return after - before - delay_ms  # lateness in ms, from the recorded turn times


def pinger(ctx: Any, _: Any) -> Any:
    """Grows its history on request; every ping is one turn that updates the custom status."""
    count = 0
    while True:
        message = yield ctx.wait_for_event("ping")
        if message == "stop":
            return count
        if isinstance(message, int) and message > 0:
            yield ctx.all([ctx.schedule_activity("Noop", i) for i in range(message)])
        count += 1
        ctx.set_custom_status(str(count))


HANDLERS = {"Hello": hello, "Chain10": chain10, "Fanout": fanout, "Timer": timer,
            "Pinger": pinger}  # fmt: skip


def setup(runtime: Any) -> None:
    runtime.register_activity("Noop", noop)
    for name, fn in HANDLERS.items():
        runtime.register_orchestration(name, fn)


# --- measuring ----------------------------------------------------------------------------------


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _wait_all(client: Any, ids: list[str], timeout_s: float) -> None:
    """Wait until every instance finished: poll the newest first, then sweep the rest."""
    deadline = time.monotonic() + timeout_s
    pending = list(reversed(ids))
    while pending:
        remaining_ms = int(max(1, deadline - time.monotonic()) * 1000)
        result = client.wait_for_orchestration(pending[-1], remaining_ms)
        if result.status != "Completed":
            raise RuntimeError(f"{pending[-1]} ended {result.status}: {result.error}")
        pending.pop()
        while pending and client.get_status(pending[-1]).status == "Completed":
            pending.pop()


def _start_all(client: Any, name: str, ids: list[str], payload: Any, threads: int) -> None:
    chunks = [ids[i::threads] for i in range(threads)]
    workers = [threading.Thread(target=lambda c=c: [client.start_orchestration(i, name, payload)
                                                    for i in c]) for c in chunks]  # fmt: skip
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def run_workload(client: Any, workload: str, n: int, prefix: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    if workload in ("hello", "chain10"):
        name = "Hello" if workload == "hello" else "Chain10"
        ids = [f"{prefix}-{i}" for i in range(n)]
        _start_all(client, name, ids, 1, threads=4)
        started = time.perf_counter()
        _wait_all(client, ids, 600)
        elapsed = time.perf_counter() - t0
        out["orchestrations_per_s"] = n / elapsed
        out["start_per_s"] = n / (started - t0)
        if workload == "chain10":
            out["activities_per_s"] = 10 * n / elapsed
    elif workload == "fanout":
        client.start_orchestration(prefix, "Fanout", n)
        result = client.wait_for_orchestration(prefix, 600_000)
        assert result.output == n, result.output
        elapsed = time.perf_counter() - t0
        out["activities_per_s"] = n / elapsed
    elif workload == "timer":
        ids = [f"{prefix}-{i}" for i in range(n)]
        _start_all(client, "Timer", ids, 100, threads=4)
        _wait_all(client, ids, 600)
        elapsed = time.perf_counter() - t0
        lateness = [float(client.get_status(i).output) for i in ids]
        out["lateness_p50_ms"] = _percentile(lateness, 0.5)
        out["lateness_p99_ms"] = _percentile(lateness, 0.99)
    elif workload == "latency":
        samples = []
        for i in range(n):
            s = time.perf_counter()
            client.start_orchestration(f"{prefix}-{i}", "Hello", i)
            result = client.wait_for_orchestration(f"{prefix}-{i}", 60_000)
            samples.append((time.perf_counter() - s) * 1000)
            assert result.status == "Completed"
        elapsed = time.perf_counter() - t0
        out["latency_p50_ms"] = _percentile(samples, 0.5)
        out["latency_p99_ms"] = _percentile(samples, 0.99)
    elif workload == "history":
        out.update(_history(client, prefix, n))
        elapsed = time.perf_counter() - t0
    else:
        raise SystemExit(f"unknown workload {workload!r}")
    out["elapsed_s"] = elapsed
    return out


def _history(client: Any, prefix: str, n: int) -> dict[str, Any]:
    """Turn time at ~100 events vs ~10,000 events: one ping = one turn + its status update."""
    instance = f"{prefix}-pinger"
    client.start_orchestration(instance, "Pinger", None)
    version = [0]

    def ping(grow: int = 0) -> float:
        s = time.perf_counter()
        client.raise_event(instance, "ping", grow)
        change = client.wait_for_status_change(instance, version[0], 1, 600_000)
        version[0] = change.custom_status_version
        return (time.perf_counter() - s) * 1000

    for _ in range(30):  # ~100 events: each ping adds subscription, event and status (3)
        ping()
    small = [ping() for _ in range(n)]
    while _event_count(client, instance) < 10_000:
        ping(2_000)  # a fan-out of 2,000 activities adds ~4,000 events
    large = [ping() for _ in range(n)]
    events = _event_count(client, instance)
    client.raise_event(instance, "ping", "stop")
    client.wait_for_orchestration(instance, 60_000)
    p_small, p_large = statistics.median(small), statistics.median(large)
    return {"turn_p50_ms_at_100": p_small, "turn_p50_ms_at_10000": p_large,
            "history_events": events, "history_ratio": p_large / p_small}  # fmt: skip


def _event_count(client: Any, instance: str) -> int:
    return len(client.read_execution_history(instance, 1))


# --- main ---------------------------------------------------------------------------------------


def _provider(url: str, schema: str | None) -> Any:
    if url.startswith(("postgres://", "postgresql://")):
        from duroxide import PostgresProvider

        return PostgresProvider.connect_with_schema(url, schema or "duroxide")
    return SqliteProvider.open(url)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--schema")
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--runtime", choices=["inproc", "none"], default="inproc")
    parser.add_argument("--orchestration-concurrency", type=int, default=4)
    parser.add_argument("--worker-concurrency", type=int, default=8)
    args = parser.parse_args()

    provider = _provider(args.url, args.schema)
    client = Client(provider)
    runtime = None
    if args.runtime == "inproc":
        runtime = Runtime(provider, Options(
            dispatcher_poll_interval_ms=100,
            orchestration_concurrency=args.orchestration_concurrency,
            worker_concurrency=args.worker_concurrency, log_level="error"))  # fmt: skip
        setup(runtime)
        runtime.start()
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "GO":
        raise SystemExit(1)
    cpu0 = time.process_time()
    result = run_workload(client, args.workload, args.n, f"b{os.getpid()}")
    result["cpu_s"] = time.process_time() - cpu0
    result["rss_mb"] = _rss_mb()
    result["duroxide"] = getattr(duroxide, "__file__", "?")
    print("RESULT " + json.dumps(result), flush=True)
    sys.stdin.readline()  # EXIT
    if runtime is not None:
        runtime.shutdown(2_000)


if __name__ == "__main__":
    main()
