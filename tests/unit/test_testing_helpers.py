"""The public ``duroxide.testing`` helpers: factories encode like the SDK, the Harness commits like
the runtime, and ``replay_history`` catches code that no longer produces a history."""

import pytest

from duroxide.registry import Registry
from duroxide.replay import TurnStatus
from duroxide.testing import (
    Harness,
    Raw,
    ReplayMismatchError,
    activity_completed,
    activity_done,
    activity_scheduled,
    continue_msg,
    enqueue_msg,
    external_event,
    output_of,
    raise_msg,
    replay_history,
    start_msg,
    started,
    sub_orch_scheduled,
    timers_of,
)

# --- factories -----------------------------------------------------------------------------------


def test_payload_arguments_are_json_encoded_once():
    assert activity_completed(3, source=2, result={"a": [1, None]}).result == '{"a":[1,null]}'
    assert activity_scheduled(2, "A", "text").input == '"text"'
    assert external_event(4, "e", None).data == "null"
    assert raise_msg("e", 5).data == "5"
    assert enqueue_msg("q", "s").data == '"s"'
    assert activity_done(2, True).result == "true"


def test_raw_payloads_are_stored_as_given():
    assert activity_completed(3, source=2, result=Raw("{broken")).result == "{broken"
    assert start_msg("O", Raw(None)).input is None


def test_started_encodes_carried_queue_and_normalises_kv():
    event = started("O", 1, carried_queue=[("jobs", {"id": 1})], kv={"a": "x", "b": ("y", 50)})

    assert event.carried_queue == [["jobs", '{"id":1}']]
    assert event.kv == {"a": ["x", 0], "b": ["y", 50]}
    assert continue_msg(2, "O", kv={"a": "x"}).kv == {"a": ["x", 0]}


def test_sub_orch_scheduled_uses_the_default_child_id_unless_one_is_given():
    assert sub_orch_scheduled(4, "Child").instance_id == "i::sub::4"
    assert not sub_orch_scheduled(4, "Child").explicit_id
    explicit = sub_orch_scheduled(4, "Child", instance_id="c-1")
    assert (explicit.instance_id, explicit.explicit_id) == ("c-1", True)


# --- Harness -------------------------------------------------------------------------------------


def wait_twice(ctx, _):
    a = yield ctx.wait_for_event("e")
    b = yield ctx.wait_for_event("e")
    return [a, b]


def test_harness_accepts_a_registry_or_a_mapping_with_versions():
    registry = Registry()
    registry.add_orchestration("O", wait_twice, "3.0.0")

    assert Harness(registry).start().orchestration_version == "3.0.0"
    assert Harness({("O", "2.0.0"): wait_twice}).start().orchestration_version == "2.0.0"


def test_harness_dry_run_does_not_commit():
    h = Harness({"O": wait_twice})
    h.start()
    before = list(h.history)

    r = h.turn(raise_msg("e", 1), commit=False)

    assert len(r.new_events) == 2
    assert h.history == before


def test_harness_does_not_commit_turns_the_runtime_would_not_write():
    h = Harness({"O": wait_twice})
    assert h.start("Nope").status is TurnStatus.UNREGISTERED
    assert h.history == []

    assert h.turn(raise_msg("e")).status is TurnStatus.DROPPED
    assert h.history == []


def test_harness_moves_to_the_next_execution_after_continue_as_new():
    def orch(ctx, n):
        if n < 2:
            yield ctx.continue_as_new(n + 1)
        return n

    h = Harness({"O": orch})
    assert h.start("O", 0).status is TurnStatus.CONTINUED_AS_NEW
    assert h.execution_id == 2 and h.history == []

    h.turn()
    r = h.turn()

    assert output_of(r) == 2
    assert [h.executions[n][0].input for n in (1, 2, 3)] == ["0", "1", "2"]


# --- replay_history ------------------------------------------------------------------------------


def recorded_history():
    h = Harness({"O": wait_twice}, now_ms=10)
    h.start()
    h.turn(raise_msg("e", "x"), now_ms=20)
    h.turn(raise_msg("e", "y"), now_ms=30)
    return h.history


def test_replay_history_accepts_the_code_that_produced_the_history():
    r = replay_history(recorded_history(), {"O": wait_twice})

    assert r.status is TurnStatus.COMPLETED
    assert output_of(r) == ["x", "y"]


def test_replay_history_reports_a_changed_result_with_the_event():
    def changed(ctx, _):
        a = yield ctx.wait_for_event("e")
        b = yield ctx.wait_for_event("e")
        return [b, a]

    with pytest.raises(ReplayMismatchError) as raised:
        replay_history(recorded_history(), {"O": changed})

    assert str(raised.value).startswith("event 6: history recorded ('OrchestrationCompleted'")


def test_replay_history_reports_a_changed_first_decision():
    def changed(ctx, _):
        a = yield ctx.wait_for_event("other")
        return [a]

    with pytest.raises(ReplayMismatchError, match=r"event 2: history recorded .*\"name\":\"e\""):
        replay_history(recorded_history(), {"O": changed})


def test_replay_history_catches_code_that_is_not_replay_safe():
    runs = []

    def depends_on_outside_state(ctx, _):
        runs.append(1)
        name = "e" if len(runs) == 1 else "changed"  # like reading the clock or a file
        a = yield ctx.wait_for_event(name)
        b = yield ctx.wait_for_event(name)
        return [a, b]

    with pytest.raises(ReplayMismatchError, match=r"turn error: nondeterministic orchestration"):
        replay_history(recorded_history(), {"O": depends_on_outside_state})


def test_non_strict_replay_tolerates_what_the_engine_tolerates_but_not_nondeterminism():
    def timed(delay, name):
        def orch(ctx, _):
            yield ctx.schedule_timer(delay)
            return (yield ctx.schedule_activity(name, None))

        return orch

    h = Harness({"O": timed(100, "A")})
    h.start()
    h.turn(*timers_of(h.last), now_ms=100)
    h.turn(activity_done(4, "ok"), now_ms=200)

    with pytest.raises(ReplayMismatchError, match="fire_at_ms"):
        replay_history(h.history, {"O": timed(999, "A")})
    assert output_of(replay_history(h.history, {"O": timed(999, "A")}, strict=False)) == "ok"
    with pytest.raises(
        ReplayMismatchError, match="nondeterministic orchestration: history event 4"
    ):
        replay_history(h.history, {"O": timed(100, "Renamed")}, strict=False)


def test_replay_history_needs_a_start_event():
    with pytest.raises(ValueError, match="starts with OrchestrationStarted"):
        replay_history([activity_scheduled(2, "A")], {"O": wait_twice})


def test_replay_history_handles_a_continued_execution():
    def orch(ctx, n):
        got = yield ctx.dequeue_event("q")
        if n == 0:
            yield ctx.continue_as_new(1)
        yield ctx.schedule_timer(5)
        return got

    h = Harness({"O": orch})
    h.start("O", 0)
    h.turn(enqueue_msg("q", "a"), enqueue_msg("q", "b"))
    h.turn()
    h.turn(*timers_of(h.last), now_ms=5)

    r = replay_history(h.executions[2], {"O": orch}, execution_id=2)

    assert output_of(r) == "b"
