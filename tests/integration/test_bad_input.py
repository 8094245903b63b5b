"""Hostile input: strange strings, unencodable payloads, bad ids, unknown handlers, user code that
raises the unexpected or returns the unencodable, and payloads over the size limit.

The contract: strings round-trip exactly; bad input is refused at the call site with a clear
``TypeError``/``ValueError`` and nothing is stored; user-code failures fail only the task or
orchestration concerned, with a message that names the problem, and the runtime keeps working.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from duroxide import (
    MAX_KV_VALUE_BYTES,
    MAX_TAG_NAME_BYTES,
    Client,
    InstanceFilter,
    InstanceNotFoundError,
    PayloadTooLargeError,
    Runtime,
    TagFilter,
)
from duroxide.serialization import MAX_NAME_LENGTH, MAX_PAYLOAD_BYTES

WAIT_MS = 10_000
MakeRuntime = Callable[..., Runtime]


def fast(make_runtime: MakeRuntime, **options: Any) -> Runtime:
    """A runtime with one turn slot and one activity slot: a slot that dies stalls everything."""
    options.setdefault("orchestration_concurrency", 1)
    options.setdefault("worker_concurrency", 1)
    options.setdefault("dispatcher_poll_interval_ms", 20)
    options.setdefault("log_level", "error")
    return make_runtime(**options)


def queued(client: Client) -> int:
    """Every orchestrator message stored: ready, in flight and future-visible."""
    depths = client.get_queue_depths()
    return depths.orchestrator_queue + depths.timer_queue


def strings_in(value: Any) -> Iterator[str]:
    """Every string inside decoded JSON, also inside strings that are JSON themselves."""
    if isinstance(value, str):
        yield value
        try:
            inner = json.loads(value)
        except ValueError:
            return
        if inner != value:
            yield from strings_in(inner)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings_in(v)


# --- 1. hostile strings round-trip ------------------------------------------------------------

HOSTILE = {
    "quotes": 'it\'s a "quoted" `name` \'\'""',
    "sql": "'; DROP TABLE instances; --",
    "like-wildcards": "100% _under_ back\\slash\\ [a-z]* ?",
    "unicode": "🚀🔥 שלום مرحبا e\u0301 a\u0308\u0323 👩\u200d👩\u200d👧 \u200f\u202eRTL",
    "controls": "tab\tnew\nline\rret \x1b[31mesc \x7f \x01 end",
    "500-chars": ("'\"%_\\;-- 🚀ש\u0301 " * 40)[:500],
    # the limit is MAX_NAME_LENGTH UTF-8 bytes: 4 + 1 + 1 + 1 + 2 = 9 bytes per repeat
    "max-length": ("🚀'%_ש" * 113) + "'",
}


@pytest.mark.parametrize("s", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_strings_round_trip_everywhere(
    client: Client, make_runtime: MakeRuntime, s: str
) -> None:
    # tags are limited to MAX_TAG_NAME_BYTES (the reference SDK's 256 bytes): use a prefix
    tag = s.encode()[:MAX_TAG_NAME_BYTES].decode("utf-8", "ignore")
    rt = fast(make_runtime, worker_tag_filter=TagFilter.default_and([tag]))

    def activity(ctx: Any, value: Any) -> dict[str, Any]:
        return {
            "input": value, "name": ctx.activity_name, "instance": ctx.instance_id,
            "orchestration": ctx.orchestration_name, "session": ctx.session_id, "tag": ctx.tag(),
        }  # fmt: skip

    def orchestration(ctx: Any, value: Any) -> Any:
        ctx.set_custom_status(s)
        ctx.set_kv_value(s, s)
        plain = yield ctx.schedule_activity(s, value)
        tagged = yield ctx.schedule_activity(s, value).with_tag(tag)
        session = yield ctx.schedule_activity_on_session(s, value, s)
        event = yield ctx.wait_for_event(s)
        message = yield ctx.dequeue_event(s)
        return {s: [plain, tagged, session, event, message, ctx.instance_id]}

    rt.register_activity(s, activity)
    rt.register_orchestration(s, orchestration)
    rt.start()
    client.start_orchestration(s, s, s)
    client.raise_event(s, s, s)  # kept until the orchestration waits for it
    client.enqueue_event(s, s, {s: s})
    result = client.wait_for_orchestration(s, WAIT_MS)

    base = {"input": s, "name": s, "instance": s, "orchestration": s}
    expected = {s: [
        {**base, "session": None, "tag": None},
        {**base, "session": None, "tag": tag},
        {**base, "session": s, "tag": None},
        s, {s: s}, s,
    ]}  # fmt: skip
    assert result.status == "Completed", result.error
    assert result.output == expected
    assert result.custom_status == s
    assert result.orchestration_name == s

    info = client.get_instance_info(s)
    assert (info.instance_id, info.orchestration_name, info.status) == (s, s, "Completed")
    assert info.custom_status == s
    assert json.loads(info.output) == expected
    assert client.list_all_instances() == [s]
    assert client.list_instances_by_status("Completed") == [s]
    assert [i.instance_id for i in client.list_instances(InstanceFilter(instance_ids=[s]))] == [s]
    named = client.list_instances(InstanceFilter(orchestration_name=s))
    assert [i.instance_id for i in named] == [s]
    assert client.get_instance_tree(s).all_ids == [s]
    assert client.list_executions(s) == [1]
    assert client.get_kv_value(s, s) == s
    assert client.get_kv_all_values(s) == {s: s}

    history = client.read_execution_history(s, 1)
    assert [e.event_id for e in history] == list(range(1, len(history) + 1))
    started = json.loads(history[0].data)
    assert (started["name"], started["input"]) == (s, s)
    scheduled = [json.loads(e.data) for e in history if e.kind == "ActivityScheduled"]
    assert [(d["name"], d["input"]) for d in scheduled] == [(s, s)] * 3
    assert scheduled[1]["tag"] == tag
    assert scheduled[2]["session_id"] == s
    completed = [json.loads(e.data) for e in history if e.kind == "ActivityCompleted"]
    assert completed == expected[s][:3]
    assert json.loads(history[-1].data) == expected
    for kind in ("ExternalSubscribed", "ExternalEvent", "QueueSubscribed", "QueueEventDelivered",
                 "CustomStatusUpdated", "KeyValueSet"):  # fmt: skip
        (event,) = [e for e in history if e.kind == kind]
        assert s in set(strings_in(json.loads(event.data))), (kind, event.data)

    deleted = client.delete_instance(s)
    assert deleted.instances_deleted == 1
    assert client.get_status(s).status == "NotFound"


def test_sql_wildcards_in_ids_and_names_match_only_themselves(
    client: Client, make_runtime: MakeRuntime
) -> None:
    rt = fast(make_runtime)
    names = ["E_o", "E%", "Echo"]
    for name in names:
        rt.register_orchestration(name, lambda ctx, value: value)
    rt.start()
    ids = ["%", "_", "a_c", "abc", "a%", "a\\%", "a\\bc", "*", "a*"]
    for i, instance_id in enumerate(ids):
        client.start_orchestration(instance_id, names[i % len(names)], instance_id)
    for instance_id in ids:
        assert client.wait_for_orchestration(instance_id, WAIT_MS).output == instance_id
        assert client.get_instance_info(instance_id).instance_id == instance_id
        only = client.list_instances(InstanceFilter(instance_ids=[instance_id]))
        assert [i.instance_id for i in only] == [instance_id]
    assert sorted(client.list_all_instances()) == sorted(ids)
    for i, name in enumerate(names):
        by_name = client.list_instances(InstanceFilter(orchestration_name=name))
        assert sorted(x.instance_id for x in by_name) == sorted(ids[i :: len(names)])

    assert client.delete_instance("%").instances_deleted == 1
    assert client.delete_instance("_").instances_deleted == 1
    assert sorted(client.list_all_instances()) == sorted(set(ids) - {"%", "_"})
    with pytest.raises(InstanceNotFoundError):
        client.get_instance_info("%")


# --- 2. unencodable payloads are refused and nothing is stored -----------------------------------


def _circular() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


class _BrokenDict(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        raise RuntimeError("items() is broken")


def _deep() -> list[Any]:
    root: list[Any] = []
    node = root
    for _ in range(100_000):
        node.append([])
        node = node[0]
    return root


UNENCODABLE = {
    "set": lambda: {1, 2},
    "object": object,
    "nan": lambda: float("nan"),
    "inf-in-dict": lambda: {"x": float("inf")},
    "circular-list": _circular,
    "bytes": lambda: b"raw",
    "tuple-key": lambda: {(1, 2): "x"},
    "dict-with-broken-items": lambda: _BrokenDict(a=1),
    "deeply-nested": _deep,
}


@pytest.mark.parametrize("make_value", list(UNENCODABLE.values()), ids=list(UNENCODABLE))
def test_unencodable_payloads_raise_type_error_and_store_nothing(
    client: Client, make_value: Callable[[], Any]
) -> None:
    client.start_orchestration("existing", "Anything", {"ok": 1})
    before = queued(client)
    assert before == 1

    with pytest.raises(TypeError, match="orchestration input is not JSON-serializable"):
        client.start_orchestration("bad-start", "Anything", make_value())
    with pytest.raises(TypeError, match="event data is not JSON-serializable"):
        client.raise_event("existing", "evt", make_value())
    with pytest.raises(TypeError, match="queue message is not JSON-serializable"):
        client.enqueue_event("existing", "q", make_value())

    assert queued(client) == before
    assert client.get_status("bad-start").status == "NotFound"
    assert client.list_all_instances() == []


# --- 3. bad ids and names ------------------------------------------------------------------------

BAD_IDS: dict[str, tuple[Any, type[Exception]]] = {
    "int": (123, TypeError),
    "none": (None, TypeError),
    "bytes": (b"id", TypeError),
    "list": (["id"], TypeError),
    "empty": ("", ValueError),
    "too-long": ("x" * (MAX_NAME_LENGTH + 1), ValueError),
    "too-long-emoji": ("🚀" * (MAX_NAME_LENGTH + 1), ValueError),
    "nul": ("a\x00b", ValueError),
    "lone-surrogate": ("a\ud800b", ValueError),
}


@pytest.mark.parametrize(("bad", "error"), list(BAD_IDS.values()), ids=list(BAD_IDS))
def test_bad_ids_and_names_are_refused_by_the_client(
    client: Client, bad: Any, error: type[Exception]
) -> None:
    client.start_orchestration("existing", "Anything")
    before = queued(client)
    calls: list[tuple[str, Callable[[], Any]]] = [
        ("instance id", lambda: client.start_orchestration(bad, "Orch", 1)),
        ("instance id", lambda: client.start_orchestration_versioned(bad, "Orch", 1, "1.0.0")),
        ("instance id", lambda: client.raise_event(bad, "evt", 1)),
        ("instance id", lambda: client.enqueue_event(bad, "q", 1)),
        ("instance id", lambda: client.cancel_instance(bad, "why")),
        ("instance id", lambda: client.get_status(bad)),
        ("instance id", lambda: client.wait_for_orchestration(bad, 10)),
        ("orchestration name", lambda: client.start_orchestration("new", bad, 1)),
        ("event name", lambda: client.raise_event("existing", bad, 1)),
        ("queue name", lambda: client.enqueue_event("existing", bad, 1)),
    ]
    for what, call in calls:
        with pytest.raises(error, match=what):
            call()
    assert queued(client) == before
    assert client.get_status("new").status == "NotFound"


def test_the_longest_allowed_id_is_accepted(client: Client, make_runtime: MakeRuntime) -> None:
    rt = fast(make_runtime)
    rt.register_orchestration("Echo", lambda ctx, value: ctx.instance_id)
    rt.start()
    longest = "é" * (MAX_NAME_LENGTH // 2)  # the limit is in UTF-8 bytes: 2 per "é"
    client.start_orchestration(longest, "Echo")
    assert client.wait_for_orchestration(longest, WAIT_MS).output == longest
    assert client.list_all_instances() == [longest]


# --- 4. an unknown orchestration does not block the others ----------------------------------------


def test_unknown_orchestration_name_does_not_block_other_instances(
    client: Client, make_runtime: MakeRuntime
) -> None:
    rt = fast(make_runtime, orchestration_concurrency=2, worker_concurrency=2)
    rt.register_activity("Double", lambda ctx, x: 2 * x)

    def real(ctx: Any, x: int) -> Any:
        return (yield ctx.schedule_activity("Double", x))

    rt.register_orchestration("Real", real)
    client.start_orchestration("nope", "Nope", None)  # the oldest message in the queue
    for i in range(20):
        client.start_orchestration(f"real-{i}", "Real", i)
    started = time.monotonic()
    rt.start()
    for i in range(20):
        result = client.wait_for_orchestration(f"real-{i}", WAIT_MS)
        assert (result.status, result.output) == ("Completed", 2 * i), result
    assert time.monotonic() - started < 5.0, "real instances were held up"
    nope = client.get_status("nope")
    assert nope.status in ("Running", "NotFound"), nope
    assert queued(client) >= 1, "the start of the unknown orchestration is kept for a later node"


# --- 5. activities that raise the unexpected or return the unencodable ------------------------


class _BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken")


def _raise(exc: BaseException) -> Callable[[Any, Any], Any]:
    def activity(ctx: Any, _: Any) -> Any:
        raise exc

    return activity


def _returns(make_value: Callable[[], Any]) -> Callable[[Any, Any], Any]:
    return lambda ctx, _: make_value()


async def _async_system_exit(ctx: Any, _: Any) -> Any:
    raise SystemExit(3)


BAD_ACTIVITIES: dict[str, tuple[Callable[[Any, Any], Any], list[str]]] = {
    "SystemExit": (_raise(SystemExit(3)), ["SystemExit", "3"]),
    "KeyboardInterrupt": (_raise(KeyboardInterrupt()), ["KeyboardInterrupt"]),
    "GeneratorExit": (_raise(GeneratorExit()), ["GeneratorExit"]),
    "async-SystemExit": (_async_system_exit, ["SystemExit", "3"]),
    "returns-set": (_returns(lambda: {1, 2}), ["not JSON-serializable", "set"]),
    "returns-object": (_returns(object), ["not JSON-serializable", "object"]),
    "returns-nan": (_returns(lambda: float("nan")), ["not JSON-serializable"]),
    "returns-circular": (_returns(_circular), ["not JSON-serializable", "ircular"]),
    "returns-too-large": (_returns(lambda: "x" * MAX_PAYLOAD_BYTES), ["over the limit"]),
    "returns-broken-dict": (_returns(lambda: _BrokenDict(a=1)), ["not JSON-serializable"]),
    "returns-deeply-nested": (_returns(_deep), ["not JSON-serializable"]),
    "exception-with-broken-str": (_raise(_BadStr()), ["_BadStr"]),
}


def _run_bad_activity(
    client: Client, make_runtime: MakeRuntime, fn: Callable[[Any, Any], Any], wait_ms: int
) -> tuple[Any, Runtime]:
    rt = fast(make_runtime)
    rt.register_activity("Bad", fn)
    rt.register_activity("Good", lambda ctx, x: x + 1)

    def caller(ctx: Any, _: Any) -> Any:
        try:
            value = yield ctx.schedule_activity("Bad", None)
        except Exception as exc:
            caught = {"type": type(exc).__name__, "message": str(exc)}
        else:
            return {"unexpected success": value}
        after = yield ctx.schedule_activity("Good", 41)
        return {"caught": caught, "after": after}

    rt.register_orchestration("Caller", caller)
    rt.register_orchestration("Plain", lambda ctx, x: x)
    rt.start()
    client.start_orchestration("bad", "Caller")
    return client.wait_for_orchestration("bad", wait_ms), rt


@pytest.mark.parametrize(
    ("fn", "mentions"), list(BAD_ACTIVITIES.values()), ids=list(BAD_ACTIVITIES)
)
def test_activity_that_misbehaves_fails_only_itself_with_a_clear_message(
    client: Client, make_runtime: MakeRuntime, fn: Callable[[Any, Any], Any], mentions: list[str]
) -> None:
    result, rt = _run_bad_activity(client, make_runtime, fn, WAIT_MS)
    assert result.status == "Completed", result.error
    caught = result.output["caught"]
    assert caught["type"] == "ActivityFailedError", caught
    for word in mentions:
        assert word in caught["message"], caught
    assert result.output["after"] == 42
    # The runtime (with a single activity slot) keeps working for new instances.
    client.start_orchestration("later", "Caller")
    assert client.wait_for_orchestration("later", WAIT_MS).status == "Completed"
    assert rt.metrics_snapshot().activity_errors >= 2


# --- 6. orchestrations that raise, return the unencodable, or yield non-tasks --------------------


def _orch_raising(exc: BaseException) -> Callable[[Any, Any], Any]:
    def orchestration(ctx: Any, _: Any) -> Any:
        yield ctx.schedule_timer(0)
        raise exc

    return orchestration


def _orch_returning(make_value: Callable[[], Any]) -> Callable[[Any, Any], Any]:
    def orchestration(ctx: Any, _: Any) -> Any:
        yield ctx.schedule_timer(0)
        return make_value()

    return orchestration


def _plain_raiser(ctx: Any, _: Any) -> Any:
    raise RuntimeError("plain 'function' failed")


BAD_ORCHESTRATIONS: dict[str, tuple[Callable[[Any, Any], Any], list[str]]] = {
    "raises": (_orch_raising(ValueError("boom: '; DROP TABLE x; --")),
               ["boom: '; DROP TABLE x; --"]),
    "raises-KeyboardInterrupt": (_orch_raising(KeyboardInterrupt()), ["KeyboardInterrupt"]),
    "returns-set": (_orch_returning(lambda: {1}),
                    ["orchestration output", "not JSON-serializable"]),
    "returns-object": (_orch_returning(object), ["not JSON-serializable", "object"]),
    "returns-nan": (_orch_returning(lambda: [float("nan")]), ["not JSON-serializable"]),
    "returns-too-large": (_orch_returning(lambda: "x" * MAX_PAYLOAD_BYTES), ["over the limit"]),
    "plain-function-returns-set": (lambda ctx, _: {1}, ["not JSON-serializable"]),
    "raises-SystemExit": (_orch_raising(SystemExit(3)), ["SystemExit", "3"]),
    "raises-exception-with-broken-str": (_orch_raising(_BadStr()), ["_BadStr"]),
    "plain-function-raises": (_plain_raiser, ["plain 'function' failed"]),
}  # fmt: skip


@pytest.mark.parametrize(
    ("fn", "mentions"), list(BAD_ORCHESTRATIONS.values()), ids=list(BAD_ORCHESTRATIONS)
)
def test_orchestration_that_misbehaves_fails_with_a_clear_error(
    client: Client, make_runtime: MakeRuntime, fn: Callable[[Any, Any], Any], mentions: list[str]
) -> None:
    rt = fast(make_runtime)
    rt.register_orchestration("Bad", fn)
    rt.register_orchestration("Plain", lambda ctx, x: x)
    rt.start()
    client.start_orchestration("bad", "Bad")
    result = client.wait_for_orchestration("bad", WAIT_MS)
    assert result.status == "Failed", result
    for word in mentions:
        assert word in result.error, result.error
    history = client.read_execution_history("bad", 1)
    assert history[-1].kind == "OrchestrationFailed"
    client.start_orchestration("later", "Plain", 7)
    assert client.wait_for_orchestration("later", WAIT_MS).output == 7


def _non_tasks(ctx: Any) -> dict[str, Any]:
    def helper_generator() -> Any:
        yield ctx.schedule_timer(0)

    return {
        "int": 42,
        "none": None,
        "str": "schedule_activity",
        "object": object(),
        "list-of-tasks": [ctx.schedule_timer(0), ctx.schedule_timer(0)],
        "generator": helper_generator(),  # forgot `yield from`
        "dict-without-type": {"name": "x"},
        "unknown-type": {"type": "bogus"},
        "activity-without-name": {"type": "activity"},
    }


NON_TASKS = ["int", "none", "str", "object", "list-of-tasks", "generator", "dict-without-type",
             "unknown-type", "activity-without-name"]  # fmt: skip


@pytest.mark.parametrize("what", NON_TASKS)
def test_yielding_a_non_task_throws_a_catchable_type_error(
    client: Client, make_runtime: MakeRuntime, what: str
) -> None:
    rt = fast(make_runtime)

    def orchestration(ctx: Any, what: str) -> Any:
        try:
            yield _non_tasks(ctx)[what]
        except TypeError as exc:
            caught = str(exc)
        else:
            return "no error"
        yield ctx.schedule_timer(0)  # the orchestration goes on normally afterwards
        return caught

    def uncaught(ctx: Any, what: str) -> Any:
        yield _non_tasks(ctx)[what]
        return "no error"

    rt.register_orchestration("Yields", orchestration)
    rt.register_orchestration("Uncaught", uncaught)
    rt.start()
    client.start_orchestration("caught", "Yields", what)
    client.start_orchestration("uncaught", "Uncaught", what)
    result = client.wait_for_orchestration("caught", WAIT_MS)
    assert result.status == "Completed", result.error
    message = result.output
    assert isinstance(message, str)
    assert "task" in message or "descriptor" in message, message
    failed = client.wait_for_orchestration("uncaught", WAIT_MS)
    assert failed.status == "Failed", failed
    assert "task" in failed.error or "descriptor" in failed.error, failed.error


def test_bad_arguments_inside_an_orchestration_raise_at_the_call_site(
    client: Client, make_runtime: MakeRuntime
) -> None:
    rt = fast(make_runtime)
    rt.register_activity("Echo", lambda ctx, x: x)

    def orchestration(ctx: Any, _: Any) -> Any:
        errors = {}
        attempts: dict[str, Callable[[], Any]] = {
            "activity-input-set": lambda: ctx.schedule_activity("Echo", {1}),
            "activity-input-too-large": lambda: ctx.schedule_activity(
                "Echo", "x" * MAX_PAYLOAD_BYTES
            ),
            "activity-name-int": lambda: ctx.schedule_activity(5, 1),
            "activity-name-empty": lambda: ctx.schedule_activity("", 1),
            "custom-status-nul": lambda: ctx.set_custom_status("a\x00b"),
            "kv-key-nul": lambda: ctx.set_kv_value("a\x00", "v"),
            "kv-value-nul": lambda: ctx.set_kv_value("k", "v\x00"),
            "kv-value-too-large": lambda: ctx.set_kv_value("k", "x" * (MAX_KV_VALUE_BYTES + 1)),
            "event-name-none": lambda: ctx.wait_for_event(None),
            "timer-negative": lambda: ctx.schedule_timer(-1),
            "timer-nan": lambda: ctx.schedule_timer(float("nan")),
        }
        for name, attempt in attempts.items():
            try:
                attempt()
            except (TypeError, ValueError) as exc:
                errors[name] = [type(exc).__name__, str(exc)]
        value = yield ctx.schedule_activity("Echo", "still fine")
        return {"errors": errors, "value": value}

    rt.register_orchestration("Orch", orchestration)
    rt.start()
    client.start_orchestration("i", "Orch")
    result = client.wait_for_orchestration("i", WAIT_MS)
    assert result.status == "Completed", result.error
    errors = result.output["errors"]
    assert result.output["value"] == "still fine"
    assert errors["activity-input-set"][0] == "TypeError"
    assert "not JSON-serializable" in errors["activity-input-set"][1]
    assert errors["activity-input-too-large"][0] == "PayloadTooLargeError"
    assert "over the limit" in errors["activity-input-too-large"][1]
    assert errors["activity-name-int"][0] == "TypeError"
    assert errors["activity-name-empty"][0] == "ValueError"
    assert errors["custom-status-nul"][0] == "ValueError"
    assert errors["kv-key-nul"][0] == "ValueError"
    assert errors["kv-value-nul"][0] == "ValueError"
    assert errors["kv-value-too-large"][0] == "ValueError"
    assert errors["event-name-none"][0] == "TypeError"
    assert errors["timer-negative"][0] == "ValueError"
    assert errors["timer-nan"][0] == "ValueError"
    assert len(errors) == 11
    kinds = [e.kind for e in client.read_execution_history("i", 1)]
    assert kinds.count("ActivityScheduled") == 1, "refused calls leave no trace in history"
    assert "KeyValueSet" not in kinds
    assert "CustomStatusUpdated" not in kinds
    assert client.get_kv_all_values("i") == {}


# --- 7. payload size limit -----------------------------------------------------------------------


def test_payload_over_the_limit_is_refused_at_the_call_site(client: Client) -> None:
    client.start_orchestration("existing", "Anything")
    before = queued(client)
    too_big = "x" * (MAX_PAYLOAD_BYTES - 1)  # + 2 quotes when encoded: one byte over
    calls = {
        "orchestration input": lambda: client.start_orchestration("big", "Anything", too_big),
        "event data": lambda: client.raise_event("existing", "evt", too_big),
        "queue message": lambda: client.enqueue_event("existing", "q", too_big),
        "nested": lambda: client.start_orchestration("big", "Anything", {"a": [too_big]}),
    }
    for what, call in calls.items():
        with pytest.raises(PayloadTooLargeError, match="over the limit") as info:
            call()
        assert isinstance(info.value, ValueError), what
        assert str(MAX_PAYLOAD_BYTES) in str(info.value)
    assert queued(client) == before
    assert client.get_status("big").status == "NotFound"

    # Exactly at the limit is fine.
    client.start_orchestration("at-limit", "Anything", "x" * (MAX_PAYLOAD_BYTES - 2))
    assert queued(client) == before + 1
