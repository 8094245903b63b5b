"""The supervisor: keeps one child process per slot alive, drains them on SIGTERM.

Life of a cluster:

1. A fresh ``PROMETHEUS_MULTIPROC_DIR`` is created and exported to the children; the
   supervisor's own provider is opened (it creates or migrates the schema before any child
   starts, and answers the queue-depth gauges); the HTTP endpoints start.
2. One child per slot is spawned (``multiprocess``, ``spawn``). A child that exits while the
   cluster is not draining is restarted after an exponential backoff (``--restart-delay`` …
   ``--restart-delay-max``, doubled per consecutive crash, reset once a child has run for
   ``STABLE_AFTER_S``); ``child.exited`` and ``child.restarting`` say so.
3. SIGTERM or SIGINT (the handlers only set an event): ``/readyz`` turns 503, every child gets
   SIGTERM and drains (stop claiming; in-flight work finishes or is abandoned with its locks
   released) within a budget that ends before ``--drain-timeout``; children still alive at the
   deadline are killed; the supervisor exits 0. A second signal kills the children at once and
   exits 1.

The supervisor only ever signals the processes it started (by their pid).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import multiprocess
from multiprocess.connection import wait as wait_any

from cluster.child import child_main
from cluster.config import ClusterConfig
from cluster.metrics import ChildCounts
from cluster.roles import ChildSpec, node_id, plan_children

#: A child that ran this long before exiting had been healthy: its backoff starts over.
STABLE_AFTER_S = 30.0
#: ``/livez`` fails when the supervisor loop has not turned for this long.
LIVENESS_STALL_S = 10.0
#: Longest sleep of the supervisor loop (signals and exits are noticed at least this often).
TICK_S = 0.2
#: Time the supervisor keeps after the children's deadline to kill stragglers and clean up.
EXIT_MARGIN_S = 0.5
#: A child that has not reported ready this long after it was started is killed (and restarted).
STARTUP_TIMEOUT_S = 120.0


@dataclass(slots=True)
class _Slot:
    spec: ChildSpec
    process: Any = None
    ready_conn: Any = None
    ready: bool = False
    started_at: float = 0.0
    crashes: int = 0
    restarts: int = 0
    start_at: float | None = 0.0  # when the next process starts; None: not scheduled


def child_drain_ms(drain_timeout_s: float) -> int:
    """The drain budget handed to each child: the drain timeout less room for the child to
    close its provider and exit, and for the supervisor to notice."""
    margin = min(2.0, max(EXIT_MARGIN_S + 0.2, 0.2 * drain_timeout_s))
    return int(max(0.0, drain_timeout_s - margin) * 1000)


def restart_delay(config: ClusterConfig, crashes: int) -> float:
    """Backoff before the ``crashes``-th consecutive restart of one slot."""
    return min(config.restart_delay_max_s, config.restart_delay_s * 2 ** max(0, crashes - 1))


class Supervisor:
    def __init__(self, config: ClusterConfig, *, log: Any, multiproc_dir: str) -> None:
        self._config = config
        self._log = log
        self._dir = multiproc_dir
        self._ctx = multiprocess.get_context("spawn")
        self._slots = [_Slot(spec) for spec in plan_children(config)]
        self._stop = threading.Event()
        self._force = threading.Event()
        self._draining = False
        self._deadline = 0.0
        self._heartbeat = time.monotonic()

    # --- called from other threads (signal handlers, HTTP) -------------------------------------

    def request_stop(self) -> None:
        """First call: drain. Second call: stop at once. (Signals reach it through
        ``cluster.signals``, never from inside a handler.)"""
        if self._stop.is_set():
            self._force.set()
        self._stop.set()

    def liveness(self) -> tuple[bool, str]:
        stalled = time.monotonic() - self._heartbeat
        if stalled > LIVENESS_STALL_S:
            return False, f"supervisor loop stalled for {stalled:.0f}s"
        return True, "ok"

    def readiness(self) -> tuple[bool, str]:
        if self._stop.is_set():
            return False, "draining"
        waiting = [s.spec.name for s in self._slots if not s.ready]
        if waiting:
            return False, "waiting for " + ", ".join(waiting)
        return True, "ready"

    def counts(self) -> ChildCounts:
        """Children up and restarts so far, per (role, tag)."""
        running: dict[tuple[str, str], int] = {}
        restarts: dict[tuple[str, str], int] = {}
        for slot in self._slots:
            key = (slot.spec.role, slot.spec.tag or "")
            running[key] = running.get(key, 0) + int(slot.ready)
            restarts[key] = restarts.get(key, 0) + slot.restarts
        return ChildCounts(running=running, restarts=restarts)

    # --- the loop ------------------------------------------------------------------------------

    def run(self) -> int:
        """Supervise until stopped; the exit code of the program."""
        try:
            while True:
                now = time.monotonic()
                self._heartbeat = now
                if self._force.is_set():
                    self._kill_all("second signal")
                    self._log.warning("cluster.stopped", forced=True)
                    return 1
                if self._stop.is_set():
                    if not self._draining:
                        self._begin_drain(now)
                    if not any(s.process is not None for s in self._slots):
                        self._log.info("cluster.stopped", forced=False)
                        return 0
                    if now >= self._deadline:
                        self._kill_all("drain timeout")
                        self._log.info("cluster.stopped", forced=False)
                        return 0
                else:
                    for slot in self._slots:
                        due = slot.start_at is not None and slot.start_at <= now
                        if slot.process is None and due:
                            self._spawn(slot)
                        elif slot.process is not None and not slot.ready:
                            self._check_startup(slot, now)
                self._wait(now)
                self._reap()
        finally:
            self._kill_all("supervisor exiting")  # nothing is left behind, whatever happened

    def _spawn(self, slot: _Slot) -> None:
        spec, config = slot.spec, self._config
        reader, writer = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=child_main, name=f"duroxide-{spec.name}",
            args=(spec, config, os.getpid(), writer, child_drain_ms(config.drain_timeout_s)),
        )  # fmt: skip
        try:
            process.start()
        except Exception as exc:
            reader.close()
            slot.crashes += 1
            slot.start_at = time.monotonic() + restart_delay(config, slot.crashes)
            self._log.error("child.spawn_failed", role=spec.role, child=spec.name,
                            error=f"{type(exc).__name__}: {exc}")  # fmt: skip
            return
        finally:
            writer.close()  # only the child holds the write end: its death is an EOF here
        slot.process, slot.ready_conn, slot.ready = process, reader, False
        slot.started_at, slot.start_at = time.monotonic(), None
        self._log.info("child.started", role=spec.role, child=spec.name, tag=spec.tag,
                       child_pid=process.pid, worker_id=node_id(config, spec))  # fmt: skip

    def _check_startup(self, slot: _Slot, now: float) -> None:
        """Kill a child stuck starting (it is then restarted like a crashed one)."""
        if now - slot.started_at < STARTUP_TIMEOUT_S or slot.process.exitcode is not None:
            return
        self._log.error("child.start_timeout", role=slot.spec.role, child=slot.spec.name,
                        child_pid=slot.process.pid, timeout_s=STARTUP_TIMEOUT_S)  # fmt: skip
        with contextlib.suppress(OSError, ValueError):
            slot.process.kill()

    def _wait(self, now: float) -> None:
        """Sleep until a child exits or reports ready, a restart is due, or a tick passes."""
        timeout = TICK_S
        waitables: list[Any] = []
        for slot in self._slots:
            if slot.process is not None:
                waitables.append(slot.process.sentinel)
                if slot.ready_conn is not None:
                    waitables.append(slot.ready_conn)
            elif slot.start_at is not None:
                timeout = min(timeout, max(0.0, slot.start_at - now))
        if waitables:
            wait_any(waitables, timeout)
        else:
            self._stop.wait(timeout)
        for slot in self._slots:
            conn = slot.ready_conn
            if conn is None:
                continue
            try:
                if not conn.poll():
                    continue
                slot.ready = conn.recv()[0] == "ready"
            except (EOFError, OSError):
                pass  # the child died before it was ready; _reap handles it
            conn.close()
            slot.ready_conn = None

    def _reap(self) -> None:
        for slot in self._slots:
            process = slot.process
            if process is None or process.exitcode is None:
                continue
            pid, code = process.pid, process.exitcode
            self._forget(slot)
            ran_s = time.monotonic() - slot.started_at
            fields = {
                "role": slot.spec.role, "child": slot.spec.name, "tag": slot.spec.tag,
                "child_pid": pid, "exit_code": code, "signal": _signal_name(code),
                "ran_s": round(ran_s, 3),
            }  # fmt: skip
            if self._draining:
                self._log.info("child.exited", expected=True, **fields)
                continue
            self._log.warning("child.exited", expected=False, **fields)
            slot.crashes = 1 if ran_s >= STABLE_AFTER_S else slot.crashes + 1
            slot.restarts += 1
            delay = restart_delay(self._config, slot.crashes)
            slot.start_at = time.monotonic() + delay
            self._log.warning("child.restarting", role=slot.spec.role, child=slot.spec.name,
                              tag=slot.spec.tag, child_pid=pid, exit_code=code,
                              backoff_s=round(delay, 3), crashes=slot.crashes,
                              restarts=slot.restarts)  # fmt: skip

    def _forget(self, slot: _Slot) -> None:
        """Bookkeeping for an exited child: its live gauges go, its counters stay."""
        from prometheus_client.multiprocess import mark_process_dead

        process = slot.process
        with contextlib.suppress(OSError):
            mark_process_dead(process.pid, self._dir)
        if slot.ready_conn is not None:
            slot.ready_conn.close()
        slot.process, slot.ready_conn, slot.ready = None, None, False
        with contextlib.suppress(Exception):
            process.join(0)
            process.close()

    def _begin_drain(self, now: float) -> None:
        self._draining = True
        timeout = self._config.drain_timeout_s
        self._deadline = now + max(0.1, timeout - EXIT_MARGIN_S)
        alive = [s for s in self._slots if s.process is not None]
        self._log.info("cluster.draining", drain_timeout_s=timeout, children=len(alive),
                       child_drain_ms=child_drain_ms(timeout))  # fmt: skip
        for slot in self._slots:
            slot.start_at = None
        for slot in alive:
            with contextlib.suppress(OSError, ValueError):
                slot.process.terminate()  # SIGTERM: drain and exit 0

    def _kill_all(self, reason: str) -> None:
        alive = [s for s in self._slots if s.process is not None]
        for slot in alive:
            with contextlib.suppress(OSError, ValueError):
                if slot.process.exitcode is None:
                    slot.process.kill()
                    self._log.warning("child.killed", role=slot.spec.role, child=slot.spec.name,
                                      child_pid=slot.process.pid, reason=reason)  # fmt: skip
        for slot in alive:
            with contextlib.suppress(Exception):
                slot.process.join(5.0)
            self._forget(slot)


def _signal_name(exit_code: int | None) -> str | None:
    if exit_code is None or exit_code >= 0:
        return None
    try:
        return signal.Signals(-exit_code).name
    except ValueError:
        return str(-exit_code)


def redact_url(url: str) -> str:
    """A database URL without its password (for logs)."""
    if not url.startswith(("postgresql://", "postgres://")):
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{parts.path}"


@contextlib.contextmanager
def multiproc_dir() -> Any:
    """A fresh ``PROMETHEUS_MULTIPROC_DIR``, exported to the children, removed at the end."""
    path = tempfile.mkdtemp(prefix="duroxide-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
