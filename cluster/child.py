"""A child process: one ``Runtime`` in one role, until the supervisor tells it to stop.

The supervisor starts :func:`child_main` in a fresh interpreter (``spawn``). The child

* ignores SIGINT (a Ctrl-C reaches the whole process group; the supervisor coordinates);
* on SIGTERM (relayed by ``cluster.signals``, never handled under a lock) calls
  ``runtime.shutdown(drain_ms)``: stop claiming, let in-flight work finish, release the locks
  of what is still running; then exits 0;
* writes every thread's stack to stderr on SIGUSR1 (``kill -USR1 <pid>``), even when wedged;
* never outlives the supervisor: ``PR_SET_PDEATHSIG`` (Linux) turns the supervisor's death into
  a SIGTERM, and a watchdog thread polling ``os.getppid()`` covers every other platform and the
  race before ``prctl``. An orphan drains briefly (at most ``ORPHAN_DRAIN_MS``) and exits;
* reports ``ready`` on a pipe once its runtime runs (the supervisor's ``/readyz`` waits for it);
* exits 1 when it cannot start (the app does not import, the database is unreachable): the
  supervisor restarts it with backoff.

A hard deadline bounds the shutdown itself (``cluster.signals.exit_after``: a C watchdog that
needs no lock and no GIL writes the stacks and exits 1), so a hung database, an activity that
ignores cancellation or a wedged interpreter can never keep the process alive.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from cluster.config import ClusterConfig
from cluster.roles import ChildSpec, node_id, runtime_options
from cluster.signals import dump_stacks_on, exit_after, on_signals

#: Longest drain of a child whose supervisor died.
ORPHAN_DRAIN_MS = 2_000
#: How often the watchdog checks that the supervisor is alive.
WATCHDOG_EVERY_S = 0.5
#: Extra time after the drain for closing the provider and flushing traces.
EXIT_GRACE_S = 5.0
#: After SIGTERM, how long to watch for the supervisor's death before draining: the death
#: signal comes when the supervisor's first thread dies, while the rest of it may still be
#: exiting (and still be our parent).
SETTLE_MS = 200
SETTLE_S = SETTLE_MS / 1000
#: Longest wait for buffered spans to be exported at exit.
TRACE_FLUSH_MS = 1_000
#: Exit code of a child that could not start.
EXIT_START_FAILED = 1
_PR_SET_PDEATHSIG = 1


def child_main(
    spec: ChildSpec, config: ClusterConfig, supervisor_pid: int, ready: Any, drain_ms: int
) -> None:
    """The entry point of a child process (runs in the spawned interpreter)."""
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    on_signals([signal.SIGTERM], lambda _signum: stop.set())
    dump_stacks_on(signal.SIGUSR1)
    _die_with_parent()
    orphaned = threading.Event()
    threading.Thread(target=_watch_parent, args=(supervisor_pid, stop, orphaned),
                     name="cluster-watchdog", daemon=True).start()  # fmt: skip

    def supervisor_gone() -> bool:
        return orphaned.is_set() or os.getppid() != supervisor_pid

    code = _run(spec, config, ready, drain_ms, stop, supervisor_gone)
    sys.stderr.flush()
    os._exit(code)  # daemon threads (a hung activity) must not delay the exit


def _run(
    spec: ChildSpec,
    config: ClusterConfig,
    ready: Any,
    drain_ms: int,
    stop: threading.Event,
    supervisor_gone: Callable[[], bool],
) -> int:
    from duroxide.observability.logging import configure_logging, get_logger

    configure_logging(config.log_level, config.log_format)
    worker_id = node_id(config, spec)
    log = get_logger("cluster.child", role=spec.role, child=spec.name, worker_id=worker_id,
                     tag=spec.tag)  # fmt: skip
    try:
        runtime, provider = _start(spec, config, log)
    except Exception as exc:
        log.error("child.start_failed", error=f"{type(exc).__name__}: {exc}")
        return EXIT_START_FAILED
    try:
        with contextlib.suppress(OSError):
            ready.send(("ready", os.getpid()))
            ready.close()
        log.info("child.ready")
        while not stop.wait(0.5):
            pass
        gone = _settles(supervisor_gone, SETTLE_S)
        budget = min(drain_ms, ORPHAN_DRAIN_MS) if gone else max(0, drain_ms - SETTLE_MS)
        exit_after(budget / 1000 + EXIT_GRACE_S)
        log.info("child.draining", drain_ms=budget,
                 reason="supervisor gone" if gone else "sigterm")  # fmt: skip
        runtime.shutdown(budget)
    finally:
        with contextlib.suppress(Exception):
            provider.close()
        _flush_traces()
    log.info("child.stopped")
    return 0


def _start(spec: ChildSpec, config: ClusterConfig, log: Any) -> tuple[Any, Any]:
    """Load the app, open the provider and start the runtime."""
    from cluster.app import load_setup
    from duroxide import Runtime
    from duroxide.observability.prometheus import PrometheusInstruments
    from duroxide.observability.tracing import configure_from_environment
    from duroxide.providers import open_provider

    exporting = configure_from_environment("duroxide-cluster")
    setup = load_setup(config.app)
    options = runtime_options(config, spec)
    instruments = PrometheusInstruments()
    capacity = options.orchestration_concurrency or options.worker_concurrency
    instruments.declare_slots(spec.kind, capacity)
    provider = open_provider(config.database_url, config.schema)
    try:
        runtime = Runtime(provider, options, instruments=instruments)
        setup(runtime)
        runtime.start()
    except BaseException:
        provider.close()
        raise
    log.debug("child.started", traces_exported=exporting, capacity=capacity)
    return runtime, provider


def _settles(check: Callable[[], bool], within_s: float) -> bool:
    """Whether ``check()`` turns true within ``within_s``."""
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM when the supervisor dies (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _watch_parent(supervisor_pid: int, stop: threading.Event, orphaned: threading.Event) -> None:
    """Stop when the supervisor is gone (re-parented), even if the death signal was missed."""
    while True:
        if os.getppid() != supervisor_pid:
            # the deadline first: it holds even if starting up or stopping never ends
            exit_after(ORPHAN_DRAIN_MS / 1000 + EXIT_GRACE_S)
            orphaned.set()
            stop.set()
            return
        time.sleep(WATCHDOG_EVERY_S)


def _flush_traces() -> None:
    """Export the spans still buffered by an SDK tracer provider, waiting at most
    ``TRACE_FLUSH_MS`` (an unreachable collector must not hold up the exit)."""
    with contextlib.suppress(Exception):
        from opentelemetry import trace

        flush = getattr(trace.get_tracer_provider(), "force_flush", None)
        if callable(flush):
            flush(TRACE_FLUSH_MS)
