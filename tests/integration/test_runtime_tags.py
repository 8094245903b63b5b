"""Tag-filtered workers: ``schedule_activity(...).with_tag(t)`` runs only on a runtime whose
``worker_tag_filter`` accepts ``t``; untagged activities stay on default workers.

Each activity records which runtime ran it (a closure per runtime), so a routing mistake shows
up as a wrong label, not just as a slower test.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from duroxide import TagFilter

from .support import eventually


class Ledger:
    """Per-runtime ``Where`` activities that record (runtime label, input, ctx.tag())."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, Any, str | None]] = []
        self._lock = threading.Lock()

    def activity(self, label: str):
        def where(ctx, inp):
            with self._lock:
                self.runs.append((label, inp, ctx.tag()))
            return f"{label}:{inp}"

        return where

    def labels_for(self, inp: Any) -> list[str]:
        with self._lock:
            return [label for label, i, _ in self.runs if i == inp]


def test_tag_filter_values():
    assert TagFilter.DEFAULT_ONLY == "default_only"
    assert TagFilter.ANY == "any"
    assert TagFilter.NONE == "none"
    assert json.loads(TagFilter.tags(["gpu"])) == {"tags": ["gpu"]}
    assert json.loads(TagFilter.default_and(["gpu"])) == {"default_and": ["gpu"]}
    with pytest.raises(ValueError):
        TagFilter.tags(["a", "b", "c", "d", "e", "f"])


def test_tagged_activity_runs_only_on_matching_worker_and_untagged_on_default(make_runtime, client):
    ledger = Ledger()
    orchestrator = make_runtime(worker_concurrency=0)

    @orchestrator.register_orchestration("Mixed")
    def mixed(ctx, _):
        # The untagged item is enqueued first, so a gpu worker whose filter wrongly accepted
        # untagged work would claim it before the gpu item.
        return (
            yield ctx.all(
                [
                    ctx.schedule_activity("Where", "plain"),
                    ctx.schedule_activity("Where", "gpu").with_tag("gpu"),
                ]
            )
        )

    gpu = make_runtime(orchestration_concurrency=0, worker_tag_filter=TagFilter.tags(["gpu"]))
    gpu.register_activity("Where", ledger.activity("gpu-node"))
    orchestrator.start()
    gpu.start()

    client.start_orchestration("tags-1", "Mixed")
    eventually(lambda: ledger.labels_for("gpu") == ["gpu-node"], 5)
    # The gpu worker is idle now; the untagged activity must still be waiting for a default one.
    with pytest.raises(TimeoutError):
        client.wait_for_orchestration("tags-1", 300)
    assert ledger.labels_for("plain") == []
    assert client.get_queue_depths().worker_queue_by_tag == {"": 1}

    default = make_runtime(orchestration_concurrency=0)
    default.register_activity("Where", ledger.activity("default-node"))
    default.start()
    result = client.wait_for_orchestration("tags-1", 5_000)
    assert result.output == [{"ok": "default-node:plain"}, {"ok": "gpu-node:gpu"}]
    assert sorted(ledger.runs) == [("default-node", "plain", None), ("gpu-node", "gpu", "gpu")]

    scheduled = [
        json.loads(e.data)
        for e in client.read_execution_history("tags-1", 1)
        if e.kind == "ActivityScheduled"
    ]
    assert [s.get("tag") for s in scheduled] == [None, "gpu"]


def test_default_and_filter_takes_untagged_and_its_tags_only(make_runtime, client):
    ledger = Ledger()
    runtime = make_runtime(worker_tag_filter=TagFilter.default_and(["gpu"]))
    runtime.register_activity("Where", ledger.activity("mixed-node"))

    @runtime.register_orchestration("DefaultAnd")
    def flow(ctx, _):
        both = yield ctx.all(
            [
                ctx.schedule_activity("Where", "plain"),
                ctx.schedule_activity("Where", "gpu").with_tag("gpu"),
            ]
        )
        other = yield ctx.race(
            ctx.schedule_activity("Where", "tpu").with_tag("tpu"),
            ctx.schedule_timer(400),
        )
        return {"both": both, "other_index": other["index"]}

    runtime.start()
    client.start_orchestration("tags-default-and", "DefaultAnd")
    result = client.wait_for_orchestration("tags-default-and", 5_000)
    assert result.output == {
        "both": [{"ok": "mixed-node:plain"}, {"ok": "mixed-node:gpu"}],
        "other_index": 1,
    }
    assert ledger.labels_for("tpu") == []


def test_any_filter_takes_every_tag(make_runtime, client):
    ledger = Ledger()
    runtime = make_runtime(worker_tag_filter=TagFilter.ANY)
    runtime.register_activity("Where", ledger.activity("any-node"))

    @runtime.register_orchestration("AnyTags")
    def flow(ctx, _):
        return (
            yield ctx.all_typed(
                [
                    ctx.schedule_activity("Where", "plain"),
                    ctx.schedule_activity("Where", "gpu").with_tag("gpu"),
                    ctx.schedule_activity("Where", "tpu").with_tag("tpu"),
                ]
            )
        )

    runtime.start()
    client.start_orchestration("tags-any", "AnyTags")
    assert client.wait_for_orchestration("tags-any", 5_000).output == [
        "any-node:plain",
        "any-node:gpu",
        "any-node:tpu",
    ]
    assert sorted(t for _, _, t in ledger.runs if t) == ["gpu", "tpu"]


def test_none_filter_runs_no_activities_at_all(make_runtime, client):
    ledger = Ledger()
    orchestrator = make_runtime(worker_tag_filter=TagFilter.NONE)
    orchestrator.register_activity("Where", ledger.activity("none-node"))

    @orchestrator.register_orchestration("Plain")
    def flow(ctx, _):
        return (yield ctx.schedule_activity("Where", "plain"))

    orchestrator.start()
    client.start_orchestration("tags-none", "Plain")
    eventually(lambda: client.get_queue_depths().worker_queue_by_tag == {"": 1}, 5)
    with pytest.raises(TimeoutError):
        client.wait_for_orchestration("tags-none", 300)
    assert ledger.runs == []
    assert orchestrator.metrics_snapshot().worker_dispatcher_items_fetched == 0

    default = make_runtime(orchestration_concurrency=0)
    default.register_activity("Where", ledger.activity("default-node"))
    default.start()
    assert client.wait_for_orchestration("tags-none", 5_000).output == "default-node:plain"


def test_tagged_activity_without_a_matching_worker_stays_pending(make_runtime, client):
    ledger = Ledger()
    runtime = make_runtime(worker_tag_filter=TagFilter.default_and(["gpu"]))
    runtime.register_activity("Where", ledger.activity("node"))

    @runtime.register_orchestration("Orphan")
    def flow(ctx, _):
        winner = yield ctx.race(
            ctx.schedule_activity("Where", "nowhere").with_tag("nowhere"),
            ctx.schedule_timer(600),
        )
        return winner

    runtime.start()
    client.start_orchestration("tags-orphan", "Orphan")
    # While the race is open the activity sits in the worker queue under its tag.
    eventually(lambda: client.get_queue_depths().worker_queue_by_tag == {"nowhere": 1}, 5)
    result = client.wait_for_orchestration("tags-orphan", 5_000)
    assert result.output == {"index": 1, "value": None}
    assert ledger.runs == []
    kinds = [e.kind for e in client.read_execution_history("tags-orphan", 1)]
    assert "ActivityCancelRequested" in kinds
    assert "ActivityCompleted" not in kinds
    # The loser was cancelled: its queue row is gone.
    eventually(lambda: client.get_queue_depths().worker_queue == 0, 5)
