"""The public surface of the reference duroxide Python SDK, pinned.

Programs written for the reference SDK must run unchanged, so the names and parameter names
listed in the API contract are checked here; renaming one fails this test.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

import pytest

import duroxide
from duroxide import (
    ActivityContext,
    Client,
    InstanceFilter,
    OrchestrationContext,
    PruneOptions,
    PyRuntimeOptions,
    Runtime,
    RuntimeOptions,
    ScheduledTask,
    SqliteProvider,
    TagFilter,
)

EXPORTS = [
    "SqliteProvider", "PostgresProvider", "Client", "Runtime", "RuntimeOptions",
    "PyRuntimeOptions", "TagFilter", "PruneOptions", "InstanceFilter", "init_tracing",
    "OrchestrationContext", "ActivityContext", "ScheduledTask",
]  # fmt: skip


@pytest.mark.parametrize("name", EXPORTS)
def test_module_exports_the_reference_names(name: str) -> None:
    assert getattr(duroxide, name) is not None
    assert name in duroxide.__all__


def test_context_module_exposes_the_orchestration_context_and_task() -> None:
    from duroxide.context import OrchestrationContext as Ctx
    from duroxide.context import ScheduledTask as Task

    assert Ctx is OrchestrationContext and Task is ScheduledTask


def _params(fn: Callable[..., Any]) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p != "self"]


CLIENT = {
    "start_orchestration": ["instance_id", "orchestration_name", "input"],
    "start_orchestration_versioned": ["instance_id", "orchestration_name", "input", "version"],
    "start_orchestration_typed": ["instance_id", "orchestration_name", "input"],
    "wait_for_orchestration": ["instance_id", "timeout_ms"],
    "wait_for_orchestration_typed": ["instance_id", "timeout_ms"],
    "get_status": ["instance_id"],
    "get_orchestration_status": ["instance_id"],
    "wait_for_status_change": [
        "instance_id",
        "last_seen_version",
        "poll_interval_ms",
        "timeout_ms",
    ],
    "raise_event": ["instance_id", "event_name", "data"],
    "enqueue_event": ["instance_id", "queue_name", "data"],
    "cancel_instance": ["instance_id", "reason"],
    "get_kv_value": ["instance_id", "key"],
    "get_kv_all_values": ["instance_id"],
    "wait_for_kv_value": ["instance_id", "key", "timeout_ms"],
    "list_all_instances": [],
    "list_instances_by_status": ["status"],
    "get_instance_info": ["instance_id"],
    "get_execution_info": ["instance_id", "execution_id"],
    "list_executions": ["instance_id"],
    "read_execution_history": ["instance_id", "execution_id"],
    "get_instance_tree": ["instance_id"],
    "delete_instance": ["instance_id", "force"],
    "delete_instance_bulk": ["filter"],
    "prune_executions": ["instance_id", "options"],
    "prune_executions_bulk": ["filter", "options"],
    "get_orchestration_stats": ["instance_id"],
    "get_system_metrics": [],
    "get_queue_depths": [],
}


@pytest.mark.parametrize(("method", "params"), CLIENT.items())
def test_client_methods_keep_the_reference_signatures(method: str, params: list[str]) -> None:
    assert _params(getattr(Client, method)) == params


ORCHESTRATION_CONTEXT = {
    "schedule_activity": ["name", "input", "session_id"],
    "schedule_activity_on_session": ["name", "input", "session_id"],
    "schedule_activity_with_retry": ["name", "input", "retry", "session_id"],
    "schedule_activity_with_retry_on_session": ["name", "input", "retry", "session_id"],
    "schedule_timer": ["delay_ms"],
    "wait_for_event": ["name"],
    "dequeue_event": ["queue_name"],
    "schedule_sub_orchestration": ["name", "input"],
    "schedule_sub_orchestration_with_id": ["name", "instance_id", "input"],
    "schedule_sub_orchestration_versioned": ["name", "version", "input"],
    "start_orchestration": ["name", "instance_id", "input"],
    "start_orchestration_versioned": ["name", "version", "instance_id", "input"],
    "all": ["tasks"],
    "all_typed": ["tasks"],
    "race": ["tasks"],
    "race_typed": ["tasks"],
    "utc_now": [],
    "new_guid": [],
    "continue_as_new": ["input"],
    "continue_as_new_versioned": ["input", "version"],
    "get_kv_value_from_instance": ["instance_id", "key"],
    "trace_info": ["message"],
    "set_custom_status": ["status"],
    "reset_custom_status": [],
    "get_custom_status": [],
    "set_kv_value": ["key", "value"],
    "get_kv_value": ["key"],
    "clear_kv_value": ["key"],
    "clear_all_kv_values": [],
    "get_kv_all_values": [],
    "get_kv_all_keys": [],
    "get_kv_length": [],
    "prune_kv_values_updated_before": ["cutoff_ms"],
}


@pytest.mark.parametrize(("method", "params"), ORCHESTRATION_CONTEXT.items())
def test_orchestration_context_keeps_the_reference_signatures(
    method: str, params: list[str]
) -> None:
    assert _params(getattr(OrchestrationContext, method)) == params


def test_activity_context_has_the_reference_attributes_and_methods() -> None:
    ctx = ActivityContext(
        instance_id="i", execution_id=1, orchestration_name="O", orchestration_version="1.0.0",
        activity_name="A", activity_id=2, worker_id="w",
    )  # fmt: skip
    for attr in ("instance_id", "execution_id", "orchestration_name", "orchestration_version",
                 "activity_name", "activity_id", "worker_id", "session_id"):  # fmt: skip
        assert hasattr(ctx, attr)
    assert ctx.session_id is None and ctx.tag() is None and ctx.is_cancelled() is False
    for method in ("get_client", "trace_info", "trace_warn", "trace_error", "trace_debug"):
        assert callable(getattr(ctx, method))


def test_runtime_registration_and_lifecycle_methods_exist() -> None:
    for method in ("register_activity", "register_activity_typed", "register_orchestration",
                   "register_orchestration_versioned", "register_orchestration_typed",
                   "register_orchestration_versioned_typed", "start", "shutdown",
                   "metrics_snapshot"):  # fmt: skip
        assert callable(getattr(Runtime, method))
    snapshot = Runtime(SqliteProvider.in_memory()).metrics_snapshot()
    for counter in ("orch_starts", "orch_completions", "orch_failures", "activity_success",
                    "activity_errors"):  # fmt: skip
        assert getattr(snapshot, counter) == 0


def test_runtime_options_take_every_reference_keyword() -> None:
    options = PyRuntimeOptions(
        dispatcher_poll_interval_ms=50, orchestration_concurrency=0, worker_concurrency=2,
        orchestrator_lock_timeout_ms=1000, worker_lock_timeout_ms=2000, max_attempts=3,
        max_sessions_per_runtime=10, session_idle_timeout_ms=300000, worker_node_id="pod-1",
        worker_tag_filter=TagFilter.ANY, log_level="info", log_format="json",
        service_name="svc", service_version="1.2.3",
    )  # fmt: skip
    assert isinstance(options, RuntimeOptions)
    assert RuntimeOptions().max_sessions_per_runtime == 10
    assert RuntimeOptions().session_idle_timeout_ms == 300_000


def test_tag_filter_values_are_the_reference_strings() -> None:
    assert TagFilter.DEFAULT_ONLY == "default_only"
    assert TagFilter.ANY == "any"
    assert TagFilter.NONE == "none"
    assert json.loads(TagFilter.tags(["gpu"])) == {"tags": ["gpu"]}
    assert json.loads(TagFilter.default_and(["gpu"])) == {"default_and": ["gpu"]}
    with pytest.raises(ValueError, match="at most 5"):
        TagFilter.tags(["a", "b", "c", "d", "e", "f"])


def test_scheduled_task_is_a_dict_and_with_tag_returns_itself() -> None:
    ctx = OrchestrationContext(
        _NoHost(), instance_id="i", execution_id=1, orchestration_name="O",
        orchestration_version="1.0.0",
    )  # fmt: skip
    task = ctx.schedule_activity("A", {"x": 1})
    assert isinstance(task, dict)
    assert task.with_tag("gpu") is task and task["tag"] == "gpu"


def test_filters_and_prune_options_take_the_reference_keywords() -> None:
    flt = InstanceFilter(instance_ids=["a"], completed_before=10, limit=5)
    assert (flt.instance_ids, flt.completed_before, flt.limit) == (["a"], 10, 5)
    opts = PruneOptions(keep_last=2, completed_before=10)
    assert (opts.keep_last, opts.completed_before) == (2, 10)


class _NoHost:
    replaying = False
