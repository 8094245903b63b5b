"""Custom status, the per-instance KV store, and values recorded in history so replay returns them
unchanged: ``utc_now``, ``new_guid`` and cross-instance KV reads."""

import pytest

from duroxide.replay import TurnInput, TurnStatus, run_turn
from duroxide.testing import (
    Harness,
    as_handler_lookup,
    output_of,
    raise_msg,
    sequential_guids,
    start_msg,
)

# --- custom status -------------------------------------------------------------------------------


def test_set_custom_status_is_reported_as_changed_and_readable_in_code():
    def orch(ctx, _):
        before = ctx.get_custom_status()
        ctx.set_custom_status("validating")
        after = ctx.get_custom_status()
        yield ctx.wait_for_event("go")
        return [before, after]

    h = Harness({"O": orch})
    r = h.start()
    assert (r.custom_status, r.custom_status_changed) == ("validating", True)

    r = h.turn(raise_msg("go"))

    assert output_of(r) == [None, "validating"]
    assert (r.custom_status, r.custom_status_changed) == ("validating", False)


def test_reset_custom_status_clears_it():
    def orch(ctx, _):
        ctx.set_custom_status("busy")
        yield ctx.wait_for_event("go")
        ctx.reset_custom_status()
        return ctx.get_custom_status()

    h = Harness({"O": orch})
    h.start()

    r = h.turn(raise_msg("go"))

    assert (r.custom_status, r.custom_status_changed) == (None, True)
    assert output_of(r) is None


def test_the_latest_status_of_a_turn_wins():
    def orch(ctx, _):
        for step in ("one", "two", "three"):
            ctx.set_custom_status(step)
        yield ctx.wait_for_event("go")

    assert Harness({"O": orch}).start().custom_status == "three"


def test_a_custom_status_that_is_not_a_str_is_converted_with_str():
    """As the reference SDK does (``str(status)``)."""

    def orch(ctx, _):
        ctx.set_custom_status(42)
        yield ctx.wait_for_event("go")

    r = Harness({"O": orch}).start()

    assert r.status is TurnStatus.RUNNING
    assert r.custom_status == "42"


# --- KV store ------------------------------------------------------------------------------------


def test_kv_operations_are_visible_at_once_in_code():
    def orch(ctx, _):
        ctx.set_kv_value("a", "1")
        ctx.set_kv_value("b", "2")
        ctx.set_kv_value("a", "10")
        seen = {
            "a": ctx.get_kv_value("a"),
            "missing": ctx.get_kv_value("missing"),
            "all": ctx.get_kv_all_values(),
            "keys": sorted(ctx.get_kv_all_keys()),
            "length": ctx.get_kv_length(),
        }
        ctx.clear_kv_value("b")
        seen["after clear"] = ctx.get_kv_all_values()
        ctx.clear_all_kv_values()
        seen["after clear all"] = ctx.get_kv_length()
        return seen

    r = Harness({"O": orch}).start()

    assert output_of(r) == {
        "a": "10",
        "missing": None,
        "all": {"a": "10", "b": "2"},
        "keys": ["a", "b"],
        "length": 2,
        "after clear": {"a": "10"},
        "after clear all": 0,
    }


def test_a_turn_reports_only_the_kv_changes_it_made():
    def orch(ctx, _):
        ctx.set_kv_value("keep", "k")
        ctx.set_kv_value("drop", "d")
        yield ctx.wait_for_event("go")
        ctx.clear_kv_value("drop")
        ctx.set_kv_value("new", "n")
        yield ctx.wait_for_event("go")

    h = Harness({"O": orch}, now_ms=100)
    r = h.start()
    assert r.kv_upserts == {"keep": ("k", 100), "drop": ("d", 100)}
    assert r.kv_deletes == set()

    r = h.turn(raise_msg("go"), now_ms=200)

    assert r.kv_upserts == {"new": ("n", 200)}
    assert r.kv_deletes == {"drop"}


def counter(ctx, _):
    observed = []
    for _ in range(3):
        n = int(ctx.get_kv_value("count") or "0")
        observed.append(n)
        ctx.set_kv_value("count", str(n + 1))
        yield ctx.wait_for_event("tick")
    return observed


def test_a_counter_incremented_every_turn_replays_with_the_values_of_that_point():
    h = Harness({"O": counter})
    assert h.start().kv_upserts == {"count": ("1", 0)}
    assert h.turn(raise_msg("tick")).kv_upserts == {"count": ("2", 0)}
    assert h.turn(raise_msg("tick")).kv_upserts == {"count": ("3", 0)}

    r = h.turn(raise_msg("tick"))

    # Each replayed read saw the value at that point of history, not the latest one.
    assert output_of(r) == [0, 1, 2]
    assert r.status is TurnStatus.COMPLETED
    assert r.kv_upserts == {}


def test_prune_removes_values_last_updated_before_the_cutoff():
    def orch(ctx, _):
        ctx.set_kv_value("old", "o")
        yield ctx.wait_for_event("go")
        ctx.set_kv_value("fresh", "f")
        pruned = ctx.prune_kv_values_updated_before(3000)
        return {"pruned": pruned, "left": ctx.get_kv_all_keys()}

    h = Harness({"O": orch}, now_ms=1000)
    h.start()

    r = h.turn(raise_msg("go"), now_ms=5000)

    assert output_of(r) == {"pruned": 1, "left": ["fresh"]}
    assert r.kv_deletes == {"old"}


def test_an_instance_holds_at_most_150_keys():
    def orch(ctx, _):
        for n in range(150):
            ctx.set_kv_value(f"k{n}", "v")
        ctx.set_kv_value("k0", "overwrite is fine")
        try:
            ctx.set_kv_value("k150", "v")
        except ValueError as e:
            return str(e)

    assert output_of(Harness({"O": orch}).start()) == "an instance holds at most 150 KV keys"


def test_a_kv_value_is_at_most_64_kib():
    def orch(ctx, _):
        ctx.set_kv_value("fits", "x" * 64 * 1024)
        try:
            ctx.set_kv_value("too big", "x" * (64 * 1024 + 1))
        except ValueError as e:
            return str(e)

    assert output_of(Harness({"O": orch}).start()) == "KV value for 'too big' is over 65536 bytes"


def test_kv_values_are_strings_and_the_typed_setter_encodes_json():
    """``set_kv_value`` converts with ``str()`` (as the reference SDK); the typed setter
    encodes JSON."""

    def orch(ctx, _):
        ctx.set_kv_value_typed("obj", {"a": 1})
        ctx.set_kv_value("raw", 5)
        return [ctx.get_kv_value("obj"), ctx.get_kv_value("raw")]

    assert output_of(Harness({"O": orch}).start()) == ['{"a":1}', "5"]


# --- utc_now and new_guid ------------------------------------------------------------------------


def test_utc_now_is_the_turn_time_and_stays_the_same_on_replay():
    def orch(ctx, _):
        first = yield ctx.utc_now()
        yield ctx.wait_for_event("go")
        second = yield ctx.utc_now()
        return [first, second]

    h = Harness({"O": orch})
    h.start(now_ms=1_700_000_000_000)

    r = h.turn(raise_msg("go"), now_ms=1_700_000_555_000)

    assert output_of(r) == [1_700_000_000_000, 1_700_000_555_000]


def test_new_guid_is_recorded_once_and_replayed():
    calls = []
    source = sequential_guids()

    def counting_source():
        calls.append(1)
        return source()

    def orch(ctx, _):
        guid = yield ctx.new_guid()
        yield ctx.wait_for_event("go")
        return guid

    h = Harness({"O": orch}, new_guid=counting_source)
    h.start()

    r = h.turn(raise_msg("go"))

    assert output_of(r) == "00000000-0000-0000-0000-000000000001"
    assert len(calls) == 1
    assert h.history[1].kind == "SystemCall" and h.history[1].value == output_of(r)


def test_without_a_guid_source_new_guid_is_a_random_uuid_string():
    def orch(ctx, _):
        return [(yield ctx.new_guid()), (yield ctx.new_guid())]

    r = run_turn(TurnInput(
        instance_id="i", execution_id=1, history=[], messages=[start_msg()], now_ms=0,
        handlers=as_handler_lookup({"O": orch}),
    ))  # fmt: skip

    first, second = output_of(r)
    assert len(first) == len(second) == 36
    assert first != second


# --- reading another instance's KV ---------------------------------------------------------------


def reader(ctx, _):
    value = yield ctx.get_kv_value_from_instance("config", "mode")
    yield ctx.wait_for_event("go")
    return value


def test_a_cross_instance_read_asks_the_runtime_for_the_value_first():
    h = Harness({"O": reader})

    r = h.start()

    assert r.status is TurnStatus.NEEDS_READ
    assert r.pending_read == ("config", "mode")
    assert h.history == []  # nothing is written until the turn is re-run with the value


def test_the_re_run_turn_records_the_value_read():
    h = Harness({"O": reader})
    h.start()

    r = h.turn(start_msg(), kv_reads={("config", "mode"): "fast"})

    assert r.status is TurnStatus.RUNNING
    assert (h.history[1].op, h.history[1].args, h.history[1].value) == (
        "kv_read", ["config", "mode"], "fast")  # fmt: skip


@pytest.mark.parametrize("value", ["fast", None])
def test_a_recorded_read_is_replayed_without_reading_again(value):
    h = Harness({"O": reader})
    h.turn(start_msg(), kv_reads={("config", "mode"): value})

    r = h.turn(raise_msg("go"))  # no kv_reads given: the value comes from history

    assert r.status is TurnStatus.COMPLETED
    assert output_of(r) == value
