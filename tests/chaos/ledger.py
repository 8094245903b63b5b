"""The ledger workload, and the cluster application that runs it:
``python -m cluster --app tests.chaos.ledger:setup``.

``Ledger({"k": k, "activity": name, "sleep_s": s})`` fans out ``k`` activities and waits for
all of them. Activity ``idx`` of instance ``i``:

1. inserts a row into ``ledger`` (one per execution attempt, so re-executions are counted);
2. inserts its committed side effect into ``effects`` idempotently per scheduled activity
   (``ON CONFLICT DO NOTHING`` on instance, step and activity id): a re-execution applies
   nothing, the same step scheduled twice applies a second, duplicate effect;
3. sleeps ``s`` seconds and returns ``step_value(i, idx)``.

The orchestration checks every returned value and returns their sum, so every instance's
output is known in advance (``expected_output``). The tables live in the scenario's schema,
found by the children in ``CHAOS_LEDGER_URL`` / ``CHAOS_LEDGER_SCHEMA``; their connections
carry ``application_name`` ``CHAOS_LEDGER_APP``. A database error (a restart, a terminated
connection) is retried for up to a minute, so only the faults under test can lose anything.
``CHAOS_LEDGER_SKIP`` (comma-separated activity names) leaves activities unregistered, as an
older build would (the rolling-deploy scenario).
"""

from __future__ import annotations

import os
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from tests.chaos.sqlfile import statement

ORCHESTRATION = "Ledger"
STEP = "LedgerStep"
STEP_V2 = "LedgerStepV2"  # the same activity under a name only newer builds register
RETRY_FOR_S = 60.0
STARTED_LINE = "ledger started"

_local = threading.local()


def step_value(instance_id: str, idx: int) -> int:
    return zlib.crc32(f"{instance_id}/{idx}".encode()) % 1000


def expected_output(instance_id: str, k: int) -> int:
    return sum(step_value(instance_id, idx) for idx in range(k))


# --- the application (runs in the cluster's children) ----------------------------------------


def _execute(name: str, params: dict[str, Any]) -> None:
    """Run one ledger statement on this thread's connection, reconnecting on errors."""
    schema = os.environ["CHAOS_LEDGER_SCHEMA"]
    deadline = time.monotonic() + RETRY_FOR_S
    while True:
        conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
        try:
            if conn is None or conn.closed:
                conn = _local.conn = psycopg.connect(
                    os.environ["CHAOS_LEDGER_URL"], autocommit=True, connect_timeout=5,
                    application_name=os.environ.get("CHAOS_LEDGER_APP", "chaos_ledger"),
                )  # fmt: skip
            conn.execute(statement("ledger.sql", name, schema), params)
            return
        except psycopg.OperationalError:
            if conn is not None:
                conn.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def ledger_step(ctx: Any, args: dict[str, Any]) -> int:
    idx, sleep_s = int(args["idx"]), float(args["sleep_s"])
    now_ms = int(time.time() * 1000)
    _execute("record_attempt", {
        "instance_id": ctx.instance_id, "idx": idx, "activity_id": ctx.activity_id,
        "pid": os.getpid(), "worker_id": ctx.worker_id, "now_ms": now_ms,
    })  # fmt: skip
    value = step_value(ctx.instance_id, idx)
    _execute("record_effect", {"instance_id": ctx.instance_id, "idx": idx, "value": value,
                               "activity_id": ctx.activity_id, "now_ms": now_ms})  # fmt: skip
    time.sleep(sleep_s)
    return value


def ledger(ctx: Any, args: dict[str, Any]) -> Any:
    k, activity, sleep_s = int(args["k"]), str(args["activity"]), float(args["sleep_s"])
    ctx.trace_info(STARTED_LINE)  # logged once per instance: replays are silent
    tasks = [ctx.schedule_activity(activity, {"idx": i, "sleep_s": sleep_s}) for i in range(k)]
    values = yield ctx.all_typed(tasks)
    for idx, value in enumerate(values):
        if value != step_value(ctx.instance_id, idx):
            raise RuntimeError(f"activity {idx} returned {value}")
    return sum(values)


def setup(runtime: Any) -> None:
    skip = set(filter(None, os.environ.get("CHAOS_LEDGER_SKIP", "").split(",")))
    runtime.register_orchestration(ORCHESTRATION, ledger)
    for name in (STEP, STEP_V2):
        if name not in skip:
            runtime.register_activity(name, ledger_step)


# --- the test side ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerCounts:
    attempts: int
    #: distinct scheduled activities attempted (instance, step, activity id)
    scheduled: int
    #: distinct steps attempted (instance, step)
    activities: int
    effects: int
    #: distinct steps with an effect
    effect_keys: int
    #: completed instances whose effects differ in number from their history's completions
    mismatched: int

    @property
    def reexecutions(self) -> int:
        """Attempts beyond one per scheduled activity (at-least-once delivery)."""
        return self.attempts - self.scheduled

    @property
    def duplicate_effects(self) -> int:
        """Effects beyond one per step: a step scheduled, run and applied more than once."""
        return self.effects - self.effect_keys


@dataclass(frozen=True)
class Workload:
    url: str
    schema: str
    k: int = 4
    sleep_s: float = 0.02
    activity: str = STEP
    application_name: str = "chaos_ledger"

    def create_tables(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(statement("ledger.sql", "create_tables", self.schema))

    def environment(self) -> dict[str, str]:
        """What the cluster's children need to run the workload."""
        return {"CHAOS_LEDGER_URL": self.url, "CHAOS_LEDGER_SCHEMA": self.schema,
                "CHAOS_LEDGER_APP": self.application_name}  # fmt: skip

    def input(self) -> dict[str, Any]:
        return {"k": self.k, "activity": self.activity, "sleep_s": self.sleep_s}

    def start(self, client: Any, ids: Iterable[str]) -> None:
        for instance_id in ids:
            client.start_orchestration(instance_id, ORCHESTRATION, self.input())

    def expected(self, ids: Iterable[str]) -> dict[str, int]:
        return {instance_id: expected_output(instance_id, self.k) for instance_id in ids}

    def counts(self) -> LedgerCounts:
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(statement("ledger.sql", "counts", self.schema)).fetchone()
            mismatched = conn.execute(
                statement("ledger.sql", "effects_mismatched", self.schema)
            ).fetchone()
        assert row is not None and mismatched is not None
        return LedgerCounts(*row, mismatched[0])

    def attempts(self) -> list[tuple[int, str, int, int | None, str, int]]:
        """``(pid, worker_id, started_ms, completion_ms | None, instance_id, idx)`` of every
        attempt."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            return list(conn.execute(statement("ledger.sql", "attempts", self.schema)))
