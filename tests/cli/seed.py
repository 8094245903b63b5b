"""A small app and the instances it leaves behind, for the CLI tests and the docs' output.

``seed(provider)`` runs a runtime until these exist (ids in byte order):

=================  ==============  =========  ==================================================
id                 orchestration   status     shape
=================  ==============  =========  ==================================================
counter-1          Counter         Completed  4 executions (continue-as-new 3 times)
expense-7          ApproveExpense  Running    waits for the event ``approval``
import-42          ImportRows      Failed     its activity raised
order-1001         FulfilOrder     Completed  an activity, then the child ``order-1001-ship``
order-1001-ship    ShipOrder       Completed  sub-orchestration with one activity
order-1002 (+ship) FulfilOrder     Completed  the same
thumb-9            Thumbnail       Running    its activity waits for a ``gpu`` worker (none runs)
=================  ==============  =========  ==================================================
"""

from __future__ import annotations

import time
from typing import Any

from duroxide import Client, Runtime, RuntimeOptions

COMPLETED_ROOTS = ["counter-1", "order-1001", "order-1002"]
ALL_IDS = [
    "counter-1",
    "expense-7",
    "import-42",
    "order-1001",
    "order-1001-ship",
    "order-1002",
    "order-1002-ship",
    "thumb-9",
]


def make_runtime(provider: Any) -> Runtime:
    """A runtime with the app registered (not started)."""
    rt = Runtime(provider, RuntimeOptions(dispatcher_poll_interval_ms=20, log_level="error"))

    @rt.register_activity("ChargeCard")
    def charge_card(ctx: Any, order: dict[str, Any]) -> dict[str, Any]:
        return {"charged": order["amount"], "currency": "EUR"}

    @rt.register_activity("BookCourier")
    def book_courier(ctx: Any, order_id: str) -> str:
        return f"TRK-{order_id[-4:]}"

    @rt.register_activity("ParseRows")
    def parse_rows(ctx: Any, _: Any) -> None:
        raise ValueError("row 3: invalid date '2024-02-30'")

    @rt.register_orchestration("FulfilOrder")
    def fulfil_order(ctx: Any, order: dict[str, Any]) -> Any:
        ctx.set_custom_status("charging")
        charge = yield ctx.schedule_activity("ChargeCard", order)
        ship_id = f"{ctx.instance_id}-ship"
        tracking = yield ctx.schedule_sub_orchestration_with_id("ShipOrder", ship_id, order["id"])
        ctx.set_custom_status("shipped")
        return {"order": order["id"], "charged": charge["charged"], "tracking": tracking}

    @rt.register_orchestration("ShipOrder")
    def ship_order(ctx: Any, order_id: str) -> Any:
        return (yield ctx.schedule_activity("BookCourier", order_id))

    @rt.register_orchestration("ApproveExpense")
    def approve_expense(ctx: Any, expense: dict[str, Any]) -> Any:
        ctx.set_custom_status("waiting for approval")
        decision = yield ctx.wait_for_event("approval")
        return {"expense": expense["id"], "approved": bool(decision and decision["approved"])}

    @rt.register_orchestration("ImportRows")
    def import_rows(ctx: Any, source: str) -> Any:
        return (yield ctx.schedule_activity("ParseRows", source))

    @rt.register_orchestration("Thumbnail")
    def thumbnail(ctx: Any, image: str) -> Any:
        return (yield ctx.schedule_activity("Resize", {"image": image}).with_tag("gpu"))

    @rt.register_orchestration("Inbox")
    def inbox(ctx: Any, _: Any) -> Any:
        return (yield ctx.dequeue_event("inbox"))

    @rt.register_orchestration("Counter")
    def counter(ctx: Any, n: int) -> Any:
        if n < 3:
            yield ctx.continue_as_new(n + 1)
        return n

    return rt


def seed(provider: Any, timeout_s: float = 20.0) -> None:
    """Run the app on ``provider`` until every instance above exists in its state."""
    client = Client(provider)
    rt = make_runtime(provider)
    rt.start()
    try:
        client.start_orchestration("order-1001", "FulfilOrder", {"id": "1001", "amount": 42.5})
        client.start_orchestration("order-1002", "FulfilOrder", {"id": "1002", "amount": 7})
        client.start_orchestration("expense-7", "ApproveExpense", {"id": 7, "amount": 120})
        client.start_orchestration("import-42", "ImportRows", "s3://bucket/rows.csv")
        client.start_orchestration("counter-1", "Counter", 0)
        client.start_orchestration("thumb-9", "Thumbnail", "cat.png")
        for instance_id in ("order-1001", "order-1002", "import-42", "counter-1"):
            client.wait_for_orchestration(instance_id, int(timeout_s * 1000))
        deadline = time.monotonic() + timeout_s
        while (
            client.get_status("expense-7").custom_status != "waiting for approval"
            or client.get_queue_depths().worker_queue_by_tag.get("gpu") != 1
        ):
            if time.monotonic() > deadline:
                raise AssertionError("expense-7 or thumb-9 did not start")
            time.sleep(0.01)
    finally:
        rt.shutdown(1_000)
