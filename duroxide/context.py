"""What user code sees: ``OrchestrationContext``, ``ActivityContext`` and task descriptors.

Orchestration methods that schedule durable work return a ``ScheduledTask`` — a ``dict`` that
describes the call, as in the reference SDK — and nothing happens until it is yielded. Payloads
are JSON-encoded right here, so an unencodable input raises ``TypeError`` at the call site.
Tracing, custom status and KV calls are not yielded; they go straight to the replay engine.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from duroxide.serialization import (
    check_name,
    check_non_negative_ms,
    check_optional_name,
    check_str_payload,
    encode,
    encode_typed,
)

if TYPE_CHECKING:
    from duroxide.client import Client


class ScheduledTask(dict):  # type: ignore[type-arg]
    """A durable task to be yielded. A plain dict subclass, compatible with the reference SDK."""

    def with_tag(self, tag: str) -> ScheduledTask:
        """Route this activity to workers whose tag filter accepts ``tag``; returns itself."""
        if self.get("type") != "activity":
            raise TypeError("with_tag() applies only to activities")
        from duroxide.types import check_tag

        self["tag"] = check_tag(tag)
        return self


class _Host(Protocol):
    """The replay engine as the context needs it."""

    replaying: bool

    def record_custom_status(self, status: str | None) -> None: ...
    def current_custom_status(self) -> str | None: ...
    def kv_set(self, key: str, value: str) -> None: ...
    def kv_clear(self, key: str) -> None: ...
    def kv_clear_all(self) -> None: ...
    def kv_snapshot(self) -> dict[str, tuple[str, int]]: ...
    def kv_prune(self, cutoff_ms: int) -> int: ...
    def trace(self, level: str, message: str) -> None: ...


def _session(session_id: Any) -> str | None:
    if isinstance(session_id, Mapping):  # node-style options: {"session_id": ...}
        session_id = session_id.get("session_id")
    return check_optional_name(session_id, "session_id")


class OrchestrationContext:
    """Passed to every orchestration. Yield every scheduling call; do not yield the others."""

    def __init__(
        self,
        host: _Host,
        *,
        instance_id: str,
        execution_id: int,
        orchestration_name: str,
        orchestration_version: str,
    ) -> None:
        self._host = host
        self.instance_id = instance_id
        self.execution_id = execution_id
        self.orchestration_name = orchestration_name
        self.orchestration_version = orchestration_version

    @property
    def is_replaying(self) -> bool:
        return self._host.replaying

    # --- activities ----------------------------------------------------------------------------

    def schedule_activity(
        self, name: str, input: Any = None, session_id: Any = None
    ) -> ScheduledTask:
        return self._activity(name, encode(input, what=f"input of activity {name!r}"), session_id)

    def schedule_activity_on_session(self, name: str, input: Any, session_id: str) -> ScheduledTask:
        if session_id is None:
            raise ValueError("schedule_activity_on_session needs a session_id")
        return self.schedule_activity(name, input, session_id)

    def schedule_activity_with_retry(
        self, name: str, input: Any, retry: Any, session_id: Any = None
    ) -> ScheduledTask:
        """Retry ``name`` per ``retry`` ({"max_attempts", "backoff", "timeout_ms",
        "total_timeout_ms"}; camelCase keys work too); attempts and backoffs are durable."""
        return _with_retry(self.schedule_activity(name, input, session_id), retry)

    def schedule_activity_with_retry_on_session(
        self, name: str, input: Any, retry: Any, session_id: str
    ) -> ScheduledTask:
        if session_id is None:
            raise ValueError("schedule_activity_with_retry_on_session needs a session_id")
        return self.schedule_activity_with_retry(name, input, retry, session_id)

    # The typed twins take a ``str`` input as already-encoded JSON (the reference SDK's rule);
    # results come back decoded either way.

    def schedule_activity_typed(
        self, name: str, input: Any = None, result_type: Any = None
    ) -> ScheduledTask:
        return self._activity(name, encode_typed(input, what=f"input of activity {name!r}"), None)

    def schedule_activity_on_session_typed(
        self, name: str, input: Any = None, session_id: Any = None
    ) -> ScheduledTask:
        if session_id is None:
            raise ValueError("schedule_activity_on_session_typed needs a session_id")
        what = f"input of activity {name!r}"
        return self._activity(name, encode_typed(input, what=what), session_id)

    def schedule_activity_with_retry_typed(
        self, name: str, input: Any = None, retry: Any = None
    ) -> ScheduledTask:
        task = self._activity(name, encode_typed(input, what=f"input of activity {name!r}"), None)
        return _with_retry(task, retry or {})

    def schedule_activity_with_retry_on_session_typed(
        self, name: str, input: Any = None, retry: Any = None, session_id: Any = None
    ) -> ScheduledTask:
        if session_id is None:
            raise ValueError("schedule_activity_with_retry_on_session_typed needs a session_id")
        what = f"input of activity {name!r}"
        return _with_retry(self._activity(name, encode_typed(input, what=what), session_id),
                           retry or {})  # fmt: skip

    def _activity(self, name: str, encoded_input: str, session_id: Any) -> ScheduledTask:
        check_name(name, "activity name")
        return ScheduledTask(
            type="activity", name=name, input=encoded_input, session_id=_session(session_id),
            tag=None,
        )  # fmt: skip

    # --- timers, events, queues ----------------------------------------------------------------

    def schedule_timer(self, delay_ms: int) -> ScheduledTask:
        return ScheduledTask(type="timer", delay_ms=check_non_negative_ms(delay_ms, "timer delay"))

    def wait_for_event(self, name: str) -> ScheduledTask:
        return ScheduledTask(type="wait", name=check_name(name, "event name"))

    def dequeue_event(self, queue_name: str) -> ScheduledTask:
        return ScheduledTask(type="dequeue", queue=check_name(queue_name, "queue name"))

    wait_for_event_typed = wait_for_event
    schedule_wait = wait_for_event
    schedule_wait_typed = wait_for_event
    dequeue_event_typed = dequeue_event

    # --- sub-orchestrations and detached starts ------------------------------------------------

    def schedule_sub_orchestration(self, name: str, input: Any = None) -> ScheduledTask:
        return self._sub(name, None, _encode_input(name, input), None)

    def schedule_sub_orchestration_with_id(
        self, name: str, instance_id: str, input: Any = None
    ) -> ScheduledTask:
        child_id = check_name(instance_id, "sub-orchestration id")
        return self._sub(name, child_id, _encode_input(name, input), None)

    def schedule_sub_orchestration_versioned(
        self, name: str, version: str | None = None, input: Any = None
    ) -> ScheduledTask:
        return self._sub(name, None, _encode_input(name, input), _version(version))

    def schedule_sub_orchestration_versioned_with_id(
        self, name: str, version: str | None, instance_id: str, input: Any = None
    ) -> ScheduledTask:
        child_id = check_name(instance_id, "sub-orchestration id")
        return self._sub(name, child_id, _encode_input(name, input), _version(version))

    def schedule_sub_orchestration_typed(
        self, name: str, input: Any = None, result_type: Any = None
    ) -> ScheduledTask:
        return self._sub(name, None, _encode_input(name, input, typed=True), None)

    def schedule_sub_orchestration_with_id_typed(
        self, name: str, instance_id: str, input: Any = None
    ) -> ScheduledTask:
        child_id = check_name(instance_id, "sub-orchestration id")
        return self._sub(name, child_id, _encode_input(name, input, typed=True), None)

    schedule_sub_orchestration_versioned_typed = schedule_sub_orchestration_versioned

    def _sub(
        self, name: str, instance_id: str | None, encoded_input: str, version: str | None
    ) -> ScheduledTask:
        check_name(name, "orchestration name")
        return ScheduledTask(
            type="sub_orchestration", name=name, instance_id=instance_id, input=encoded_input,
            version=version,
        )  # fmt: skip

    def start_orchestration(self, name: str, instance_id: str, input: Any = None) -> ScheduledTask:
        """Fire and forget: start another orchestration and do not wait for it."""
        return self._detached(name, instance_id, _encode_input(name, input), None)

    def start_orchestration_versioned(
        self, name: str, version: str, instance_id: str, input: Any = None
    ) -> ScheduledTask:
        return self._detached(name, instance_id, _encode_input(name, input), _version(version))

    def start_orchestration_typed(
        self, name: str, instance_id: str, input: Any = None
    ) -> ScheduledTask:
        return self._detached(name, instance_id, _encode_input(name, input, typed=True), None)

    def start_orchestration_versioned_typed(
        self, name: str, version: str, instance_id: str, input: Any = None
    ) -> ScheduledTask:
        encoded = _encode_input(name, input, typed=True)
        return self._detached(name, instance_id, encoded, _version(version))

    schedule_orchestration = start_orchestration

    def _detached(
        self, name: str, instance_id: str, encoded_input: str, version: str | None
    ) -> ScheduledTask:
        check_name(name, "orchestration name")
        return ScheduledTask(
            type="orchestration", name=name, instance_id=check_name(instance_id, "instance id"),
            input=encoded_input, version=version,
        )  # fmt: skip

    # --- composition ---------------------------------------------------------------------------

    def all(self, tasks: Iterable[Any]) -> ScheduledTask:
        """Wait for every task: ``[{"ok": value} | {"err": message}, …]`` in task order."""
        return ScheduledTask(type="all", tasks=list(tasks), typed=False)

    def all_typed(self, tasks: Iterable[Any]) -> ScheduledTask:
        """Wait for every task: ``[value, …]``; raises the first failure in task order."""
        return ScheduledTask(type="all", tasks=list(tasks), typed=True)

    def race(self, *tasks: Any) -> ScheduledTask:
        """The first task to finish wins: ``{"index": i, "value": v}``; the others are cancelled."""
        return ScheduledTask(type="race", tasks=_race_args(tasks), typed=False)

    def race_typed(self, *tasks: Any) -> ScheduledTask:
        return ScheduledTask(type="race", tasks=_race_args(tasks), typed=True)

    join = all
    select = race

    # --- deterministic values, continue-as-new, cross-instance reads ---------------------------

    def utc_now(self) -> ScheduledTask:
        return ScheduledTask(type="utc_now")

    def new_guid(self) -> ScheduledTask:
        return ScheduledTask(type="new_guid")

    def continue_as_new(self, input: Any = None) -> ScheduledTask:
        return ScheduledTask(
            type="continue_as_new", input=encode(input, what="continue_as_new input"), version=None
        )

    def continue_as_new_versioned(self, input: Any, version: str | None = None) -> ScheduledTask:
        task = self.continue_as_new(input)
        task["version"] = _version(version)
        return task

    def continue_as_new_typed(self, input: Any = None) -> ScheduledTask:
        return ScheduledTask(
            type="continue_as_new", input=encode_typed(input, what="continue_as_new input"),
            version=None,
        )  # fmt: skip

    def get_kv_value_from_instance(self, instance_id: str, key: str) -> ScheduledTask:
        return ScheduledTask(
            type="kv_read",
            instance_id=check_name(instance_id, "instance id"),
            key=check_name(key, "KV key"),
        )

    # --- not yielded: tracing, custom status, KV -----------------------------------------------

    def trace_info(self, message: Any) -> None:
        self._host.trace("info", str(message))

    def trace_warn(self, message: Any) -> None:
        self._host.trace("warn", str(message))

    def trace_error(self, message: Any) -> None:
        self._host.trace("error", str(message))

    def trace_debug(self, message: Any) -> None:
        self._host.trace("debug", str(message))

    def set_custom_status(self, status: Any) -> None:
        """Publish ``status`` (a non-str is converted with ``str()``, as the reference SDK
        does) for clients polling ``wait_for_status_change``."""
        self._host.record_custom_status(check_str_payload(str(status), "custom status"))

    def reset_custom_status(self) -> None:
        self._host.record_custom_status(None)

    def get_custom_status(self) -> str | None:
        return self._host.current_custom_status()

    def set_kv_value(self, key: Any, value: Any) -> None:
        """Set a KV entry; key and value are converted with ``str()`` like the reference SDK."""
        self._host.kv_set(check_name(str(key), "KV key"), str(value))

    def set_kv_value_typed(self, key: str, value: Any) -> None:
        self._host.kv_set(check_name(key, "KV key"), encode_typed(value, what="KV value"))

    def get_kv_value(self, key: str) -> str | None:
        entry = self._host.kv_snapshot().get(key)
        return None if entry is None else entry[0]

    def get_kv_all_values(self) -> dict[str, str]:
        return {k: v for k, (v, _) in self._host.kv_snapshot().items()}

    def get_kv_all_keys(self) -> list[str]:
        return list(self._host.kv_snapshot())

    def get_kv_length(self) -> int:
        return len(self._host.kv_snapshot())

    def clear_kv_value(self, key: str) -> None:
        self._host.kv_clear(check_name(key, "KV key"))

    def clear_all_kv_values(self) -> None:
        self._host.kv_clear_all()

    def prune_kv_values_updated_before(self, cutoff_ms: int) -> int:
        return self._host.kv_prune(check_non_negative_ms(cutoff_ms, "cutoff"))


def _with_retry(task: ScheduledTask, retry: Any) -> ScheduledTask:
    from duroxide.replay.retry import RetryPolicy

    RetryPolicy.parse(retry)  # validate now, at the call site
    task["retry"] = dict(retry) if isinstance(retry, Mapping) else retry
    return task


def _encode_input(name: str, input: Any, *, typed: bool = False) -> str:
    what = f"input of orchestration {name!r}"
    return encode_typed(input, what=what) if typed else encode(input, what=what)


def _version(version: str | None) -> str | None:
    return None if version is None else check_name(version, "version")


def _race_args(tasks: tuple[Any, ...]) -> list[Any]:
    if len(tasks) == 1 and isinstance(tasks[0], list | tuple):
        return list(tasks[0])
    return list(tasks)


class ActivityContext:
    """Passed to every activity: where it runs, cancellation, tracing and a client."""

    def __init__(
        self,
        *,
        instance_id: str,
        execution_id: int,
        orchestration_name: str,
        orchestration_version: str,
        activity_name: str,
        activity_id: int,
        worker_id: str,
        session_id: str | None = None,
        tag: str | None = None,
        cancel_event: threading.Event | None = None,
        client_factory: Any = None,
        logger: Any = None,
    ) -> None:
        self.instance_id = instance_id
        self.execution_id = execution_id
        self.orchestration_name = orchestration_name
        self.orchestration_version = orchestration_version
        self.activity_name = activity_name
        self.activity_id = activity_id
        self.worker_id = worker_id
        self.session_id = session_id
        self._tag = tag
        self._cancel_event = cancel_event or threading.Event()
        self._client_factory = client_factory
        self._logger = logger

    def tag(self) -> str | None:
        return self._tag

    def is_cancelled(self) -> bool:
        """True once the orchestration no longer needs this result (lost a race, ended, was
        cancelled) or this worker lost the activity's lock."""
        return self._cancel_event.is_set()

    def wait_cancelled(self, timeout_s: float | None = None) -> bool:
        """Block until cancelled (True) or the timeout passes (False)."""
        return self._cancel_event.wait(timeout_s)

    cancelled = wait_cancelled

    def get_client(self) -> Client:
        if self._client_factory is None:
            raise RuntimeError("this activity context has no client")
        client: Client = self._client_factory()
        return client

    def trace_info(self, message: Any) -> None:
        self._log("info", message)

    def trace_warn(self, message: Any) -> None:
        self._log("warning", message)

    def trace_error(self, message: Any) -> None:
        self._log("error", message)

    def trace_debug(self, message: Any) -> None:
        self._log("debug", message)

    def _log(self, level: str, message: Any) -> None:
        if self._logger is not None:
            getattr(self._logger, level)("activity.trace", message=str(message))
