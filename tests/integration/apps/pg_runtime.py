"""A runtime process on a PostgreSQL schema, for the multi-process tests.

    python pg_runtime.py URL SCHEMA [--orchestration-concurrency N] [--worker-concurrency N]
                         [--poll-ms MS] [--windows FILE] [--effects-table SCHEMA.TABLE]
                         [--gate FILE] [--pool-max-size N] [--deadline-s S]

Registers the orchestration ``Echo`` (one activity ``Effect``; returns its result) and the
activity ``Effect(n)``, which returns ``"done-<n>"`` and — with ``--effects-table`` — first
inserts one row ``(instance_id, execution_id, pid, n)`` into that table (autocommit, so an
activity that ran twice leaves two rows; one connection per process, shared under a lock).

``--windows FILE``: the provider is wrapped (a proxy delegating every attribute) so that each
orchestration turn appends ``instance_id pid t_fetched t_released`` to FILE: wall-clock ns right
after ``fetch_orchestration_item(s)`` returned an item and right before its
``ack_orchestration_item(s)`` / ``abandon_orchestration_item`` is called. Both stamps lie inside
the time the instance lock was really held, so two overlapping windows of one instance prove
two holders at once. Turns still open at exit are written as ``... open``.

Stdout protocol (one line each, flushed): ``pg_runtime: listener_pid=<pid|none>`` whenever the
provider's LISTEN backend changes, then ``pg_runtime: ready pid=<pid>``, then
``pg_runtime: running`` once the runtime started (with ``--gate FILE``: only after FILE exists,
so a test can fill the queues first and let every process loose at the same moment); at the end
``pg_runtime: stopped``. SIGTERM (or SIGINT) shuts down gracefully (exit 0). A watchdog ends the
process with exit code 3 after ``--deadline-s`` so it cannot outlive a crashed test run.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from typing import Any

import psycopg
from psycopg import sql

from cluster.signals import on_signals
from duroxide import Runtime, RuntimeOptions
from duroxide.providers.postgres import PostgresProvider

ORCHESTRATION = "Echo"
ACTIVITY = "Effect"


_say_lock = threading.Lock()


def say(line: str) -> None:
    """One whole stdout line (print() from two threads can interleave text and newline)."""
    with _say_lock:
        sys.stdout.write(f"pg_runtime: {line}\n")
        sys.stdout.flush()


class TurnWindows:
    """Provider proxy logging the time each orchestration turn held its instance."""

    def __init__(self, inner: Any, path: str) -> None:
        self._inner = inner
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._open: dict[str, tuple[str, int]] = {}  # lock token -> (instance, t_fetched)
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close_log

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def fetch_orchestration_item(self, *args: Any, **kwargs: Any) -> Any:
        item = self._inner.fetch_orchestration_item(*args, **kwargs)
        if item is not None:
            fetched = time.time_ns()
            with self._lock:
                self._open[item.lock_token] = (item.instance_id, fetched)
        return item

    def fetch_orchestration_items(self, *args: Any, **kwargs: Any) -> Any:
        items = self._inner.fetch_orchestration_items(*args, **kwargs)
        fetched = time.time_ns()
        with self._lock:
            for item in items:
                self._open[item.lock_token] = (item.instance_id, fetched)
        return items

    def ack_orchestration_item(self, lock_token: str, *args: Any, **kwargs: Any) -> Any:
        self._released(lock_token)
        return self._inner.ack_orchestration_item(lock_token, *args, **kwargs)

    def ack_orchestration_items(self, acks: Any) -> Any:
        for lock_token, _ in acks:
            self._released(lock_token)
        return self._inner.ack_orchestration_items(acks)

    def abandon_orchestration_item(self, lock_token: str, *args: Any, **kwargs: Any) -> Any:
        self._released(lock_token)
        return self._inner.abandon_orchestration_item(lock_token, *args, **kwargs)

    def _released(self, lock_token: str) -> None:
        released = time.time_ns()
        with self._lock:
            window = self._open.pop(lock_token, None)
            if window is not None:  # None: a second release of the same turn (abandon after ack)
                instance, fetched = window
                self._file.write(f"{instance} {self._pid} {fetched} {released}\n")
                self._file.flush()

    def close_log(self) -> None:
        with self._lock:
            for instance, fetched in self._open.values():
                self._file.write(f"{instance} {self._pid} {fetched} open\n")
            self._open.clear()
            self._file.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("schema")
    parser.add_argument("--orchestration-concurrency", type=int, default=4)
    parser.add_argument("--worker-concurrency", type=int, default=4)
    parser.add_argument("--poll-ms", type=int, default=50)
    parser.add_argument("--windows", default=None)
    parser.add_argument("--effects-table", default=None)
    parser.add_argument("--gate", default=None)
    parser.add_argument("--pool-max-size", type=int, default=None)
    parser.add_argument("--deadline-s", type=float, default=120.0)
    args = parser.parse_args()

    def watchdog() -> None:
        time.sleep(args.deadline_s)
        say(f"deadline of {args.deadline_s}s passed; exiting")
        os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()
    stop = threading.Event()
    on_signals((signal.SIGTERM, signal.SIGINT), lambda _signum: stop.set())

    effects_table = None
    if args.effects_table:
        effects_table = sql.Identifier(*args.effects_table.split("."))
    effects_lock = threading.Lock()
    effects_conn: list[psycopg.Connection[Any]] = []
    pid = os.getpid()

    def effect(ctx: Any, n: int) -> str:
        if effects_table is not None:
            with effects_lock:
                if not effects_conn:
                    effects_conn.append(psycopg.connect(args.url, autocommit=True))
                effects_conn[0].execute(
                    sql.SQL(
                        "INSERT INTO {} (instance_id, execution_id, pid, n) VALUES (%s, %s, %s, %s)"
                    ).format(effects_table),
                    (ctx.instance_id, ctx.execution_id, pid, n),
                )
        return f"done-{n}"

    def echo(ctx: Any, n: int) -> Any:
        return (yield ctx.schedule_activity(ACTIVITY, n))

    pool = {} if args.pool_max_size is None else {"max_size": args.pool_max_size}
    provider = PostgresProvider.connect_with_schema(args.url, args.schema, **pool)
    windows = TurnWindows(provider, args.windows) if args.windows else None
    runtime = Runtime(
        windows if windows is not None else provider,
        RuntimeOptions(
            dispatcher_poll_interval_ms=args.poll_ms,
            orchestration_concurrency=args.orchestration_concurrency,
            worker_concurrency=args.worker_concurrency,
            log_level="warning",
        ),
    )
    runtime.register_activity(ACTIVITY, effect)
    runtime.register_orchestration(ORCHESTRATION, echo)

    def report_listener() -> None:
        last: object = object()
        while not stop.is_set():
            current = provider.listener_pid
            if current != last:
                say(f"listener_pid={current if current is not None else 'none'}")
                last = current
            stop.wait(0.005)

    reporter = threading.Thread(target=report_listener, daemon=True)
    reporter.start()
    say(f"ready pid={pid}")
    if args.gate:
        while not os.path.exists(args.gate) and not stop.wait(0.002):
            pass
    if not stop.is_set():
        runtime.start()
        say("running")
    while not stop.wait(0.1):
        pass
    runtime.shutdown(5000)
    if windows is not None:
        windows.close_log()
    reporter.join(1.0)
    provider.close()
    say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
