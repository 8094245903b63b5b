"""Tag filters: which activities a worker with a given filter may take."""

from __future__ import annotations

import pytest

from duroxide.types import TagFilter, TagFilterSpec

from .helpers import Store, activity, drain_work, names_of, schedule


@pytest.fixture
def tagged_store(provider: Store) -> Store:
    """Four activities: untagged, "gpu", "cpu" and "io"."""
    schedule(
        provider,
        "inst",
        [
            activity("inst", 2, name="plain"),
            activity("inst", 3, name="on-gpu", tag="gpu"),
            activity("inst", 4, name="on-cpu", tag="cpu"),
            activity("inst", 5, name="on-io", tag="io"),
        ],
    )
    return provider


@pytest.mark.parametrize(
    ("tag_filter", "expected"),
    [
        pytest.param(TagFilter.DEFAULT_ONLY, ["plain"], id="default_only"),
        pytest.param(TagFilter.tags(["gpu"]), ["on-gpu"], id="tags-gpu"),
        pytest.param(TagFilter.tags(["gpu", "io"]), ["on-gpu", "on-io"], id="tags-gpu-io"),
        pytest.param(TagFilter.default_and(["gpu"]), ["plain", "on-gpu"], id="default_and-gpu"),
        pytest.param(TagFilter.ANY, ["plain", "on-gpu", "on-cpu", "on-io"], id="any"),
        pytest.param(TagFilter.NONE, [], id="none"),
        pytest.param(TagFilter.tags(["unknown"]), [], id="tags-unmatched"),
    ],
)
def test_filter_selects_matching_activities(
    tagged_store: Store, tag_filter: str, expected: list[str]
) -> None:
    taken = drain_work(tagged_store, TagFilterSpec.parse(tag_filter))

    assert names_of(taken) == expected


def test_items_a_filter_skips_stay_for_other_workers(tagged_store: Store) -> None:
    gpu_worker = drain_work(tagged_store, TagFilterSpec.parse(TagFilter.tags(["gpu"])))
    default_worker = drain_work(tagged_store, TagFilterSpec.parse(TagFilter.DEFAULT_ONLY))
    rest = drain_work(tagged_store, TagFilterSpec.parse(TagFilter.ANY))

    assert names_of(gpu_worker) == ["on-gpu"]
    assert names_of(default_worker) == ["plain"]
    assert names_of(rest) == ["on-cpu", "on-io"]


def test_tag_filter_is_case_sensitive(provider: Store) -> None:
    schedule(provider, "inst", [activity("inst", 2, name="upper", tag="GPU")])

    assert drain_work(provider, TagFilterSpec.parse(TagFilter.tags(["gpu"]))) == []
    assert names_of(drain_work(provider, TagFilterSpec.parse(TagFilter.tags(["GPU"])))) == ["upper"]


def test_tag_is_returned_with_the_item(tagged_store: Store) -> None:
    taken = drain_work(tagged_store, TagFilterSpec.parse(TagFilter.ANY))

    assert {w.item.name: w.item.tag for w in taken} == {
        "plain": None,
        "on-gpu": "gpu",
        "on-cpu": "cpu",
        "on-io": "io",
    }
