"""DUROXIDE_FAULTS parsing: unset is free and falsy; bad specs are refused clearly."""

from __future__ import annotations

import pytest

from duroxide.runtime.faults import Faults


def test_unset_or_empty_injects_nothing() -> None:
    for spec in (None, "", " , "):
        faults = Faults.parse(spec)
        assert not faults
        assert not faults.hit("turn_exit_after_ack")


def test_points_with_and_without_a_probability() -> None:
    faults = Faults.parse("activity_exit_before_ack, turn_exit_after_ack:0")
    assert faults
    assert faults.hit("activity_exit_before_ack")  # default probability 1
    assert not faults.hit("turn_exit_after_ack")  # probability 0
    assert not faults.hit("turn_delay_past_lock")  # not listed


def test_a_probability_hits_about_that_often() -> None:
    faults = Faults.parse("turn_raise_after_ack:0.25")
    hits = sum(faults.hit("turn_raise_after_ack") for _ in range(4000))
    assert 800 < hits < 1200


@pytest.mark.parametrize(
    ("spec", "message"),
    [("nope", "unknown fault point"), ("turn_exit_after_ack:x", "not a probability"),
     ("turn_exit_after_ack:2", "must be in")],
)  # fmt: skip
def test_bad_specs_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Faults.parse(spec)
