"""PostgreSQL with real OS processes: exactly-once turns, LISTEN/NOTIFY wake-ups, reconnects.

Every runtime here is a separate process (``apps/pg_runtime.py``) on its own provider; the test
process talks to the database only through a ``Client`` (its own provider, its own listener) and
plain SQL. Each test uses a fresh schema and drops it at the end.

* ``test_four_processes_run_each_turn_exactly_once``: four runtimes on one schema (four turn
  slots each) are let loose at the same moment on 2,000 queued one-activity orchestrations; the
  stored histories, the activity side effects (rows in a table without a unique constraint) and
  the per-turn lock windows each process logs prove every instance ran exactly once and never
  in two places at the same time.
* ``test_notifications_carry_start_and_completion``: with a 1 s poll interval, a start → completion
  round trip between two processes takes milliseconds, so it is the notifications that move it.
* ``test_listener_reconnects_after_its_backend_is_killed``: ``pg_terminate_backend`` on the
  runtime's LISTEN connection; it reconnects by itself and round trips are fast again.
"""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from psycopg import sql

from duroxide import Client
from duroxide.providers.postgres import PostgresProvider
from duroxide.providers.wakeup import STATUS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared pg.py
import pg

pytestmark = pytest.mark.slow

T = TypeVar("T")
APP = Path(__file__).parent / "apps" / "pg_runtime.py"
ORCHESTRATION = "Echo"  # apps/pg_runtime.py: one activity, returns "done-<input>"
CHILD_DEADLINE_S = 110  # the app's watchdog: a child can never outlive a crashed test run
FAST_MS = 250.0  # "far below" the 1000 ms poll interval of the latency tests
SLOW_POLL_MS = 1000
EXPECTED_KINDS = [
    "OrchestrationStarted",
    "ActivityScheduled",
    "ActivityCompleted",
    "OrchestrationCompleted",
]


# --- child processes ------------------------------------------------------------------------------


class App:
    """One ``pg_runtime.py`` process; its stdout and stderr are read by threads as they come."""

    def __init__(self, name: str, url: str, schema: str, *extra: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, str(APP), url, schema, "--deadline-s", str(CHILD_DEADLINE_S),
             *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return (
            f"--- {self.name} (pid {self.pid}, exit {self.proc.poll()}) stdout:\n"
            + "\n".join(self.stdout)
            + f"\n--- {self.name} stderr:\n"
            + "\n".join(self.stderr)
        )

    @property
    def ready(self) -> bool:
        return any(line.startswith("pg_runtime: ready") for line in self.stdout)

    @property
    def running(self) -> bool:
        return "pg_runtime: running" in self.stdout

    @property
    def listener_pids(self) -> list[int | None]:
        """Every LISTEN backend pid the app reported, in order (None: disconnected)."""
        out: list[int | None] = []
        for line in list(self.stdout):
            if line.startswith("pg_runtime: listener_pid="):
                value = line.removeprefix("pg_runtime: listener_pid=")
                out.append(None if value == "none" else int(value))
        return out

    @property
    def listener_pid(self) -> int | None:
        pids = self.listener_pids
        return pids[-1] if pids else None

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM (graceful shutdown), wait; kill if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._drain()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._drain()

    def _drain(self) -> None:
        """Read the pipes to their end (the process has exited) and close them."""
        for reader in self._readers:
            reader.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


class Apps:
    """Starts apps; at teardown kills those still running and prints every app's output (pytest
    shows it when the test failed)."""

    def __init__(self) -> None:
        self.apps: list[App] = []

    def start(self, url: str, schema: str, *extra: str) -> App:
        app = App(f"app-{len(self.apps) + 1}", url, schema, *extra)
        self.apps.append(app)
        return app

    def wait(self, what: str, check: Callable[[], T], timeout_s: float) -> T:
        """Wait for ``check()`` to return something truthy while every app is alive; fail with
        their output otherwise."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = check()
            if value:
                return value
            for app in self.apps:
                if app.proc.poll() is not None:
                    raise AssertionError(
                        f"{app.name} exited ({app.proc.returncode}) before {what}:\n" + app.output()
                    )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{what} not seen within {timeout_s}s (last value: {value!r}):\n"
                    + "\n".join(app.output() for app in self.apps)
                )
            time.sleep(0.01)

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        self.wait(
            "every app ready",
            lambda: all(a.ready and a.listener_pid is not None for a in self.apps),
            timeout_s,
        )

    def stop_all(self) -> None:
        """Graceful stop of every app; each must exit 0."""
        codes = {app.name: app.stop() for app in self.apps}
        failed = {name: code for name, code in codes.items() if code != 0}
        assert not failed, f"apps exited with {failed}:\n" + "\n".join(
            a.output() for a in self.apps
        )

    def close(self) -> None:
        for app in self.apps:
            app.kill()
            print(app.output(), file=sys.stderr)


@pytest.fixture
def apps() -> Iterator[Apps]:
    children = Apps()
    try:
        yield children
    finally:
        children.close()


@pytest.fixture
def pg_schema() -> Iterator[tuple[str, str]]:
    """``(url, schema)``: a fresh schema, dropped (with its ``_fx`` side-effect schema) at the
    end."""
    url = pg.pg_url()
    schema = pg.unique_schema("procs")
    try:
        yield url, schema
    finally:
        pg.drop_schema(url, schema + "_fx")
        pg.drop_schema(url, schema)


@pytest.fixture
def client_provider(pg_schema: tuple[str, str]) -> Iterator[PostgresProvider]:
    """The test process's own provider (creates the schema before any app starts)."""
    url, schema = pg_schema
    provider = PostgresProvider.connect_with_schema(url, schema)
    try:
        yield provider
    finally:
        provider.close()


# --- helpers --------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def overlapping_turns(
    turns: dict[str, list[tuple[int, int, int]]],
) -> list[tuple[str, tuple[int, int, int], tuple[int, int, int]]]:
    """Pairs of turns of one instance whose ``(t_fetched, t_released, pid)`` windows overlap.

    Sorted by fetch time, a window overlaps some earlier one iff it starts before the latest
    release seen so far; it is reported with the window that released last."""
    found = []
    for instance_id, spans in turns.items():
        latest: tuple[int, int, int] | None = None
        for span in sorted(spans):
            fetched, released, _ = span
            assert fetched <= released, (instance_id, span)
            if latest is not None and fetched < latest[1]:
                found.append((instance_id, latest, span))
            if latest is None or released > latest[1]:
                latest = span
    return found


def round_trip_ms(client: Client, instance_id: str, n: int) -> float:
    """Start one Echo instance and wait for its completion; the elapsed milliseconds."""
    started = time.perf_counter()
    client.start_orchestration(instance_id, ORCHESTRATION, n)
    result = client.wait_for_orchestration(instance_id, 15_000)
    elapsed = (time.perf_counter() - started) * 1000
    assert result.status == "Completed", result
    assert result.output == f"done-{n}", result
    return elapsed


# --- 1. four processes, exactly once -------------------------------------------------------------

PROCESSES = 4
INSTANCES = 2000


def test_four_processes_run_each_turn_exactly_once(
    pg_schema: tuple[str, str], client_provider: PostgresProvider, apps: Apps, tmp_path: Path
) -> None:
    url, schema = pg_schema
    fx = schema + "_fx"
    effects = f"{fx}.effects"
    with pg.connect(url) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(fx)))
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (instance_id text NOT NULL, execution_id bigint NOT NULL, "
                "pid integer NOT NULL, n integer NOT NULL)"  # no unique key: duplicates show
            ).format(sql.Identifier(fx, "effects"))
        )
    windows = [tmp_path / f"windows-{i}.log" for i in range(PROCESSES)]
    gate = tmp_path / "go"
    for path in windows:
        apps.start(url, schema, "--orchestration-concurrency", "4", "--worker-concurrency",
                   "4", "--poll-ms", "100", "--windows", str(path), "--effects-table",
                   effects, "--gate", str(gate), "--pool-max-size", "5")  # fmt: skip
    apps.wait_ready()

    # Fill the queue first, then let the four runtimes loose at the same moment: every one of
    # them races for the same backlog from the first fetch on.
    client = Client(client_provider)
    ids = [f"inst-{i:04d}" for i in range(INSTANCES)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: client.start_orchestration(ids[i], ORCHESTRATION, i),
                      range(INSTANCES)))  # fmt: skip
    gate.touch()
    started = time.monotonic()
    apps.wait("every runtime running", lambda: all(a.running for a in apps.apps), 10)

    with pg.connect(url) as conn:
        count_finished = sql.SQL("SELECT count(*) FROM {} WHERE status <> 'Running'").format(
            sql.Identifier(schema, "instances")
        )

        def finished() -> bool:
            row = conn.execute(count_finished).fetchone()
            assert row is not None
            return row[0] >= INSTANCES

        apps.wait(f"{INSTANCES} instances finished", finished, timeout_s=60)
    elapsed_s = time.monotonic() - started
    print(
        f"\n{INSTANCES} orchestrations on {PROCESSES} processes: {elapsed_s:.2f}s "
        f"({INSTANCES / elapsed_s:.0f} orchestrations/s)"
    )
    apps.stop_all()  # graceful: each app writes its last windows and exits 0

    # Stored outcome: every instance Completed with its own output, one execution.
    with pg.connect(url) as conn:
        instances = {
            row[0]: row[1:]
            for row in conn.execute(
                sql.SQL("SELECT instance_id, status, output, current_execution_id FROM {}").format(
                    sql.Identifier(schema, "instances")
                )
            )
        }
        history: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
        for instance_id, execution_id, event_id, kind in conn.execute(
            sql.SQL(
                "SELECT instance_id, execution_id, event_id, kind FROM {} "
                "ORDER BY instance_id, execution_id, event_id"
            ).format(sql.Identifier(schema, "history"))
        ):
            history[instance_id].append((execution_id, event_id, kind))
        effect_rows = conn.execute(
            sql.SQL("SELECT instance_id, execution_id, pid, n FROM {}").format(
                sql.Identifier(fx, "effects")
            )
        ).fetchall()
        leftovers = [
            conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
            ).fetchone()
            for table in ("orchestrator_queue", "worker_queue")
        ]
        live_locks = conn.execute(
            sql.SQL(
                "SELECT count(*) FROM {} "
                "WHERE locked_until > extract(epoch FROM clock_timestamp()) * 1000"
            ).format(sql.Identifier(schema, "instance_locks"))
        ).fetchone()
    assert sorted(instances) == ids
    wrong = {
        i: instances[i]
        for n, i in enumerate(ids)
        if instances[i] != ("Completed", json.dumps(f"done-{n}"), 1)
    }
    assert not wrong, f"{len(wrong)} instances with a wrong outcome, e.g. {list(wrong.items())[:5]}"

    expected_history = [(1, n, kind) for n, kind in enumerate(EXPECTED_KINDS, start=1)]
    bad_history = {i: history[i] for i in ids if history[i] != expected_history}
    assert not bad_history, (
        f"{len(bad_history)} instances with an unexpected history, "
        f"e.g. {list(bad_history.items())[:3]}"
    )
    assert sorted(history) == ids

    # Side effects: exactly one row per instance (execution 1, its own input).
    per_instance: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for instance_id, execution_id, pid, n in effect_rows:
        per_instance[instance_id].append((execution_id, pid, n))
    duplicated = {i: rows for i, rows in per_instance.items() if len(rows) != 1}
    assert not duplicated, f"activities that ran more than once: {list(duplicated.items())[:5]}"
    assert sorted(per_instance) == ids
    assert all(per_instance[i][0][0] == 1 and per_instance[i][0][2] == n for n, i in enumerate(ids))
    app_pids = {app.pid for app in apps.apps}
    activity_pids = defaultdict(int)
    for _, pid, _ in (rows[0] for rows in per_instance.values()):
        activity_pids[pid] += 1
    assert set(activity_pids) <= app_pids
    assert len(activity_pids) >= 3, f"activities ran on too few processes: {dict(activity_pids)}"
    assert leftovers == [(0,), (0,)], f"queues not empty: {leftovers}"
    assert live_locks == (0,), f"instances still locked: {live_locks}"

    # Turn windows: no instance was ever held by two turns at the same time.
    turns: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    turn_pids: dict[int, int] = defaultdict(int)
    for path in windows:
        for line in path.read_text().splitlines():
            instance_id, pid, fetched, released = line.split()
            assert released != "open", f"a turn never released its instance: {line}"
            turns[instance_id].append((int(fetched), int(released), int(pid)))
            turn_pids[int(pid)] += 1
    assert sorted(turns) == ids
    assert sum(turn_pids.values()) >= 2 * INSTANCES  # each instance needs at least two turns
    assert set(turn_pids) <= app_pids
    assert len(turn_pids) >= 3, f"turns ran on too few processes: {dict(turn_pids)}"
    overlaps = overlapping_turns(turns)
    assert not overlaps, f"{len(overlaps)} overlapping turns, e.g. {overlaps[:5]}"
    moved = sum(1 for spans in turns.values() if len({p for _, _, p in spans}) > 1)
    print(
        f"turns per process: {dict(turn_pids)}; activities per process: {dict(activity_pids)}; "
        f"instances whose turns ran in more than one process: {moved}"
    )


# --- 2. wake-ups, not polling --------------------------------------------------------------------

WARMUP = 5
ROUND_TRIPS = 40


def start_slow_poll_runtime(apps: Apps, url: str, schema: str) -> App:
    app = apps.start(url, schema, "--poll-ms", str(SLOW_POLL_MS))
    apps.wait_ready()
    apps.wait("the runtime running", lambda: app.running, 10)
    return app


def test_notifications_carry_start_and_completion(
    pg_schema: tuple[str, str], client_provider: PostgresProvider, apps: Apps
) -> None:
    url, schema = pg_schema
    start_slow_poll_runtime(apps, url, schema)
    client = Client(client_provider)
    hub = client_provider.wakeups
    for i in range(WARMUP):
        round_trip_ms(client, f"warm-{i}", i)

    # This process never changes an instance itself, so each STATUS wake-up of its hub came
    # from a notification sent by the runtime process.
    status_before = hub.generation(STATUS)
    latencies = [round_trip_ms(client, f"rt-{i}", i) for i in range(ROUND_TRIPS)]
    status_wakeups = hub.generation(STATUS) - status_before
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    print(
        f"\nstart -> completion over {ROUND_TRIPS} round trips (poll interval {SLOW_POLL_MS} ms): "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(latencies):.1f} ms, "
        f"mean {statistics.fmean(latencies):.1f} ms; status notifications received: "
        f"{status_wakeups}"
    )
    assert p50 < FAST_MS, f"p50 {p50:.1f} ms: the start waited for the poll, not a notification"
    assert status_wakeups >= ROUND_TRIPS // 2, (
        f"only {status_wakeups} status notifications for {ROUND_TRIPS} completions"
    )
    apps.stop_all()


# --- 3. listener reconnect -----------------------------------------------------------------------


def backend_exists(url: str, pid: int) -> bool:
    with pg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()
    assert row is not None
    return row[0] == 1


def test_listener_reconnects_after_its_backend_is_killed(
    pg_schema: tuple[str, str], client_provider: PostgresProvider, apps: Apps
) -> None:
    url, schema = pg_schema
    app = start_slow_poll_runtime(apps, url, schema)
    client = Client(client_provider)
    for i in range(WARMUP):
        round_trip_ms(client, f"warm-{i}", i)
    before = [round_trip_ms(client, f"before-{i}", i) for i in range(5)]
    assert percentile(before, 50) < FAST_MS, before

    old_pid = app.listener_pid
    assert old_pid is not None and old_pid != client_provider.listener_pid
    assert backend_exists(url, old_pid)
    with pg.connect(url) as conn:
        row = conn.execute("SELECT pg_terminate_backend(%s)", (old_pid,)).fetchone()
    assert row == (True,)
    killed_at = time.monotonic()

    # Round trips until five in a row are fast again (a lucky poll cannot do that five times),
    # with the runtime on a new LISTEN backend that it opened by itself.
    recent: list[float] = []
    attempts = 0
    deadline = killed_at + 10.0
    while True:
        assert app.proc.poll() is None, app.output()
        latency = round_trip_ms(client, f"after-{attempts}", attempts)
        attempts += 1
        new_pid = app.listener_pid
        reconnected = new_pid is not None and new_pid != old_pid
        recent = [*recent, latency][-5:] if reconnected else []
        if len(recent) == 5 and max(recent) < FAST_MS:
            break
        assert time.monotonic() < deadline, (
            f"no fast round trips within 10 s of the kill (listener pids reported: "
            f"{app.listener_pids}; last latencies {recent or [latency]}):\n" + app.output()
        )
    recovered_s = time.monotonic() - killed_at
    print(
        f"\nlistener backend {old_pid} killed; runtime reconnected as {new_pid} "
        f"(pids reported: {app.listener_pids}); fast again after {attempts} round trips, "
        f"{recovered_s:.2f} s; last five: {[round(x, 1) for x in recent]} ms"
    )
    assert new_pid is not None
    assert backend_exists(url, new_pid)
    assert not backend_exists(url, old_pid)
    apps.stop_all()
