"""Running the real ``python -m cluster`` in a subprocess, and watching it.

``ClusterProcess`` starts the supervisor in its own process group (``start_new_session``), so
``kill_tree()`` can always find and end everything it started — the supervisor, its children
and their helpers — even after the supervisor is gone. Its JSON log (stderr) is parsed line by
line on a thread into ``records``; tests wait on log events, HTTP probes and the client's view,
each with a deadline, and never sleep-and-assert.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, NamedTuple

REPO = Path(__file__).resolve().parents[2]
APPS = Path(__file__).resolve().parent / "apps"
APP = "cluster_test_app:setup"

Record = dict[str, Any]


class ClusterProcess:
    def __init__(self, url: str, schema: str, tmp_path: Path, *args: str,
                 env: dict[str, str] | None = None, name: str = "cluster") -> None:  # fmt: skip
        self.effects = tmp_path / "effects.txt"
        self.log_path = tmp_path / f"{name}.log"
        self.records: list[Record] = []
        self._lock = threading.Lock()
        environ = {k: v for k, v in os.environ.items()
                   if not k.startswith(("DUROXIDE_", "PROMETHEUS_", "OTEL_"))}  # fmt: skip
        environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(APPS), os.environ.get("PYTHONPATH", "")) if p
        )
        environ["CLUSTER_TEST_EFFECTS"] = str(self.effects)
        environ["TMPDIR"] = str(tmp_path)  # its metrics dir, even when killed before cleaning up
        environ.update(env or {})
        command = [sys.executable, "-m", "cluster", "--app", APP, "--database-url", url,
                   "--schema", schema, "--http-host", "127.0.0.1", "--http-port", "0",
                   "--log-format", "json", "--poll-interval-ms", "50", *args]  # fmt: skip
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            command, cwd=REPO, env=environ, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        self.pgid = self.proc.pid  # a new session: the group id is the supervisor's pid
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    # --- the log ---------------------------------------------------------------------------------

    def _read(self) -> None:
        assert self.proc.stderr is not None
        with self.log_path.open("ab") as out:
            for raw in self.proc.stderr:
                out.write(raw)
                out.flush()
                try:
                    record = json.loads(raw)
                except ValueError:
                    record = {"event": "raw", "line": raw.decode(errors="replace").rstrip()}
                if not isinstance(record, dict):
                    continue
                with self._lock:
                    self.records.append(record)

    def events(self, event: str, **match: Any) -> list[Record]:
        with self._lock:
            return [r for r in self.records if r.get("event") == event
                    and all(r.get(k) == v for k, v in match.items())]  # fmt: skip

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_event(self, event: str, timeout_s: float = 30.0, **match: Any) -> Record:
        found: list[Record] = []

        def seen() -> bool:
            found[:] = self.events(event, **match)
            return bool(found)

        self.wait_until(seen, f"log event {event} {match or ''}", timeout_s)
        return found[0]

    def wait_until(self, check: Callable[[], bool], what: str, timeout_s: float = 30.0,
                   *, allow_exit: bool = False) -> None:  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while True:
            if check():
                return
            if not allow_exit and self.proc.poll() is not None:
                raise AssertionError(f"cluster exited ({self.proc.returncode}) while waiting "
                                     f"for {what}\n{self.tail()}")  # fmt: skip
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s}s waiting for {what}\n"
                                     f"{self.tail()}")  # fmt: skip
            time.sleep(0.05)

    # --- HTTP ------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self.wait_event("http.listening")["port"])

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        self.wait_until(lambda: self.get("/readyz")[0] == 200, "/readyz 200", timeout_s)

    # --- children --------------------------------------------------------------------------------

    def alive_children(self) -> dict[int, Record]:
        """``child_pid -> child.started record`` of children the log shows running."""
        with self._lock:
            started = {r["child_pid"]: r for r in self.records if r.get("event") == "child.started"}
            exited = {r["child_pid"] for r in self.records if r.get("event") == "child.exited"}
        return {pid: r for pid, r in started.items() if pid not in exited}

    def ready_children(self) -> dict[int, Record]:
        """The alive children that have also logged ``child.ready`` (their runtime runs)."""
        with self._lock:
            ready = {r.get("pid") for r in self.records if r.get("event") == "child.ready"}
        return {pid: r for pid, r in self.alive_children().items() if pid in ready}

    def group_processes(self) -> list[int]:
        """Live (non-zombie) processes of the supervisor's process group."""
        return live_processes_in_group(self.pgid)

    def dump_stacks(self, pids: list[int], wait_s: float = 5.0) -> str:
        """Ask those of ``pids`` that are our children for every thread's stack (SIGUSR1, see
        ``cluster.signals``; written even by a wedged process) and return the log's tail."""
        ours = [pid for pid in pids if pid in self.alive_children()]
        with self._lock:
            seen = len(self.records)  # only dumps written from now on count
        for pid in ours:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR1)

        def dumped() -> bool:  # one "Current thread" (the handler's) per dump
            with self._lock:
                lines = [str(r.get("line", "")) for r in self.records[seen:]]
            return sum(line.startswith("Current thread") for line in lines) >= len(ours)

        with suppress(AssertionError):  # what was written by then is the answer
            self.wait_until(dumped, "the stack dumps", wait_s, allow_exit=True)
        return self.tail(400)

    # --- stopping --------------------------------------------------------------------------------

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait_exit(self, timeout_s: float) -> int:
        return self.proc.wait(timeout_s)

    def kill_tree(self) -> None:
        """SIGKILL the supervisor, then every process left in its group (only processes this
        test started: the group was created for the supervisor), one pid at a time."""
        with suppress(ProcessLookupError):
            self.proc.kill()  # first, so it can start nothing new
        for pid in self.group_processes():
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self._reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def live_processes_in_group(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            pids.append(int(entry))
    return pids


def describe_processes(pids: list[int]) -> str:
    """pid, state, command line and every thread's kernel wait channel (for a failure message)."""
    lines = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            waits = sorted(
                Path(f"/proc/{pid}/task/{tid}/wchan").read_text() or "-"
                for tid in os.listdir(f"/proc/{pid}/task")
            )
        except OSError as exc:
            lines.append(f"{pid}: {exc}")
            continue
        lines.append(f"{pid} [{state}] {cmd[:200]} threads waiting in {waits}")
    return "\n".join(lines)


@contextmanager
def running_cluster(url: str, schema: str, tmp_path: Path, *args: str,
                    env: dict[str, str] | None = None, name: str = "cluster"
                    ) -> Iterator[ClusterProcess]:  # fmt: skip
    cluster = ClusterProcess(url, schema, tmp_path, *args, env=env, name=name)
    try:
        yield cluster
    finally:
        cluster.kill_tree()


class Effect(NamedTuple):
    """One activity execution, as the test app recorded it."""

    instance_id: str
    activity_id: int
    name: str
    worker_id: str
    pid: int
    trace_id: str


def read_effects(path: Path) -> list[Effect]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        instance, activity_id, name, worker, pid, trace_id = line.split(" ")
        rows.append(Effect(instance, int(activity_id), name, worker, int(pid), trace_id))
    return rows
