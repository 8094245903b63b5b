"""What the PostgreSQL provider's functions take and return, in Python terms.

Pure functions, no I/O: the JSON documents the batch functions unpack (``ack_documents``,
``work_ack_documents``), and the rows they return turned into ``OrchestrationItem``,
``WorkItem`` and per-ack outcomes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from duroxide.errors import LockLostError, ProviderError
from duroxide.history import Event, event_from_record, event_to_record
from duroxide.providers.base import InstanceState, OrchestrationAck, OrchestrationItem, WorkItem
from duroxide.providers.postgres.connection import describe, state_is_retryable
from duroxide.types import TagFilterSpec
from duroxide.work_items import (
    ActivityWorkItem,
    Message,
    OutboundMessage,
    QueuedMessage,
    message_from_json,
)

_dumps = json.JSONEncoder(separators=(",", ":")).encode


def decode_history(rows: Sequence[Sequence[Any]], operation: str) -> list[Event]:
    """History rows ``(kind, event_id, timestamp_ms, source_event_id, data)`` as events."""
    try:
        return [
            event_from_record(
                kind=kind, event_id=event_id, timestamp_ms=ts, source_event_id=source, data=data
            )
            for kind, event_id, ts, source, data in rows
        ]
    except (ValueError, TypeError) as exc:
        raise ProviderError(operation, f"undecodable history event: {exc}") from exc


def _decode_message(seq: int, kind: str, payload: str, attempt_count: int) -> QueuedMessage:
    try:
        message: Message | None = message_from_json(kind, payload)
    except ValueError as exc:
        return QueuedMessage(
            seq=seq, kind=kind, message=None, attempt_count=attempt_count, decode_error=str(exc)
        )
    return QueuedMessage(seq=seq, kind=kind, message=message, attempt_count=attempt_count)


def orchestration_item(row: Sequence[Any]) -> OrchestrationItem:
    """One row of ``duroxide_fetch_orchestration_items``."""
    (instance_id, token, now, has_instance, name, version, status, execution_id, custom,
     custom_version, history_len, history, messages) = row  # fmt: skip
    state = None
    if has_instance:
        state = InstanceState(
            orchestration_name=name,
            orchestration_version=version,
            status=status,
            current_execution_id=execution_id,
            custom_status=custom,
            custom_status_version=custom_version,
        )
    events, history_error = None, None
    if history is not None:
        try:
            events = decode_history(history, "fetch_orchestration_item")
        except ProviderError as exc:  # the runtime backs off and poisons it in the end
            history_error = exc.message
    return OrchestrationItem(
        instance_id=instance_id,
        lock_token=token,
        now_ms=now,
        instance=state,
        execution_id=execution_id,
        history=events,
        history_len=history_len,
        messages=[_decode_message(*m) for m in messages],  # in the order they became due
        history_error=history_error,
    )


def ack_document(token: str, ack: OrchestrationAck) -> dict[str, Any]:
    """One element of ``duroxide_ack_orchestration_items``' argument (empty parts left out)."""
    doc: dict[str, Any] = {"t": token}
    update = ack.instance
    if update is not None:
        doc["instance"] = {
            "name": update.orchestration_name,
            "version": update.orchestration_version,
            "status": update.status,
            "execution_status": update.execution_status,
            "execution_id": update.execution_id,
            "next_execution_id": update.next_execution_id,
            "output": update.output,
            "error": None if update.error is None else _dumps(update.error.to_json()),
            "custom_status_changed": update.custom_status_changed,
            "custom_status": update.custom_status,
            "parent_instance_id": update.parent_instance_id,
            "parent_execution_id": update.parent_execution_id,
            "parent_event_id": update.parent_event_id,
            "trace_context": update.trace_context,
        }
        if ack.events:
            doc["events"] = [
                {"k": kind, "e": event_id, "t": ts, "s": source, "d": data}
                for kind, event_id, ts, source, data in map(event_to_record, ack.events)
            ]
    if ack.kv.deletes:
        doc["kv_del"] = sorted(ack.kv.deletes)
    if ack.kv.upserts:
        doc["kv_set"] = [{"k": k, "v": v, "t": at} for k, (v, at) in ack.kv.upserts.items()]
    if ack.worker_items:
        doc["work"] = [
            {"i": w.instance_id, "e": w.execution_id, "a": w.activity_id, "p": w.to_json(),
             "s": w.session_id, "g": w.tag}
            for w in ack.worker_items
        ]  # fmt: skip
    if ack.orchestrator_items:
        doc["orch"] = [
            {"i": o.instance_id, "k": o.message.kind, "p": o.message.to_json(),
             "v": o.visible_at_ms}
            for o in ack.orchestrator_items
        ]  # fmt: skip
    if ack.cancelled_activities:
        # in key order, the order every deleter of activities follows
        doc["cancel"] = [
            {"i": k.instance_id, "e": k.execution_id, "a": k.activity_id}
            for k in sorted(ack.cancelled_activities,
                            key=lambda k: (k.instance_id, k.execution_id, k.activity_id))
        ]  # fmt: skip
    return doc


def ack_documents(acks: Sequence[tuple[str, OrchestrationAck]]) -> str:
    return _dumps([ack_document(token, ack) for token, ack in acks])


def outcome(
    operation: str, ok: bool | None, state: str | None, error: str | None
) -> ProviderError | None:
    """A per-ack result row as the batch operations return it."""
    if ok:
        return None
    if ok is False:
        return LockLostError(operation)
    state = state or "XX000"
    return ProviderError(
        operation, describe(error or "ack failed", None, state), retryable=state_is_retryable(state)
    )


def _work_id(token: str) -> int:
    head = token.partition(".")[0]
    return int(head) if head.isdigit() and len(head) <= 18 else 0


def work_ack_documents(acks: Sequence[tuple[str, OutboundMessage | None]]) -> tuple[str, list[int]]:
    """``duroxide_ack_work_items``' argument, ordered by activity row id (the order every
    deleter of activities follows), and for each position of ``acks`` its place in it."""
    order = sorted(range(len(acks)), key=lambda n: _work_id(acks[n][0]))
    docs = []
    for n in order:
        token, completion = acks[n]
        if completion is None:
            docs.append({"t": token})
        else:
            message = completion.message
            docs.append({"t": token, "i": completion.instance_id, "k": message.kind,
                         "p": message.to_json()})  # fmt: skip
    place = [0] * len(acks)
    for position, n in enumerate(order):
        place[n] = position
    return _dumps(docs), place


@lru_cache(maxsize=64)
def tag_params(spec: TagFilterSpec) -> tuple[bool, list[str], bool]:
    """``(untagged, tags, any_tag)`` for ``duroxide_fetch_work_items``."""
    mode = spec.mode
    return (
        mode in ("default_only", "default_and", "any"),
        list(spec.tags) if mode in ("tags", "default_and") else [],
        mode == "any",
    )


def work_item(row: Sequence[Any]) -> WorkItem:
    """One row of ``duroxide_fetch_work_items``."""
    token, payload, attempt_count, instance_id, execution_id, activity_id, tag = row
    try:
        item = ActivityWorkItem.from_json(payload)
    except (ValueError, TypeError) as exc:  # keep the ids: the runtime can still poison it
        item = ActivityWorkItem(instance_id=instance_id, execution_id=execution_id,
                                activity_id=activity_id, name="", tag=tag)  # fmt: skip
        return WorkItem(lock_token=token, item=item, attempt_count=attempt_count,
                        decode_error=f"undecodable work item: {exc}")  # fmt: skip
    return WorkItem(lock_token=token, item=item, attempt_count=attempt_count)
