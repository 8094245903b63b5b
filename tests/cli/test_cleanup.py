"""delete, prune and purge: the safety rails (running trees, sub-orchestrations, --yes) and the
progress bar, which appears only when stderr is a terminal."""

from __future__ import annotations

import os
import pty
import subprocess

from .conftest import COMMAND, Store
from .test_read import ids_of


def test_delete_and_prune(fresh_seeded: Store) -> None:
    child = fresh_seeded.run("instances", "delete", "order-1001-ship")
    assert child.code == 1
    assert child.error_line() == (
        "error: instance 'order-1001-ship' is a sub-orchestration of 'order-1001'; delete the "
        "root instance instead (or use --force)"
    )
    running = fresh_seeded.run("instances", "delete", "expense-7")
    assert running.code == 1
    assert "still running" in running.error_line()

    root = fresh_seeded.run("instances", "delete", "order-1001", "-o", "json").json()
    assert root["instances_deleted"] == 2  # with its sub-orchestration
    assert root["events_deleted"] > 0
    forced = fresh_seeded.run("instances", "delete", "expense-7", "--force")
    assert forced.code == 0, forced.err
    assert forced.out.startswith("deleted expense-7: 1 instance(s), 1 execution(s)")

    pruned = fresh_seeded.run("instances", "prune", "counter-1", "--keep-last", "2")
    assert pruned.code == 0, pruned.err
    assert pruned.out == "pruned counter-1: 2 execution(s), 4 event(s) deleted\n"

    left = fresh_seeded.run("metrics", "-o", "json").json()
    assert (left["total_instances"], left["total_executions"]) == (5, 6)  # counter-1 keeps 2


def test_purge_counts_first_and_deletes_only_with_yes(fresh_seeded: Store) -> None:
    dry = fresh_seeded.run("instances", "purge", "--status", "completed")
    assert dry.code == 0, dry.err
    assert dry.out == (
        "3 finished root instance(s) would be deleted, with their sub-orchestrations; run "
        "again with --yes to delete them\n"
    )
    dry_json = fresh_seeded.run("instances", "purge", "--completed-before", "now", "-o", "json")
    assert dry_json.json() == {"matched": 4, "deleted": False}  # 3 completed + 1 failed root

    done = fresh_seeded.run("instances", "purge", "--status", "Completed", "--yes",
                            "--batch-size", "2", "-o", "json")  # fmt: skip
    assert done.code == 0, done.err
    assert done.err == ""  # not a terminal: no progress bar
    record = done.json()
    assert (record["matched"], record["deleted"], record["instances_deleted"]) == (3, True, 5)
    left = fresh_seeded.run("instances", "list")
    assert ids_of(left.lines) == ["expense-7", "import-42", "thumb-9"]


def test_purge_by_name_never_takes_running_instances(fresh_sqlite: Store) -> None:
    by_name = fresh_sqlite.run("instances", "purge", "--name", "ImportRows", "--yes")
    assert by_name.out.startswith("deleted 1 instance(s) (1 matched root instance(s)")
    running = fresh_sqlite.run("instances", "purge", "--name", "Thumbnail", "--yes")
    assert running.out.startswith("deleted 0 instance(s) (0 matched")


def test_purge_draws_a_progress_bar_on_a_terminal(fresh_sqlite: Store) -> None:
    primary, secondary = pty.openpty()
    try:
        done = subprocess.run(
            [*COMMAND, "instances", "purge", "--completed-before", "now", "--yes",
             "--batch-size", "1"],
            env=fresh_sqlite.env, stdout=subprocess.PIPE, stderr=secondary, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        os.close(secondary)
        secondary = -1
        drawn = _read_all(primary)
    finally:
        os.close(primary)
        if secondary >= 0:
            os.close(secondary)
    assert done.returncode == 0
    assert "\rpurging [" in drawn
    assert "] 4/4 (100%)" in drawn
    assert done.stdout.startswith("deleted 6 instance(s) (4 matched root instance(s)")


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the terminal's other end is closed and drained
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()
