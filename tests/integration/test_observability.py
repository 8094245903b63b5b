"""What the runtime reports: instrument hooks, one trace per workflow; both optional."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from duroxide import Client, Runtime, RuntimeOptions, SqliteProvider
from duroxide.observability.instruments import Instruments


class Recorder(Instruments):
    def __init__(self) -> None:
        self.calls: Counter[tuple[Any, ...]] = Counter()
        self.provider_ops: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _add(self, *key: Any) -> None:
        with self._lock:
            self.calls[key] += 1

    def orchestration_started(self, name: str) -> None:
        self._add("started", name)

    def orchestration_finished(self, name: str, outcome: str, category: str | None,
                               duration_s: float | None) -> None:  # fmt: skip
        assert duration_s is not None and duration_s >= 0
        self._add("finished", name, outcome, category)

    def turn(self, name: str, duration_s: float) -> None:
        self._add("turn", name)

    def activity(self, name: str, tag: str | None, outcome: str, duration_s: float) -> None:
        self._add("activity", name, tag, outcome)

    def provider_call(self, operation: str, duration_s: float, failed: bool) -> None:
        with self._lock:
            self.provider_ops[operation] += 1


def _workflow(ctx: Any, n: int) -> Any:
    total = 0
    for i in range(n):
        total += yield ctx.schedule_activity("Add", i)
    if n == 0:
        raise ValueError("nothing to add")
    return total


def test_the_runtime_reports_turns_activities_outcomes_and_provider_calls() -> None:
    provider = SqliteProvider.in_memory()
    recorder = Recorder()
    runtime = Runtime(provider, RuntimeOptions(dispatcher_poll_interval_ms=20),
                      instruments=recorder)  # fmt: skip
    runtime.register_orchestration("Sum", _workflow)
    runtime.register_activity("Add", lambda ctx, x: x)
    runtime.start()
    client = Client(provider)
    try:
        client.start_orchestration("ok", "Sum", 3)
        client.start_orchestration("bad", "Sum", 0)
        assert client.wait_for_orchestration("ok", 5_000).output == 3
        assert client.wait_for_orchestration("bad", 5_000).status == "Failed"
    finally:
        runtime.shutdown(1_000)
    calls = recorder.calls
    assert calls[("started", "Sum")] == 2
    assert calls[("finished", "Sum", "completed", None)] == 1
    assert calls[("finished", "Sum", "failed", "application")] == 1
    assert calls[("activity", "Add", None, "completed")] == 3
    assert calls[("turn", "Sum")] == 5  # 4 turns for "ok", 1 for "bad"
    # batched operations: fewer calls than items under load, never more
    assert 1 <= recorder.provider_ops["fetch_orchestration_items"] <= 5 + 100  # idle polls too
    assert 1 <= recorder.provider_ops["ack_orchestration_items"] <= 5
    assert 1 <= recorder.provider_ops["ack_work_items"] <= 3


@pytest.fixture(scope="module")
def spans() -> Any:
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer_provider = sdk.TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)
    return exporter


def test_one_trace_covers_the_client_call_every_turn_and_every_activity(spans: Any) -> None:
    from opentelemetry import trace

    def parent(ctx: Any, _: Any) -> Any:
        a = yield ctx.schedule_activity("Add", 1)
        b = yield ctx.schedule_sub_orchestration("Sum", 2)
        return a + b

    provider = SqliteProvider.in_memory()
    runtime = Runtime(provider, RuntimeOptions(dispatcher_poll_interval_ms=20))
    runtime.register_orchestration("Sum", _workflow)
    runtime.register_orchestration("Parent", parent)
    runtime.register_activity("Add", lambda ctx, x: x)
    runtime.start()
    client = Client(provider)
    try:
        with trace.get_tracer("test").start_as_current_span("http request") as request:
            client.start_orchestration("traced", "Parent")
        assert client.wait_for_orchestration("traced", 5_000).output == 2
    finally:
        runtime.shutdown(1_000)
    trace_id = request.get_span_context().trace_id
    ours = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
    names = Counter(s.name for s in ours)
    assert names["activity Add"] == 3  # 1 in the parent, 2 in the child
    assert names["orchestration.turn"] == 6  # parent: 3 turns, child: 3; none for replays
    turn_instances = {s.attributes["duroxide.instance_id"] for s in ours
                      if s.name == "orchestration.turn"}  # fmt: skip
    assert turn_instances == {"traced", "traced::sub::4"}
    request_id = request.get_span_context().span_id
    assert all(s.parent is not None and s.parent.span_id == request_id
               for s in ours if s.name != "http request")  # fmt: skip


def test_observability_packages_are_optional(tmp_path: Path) -> None:
    """With opentelemetry and prometheus_client unimportable, a workflow still runs."""
    script = tmp_path / "blocked.py"
    script.write_text(
        "import sys\n"
        "for name in ('opentelemetry', 'prometheus_client', 'multiprocess'):\n"
        "    sys.modules[name] = None  # any import of it now raises ImportError\n"
        "from duroxide import Client, Runtime, SqliteProvider\n"
        "p = SqliteProvider.in_memory()\n"
        "rt = Runtime(p)\n"
        "rt.register_activity('A', lambda ctx, x: x + 1)\n"
        "def o(ctx, x):\n"
        "    return (yield ctx.schedule_activity('A', x))\n"
        "rt.register_orchestration('O', o)\n"
        "rt.start()\n"
        "c = Client(p)\n"
        "c.start_orchestration('i', 'O', 41)\n"
        "print(c.wait_for_orchestration('i', 5000).output)\n"
        "rt.shutdown(1000)\n"
        "assert 'opentelemetry.trace' not in sys.modules\n"
    )
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=60, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "42"


def test_activities_see_the_clients_trace_without_an_sdk_tracer_provider(tmp_path: Path) -> None:
    """No spans are built without an SDK provider, yet activity code still runs inside the
    client's trace context, so it can log the trace id or pass it on to other services."""
    script = tmp_path / "no_sdk.py"
    script.write_text(
        "from opentelemetry import trace\n"
        "from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags\n"
        "from duroxide import Client, Runtime, SqliteProvider\n"
        "p = SqliteProvider.in_memory()\n"
        "rt = Runtime(p)\n"
        "def seen(ctx, _):\n"
        "    c = trace.get_current_span().get_span_context()\n"
        "    return format(c.trace_id, '032x') if c.is_valid else '-'\n"
        "rt.register_activity('Seen', seen)\n"
        "def o(ctx, _):\n"
        "    return (yield ctx.schedule_activity('Seen', None))\n"
        "rt.register_orchestration('O', o)\n"
        "rt.start()\n"
        "c = Client(p)\n"
        "parent = SpanContext(0xABC, 0x1234, is_remote=False, trace_flags=TraceFlags(1))\n"
        "with trace.use_span(NonRecordingSpan(parent)):\n"
        "    c.start_orchestration('traced', 'O')\n"
        "c.start_orchestration('plain', 'O')\n"
        "print(c.wait_for_orchestration('traced', 5000).output)\n"
        "print(c.wait_for_orchestration('plain', 5000).output)\n"
        "rt.shutdown(1000)\n"
    )
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=60, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [format(0xABC, "032x"), "-"]
