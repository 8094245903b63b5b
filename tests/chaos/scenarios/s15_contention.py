"""Scenario 15: 16 dispatchers contend for ready instances through the provider API.

Every instance is made ready ``ROUNDS`` times: a dispatcher that claims it
(``fetch_orchestration_items``) acks the claim (consuming its messages) and only then makes it
ready again (``enqueue_orchestrator``), so each instance is claimed exactly ``ROUNDS`` times in
sequence. Each claim is timed from the fetch's return to the ack's start — an interval in which
the dispatcher certainly holds the lock — and no two intervals of one instance may overlap
(double claim). A fetch that comes back empty although, counting from before it began, more
instances were ready than every other dispatcher could have had claimed-but-not-yet-returned,
is a false "empty".
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from duroxide import Client
from duroxide.providers.base import OrchestrationAck
from duroxide.work_items import EventRaised
from tests.chaos.harness import p99
from tests.chaos.result import ChaosEnv, ScenarioResult
from tests.chaos.scenarios._common_b import query, tenant
from tests.pg import connect

NUMBER = 15
TITLE = "16 dispatchers contending"
DISPATCHERS = 16
BATCH = 2
ROUNDS = 3
LOCK_MS = 60_000


@dataclass
class _Board:
    """Shared counters (under one lock) and what the dispatchers saw."""

    target: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    enqueued: int = 0  # readiness made visible (committed enqueues)
    claimed: int = 0  # claims returned by fetches
    acked: int = 0
    rounds: dict[str, int] = field(default_factory=dict)
    intervals: dict[str, list[tuple[float, float]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    empties: int = 0
    false_empties: int = 0
    fetches: int = 0
    errors: list[str] = field(default_factory=list)
    claim_ms: list[float] = field(default_factory=list)


def _dispatcher(provider: Any, board: _Board, name: str) -> None:
    while True:
        with board.lock:
            if board.acked >= board.target or board.errors:
                return
            enqueued_before = board.enqueued
        started = time.monotonic()
        try:
            items = provider.fetch_orchestration_items(LOCK_MS, BATCH, dispatcher_id=name)
        except Exception as exc:  # a contender error is a finding, not a crash
            with board.lock:
                board.errors.append(f"{name} fetch: {exc!r}")
            return
        got = time.monotonic()
        with board.lock:
            board.fetches += 1
            board.claimed += len(items)
            board.claim_ms.append((got - started) * 1000)
            if not items:
                board.empties += 1
                # ready throughout the fetch: made ready before it began, not claimed by its
                # end, minus what the other dispatchers' unreturned fetches may hold
                if enqueued_before - board.claimed - (DISPATCHERS - 1) * BATCH > 0:
                    board.false_empties += 1
        for item in items:
            held_until = time.monotonic()
            try:
                provider.ack_orchestration_item(item.lock_token, OrchestrationAck(instance=None))
            except Exception as exc:
                with board.lock:
                    board.errors.append(f"{name} ack {item.instance_id}: {exc!r}")
                return
            with board.lock:
                board.intervals[item.instance_id].append((got, held_until))
                board.acked += 1
                board.rounds[item.instance_id] += 1
                again = board.rounds[item.instance_id] < ROUNDS
            if again:
                try:
                    provider.enqueue_orchestrator(item.instance_id, EventRaised(name="round"))
                except Exception as exc:
                    with board.lock:
                        board.errors.append(f"{name} enqueue {item.instance_id}: {exc!r}")
                    return
                with board.lock:
                    board.enqueued += 1
        if not items:
            time.sleep(0.002)


def _overlaps(intervals: list[tuple[float, float]]) -> int:
    ordered = sorted(intervals)
    return sum(1 for a, b in itertools.pairwise(ordered) if b[0] < a[1])


def run(env: ChaosEnv) -> ScenarioResult:
    count = 300 if env.size == "small" else 1000
    result = ScenarioResult(NUMBER, TITLE, reexecutions_allowed=False)
    schema = env.schema("s15_contention")
    board = _Board(target=count * ROUNDS)
    ids = [f"ready-{n:05d}" for n in range(count)]
    board.rounds = dict.fromkeys(ids, 0)
    with tenant(env.url, schema, max_size=DISPATCHERS + 2) as provider:
        client = Client(provider)
        for instance_id in ids:
            client.start_orchestration(instance_id, "Nothing", None)
        board.enqueued = count
        result.started = count
        threads = [
            threading.Thread(target=_dispatcher, args=(provider, board, f"d{k}"), daemon=True)
            for k in range(DISPATCHERS)
        ]
        began = time.monotonic()
        for thread in threads:
            thread.start()
        deadline = began + (60 if env.size == "small" else 180)
        for thread in threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        timed_out = any(t.is_alive() for t in threads)
        if timed_out:
            with board.lock:  # an error stops every dispatcher at its next round
                board.errors.append("dispatchers did not finish in time")
            for thread in threads:
                thread.join(10)  # before the schema is dropped under them
        elapsed = time.monotonic() - began
        with connect(env.url) as conn:
            row = conn.execute(query("queued_messages", schema)).fetchone()
        left = int(row[0]) if row else -1
    double = sum(_overlaps(v) for v in board.intervals.values())
    short = sum(1 for n in board.rounds.values() if n < ROUNDS)  # a round's readiness lost
    extra = sum(n - ROUNDS for n in board.rounds.values() if n > ROUNDS)  # acked twice
    result.completed = sum(1 for n in board.rounds.values() if n == ROUNDS)
    result.lost = short
    # No history is written here: a double claim (or a round acked twice) is the duplicate.
    result.duplicate_events = double + extra
    result.checks = {
        "no double claims": double == 0,
        "every claim returned once per round": board.claimed == count * ROUNDS,
        "no false empty": board.false_empties == 0,
        "queue drained": left == 0,
        "no dispatcher errors": not board.errors,
    }
    claim_p99 = p99(board.claim_ms) or 0.0
    result.detail = (
        f"{board.claimed} claims by {DISPATCHERS} dispatchers in {elapsed:.1f} s, "
        f"{board.fetches} fetches ({board.empties} empty, {board.false_empties} false), "
        f"fetch p99 {claim_p99:.1f} ms" + (f"; {board.errors[0]}" if board.errors else "")
    )
    return result
