"""Nondeterminism: the code no longer makes the decisions its history recorded.

Each test replays a hand-written history against changed code. The instance must fail with a
``configuration`` error of kind ``nondeterminism`` whose message shows what history recorded and
what the code does now — the two things a developer needs to find the change.
"""

import pytest

from duroxide.errors import ErrorCategory
from duroxide.replay import TurnInput, TurnResult, TurnStatus, run_turn
from duroxide.testing import (
    activity_completed,
    activity_done,
    activity_scheduled,
    as_handler_lookup,
    custom_status_updated,
    external_subscribed,
    kinds,
    kv_set,
    raise_msg,
    started,
    sub_orch_scheduled,
    timer_created,
    timer_fired,
    timer_msg,
)


def replay(history, orch, *messages) -> TurnResult:
    return run_turn(TurnInput(
        instance_id="i", execution_id=1, history=history, messages=list(messages), now_ms=0,
        handlers=as_handler_lookup({"O": orch}),
    ))  # fmt: skip


def assert_nondeterministic(r: TurnResult, *fragments: str) -> None:
    assert r.status is TurnStatus.FAILED
    assert r.error.category is ErrorCategory.CONFIGURATION
    assert r.error.kind == "nondeterminism"
    assert r.error.message.startswith("nondeterministic orchestration")
    for fragment in fragments:
        assert fragment in r.error.message
    assert kinds(r.new_events)[-1] == "OrchestrationFailed"


A_THEN_B = [
    started(),
    activity_scheduled(2, "A", 1),
    activity_completed(3, source=2, result="a"),
    activity_scheduled(4, "B", 2),
]


def test_a_renamed_activity_is_reported_with_both_names():
    def orch(ctx, _):
        yield ctx.schedule_activity("A", 1)
        yield ctx.schedule_activity("B_renamed", 2)

    r = replay(A_THEN_B, orch, activity_done(4))

    assert_nondeterministic(
        r, "history event 4 recorded schedule_activity('B', input='2')",
        "the code now does schedule_activity('B_renamed', input='2')",
    )  # fmt: skip


def test_a_changed_activity_input_is_reported_with_both_inputs():
    def orch(ctx, _):
        yield ctx.schedule_activity("A", 1)
        yield ctx.schedule_activity("B", {"now": "different"})

    r = replay(A_THEN_B, orch, activity_done(4))

    assert_nondeterministic(
        r, "recorded schedule_activity('B', input='2')",
        """now does schedule_activity('B', input='{"now":"different"}')""",
    )  # fmt: skip


def test_an_extra_step_is_reported_against_the_step_history_has_there():
    def orch(ctx, _):
        yield ctx.schedule_activity("A", 1)
        yield ctx.schedule_timer(1000)  # new
        yield ctx.schedule_activity("B", 2)

    r = replay(A_THEN_B, orch, activity_done(4))

    assert_nondeterministic(
        r, "history event 4 recorded schedule_activity('B', input='2')",
        "the code now does schedule_timer(...)",
    )  # fmt: skip


def test_a_missing_step_is_reported_by_the_step_the_code_no_longer_makes():
    def orch(ctx, _):
        yield ctx.schedule_activity("A", 1)
        return "done early"  # B was removed

    r = replay(A_THEN_B, orch, activity_done(4))

    assert_nondeterministic(
        r, "history event 4 recorded schedule_activity('B', input='2'), but the code no longer "
        "does it",
    )  # fmt: skip


def test_a_missing_step_in_the_middle_is_reported():
    history = [
        started(),
        activity_scheduled(2, "A", 1),
        activity_completed(3, source=2),
        timer_created(4, fire_at_ms=100),
        timer_fired(5, source=4, fire_at_ms=100),
        activity_scheduled(6, "B", 2),
    ]

    def orch(ctx, _):
        yield ctx.schedule_activity("A", 1)
        yield ctx.schedule_activity("B", 2)  # the timer in between was removed

    r = replay(history, orch, activity_done(6))

    assert_nondeterministic(
        r, "history event 4 recorded schedule_timer(...)", "now does schedule_activity('B'"
    )


def test_parallel_steps_made_sequential_are_reported():
    history = [
        started(),
        activity_scheduled(2, "A", 1),
        activity_scheduled(3, "B", 2),
        activity_completed(4, source=2),
    ]

    def orch(ctx, _):
        yield ctx.all([ctx.schedule_activity("A", 1), ctx.schedule_activity("B", 2)])

    def changed(ctx, _):
        yield ctx.schedule_activity("A", 1)  # no longer in parallel with B
        yield ctx.schedule_activity("C", 3)

    assert replay(history, orch, activity_done(3)).status is TurnStatus.COMPLETED
    r = replay(history, changed, activity_done(3))

    assert_nondeterministic(
        r, "history event 3 recorded schedule_activity('B', input='2'), but the code no longer "
        "does it (it is waiting on an earlier task)",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("recorded", "now", "fragments"),
    [
        ({"tag": "gpu"}, {}, ["recorded schedule_activity('Train', input='1', tag='gpu')",
                              "now does schedule_activity('Train', input='1')"]),
        ({"tag": "gpu"}, {"tag": "cpu"}, ["tag='gpu'", "tag='cpu'"]),
        ({"session_id": "s1"}, {"session_id": "s2"}, ["session_id='s1'", "session_id='s2'"]),
    ],
)  # fmt: skip
def test_a_changed_tag_or_session_is_nondeterministic(recorded, now, fragments):
    history = [started(), activity_scheduled(2, "Train", 1, **recorded)]

    def orch(ctx, _):
        task = ctx.schedule_activity("Train", 1, now.get("session_id"))
        if "tag" in now:
            task.with_tag(now["tag"])
        yield task

    assert_nondeterministic(replay(history, orch, activity_done(2)), *fragments)


def test_a_timer_replaced_by_an_event_wait_is_nondeterministic():
    history = [started(), timer_created(2, fire_at_ms=100)]

    def orch(ctx, _):
        yield ctx.wait_for_event("go")

    r = replay(history, orch, raise_msg("go"))

    assert_nondeterministic(r, "recorded schedule_timer(...)", "now does wait_for_event('go')")


def test_a_timer_with_a_different_delay_is_still_the_same_timer():
    history = [started(), timer_created(2, fire_at_ms=100)]

    def orch(ctx, _):
        yield ctx.schedule_timer(99_999)
        return "ok"

    assert replay(history, orch, timer_msg(2, 100)).status is TurnStatus.COMPLETED


def test_a_changed_child_orchestration_is_nondeterministic():
    history = [started(), sub_orch_scheduled(2, "Child", 1, instance_id="child-a")]

    def orch(ctx, _):
        yield ctx.schedule_sub_orchestration_with_id("Child", "child-b", 1)

    r = replay(history, orch, raise_msg("unrelated"))

    assert_nondeterministic(
        r, "recorded schedule_sub_orchestration('Child', id='child-a', input='1')",
        "now does schedule_sub_orchestration('Child', id='child-b', input='1')",
    )  # fmt: skip


def test_a_changed_custom_status_is_nondeterministic():
    history = [started(), custom_status_updated(2, "step 1"), external_subscribed(3, "go")]

    def orch(ctx, _):
        ctx.set_custom_status("step one")
        yield ctx.wait_for_event("go")

    r = replay(history, orch, raise_msg("go"))

    assert_nondeterministic(
        r, "recorded set_custom_status('step 1')", "now does set_custom_status('step one')"
    )


def test_a_changed_kv_write_is_nondeterministic_and_writes_no_kv_changes():
    history = [started(), kv_set(2, "mode", "fast"), external_subscribed(3, "go")]

    def orch(ctx, _):
        ctx.set_kv_value("mode", "slow")
        yield ctx.wait_for_event("go")
        ctx.set_kv_value("after", "x")

    r = replay(history, orch, raise_msg("go"))

    assert_nondeterministic(
        r, "recorded set_kv_value('mode', 'fast')", "now does set_kv_value('mode', 'slow')"
    )
    assert r.kv_upserts == {} and r.kv_deletes == set()


def test_user_code_cannot_swallow_nondeterminism():
    def orch(ctx, _):
        try:
            yield ctx.schedule_activity("A", 1)
            yield ctx.schedule_activity("Different", 2)
        except BaseException:
            return "swallowed"

    r = replay(A_THEN_B, orch, activity_done(4))

    assert_nondeterministic(r, "recorded schedule_activity('B'", "schedule_activity('Different'")


def test_a_completion_for_work_history_never_scheduled_is_nondeterministic():
    def orch(ctx, _):
        yield ctx.schedule_activity("A", 1)

    r = replay([started(), activity_scheduled(2, "A", 1)], orch, activity_done(7, "?"))

    assert_nondeterministic(
        r, "received ActivityCompleted for event 7, but history has no ActivityScheduled"
    )


def test_the_same_code_replays_the_same_history_cleanly():
    def orch(ctx, _):
        a = yield ctx.schedule_activity("A", 1)
        b = yield ctx.schedule_activity("B", 2)
        return [a, b]

    r = replay(A_THEN_B, orch, activity_done(4, "b"))

    assert r.status is TurnStatus.COMPLETED
    assert r.output == '["a","b"]'
