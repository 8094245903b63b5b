"""Typed task specs: what orchestration code asked for, converted at the engine's edge.

Orchestration code yields ``ScheduledTask`` dicts (the reference SDK's descriptor shape). The
engine never works on those dicts: :func:`spec_from_descriptor` validates one and turns it into
a frozen spec, raising ``TypeError``/``ValueError`` with a message meant for the user (the
engine throws it into the generator at the ``yield``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from duroxide.replay.retry import RetryPolicy


@dataclass(frozen=True, slots=True)
class ActivitySpec:
    name: str
    input: str | None
    session_id: str | None = None
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class RetryActivitySpec:
    activity: ActivitySpec
    policy: RetryPolicy


@dataclass(frozen=True, slots=True)
class TimerSpec:
    delay_ms: int


@dataclass(frozen=True, slots=True)
class WaitSpec:
    name: str


@dataclass(frozen=True, slots=True)
class DequeueSpec:
    queue: str


@dataclass(frozen=True, slots=True)
class SubOrchestrationSpec:
    name: str
    instance_id: str | None  # None: derived from the parent's id and the event id
    input: str | None
    version: str | None = None


@dataclass(frozen=True, slots=True)
class DetachedSpec:
    name: str
    instance_id: str
    input: str | None
    version: str | None = None


@dataclass(frozen=True, slots=True)
class SystemSpec:
    """``utc_now``, ``new_guid`` or ``kv_read`` (args: instance id, key)."""

    op: str
    args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ContinueAsNewSpec:
    input: str | None
    version: str | None = None


LeafSpec = (
    ActivitySpec | RetryActivitySpec | TimerSpec | WaitSpec | DequeueSpec | SubOrchestrationSpec
    | DetachedSpec | SystemSpec
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class AllSpec:
    children: tuple[LeafSpec, ...]
    typed: bool = False


@dataclass(frozen=True, slots=True)
class RaceSpec:
    children: tuple[LeafSpec, ...]
    typed: bool = False


Spec = LeafSpec | AllSpec | RaceSpec | ContinueAsNewSpec

SYSTEM_OPS = ("utc_now", "new_guid")


def spec_from_descriptor(obj: Any) -> Spec:
    """Convert a yielded descriptor into a spec, or raise TypeError/ValueError for the user."""
    if not isinstance(obj, Mapping) or "type" not in obj:
        raise TypeError(
            "an orchestration must yield a task from the context (ctx.schedule_activity(...), "
            f"ctx.schedule_timer(...), ctx.all([...]) …), got {_short(obj)}"
        )
    kind = obj["type"]
    if kind in ("all", "race"):
        children = obj.get("tasks")
        if not isinstance(children, list | tuple):
            raise TypeError(f"ctx.{kind}() takes a list of tasks")
        leaves = tuple(_leaf(child, kind) for child in children)
        if kind == "race":
            if len(leaves) < 2:
                raise ValueError("ctx.race() needs at least 2 tasks")
            return RaceSpec(leaves, bool(obj.get("typed")))
        return AllSpec(leaves, bool(obj.get("typed")))
    if kind == "continue_as_new":
        return ContinueAsNewSpec(obj.get("input"), obj.get("version"))
    return _leaf(obj, None)


def _leaf(obj: Any, parent: str | None) -> LeafSpec:
    if not isinstance(obj, Mapping) or "type" not in obj:
        raise TypeError(f"ctx.{parent}() takes tasks from the context, got {_short(obj)}")
    kind = obj["type"]
    if kind == "activity":
        activity = ActivitySpec(
            obj["name"], obj.get("input"), obj.get("session_id"), obj.get("tag")
        )
        retry = obj.get("retry")
        return activity if retry is None else RetryActivitySpec(activity, RetryPolicy.parse(retry))
    if kind == "timer":
        return TimerSpec(int(obj["delay_ms"]))
    if kind == "wait":
        return WaitSpec(obj["name"])
    if kind == "dequeue":
        return DequeueSpec(obj["queue"])
    if kind == "sub_orchestration":
        return SubOrchestrationSpec(
            obj["name"], obj.get("instance_id"), obj.get("input"), obj.get("version")
        )
    if kind == "orchestration":
        return DetachedSpec(obj["name"], obj["instance_id"], obj.get("input"), obj.get("version"))
    if kind in SYSTEM_OPS:
        return SystemSpec(kind)
    if kind == "kv_read":
        return SystemSpec("kv_read", (obj["instance_id"], obj["key"]))
    if kind in ("all", "race", "continue_as_new") and parent is not None:
        raise ValueError(
            f"ctx.{kind}() cannot be nested inside ctx.{parent}(); wrap the inner block in a "
            "sub-orchestration"
        )
    raise TypeError(f"unknown task type {kind!r}")


def _short(obj: Any) -> str:
    text = repr(obj)
    return text if len(text) <= 80 else text[:77] + "..."
