"""One short line per history event: ``ActivityScheduled Charge input={"a":1}``.

``HistoryEvent.data`` is the admin view of an event's fields as JSON text: an object for most
kinds, the payload itself for completions (``ActivityCompleted``, ``OrchestrationCompleted`` …).
Payloads inside objects are JSON values or JSON text, both shown as compact JSON.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from duroxide.cli.output import clip, compact, iso

DETAIL_WIDTH = 80

#: Kinds whose ``data`` is the payload itself, and the label it gets.
_PAYLOAD_KINDS = {
    "ActivityCompleted": "result",
    "SubOrchestrationCompleted": "result",
    "OrchestrationCompleted": "output",
    "OrchestrationContinuedAsNew": "input",
}


def _object(data: str | None) -> dict[str, Any]:
    if not data:
        return {}
    try:
        value = json.loads(data)
    except ValueError:
        return {"data": data}
    return value if isinstance(value, dict) else {"data": value}


def _payload(value: Any) -> str:
    """A payload field as compact JSON. Depending on the kind, the admin view holds it either
    decoded or as the stored JSON text: text that parses as JSON is shown as that value."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):  # else a decoded string: shown quoted below
            value = json.loads(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _error(value: Any) -> str:
    if isinstance(value, dict):
        category = value.get("category")
        message = str(value.get("message", ""))
        return f"[{category}] {message}" if category else message
    return str(value)


def _describe_fields(kind: str, fields: dict[str, Any]) -> list[str]:
    parts: list[str] = []
    # What the event is about: a name (activity, event, queue…), a system call, or a KV key.
    name = next((fields.pop(k) for k in ("name", "op", "key") if k in fields), None)
    if kind == "OrchestrationStarted":
        version = fields.pop("version", None)
        parts.append(f"{name}@{version}" if version else str(name))
    elif name is not None:
        parts.append(str(name))
    if "instance_id" in fields:
        parts.append(f"id={fields.pop('instance_id')}")
    for key in ("fire_at_ms",):
        if key in fields:
            parts.append(f"fire_at={iso(fields.pop(key), millis=True)}")
    if "error" in fields:
        parts.append(f"error={_error(fields.pop('error'))}")
    for key in ("input", "data", "value", "result", "output"):
        if key in fields:
            parts.append(f"{key}={_payload(fields.pop(key))}")
    fields.pop("explicit_id", None)
    for key, value in fields.items():
        if value in (None, "", [], {}):
            continue
        shown = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        parts.append(f"{key}={shown}")
    return parts


def describe(kind: str, data: str | None, source_event_id: int | None) -> str:
    """The short detail of one event (without its kind), at most ``DETAIL_WIDTH`` characters."""
    parts: list[str] = []
    if source_event_id is not None:
        parts.append(f"#{source_event_id}")
    label = _PAYLOAD_KINDS.get(kind)
    if label is not None:
        if data is not None:
            parts.append(f"{label}={compact(data)}")
    else:
        parts.extend(_describe_fields(kind, _object(data)))
    return clip(" ".join(parts), DETAIL_WIDTH)
