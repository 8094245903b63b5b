"""Orchestration versions: the default 1.0.0, latest-by-semver on start and continue-as-new,
explicit pins, and running instances keeping their version across a deploy."""

from __future__ import annotations

import json

from .support import eventually


def _reporter(tag: str):
    """An orchestration that reports which code ran it and the version it was told."""

    def orchestration(ctx, _):
        return {"code": tag, "version": ctx.orchestration_version}

    return orchestration


def _started_version(client, instance_id, execution_id=1):
    first = client.read_execution_history(instance_id, execution_id)[0]
    assert first.kind == "OrchestrationStarted"
    return json.loads(first.data)["version"]


def test_unversioned_registration_is_1_0_0(make_runtime, client):
    runtime = make_runtime()
    runtime.register_orchestration("Plain", _reporter("plain"))
    seen = []
    runtime.register_activity("Seen", lambda ctx, _: seen.append(ctx.orchestration_version))

    @runtime.register_orchestration("CallsActivity")
    def calls(ctx, _):
        yield ctx.schedule_activity("Seen", None)
        return ctx.orchestration_version

    runtime.start()
    client.start_orchestration("ver-plain", "Plain")
    result = client.wait_for_orchestration("ver-plain", 5_000)
    assert result.output == {"code": "plain", "version": "1.0.0"}
    assert result.orchestration_version == "1.0.0"
    assert client.get_instance_info("ver-plain").orchestration_version == "1.0.0"
    assert _started_version(client, "ver-plain") == "1.0.0"

    client.start_orchestration("ver-activity", "CallsActivity")
    assert client.wait_for_orchestration("ver-activity", 5_000).output == "1.0.0"
    assert seen == ["1.0.0"]


def _register_three(runtime):
    runtime.register_orchestration("Multi", _reporter("v1.0.0"))
    # Registered out of order; 1.10.0 > 1.2.0 by semver (not by string comparison).
    runtime.register_orchestration_versioned("Multi", "1.10.0", _reporter("v1.10.0"))
    runtime.register_orchestration_versioned("Multi", "1.2.0", _reporter("v1.2.0"))


def test_start_without_version_runs_the_latest_registered(make_runtime, client):
    runtime = make_runtime()
    _register_three(runtime)
    runtime.start()
    client.start_orchestration("ver-latest", "Multi")
    result = client.wait_for_orchestration("ver-latest", 5_000)
    assert result.output == {"code": "v1.10.0", "version": "1.10.0"}
    assert client.get_instance_info("ver-latest").orchestration_version == "1.10.0"
    assert _started_version(client, "ver-latest") == "1.10.0"


def test_start_orchestration_versioned_pins_the_version(make_runtime, client):
    runtime = make_runtime()
    _register_three(runtime)
    runtime.start()
    client.start_orchestration_versioned("ver-pin-1", "Multi", None, "1.2.0")
    client.start_orchestration_versioned("ver-pin-2", "Multi", None, "1.0.0")
    assert client.wait_for_orchestration("ver-pin-1", 5_000).output == {
        "code": "v1.2.0",
        "version": "1.2.0",
    }
    assert client.wait_for_orchestration("ver-pin-2", 5_000).output == {
        "code": "v1.0.0",
        "version": "1.0.0",
    }
    assert client.get_instance_info("ver-pin-1").orchestration_version == "1.2.0"


def _hopper(tag: str):
    """Continues as new once per entry of ``hops`` (None: no version; else that version) and
    returns the list of (code, version) that ran each execution."""

    def orchestration(ctx, inp):
        seen = [*inp.get("seen", []), [tag, ctx.orchestration_version]]
        hops = inp.get("hops", [])
        if not hops:
            return seen
        nxt = {"hops": hops[1:], "seen": seen}
        if hops[0] is None:
            yield ctx.continue_as_new(nxt)
        else:
            yield ctx.continue_as_new_versioned(nxt, hops[0])

    return orchestration


def test_continue_as_new_upgrades_to_latest_and_versioned_pins(make_runtime, client):
    runtime = make_runtime()
    runtime.register_orchestration("Hopper", _hopper("v1"))
    runtime.register_orchestration_versioned("Hopper", "2.0.0", _hopper("v2"))
    runtime.start()

    client.start_orchestration_versioned(
        "ver-hops", "Hopper", {"hops": [None, "1.0.0", None]}, "1.0.0"
    )
    result = client.wait_for_orchestration("ver-hops", 5_000)
    assert result.status == "Completed", result.error
    assert result.output == [
        ["v1", "1.0.0"],  # pinned at start
        ["v2", "2.0.0"],  # continue_as_new without a version -> latest
        ["v1", "1.0.0"],  # continue_as_new_versioned pins
        ["v2", "2.0.0"],  # latest again
    ]
    assert client.list_executions("ver-hops") == [1, 2, 3, 4]
    assert [_started_version(client, "ver-hops", e) for e in (1, 2, 3, 4)] == [
        "1.0.0",
        "2.0.0",
        "1.0.0",
        "2.0.0",
    ]
    assert client.get_instance_info("ver-hops").orchestration_version == "2.0.0"


def test_running_instance_keeps_its_version_across_a_deploy(make_runtime, client):
    """Instance started on a node that only has 1.0.0; the node is replaced by one that also
    has 2.0.0. The running instance finishes on 1.0.0; new starts get 2.0.0."""
    seen: list[tuple[str, str]] = []

    def v1(ctx, _):
        yield ctx.wait_for_event("go")
        yield ctx.schedule_activity("Record", "v1")
        return {"code": "v1", "version": ctx.orchestration_version}

    def v2(ctx, _):
        yield ctx.schedule_activity("Record", "v2-first")  # a different shape than v1
        yield ctx.wait_for_event("go")
        return {"code": "v2", "version": ctx.orchestration_version}

    def record(ctx, inp):
        seen.append((inp, ctx.orchestration_version))

    old = make_runtime()
    old.register_orchestration("Deployed", v1)
    old.register_activity("Record", record)
    old.start()
    client.start_orchestration("ver-running", "Deployed")
    eventually(lambda: client.get_status("ver-running").status == "Running", 5)
    old.shutdown(1_000)

    new = make_runtime()
    new.register_orchestration("Deployed", v1)
    new.register_orchestration_versioned("Deployed", "2.0.0", v2)
    new.register_activity("Record", record)
    new.start()
    client.raise_event("ver-running", "go", None)
    result = client.wait_for_orchestration("ver-running", 5_000)
    assert result.status == "Completed", result.error
    assert result.output == {"code": "v1", "version": "1.0.0"}
    assert seen == [("v1", "1.0.0")]

    client.start_orchestration("ver-new", "Deployed")
    eventually(lambda: ("v2-first", "2.0.0") in seen, 5)
    client.raise_event("ver-new", "go", None)
    assert client.wait_for_orchestration("ver-new", 5_000).output == {
        "code": "v2",
        "version": "2.0.0",
    }


def test_sub_orchestration_versions(make_runtime, client):
    runtime = make_runtime()
    runtime.register_orchestration("Leaf", _reporter("leaf-v1"))
    runtime.register_orchestration_versioned("Leaf", "2.0.0", _reporter("leaf-v2"))

    @runtime.register_orchestration("Root")
    def root(ctx, _):
        latest = yield ctx.schedule_sub_orchestration("Leaf", None)
        pinned = yield ctx.schedule_sub_orchestration_versioned("Leaf", "1.0.0", None)
        return [latest, pinned]

    runtime.start()
    client.start_orchestration("ver-subs", "Root")
    result = client.wait_for_orchestration("ver-subs", 5_000)
    assert result.status == "Completed", result.error
    assert result.output == [
        {"code": "leaf-v2", "version": "2.0.0"},
        {"code": "leaf-v1", "version": "1.0.0"},
    ]
