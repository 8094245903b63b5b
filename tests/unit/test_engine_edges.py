"""Engine edge cases found in review: each test pins a bug that once existed."""

from __future__ import annotations

from typing import Any

import pytest

from duroxide.errors import ErrorCategory
from duroxide.registry import Registry
from duroxide.replay import TurnInput, TurnStatus, run_turn
from duroxide.testing import Harness, activity_done
from duroxide.work_items import ContinueAsNew, StartOrchestration, SubOrchCompletedMsg


def test_continue_as_new_reached_only_by_changed_code_fails_without_starting_a_new_execution():
    def v1(ctx: Any, _: Any) -> Any:
        yield ctx.schedule_activity("A", 1)
        yield ctx.schedule_activity("B", 2)
        return "done"

    def v2(ctx: Any, n: Any) -> Any:  # changed: continues as new where v1 went on
        yield ctx.schedule_activity("A", 1)
        yield ctx.continue_as_new(n)

    h = Harness({"O": v1})
    h.start("O", 0)
    h.turn(activity_done(2, "a"))
    registry = Registry()
    registry.add_orchestration("O", v2)

    r = run_turn(TurnInput(instance_id="i", execution_id=1, history=h.history,
                           messages=[activity_done(4, "b")], now_ms=10,
                           handlers=registry))  # fmt: skip

    assert r.status is TurnStatus.FAILED
    assert r.error is not None and r.error.category is ErrorCategory.CONFIGURATION
    assert r.next_execution_id is None
    assert not any(isinstance(o.message, ContinueAsNew) for o in r.orchestrator_items)


def test_default_child_ids_differ_in_every_execution():
    def parent(ctx: Any, n: int) -> Any:
        yield ctx.schedule_sub_orchestration("Child", n)
        if n < 2:
            yield ctx.continue_as_new(n + 1)
        return n

    h = Harness({"P": parent, "Child": lambda ctx, x: x})
    ids = []
    result = h.start("P", 0)
    for _ in range(3):
        start = next(o for o in result.orchestrator_items
                     if isinstance(o.message, StartOrchestration))  # fmt: skip
        ids.append(start.instance_id)
        result = h.turn(SubOrchCompletedMsg(execution_id=h.execution_id, event_id=2, result="1"))
        if result.next_execution_id:
            result = h.turn()  # the ContinueAsNew message starts the next execution
    assert ids == ["i::sub::2", "i::sub::2.2", "i::sub::3.2"]
    assert result.status is TurnStatus.COMPLETED


def test_a_cross_instance_kv_read_goes_through_the_reader_without_a_second_pass():
    reads: list[tuple[str, str]] = []

    def orch(ctx: Any, _: Any) -> Any:
        value = yield ctx.get_kv_value_from_instance("other", "k")
        return value

    registry = Registry()
    registry.add_orchestration("O", orch)

    def reader(instance: str, key: str) -> str:
        reads.append((instance, key))
        return "v"

    r = run_turn(TurnInput(instance_id="i", execution_id=1, history=[],
                           messages=[StartOrchestration(name="O")], now_ms=1,
                           handlers=registry, kv_reader=reader))  # fmt: skip
    assert r.status is TurnStatus.COMPLETED and r.output == '"v"'
    assert reads == [("other", "k")]
    recorded = [e for e in r.new_events if e.kind == "SystemCall"]
    assert recorded and recorded[0].value == "v"  # type: ignore[attr-defined]


@pytest.mark.parametrize("delay", [10**30, float("inf"), 2 * 10**13])
def test_an_absurd_timer_delay_is_refused_at_the_call_site(delay: float):
    def orch(ctx: Any, _: Any) -> Any:
        try:
            yield ctx.schedule_timer(delay)
        except (ValueError, TypeError) as exc:
            return f"refused: {exc}"
        return "scheduled"

    output = Harness({"O": orch}).start("O").output
    assert output is not None and output.startswith('"refused:')


def test_an_exception_whose_str_raises_system_exit_fails_the_instance_cleanly():
    class Nasty(Exception):
        def __str__(self) -> str:
            raise SystemExit(9)

    def orch(ctx: Any, _: Any) -> Any:
        yield ctx.utc_now()
        raise Nasty

    r = Harness({"O": orch}).start("O")
    assert r.status is TurnStatus.FAILED
    assert r.error is not None and "Nasty" in r.error.message
