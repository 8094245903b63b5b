"""An order saga on the embedded SQLite default.

Each order reserves stock for its items in parallel, charges the card (with retries), then ships.
When the payment fails, the saga compensates: it releases every reservation it made. Progress is
published as a custom status, and everything runs durably: kill the process at any point and run
it again on the same database file, and each order picks up where it stopped.

    python examples/order_saga.py [sqlite:path/to/orders.db]
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

from duroxide import Client, Runtime, RuntimeOptions, SqliteProvider

DECLINED_CARD = "4000-0000-0000-0002"

# --- activities: the side effects (here an in-memory "warehouse" and "payment gateway") ----------

_stock = {"keyboard": 5, "mouse": 10, "monitor": 2}
_stock_lock = threading.Lock()


def reserve_inventory(ctx: Any, item: dict[str, Any]) -> dict[str, Any]:
    with _stock_lock:
        if _stock.get(item["sku"], 0) < item["qty"]:
            raise ValueError(f"out of stock: {item['sku']}")
        _stock[item["sku"]] -= item["qty"]
    ctx.trace_info(f"reserved {item['qty']} x {item['sku']}")
    return {"sku": item["sku"], "qty": item["qty"], "reservation": f"res-{item['sku']}"}


def release_inventory(ctx: Any, reservation: dict[str, Any]) -> str:
    with _stock_lock:
        _stock[reservation["sku"]] += reservation["qty"]
    ctx.trace_info(f"released {reservation['reservation']}")
    return reservation["reservation"]


def charge_payment(ctx: Any, payment: dict[str, Any]) -> str:
    if payment["card"] == DECLINED_CARD:
        raise RuntimeError("card declined")
    return f"txn-{payment['order_id']}"


def ship_order(ctx: Any, order: dict[str, Any]) -> str:
    return f"track-{order['order_id']}"


# --- the orchestration: deterministic coordination, replayed after every crash -----------------


def process_order(ctx: Any, order: dict[str, Any]) -> Any:
    ctx.set_custom_status("reserving stock")
    results = yield ctx.all(
        [ctx.schedule_activity("ReserveInventory", item) for item in order["items"]]
    )
    reserved = [r["ok"] for r in results if "ok" in r]
    if len(reserved) < len(order["items"]):
        yield ctx.all([ctx.schedule_activity("ReleaseInventory", r) for r in reserved])
        return {"order_id": order["order_id"], "status": "rejected", "reason": "out of stock"}

    ctx.set_custom_status("charging card")
    try:
        transaction = yield ctx.schedule_activity_with_retry(
            "ChargePayment",
            {"order_id": order["order_id"], "card": order["card"], "amount": order["amount"]},
            {"max_attempts": 2, "backoff": "fixed", "delay_ms": 100},
        )
    except Exception as error:
        ctx.trace_warn(f"payment failed ({error}); compensating")
        ctx.set_custom_status("compensating")
        released = yield ctx.all([ctx.schedule_activity("ReleaseInventory", r) for r in reserved])
        return {
            "order_id": order["order_id"],
            "status": "payment_failed",
            "error": str(error),
            "released": [r["ok"] for r in released],
        }

    ctx.set_custom_status("shipping")
    tracking = yield ctx.schedule_activity("ShipOrder", order)
    return {
        "order_id": order["order_id"],
        "status": "shipped",
        "transaction": transaction,
        "tracking": tracking,
    }


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else None
    if url is None:
        url = f"sqlite:{Path(tempfile.mkdtemp(prefix='duroxide-')) / 'orders.db'}"
    print(f"database: {url}")

    provider = SqliteProvider.open(url)
    runtime = Runtime(provider, RuntimeOptions(log_level="warning"))
    runtime.register_activity("ReserveInventory", reserve_inventory)
    runtime.register_activity("ReleaseInventory", release_inventory)
    runtime.register_activity("ChargePayment", charge_payment)
    runtime.register_activity("ShipOrder", ship_order)
    runtime.register_orchestration("ProcessOrder", process_order)
    runtime.start()

    client = Client(provider)
    run = uuid.uuid4().hex[:6]
    orders = [
        {"order_id": f"A-{run}", "card": "4242-4242-4242-4242", "amount": 120,
         "items": [{"sku": "keyboard", "qty": 1}, {"sku": "mouse", "qty": 2}]},
        {"order_id": f"B-{run}", "card": DECLINED_CARD, "amount": 450,
         "items": [{"sku": "monitor", "qty": 1}, {"sku": "mouse", "qty": 1}]},
    ]  # fmt: skip
    try:
        for order in orders:
            client.start_orchestration(f"order-{order['order_id']}", "ProcessOrder", order)
        for order in orders:
            result = client.wait_for_orchestration(f"order-{order['order_id']}", 30_000)
            print(f"order {order['order_id']}: {result.status}")
            print(json.dumps(result.output, indent=2))
        with _stock_lock:
            print(f"stock after both orders: {json.dumps(_stock)}")
    finally:
        runtime.shutdown(2_000)
        provider.close()


if __name__ == "__main__":
    main()
