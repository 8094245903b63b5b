"""Test helpers for duroxide orchestrations: event/message factories and an in-memory driver.

Orchestrations are deterministic generators replayed from their history, so they can be tested
without a database, workers or real time: build the messages a runtime would deliver, run
turns, and assert on what each turn decided. Everything here is pure and fast.

``duroxide.testing.events``
    Factories for history events (``started``, ``activity_scheduled``, ``activity_completed`` …)
    and for messages (``start_msg``, ``activity_done``, ``timer_msg``, ``raise_msg`` …). Payload
    arguments take Python values and are JSON-encoded as the SDK would store them.

``Harness``
    Drives one instance turn by turn and keeps its history across turns and executions::

        from duroxide.testing import Harness, activity_done, output_of

        def greet(ctx, name):
            greeting = yield ctx.schedule_activity("Hello", name)
            return greeting

        h = Harness({"Greet": greet})
        r = h.start("Greet", "ada")
        assert [w.name for w in r.worker_items] == ["Hello"]    # activity event 2
        r = h.turn(activity_done(2, "hello ada"))
        assert output_of(r) == "hello ada"

``replay_history``
    Checks that the current code still reproduces a recorded history, turn by turn (use it on
    histories captured with ``Client.read_execution_history`` or saved as golden files).
"""

from duroxide.testing.events import (
    Raw,
    activity_cancel_requested,
    activity_completed,
    activity_done,
    activity_error,
    activity_failed,
    activity_scheduled,
    app_error,
    cancel_msg,
    cancel_requested,
    completed,
    continue_msg,
    continued_as_new,
    custom_status_updated,
    enqueue_msg,
    external_event,
    external_subscribed,
    external_subscription_cancelled,
    failed,
    kv_cleared,
    kv_set,
    kvs_cleared,
    new_guid_recorded,
    orchestration_chained,
    payload,
    queue_delivered,
    queue_subscribed,
    queue_subscription_cancelled,
    raise_msg,
    start_msg,
    started,
    sub_done,
    sub_error,
    sub_orch_cancel_requested,
    sub_orch_completed,
    sub_orch_failed,
    sub_orch_scheduled,
    system_call,
    timer_created,
    timer_fired,
    timer_msg,
    utc_now_recorded,
)
from duroxide.testing.harness import (
    Harness,
    ReplayMismatchError,
    as_handler_lookup,
    kinds,
    output_of,
    replay_history,
    scheduled_activities,
    sequential_guids,
    timers_of,
)

__all__ = [
    "Harness",
    "Raw",
    "ReplayMismatchError",
    "activity_cancel_requested",
    "activity_completed",
    "activity_done",
    "activity_error",
    "activity_failed",
    "activity_scheduled",
    "app_error",
    "as_handler_lookup",
    "cancel_msg",
    "cancel_requested",
    "completed",
    "continue_msg",
    "continued_as_new",
    "custom_status_updated",
    "enqueue_msg",
    "external_event",
    "external_subscribed",
    "external_subscription_cancelled",
    "failed",
    "kinds",
    "kv_cleared",
    "kv_set",
    "kvs_cleared",
    "new_guid_recorded",
    "orchestration_chained",
    "output_of",
    "payload",
    "queue_delivered",
    "queue_subscribed",
    "queue_subscription_cancelled",
    "raise_msg",
    "replay_history",
    "scheduled_activities",
    "sequential_guids",
    "start_msg",
    "started",
    "sub_done",
    "sub_error",
    "sub_orch_cancel_requested",
    "sub_orch_completed",
    "sub_orch_failed",
    "sub_orch_scheduled",
    "system_call",
    "timer_created",
    "timer_fired",
    "timer_msg",
    "timers_of",
    "utc_now_recorded",
]
