"""The README's first command runs ``examples/order_saga.py``: keep it working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "order_saga.py"


def test_the_order_saga_example_ships_one_order_and_compensates_the_other(tmp_path: Path) -> None:
    db = tmp_path / "orders.db"
    run = subprocess.run(
        [sys.executable, str(EXAMPLE), f"sqlite:{db}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert out.count(": Completed") == 2
    assert '"status": "shipped"' in out
    assert '"status": "payment_failed"' in out and '"error": "card declined"' in out
    # the compensation released both reservations: stock is back to its start minus order A
    assert 'stock after both orders: {"keyboard": 4, "mouse": 8, "monitor": 2}' in out
    assert db.exists()
