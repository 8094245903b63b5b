"""Node user guide: custom-status progress reporting, event queues and the multi-turn chat.

Ported to Python: ``set_custom_status``/``reset_custom_status`` are not yielded,
``dequeue_event`` is, and ``client.wait_for_status_change`` is how a client follows progress.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from duroxide import Client

from .support import eventually


def executions(client: Client, instance_id: str) -> list[int]:
    if client.get_status(instance_id).status == "NotFound":
        return []
    return client.list_executions(instance_id)


# --- Custom status: progress reporting -----------------------------------------------------------


def test_custom_status_progress_is_followed_with_wait_for_status_change(client, make_runtime):
    runtime = make_runtime()
    # Each step's activity waits until the client has seen the step's status, so the client
    # observes every update instead of racing the orchestration.
    gates = {
        "step 1: validating": threading.Event(),
        "step 2: processing": threading.Event(),
    }

    @runtime.register_activity("Validate")
    def validate(ctx, input):
        assert gates["step 1: validating"].wait(5)
        return True

    @runtime.register_activity("Process")
    def process(ctx, input):
        assert gates["step 2: processing"].wait(5)
        return {"processed": input}

    @runtime.register_orchestration("LongProcess")
    def long_process(ctx, input):
        ctx.set_custom_status("step 1: validating")
        yield ctx.schedule_activity("Validate", input)

        ctx.set_custom_status("step 2: processing")
        result = yield ctx.schedule_activity("Process", input)

        ctx.set_custom_status("step 3: complete")
        return result

    runtime.start()
    instance_id = "progress-1"
    client.start_orchestration(instance_id, "LongProcess", "batch-4")

    # Client-side: poll for progress (the guide's loop; its 30 s timeout shrunk to 300 ms).
    # As in the reference Python SDK, the wait also returns once the instance has finished, so
    # the loop stops at a terminal status (the Rust guide's loop does the same).
    seen: list[tuple[str | None, int]] = []
    last_version = 0
    try:
        while True:
            change = client.wait_for_status_change(instance_id, last_version, 20, 300)
            if not change:
                break  # timeout
            if change.custom_status_version > last_version:
                seen.append((change.custom_status, change.custom_status_version))
                last_version = change.custom_status_version
            if change.custom_status in gates:
                gates[change.custom_status].set()
            if change.status in ("Completed", "Failed"):
                break
    finally:
        for gate in gates.values():
            gate.set()

    assert [status for status, _ in seen] == [
        "step 1: validating",
        "step 2: processing",
        "step 3: complete",
    ]
    versions = [version for _, version in seen]
    assert versions == sorted(set(versions)) and versions[0] >= 1  # strictly increasing
    result = client.wait_for_orchestration(instance_id, 5_000)
    assert result.status == "Completed", result.error
    assert result.output == {"processed": "batch-4"}
    # Also on the status objects of wait_for_orchestration and get_orchestration_status.
    assert result.custom_status == "step 3: complete"
    assert result.custom_status_version == last_version
    status = client.get_orchestration_status(instance_id)
    assert status.custom_status == "step 3: complete"
    assert status.custom_status_version == last_version


def test_get_orchestration_status_shows_custom_status_of_a_running_instance(client, make_runtime):
    runtime = make_runtime()

    @runtime.register_orchestration("Waiter")
    def waiter(ctx, input):
        ctx.set_custom_status(json.dumps({"phase": "waiting", "for": input}))
        got = yield ctx.wait_for_event("done")
        return got

    runtime.start()
    client.start_orchestration("status-running-1", "Waiter", "signal")
    change = client.wait_for_status_change("status-running-1", 0, 20, 5_000)
    assert change is not None

    status = client.get_orchestration_status("status-running-1")
    assert status.status == "Running"
    assert json.loads(status.custom_status) == {"phase": "waiting", "for": "signal"}
    assert status.custom_status_version == change.custom_status_version >= 1
    client.raise_event("status-running-1", "done", 1)
    assert client.wait_for_orchestration("status-running-1", 5_000).output == 1


def test_reset_custom_status_clears_it_back_to_none(client, make_runtime):
    runtime = make_runtime()

    @runtime.register_orchestration("Resetter")
    def resetter(ctx, input):
        ctx.set_custom_status("busy")
        yield ctx.wait_for_event("go")
        ctx.reset_custom_status()
        yield ctx.wait_for_event("finish")
        return ctx.get_custom_status()

    runtime.start()
    client.start_orchestration("reset-1", "Resetter", None)
    busy = client.wait_for_status_change("reset-1", 0, 20, 5_000)
    assert busy is not None and busy.custom_status == "busy"

    client.raise_event("reset-1", "go", None)
    cleared = client.wait_for_status_change("reset-1", busy.custom_status_version, 20, 5_000)
    assert cleared is not None
    assert cleared.custom_status is None
    assert cleared.custom_status_version > busy.custom_status_version
    assert client.get_orchestration_status("reset-1").custom_status is None

    client.raise_event("reset-1", "finish", None)
    result = client.wait_for_orchestration("reset-1", 5_000)
    assert result.status == "Completed", result.error
    assert result.output is None
    assert result.custom_status is None


def test_wait_for_status_change_returns_none_on_timeout(client, make_runtime):
    runtime = make_runtime()

    @runtime.register_orchestration("Quiet")
    def quiet(ctx, input):
        yield ctx.wait_for_event("never")

    runtime.start()
    client.start_orchestration("quiet-1", "Quiet", None)
    eventually(lambda: client.get_status("quiet-1").status == "Running", timeout_s=5)
    assert client.wait_for_status_change("quiet-1", 0, 10, 100) is None


# --- Event queues --------------------------------------------------------------------------------


def test_event_queue_is_fifo_and_survives_continue_as_new(client, make_runtime):
    runtime = make_runtime()
    processed: list[int] = []

    @runtime.register_activity("ProcessTask")
    def process_task(ctx, task):
        processed.append(task["id"])
        return f"{task['type']}d"

    @runtime.register_orchestration("WorkProcessor")
    def work_processor(ctx, input):
        # Block until a message arrives on the 'tasks' queue
        task_json = yield ctx.dequeue_event("tasks")
        task = json.loads(task_json)

        result = yield ctx.schedule_activity("ProcessTask", task)
        ctx.set_custom_status(json.dumps({"done": task["id"], "result": result}))

        # Loop forever by restarting — queue state survives
        return (yield ctx.continue_as_new(""))

    def done() -> Any:
        status = client.get_status("queue-1").custom_status
        return status and json.loads(status)["done"]

    runtime.start()
    client.start_orchestration("queue-1", "WorkProcessor", "")
    # Send work from outside: three messages at once, so two wait in the queue while the
    # first is processed, and are carried over each continue-as-new.
    types = ["resize", "compress", "upload"]
    for n, kind in enumerate(types, start=1):
        client.enqueue_event("queue-1", "tasks", json.dumps({"id": n, "type": kind}))

    eventually(lambda: done() == 3, timeout_s=5)
    assert processed == [1, 2, 3]
    # The processor is blocked on an empty queue in a fresh execution.
    eventually(lambda: len(executions(client, "queue-1")) == 4, timeout_s=5)
    assert client.get_status("queue-1").status == "Running"
    assert json.loads(client.get_status("queue-1").custom_status) == {
        "done": 3,
        "result": "uploadd",
    }

    client.enqueue_event("queue-1", "tasks", json.dumps({"id": 4, "type": "resize"}))
    eventually(lambda: done() == 4, timeout_s=5)
    assert processed == [1, 2, 3, 4]


def test_queue_messages_enqueued_before_the_dequeue_are_kept(client, make_runtime):
    runtime = make_runtime()

    @runtime.register_orchestration("LateReader")
    def late_reader(ctx, input):
        yield ctx.wait_for_event("ready")  # messages arrive while it waits for this
        first = yield ctx.dequeue_event("inbox")
        second = yield ctx.dequeue_event("inbox")
        return [first, second]

    runtime.start()
    client.start_orchestration("late-reader-1", "LateReader", None)
    eventually(
        lambda: (
            "ExternalSubscribed"
            in [e.kind for e in client.read_execution_history("late-reader-1", 1)]
        ),
        timeout_s=5,
    )
    client.enqueue_event("late-reader-1", "inbox", {"n": 1})
    client.enqueue_event("late-reader-1", "inbox", {"n": 2})
    client.raise_event("late-reader-1", "ready", True)
    result = client.wait_for_orchestration("late-reader-1", 5_000)

    assert result.status == "Completed", result.error
    assert result.output == [{"n": 1}, {"n": 2}]


# --- Real-world pattern: multi-turn chat ---------------------------------------------------------


def test_multi_turn_chat_with_queue_custom_status_and_continue_as_new(client, make_runtime):
    runtime = make_runtime()

    @runtime.register_activity("Generate")
    def generate(ctx, text):
        return f"echo: {text}"  # a deterministic stand-in for the model

    @runtime.register_orchestration("ChatBot")
    def chat_bot(ctx, input):
        # Wait for the next user message
        msg_json = yield ctx.dequeue_event("inbox")
        msg = json.loads(msg_json)

        # Generate a response
        response = yield ctx.schedule_activity("Generate", msg["text"])

        # Publish the reply via custom status
        ctx.set_custom_status(
            json.dumps({"state": "replied", "response": response, "seq": msg["seq"]})
        )

        # End conversation on "bye"
        if "bye" in msg["text"]:
            return f"Done after {msg['seq']} msgs"

        # Otherwise loop — queue state and status survive continue-as-new
        return (yield ctx.continue_as_new(""))

    runtime.start()
    instance_id = "chat-1"
    client.start_orchestration(instance_id, "ChatBot", "")

    # Client side: send a message and wait for the reply
    last_version = 0
    replies = []
    for seq, text in enumerate(["Hello!", "How are you?", "ok bye"], start=1):
        client.enqueue_event(instance_id, "inbox", json.dumps({"seq": seq, "text": text}))
        status = client.wait_for_status_change(instance_id, last_version, 50, 10_000)
        assert status is not None, f"no reply to message {seq}"
        reply = json.loads(status.custom_status)
        replies.append(reply)
        last_version = status.custom_status_version
        if seq == 1:
            # After continue-as-new the next execution still shows the last reply.
            eventually(lambda: len(executions(client, instance_id)) >= 2, timeout_s=5)
            carried = client.get_status(instance_id)
            assert carried.custom_status == status.custom_status
            assert carried.custom_status_version == last_version

    assert replies == [
        {"state": "replied", "response": "echo: Hello!", "seq": 1},
        {"state": "replied", "response": "echo: How are you?", "seq": 2},
        {"state": "replied", "response": "echo: ok bye", "seq": 3},
    ]
    result = client.wait_for_orchestration(instance_id, 5_000)
    assert result.status == "Completed", result.error
    assert result.output == "Done after 3 msgs"
    assert client.list_executions(instance_id) == [1, 2, 3]
