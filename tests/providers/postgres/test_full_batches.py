"""A batch fetch returns fewer items than asked for only when no more is claimable: the claim
loop then waits for a notification instead of asking again (duroxide/runtime/loop.py). Claim
rows left without a due message (by a lost ack or a deletion) once took places in the batch and
left claimable instances behind; the session case is in the conformance suite
(test_sessions.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from conformance.helpers import LOCK_MS, start
from psycopg import sql

from duroxide.providers.postgres import PostgresProvider


def test_claim_rows_without_a_due_message_do_not_take_places_in_a_batch(
    open_provider: Callable[..., PostgresProvider],
    schema: str,
    admin_conn: psycopg.Connection[Any],
) -> None:
    provider = open_provider()
    # Stale claim rows, first in claim order and more than a few batches' worth: seven with no
    # message left, one whose only message is a timer an hour away (its row says "due now").
    admin_conn.execute(
        sql.SQL("INSERT INTO {}.instance_queue (instance_id, visible_at) "
                "SELECT 'ghost-' || n, 0 FROM generate_series(1, 7) AS n "
                "UNION ALL SELECT 'sleeper', 0").format(sql.Identifier(schema))
    )  # fmt: skip
    start(provider, "sleeper")
    admin_conn.execute(
        sql.SQL("UPDATE {}.orchestrator_queue SET visible_at = visible_at + 3600000 "
                "WHERE instance_id = 'sleeper'").format(sql.Identifier(schema))
    )  # fmt: skip
    for name in ("a", "b"):
        start(provider, name)

    items = provider.fetch_orchestration_items(LOCK_MS, 2)

    assert sorted(item.instance_id for item in items) == ["a", "b"]
    rows = admin_conn.execute(
        sql.SQL("SELECT instance_id, visible_at > 0 FROM {}.instance_queue "
                "WHERE lock_token IS NULL ORDER BY 1").format(sql.Identifier(schema))
    ).fetchall()  # fmt: skip
    assert rows == [("sleeper", True)]  # the ghosts dropped, the sleeper due with its timer
    assert provider.fetch_orchestration_items(LOCK_MS, 2) == []
