"""The application the cluster tests run: ``--app cluster_test_app:setup``.

Every activity, when it starts, appends one line
``<instance_id> <activity_id> <activity_name> <worker_id> <pid> <trace_id>`` to the file named
by ``CLUSTER_TEST_EFFECTS`` (one ``O_APPEND`` write, so lines from many processes never
interleave), so a test can count how often each activity ran (or began to run), where, and in
which trace (the W3C trace id of the span it runs in, ``-`` for none).

* ``Chain(n)``: ``n`` sequential ``Step`` activities; returns their sum.
* ``Mixed(fail)``: two untagged ``Step`` activities and one ``Render`` tagged ``gpu``; when
  ``fail`` is true the ``Render`` raises and the orchestration fails.
* ``Slow(seconds)``: one ``Sleep`` activity of that many seconds, then a ``Step``.

``CLUSTER_TEST_BROKEN_CHILD=worker-0`` makes ``setup`` raise in that child only.
"""

from __future__ import annotations

import os
import time
from typing import Any

STEP_DELAY_S = float(os.environ.get("CLUSTER_TEST_STEP_DELAY_S", "0.01"))


def _record(ctx: Any) -> None:
    path = os.environ.get("CLUSTER_TEST_EFFECTS")
    if not path:
        return
    line = (f"{ctx.instance_id} {ctx.activity_id} {ctx.activity_name} {ctx.worker_id} "
            f"{os.getpid()} {_trace_id()}\n")  # fmt: skip
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _trace_id() -> str:
    """The trace id of the current span (with or without an SDK installed), or ``-``."""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else "-"


def step(ctx: Any, n: int) -> int:
    _record(ctx)
    time.sleep(STEP_DELAY_S)
    return n


def render(ctx: Any, fail: bool) -> str:
    _record(ctx)
    if fail:
        raise RuntimeError("render failed")
    return f"rendered on {ctx.worker_id}"


def sleep(ctx: Any, seconds: float) -> float:
    """Ignores cancellation on purpose: at shutdown it is still running when its lock is
    released, and its process exits under it."""
    _record(ctx)
    time.sleep(seconds)
    return seconds


def chain(ctx: Any, n: int) -> Any:
    ctx.trace_info("chain started")  # logged once: replays of this line are silent
    total = 0
    for i in range(n):
        total += yield ctx.schedule_activity("Step", i)
    ctx.trace_info(f"chain of {n} done")
    return total


def mixed(ctx: Any, fail: bool) -> Any:
    a = yield ctx.schedule_activity("Step", 1)
    b = yield ctx.schedule_activity("Step", 2)
    rendered = yield ctx.schedule_activity("Render", fail).with_tag("gpu")
    return [a, b, rendered]


def slow(ctx: Any, seconds: float) -> Any:
    slept = yield ctx.schedule_activity("Sleep", seconds)
    done = yield ctx.schedule_activity("Step", 7)
    return [slept, done]


def setup(runtime: Any) -> None:
    broken = os.environ.get("CLUSTER_TEST_BROKEN_CHILD")  # e.g. "worker-0": it never starts
    if broken and (runtime.options.worker_node_id or "").endswith(f"-{broken}"):
        raise RuntimeError(f"{broken} is configured to fail")
    runtime.register_orchestration("Chain", chain)
    runtime.register_orchestration("Mixed", mixed)
    runtime.register_orchestration("Slow", slow)
    runtime.register_activity("Step", step)
    runtime.register_activity("Render", render)
    runtime.register_activity("Sleep", sleep)
