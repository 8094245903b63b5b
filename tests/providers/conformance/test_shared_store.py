"""Several provider handles on one store: restarts keep everything, nodes exclude each other."""

from __future__ import annotations

import threading

from duroxide.providers.base import KvChanges, OrchestrationItem

from .helpers import (
    DEFAULT_ONLY,
    SHORT_LOCK_MS,
    StoreOpener,
    activity,
    eventually,
    fetch,
    fetch_for,
    fetch_work,
    raise_event,
    run_first_turn,
    start,
)


def test_state_survives_a_restart(open_store: StoreOpener) -> None:
    before = open_store.open()
    first = run_first_turn(
        before, "inst", activities=[activity("inst", 2)], kv=KvChanges(upserts={"k": ("v", 1)})
    )
    raise_event(before, "inst")
    history = before.read_history("inst", 1)
    open_store.close(before)

    after = open_store.open()

    status = after.get_instance_status("inst")
    assert status is not None
    assert status.status == "Running"
    assert after.read_history("inst", 1) == history
    assert after.get_kv_value("inst", "k") == "v"
    assert fetch_work(after).item == activity("inst", 2)
    item = fetch_for(after, "inst")
    assert [m.kind for m in item.messages] == ["ExternalRaised"]
    assert item.now_ms >= first.now_ms


def test_a_lock_held_by_one_node_excludes_the_other(open_store: StoreOpener) -> None:
    node_a = open_store.open()
    node_b = open_store.open()
    run_first_turn(node_a, "w", activities=[activity("w", 2)])
    start(node_a, "inst")

    assert fetch(node_a).instance_id == "inst"
    assert fetch_work(node_a).item.instance_id == "w"

    assert node_b.fetch_orchestration_item(30_000) is None
    assert node_b.fetch_work_item(30_000, DEFAULT_ONLY) is None
    start(node_b, "other")
    assert fetch(node_b).instance_id == "other"


def test_a_lock_expired_on_one_node_is_taken_by_the_other(open_store: StoreOpener) -> None:
    node_a = open_store.open()
    node_b = open_store.open()
    start(node_a, "inst")
    crashed = fetch(node_a, lock_ms=SHORT_LOCK_MS)

    taken = eventually(lambda: node_b.fetch_orchestration_item(30_000), what="lock expiry")

    assert taken.instance_id == "inst"
    assert taken.lock_token != crashed.lock_token
    assert node_a.renew_orchestration_item_lock(crashed.lock_token, 30_000) is False


def test_fetchers_on_several_nodes_never_share_an_instance(open_store: StoreOpener) -> None:
    nodes = [open_store.open() for _ in range(4)]
    instance_ids = [f"inst-{i:02d}" for i in range(20)]
    for instance_id in instance_ids:
        start(nodes[0], instance_id)
    barrier = threading.Barrier(len(nodes))
    taken: list[OrchestrationItem] = []
    taken_lock = threading.Lock()
    errors: list[BaseException] = []

    def fetcher(node_index: int) -> None:
        node = nodes[node_index]
        try:
            barrier.wait()
            while (item := node.fetch_orchestration_item(30_000)) is not None:
                with taken_lock:
                    taken.append(item)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=fetcher, args=(i,)) for i in range(len(nodes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert sorted(item.instance_id for item in taken) == instance_ids
