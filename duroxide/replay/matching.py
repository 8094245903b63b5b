"""Positional matching of what the code does against the recorded decisions.

Every decision the code makes (schedule an activity, a timer, a wait, a child, set a custom
status or KV value, read the clock …) is one *decision event*. On replay the k-th decision of the
code must equal the k-th decision event of the history. A difference is nondeterminism, reported
with both sides spelled out.
"""

from __future__ import annotations

from duroxide.history import (
    ActivityScheduled,
    CustomStatusUpdated,
    Event,
    ExternalSubscribed,
    KeyValueCleared,
    KeyValuesCleared,
    KeyValueSet,
    OrchestrationChained,
    QueueSubscribed,
    SubOrchestrationScheduled,
    SystemCall,
    TimerCreated,
)

_MAX_SHOWN = 120


def same_decision(recorded: Event, new: Event) -> bool:
    """Whether ``new`` (what the code just did) is the decision ``recorded`` in history."""
    if type(recorded) is not type(new):
        return False
    match recorded, new:
        case ActivityScheduled(), ActivityScheduled():
            return (recorded.name, recorded.input, recorded.session_id, recorded.tag) == (
                new.name, new.input, new.session_id, new.tag)  # fmt: skip
        case TimerCreated(), TimerCreated():
            return True  # the fire time depends on the clock of the original run
        case ExternalSubscribed(), ExternalSubscribed():
            return recorded.name == new.name
        case QueueSubscribed(), QueueSubscribed():
            return recorded.name == new.name
        case SubOrchestrationScheduled(), SubOrchestrationScheduled():
            same = (recorded.name, recorded.input, recorded.explicit_id) == (
                new.name, new.input, new.explicit_id)  # fmt: skip
            return same and (not new.explicit_id or recorded.instance_id == new.instance_id)
        case OrchestrationChained(), OrchestrationChained():
            return (recorded.name, recorded.instance_id, recorded.input) == (
                new.name, new.instance_id, new.input)  # fmt: skip
        case CustomStatusUpdated(), CustomStatusUpdated():
            return recorded.status == new.status
        case KeyValueSet(), KeyValueSet():
            return (recorded.key, recorded.value) == (new.key, new.value)
        case KeyValueCleared(), KeyValueCleared():
            return recorded.key == new.key
        case KeyValuesCleared(), KeyValuesCleared():
            return True
        case SystemCall(), SystemCall():
            return recorded.op == new.op and list(recorded.args) == list(new.args)
    return False


def describe(event: Event) -> str:
    """A short, readable rendering of a decision, for error messages."""
    match event:
        case ActivityScheduled():
            extra = ""
            if event.session_id is not None:
                extra += f", session_id={_clip(event.session_id)}"
            if event.tag is not None:
                extra += f", tag={_clip(event.tag)}"
            return f"schedule_activity({_clip(event.name)}, input={_clip(event.input)}{extra})"
        case TimerCreated():
            return "schedule_timer(...)"
        case ExternalSubscribed():
            return f"wait_for_event({_clip(event.name)})"
        case QueueSubscribed():
            return f"dequeue_event({_clip(event.name)})"
        case SubOrchestrationScheduled():
            shown = f", id={_clip(event.instance_id)}" if event.explicit_id else ""
            return (f"schedule_sub_orchestration({_clip(event.name)}{shown}, "
                    f"input={_clip(event.input)})")  # fmt: skip
        case OrchestrationChained():
            return (f"start_orchestration({_clip(event.name)}, {_clip(event.instance_id)}, "
                    f"input={_clip(event.input)})")  # fmt: skip
        case CustomStatusUpdated():
            return f"set_custom_status({_clip(event.status)})"
        case KeyValueSet():
            return f"set_kv_value({_clip(event.key)}, {_clip(event.value)})"
        case KeyValueCleared():
            return f"clear_kv_value({_clip(event.key)})"
        case KeyValuesCleared():
            return "clear_all_kv_values()"
        case SystemCall():
            args = ", ".join(_clip(a) for a in event.args)
            return f"{event.op}({args})"
    return event.kind


def mismatch_message(recorded: Event, new: Event) -> str:
    return (
        f"nondeterministic orchestration: history event {recorded.event_id} recorded "
        f"{describe(recorded)}, but the code now does {describe(new)}. {_CAUSES}"
    )


def missing_message(recorded: Event, now_doing: str) -> str:
    return (
        f"nondeterministic orchestration: history event {recorded.event_id} recorded "
        f"{describe(recorded)}, but the code no longer does it (it {now_doing}). {_CAUSES}"
    )


_CAUSES = (
    "Usual causes: the orchestration code changed while this instance was running (register "
    "the new code with register_orchestration_versioned instead), or it depends on something "
    "that is not replay-safe (time, randomness, I/O, environment, set/dict iteration order)."
)


def _clip(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."
