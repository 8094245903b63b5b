"""The CLI's pure parts, in-process: time parsing, event details, tables, the progress bar."""

from __future__ import annotations

import argparse
import io
import json
import time

import pytest

from duroxide.cli.common import CliError, parse_json, parse_status, parse_time, redact
from duroxide.cli.output import Printer, Progress, clip, iso
from duroxide.cli.timeline import describe


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:00:00Z", 1_714_564_800_000),
        ("2024-05-01T12:00:00", 1_714_564_800_000),  # no offset: UTC
        ("2024-05-01T14:00:00+02:00", 1_714_564_800_000),
        ("2024-05-01", 1_714_521_600_000),
        ("1714564800000", 1_714_564_800_000),
    ],
)
def test_parse_time(text: str, expected: int) -> None:
    assert parse_time(text) == expected


def test_parse_time_relative_and_bad_values() -> None:
    now = int(time.time() * 1000)
    assert abs(parse_time("now") - now) < 5_000
    assert abs(parse_time("30d") - (now - 30 * 86_400_000)) < 5_000
    assert abs(parse_time("15m") - (now - 900_000)) < 5_000
    with pytest.raises(argparse.ArgumentTypeError, match="invalid time 'last week'"):
        parse_time("last week")


def test_parse_status_and_json() -> None:
    assert parse_status("completed") == "Completed"
    with pytest.raises(argparse.ArgumentTypeError):
        parse_status("Done")
    assert parse_json('{"a": [1, 2]}', "--input") == {"a": [1, 2]}
    assert parse_json(None, "--input") is None
    with pytest.raises(CliError, match=r"^--data is not valid JSON: Expecting value"):
        parse_json("nope", "--data")


def test_iso_and_clip() -> None:
    assert iso(1_714_564_800_123) == "2024-05-01T12:00:00Z"
    assert iso(1_714_564_800_123, millis=True) == "2024-05-01T12:00:00.123Z"
    assert iso(None) is None
    assert clip("x" * 100) == "x" * 79 + "…"
    assert clip("two\nlines") == "two lines"


@pytest.mark.parametrize(
    ("kind", "data", "source", "expected"),
    [
        ("ActivityScheduled", {"name": "Charge", "input": {"a": 1}}, None, 'Charge input={"a":1}'),
        (
            "ActivityScheduled",
            {"name": "Charge", "input": '{"a":1}', "tag": "gpu"},
            None,
            'Charge input={"a":1} tag=gpu',
        ),
        (
            "ActivityFailed",
            {"error": {"category": "application", "message": "boom", "kind": ""}},
            3,
            "#3 error=[application] boom",
        ),
        (
            "TimerCreated",
            {"fire_at_ms": 1_714_564_800_000},
            None,
            "fire_at=2024-05-01T12:00:00.000Z",
        ),
        (
            "ExternalEvent",
            {"name": "approval", "data": '{"ok":true}'},
            None,
            'approval data={"ok":true}',
        ),
        (
            "SubOrchestrationScheduled",
            {
                "name": "Ship",
                "instance_id": "o-1::sub::2",
                "input": "7",
                "version": None,
                "explicit_id": False,
            },
            None,
            "Ship id=o-1::sub::2 input=7",
        ),
        ("KeyValueSet", {"key": "k", "value": "v"}, None, 'k value="v"'),
        ("SystemCall", {"op": "utc_now", "value": 5, "args": []}, None, "utc_now value=5"),
        ("KeyValuesCleared", None, None, ""),
    ],
)
def test_describe_events(kind: str, data: object, source: int | None, expected: str) -> None:
    text = None if data is None else json.dumps(data)
    assert describe(kind, text, source) == expected


def test_describe_payload_kinds_and_clipping() -> None:
    assert describe("ActivityCompleted", '{"ok": 1}', 2) == '#2 result={"ok":1}'
    assert describe("OrchestrationCompleted", None, None) == ""
    long = describe("ActivityScheduled", json.dumps({"name": "N", "input": "x" * 200}), None)
    assert len(long) == 80
    assert long.endswith("…")


def test_table_and_fields() -> None:
    out = io.StringIO()
    printer = Printer("table", out)
    printer.table(["id", "status"], [("a", "Running"), ("long-id", None)])
    printer.table(["id"], [], empty="no instances")
    printer.fields([("status", "Completed"), ("custom status", None)])
    assert out.getvalue().splitlines() == [
        "ID       STATUS",
        "a        Running",
        "long-id  -",
        "no instances",
        "status         Completed",
        "custom status  -",
    ]


def test_progress_draws_only_on_a_terminal() -> None:
    terminal = FakeTerminal()
    bar = Progress.for_stream("purging", 4, terminal)
    for _ in range(4):
        bar.advance(1)
    bar.finish()
    drawn = terminal.getvalue()
    assert drawn.startswith("\rpurging [")
    assert drawn.endswith("] 4/4 (100%)\n")

    pipe = io.StringIO()
    quiet = Progress.for_stream("purging", 4, pipe)
    quiet.advance(4)
    quiet.finish()
    assert pipe.getvalue() == ""


def test_redact_hides_passwords() -> None:
    assert redact("postgresql://app:s3cr:et@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert redact("postgresql://app@db/x") == "postgresql://app@db/x"
