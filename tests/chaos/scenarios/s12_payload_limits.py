"""Scenario 12: payloads over the limit are refused where they are produced, never retried.

The limit is ``duroxide.serialization.MAX_PAYLOAD_BYTES`` (``DUROXIDE_MAX_PAYLOAD_BYTES``, 16 MiB
by default). Client side, an oversized orchestration input, event or queue message raises
``PayloadTooLargeError`` and stores nothing. Runtime side, an orchestration that produces an
oversized activity result, output, activity input, sub-orchestration input, continue-as-new
input, custom status or KV value fails with an ``application`` error naming the limit, after
running the producing activity or orchestration code exactly once (no retry loop). A payload
at the limit itself (full size; 256 KiB at small size) is stored and returned intact. The
client refusals happen before any runtime runs, so the queue must hold exactly the one legal
message sent meanwhile; at the end no stored row anywhere is over the limit.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from duroxide import Client, Runtime, serialization
from duroxide.errors import PayloadTooLargeError
from tests.chaos.checker import EXPECT_FAILED
from tests.chaos.result import ChaosEnv, ScenarioResult
from tests.chaos.scenarios._common_b import (
    apply_checks,
    fast_options,
    query,
    running,
    tenant,
    wait_all,
)
from tests.pg import connect

NUMBER = 12
TITLE = "payload limits"
#: What a stored row adds around the one payload it carries (a history event's fields, a
#: message's kind and ids): a payload at the limit is legal, so its row may exceed the limit
#: by this much, never by a second payload.
ENVELOPE_BYTES = 4096
#: orchestration-side ways of producing an oversized payload
MODES = ("activity_result", "output", "activity_input", "sub_input", "continue_as_new",
         "custom_status", "kv_value")  # fmt: skip


def _oversized() -> str:
    """Over the limit by more than a row's envelope, so that one stored by mistake is found by
    the row-size check (the exact boundary is covered by the legal payload at the limit here
    and by the core's payload tests)."""
    return "x" * (serialization.MAX_PAYLOAD_BYTES + ENVELOPE_BYTES + 1)


def _register(runtime: Runtime, runs: Counter[str], lock: threading.Lock) -> None:
    """``runs`` counts each run of ``Big`` (``big:<id>``) and each first (non-replayed) run of
    ``Produce`` (``produce:<id>``): a retried turn or activity would count twice."""

    def big(ctx: Any, size: int) -> str:
        with lock:
            runs[f"big:{ctx.instance_id}"] += 1
        return "x" * size

    def echo(ctx: Any, value: Any) -> Any:
        return value

    def echo_orchestration(ctx: Any, value: Any) -> Any:
        result = yield ctx.schedule_activity("Echo", value)
        return result

    def produce(ctx: Any, mode: str) -> Any:
        if not ctx.is_replaying:
            with lock:
                runs[f"produce:{ctx.instance_id}"] += 1
        if mode == "activity_result":
            yield ctx.schedule_activity("Big", serialization.MAX_PAYLOAD_BYTES)
        elif mode == "output":
            return _oversized()
        elif mode == "activity_input":
            yield ctx.schedule_activity("Echo", _oversized())
        elif mode == "sub_input":
            yield ctx.schedule_sub_orchestration("EchoOrchestration", _oversized())
        elif mode == "continue_as_new":
            yield ctx.continue_as_new(_oversized())
        elif mode == "custom_status":
            ctx.set_custom_status(_oversized())
        elif mode == "kv_value":
            ctx.set_kv_value("k", _oversized())
        yield ctx.schedule_timer(1)
        return "not refused"

    runtime.register_activity("Big", big)
    runtime.register_activity("Echo", echo)
    runtime.register_orchestration("EchoOrchestration", echo_orchestration)
    runtime.register_orchestration("Produce", produce)


def _refused(call: Callable[[], object]) -> str | None:
    """The refusal message (a ``PayloadTooLargeError``), or None when the call was accepted;
    any other exception propagates."""
    try:
        call()
    except PayloadTooLargeError as exc:
        return str(exc)
    return None


def run(env: ChaosEnv) -> ScenarioResult:
    limit = serialization.MAX_PAYLOAD_BYTES
    legal_size = (limit - 2) if env.size == "full" else 256 * 1024 - 2  # +2 JSON quotes
    result = ScenarioResult(NUMBER, TITLE, reexecutions_allowed=False)
    schema = env.schema("s12_payload")
    runs: Counter[str] = Counter()
    lock = threading.Lock()
    with tenant(env.url, schema) as provider:
        client = Client(provider)
        runtime = Runtime(provider, fast_options())
        _register(runtime, runs, lock)
        # Refused calls first, with no runtime consuming the queue: nothing may be stored.
        client.start_orchestration("victim", "EchoOrchestration", "fine")
        client_refusals = {
            "input": _refused(lambda: client.start_orchestration("big-in", "Produce",
                                                                 _oversized())),
            "event": _refused(lambda: client.raise_event("victim", "e", _oversized())),
            "queue": _refused(lambda: client.enqueue_event("victim", "q", _oversized())),
        }  # fmt: skip
        with connect(env.url) as conn:
            queued = conn.execute(query("queued_for", schema), (["victim", "big-in"],)).fetchall()
        client_stored = [tuple(r) for r in queued] == [("victim", "StartOrchestration")]
        with running(runtime):
            ids = [f"produce-{mode}" for mode in MODES]
            for mode, instance_id in zip(MODES, ids, strict=True):
                client.start_orchestration(instance_id, "Produce", mode)
            legal = "y" * legal_size
            client.start_orchestration("legal", "EchoOrchestration", legal)
            result.started = len(ids) + 2
            statuses = wait_all(client, [*ids, "legal", "victim"], 120)
            errors = {i: client.get_status(i) for i in ids}
            legal_ok = client.get_status("legal").output == legal
        expected: dict[str, Any] = dict.fromkeys(ids, EXPECT_FAILED)
        expected |= {"victim": "fine"}
        apply_checks(result, env.url, [(schema, expected | {"legal": legal})])
        with connect(env.url) as conn:
            bound = {"limit": limit + ENVELOPE_BYTES}  # a row holds one payload and its envelope
            row = conn.execute(query("oversized_rows", schema), bound).fetchone()
        oversized = int(row[0]) if row else -1
    failures = {
        i: r.error or "" for i, r in errors.items()
        if r.status == "Failed" and r.error_category == "application"
    }  # fmt: skip
    unclear = [i for i in ids if "over the limit of" not in failures.get(i, "")]
    big_runs = runs["big:produce-activity_result"]
    result.activity_reexecutions = max(0, big_runs - 1)
    result.duplicate_effects = result.activity_reexecutions  # Big's effect: its count
    result.checks |= {
        "client refuses input/event/queue": all(client_refusals.values()),
        "nothing queued for refused calls": client_stored,
        "nothing over the limit stored": oversized == 0,
        "runtime refusals fail clearly": not unclear,
        "oversized activity result ran once": big_runs == 1,
        "producing turns ran once": all(runs[f"produce:{i}"] == 1 for i in ids),
        "payload at the limit round-trips": legal_ok and statuses.get("legal") == "Completed",
    }
    sample = failures.get("produce-activity_result", "")[:90]
    result.detail = (
        f"limit {limit} B; legal {legal_size + 2} B; e.g. {sample!r}"
        + (f"; unclear: {unclear}" if unclear else "")
        + (f" {result.detail}" if result.detail else "")
    )
    return result
