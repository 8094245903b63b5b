"""How the engine treats the user's orchestration function: plain functions, exceptions, bad
yields, outputs that cannot be stored, tracing and ``is_replaying``."""

import contextlib

import pytest

from duroxide.errors import ErrorCategory
from duroxide.replay import TurnStatus
from duroxide.testing import Harness, activity_done, output_of, raise_msg

# --- plain functions and outputs -----------------------------------------------------------------


def test_a_plain_function_that_never_yields_completes_in_its_first_turn():
    def add(ctx, numbers):
        return sum(numbers)

    r = Harness({"Add": add}).start("Add", [1, 2, 3])

    assert r.status is TurnStatus.COMPLETED
    assert output_of(r) == 6


def test_a_plain_function_that_raises_fails_the_instance():
    def broken(ctx, _):
        raise ValueError("bad input")

    r = Harness({"O": broken}).start()

    assert r.status is TurnStatus.FAILED
    assert r.error.message == "bad input"
    assert r.error.category is ErrorCategory.APPLICATION


def test_a_generator_returning_none_completes_with_null_output():
    def orch(ctx, _):
        yield ctx.schedule_timer(0)

    h = Harness({"O": orch})
    h.start()

    r = h.turn(*[m.message for m in h.last.orchestrator_items])

    assert r.status is TurnStatus.COMPLETED
    assert r.output == "null"


def test_the_context_describes_the_running_instance():
    def orch(ctx, _):
        return [ctx.instance_id, ctx.execution_id, ctx.orchestration_name,
                ctx.orchestration_version]  # fmt: skip

    r = Harness({"Describe": orch}, instance_id="inst-1").start("Describe")

    assert output_of(r) == ["inst-1", 1, "Describe", "1.0.0"]


def test_an_output_that_cannot_be_stored_as_json_fails_with_a_clear_message():
    def orch(ctx, _):
        return {"when": object()}

    r = Harness({"O": orch}).start()

    assert r.status is TurnStatus.FAILED
    assert r.error.message.startswith("orchestration output is not JSON-serializable")


def test_an_input_that_cannot_be_encoded_raises_at_the_call():
    def orch(ctx, _):
        try:
            ctx.schedule_activity("A", {1, 2})
        except TypeError as e:
            return str(e)

    assert output_of(Harness({"O": orch}).start()).startswith(
        "input of activity 'A' is not JSON-serializable"
    )


# --- exceptions ----------------------------------------------------------------------------------


def test_an_exception_raised_after_some_steps_fails_with_its_message():
    def orch(ctx, _):
        value = yield ctx.schedule_activity("Load", None)
        raise RuntimeError(f"cannot use {value}")

    h = Harness({"O": orch})
    h.start()

    r = h.turn(activity_done(2, "junk"))

    assert r.status is TurnStatus.FAILED
    assert r.error.message == "cannot use junk"


def test_an_exception_without_a_message_fails_with_its_type_name():
    def orch(ctx, _):
        raise KeyError

    assert Harness({"O": orch}).start().error.message == "KeyError"


@pytest.mark.parametrize("exc", [SystemExit(3), KeyboardInterrupt(), GeneratorExit()])
def test_a_base_exception_fails_the_instance_instead_of_escaping_the_engine(exc):
    def orch(ctx, _):
        yield ctx.schedule_activity("A", None)
        raise exc

    h = Harness({"O": orch})
    h.start()

    r = h.turn(activity_done(2))  # would propagate out of run_turn if not caught

    assert r.status is TurnStatus.FAILED
    assert r.error.category is ErrorCategory.APPLICATION


def test_an_async_function_is_rejected_as_a_configuration_error():
    async def orch(ctx, _):
        return 1

    r = Harness({"O": orch}).start()

    assert r.status is TurnStatus.FAILED
    assert r.error.category is ErrorCategory.CONFIGURATION
    assert "async function" in r.error.message


# --- bad yields ----------------------------------------------------------------------------------


def caught(make_task):
    """An orchestration that yields ``make_task(ctx)`` and returns the error thrown back."""

    def orch(ctx, _):
        try:
            yield make_task(ctx)
        except (TypeError, ValueError) as e:
            return [type(e).__name__, str(e)]
        return "no error"

    return orch


@pytest.mark.parametrize(
    ("make_task", "error_type", "fragment"),
    [
        (lambda ctx: 42, "TypeError", "an orchestration must yield a task from the context"),
        (lambda ctx: {"name": "A"}, "TypeError", "must yield a task from the context"),
        (lambda ctx: {"type": "teleport"}, "TypeError", "unknown task type 'teleport'"),
        (lambda ctx: ctx.all([ctx.schedule_activity("A", 1), 7]), "TypeError",
         "ctx.all() takes tasks from the context, got 7"),
        (lambda ctx: ctx.all([ctx.all([])]), "ValueError",
         "ctx.all() cannot be nested inside ctx.all()"),
        (lambda ctx: ctx.all([ctx.race(ctx.schedule_timer(1), ctx.schedule_timer(2))]),
         "ValueError", "ctx.race() cannot be nested inside ctx.all()"),
        (lambda ctx: ctx.race(ctx.all([]), ctx.schedule_timer(1)), "ValueError",
         "ctx.all() cannot be nested inside ctx.race()"),
        (lambda ctx: ctx.race(ctx.schedule_timer(1)), "ValueError",
         "ctx.race() needs at least 2 tasks"),
        (lambda ctx: ctx.all([ctx.continue_as_new(1)]), "ValueError",
         "ctx.continue_as_new() cannot be nested inside ctx.all()"),
    ],
)  # fmt: skip
def test_a_bad_yield_throws_a_clear_error_into_the_generator(make_task, error_type, fragment):
    r = Harness({"O": caught(make_task)}).start()

    assert r.status is TurnStatus.COMPLETED
    thrown_type, message = output_of(r)
    assert thrown_type == error_type
    assert fragment in message


def test_a_bad_yield_that_is_not_caught_fails_the_instance():
    def orch(ctx, _):
        yield "not a task"

    r = Harness({"O": orch}).start()

    assert r.status is TurnStatus.FAILED
    assert r.error.message.startswith("an orchestration must yield a task from the context")


def test_a_bad_yield_records_nothing_and_the_code_can_carry_on():
    def orch(ctx, _):
        with contextlib.suppress(ValueError):
            yield ctx.race(ctx.schedule_activity("Lonely", 1))
        return (yield ctx.schedule_activity("Fine", 2))

    h = Harness({"O": orch})
    r = h.start()
    assert [w.name for w in r.worker_items] == ["Fine"]

    assert output_of(h.turn(activity_done(2, "ok"))) == "ok"


# --- tracing and is_replaying --------------------------------------------------------------------


def traced(ctx, _):
    ctx.trace_info("starting")
    a = yield ctx.schedule_activity("A", None)
    ctx.trace_warn(f"A gave {a}")
    ctx.trace_debug("waiting")
    yield ctx.wait_for_event("go")
    ctx.trace_error("finishing")
    return a


def test_traces_are_emitted_once_when_the_code_first_runs_and_not_on_replay():
    h = Harness({"O": traced})
    assert h.start().logs == [("info", "starting")]

    assert h.turn(activity_done(2, 5)).logs == [("warn", "A gave 5"), ("debug", "waiting")]

    assert h.turn(raise_msg("go")).logs == [("error", "finishing")]


def test_is_replaying_is_true_only_while_the_code_consumes_persisted_history():
    seen = []

    def orch(ctx, _):
        seen.append(("start", ctx.is_replaying))
        yield ctx.schedule_activity("A", None)
        seen.append(("after A", ctx.is_replaying))
        yield ctx.wait_for_event("go")
        seen.append(("after go", ctx.is_replaying))

    h = Harness({"O": orch})
    h.start()
    assert seen == [("start", False)]

    seen.clear()
    h.turn(activity_done(2))
    assert seen == [("start", True), ("after A", False)]

    seen.clear()
    h.turn(raise_msg("go"))
    assert seen == [("start", True), ("after A", True), ("after go", False)]


def test_input_is_decoded_before_the_code_sees_it():
    def orch(ctx, payload):
        return {"type": type(payload).__name__, "value": payload}

    r = Harness({"O": orch}).start("O", {"items": [1, 2]})

    assert output_of(r) == {"type": "dict", "value": {"items": [1, 2]}}
