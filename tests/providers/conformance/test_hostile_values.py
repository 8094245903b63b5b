"""Ids, names, keys, tags and session ids are opaque text: anything valid round-trips exactly."""

from __future__ import annotations

import json

import pytest

from duroxide.history import ExternalEvent
from duroxide.providers.base import KvChanges, OrchestrationAck, SessionConfig
from duroxide.types import InstanceFilter, TagFilterSpec
from duroxide.work_items import ActivityCompletedMsg, EventRaised, OutboundMessage

from .helpers import (
    ANY_TAG,
    DEFAULT_ONLY,
    Store,
    activity,
    drain_work,
    fetch_for,
    fetch_work,
    finish,
    run_first_turn,
    start,
    started,
    update,
)

HOSTILE = [
    pytest.param('it\'s "quoted" `back`', id="quotes"),
    pytest.param("'; DROP TABLE instances; --", id="sql-injection"),
    pytest.param("Robert'); DELETE FROM worker_queue; --", id="sql-injection-2"),
    pytest.param("ünïcødé 日本語 🚀 \u200b", id="unicode"),
    pytest.param("i" * 499 + "🚀", id="500-chars"),
    pytest.param("100% _wild*card? [x] \\ $1", id="wildcards"),
    pytest.param("line\nbreak\ttab\r", id="control-chars"),
]


@pytest.mark.parametrize("instance_id", HOSTILE)
def test_instance_id_round_trips_through_every_operation(provider: Store, instance_id: str) -> None:
    run_first_turn(provider, "decoy")
    run_first_turn(provider, instance_id, activities=[activity(instance_id, 2)])

    status = provider.get_instance_status(instance_id)
    assert status is not None
    assert status.status == "Running"
    assert sorted(i.instance_id for i in provider.list_instances()) == sorted(
        ["decoy", instance_id]
    )
    listed = provider.list_instances(InstanceFilter(instance_ids=[instance_id]))
    assert [i.instance_id for i in listed] == [instance_id]
    info = provider.get_instance_info(instance_id)
    assert info is not None
    assert info.instance_id == instance_id
    assert len(provider.read_history(instance_id, 1)) == 2
    tree = provider.get_instance_tree(instance_id)
    assert tree is not None
    assert tree.all_ids == [instance_id]

    work = fetch_work(provider)
    assert work.item.instance_id == instance_id
    provider.ack_work_item(
        work.lock_token,
        OutboundMessage(
            instance_id=instance_id,
            message=ActivityCompletedMsg(execution_id=1, activity_id=2, result='"r"'),
        ),
    )
    assert fetch_for(provider, instance_id).messages[0].kind == "ActivityCompleted"


@pytest.mark.parametrize("instance_id", HOSTILE)
def test_instance_with_hostile_id_is_deleted_alone(provider: Store, instance_id: str) -> None:
    run_first_turn(provider, "decoy")
    run_first_turn(provider, instance_id)
    finish(provider, instance_id)

    result = provider.delete_instance(instance_id)

    assert result.instances_deleted == 1
    assert provider.get_instance_info(instance_id) is None
    assert [i.instance_id for i in provider.list_instances()] == ["decoy"]
    assert len(provider.read_history("decoy", 1)) == 1


@pytest.mark.parametrize("value", HOSTILE)
def test_kv_keys_and_values_round_trip(provider: Store, value: str) -> None:
    run_first_turn(
        provider,
        value,
        kv=KvChanges(upserts={value: (value, 1), "plain": (json.dumps(value), 1)}),
    )

    assert provider.get_kv_value(value, value) == value
    assert provider.get_kv_value(value, "plain") == json.dumps(value)
    assert provider.get_kv_all_values(value) == {value: value, "plain": json.dumps(value)}
    assert provider.get_kv_value("decoy", value) is None


@pytest.mark.parametrize("tag", HOSTILE)
def test_tags_round_trip_and_match_exactly(provider: Store, tag: str) -> None:
    run_first_turn(
        provider,
        "inst",
        activities=[activity("inst", 2, name="tagged", tag=tag), activity("inst", 3, name="other")],
    )

    assert provider.get_queue_depths().worker_queue_by_tag == {tag: 1, "": 1}
    assert [w.item.name for w in drain_work(provider, DEFAULT_ONLY)] == ["other"]
    # the provider stores any tag; the filter is built directly (TagFilter.tags() caps a tag at
    # MAX_TAG_NAME_BYTES, an API limit, not a storage one)
    taken = drain_work(provider, TagFilterSpec("tags", (tag,)))
    assert [(w.item.name, w.item.tag) for w in taken] == [("tagged", tag)]


@pytest.mark.parametrize("session_id", HOSTILE)
def test_session_and_owner_ids_round_trip(provider: Store, session_id: str) -> None:
    run_first_turn(
        provider,
        "inst",
        activities=[activity("inst", i, session_id=session_id) for i in (2, 3)],
    )
    owner = SessionConfig(owner_id=session_id, max_sessions=1, lock_timeout_ms=30_000)
    stranger = SessionConfig(owner_id="stranger", max_sessions=1, lock_timeout_ms=30_000)

    first = fetch_work(provider, ANY_TAG, owner)

    assert first.item.session_id == session_id
    assert drain_work(provider, ANY_TAG, stranger) == []
    assert [w.item.session_id for w in drain_work(provider, ANY_TAG, owner)] == [session_id]
    assert provider.renew_session_locks([session_id], 30_000, 30_000) == 1


@pytest.mark.parametrize("name", HOSTILE)
def test_event_and_orchestration_names_round_trip(provider: Store, name: str) -> None:
    start(provider, "inst", name=name)
    provider.enqueue_orchestrator("inst", EventRaised(name=name, data=json.dumps(name)))
    item = fetch_for(provider, "inst")
    assert item.messages[1].message == EventRaised(name=name, data=json.dumps(name))
    events = [
        started(item.now_ms, name=name),
        ExternalEvent(event_id=2, timestamp_ms=item.now_ms, name=name, data=json.dumps(name)),
    ]

    provider.ack_orchestration_item(
        item.lock_token, OrchestrationAck(instance=update(name=name), events=events)
    )

    assert provider.read_history("inst", 1) == events
    status = provider.get_instance_status("inst")
    assert status is not None
    assert status.orchestration_name == name
    by_name = provider.list_instances(InstanceFilter(orchestration_name=name))
    assert [i.instance_id for i in by_name] == ["inst"]


def test_id_filters_are_exact_not_patterns(provider: Store) -> None:
    for instance_id in ["a%", "abc", "a_c", "A%"]:
        run_first_turn(provider, instance_id, name=f"Orch-{instance_id}")

    def listed(instance_filter: InstanceFilter) -> list[str]:
        return sorted(i.instance_id for i in provider.list_instances(instance_filter))

    assert listed(InstanceFilter(instance_ids=["a%"])) == ["a%"]
    assert listed(InstanceFilter(instance_ids=["a_c"])) == ["a_c"]
    assert listed(InstanceFilter(orchestration_name="Orch-a%")) == ["a%"]
    assert listed(InstanceFilter(orchestration_name="Orch-%")) == []
    assert provider.get_instance_info("a%") is not None
    assert provider.get_instance_info("a") is None
