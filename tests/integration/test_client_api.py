"""Client against a live runtime: status, waits, external events, event queues, KV and custom
status."""

from __future__ import annotations

import json
import time

import pytest

from .support import eventually


@pytest.fixture
def runtime(make_runtime):
    rt = make_runtime()

    @rt.register_orchestration("WaitForGo")
    def wait_for_go(ctx, _):
        return (yield ctx.wait_for_event("go"))

    @rt.register_orchestration("Double")
    def double(ctx, inp):
        return inp * 2

    @rt.register_orchestration("Fails")
    def fails(ctx, inp):
        raise ValueError(f"bad input {inp}")

    return rt


# --- status and waiting ----------------------------------------------------------------------


def test_status_right_after_start_is_running_or_not_found(runtime, client):
    runtime.start()
    ids = [f"status-{i}" for i in range(20)]
    for instance_id in ids:
        client.start_orchestration(instance_id, "WaitForGo")
        assert client.get_status(instance_id).status in ("Running", "NotFound")
        assert client.get_orchestration_status(instance_id).status in ("Running", "NotFound")
    eventually(lambda: all(client.get_status(i).status == "Running" for i in ids), 5)
    running = client.get_status(ids[0])
    assert running.output is None
    assert running.error is None
    assert running.orchestration_name == "WaitForGo"


def test_status_of_an_unknown_instance_is_not_found(client):
    result = client.get_status("never-started")
    assert result.status == "NotFound"
    assert result.output is None


def test_starting_an_existing_instance_id_again_is_ignored(runtime, client):
    runtime.start()
    client.start_orchestration("twice", "Double", 21)
    assert client.wait_for_orchestration("twice", 5_000).output == 42
    client.start_orchestration("twice", "Double", 1000)
    eventually(lambda: client.get_queue_depths().orchestrator_queue == 0, 5)
    result = client.get_status("twice")
    assert (result.status, result.output) == ("Completed", 42)
    assert client.list_executions("twice") == [1]


def test_cancel_before_the_first_turn_fails_the_instance(runtime, client):
    client.start_orchestration("cancel-early", "WaitForGo")
    client.cancel_instance("cancel-early", "changed my mind")
    runtime.start()
    result = client.wait_for_orchestration("cancel-early", 5_000)
    assert result.status == "Failed"
    assert result.error == "canceled: changed my mind"


def test_wait_for_orchestration_times_out_with_a_timeout_error(runtime, client):
    runtime.start()
    client.start_orchestration("wait-timeout", "WaitForGo")
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        client.wait_for_orchestration("wait-timeout", 200)
    assert 0.19 <= time.monotonic() - t0 < 1.0
    client.raise_event("wait-timeout", "go", "went")
    result = client.wait_for_orchestration("wait-timeout", 5_000)
    assert result.status == "Completed"
    assert result.output == "went"


def test_wait_for_orchestration_typed_returns_output_or_raises(runtime, client):
    runtime.start()
    client.start_orchestration("typed-ok", "Double", 21)
    assert client.wait_for_orchestration_typed("typed-ok", 5_000) == 42
    client.start_orchestration("typed-bad", "Fails", 7)
    with pytest.raises(Exception, match="bad input 7"):
        client.wait_for_orchestration_typed("typed-bad", 5_000)
    result = client.wait_for_orchestration("typed-bad", 5_000)
    assert result.status == "Failed"
    assert result.error == "bad input 7"
    assert result.output is None


# --- external events and queues --------------------------------------------------------------


def test_event_raised_before_the_orchestration_waits_is_buffered(make_runtime, client):
    rt = make_runtime()

    @rt.register_orchestration("TwoEvents")
    def two_events(ctx, _):
        first = yield ctx.wait_for_event("first")
        second = yield ctx.wait_for_event("second")
        return [first, second]

    rt.start()
    client.start_orchestration("buffered", "TwoEvents")
    eventually(lambda: client.get_status("buffered").status == "Running", 5)
    client.raise_event("buffered", "second", {"n": 2})
    # The early event is consumed by a turn (recorded in history) while nobody waits for it.
    eventually(
        lambda: "ExternalEvent" in [e.kind for e in client.read_execution_history("buffered", 1)],
        5,
    )
    assert client.get_status("buffered").status == "Running"
    client.raise_event("buffered", "first", "one")
    result = client.wait_for_orchestration("buffered", 5_000)
    assert result.status == "Completed", result.error
    assert result.output == ["one", {"n": 2}]


def test_enqueue_event_is_a_fifo_mailbox(make_runtime, client):
    rt = make_runtime()

    @rt.register_orchestration("Drain")
    def drain(ctx, n):
        received = []
        for _ in range(n):
            received.append((yield ctx.dequeue_event("inbox")))
        return received

    rt.start()
    # Two messages queued before the instance even had its first turn.
    client.start_orchestration("mailbox", "Drain", 4)
    client.enqueue_event("mailbox", "inbox", {"i": 1})
    client.enqueue_event("mailbox", "inbox", json.dumps({"i": 2}))  # a str is delivered as-is
    eventually(lambda: client.get_status("mailbox").status == "Running", 5)
    client.enqueue_event("mailbox", "other-queue", "not for us")
    client.enqueue_event("mailbox", "inbox", 3)
    client.enqueue_event_typed("mailbox", "inbox", [4])
    result = client.wait_for_orchestration("mailbox", 5_000)
    assert result.status == "Completed", result.error
    assert result.output == [{"i": 1}, '{"i": 2}', 3, [4]]


# --- KV --------------------------------------------------------------------------------------


def test_kv_values_are_readable_and_waitable_from_the_client(make_runtime, client):
    rt = make_runtime()

    @rt.register_orchestration("Kv")
    def kv(ctx, _):
        ctx.set_kv_value("stage", "one")
        ctx.set_kv_value("owner", "alice")
        yield ctx.wait_for_event("next")
        ctx.set_kv_value("stage", "two")
        ctx.set_kv_value("late", "here")
        ctx.clear_kv_value("owner")
        return ctx.get_kv_all_values()

    rt.start()
    client.start_orchestration("kv", "Kv")
    assert client.wait_for_kv_value("kv", "stage", 5_000) == "one"
    assert client.get_kv_value("kv", "owner") == "alice"
    assert client.get_kv_value("kv", "missing") is None
    assert client.get_kv_all_values("kv") == {"stage": "one", "owner": "alice"}
    with pytest.raises(TimeoutError):
        client.wait_for_kv_value("kv", "late", 200)

    client.raise_event("kv", "next", None)
    assert client.wait_for_kv_value("kv", "late", 5_000) == "here"
    result = client.wait_for_orchestration("kv", 5_000)
    assert result.output == {"stage": "two", "late": "here"}
    assert client.get_kv_all_values("kv") == {"stage": "two", "late": "here"}
    assert client.get_kv_value("kv", "owner") is None
    assert client.get_kv_all_values("never-started") == {}


def test_kv_value_read_from_another_instance(make_runtime, client):
    rt = make_runtime()

    @rt.register_orchestration("Writer")
    def writer(ctx, value):
        ctx.set_kv_value("shared", value)
        yield ctx.wait_for_event("never")

    @rt.register_orchestration("Reader")
    def reader(ctx, source):
        found = yield ctx.get_kv_value_from_instance(source, "shared")
        missing = yield ctx.get_kv_value_from_instance(source, "nope")
        return {"found": found, "missing": missing}

    rt.start()
    client.start_orchestration("kv-writer", "Writer", "hello")
    assert client.wait_for_kv_value("kv-writer", "shared", 5_000) == "hello"
    client.start_orchestration("kv-reader", "Reader", "kv-writer")
    result = client.wait_for_orchestration("kv-reader", 5_000)
    assert result.status == "Completed", result.error
    assert result.output == {"found": "hello", "missing": None}


# --- custom status ---------------------------------------------------------------------------


def test_wait_for_status_change_returns_the_new_status_or_none(make_runtime, client):
    rt = make_runtime()

    @rt.register_orchestration("Progress")
    def progress(ctx, _):
        ctx.set_custom_status("step 1")
        yield ctx.wait_for_event("next")
        ctx.set_custom_status("step 2")
        yield ctx.wait_for_event("next")
        return "done"

    rt.start()
    client.start_orchestration("progress", "Progress")
    first = client.wait_for_status_change("progress", 0, 20, 5_000)
    assert first is not None
    assert first.custom_status == "step 1"
    assert first.custom_status_version >= 1

    t0 = time.monotonic()
    assert client.wait_for_status_change("progress", first.custom_status_version, 20, 200) is None
    assert 0.19 <= time.monotonic() - t0 < 1.0

    client.raise_event("progress", "next", None)
    second = client.wait_for_status_change("progress", first.custom_status_version, 20, 5_000)
    assert second is not None
    assert second.custom_status == "step 2"
    assert second.custom_status_version > first.custom_status_version
    assert second.status == "Running"
