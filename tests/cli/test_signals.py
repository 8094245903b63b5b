"""start, raise, enqueue, cancel and wait from the command line, with a runtime running in this
process on the same store (so the subprocess and the runtime really share the database)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from duroxide import Client

from .conftest import Store
from .seed import make_runtime


@pytest.fixture(scope="module")
def client(seeded: Store) -> Iterator[Client]:
    """A client on the module's store while a runtime runs the seeded app there."""
    provider = seeded.open()
    runtime = make_runtime(provider)
    runtime.start()
    try:
        yield Client(provider)
    finally:
        runtime.shutdown(1_000)
        provider.close()


def started(client: Client, instance_id: str, timeout_s: float = 20.0) -> Any:
    """Wait until the runtime has run the instance's first turn."""
    deadline = time.monotonic() + timeout_s
    while (status := client.get_status(instance_id)).status == "NotFound":
        assert time.monotonic() < deadline, f"{instance_id} never started"
        time.sleep(0.01)
    return status


def test_start_raise_and_wait(seeded: Store, client: Client) -> None:
    result = seeded.run("instances", "start", "ApproveExpense", "--id", "expense-8",
                        "--input", '{"id": 8, "amount": 30}')  # fmt: skip
    assert result.code == 0, result.err
    assert result.out.startswith("started expense-8 (ApproveExpense)")
    started(client, "expense-8")

    raised = seeded.run("instances", "raise", "expense-8", "approval", "--data",
                        '{"approved": true}')  # fmt: skip
    assert (raised.code, raised.out) == (0, "raised 'approval' on expense-8\n")

    waited = seeded.run("instances", "wait", "expense-8", "--timeout", "20")
    assert waited.code == 0, waited.err
    assert waited.lines == [
        "instance  expense-8",
        "status    Completed",
        'output    {"expense":8,"approved":true}',
    ]
    as_json = seeded.run("instances", "wait", "expense-8", "-o", "json").json()
    assert as_json["output"] == {"expense": 8, "approved": True}


def test_start_json_with_a_generated_id_and_enqueue(seeded: Store, client: Client) -> None:
    record = seeded.run("instances", "start", "Inbox", "-o", "json").json()
    instance_id = record["instance_id"]
    assert len(instance_id) == 32
    started(client, instance_id)

    queued = seeded.run("instances", "enqueue", instance_id, "inbox", "--data", '"hello"')
    assert queued.code == 0, queued.err
    assert queued.out == f"enqueued a message on 'inbox' of {instance_id}\n"
    assert client.wait_for_orchestration(instance_id, 20_000).output == "hello"


def test_cancel_then_wait_reports_the_failure(seeded: Store, client: Client) -> None:
    seeded.run("instances", "start", "ApproveExpense", "--id", "expense-9", "--input", '{"id":9}')
    started(client, "expense-9")

    cancelled = seeded.run("instances", "cancel", "expense-9", "--reason", "duplicate")
    assert cancelled.code == 0, cancelled.err
    assert cancelled.out == "cancellation of expense-9 requested (reason: duplicate)\n"

    waited = seeded.run("instances", "wait", "expense-9", "--timeout", "20")
    assert waited.code == 1
    assert "status    Failed" in waited.lines
    assert "canceled: duplicate" in waited.out
    assert waited.err == "error: instance 'expense-9' failed\n"

    again = seeded.run("instances", "cancel", "expense-9", "-o", "json").json()
    assert again == {"instance_id": "expense-9", "status": "Failed", "cancel_requested": False}


def test_wait_times_out_with_exit_1(seeded: Store, client: Client) -> None:
    result = seeded.run("instances", "wait", "expense-7", "--timeout", "0.3")

    assert result.code == 1
    assert result.error_line() == (
        "error: instance 'expense-7' did not finish within 0.3 s (status: Running)"
    )
