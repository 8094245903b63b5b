"""Read-only commands against the seeded instances: list (paging, filters), show, history, tree,
queues, metrics — tables, JSON and the one-line errors, on SQLite and PostgreSQL."""

from __future__ import annotations

import time

from .conftest import Store
from .seed import ALL_IDS


def ids_of(lines: list[str]) -> list[str]:
    """First column of a table's rows (after the header)."""
    return [line.split()[0] for line in lines[1:] if not line.startswith("next cursor")]


# --- list ----------------------------------------------------------------------------------------


def test_list_shows_every_instance_in_id_order(seeded: Store) -> None:
    result = seeded.run("instances", "list")

    assert result.code == 0, result.err
    assert result.lines[0].split() == ["ID", "NAME", "VERSION", "STATUS", "CREATED", "UPDATED"]
    assert ids_of(result.lines) == ALL_IDS
    row = next(line for line in result.lines if line.startswith("import-42 "))
    assert row.split()[1:4] == ["ImportRows", "1.0.0", "Failed"]
    assert row.split()[4].endswith("Z")  # ISO-8601 in UTC
    assert "next cursor" not in result.out


def test_list_pages_with_a_cursor(seeded: Store) -> None:
    first = seeded.run("instances", "list", "--limit", "3")
    assert ids_of(first.lines) == ALL_IDS[:3]
    assert first.lines[-1] == f"next cursor: {ALL_IDS[2]}"

    second = seeded.run("instances", "list", "--limit", "3", "--cursor", ALL_IDS[2])
    assert ids_of(second.lines) == ALL_IDS[3:6]
    assert second.lines[-1] == f"next cursor: {ALL_IDS[5]}"

    last = seeded.run("instances", "list", "--limit", "3", "--cursor", ALL_IDS[5], "-o", "json")
    page = last.json()
    assert [i["instance_id"] for i in page["instances"]] == ALL_IDS[6:]
    assert page["next_cursor"] is None
    assert set(page["instances"][0]) >= {"instance_id", "orchestration_name", "status",
                                         "created_at"}  # fmt: skip


def test_list_filters(seeded: Store) -> None:
    failed = seeded.run("instances", "list", "--status", "failed", "-o", "json").json()
    assert [i["instance_id"] for i in failed["instances"]] == ["import-42"]

    orders = seeded.run("instances", "list", "--name", "FulfilOrder")
    assert ids_of(orders.lines) == ["order-1001", "order-1002"]

    future = str(int(time.time() * 1000) + 3_600_000)
    none = seeded.run("instances", "list", "--created-after", future)
    assert (none.code, none.out) == (0, "no instances\n")


# --- show ----------------------------------------------------------------------------------------


def test_show_a_completed_parent(seeded: Store) -> None:
    result = seeded.run("instances", "show", "order-1001")

    assert result.code == 0, result.err
    fields = dict(line.split(None, 1) for line in result.lines[:3])
    assert fields == {"instance": "order-1001", "orchestration": "FulfilOrder 1.0.0",
                      "status": "Completed"}  # fmt: skip
    assert '"tracking":"TRK-1001"' in result.out
    assert "custom status  shipped" in result.out
    assert result.lines[-2:] == [
        "order-1001  FulfilOrder  Completed",
        "`-- order-1001-ship  ShipOrder  Completed",
    ]


def test_show_executions_error_and_parent(seeded: Store) -> None:
    counter = seeded.run("instances", "show", "counter-1", "--output", "json").json()
    assert counter["execution_ids"] == [1, 2, 3, 4]
    assert [e["status"] for e in counter["executions"]] == ["ContinuedAsNew"] * 3 + ["Completed"]
    assert counter["output"] == 3

    failed = seeded.run("instances", "show", "import-42")
    assert "status         Failed" in failed.lines
    assert "error          row 3: invalid date '2024-02-30'" in failed.lines

    child = seeded.run("instances", "show", "order-1002-ship", DUROXIDE_OUTPUT="json").json()
    assert child["parent_instance_id"] == "order-1002"
    assert child["children"] == []


# --- history and tree ----------------------------------------------------------------------------


def test_history_timeline(seeded: Store) -> None:
    result = seeded.run("instances", "history", "order-1001")

    assert result.code == 0, result.err
    assert result.lines[0].split() == ["EVENT", "TIME", "KIND", "DETAIL"]
    rows = [line.split(None, 3) for line in result.lines[1:]]
    assert [r[0] for r in rows] == [str(n) for n in range(1, 9)]
    assert rows[0][2:] == [
        "OrchestrationStarted",
        'FulfilOrder@1.0.0 input={"id":"1001","amount":42.5}',
    ]
    assert rows[2][2:] == ["ActivityScheduled", 'ChargeCard input={"id":"1001","amount":42.5}']
    assert rows[3][2:] == ["ActivityCompleted", '#3 result={"charged":42.5,"currency":"EUR"}']
    assert rows[4][2].startswith("SubOrchestrationScheduled")
    assert "id=order-1001-ship" in rows[4][3]
    assert rows[-1][2] == "OrchestrationCompleted"
    assert all(len(r[3]) <= 80 for r in rows if len(r) == 4)


def test_history_of_an_older_execution_and_json(seeded: Store) -> None:
    second = seeded.run("instances", "history", "counter-1", "--execution", "2")
    assert [line.split(None, 3)[2:] for line in second.lines[1:]] == [
        ["OrchestrationStarted", "Counter@1.0.0 input=1"],
        ["OrchestrationContinuedAsNew", "input=2"],
    ]

    failed = seeded.run("instances", "history", "import-42", "-o", "json").json()
    assert failed["execution_id"] == 1
    assert [e["kind"] for e in failed["events"]] == [
        "OrchestrationStarted", "ActivityScheduled", "ActivityFailed", "OrchestrationFailed",
    ]  # fmt: skip
    assert failed["events"][2]["source_event_id"] == 2
    assert failed["events"][3]["data"]["error"]["category"] == "application"

    missing = seeded.run("instances", "history", "counter-1", "--execution", "9")
    assert missing.code == 1
    assert missing.error_line() == (
        "error: instance 'counter-1' has no execution 9 (it has executions 1-4)"
    )


def test_tree(seeded: Store) -> None:
    result = seeded.run("instances", "tree", "order-1002")
    assert result.out.splitlines() == [
        "order-1002  FulfilOrder  Completed",
        "`-- order-1002-ship  ShipOrder  Completed",
    ]
    nested = seeded.run("instances", "tree", "order-1002", "--output", "json").json()
    assert nested["children"][0]["instance_id"] == "order-1002-ship"
    assert nested["children"][0]["children"] == []


# --- queues and metrics --------------------------------------------------------------------------


def test_queues_and_metrics(seeded: Store) -> None:
    queues = seeded.run("queues")
    assert queues.code == 0, queues.err
    assert queues.lines[0].split() == ["QUEUE", "TAG", "DEPTH"]
    assert queues.lines[1:] == [
        "orchestrator  -      0",
        "timers        -      0",
        "worker        gpu    1",
        "worker        (all)  1",
    ]
    depths = seeded.run("queues", "-o", "json").json()
    assert set(depths) == {"orchestrator_queue", "worker_queue", "timer_queue",
                           "worker_queue_by_tag"}  # fmt: skip

    metrics = seeded.run("metrics", "-o", "json").json()
    assert metrics["total_instances"] == 8
    assert (metrics["running_instances"], metrics["failed_instances"]) == (2, 1)
    assert metrics["completed_instances"] == 5


# --- errors --------------------------------------------------------------------------------------


#: Every command that takes an instance id; PostgreSQL runs the ones whose lookup differs there.
UNKNOWN_INSTANCE = {
    "sqlite": [
        ["instances", "show", "nope"],
        ["instances", "history", "nope"],
        ["instances", "tree", "nope"],
        ["instances", "delete", "nope"],
        ["instances", "prune", "nope", "--keep-last", "1"],
        ["instances", "raise", "nope", "approval"],
        ["instances", "enqueue", "nope", "inbox"],
        ["instances", "cancel", "nope"],
    ],
    "postgres": [
        ["instances", "show", "nope"],
        ["instances", "tree", "nope"],
        ["instances", "delete", "nope"],
        ["instances", "prune", "nope", "--keep-last", "1"],
    ],
}


def test_unknown_instance_is_one_line_and_exit_1(seeded: Store) -> None:
    for command in UNKNOWN_INSTANCE[seeded.backend]:
        result = seeded.run(*command)

        assert result.code == 1, command
        assert result.error_line().startswith("error: instance not found: 'nope'"), command


def test_debug_shows_the_traceback(seeded: Store) -> None:
    result = seeded.run("instances", "show", "nope", "--debug")

    assert result.code == 1
    assert "Traceback (most recent call last)" in result.err
    assert result.err.rstrip().endswith("error: instance not found: 'nope'")


def test_starting_an_existing_instance_is_refused(seeded: Store) -> None:
    result = seeded.run("instances", "start", "FulfilOrder", "--id", "order-1001")

    assert result.code == 1
    assert result.error_line() == "error: instance 'order-1001' already exists (status Completed)"
