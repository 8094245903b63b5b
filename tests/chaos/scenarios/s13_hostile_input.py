"""Scenario 13: hostile input — clear errors, or correct storage where the value is legal.

Legal but hostile values (SQL metacharacters, quotes, comment and dollar-quote markers,
psycopg and format placeholders, LIKE wildcards, control characters, non-ASCII, 1024-byte
names, 256-byte tags) are used at once as instance id, orchestration name, activity name, tag,
event name, queue name, KV key and data: each instance must complete with exactly its values
and be listed, described and read back intact. Illegal values (NUL, lone surrogates, empty,
over-long, not a str) must raise ``ValueError``/``TypeError`` before anything is stored, and
every hostile schema name must be refused by ``connect_with_schema``. Afterwards the database
catalog outside the chaos schemas, the scenario schema's own catalog and the data of instances
that existed before are unchanged.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from duroxide import Client, PostgresProvider, Runtime, TagFilter
from tests.chaos.result import ChaosEnv, ScenarioResult
from tests.chaos.scenarios._common_b import (
    apply_checks,
    fast_options,
    query,
    running,
    tenant,
    wait_all,
)
from tests.pg import connect, drop_schema

NUMBER = 13
TITLE = "hostile input"
LEGAL = [
    "x'; DROP TABLE history; --",
    'Robert"); DELETE FROM instances; --',
    "$$; SELECT pg_sleep(10); $$",
    "a' OR '1'='1",
    "%s %(x)s {schema} {} %% \\N",
    "under_score%wild*card?",
    "back\\slash\\\\ and \\x00 text",
    "tab\tnew\nline\rret\x1bescape",
    "ünïcödé — 🚀 ' \" ` ;",
    "/* comment */ -- dash",
    "h" * 1024,
]
ILLEGAL: list[Any] = [
    "nul\x00byte", "lone \ud800 surrogate", "", "h" * 1025, "h" * 4_000_000, 42, None,
]  # fmt: skip
SCHEMAS: list[Any] = [
    "a; DROP SCHEMA public CASCADE", '"quoted"', "Upper", "x" * 64, "nul\x00", "",
    "public", "pg_catalog", "information_schema", "pg_toast", "1digit", "ß", None,
]  # fmt: skip


def _tag(value: str) -> str:
    return value[:256] if value.isascii() else value[:60]


def _register(runtime: Runtime, runs: Counter[str], lock: threading.Lock) -> None:
    def make(value: str) -> Callable[..., Any]:
        def orchestration(ctx: Any, data: Any) -> Any:
            a = yield ctx.schedule_activity(value, data)
            b = yield ctx.schedule_activity(value, data).with_tag(_tag(value))
            event = yield ctx.wait_for_event(value)
            queued = yield ctx.dequeue_event(value)
            ctx.set_kv_value(value, data)
            ctx.set_custom_status(value)
            return [a, b, event, queued]

        return orchestration

    def activity(ctx: Any, data: Any) -> Any:
        with lock:
            runs[f"{ctx.instance_id}|{ctx.activity_id}"] += 1
        return data

    for value in LEGAL:
        runtime.register_orchestration(value, make(value))
        runtime.register_activity(value, activity)


def _raises(call: Callable[[], object]) -> bool:
    try:
        call()
    except (ValueError, TypeError):
        return True
    return False


def _illegal_refused(client: Client) -> dict[str, bool]:
    refused: dict[str, bool] = {}
    for n, bad in enumerate(ILLEGAL):
        refused[f"id#{n}"] = _raises(lambda b=bad: client.start_orchestration(b, LEGAL[0], 1))
        refused[f"name#{n}"] = _raises(lambda b=bad: client.start_orchestration("ok", b, 1))
        refused[f"event#{n}"] = _raises(lambda b=bad: client.raise_event(LEGAL[0], b, 1))
        refused[f"queue#{n}"] = _raises(lambda b=bad: client.enqueue_event(LEGAL[0], b, 1))
        refused[f"kv#{n}"] = _raises(lambda b=bad: client.get_kv_value(LEGAL[0], b))
        refused[f"tag#{n}"] = _raises(lambda b=bad: TagFilter.tags([b]))
    refused["non-JSON data"] = _raises(
        lambda: client.start_orchestration("ok", LEGAL[0], float("nan"))
    )
    return refused


def _schema_refused(url: str) -> list[str]:
    """The hostile schema names ``connect_with_schema`` accepted (it must accept none)."""
    accepted = []
    for name in SCHEMAS:
        try:
            PostgresProvider.connect_with_schema(url, name).close()
        except (ValueError, TypeError):
            continue
        accepted.append(name)
    return accepted


def _drop_created(url: str, accepted: list[str]) -> None:
    """Drop what an accepted hostile name may have created (never a system schema)."""
    for name in accepted:
        if name not in ("public", "pg_catalog", "information_schema", "pg_toast"):
            drop_schema(url, name)


def _snapshot(url: str, schema: str, victims: list[str]) -> tuple[set[str], set[str], str]:
    with connect(url) as conn:
        names = [n for n in SCHEMAS if isinstance(n, str) and "\x00" not in n]
        catalog = {r[0] for r in conn.execute(query("catalog_snapshot"), (names, names, names))}
        own = {r[0] for r in conn.execute(query("schema_snapshot"), (schema, schema))}
        row = conn.execute(query("data_digest", schema), (victims, victims, victims)).fetchone()
    return catalog, own, str(row[0] if row else "")


def run(env: ChaosEnv) -> ScenarioResult:
    rounds = 1 if env.size == "small" else 5
    result = ScenarioResult(NUMBER, TITLE, reexecutions_allowed=False)
    schema = env.schema("s13_hostile")
    victims = [f"victim-{n}" for n in range(5)]
    runs: Counter[str] = Counter()
    lock = threading.Lock()
    with tenant(env.url, schema) as provider:
        client = Client(provider)
        runtime = Runtime(provider, fast_options(
            worker_tag_filter=TagFilter.default_and([_tag(v) for v in LEGAL[:5]])))  # fmt: skip
        tagged = [
            Runtime(provider, fast_options(orchestration_concurrency=0, worker_concurrency=2,
                    worker_tag_filter=TagFilter.tags([_tag(v) for v in LEGAL[k : k + 5]])))
            for k in range(5, len(LEGAL), 5)
        ]  # fmt: skip
        for each in (runtime, *tagged):
            _register(each, runs, lock)
        with ExitStack() as stack:
            for each in (runtime, *tagged):
                stack.enter_context(running(each))
            for instance_id in victims:
                client.start_orchestration(instance_id, LEGAL[0], instance_id)
                client.raise_event(instance_id, LEGAL[0], "e")
                client.enqueue_event(instance_id, LEGAL[0], "q")
            victims_done = wait_all(client, victims, 30)
            before = _snapshot(env.url, schema, victims)
            ids: list[str] = []
            expected: dict[str, Any] = {v: [v, v, "e", "q"] for v in victims}
            for r in range(rounds):
                for value in LEGAL:
                    instance_id = value if r == 0 else f"r{r}:{value}"[:1024]
                    ids.append(instance_id)
                    client.start_orchestration(instance_id, value, value)
                    client.raise_event(instance_id, value, value)
                    client.enqueue_event(instance_id, value, value)
                    expected[instance_id] = [value] * 4
            result.started = len(victims) + len(ids)
            refused = _illegal_refused(client)
            statuses = wait_all(client, ids, 60)
            stored_ok = all(
                client.get_kv_value(i, v) == v
                and client.get_status(i).custom_status == v
                and client.get_instance_info(i).orchestration_name == v
                for i, v in zip(ids, LEGAL * rounds, strict=True)
            )
            listed = set(client.list_all_instances()) == set(victims) | set(ids)
        accepted_schemas: list[str] = []
        try:
            accepted_schemas = _schema_refused(env.url)
            after = _snapshot(env.url, schema, victims)
        finally:
            _drop_created(env.url, accepted_schemas)
        apply_checks(result, env.url, [(schema, expected)])
    result.activity_reexecutions = sum(n - 1 for n in runs.values())
    result.duplicate_effects = result.activity_reexecutions  # the activity's effect: its count
    not_refused = [k for k, ok in refused.items() if not ok]
    result.checks |= {
        "victims completed before the snapshot": all(
            s == "Completed" for s in victims_done.values()
        ),
        "legal hostile values completed": all(s == "Completed" for s in statuses.values()),
        "stored and read back intact": stored_ok and listed,
        "illegal values refused": not not_refused,
        "hostile schema names refused": not accepted_schemas,
        "database catalog unchanged": before[0] == after[0],
        "schema catalog unchanged": before[1] == after[1],
        "existing data intact": before[2] == after[2],
    }
    changed = sorted(before[0] ^ after[0])[:3]
    result.detail = " ".join(filter(None, [
        f"{len(LEGAL)} legal x{rounds}, {len(refused)} illegal uses",
        f"not refused: {not_refused[:4]}" if not_refused else "",
        f"schemas accepted: {[repr(n) for n in accepted_schemas]}" if accepted_schemas else "",
        f"catalog changed: {changed}" if changed else "", result.detail,
    ]))  # fmt: skip
    return result
